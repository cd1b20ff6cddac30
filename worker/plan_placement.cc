#include "worker/plan_placement.h"

namespace switchyard {

std::vector<int32_t> PlanLayerOfModelLayer(const PlacementPlan& plan, int64_t num_layers) {
  std::vector<int32_t> out(num_layers, -1);
  for (size_t i = 0; i < plan.moe_layers.size(); ++i) {
    const int32_t l = plan.moe_layers[i];
    if (l >= 0 && l < num_layers) out[l] = static_cast<int32_t>(i);
  }
  return out;
}

StatusOr<std::vector<ExpertPlacement>> ExpertPlacementsFromPlan(const PlacementPlan& plan,
                                                                const ModelConfig& config) {
  RETURN_IF_ERROR(plan.Validate());
  std::vector<int32_t> moe_layers;
  for (int64_t l = 0; l < config.num_layers; ++l) {
    if (config.moe_layer[l]) moe_layers.push_back(static_cast<int32_t>(l));
  }
  if (plan.num_logical_experts != config.num_experts || plan.moe_layers != moe_layers) {
    return InvalidArgumentError("placement plan does not fit the model: it places " +
                                std::to_string(plan.num_logical_experts) + " experts over " +
                                std::to_string(plan.moe_layers.size()) +
                                " MoE layers, the model has " + std::to_string(config.num_experts) +
                                " experts in " + std::to_string(moe_layers.size()) + " MoE layers");
  }
  const int32_t world = plan.topology.num_gpus();
  std::vector<int32_t> rank_node(world);
  for (int32_t r = 0; r < world; ++r) rank_node[r] = plan.topology.NodeOfGpu(r);
  std::vector<ExpertPlacement> out(config.num_layers);
  for (size_t i = 0; i < plan.moe_layers.size(); ++i) {
    std::vector<std::vector<ExpertReplica>> replicas(plan.num_logical_experts);
    const auto& phy2log = plan.phy2log[i];
    for (int32_t p = 0; p < static_cast<int32_t>(phy2log.size()); ++p) {
      replicas[phy2log[p]].push_back({p / plan.slots_per_gpu, p % plan.slots_per_gpu});
    }
    ExpertPlacement placement(world, std::move(replicas), rank_node);
    RETURN_IF_ERROR(placement.Validate().WithContext("placement of layer " +
                                                     std::to_string(plan.moe_layers[i])));
    out[plan.moe_layers[i]] = std::move(placement);
  }
  return out;
}

}  // namespace switchyard
