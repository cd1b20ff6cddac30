// Logging: text lines byte-identical to the historical format, JSON lines (one object per line,
// escaping, invalid UTF-8 replaced), request ids through ScopedRequestId.
#include "common/logging.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <string>
#include <thread>

#include "common/runtime_config.h"

namespace switchyard {
namespace {

// 2026-01-02T03:04:05.678Z as a system_clock time point.
std::chrono::system_clock::time_point FixedTime() {
  std::tm tm{};
  tm.tm_year = 2026 - 1900;
  tm.tm_mon = 0;
  tm.tm_mday = 2;
  tm.tm_hour = 3;
  tm.tm_min = 4;
  tm.tm_sec = 5;
  return std::chrono::system_clock::from_time_t(timegm(&tm)) + std::chrono::milliseconds(678);
}

LogRecord Record(std::string_view msg) {
  LogRecord r;
  r.time = FixedTime();
  r.level = LogLevel::kWarn;
  r.host = "node7";
  r.pid = 4242;
  r.rank = 3;
  r.subsystem = "worker";
  r.message = msg;
  return r;
}

class TzGuard {
 public:
  TzGuard() {
    const char* old = std::getenv("TZ");
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv("TZ", "UTC", 1);
    tzset();
  }
  ~TzGuard() {
    if (had_) {
      setenv("TZ", old_.c_str(), 1);
    } else {
      unsetenv("TZ");
    }
    tzset();
  }

 private:
  bool had_ = false;
  std::string old_;
};

TEST(LoggingText, MatchesHistoricalFormat) {
  TzGuard tz;
  // The exact layout of "%s.%03d %-5s %s:%d rank %s [%s] %s\n" used before JSON mode existed.
  EXPECT_EQ(FormatLogLine(Record("loaded 3 shards"), LogFormat::kText),
            "03:04:05.678 WARN  node7:4242 rank 3 [worker] loaded 3 shards\n");
  LogRecord r = Record("x");
  r.rank = -1;
  r.level = LogLevel::kError;
  EXPECT_EQ(FormatLogLine(r, LogFormat::kText),
            "03:04:05.678 ERROR node7:4242 rank - [worker] x\n");
}

TEST(LoggingText, RequestIdBeforeMessage) {
  TzGuard tz;
  LogRecord r = Record("first token");
  r.request_id = "cmpl-7";
  EXPECT_EQ(FormatLogLine(r, LogFormat::kText),
            "03:04:05.678 WARN  node7:4242 rank 3 [worker] req=cmpl-7 first token\n");
}

TEST(LoggingJson, GoldenLine) {
  EXPECT_EQ(FormatLogLine(Record("loaded 3 shards"), LogFormat::kJson),
            "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"WARN\",\"host\":\"node7\","
            "\"pid\":4242,\"rank\":3,\"subsystem\":\"worker\",\"msg\":\"loaded 3 shards\"}\n");
  LogRecord r = Record("m");
  r.rank = -1;
  r.request_id = "req \"1\"";
  EXPECT_EQ(FormatLogLine(r, LogFormat::kJson),
            "{\"ts\":\"2026-01-02T03:04:05.678Z\",\"level\":\"WARN\",\"host\":\"node7\","
            "\"pid\":4242,\"rank\":null,\"subsystem\":\"worker\",\"msg\":\"m\","
            "\"request_id\":\"req \\\"1\\\"\"}\n");
}

std::string Escaped(std::string_view in) {
  std::string out;
  AppendJsonEscaped(in, &out);
  return out;
}

TEST(LoggingJson, EscapesQuotesBackslashesAndControls) {
  EXPECT_EQ(Escaped("a\"b\\c"), "a\\\"b\\\\c");
  EXPECT_EQ(Escaped("l1\nl2\r\t\b\f"), "l1\\nl2\\r\\t\\b\\f");
  EXPECT_EQ(Escaped(std::string_view("\x01\x1f\0", 3)), "\\u0001\\u001f\\u0000");
  EXPECT_EQ(Escaped("\x7f"), "\x7f");  // DEL is legal in JSON strings
}

TEST(LoggingJson, Utf8PassesThroughInvalidReplaced) {
  EXPECT_EQ(Escaped("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"),
            "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  const std::string kFffd = "\xEF\xBF\xBD";
  EXPECT_EQ(Escaped("a\xFF"
                    "b"),
            "a" + kFffd + "b");                                           // never-valid byte
  EXPECT_EQ(Escaped("\xC3"), kFffd);                                      // truncated sequence
  EXPECT_EQ(Escaped("\xC0\xAF"), kFffd + kFffd);                          // overlong '/'
  EXPECT_EQ(Escaped("\xED\xA0\x80"), kFffd + kFffd + kFffd);              // UTF-16 surrogate
  EXPECT_EQ(Escaped("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // above U+10FFFF
  EXPECT_EQ(Escaped("\xE2\x82"
                    "x"),
            kFffd + kFffd + "x");  // bad continuation: resynchronise at 'x'
}

TEST(LoggingFormat, Parse) {
  LogFormat f = LogFormat::kText;
  EXPECT_TRUE(ParseLogFormat("JSON", &f));
  EXPECT_EQ(f, LogFormat::kJson);
  EXPECT_TRUE(ParseLogFormat("text", &f));
  EXPECT_EQ(f, LogFormat::kText);
  EXPECT_FALSE(ParseLogFormat("yaml", &f));
  EXPECT_EQ(f, LogFormat::kText);
}

TEST(LoggingFormat, RuntimeConfigKeyAndEnv) {
  RuntimeConfig config;
  EXPECT_EQ(config.log_format, "text");
  ASSERT_TRUE(ParseRuntimeConfigYaml("log_format: json\n", "t.yaml", &config).ok());
  EXPECT_EQ(config.log_format, "json");
  EXPECT_NE(RuntimeConfigToYaml(config).find("log_format: json\n"), std::string::npos);
  RuntimeConfig bad;
  Status s = ParseRuntimeConfigYaml("log_format: xml\n", "t.yaml", &bad);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("t.yaml"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("log_format 'xml'"), std::string::npos) << s.ToString();
  setenv("SWITCHYARD_LOG_FORMAT", "JSON", 1);
  RuntimeConfig env;
  Status e = ApplyRuntimeConfigEnv(&env);
  unsetenv("SWITCHYARD_LOG_FORMAT");
  ASSERT_TRUE(e.ok()) << e.ToString();
  EXPECT_EQ(env.log_format, "JSON");
}

TEST(RequestId, NestsAndIsPerThread) {
  EXPECT_EQ(CurrentRequestId(), "");
  {
    ScopedRequestId outer("a");
    EXPECT_EQ(CurrentRequestId(), "a");
    {
      ScopedRequestId inner("b");
      EXPECT_EQ(CurrentRequestId(), "b");
      std::string seen = "unset";
      std::thread t([&] { seen = CurrentRequestId(); });
      t.join();
      EXPECT_EQ(seen, "");
    }
    EXPECT_EQ(CurrentRequestId(), "a");
  }
  EXPECT_EQ(CurrentRequestId(), "");
}

TEST(LogMessage, WritesJsonLineWithRequestIdToStderr) {
  const LogFormat saved_format = GetLogFormat();
  const LogLevel saved_level = GetLogLevel();
  SetLogLevel(LogLevel::kInfo);
  SetLogFormat(LogFormat::kJson);
  SetLogRank(5);
  testing::internal::CaptureStderr();
  {
    ScopedRequestId id("cmpl-42");
    LOG_INFO("http", "done \"%s\"\n", "ok");
  }
  LOG_DEBUG("http", "below threshold");
  const std::string out = testing::internal::GetCapturedStderr();
  SetLogFormat(saved_format);
  SetLogLevel(saved_level);
  SetLogRank(-1);

  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find('\n'), out.size() - 1) << "exactly one line: " << out;
  EXPECT_EQ(out.rfind("{\"ts\":\"", 0), 0u) << out;
  EXPECT_NE(out.find("\"level\":\"INFO\""), std::string::npos) << out;
  EXPECT_NE(out.find("\"pid\":" + std::to_string(getpid()) + ",\"rank\":5,"), std::string::npos);
  EXPECT_NE(out.find("\"subsystem\":\"http\",\"msg\":\"done \\\"ok\\\"\\n\""), std::string::npos)
      << out;
  EXPECT_NE(out.find("\"request_id\":\"cmpl-42\"}\n"), std::string::npos) << out;
}

TEST(LogMessage, TextModeHasNoRequestIdWithoutGuard) {
  const LogFormat saved_format = GetLogFormat();
  SetLogFormat(LogFormat::kText);
  testing::internal::CaptureStderr();
  LOG_WARN("cfg", "plain %d", 7);
  const std::string out = testing::internal::GetCapturedStderr();
  SetLogFormat(saved_format);
  EXPECT_NE(out.find(" WARN  "), std::string::npos) << out;
  EXPECT_NE(out.find(":" + std::to_string(getpid()) + " rank - [cfg] plain 7\n"), std::string::npos)
      << out;
  EXPECT_EQ(out.find("req="), std::string::npos) << out;
}

}  // namespace
}  // namespace switchyard
