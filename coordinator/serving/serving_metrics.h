// ServingMetrics: what the serving layer (engine and HTTP server) reports, forwarded to the shared
// metrics registry (coordinator/metrics): the vLLM-style `switchyard:` serving set
// (metrics::ServingMetrics) plus switchyard:http_requests_total{handler,method,status}.
// The serving code calls only this adapter, so the registry's API can change in one place.
// All methods are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/control/protocol.h"
#include "coordinator/metrics/metrics.h"
#include "coordinator/metrics/serving_metrics.h"

namespace switchyard {

class ServingMetrics {
 public:
  // Registers the families in a registry of its own. Errors: the registry's.
  static StatusOr<std::unique_ptr<ServingMetrics>> Create(const std::string& model_name);

  // A request left the admission queue for a worker after `queue_seconds`.
  void OnScheduled(double queue_seconds);
  // A request finished: `reason` is stop | length | abort | error.
  void OnFinished(const std::string& reason, int64_t prompt_tokens, int64_t generation_tokens,
                  double ttft_seconds, double e2e_seconds);
  // One generated token after the first (seconds since the previous one).
  void OnInterToken(double seconds);
  // Current numbers of running (holding KV cache on a worker) and waiting requests.
  void SetQueue(int64_t running, int64_t waiting);
  // KV positions cached over all workers and their summed budgets:
  // switchyard:kv_cache_usage_perc = used / capacity (0 when capacity is 0).
  void SetKvCache(int64_t used_tokens, int64_t capacity_tokens);
  // The workers' cumulative link traffic, [source rank] (StepOutcome::link_traffic): feeds
  // switchyard:{dispatch,combine}_{bytes,seconds}_total{link="src->dst"} for every src != dst
  // with the growth since the previous call (the seconds of a collective count for each of its
  // links). Errors: the registry's (negative values), naming the link.
  Status ObserveLinkTraffic(const std::vector<LinkTrafficTotals>& by_source_rank);
  // Expert loads of the coordinator's sliding window, [MoE layer][expert], with the model layer
  // number of each row: switchyard:expert_load{layer,expert} and
  // switchyard:expert_balancedness{layer} (max/mean). Errors: the registry's (bad sizes/values).
  Status SetExpertLoads(const std::vector<std::vector<double>>& loads,
                        const std::vector<int32_t>& layer_ids);
  // One HTTP response: handler path, method, status code.
  void OnHttp(const std::string& handler, const std::string& method, int status);

  // Prometheus text exposition (content type metrics::kPrometheusContentType).
  std::string RenderPrometheus() const { return registry_.RenderPrometheus(); }

 private:
  ServingMetrics() = default;
  metrics::Registry registry_;
  std::unique_ptr<metrics::ServingMetrics> serving_;
  metrics::CounterFamily* http_ = nullptr;
};

}  // namespace switchyard
