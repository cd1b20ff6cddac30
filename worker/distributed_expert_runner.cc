#include "worker/distributed_expert_runner.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "transport/dispatch_codec.h"

namespace switchyard {

DistributedExpertRunner::DistributedExpertRunner(const ModelConfig& config,
                                                 const ModelWeights& weights, Transport* transport,
                                                 std::vector<ExpertPlacement> placement,
                                                 DistributedExpertOptions options)
    : config_(config),
      weights_(weights),
      transport_(transport),
      placement_(std::move(placement)),
      options_(options) {
  if (std::getenv("SWITCHYARD_INTEGRITY") != nullptr) {
    StatusOr<DispatcherOptions> env = DispatcherOptions::FromEnv();
    if (env.ok()) {
      options_.dispatcher.integrity = env->integrity;
    } else {
      env_status_ = env.status();
    }
  }
  dispatcher_ = Dispatcher(options_.dispatcher);
  const int32_t rank = transport_->rank();
  link_traffic_.dispatch_bytes.assign(transport_->world_size(), 0);
  link_traffic_.combine_bytes.assign(transport_->world_size(), 0);
  slot_expert_.resize(placement_.size());
  for (size_t l = 0; l < placement_.size(); ++l) {
    const ExpertPlacement& p = placement_[l];
    if (p.world_size() != transport_->world_size()) continue;  // reported by Validate
    slot_expert_[l].assign(p.NumLocalExperts(rank), -1);
    for (int32_t e = 0; e < p.num_experts(); ++e) {
      for (const ExpertReplica& r : p.replicas(e)) {
        if (r.rank_idx == rank) slot_expert_[l][r.local_expert_idx] = e;
      }
    }
  }
}

Status DistributedExpertRunner::Validate() const {
  RETURN_IF_ERROR(env_status_);
  if (static_cast<int64_t>(placement_.size()) != config_.num_layers) {
    return InvalidArgumentError("placement has " + std::to_string(placement_.size()) +
                                " layers, the model " + std::to_string(config_.num_layers));
  }
  for (int64_t l = 0; l < config_.num_layers; ++l) {
    if (!config_.moe_layer[l]) continue;
    const ExpertPlacement& p = placement_[l];
    const std::string where = "layer " + std::to_string(l) + ": ";
    RETURN_IF_ERROR(p.Validate().WithContext(where));
    if (p.world_size() != transport_->world_size() || p.num_experts() != config_.num_experts) {
      return InvalidArgumentError(where + "placement of " + std::to_string(p.num_experts()) +
                                  " experts over " + std::to_string(p.world_size()) +
                                  " ranks does not fit " + std::to_string(config_.num_experts) +
                                  " experts over " + std::to_string(transport_->world_size()));
    }
    for (int32_t e : slot_expert_[l]) {
      if (e < 0 || !weights_.layers[l].experts[e].loaded()) {
        return FailedPreconditionError(where + "expert " + std::to_string(e) +
                                       " is placed on rank " + std::to_string(transport_->rank()) +
                                       " but its weights are not loaded there");
      }
    }
  }
  return OkStatus();
}

Status DistributedExpertRunner::Run(int64_t layer, const float* hidden, int64_t num_tokens,
                                    const int32_t* topk_idx, const float* topk_weights,
                                    float* out) {
  const int64_t h = config_.hidden;
  ASSIGN_OR_RETURN(DispatchLayout layout,
                   ComputeDispatchLayout(topk_idx, topk_weights, num_tokens,
                                         static_cast<int32_t>(config_.num_topk), placement_[layer],
                                         options_.replica_policy, transport_->rank()));
  // The BF16 path: the same wire and results as Dispatch(kBF16), but each token is rounded once
  // here (not once per destination rank) and the received rows are read in place.
  const bool bf16_path = options_.bf16_path && options_.dispatch_dtype == PayloadDtype::kBF16;
  const auto bf16_codec = dispatch_codec::Codec::kBF16;
  if (bf16_path) {
    hidden_bf16_.resize(num_tokens * h);
    if (num_tokens > 0) {
      dispatch_codec::EncodeRow(hidden, num_tokens * h, bf16_codec,
                                reinterpret_cast<std::byte*>(hidden_bf16_.data()));
    }
  }
  const auto dispatch_start = std::chrono::steady_clock::now();
  if (bf16_path) {
    RETURN_IF_ERROR(dispatcher_.DispatchBf16(*transport_, layer, layout, hidden_bf16_.data(), h,
                                             Deadline::After(options_.timeout), &received_));
  } else {
    RETURN_IF_ERROR(dispatcher_.Dispatch(*transport_, layer, layout, hidden, h,
                                         options_.dispatch_dtype, Deadline::After(options_.timeout),
                                         &received_));
  }
  const auto dispatch_end = std::chrono::steady_clock::now();
  // Local experts on the received rows: gather each slot's entries, run, scatter per entry.
  entry_out_.resize(received_.num_entries() * h);
  const auto& slots = slot_expert_[layer];
  local_counts_.assign(slots.size(), 0);
  for (size_t s = 0; s < slots.size(); ++s) {
    const auto entries = received_.ExpertEntries(static_cast<int32_t>(s));
    const int64_t n = static_cast<int64_t>(entries.size());
    local_counts_[s] = n;
    if (n == 0) continue;
    gathered_.resize(n * h);
    results_.resize(n * h);
    scratch_.resize(2 * n * config_.moe_intermediate_size);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t row = received_.entry_row[entries[i]];
      if (bf16_path) {  // widened straight from the view (exact)
        dispatch_codec::DecodeRow(reinterpret_cast<const std::byte*>(received_.row_bf16(row)), h,
                                  bf16_codec, &gathered_[i * h], /*accumulate=*/false);
      } else {
        std::memcpy(&gathered_[i * h], received_.row(row), h * sizeof(float));
      }
    }
    RunMlp(weights_.layers[layer].experts[slots[s]], gathered_.data(), n, scratch_.data(),
           results_.data());
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&entry_out_[entries[i] * h], &results_[i * h], h * sizeof(float));
    }
  }
  row_out_.resize(received_.num_rows() * h);
  SumEntriesPerRow(received_, entry_out_.data(), row_out_.data());
  // BF16 combine on the BF16 path: the rows rounded once into the dispatcher's combine buffer,
  // which CombineBf16 sends in place (what Combine(kBF16) would round and pack).
  const bool bf16_combine = bf16_path && options_.combine_dtype == PayloadDtype::kBF16;
  uint16_t* combine_rows = bf16_combine ? dispatcher_.Bf16CombineRows() : nullptr;
  if (bf16_combine && received_.num_rows() > 0) {
    dispatch_codec::EncodeRow(row_out_.data(), received_.num_rows() * h, bf16_codec,
                              reinterpret_cast<std::byte*>(combine_rows));
  }
  const auto combine_start = std::chrono::steady_clock::now();
  if (bf16_combine) {
    RETURN_IF_ERROR(
        dispatcher_.CombineBf16(*transport_, combine_rows, Deadline::After(options_.timeout), out));
  } else {
    RETURN_IF_ERROR(dispatcher_.Combine(*transport_, row_out_.data(), options_.combine_dtype,
                                        Deadline::After(options_.timeout), out));
  }
  const auto combine_end = std::chrono::steady_clock::now();
  CountTraffic(layout, dispatch_end - dispatch_start, combine_end - combine_start);
  return OkStatus();
}

void DistributedExpertRunner::CountTraffic(const DispatchLayout& layout,
                                           std::chrono::steady_clock::duration dispatch_time,
                                           std::chrono::steady_clock::duration combine_time) {
  const int me = transport_->rank();
  const bool integrity = options_.dispatcher.integrity;
  const int64_t h = config_.hidden;
  for (int peer = 0; peer < transport_->world_size(); ++peer) {
    if (peer == me) continue;  // nothing goes over a link to itself
    link_traffic_.dispatch_bytes[peer] +=
        DispatchMessageBytes(layout, me, peer, h, options_.dispatch_dtype, integrity);
    const int64_t rows_back = received_.source_prefix[peer + 1] - received_.source_prefix[peer];
    link_traffic_.combine_bytes[peer] +=
        CombineMessageBytes(rows_back, h, options_.combine_dtype, integrity);
  }
  link_traffic_.dispatch_seconds += std::chrono::duration<double>(dispatch_time).count();
  link_traffic_.combine_seconds += std::chrono::duration<double>(combine_time).count();
  ++link_traffic_.calls;
}

}  // namespace switchyard
