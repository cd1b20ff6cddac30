// ServingMetrics: the standard serving metric set under the `switchyard:` prefix, named like
// vLLM's (`vllm:` -> `switchyard:`, label `model_name`) so existing dashboards port by a rename,
// plus MoE series: per-layer expert load and balancedness, dispatch/combine bytes and seconds per
// transport link.
//
// Construct once per process with the registry GET /metrics renders. All methods are thread-safe
// and lock-free on the hot path (Observe*/Add*/Set*), except RequestFinished with a new reason,
// UpdateExpertLoads with a new layer/expert and AddLinkStats with a new link, which create series
// under a mutex once.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "coordinator/metrics/metrics.h"

namespace switchyard::metrics {

// Per-link transfer totals a worker reports (bytes it sent to `dst_rank`, seconds it spent in the
// dispatch/combine collectives that included that link). Increments, not running totals.
struct LinkStatsDelta {
  int src_rank = 0;
  int dst_rank = 0;
  uint64_t dispatch_bytes = 0;
  uint64_t combine_bytes = 0;
  double dispatch_seconds = 0.0;
  double combine_seconds = 0.0;
};

class ServingMetrics {
 public:
  // Registers every family in `registry` (which must outlive this object) and creates the
  // label-only series for `model_name`. Errors: those of Registry::Add* (e.g. a family of the
  // same name already registered with another type).
  static StatusOr<std::unique_ptr<ServingMetrics>> Create(Registry* registry,
                                                          const std::string& model_name);

  // Latency histograms, in seconds (monotonic clock intervals).
  void ObserveTimeToFirstToken(double seconds) { ttft_->Observe(seconds); }
  // Per output token after the first; also recorded as time_per_output_token_seconds.
  void ObserveInterTokenLatency(double seconds) {
    itl_->Observe(seconds);
    tpot_->Observe(seconds);
  }
  void ObserveE2eLatency(double seconds) { e2e_->Observe(seconds); }
  void ObserveQueueTime(double seconds) { queue_->Observe(seconds); }

  void AddPromptTokens(int64_t n) { prompt_tokens_->Inc(static_cast<double>(n)); }
  void AddGenerationTokens(int64_t n) { generation_tokens_->Inc(static_cast<double>(n)); }

  // One finished request: counts request_success_total{finished_reason} ("stop", "length",
  // "abort", ...) and observes request_prompt_tokens / request_generation_tokens.
  // Errors: InvalidArgument for an empty reason.
  Status RequestFinished(const std::string& finished_reason, int64_t prompt_tokens,
                         int64_t generation_tokens);

  void SetRequestsRunning(int64_t n) { running_->Set(static_cast<double>(n)); }
  void SetRequestsWaiting(int64_t n) { waiting_->Set(static_cast<double>(n)); }
  // Fraction of KV-cache blocks in use, 0..1.
  void SetKvCacheUsage(double fraction) { kv_usage_->Set(fraction); }

  // Expert loads [MoE layer index][logical expert] (e.g. ExpertLoadWindow::Totals()): sets
  // switchyard:expert_load{layer,expert} and switchyard:expert_balancedness{layer} = max/mean
  // (1.0 is perfect balance; 0 when a layer saw no tokens). `layer_ids[i]`, when given, is the
  // model layer number shown for row i (else i). Errors: InvalidArgument when `layer_ids` is
  // non-empty and its size differs from loads.size(), or a load is negative/NaN.
  Status UpdateExpertLoads(const std::vector<std::vector<double>>& loads,
                           const std::vector<int32_t>& layer_ids = {});

  // Adds one worker's per-link increments: switchyard:{dispatch,combine}_bytes_total{link} and
  // switchyard:{dispatch,combine}_seconds_total{link}, link = "src->dst".
  // Errors: InvalidArgument for negative ranks or negative/NaN seconds.
  Status AddLinkStats(const LinkStatsDelta& delta);

  // The same counters from cumulative totals as a worker reports them (e.g. worker/
  // DistributedExpertRunner::link_traffic() in its step reply; `totals` holds totals, not
  // increments): adds the growth since the previous call for the same link; a total below the
  // previous one (a restarted worker) counts from zero. Takes a mutex (step rate, not token rate).
  // Errors: as AddLinkStats.
  Status ObserveLinkTotals(const LinkStatsDelta& totals);

 private:
  ServingMetrics() = default;
  Status Init(Registry* registry, const std::string& model_name);

  std::string model_name_;
  Histogram *ttft_ = nullptr, *itl_ = nullptr, *tpot_ = nullptr, *e2e_ = nullptr, *queue_ = nullptr,
            *req_prompt_ = nullptr, *req_gen_ = nullptr;
  Counter *prompt_tokens_ = nullptr, *generation_tokens_ = nullptr;
  Gauge *running_ = nullptr, *waiting_ = nullptr, *kv_usage_ = nullptr;
  CounterFamily* success_ = nullptr;
  GaugeFamily *expert_load_ = nullptr, *balancedness_ = nullptr;
  CounterFamily *dispatch_bytes_ = nullptr, *combine_bytes_ = nullptr, *dispatch_seconds_ = nullptr,
                *combine_seconds_ = nullptr;
  std::mutex totals_mu_;
  std::map<std::pair<int, int>, LinkStatsDelta> last_totals_;  // by (src, dst)
};

}  // namespace switchyard::metrics
