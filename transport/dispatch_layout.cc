#include "transport/dispatch_layout.h"

#include <algorithm>
#include <set>
#include <utility>

namespace switchyard {

ExpertPlacement::ExpertPlacement(int32_t world_size,
                                 std::vector<std::vector<ExpertReplica>> replicas,
                                 std::vector<int32_t> rank_node)
    : world_size_(world_size), replicas_(std::move(replicas)), rank_node_(std::move(rank_node)) {
  num_local_experts_.assign(std::max(world_size_, 0), 0);
  for (const auto& list : replicas_) {
    for (const auto& r : list) {
      if (r.rank_idx >= 0 && r.rank_idx < world_size_) {
        num_local_experts_[r.rank_idx] =
            std::max(num_local_experts_[r.rank_idx], r.local_expert_idx + 1);
      }
    }
  }
}

ExpertPlacement ExpertPlacement::Contiguous(int32_t num_experts, int32_t world_size) {
  std::vector<std::vector<ExpertReplica>> replicas(num_experts);
  const int32_t per_rank = (num_experts + world_size - 1) / world_size;
  for (int32_t e = 0; e < num_experts; ++e) {
    replicas[e].push_back({e / per_rank, e % per_rank});
  }
  return ExpertPlacement(world_size, std::move(replicas));
}

Status ExpertPlacement::Validate() const {
  if (world_size_ <= 0) return InvalidArgumentError("placement: world size must be > 0");
  if (!rank_node_.empty() && static_cast<int32_t>(rank_node_.size()) != world_size_) {
    return InvalidArgumentError("placement: rank_node has " + std::to_string(rank_node_.size()) +
                                " entries for " + std::to_string(world_size_) + " ranks");
  }
  std::vector<std::set<int32_t>> slots(world_size_);
  for (size_t e = 0; e < replicas_.size(); ++e) {
    const std::string where = "placement: expert " + std::to_string(e);
    if (replicas_[e].empty()) return InvalidArgumentError(where + " has no replica");
    for (const auto& r : replicas_[e]) {
      if (r.rank_idx < 0 || r.rank_idx >= world_size_) {
        return InvalidArgumentError(where + " is placed on rank " + std::to_string(r.rank_idx) +
                                    " outside [0, " + std::to_string(world_size_) + ")");
      }
      if (r.local_expert_idx < 0 || !slots[r.rank_idx].insert(r.local_expert_idx).second) {
        return InvalidArgumentError(where + " uses slot " + std::to_string(r.local_expert_idx) +
                                    " of rank " + std::to_string(r.rank_idx) +
                                    ", which is negative or already taken");
      }
    }
  }
  for (int32_t rank = 0; rank < world_size_; ++rank) {
    if (!slots[rank].empty() &&
        *slots[rank].rbegin() + 1 != static_cast<int32_t>(slots[rank].size())) {
      return InvalidArgumentError("placement: rank " + std::to_string(rank) +
                                  " has gaps in its expert slots");
    }
  }
  return OkStatus();
}

namespace {

const ExpertReplica& ChooseReplica(const std::vector<ExpertReplica>& replicas, int64_t spread,
                                   ReplicaPolicy policy, const ExpertPlacement& placement,
                                   int32_t my_rank) {
  if (replicas.size() == 1) return replicas[0];
  if (policy == ReplicaPolicy::kPreferLocal) {
    for (const auto& r : replicas) {
      if (r.rank_idx == my_rank) return r;
    }
    // Same node: balance among the node's replicas.
    int64_t on_node = 0;
    for (const auto& r : replicas) on_node += placement.Node(r.rank_idx) == placement.Node(my_rank);
    if (on_node > 0) {
      int64_t pick = spread % on_node;
      for (const auto& r : replicas) {
        if (placement.Node(r.rank_idx) == placement.Node(my_rank) && pick-- == 0) return r;
      }
    }
  }
  return replicas[spread % static_cast<int64_t>(replicas.size())];
}

}  // namespace

StatusOr<DispatchLayout> ComputeDispatchLayout(const int32_t* topk_idx, const float* topk_weights,
                                               int64_t num_tokens, int32_t num_topk,
                                               const ExpertPlacement& placement,
                                               ReplicaPolicy policy, int32_t my_rank_idx) {
  RETURN_IF_ERROR(placement.Validate());
  const int32_t world = placement.world_size();
  if (my_rank_idx < 0 || my_rank_idx >= world) {
    return InvalidArgumentError("dispatch: rank " + std::to_string(my_rank_idx) +
                                " outside the world of " + std::to_string(world));
  }
  // Resolve each (token, k) to (rank, local expert).
  std::vector<ExpertReplica> target(num_tokens * num_topk);
  for (int64_t i = 0; i < num_tokens * num_topk; ++i) {
    const int32_t e = topk_idx[i];
    if (e < 0 || e >= placement.num_experts()) {
      return InvalidArgumentError("dispatch: token " + std::to_string(i / num_topk) +
                                  " is routed to expert " + std::to_string(e) + " of " +
                                  std::to_string(placement.num_experts()));
    }
    target[i] = ChooseReplica(placement.replicas(e), i, policy, placement, my_rank_idx);
  }
  DispatchLayout layout;
  layout.world_size = world;
  layout.num_tokens = num_tokens;
  layout.num_topk = num_topk;
  layout.num_tokens_per_rank.assign(world, 0);
  layout.num_tokens_per_expert.resize(world);
  for (int32_t r = 0; r < world; ++r) {
    layout.num_tokens_per_expert[r].assign(placement.NumLocalExperts(r), 0);
  }
  // Count rows: one per distinct (token, rank).
  std::vector<int64_t> seen(world, -1);
  for (int64_t t = 0; t < num_tokens; ++t) {
    for (int32_t k = 0; k < num_topk; ++k) {
      const ExpertReplica& r = target[t * num_topk + k];
      if (seen[r.rank_idx] != t) {
        seen[r.rank_idx] = t;
        ++layout.num_tokens_per_rank[r.rank_idx];
      }
      ++layout.num_tokens_per_expert[r.rank_idx][r.local_expert_idx];
    }
  }
  layout.rank_prefix.assign(world + 1, 0);
  for (int32_t r = 0; r < world; ++r) {
    layout.rank_prefix[r + 1] = layout.rank_prefix[r] + layout.num_tokens_per_rank[r];
  }
  const int64_t rows = layout.rank_prefix[world];
  layout.row_token_idx.assign(rows, 0);
  std::vector<int64_t> row_entries(rows, 0);
  std::vector<int64_t> fill(layout.rank_prefix.begin(), layout.rank_prefix.end() - 1);
  std::vector<int64_t> token_row(world, -1);  // this token's row per rank
  std::vector<int64_t> entry_row(num_tokens * num_topk);
  for (int64_t t = 0; t < num_tokens; ++t) {
    std::fill(token_row.begin(), token_row.end(), -1);
    for (int32_t k = 0; k < num_topk; ++k) {
      const int32_t rank = target[t * num_topk + k].rank_idx;
      if (token_row[rank] < 0) {
        token_row[rank] = fill[rank]++;
        layout.row_token_idx[token_row[rank]] = t;
      }
      entry_row[t * num_topk + k] = token_row[rank];
      ++row_entries[token_row[rank]];
    }
  }
  layout.entry_prefix.assign(rows + 1, 0);
  for (int64_t i = 0; i < rows; ++i)
    layout.entry_prefix[i + 1] = layout.entry_prefix[i] + row_entries[i];
  layout.entry_local_expert.assign(num_tokens * num_topk, 0);
  layout.entry_weight.assign(num_tokens * num_topk, 0.0f);
  std::vector<int64_t> entry_fill(layout.entry_prefix.begin(), layout.entry_prefix.end() - 1);
  for (int64_t i = 0; i < num_tokens * num_topk; ++i) {  // k order kept within a row
    const int64_t slot = entry_fill[entry_row[i]]++;
    layout.entry_local_expert[slot] = target[i].local_expert_idx;
    layout.entry_weight[slot] = topk_weights[i];
  }
  return layout;
}

}  // namespace switchyard
