#include "coordinator/serving/serving_metrics.h"

#include <algorithm>

#include "common/logging.h"

namespace switchyard {

StatusOr<std::unique_ptr<ServingMetrics>> ServingMetrics::Create(const std::string& model_name) {
  std::unique_ptr<ServingMetrics> m(new ServingMetrics());
  ASSIGN_OR_RETURN(m->serving_, metrics::ServingMetrics::Create(&m->registry_, model_name));
  ASSIGN_OR_RETURN(m->http_, m->registry_.AddCounter("switchyard:http_requests_total",
                                                     "HTTP responses by handler, method, status.",
                                                     {"handler", "method", "status"}));
  return m;
}

void ServingMetrics::OnScheduled(double queue_seconds) {
  serving_->ObserveQueueTime(queue_seconds);
}

void ServingMetrics::OnFinished(const std::string& reason, int64_t prompt_tokens,
                                int64_t generation_tokens, double ttft_seconds,
                                double e2e_seconds) {
  serving_->AddPromptTokens(prompt_tokens);
  serving_->AddGenerationTokens(generation_tokens);
  if (generation_tokens > 0) serving_->ObserveTimeToFirstToken(ttft_seconds);
  serving_->ObserveE2eLatency(e2e_seconds);
  Status s = serving_->RequestFinished(reason, prompt_tokens, generation_tokens);
  if (!s.ok()) LOG_WARN("serving", "metrics: %s", s.ToString().c_str());
}

void ServingMetrics::OnInterToken(double seconds) { serving_->ObserveInterTokenLatency(seconds); }

void ServingMetrics::SetQueue(int64_t running, int64_t waiting) {
  serving_->SetRequestsRunning(running);
  serving_->SetRequestsWaiting(waiting);
}

void ServingMetrics::SetKvCache(int64_t used_tokens, int64_t capacity_tokens) {
  serving_->SetKvCacheUsage(capacity_tokens > 0 ? static_cast<double>(used_tokens) /
                                                      static_cast<double>(capacity_tokens)
                                                : 0.0);
}

Status ServingMetrics::ObserveLinkTraffic(const std::vector<LinkTrafficTotals>& by_source_rank) {
  for (size_t src = 0; src < by_source_rank.size(); ++src) {
    const LinkTrafficTotals& t = by_source_rank[src];
    for (size_t dst = 0; dst < t.dispatch_bytes.size() && dst < t.combine_bytes.size(); ++dst) {
      if (dst == src) continue;
      metrics::LinkStatsDelta totals;
      totals.src_rank = static_cast<int>(src);
      totals.dst_rank = static_cast<int>(dst);
      totals.dispatch_bytes = static_cast<uint64_t>(std::max<int64_t>(0, t.dispatch_bytes[dst]));
      totals.combine_bytes = static_cast<uint64_t>(std::max<int64_t>(0, t.combine_bytes[dst]));
      totals.dispatch_seconds = t.dispatch_seconds;
      totals.combine_seconds = t.combine_seconds;
      RETURN_IF_ERROR(serving_->ObserveLinkTotals(totals));
    }
  }
  return OkStatus();
}

Status ServingMetrics::SetExpertLoads(const std::vector<std::vector<double>>& loads,
                                      const std::vector<int32_t>& layer_ids) {
  return serving_->UpdateExpertLoads(loads, layer_ids);
}

void ServingMetrics::OnHttp(const std::string& handler, const std::string& method, int status) {
  auto c = http_->WithLabels({handler, method, std::to_string(status)});
  if (c.ok()) (*c)->Inc();
}

}  // namespace switchyard
