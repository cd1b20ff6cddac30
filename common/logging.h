// Printf-style logging with levels and subsystems.
//
// Text format (default), every line: "<time> <LEVEL> <host>:<pid> rank <R> [<subsystem>] message",
// with "req=<id> " before the message while a ScopedRequestId is active on the thread.
// JSON format (SWITCHYARD_LOG_FORMAT=json, runtime config log_format, or SetLogFormat()): one
// object per line, {"ts","level","host","pid","rank","subsystem","msg"} plus "request_id" when set;
// "ts" is UTC ISO-8601 with milliseconds, "rank" is null before SetLogRank, the message is JSON
// escaped (control characters escaped, valid UTF-8 passed through, invalid bytes -> U+FFFD).
// The level threshold comes from SWITCHYARD_LOG_LEVEL (trace|debug|info|warn|error|off; default
// info) or SetLogLevel().
// Thread-safe: each line is written with one fwrite to stderr. Nothing above DEBUG on hot paths.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

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

enum class LogFormat { kText = 0, kJson };

// Parses "text" / "json" (case-insensitive); returns false for anything else.
bool ParseLogFormat(const std::string& text, LogFormat* format);
// The process-wide line format; the initial value comes from SWITCHYARD_LOG_FORMAT (an invalid
// value keeps text and is reported once as a WARN line). Thread-safe (atomic).
void SetLogFormat(LogFormat format);
LogFormat GetLogFormat();

// Sets the calling thread's request id for its lifetime (RAII) and restores the previous one on
// destruction, so guards nest. Log lines written by this thread meanwhile carry the id. Not
// movable; must be destroyed on the thread that created it.
class ScopedRequestId {
 public:
  explicit ScopedRequestId(std::string request_id);
  ~ScopedRequestId();
  ScopedRequestId(const ScopedRequestId&) = delete;
  ScopedRequestId& operator=(const ScopedRequestId&) = delete;

 private:
  std::string previous_;
};
// The calling thread's current request id ("" when none).
const std::string& CurrentRequestId();

// One log record, formatted by FormatLogLine (exposed for tests and for tools that re-emit
// records). Views must stay valid during the call.
struct LogRecord {
  std::chrono::system_clock::time_point time;
  LogLevel level = LogLevel::kInfo;
  std::string_view host;
  int pid = 0;
  int rank = -1;
  std::string_view subsystem;
  std::string_view message;
  std::string_view request_id;  // empty: none
  // JSON mode only: extra members, already rendered as `,"key":value...`, appended last (text
  // mode shows only the message). The caller keeps them valid JSON.
  std::string_view json_fields;
};
// The line (with trailing '\n') LogMessage writes for `record` in `format`. Text mode uses local
// time, JSON mode UTC. Pure apart from reading the time zone.
std::string FormatLogLine(const LogRecord& record, LogFormat format);

// LogMessage for a preformatted message with extra JSON members (see LogRecord::json_fields):
// machine-readable figures in JSON mode, the message alone in text mode. Thread-safe.
void LogMessageWithFields(LogLevel level, const char* subsystem, std::string_view message,
                          std::string_view json_fields);
// This host's name as log lines show it (cached).
const std::string& LogHostName();

// Appends `text` to `out` as the inside of a JSON string: '"', '\\' and control characters
// escaped, valid UTF-8 copied, each byte of an invalid sequence replaced by U+FFFD. Pure.
void AppendJsonEscaped(std::string_view text, std::string* out);

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
