// Expert-parallel load balancing: DeepSeek's EPLB policies (deepseek-ai/EPLB, eplb.py), exactly.
//
// From per-layer load statistics of the logical experts, decide how many replicas each expert
// gets and which physical slot (GPU) holds each replica. Hierarchical policy (when num_groups is a
// multiple of num_nodes): expert groups are packed onto nodes, experts replicated within a node,
// replicas packed onto the node's GPUs. Global policy otherwise: the same with one group and one
// node. Tie rules reproduce the reference bit for bit: sorts are stable (descending load, then
// ascending index), argmax and pack choice take the lowest index. Pure functions.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace switchyard {

struct EplbPlan {
  // [layers][num_replicas]: logical expert of physical slot p; slot p lives on GPU
  // p / (num_replicas / num_gpus) and node p / (num_replicas / num_nodes).
  std::vector<std::vector<int32_t>> phy2log;
  // [layers][num_logical][max replicas]: the physical slots of each logical expert, by replica
  // rank, padded with -1.
  std::vector<std::vector<std::vector<int32_t>>> log2phy;
  // [layers][num_logical]: replicas per logical expert.
  std::vector<std::vector<int32_t>> logcnt;
  bool hierarchical = false;
};

// weight: [layers][num_logical] loads (token counts). Errors name the violated constraint:
// num_replicas a multiple of num_gpus and >= num_logical, num_gpus a multiple of num_nodes,
// num_logical a multiple of num_groups, equal row lengths, finite non-negative loads.
StatusOr<EplbPlan> RebalanceExperts(const std::vector<std::vector<double>>& weight,
                                    int32_t num_replicas, int32_t num_groups, int32_t num_nodes,
                                    int32_t num_gpus);

// Building blocks, exposed for tests.
// Assigns n items to num_packs packs of exactly n / num_packs items, heaviest first, each to the
// lightest pack with room.
void BalancedPacking(const std::vector<float>& weight, int32_t num_packs,
                     std::vector<int32_t>* pack_index, std::vector<int32_t>* rank_in_pack);
// One replica per expert, then each extra slot to the expert with the highest load per replica.
void ReplicateExperts(const std::vector<float>& weight, int32_t num_phy,
                      std::vector<int32_t>* phy2log, std::vector<int32_t>* phy_rank,
                      std::vector<int32_t>* logcnt);

}  // namespace switchyard
