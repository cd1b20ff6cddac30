// The placement a cluster starts with, from its configuration: DeepSeek EPLB over the topology
// (racks -> nodes -> workers), contiguous, or a plan file an operator supplied (validated).
// Also the sliding window of observed expert loads, and the log lines that show a plan.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "common/runtime_config.h"
#include "common/status.h"
#include "coordinator/placement/placement_plan.h"
#include "model/model_config.h"

namespace switchyard {

// The topology of `cluster` (gpus_per_node 0 = workers spread evenly over the nodes).
ClusterTopology ClusterTopologyOf(const ClusterConfig& cluster);

// Plans (or reads and validates) the placement for `config` on `cluster`. `loads` is
// [MoE layer][expert] (empty = uniform). With `eplb`, replicas EPLB put twice on one worker are
// then swapped with equal-load replicas of other workers in the same node (loads unchanged). Errors
// name the config key or plan file and what does not fit (expert count, MoE layers, worker count).
StatusOr<PlacementPlan> MakeClusterPlan(const ClusterConfig& cluster, const ModelConfig& config,
                                        const std::vector<std::vector<double>>& loads = {});

// One line per (MoE layer, worker): "layer L worker W: experts a b c (replicas: x)".
std::vector<std::string> DescribePlan(const PlacementPlan& plan);

// Per-expert token counts summed over the last `window` steps (all workers). Not thread-safe.
class ExpertLoadWindow {
 public:
  ExpertLoadWindow(size_t moe_layers, int32_t experts, int64_t window);
  // Adds one worker's counts [MoE layer][expert] to the current step. Errors: shape mismatch.
  Status Add(const std::vector<std::vector<int64_t>>& counts);
  // Closes the current step (drops the oldest beyond the window).
  void EndStep();
  // [MoE layer][expert] totals over the window.
  std::vector<std::vector<double>> Totals() const;
  int64_t steps() const { return static_cast<int64_t>(steps_.size()); }

 private:
  size_t layers_;
  int32_t experts_;
  int64_t window_;
  std::vector<std::vector<int64_t>> current_;
  std::deque<std::vector<std::vector<int64_t>>> steps_;
};

}  // namespace switchyard
