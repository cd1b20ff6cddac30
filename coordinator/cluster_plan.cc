#include "coordinator/cluster_plan.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "common/file_util.h"

namespace switchyard {

namespace {

// EPLB may put two replicas of one expert on the same worker, where they share one copy of the
// weights and add nothing. Swap such a duplicate with a replica of equal load (per replica) on
// another worker of the same node that holds neither expert, so every worker's load, the node
// grouping and the replica counts stay as EPLB chose them. Returns the number of swaps.
int SpreadDuplicateReplicas(PlacementPlan* plan, const std::vector<std::vector<double>>& loads) {
  const int32_t spg = plan->slots_per_gpu;
  const int32_t gpus = plan->topology.num_gpus();
  int swaps = 0;
  for (size_t l = 0; l < plan->moe_layers.size(); ++l) {
    auto& slots = plan->phy2log[l];
    const auto counts = plan->ReplicaCounts(l);
    auto per_replica = [&](int32_t e) { return loads[l][e] / counts[e]; };
    auto holds = [&](int32_t gpu, int32_t e) {
      for (int32_t s = 0; s < spg; ++s) {
        if (slots[gpu * spg + s] == e) return true;
      }
      return false;
    };
    for (int32_t g = 0; g < gpus; ++g) {
      for (int32_t i = 1; i < spg; ++i) {
        const int32_t p = g * spg + i;
        const int32_t e = slots[p];
        bool duplicate = false;
        for (int32_t k = 0; k < i; ++k) duplicate |= slots[g * spg + k] == e;
        if (!duplicate) continue;
        for (int32_t q = 0; q < gpus * spg; ++q) {
          const int32_t h = q / spg, f = slots[q];
          if (h == g || plan->topology.NodeOfGpu(h) != plan->topology.NodeOfGpu(g)) continue;
          if (f == e || holds(g, f) || holds(h, e)) continue;
          if (std::abs(per_replica(f) - per_replica(e)) > 1e-9 * std::max(1.0, per_replica(e))) {
            continue;
          }
          std::swap(slots[p], slots[q]);
          ++swaps;
          break;
        }
      }
    }
  }
  return swaps;
}

}  // namespace

ClusterTopology ClusterTopologyOf(const ClusterConfig& cluster) {
  ClusterTopology t;
  t.racks = cluster.racks;
  t.nodes_per_rack = cluster.nodes_per_rack;
  t.gpus_per_node = cluster.gpus_per_node > 0
                        ? cluster.gpus_per_node
                        : cluster.workers / (cluster.racks * cluster.nodes_per_rack);
  return t;
}

StatusOr<PlacementPlan> MakeClusterPlan(const ClusterConfig& cluster, const ModelConfig& config,
                                        const std::vector<std::vector<double>>& loads) {
  std::vector<int32_t> moe_layers;
  for (int64_t l = 0; l < config.num_layers; ++l) {
    if (config.moe_layer[l]) moe_layers.push_back(static_cast<int32_t>(l));
  }
  const auto experts = static_cast<int32_t>(config.num_experts);
  const ClusterTopology topology = ClusterTopologyOf(cluster);
  StatusOr<PlacementPlan> plan = InvalidArgumentError("no plan");
  if (cluster.placement == "eplb") {
    auto uniform = loads;
    if (uniform.empty()) uniform.assign(moe_layers.size(), std::vector<double>(experts, 1.0));
    plan = PlanWithEplb(topology, experts, moe_layers, uniform,
                        cluster.redundant_experts_per_worker, static_cast<int32_t>(config.n_group));
    if (!plan.ok()) return plan.status().WithContext("cluster.placement eplb");
    SpreadDuplicateReplicas(&*plan, uniform);
  } else if (cluster.placement == "contiguous") {
    if (cluster.redundant_experts_per_worker != 0) {
      return InvalidArgumentError(
          "cluster.redundant_experts_per_worker must be 0 with placement 'contiguous' (replicas "
          "come from eplb or a plan file)");
    }
    plan = ContiguousPlan(topology, experts, moe_layers);
    if (!plan.ok()) return plan.status().WithContext("cluster.placement contiguous");
  } else {
    auto text = ReadFileToString(cluster.placement);
    if (!text.ok()) return text.status().WithContext("cluster.placement");
    plan = PlacementPlan::FromJson(*text, cluster.placement);
    if (!plan.ok()) return plan.status();
  }
  if (plan->num_logical_experts != experts || plan->moe_layers != moe_layers) {
    return InvalidArgumentError("cluster.placement: the plan places " +
                                std::to_string(plan->num_logical_experts) + " experts over " +
                                std::to_string(plan->moe_layers.size()) +
                                " MoE layers, the model has " + std::to_string(experts) +
                                " experts in " + std::to_string(moe_layers.size()) + " MoE layers");
  }
  if (plan->topology.num_gpus() != cluster.workers) {
    return InvalidArgumentError(
        "cluster.placement: the plan spans " + std::to_string(plan->topology.num_gpus()) +
        " GPUs (workers), cluster.workers is " + std::to_string(cluster.workers));
  }
  return plan;
}

std::vector<std::string> DescribePlan(const PlacementPlan& plan) {
  std::vector<std::string> lines;
  for (size_t l = 0; l < plan.moe_layers.size(); ++l) {
    const auto replicas = plan.ReplicaCounts(l);
    for (int32_t g = 0; g < plan.topology.num_gpus(); ++g) {
      std::ostringstream line;
      line << "layer " << plan.moe_layers[l] << " worker " << g << " (rack "
           << plan.topology.RackOfGpu(g) << ", node " << plan.topology.NodeOfGpu(g) << "): experts";
      for (int32_t s = 0; s < plan.slots_per_gpu; ++s) {
        const int32_t e = plan.phy2log[l][g * plan.slots_per_gpu + s];
        line << " " << e;
        if (replicas[e] > 1) line << "(x" << replicas[e] << ")";
      }
      lines.push_back(line.str());
    }
  }
  return lines;
}

ExpertLoadWindow::ExpertLoadWindow(size_t moe_layers, int32_t experts, int64_t window)
    : layers_(moe_layers),
      experts_(experts),
      window_(window),
      current_(moe_layers, std::vector<int64_t>(experts, 0)) {}

Status ExpertLoadWindow::Add(const std::vector<std::vector<int64_t>>& counts) {
  if (counts.size() != layers_) {
    return InvalidArgumentError("expert counts for " + std::to_string(counts.size()) +
                                " MoE layers, expected " + std::to_string(layers_));
  }
  for (size_t l = 0; l < layers_; ++l) {
    if (counts[l].size() != static_cast<size_t>(experts_)) {
      return InvalidArgumentError("expert counts of MoE layer " + std::to_string(l) + " list " +
                                  std::to_string(counts[l].size()) + " experts, expected " +
                                  std::to_string(experts_));
    }
    for (int32_t e = 0; e < experts_; ++e) current_[l][e] += counts[l][e];
  }
  return OkStatus();
}

void ExpertLoadWindow::EndStep() {
  steps_.push_back(current_);
  for (auto& row : current_) std::fill(row.begin(), row.end(), 0);
  while (static_cast<int64_t>(steps_.size()) > window_) steps_.pop_front();
}

std::vector<std::vector<double>> ExpertLoadWindow::Totals() const {
  std::vector<std::vector<double>> out(layers_, std::vector<double>(experts_, 0.0));
  for (const auto& step : steps_) {
    for (size_t l = 0; l < layers_; ++l) {
      for (int32_t e = 0; e < experts_; ++e) out[l][e] += static_cast<double>(step[l][e]);
    }
  }
  return out;
}

}  // namespace switchyard
