#include "common/logging.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <utility>

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
thread_local std::string t_request_id;

std::atomic<int>& FormatStore() {
  static std::atomic<int> format{[] {
    LogFormat f = LogFormat::kText;
    const char* env = std::getenv("SWITCHYARD_LOG_FORMAT");
    if (env != nullptr && !ParseLogFormat(env, &f)) {
      std::fprintf(stderr, "WARN: SWITCHYARD_LOG_FORMAT='%s' is not text|json; using text\n", env);
    }
    return static_cast<int>(f);
  }()};
  return format;
}

// Length of the valid UTF-8 sequence starting at p (lead byte >= 0x80), or 0 when invalid
// (bad lead, truncated, bad continuation, overlong, surrogate, above U+10FFFF).
size_t Utf8SequenceLength(const unsigned char* p, size_t avail) {
  const unsigned char c = p[0];
  size_t len;
  uint32_t min;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2, min = 0x80, cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3, min = 0x800, cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4, min = 0x10000, cp = c & 0x07;
  } else {
    return 0;
  }
  if (avail < len) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((p[k] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

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

bool ParseLogFormat(const std::string& text, LogFormat* format) {
  std::string t = text;
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
  if (t == "text") {
    *format = LogFormat::kText;
  } else if (t == "json") {
    *format = LogFormat::kJson;
  } else {
    return false;
  }
  return true;
}

void SetLogFormat(LogFormat format) { FormatStore().store(static_cast<int>(format)); }
LogFormat GetLogFormat() { return static_cast<LogFormat>(FormatStore().load()); }

ScopedRequestId::ScopedRequestId(std::string request_id)
    : previous_(std::exchange(t_request_id, std::move(request_id))) {}
ScopedRequestId::~ScopedRequestId() { t_request_id = std::move(previous_); }
const std::string& CurrentRequestId() { return t_request_id; }

void AppendJsonEscaped(std::string_view text, std::string* out) {
  static const char kHex[] = "0123456789abcdef";
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '"':
          *out += "\\\"";
          break;
        case '\\':
          *out += "\\\\";
          break;
        case '\n':
          *out += "\\n";
          break;
        case '\r':
          *out += "\\r";
          break;
        case '\t':
          *out += "\\t";
          break;
        case '\b':
          *out += "\\b";
          break;
        case '\f':
          *out += "\\f";
          break;
        default:
          if (c < 0x20) {
            *out += "\\u00";
            *out += kHex[c >> 4];
            *out += kHex[c & 15];
          } else {
            *out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    const size_t len = Utf8SequenceLength(p + i, n - i);
    if (len == 0) {
      *out += "\xEF\xBF\xBD";  // U+FFFD for this byte; resynchronise on the next one
      ++i;
    } else {
      out->append(text.data() + i, len);
      i += len;
    }
  }
}

std::string FormatLogLine(const LogRecord& r, LogFormat format) {
  const auto since_epoch = r.time.time_since_epoch();
  const int millis = static_cast<int>(
      std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch).count() % 1000);
  const std::time_t secs = std::chrono::system_clock::to_time_t(r.time);
  std::tm tm_buf;
  char stamp[40];
  std::string line;
  if (format == LogFormat::kText) {
    localtime_r(&secs, &tm_buf);
    std::strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm_buf);
    char rank_text[16];
    if (r.rank < 0) {
      std::snprintf(rank_text, sizeof(rank_text), "-");
    } else {
      std::snprintf(rank_text, sizeof(rank_text), "%d", r.rank);
    }
    char prefix[512];
    std::snprintf(prefix, sizeof(prefix), "%s.%03d %-5s %.*s:%d rank %s [%.*s] ", stamp, millis,
                  LevelName(r.level), static_cast<int>(r.host.size()), r.host.data(), r.pid,
                  rank_text, static_cast<int>(r.subsystem.size()), r.subsystem.data());
    line = prefix;
    if (!r.request_id.empty()) {
      line += "req=";
      line += r.request_id;
      line += ' ';
    }
    line += r.message;
    line += '\n';
    return line;
  }
  gmtime_r(&secs, &tm_buf);
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm_buf);
  char ms[8];
  std::snprintf(ms, sizeof(ms), ".%03dZ", millis);
  line.reserve(128 + r.message.size());
  line += "{\"ts\":\"";
  line += stamp;
  line += ms;
  line += "\",\"level\":\"";
  line += LevelName(r.level);
  line += "\",\"host\":\"";
  AppendJsonEscaped(r.host, &line);
  line += "\",\"pid\":" + std::to_string(r.pid);
  line += ",\"rank\":" + (r.rank < 0 ? std::string("null") : std::to_string(r.rank));
  line += ",\"subsystem\":\"";
  AppendJsonEscaped(r.subsystem, &line);
  line += "\",\"msg\":\"";
  AppendJsonEscaped(r.message, &line);
  line += '"';
  if (!r.request_id.empty()) {
    line += ",\"request_id\":\"";
    AppendJsonEscaped(r.request_id, &line);
    line += '"';
  }
  line += r.json_fields;
  line += "}\n";
  return line;
}

void LogMessageWithFields(LogLevel level, const char* subsystem, std::string_view message,
                          std::string_view json_fields) {
  LogRecord record;
  record.time = std::chrono::system_clock::now();
  record.level = level;
  record.host = HostName();
  record.pid = static_cast<int>(getpid());
  record.rank = g_rank.load();
  record.subsystem = subsystem;
  record.message = message;
  record.request_id = t_request_id;
  record.json_fields = json_fields;
  const std::string line = FormatLogLine(record, GetLogFormat());
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void LogMessage(LogLevel level, const char* subsystem, const char* fmt, ...) {
  char body[2048];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(body, sizeof(body), fmt, args);
  va_end(args);
  LogMessageWithFields(level, subsystem, body, {});
}

const std::string& LogHostName() { return HostName(); }

}  // namespace switchyard
