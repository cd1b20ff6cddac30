#include "coordinator/serving/stats_log.h"

#include <unistd.h>

#include <cstdio>

namespace switchyard {
namespace {

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

}  // namespace

std::string FormatServingStats(const ServingStats& s) {
  return "Avg prompt throughput: " + Fixed(s.prompt_tokens_per_s(), 1) +
         " tokens/s, Avg generation throughput: " + Fixed(s.generation_tokens_per_s(), 1) +
         " tokens/s, Running: " + std::to_string(s.running) +
         " reqs, Waiting: " + std::to_string(s.waiting) +
         " reqs, KV cache usage: " + Fixed(s.kv_cache_usage_pct(), 1) + "%";
}

// The figures as JSON members for LogRecord::json_fields.
std::string ServingStatsJsonFields(const ServingStats& s) {
  return ",\"prompt_tokens_per_s\":" + Fixed(s.prompt_tokens_per_s(), 3) +
         ",\"generation_tokens_per_s\":" + Fixed(s.generation_tokens_per_s(), 3) +
         ",\"running\":" + std::to_string(s.running) + ",\"waiting\":" + std::to_string(s.waiting) +
         ",\"kv_cache_usage_pct\":" + Fixed(s.kv_cache_usage_pct(), 3) +
         ",\"interval_s\":" + Fixed(s.interval_s, 3);
}

std::string FormatServingStatsJson(const ServingStats& s, LogLevel level,
                                   std::chrono::system_clock::time_point time) {
  const std::string msg = FormatServingStats(s);
  const std::string fields = ServingStatsJsonFields(s);
  LogRecord record;
  record.time = time;
  record.level = level;
  record.host = LogHostName();
  record.pid = static_cast<int>(getpid());
  record.rank = -1;  // the serving loop runs in the coordinator, which is no worker rank
  record.subsystem = "stats";
  record.message = msg;
  record.json_fields = fields;
  return FormatLogLine(record, LogFormat::kJson);
}

void WriteServingStats(const ServingStats& stats, LogLevel level) {
  if (!LogEnabled(level)) return;
  LogMessageWithFields(level, "stats", FormatServingStats(stats), ServingStatsJsonFields(stats));
}

StatsLogger::StatsLogger(std::chrono::milliseconds interval, Clock* clock, Sink sink)
    : interval_(interval), clock_(clock), sink_(std::move(sink)), last_(clock->Now()) {
  if (!sink_) sink_ = WriteServingStats;
}

void StatsLogger::AddTokens(int64_t prompt_tokens, int64_t generation_tokens) {
  prompt_tokens_ += prompt_tokens;
  generation_tokens_ += generation_tokens;
}

bool StatsLogger::Maybe(int64_t running, int64_t waiting, int64_t kv_used_tokens,
                        int64_t kv_capacity_tokens) {
  if (!enabled()) return false;
  const auto now = clock_->Now();
  if (now < last_ + interval_) return false;
  ServingStats s;
  s.interval_s = std::chrono::duration<double>(now - last_).count();
  s.prompt_tokens = prompt_tokens_;
  s.generation_tokens = generation_tokens_;
  s.running = running;
  s.waiting = waiting;
  s.kv_used_tokens = kv_used_tokens;
  s.kv_capacity_tokens = kv_capacity_tokens;
  sink_(s, s.idle() ? LogLevel::kDebug : LogLevel::kInfo);
  last_ = now;
  prompt_tokens_ = generation_tokens_ = 0;
  return true;
}

}  // namespace switchyard
