#include "coordinator/metrics/serving_metrics.h"

#include <algorithm>
#include <cmath>

namespace switchyard::metrics {
namespace {

// Bucket bounds as vLLM v1 uses them, so dashboards and SLO queries port unchanged.
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                          0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                          20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kItlBuckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                         0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> kE2eBuckets = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                         5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                         60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

// 1, 2, 5, 10, 20, 50, ... up to 1M tokens (vLLM's build_1_2_5_buckets shape).
std::vector<double> TokenBuckets() {
  std::vector<double> out;
  for (double decade = 1; decade <= 1e6; decade *= 10) {
    for (double m : {1.0, 2.0, 5.0}) {
      if (m * decade <= 1e6) out.push_back(m * decade);
    }
  }
  return out;
}

Status ValidateLink(const LinkStatsDelta& d) {
  if (d.src_rank < 0 || d.dst_rank < 0 || !(d.dispatch_seconds >= 0) || !(d.combine_seconds >= 0)) {
    return InvalidArgumentError(
        "link stats for " + std::to_string(d.src_rank) + "->" + std::to_string(d.dst_rank) +
        ": ranks and seconds must be >= 0 (seconds " + FormatValue(d.dispatch_seconds) + ", " +
        FormatValue(d.combine_seconds) + ")");
  }
  return OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<ServingMetrics>> ServingMetrics::Create(Registry* registry,
                                                                 const std::string& model_name) {
  std::unique_ptr<ServingMetrics> m(new ServingMetrics());
  RETURN_IF_ERROR(m->Init(registry, model_name));
  return m;
}

Status ServingMetrics::Init(Registry* r, const std::string& model_name) {
  model_name_ = model_name;
  const std::vector<std::string> kModel = {"model_name"};
  const std::vector<std::string> kValue = {model_name};
  auto histogram = [&](const char* name, const char* help, const std::vector<double>& bounds,
                       Histogram** out) -> Status {
    ASSIGN_OR_RETURN(HistogramFamily * f, r->AddHistogram(name, help, bounds, kModel));
    ASSIGN_OR_RETURN(*out, f->WithLabels(kValue));
    return OkStatus();
  };
  auto counter = [&](const char* name, const char* help, Counter** out) -> Status {
    ASSIGN_OR_RETURN(CounterFamily * f, r->AddCounter(name, help, kModel));
    ASSIGN_OR_RETURN(*out, f->WithLabels(kValue));
    return OkStatus();
  };
  auto gauge = [&](const char* name, const char* help, Gauge** out) -> Status {
    ASSIGN_OR_RETURN(GaugeFamily * f, r->AddGauge(name, help, kModel));
    ASSIGN_OR_RETURN(*out, f->WithLabels(kValue));
    return OkStatus();
  };

  RETURN_IF_ERROR(gauge("switchyard:num_requests_running",
                        "Number of requests in model execution batches.", &running_));
  RETURN_IF_ERROR(gauge("switchyard:num_requests_waiting",
                        "Number of requests waiting to be "
                        "processed.",
                        &waiting_));
  RETURN_IF_ERROR(gauge("switchyard:kv_cache_usage_perc",
                        "KV-cache usage. 1 means 100 percent usage.", &kv_usage_));
  RETURN_IF_ERROR(counter("switchyard:prompt_tokens_total", "Number of prefill tokens processed.",
                          &prompt_tokens_));
  RETURN_IF_ERROR(counter("switchyard:generation_tokens_total",
                          "Number of generation tokens processed.", &generation_tokens_));
  ASSIGN_OR_RETURN(success_, r->AddCounter("switchyard:request_success_total",
                                           "Count of successfully processed requests.",
                                           {"model_name", "finished_reason"}));
  RETURN_IF_ERROR(histogram("switchyard:time_to_first_token_seconds",
                            "Histogram of time to first token in seconds.", kTtftBuckets, &ttft_));
  RETURN_IF_ERROR(histogram("switchyard:inter_token_latency_seconds",
                            "Histogram of inter-token latency in seconds.", kItlBuckets, &itl_));
  RETURN_IF_ERROR(histogram("switchyard:time_per_output_token_seconds",
                            "Histogram of time per output token in seconds (same samples as "
                            "inter_token_latency_seconds).",
                            kItlBuckets, &tpot_));
  RETURN_IF_ERROR(histogram("switchyard:e2e_request_latency_seconds",
                            "Histogram of end to end request latency in seconds.", kE2eBuckets,
                            &e2e_));
  RETURN_IF_ERROR(histogram("switchyard:request_queue_time_seconds",
                            "Histogram of time spent waiting in the queue in seconds.", kE2eBuckets,
                            &queue_));
  RETURN_IF_ERROR(histogram("switchyard:request_prompt_tokens",
                            "Number of prefill tokens processed per finished request.",
                            TokenBuckets(), &req_prompt_));
  RETURN_IF_ERROR(histogram("switchyard:request_generation_tokens",
                            "Number of generation tokens processed per finished request.",
                            TokenBuckets(), &req_gen_));

  ASSIGN_OR_RETURN(expert_load_,
                   r->AddGauge("switchyard:expert_load",
                               "Tokens routed to each logical expert over the load window.",
                               {"model_name", "layer", "expert"}));
  ASSIGN_OR_RETURN(balancedness_,
                   r->AddGauge("switchyard:expert_balancedness",
                               "Max over mean of the per-expert loads of a MoE layer over the "
                               "load window (1 is perfect balance).",
                               {"model_name", "layer"}));
  const std::vector<std::string> kLink = {"model_name", "link"};
  ASSIGN_OR_RETURN(dispatch_bytes_,
                   r->AddCounter("switchyard:dispatch_bytes_total",
                                 "Bytes sent in MoE dispatch, per link src->dst.", kLink));
  ASSIGN_OR_RETURN(combine_bytes_,
                   r->AddCounter("switchyard:combine_bytes_total",
                                 "Bytes sent in MoE combine, per link src->dst.", kLink));
  ASSIGN_OR_RETURN(dispatch_seconds_,
                   r->AddCounter("switchyard:dispatch_seconds_total",
                                 "Seconds the source rank spent in MoE dispatch collectives that "
                                 "included the link src->dst.",
                                 kLink));
  ASSIGN_OR_RETURN(combine_seconds_,
                   r->AddCounter("switchyard:combine_seconds_total",
                                 "Seconds the source rank spent in MoE combine collectives that "
                                 "included the link src->dst.",
                                 kLink));
  return OkStatus();
}

Status ServingMetrics::RequestFinished(const std::string& finished_reason, int64_t prompt_tokens,
                                       int64_t generation_tokens) {
  if (finished_reason.empty()) {
    return InvalidArgumentError("ServingMetrics::RequestFinished: empty finished_reason");
  }
  ASSIGN_OR_RETURN(Counter * c, success_->WithLabels({model_name_, finished_reason}));
  c->Inc();
  req_prompt_->Observe(static_cast<double>(prompt_tokens));
  req_gen_->Observe(static_cast<double>(generation_tokens));
  return OkStatus();
}

Status ServingMetrics::UpdateExpertLoads(const std::vector<std::vector<double>>& loads,
                                         const std::vector<int32_t>& layer_ids) {
  if (!layer_ids.empty() && layer_ids.size() != loads.size()) {
    return InvalidArgumentError("UpdateExpertLoads: " + std::to_string(layer_ids.size()) +
                                " layer ids for " + std::to_string(loads.size()) + " load rows");
  }
  for (size_t l = 0; l < loads.size(); ++l) {
    for (size_t e = 0; e < loads[l].size(); ++e) {
      if (!(loads[l][e] >= 0)) {
        return InvalidArgumentError("UpdateExpertLoads: load of row " + std::to_string(l) +
                                    " expert " + std::to_string(e) + " is " +
                                    FormatValue(loads[l][e]) + " (want >= 0)");
      }
    }
  }
  for (size_t l = 0; l < loads.size(); ++l) {
    const std::string layer =
        std::to_string(layer_ids.empty() ? static_cast<int64_t>(l) : layer_ids[l]);
    double total = 0, max = 0;
    for (size_t e = 0; e < loads[l].size(); ++e) {
      ASSIGN_OR_RETURN(Gauge * g,
                       expert_load_->WithLabels({model_name_, layer, std::to_string(e)}));
      g->Set(loads[l][e]);
      total += loads[l][e];
      max = std::max(max, loads[l][e]);
    }
    const double mean = loads[l].empty() ? 0.0 : total / static_cast<double>(loads[l].size());
    ASSIGN_OR_RETURN(Gauge * b, balancedness_->WithLabels({model_name_, layer}));
    b->Set(mean > 0 ? max / mean : 0.0);
  }
  return OkStatus();
}

Status ServingMetrics::AddLinkStats(const LinkStatsDelta& d) {
  RETURN_IF_ERROR(ValidateLink(d));
  const std::vector<std::string> labels = {
      model_name_, std::to_string(d.src_rank) + "->" + std::to_string(d.dst_rank)};
  ASSIGN_OR_RETURN(Counter * db, dispatch_bytes_->WithLabels(labels));
  ASSIGN_OR_RETURN(Counter * cb, combine_bytes_->WithLabels(labels));
  ASSIGN_OR_RETURN(Counter * ds, dispatch_seconds_->WithLabels(labels));
  ASSIGN_OR_RETURN(Counter * cs, combine_seconds_->WithLabels(labels));
  db->Inc(static_cast<double>(d.dispatch_bytes));
  cb->Inc(static_cast<double>(d.combine_bytes));
  ds->Inc(d.dispatch_seconds);
  cs->Inc(d.combine_seconds);
  return OkStatus();
}

Status ServingMetrics::ObserveLinkTotals(const LinkStatsDelta& totals) {
  RETURN_IF_ERROR(ValidateLink(totals));
  LinkStatsDelta delta = totals;
  {
    std::lock_guard<std::mutex> lock(totals_mu_);
    auto [it, inserted] = last_totals_.try_emplace({totals.src_rank, totals.dst_rank}, totals);
    if (!inserted) {
      const LinkStatsDelta& prev = it->second;
      auto grow = [](auto now, auto before) { return now >= before ? now - before : now; };
      delta.dispatch_bytes = grow(totals.dispatch_bytes, prev.dispatch_bytes);
      delta.combine_bytes = grow(totals.combine_bytes, prev.combine_bytes);
      delta.dispatch_seconds = grow(totals.dispatch_seconds, prev.dispatch_seconds);
      delta.combine_seconds = grow(totals.combine_seconds, prev.combine_seconds);
      it->second = totals;
    }
  }
  return AddLinkStats(delta);
}

}  // namespace switchyard::metrics
