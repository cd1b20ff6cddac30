// ServingEngine: continuous batching on the coordinator. A serving thread admits requests from
// a bounded queue between steps, in order, each on the least-loaded worker while its prompt +
// max_new_tokens fit that worker's remaining KV budget (Coordinator::kv_cache_tokens; the head of
// the queue waits for running requests to finish otherwise), runs lockstep steps
// (the workers chunk prefill by max_batch_tokens and step decodes first, so a long prompt does
// not stall running decodes), decodes every token to text, applies stop sequences, and hands
// each request's output to its callback. Requests join and leave between steps; Cancel drops a
// request and frees its KV cache on its worker at the next step. While idle it sends an empty
// step every keepalive interval so worker failures are noticed and workers do not time out.
// Metrics (ServingMetrics): queue gauges and KV-cache usage after every step, expert loads and
// per-link dispatch/combine counters every few steps and whenever nothing is left running. A
// stats line (StatsLogger) every stats_interval.
//
// A worker failure fails every queued and running request with the error; healthy() turns false
// and further Submit calls get Unavailable.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/status.h"
#include "coordinator/coordinator.h"
#include "coordinator/serving/serving_metrics.h"
#include "coordinator/serving/stats_log.h"
#include "model/tokenizer.h"

namespace switchyard {

struct ServeRequest {
  GenerationRequest gen;          // prompt ids, max_new_tokens, sampling, ignore_eos
  std::vector<std::string> stop;  // OpenAI stop sequences (text), checked on decoded text
};

// What the callback receives: new text (possibly empty) with the number of tokens behind it,
// and once, the end (finished = true) with the reason and the totals.
struct ServeEvent {
  std::string text;
  int64_t new_tokens = 0;
  bool finished = false;
  std::string finish_reason;  // stop | length | abort | error
  Status error;               // when finish_reason == "error"
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// Called on the serving thread: must be quick and must not call back into the engine except
// Cancel. After the finished event it is never called again.
using ServeCallback = std::function<void(const ServeEvent&)>;

struct ServingOptions {
  int64_t max_queue = 256;    // waiting requests beyond which Submit answers ResourceExhausted
  int64_t max_running = 256;  // requests running over all workers at once
  std::chrono::milliseconds keepalive{5000};
  // Periodic stats log line (throughputs, running, waiting, KV-cache usage); 0 = off.
  std::chrono::milliseconds stats_interval{10000};
  Clock* stats_clock = nullptr;  // time source of the stats line; nullptr = SteadyClock()
  StatsLogger::Sink stats_sink;  // where stats lines go; empty = the log (WriteServingStats)
};

class ServingEngine {
 public:
  // `coordinator` (started) and `tokenizer` and `metrics` must outlive the engine. Starts the
  // serving thread.
  ServingEngine(Coordinator* coordinator, const Tokenizer* tokenizer, ServingMetrics* metrics,
                ServingOptions options);
  // Stops the serving thread; requests still open get finish_reason "abort".
  ~ServingEngine();

  // Queues a request; returns its id. Errors: InvalidArgument (what is wrong, from the
  // coordinator's checks, e.g. larger than a worker's whole KV budget), ResourceExhausted (queue
  // full: retry later), Unavailable (a worker failed or the engine stopped). Thread-safe, never
  // blocks on compute.
  StatusOr<int64_t> Submit(ServeRequest request, ServeCallback callback);

  // Drops the request (queued or running): its callback gets a final "abort" event and its KV
  // cache is freed at the next step. Unknown or finished ids are ignored. Thread-safe.
  void Cancel(int64_t id);

  // False after a worker failure or once stopped. Thread-safe.
  bool healthy() const;

 private:
  struct Active;
  void Loop();
  void Admit(std::vector<std::vector<WorkRequest>>* add);
  void TakeCancels(std::vector<std::vector<int64_t>>* release);
  void OnToken(Active& a, const TokenOut& t);
  void Finish(int64_t id, const std::string& reason, const Status& error = OkStatus());
  void FailAll(const Status& error);
  void PublishQueue();
  // Throughput counts, KV gauge and (every few steps / when idle) the slow metrics of a step.
  void ObserveStep(const StepOutcome& step, int64_t decode_tokens, int64_t generated);
  int64_t Waiting() const;

  Coordinator* coordinator_;
  const Tokenizer* tokenizer_;
  ServingMetrics* metrics_;
  const ServingOptions options_;

  mutable std::mutex mu_;  // guards the fields below up to `stop_`
  std::condition_variable wake_;
  std::deque<std::unique_ptr<Active>> queue_;
  std::set<int64_t> cancels_;
  int64_t next_id_ = 0;
  bool stop_ = false;
  bool failed_ = false;

  // Serving thread only.
  std::map<int64_t, std::unique_ptr<Active>> running_;
  std::vector<int64_t> worker_load_;  // prompt + max_new_tokens of running requests, by rank
  std::vector<std::vector<int64_t>> release_next_;  // finished here, still on the worker
  static constexpr int kLoadMetricsEverySteps = 16;
  int steps_since_loads_ = 0;              // serving thread only
  int64_t kv_used_ = 0, kv_capacity_ = 0;  // after the last step, over all workers
  StatsLogger stats_;                      // serving thread only
  std::thread thread_;
};

}  // namespace switchyard
