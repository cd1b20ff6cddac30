#include "common/logging.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace switchyard {
namespace {

LogLevel LevelFromEnv() {
  LogLevel level = LogLevel::kInfo;
  if (const char* env = std::getenv("SWITCHYARD_LOG_LEVEL")) ParseLogLevel(env, &level);
  return level;
}

std::atomic<int>& LevelStore() {
  static std::atomic<int> level{static_cast<int>(LevelFromEnv())};
  return level;
}
std::atomic<int> g_rank{-1};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return "TRACE";
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
    case LogLevel::kOff:
      return "OFF";
  }
  return "?";
}

const std::string& HostName() {
  static const std::string name = [] {
    char buf[256] = {0};
    if (gethostname(buf, sizeof(buf) - 1) != 0) return std::string("unknown");
    return std::string(buf);
  }();
  return name;
}

}  // namespace

bool ParseLogLevel(const std::string& text, LogLevel* level) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  static const struct {
    const char* name;
    LogLevel level;
  } kNames[] = {{"trace", LogLevel::kTrace},  {"debug", LogLevel::kDebug},
                {"info", LogLevel::kInfo},    {"warn", LogLevel::kWarn},
                {"warning", LogLevel::kWarn}, {"error", LogLevel::kError},
                {"off", LogLevel::kOff}};
  for (const auto& n : kNames) {
    if (t == n.name) {
      *level = n.level;
      return true;
    }
  }
  return false;
}

void SetLogLevel(LogLevel level) { LevelStore().store(static_cast<int>(level)); }
LogLevel GetLogLevel() { return static_cast<LogLevel>(LevelStore().load()); }
void SetLogRank(int rank) { g_rank.store(rank); }

void LogMessage(LogLevel level, const char* subsystem, const char* fmt, ...) {
  char body[2048];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(body, sizeof(body), fmt, args);
  va_end(args);

  auto now = std::chrono::system_clock::now();
  std::time_t secs = std::chrono::system_clock::to_time_t(now);
  int millis = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm_buf;
  localtime_r(&secs, &tm_buf);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm_buf);

  char rank_text[16];
  int rank = g_rank.load();
  if (rank < 0) {
    std::snprintf(rank_text, sizeof(rank_text), "-");
  } else {
    std::snprintf(rank_text, sizeof(rank_text), "%d", rank);
  }
  char line[2300];
  int n = std::snprintf(line, sizeof(line), "%s.%03d %-5s %s:%d rank %s [%s] %s\n", stamp, millis,
                        LevelName(level), HostName().c_str(), static_cast<int>(getpid()), rank_text,
                        subsystem, body);
  if (n > 0) std::fwrite(line, 1, std::min<size_t>(n, sizeof(line) - 1), stderr);
}

}  // namespace switchyard
