// PlacementPlan: logical experts x layers -> physical slots -> GPUs (ranks) of a cluster.
//
// Physical slot p of a layer lives on GPU p / slots_per_gpu (GPUs numbered rack-major, then node,
// then GPU in node: the rank order of a launch that fills nodes in order). A plan serialises to
// JSON so operators can read, edit and supply one; a supplied plan is validated (every expert
// placed in every layer, slot counts match the topology, ids in range) with errors naming the
// entry. Pure data and functions; no I/O besides the text passed in and out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace switchyard {

struct ClusterTopology {
  int32_t racks = 1;
  int32_t nodes_per_rack = 1;
  int32_t gpus_per_node = 1;
  int32_t num_nodes() const { return racks * nodes_per_rack; }
  int32_t num_gpus() const { return num_nodes() * gpus_per_node; }
  int32_t NodeOfGpu(int32_t gpu) const { return gpu / gpus_per_node; }
  int32_t RackOfGpu(int32_t gpu) const { return NodeOfGpu(gpu) / nodes_per_rack; }
  Status Validate() const;
};

struct LayerBalance {
  double max_gpu_load = 0;
  double mean_gpu_load = 0;
  double balancedness() const { return mean_gpu_load > 0 ? max_gpu_load / mean_gpu_load : 1.0; }
};

class PlacementPlan {
 public:
  ClusterTopology topology;
  int32_t num_logical_experts = 0;
  int32_t slots_per_gpu = 0;
  std::vector<int32_t> moe_layers;            // model layer index of each plan layer
  std::vector<std::vector<int32_t>> phy2log;  // [plan layer][num_gpus * slots_per_gpu]

  int32_t num_physical() const { return topology.num_gpus() * slots_per_gpu; }
  Status Validate() const;
  // Replicas per logical expert of a plan layer.
  std::vector<int32_t> ReplicaCounts(size_t layer) const;
  // Load per GPU when each expert's load splits evenly over its replicas; max/mean per layer.
  // `load` is [plan layer][logical expert] (token counts).
  StatusOr<std::vector<LayerBalance>> Balance(const std::vector<std::vector<double>>& load) const;

  std::string ToJson() const;
  static StatusOr<PlacementPlan> FromJson(const std::string& text, const std::string& origin);
};

// One replica per expert, experts spread contiguously: expert e of every layer on GPU
// e / ceil(E / num_gpus). Needs num_logical_experts divisible by num_gpus.
StatusOr<PlacementPlan> ContiguousPlan(const ClusterTopology& topology, int32_t num_logical_experts,
                                       const std::vector<int32_t>& moe_layers);

// DeepSeek EPLB over the topology: `redundant_per_gpu` extra slots on every GPU, expert groups
// (`num_groups`, as the model's routing groups) packed onto nodes when they divide evenly
// (hierarchical policy), else the global policy. `load` is [plan layer][logical expert].
StatusOr<PlacementPlan> PlanWithEplb(const ClusterTopology& topology, int32_t num_logical_experts,
                                     const std::vector<int32_t>& moe_layers,
                                     const std::vector<std::vector<double>>& load,
                                     int32_t redundant_per_gpu, int32_t num_groups);

}  // namespace switchyard
