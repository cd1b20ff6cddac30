// Printf-style logging with levels and subsystems.
//
// Every line: "<time> <LEVEL> <host>:<pid> rank <R> [<subsystem>] message". The level threshold
// comes from SWITCHYARD_LOG_LEVEL (trace|debug|info|warn|error|off; default info) or SetLogLevel().
// Thread-safe: each line is written with one fwrite to stderr. Nothing above DEBUG on hot paths.
#pragma once

#include <string>

namespace switchyard {

enum class LogLevel { kTrace = 0, kDebug, kInfo, kWarn, kError, kOff };

// Parses "trace".."off" (case-insensitive); returns false for anything else.
bool ParseLogLevel(const std::string& text, LogLevel* level);
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// The rank shown in the prefix; -1 (the default) prints "rank -".
void SetLogRank(int rank);
inline bool LogEnabled(LogLevel level) { return level >= GetLogLevel(); }

void LogMessage(LogLevel level, const char* subsystem, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

}  // namespace switchyard

#define SY_LOG(level, subsystem, ...)                                                  \
  do {                                                                                 \
    if (::switchyard::LogEnabled(::switchyard::LogLevel::level))                       \
      ::switchyard::LogMessage(::switchyard::LogLevel::level, subsystem, __VA_ARGS__); \
  } while (0)
#define LOG_TRACE(sub, ...) SY_LOG(kTrace, sub, __VA_ARGS__)
#define LOG_DEBUG(sub, ...) SY_LOG(kDebug, sub, __VA_ARGS__)
#define LOG_INFO(sub, ...) SY_LOG(kInfo, sub, __VA_ARGS__)
#define LOG_WARN(sub, ...) SY_LOG(kWarn, sub, __VA_ARGS__)
#define LOG_ERROR(sub, ...) SY_LOG(kError, sub, __VA_ARGS__)
