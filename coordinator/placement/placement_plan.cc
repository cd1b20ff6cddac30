#include "coordinator/placement/placement_plan.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "coordinator/placement/eplb.h"

namespace switchyard {

using json = nlohmann::json;

Status ClusterTopology::Validate() const {
  if (racks < 1 || nodes_per_rack < 1 || gpus_per_node < 1) {
    return InvalidArgumentError(
        "topology: racks, nodes_per_rack and gpus_per_node must be >= 1 "
        "(got " +
        std::to_string(racks) + ", " + std::to_string(nodes_per_rack) + ", " +
        std::to_string(gpus_per_node) + ")");
  }
  return OkStatus();
}

Status PlacementPlan::Validate() const {
  RETURN_IF_ERROR(topology.Validate());
  if (num_logical_experts < 1)
    return InvalidArgumentError("plan: num_logical_experts must be >= 1");
  if (slots_per_gpu < 1) return InvalidArgumentError("plan: slots_per_gpu must be >= 1");
  if (num_physical() < num_logical_experts) {
    return InvalidArgumentError("plan: " + std::to_string(num_physical()) +
                                " physical slots cannot hold " +
                                std::to_string(num_logical_experts) + " experts");
  }
  if (moe_layers.size() != phy2log.size()) {
    return InvalidArgumentError("plan: " + std::to_string(moe_layers.size()) + " moe_layers but " +
                                std::to_string(phy2log.size()) + " layer placements");
  }
  for (size_t l = 0; l < phy2log.size(); ++l) {
    const std::string where = "plan: layer " + std::to_string(moe_layers[l]);
    if (static_cast<int32_t>(phy2log[l].size()) != num_physical()) {
      return InvalidArgumentError(where + " has " + std::to_string(phy2log[l].size()) +
                                  " slots, the topology has " + std::to_string(num_physical()) +
                                  " (" + std::to_string(topology.num_gpus()) + " GPUs x " +
                                  std::to_string(slots_per_gpu) + ")");
    }
    std::vector<int32_t> count(num_logical_experts, 0);
    for (size_t p = 0; p < phy2log[l].size(); ++p) {
      const int32_t e = phy2log[l][p];
      if (e < 0 || e >= num_logical_experts) {
        return InvalidArgumentError(where + " slot " + std::to_string(p) + " (GPU " +
                                    std::to_string(p / slots_per_gpu) + ") holds expert " +
                                    std::to_string(e) + ", outside [0, " +
                                    std::to_string(num_logical_experts) + ")");
      }
      ++count[e];
    }
    for (int32_t e = 0; e < num_logical_experts; ++e) {
      if (count[e] == 0) {
        return InvalidArgumentError(where + ": expert " + std::to_string(e) + " is not placed");
      }
    }
  }
  return OkStatus();
}

std::vector<int32_t> PlacementPlan::ReplicaCounts(size_t layer) const {
  std::vector<int32_t> count(num_logical_experts, 0);
  for (int32_t e : phy2log[layer]) ++count[e];
  return count;
}

StatusOr<std::vector<LayerBalance>> PlacementPlan::Balance(
    const std::vector<std::vector<double>>& load) const {
  if (load.size() != phy2log.size()) {
    return InvalidArgumentError("balance: load has " + std::to_string(load.size()) +
                                " layers, the plan " + std::to_string(phy2log.size()));
  }
  std::vector<LayerBalance> out;
  for (size_t l = 0; l < phy2log.size(); ++l) {
    if (static_cast<int32_t>(load[l].size()) != num_logical_experts) {
      return InvalidArgumentError("balance: layer " + std::to_string(moe_layers[l]) + " has " +
                                  std::to_string(load[l].size()) + " expert loads, expected " +
                                  std::to_string(num_logical_experts));
    }
    const std::vector<int32_t> count = ReplicaCounts(l);
    std::vector<double> gpu(topology.num_gpus(), 0.0);
    for (size_t p = 0; p < phy2log[l].size(); ++p) {
      const int32_t e = phy2log[l][p];
      gpu[p / slots_per_gpu] += load[l][e] / count[e];
    }
    LayerBalance b;
    b.max_gpu_load = *std::max_element(gpu.begin(), gpu.end());
    for (double g : gpu) b.mean_gpu_load += g / gpu.size();
    out.push_back(b);
  }
  return out;
}

std::string PlacementPlan::ToJson() const {
  json layers = json::array();
  for (size_t l = 0; l < phy2log.size(); ++l) {
    json gpus = json::array();
    for (int32_t g = 0; g < topology.num_gpus(); ++g) {
      gpus.push_back(std::vector<int32_t>(phy2log[l].begin() + g * slots_per_gpu,
                                          phy2log[l].begin() + (g + 1) * slots_per_gpu));
    }
    layers.push_back({{"layer", moe_layers[l]}, {"gpus", gpus}});
  }
  json root = {{"topology",
                {{"racks", topology.racks},
                 {"nodes_per_rack", topology.nodes_per_rack},
                 {"gpus_per_node", topology.gpus_per_node}}},
               {"num_logical_experts", num_logical_experts},
               {"slots_per_gpu", slots_per_gpu},
               {"layers", layers}};
  return root.dump(1) + "\n";
}

StatusOr<PlacementPlan> PlacementPlan::FromJson(const std::string& text,
                                                const std::string& origin) {
  json root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return InvalidArgumentError(origin + ": not a JSON object");
  }
  PlacementPlan plan;
  auto int_at = [&](const json& obj, const char* key, const std::string& where,
                    int32_t* out) -> Status {
    auto it = obj.find(key);
    if (it == obj.end() || !it->is_number_integer()) {
      return InvalidArgumentError(origin + ": " + where + "'" + key + "' must be an integer");
    }
    *out = it->get<int32_t>();
    return OkStatus();
  };
  auto topo = root.find("topology");
  if (topo == root.end() || !topo->is_object()) {
    return InvalidArgumentError(origin + ": missing object 'topology'");
  }
  RETURN_IF_ERROR(int_at(*topo, "racks", "topology.", &plan.topology.racks));
  RETURN_IF_ERROR(int_at(*topo, "nodes_per_rack", "topology.", &plan.topology.nodes_per_rack));
  RETURN_IF_ERROR(int_at(*topo, "gpus_per_node", "topology.", &plan.topology.gpus_per_node));
  RETURN_IF_ERROR(int_at(root, "num_logical_experts", "", &plan.num_logical_experts));
  RETURN_IF_ERROR(int_at(root, "slots_per_gpu", "", &plan.slots_per_gpu));
  RETURN_IF_ERROR(plan.topology.Validate().WithContext(origin));
  auto layers = root.find("layers");
  if (layers == root.end() || !layers->is_array()) {
    return InvalidArgumentError(origin + ": missing array 'layers'");
  }
  for (size_t i = 0; i < layers->size(); ++i) {
    const json& entry = (*layers)[i];
    const std::string where = "layers[" + std::to_string(i) + "].";
    if (!entry.is_object()) return InvalidArgumentError(origin + ": " + where + " not an object");
    int32_t layer = 0;
    RETURN_IF_ERROR(int_at(entry, "layer", where, &layer));
    auto gpus = entry.find("gpus");
    if (gpus == entry.end() || !gpus->is_array() ||
        static_cast<int32_t>(gpus->size()) != plan.topology.num_gpus()) {
      return InvalidArgumentError(origin + ": " + where + "gpus must list " +
                                  std::to_string(plan.topology.num_gpus()) +
                                  " GPUs (one array of expert ids each)");
    }
    std::vector<int32_t> slots;
    for (size_t g = 0; g < gpus->size(); ++g) {
      const json& list = (*gpus)[g];
      if (!list.is_array() || static_cast<int32_t>(list.size()) != plan.slots_per_gpu) {
        return InvalidArgumentError(origin + ": " + where + "gpus[" + std::to_string(g) +
                                    "] must list " + std::to_string(plan.slots_per_gpu) +
                                    " expert ids (slots_per_gpu)");
      }
      for (const json& e : list) {
        if (!e.is_number_integer()) {
          return InvalidArgumentError(origin + ": " + where + "gpus[" + std::to_string(g) +
                                      "] holds " + e.dump() + ", not an expert id");
        }
        slots.push_back(e.get<int32_t>());
      }
    }
    plan.moe_layers.push_back(layer);
    plan.phy2log.push_back(std::move(slots));
  }
  RETURN_IF_ERROR(plan.Validate().WithContext(origin));
  return plan;
}

StatusOr<PlacementPlan> ContiguousPlan(const ClusterTopology& topology, int32_t num_logical_experts,
                                       const std::vector<int32_t>& moe_layers) {
  RETURN_IF_ERROR(topology.Validate());
  if (num_logical_experts % topology.num_gpus() != 0) {
    return InvalidArgumentError(std::to_string(num_logical_experts) +
                                " experts do not divide over " +
                                std::to_string(topology.num_gpus()) + " GPUs");
  }
  PlacementPlan plan;
  plan.topology = topology;
  plan.num_logical_experts = num_logical_experts;
  plan.slots_per_gpu = num_logical_experts / topology.num_gpus();
  plan.moe_layers = moe_layers;
  std::vector<int32_t> slots(num_logical_experts);
  for (int32_t e = 0; e < num_logical_experts; ++e) slots[e] = e;
  plan.phy2log.assign(moe_layers.size(), slots);
  return plan;
}

StatusOr<PlacementPlan> PlanWithEplb(const ClusterTopology& topology, int32_t num_logical_experts,
                                     const std::vector<int32_t>& moe_layers,
                                     const std::vector<std::vector<double>>& load,
                                     int32_t redundant_per_gpu, int32_t num_groups) {
  RETURN_IF_ERROR(topology.Validate());
  if (num_logical_experts % topology.num_gpus() != 0 || redundant_per_gpu < 0) {
    return InvalidArgumentError(std::to_string(num_logical_experts) + " experts must divide over " +
                                std::to_string(topology.num_gpus()) +
                                " GPUs and redundant_per_gpu must be >= 0");
  }
  if (load.size() != moe_layers.size()) {
    return InvalidArgumentError("eplb: load has " + std::to_string(load.size()) + " layers for " +
                                std::to_string(moe_layers.size()) + " MoE layers");
  }
  PlacementPlan plan;
  plan.topology = topology;
  plan.num_logical_experts = num_logical_experts;
  plan.slots_per_gpu = num_logical_experts / topology.num_gpus() + redundant_per_gpu;
  plan.moe_layers = moe_layers;
  if (moe_layers.empty()) return plan;
  ASSIGN_OR_RETURN(EplbPlan eplb, RebalanceExperts(load, plan.num_physical(), num_groups,
                                                   topology.num_nodes(), topology.num_gpus()));
  plan.phy2log = std::move(eplb.phy2log);
  RETURN_IF_ERROR(plan.Validate());
  return plan;
}

}  // namespace switchyard
