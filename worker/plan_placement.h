// From a PlacementPlan (logical experts -> physical slots -> GPUs = worker ranks) to what the
// distributed expert runner consumes: one ExpertPlacement per model layer, and what a rank loads.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "coordinator/placement/placement_plan.h"
#include "model/model_config.h"
#include "transport/dispatch_layout.h"

namespace switchyard {

// One ExpertPlacement per model layer (dense layers: an empty placement, never used). Slot p of
// a plan layer is local slot p % slots_per_gpu on rank p / slots_per_gpu; ranks on the same node
// of the topology share a node id (replica choice prefers them). Errors (InvalidArgument): the
// plan is invalid, or does not fit the model (MoE layers, expert count), naming the mismatch.
StatusOr<std::vector<ExpertPlacement>> ExpertPlacementsFromPlan(const PlacementPlan& plan,
                                                                const ModelConfig& config);

// Plan-layer index of each model layer (-1 for dense layers).
std::vector<int32_t> PlanLayerOfModelLayer(const PlacementPlan& plan, int64_t num_layers);

}  // namespace switchyard
