// StatsLogger: the serving loop's periodic stats line, like vLLM's ("Avg prompt throughput: ...
// tokens/s, Avg generation throughput: ... tokens/s, Running: N reqs, Waiting: N reqs, KV cache
// usage: P%"), every `interval` (0 = off). In the JSON log format the numbers are also fields of
// the line: prompt_tokens_per_s, generation_tokens_per_s, running, waiting, kv_cache_usage_pct,
// interval_s. An interval in which nothing ran, waited or was processed logs at DEBUG, else INFO.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "common/logging.h"
#include "coordinator/control/control_channel.h"

namespace switchyard {

// What one stats line reports.
struct ServingStats {
  double interval_s = 0;           // length of the interval the throughputs average over
  int64_t prompt_tokens = 0;       // prompt tokens forwarded in the interval
  int64_t generation_tokens = 0;   // tokens generated in the interval
  int64_t running = 0;             // requests running at the end of the interval
  int64_t waiting = 0;             // requests queued at the end of the interval
  int64_t kv_used_tokens = 0;      // KV positions cached over all workers
  int64_t kv_capacity_tokens = 0;  // their summed budgets
  double prompt_tokens_per_s() const { return interval_s > 0 ? prompt_tokens / interval_s : 0; }
  double generation_tokens_per_s() const {
    return interval_s > 0 ? generation_tokens / interval_s : 0;
  }
  double kv_cache_usage_pct() const {
    return kv_capacity_tokens > 0 ? 100.0 * kv_used_tokens / kv_capacity_tokens : 0;
  }
  // True when the interval saw no work at all (the line is then DEBUG).
  bool idle() const {
    return prompt_tokens == 0 && generation_tokens == 0 && running == 0 && waiting == 0;
  }
};

// The text of the line (the message, without the log prefix). Pure.
std::string FormatServingStats(const ServingStats& stats);
// The numeric fields listed above as JSON members (`,"prompt_tokens_per_s":...`), for
// LogRecord::json_fields. Pure.
std::string ServingStatsJsonFields(const ServingStats& stats);
// The complete JSON log line (with '\n') for `stats`: the standard fields of common/logging.h's
// JSON format (subsystem "stats", rank null: the coordinator), "msg" = FormatServingStats, plus
// the numeric fields listed above. Pure apart from the host name.
std::string FormatServingStatsJson(const ServingStats& stats, LogLevel level,
                                   std::chrono::system_clock::time_point time);
// Writes the line to the log (stderr) in the process's log format, when `level` is enabled
// (the numeric fields only in JSON mode; the rank is the process's log rank).
// Thread-safe (one write per line).
void WriteServingStats(const ServingStats& stats, LogLevel level);

class StatsLogger {
 public:
  // Receives each due line; the default writes it with WriteServingStats.
  using Sink = std::function<void(const ServingStats&, LogLevel)>;

  // `interval` 0 disables the logger (Maybe never emits). `clock` must outlive the logger.
  StatsLogger(std::chrono::milliseconds interval, Clock* clock, Sink sink = {});

  bool enabled() const { return interval_.count() > 0; }
  // Adds tokens processed since the last line.
  void AddTokens(int64_t prompt_tokens, int64_t generation_tokens);
  // Emits a line when an interval has passed since the previous one (or the construction), with
  // the tokens added meanwhile over the time actually elapsed and the given current state, then
  // starts a new interval. Returns whether it emitted.
  bool Maybe(int64_t running, int64_t waiting, int64_t kv_used_tokens, int64_t kv_capacity_tokens);
  // Time left on the logger's clock until the next line is due (>= 0; for an idle loop's
  // wake-up); meaningless when disabled.
  std::chrono::nanoseconds time_to_due() const {
    return std::max<std::chrono::nanoseconds>(last_ + interval_ - clock_->Now(), {});
  }

  // Not thread-safe: the serving thread owns the logger.
 private:
  std::chrono::milliseconds interval_;
  Clock* clock_;
  Sink sink_;
  TransportClock::time_point last_;
  int64_t prompt_tokens_ = 0;
  int64_t generation_tokens_ = 0;
};

}  // namespace switchyard
