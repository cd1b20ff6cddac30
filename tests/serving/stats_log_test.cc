// StatsLogger: the periodic serving stats line, driven by a FakeClock: when it is due, what it
// averages over, the text and the JSON fields, DEBUG for idle intervals, off with interval 0.
#include "coordinator/serving/stats_log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <vector>

namespace switchyard {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct Captured {
  std::vector<ServingStats> stats;
  std::vector<LogLevel> levels;
  StatsLogger::Sink Sink() {
    return [this](const ServingStats& s, LogLevel l) {
      stats.push_back(s);
      levels.push_back(l);
    };
  }
};

TEST(StatsLoggerTest, EmitsOncePerIntervalWithThroughputOverTheElapsedTime) {
  FakeClock clock;
  Captured got;
  StatsLogger logger(seconds(10), &clock, got.Sink());
  ASSERT_TRUE(logger.enabled());
  EXPECT_EQ(logger.time_to_due(), seconds(10));
  logger.AddTokens(300, 40);
  clock.Advance(seconds(4));
  EXPECT_FALSE(logger.Maybe(2, 1, 50, 200));
  EXPECT_EQ(logger.time_to_due(), seconds(6));
  logger.AddTokens(200, 60);
  clock.Advance(seconds(6) + milliseconds(2500));  // a late check: averages over 12.5 s
  EXPECT_TRUE(logger.Maybe(2, 1, 50, 200));
  ASSERT_EQ(got.stats.size(), 1u);
  const ServingStats& s = got.stats[0];
  EXPECT_DOUBLE_EQ(s.interval_s, 12.5);
  EXPECT_EQ(s.prompt_tokens, 500);
  EXPECT_EQ(s.generation_tokens, 100);
  EXPECT_DOUBLE_EQ(s.prompt_tokens_per_s(), 40.0);
  EXPECT_DOUBLE_EQ(s.generation_tokens_per_s(), 8.0);
  EXPECT_DOUBLE_EQ(s.kv_cache_usage_pct(), 25.0);
  EXPECT_EQ(got.levels[0], LogLevel::kInfo);
  EXPECT_EQ(FormatServingStats(s),
            "Avg prompt throughput: 40.0 tokens/s, Avg generation throughput: 8.0 tokens/s, "
            "Running: 2 reqs, Waiting: 1 reqs, KV cache usage: 25.0%");
  // The counts restart; a fully idle interval is DEBUG.
  EXPECT_FALSE(logger.Maybe(0, 0, 0, 200));
  clock.Advance(seconds(10));
  EXPECT_TRUE(logger.Maybe(0, 0, 0, 200));
  ASSERT_EQ(got.stats.size(), 2u);
  EXPECT_EQ(got.stats[1].prompt_tokens, 0);
  EXPECT_EQ(got.stats[1].generation_tokens, 0);
  EXPECT_EQ(got.levels[1], LogLevel::kDebug);
  // Something running but no tokens (e.g. a long step in progress) is still INFO.
  clock.Advance(seconds(10));
  EXPECT_TRUE(logger.Maybe(1, 0, 10, 200));
  EXPECT_EQ(got.levels[2], LogLevel::kInfo);
}

TEST(StatsLoggerTest, IntervalZeroIsOff) {
  FakeClock clock;
  Captured got;
  StatsLogger logger(milliseconds(0), &clock, got.Sink());
  EXPECT_FALSE(logger.enabled());
  logger.AddTokens(5, 5);
  clock.Advance(seconds(3600));
  EXPECT_FALSE(logger.Maybe(1, 1, 1, 2));
  EXPECT_TRUE(got.stats.empty());
}

TEST(StatsLoggerTest, JsonLineHasTheLogFieldsAndTheNumbers) {
  ServingStats s;
  s.interval_s = 10;
  s.prompt_tokens = 1234;
  s.generation_tokens = 56;
  s.running = 3;
  s.waiting = 2;
  s.kv_used_tokens = 1;
  s.kv_capacity_tokens = 3;
  const auto time = std::chrono::system_clock::time_point(seconds(1700000000) + milliseconds(42));
  const std::string line = FormatServingStatsJson(s, LogLevel::kInfo, time);
  ASSERT_FALSE(line.empty());
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1) << "one line";
  auto j = nlohmann::json::parse(line, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << line;
  EXPECT_EQ(j["ts"], "2023-11-14T22:13:20.042Z");
  EXPECT_EQ(j["level"], "INFO");
  EXPECT_EQ(j["subsystem"], "stats");
  EXPECT_TRUE(j["rank"].is_null());
  EXPECT_TRUE(j["pid"].is_number_integer());
  EXPECT_EQ(j["msg"], FormatServingStats(s));
  EXPECT_DOUBLE_EQ(j["prompt_tokens_per_s"].get<double>(), 123.4);
  EXPECT_DOUBLE_EQ(j["generation_tokens_per_s"].get<double>(), 5.6);
  EXPECT_EQ(j["running"], 3);
  EXPECT_EQ(j["waiting"], 2);
  EXPECT_NEAR(j["kv_cache_usage_pct"].get<double>(), 33.333, 1e-9);
  EXPECT_DOUBLE_EQ(j["interval_s"].get<double>(), 10.0);
}

}  // namespace
}  // namespace switchyard
