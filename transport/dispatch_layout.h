// MoE dispatch layout: which token rows go to which rank, and which local experts they feed.
//
// Pure functions over the router's output and the expert placement; no communication. The layout
// is the first phase of dispatch (then counts and payload move through a Transport; combine is
// the inverse). As in DeepEP, a token is sent ONCE to each rank that holds any of its chosen
// experts, with the list of (local expert, routing weight) it feeds there; the receiving rank
// applies the weights and returns one combined row per (token, rank).
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace switchyard {

// Where one physical copy of a logical expert lives.
struct ExpertReplica {
  int32_t rank_idx = 0;
  int32_t local_expert_idx = 0;  // slot on that rank
};

// Logical expert -> its replicas, for one MoE layer.
class ExpertPlacement {
 public:
  ExpertPlacement() = default;
  // `replicas[e]` lists expert e's copies. `rank_node[r]` is rank r's node (for locality; may be
  // empty = every rank on its own node). Validate() checks the shape.
  ExpertPlacement(int32_t world_size, std::vector<std::vector<ExpertReplica>> replicas,
                  std::vector<int32_t> rank_node = {});
  // Experts split evenly in order: expert e on rank e / (num_experts / world_size).
  static ExpertPlacement Contiguous(int32_t num_experts, int32_t world_size);

  // Every expert has >= 1 replica; ranks in range; no two replicas share (rank, slot); each
  // rank's slots are 0..n-1 without gaps. Errors name the expert or rank.
  Status Validate() const;

  int32_t world_size() const { return world_size_; }
  int32_t num_experts() const { return static_cast<int32_t>(replicas_.size()); }
  const std::vector<ExpertReplica>& replicas(int32_t expert_idx) const {
    return replicas_[expert_idx];
  }
  int32_t NumLocalExperts(int32_t rank_idx) const { return num_local_experts_[rank_idx]; }
  int32_t Node(int32_t rank_idx) const {
    return rank_node_.empty() ? rank_idx : rank_node_[rank_idx];
  }

 private:
  int32_t world_size_ = 0;
  std::vector<std::vector<ExpertReplica>> replicas_;
  std::vector<int32_t> rank_node_;
  std::vector<int32_t> num_local_experts_;
};

// How a (token, k) picks among its expert's replicas.
enum class ReplicaPolicy {
  kBalance,      // spread deterministically: replica (token_idx * num_topk + k) mod #replicas
  kPreferLocal,  // a replica on this rank, else on this node, else kBalance among the rest
};

struct DispatchLayout {
  int32_t world_size = 0;
  int64_t num_tokens = 0;
  int32_t num_topk = 0;
  // Send rows, grouped by destination rank (ascending), tokens ascending within a rank.
  std::vector<int64_t> num_tokens_per_rank;  // [world_size] rows sent to each rank
  std::vector<int64_t> rank_prefix;          // [world_size + 1] first row of each rank
  std::vector<int64_t> row_token_idx;        // [rows] source token of each row
  // The (local expert, weight) entries each row feeds at its destination: entries of row i are
  // [entry_prefix[i], entry_prefix[i + 1]).
  std::vector<int64_t> entry_prefix;        // [rows + 1]
  std::vector<int32_t> entry_local_expert;  // [entries]
  std::vector<float> entry_weight;          // [entries]
  // Per destination rank, how many entries feed each of its local experts (the receiver's
  // num_tokens_per_expert for this sender).
  std::vector<std::vector<int64_t>> num_tokens_per_expert;  // [world_size][NumLocalExperts(r)]
  int64_t num_rows() const { return static_cast<int64_t>(row_token_idx.size()); }
};

// topk_idx / topk_weights: [num_tokens, num_topk] logical experts and routing weights.
// Errors: an expert id outside [0, num_experts), a placement that fails Validate().
StatusOr<DispatchLayout> ComputeDispatchLayout(const int32_t* topk_idx, const float* topk_weights,
                                               int64_t num_tokens, int32_t num_topk,
                                               const ExpertPlacement& placement,
                                               ReplicaPolicy policy, int32_t my_rank_idx);

}  // namespace switchyard
