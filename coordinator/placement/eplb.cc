#include "coordinator/placement/eplb.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace switchyard {
namespace {

// Indices sorted by descending weight; equal weights keep ascending index (stable).
std::vector<int32_t> DescendingOrder(const std::vector<float>& weight) {
  std::vector<int32_t> order(weight.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return weight[a] > weight[b]; });
  return order;
}

// One layer of the hierarchical policy; outputs are indexed by physical slot / logical expert.
void Hierarchical(const std::vector<float>& weight, int32_t num_phy, int32_t num_groups,
                  int32_t num_nodes, int32_t num_gpus, std::vector<int32_t>* pphy2log,
                  std::vector<int32_t>* pphy_rank, std::vector<int32_t>* logcnt) {
  const int32_t num_log = static_cast<int32_t>(weight.size());
  const int32_t group_size = num_log / num_groups;
  const int32_t groups_per_node = num_groups / num_nodes;
  const int32_t log_per_node = num_log / num_nodes;
  const int32_t phy_per_node = num_phy / num_nodes;
  const int32_t gpus_per_node = num_gpus / num_nodes;
  const int32_t phy_per_gpu = num_phy / num_gpus;

  // 1. Groups onto nodes; "middle-logical" ids number experts node-major.
  std::vector<float> tokens_per_group(num_groups, 0.0f);
  for (int32_t e = 0; e < num_log; ++e) tokens_per_group[e / group_size] += weight[e];
  std::vector<int32_t> group_pack, group_rank;
  BalancedPacking(tokens_per_group, num_nodes, &group_pack, &group_rank);
  std::vector<int32_t> log2mlog(num_log), mlog2log(num_log);
  for (int32_t e = 0; e < num_log; ++e) {
    const int32_t g = e / group_size;
    log2mlog[e] = (group_pack[g] * groups_per_node + group_rank[g]) * group_size + e % group_size;
    mlog2log[log2mlog[e]] = e;
  }

  pphy2log->assign(num_phy, -1);
  pphy_rank->assign(num_phy, 0);
  std::vector<int32_t> mlogcnt_all(num_log, 0);
  for (int32_t node = 0; node < num_nodes; ++node) {
    // 2. Replicate within the node.
    std::vector<float> node_weight(log_per_node);
    for (int32_t j = 0; j < log_per_node; ++j) {
      node_weight[j] = weight[mlog2log[node * log_per_node + j]];
    }
    std::vector<int32_t> phy2mlog, phy_rank, mlogcnt;
    ReplicateExperts(node_weight, phy_per_node, &phy2mlog, &phy_rank, &mlogcnt);
    for (int32_t j = 0; j < log_per_node; ++j) mlogcnt_all[node * log_per_node + j] = mlogcnt[j];
    // 3. Replicas onto the node's GPUs by load per replica.
    std::vector<float> tokens_per_phy(phy_per_node);
    for (int32_t p = 0; p < phy_per_node; ++p) {
      tokens_per_phy[p] = node_weight[phy2mlog[p]] / static_cast<float>(mlogcnt[phy2mlog[p]]);
    }
    std::vector<int32_t> pack, rank;
    BalancedPacking(tokens_per_phy, gpus_per_node, &pack, &rank);
    // 4. Back to logical ids, node-major physical slots.
    for (int32_t p = 0; p < phy_per_node; ++p) {
      const int32_t slot = node * phy_per_node + pack[p] * phy_per_gpu + rank[p];
      (*pphy2log)[slot] = mlog2log[node * log_per_node + phy2mlog[p]];
      (*pphy_rank)[slot] = phy_rank[p];
    }
  }
  logcnt->assign(num_log, 0);
  for (int32_t e = 0; e < num_log; ++e) (*logcnt)[e] = mlogcnt_all[log2mlog[e]];
}

}  // namespace

void BalancedPacking(const std::vector<float>& weight, int32_t num_packs,
                     std::vector<int32_t>* pack_index, std::vector<int32_t>* rank_in_pack) {
  const int32_t n = static_cast<int32_t>(weight.size());
  const int32_t per_pack = n / num_packs;
  pack_index->assign(n, 0);
  rank_in_pack->assign(n, 0);
  if (per_pack == 1) {
    std::iota(pack_index->begin(), pack_index->end(), 0);
    return;
  }
  std::vector<double> pack_weight(num_packs, 0.0);
  std::vector<int32_t> pack_items(num_packs, 0);
  for (int32_t item : DescendingOrder(weight)) {
    int32_t best = -1;
    for (int32_t p = 0; p < num_packs; ++p) {
      if (pack_items[p] < per_pack && (best < 0 || pack_weight[p] < pack_weight[best])) best = p;
    }
    (*pack_index)[item] = best;
    (*rank_in_pack)[item] = pack_items[best]++;
    pack_weight[best] += weight[item];
  }
}

void ReplicateExperts(const std::vector<float>& weight, int32_t num_phy,
                      std::vector<int32_t>* phy2log, std::vector<int32_t>* phy_rank,
                      std::vector<int32_t>* logcnt) {
  const int32_t num_log = static_cast<int32_t>(weight.size());
  phy2log->assign(num_phy, 0);
  phy_rank->assign(num_phy, 0);
  logcnt->assign(num_log, 1);
  std::iota(phy2log->begin(), phy2log->begin() + num_log, 0);
  for (int32_t i = num_log; i < num_phy; ++i) {
    int32_t best = 0;
    float best_load = weight[0] / static_cast<float>((*logcnt)[0]);
    for (int32_t e = 1; e < num_log; ++e) {
      const float load = weight[e] / static_cast<float>((*logcnt)[e]);
      if (load > best_load) {
        best = e;
        best_load = load;
      }
    }
    (*phy2log)[i] = best;
    (*phy_rank)[i] = (*logcnt)[best]++;
  }
}

StatusOr<EplbPlan> RebalanceExperts(const std::vector<std::vector<double>>& weight,
                                    int32_t num_replicas, int32_t num_groups, int32_t num_nodes,
                                    int32_t num_gpus) {
  if (weight.empty() || weight[0].empty()) {
    return InvalidArgumentError("eplb: load statistics are empty");
  }
  const int32_t num_log = static_cast<int32_t>(weight[0].size());
  if (num_gpus <= 0 || num_nodes <= 0 || num_groups <= 0) {
    return InvalidArgumentError("eplb: num_gpus, num_nodes and num_groups must be > 0");
  }
  if (num_replicas % num_gpus != 0 || num_replicas < num_log) {
    return InvalidArgumentError("eplb: num_replicas (" + std::to_string(num_replicas) +
                                ") must be a multiple of num_gpus (" + std::to_string(num_gpus) +
                                ") and at least the " + std::to_string(num_log) +
                                " logical experts");
  }
  for (size_t l = 0; l < weight.size(); ++l) {
    if (static_cast<int32_t>(weight[l].size()) != num_log) {
      return InvalidArgumentError("eplb: layer " + std::to_string(l) + " has " +
                                  std::to_string(weight[l].size()) + " experts, layer 0 has " +
                                  std::to_string(num_log));
    }
    for (size_t e = 0; e < weight[l].size(); ++e) {
      if (!std::isfinite(weight[l][e]) || weight[l][e] < 0) {
        return InvalidArgumentError("eplb: load of layer " + std::to_string(l) + " expert " +
                                    std::to_string(e) + " is not a finite count >= 0");
      }
    }
  }
  EplbPlan plan;
  plan.hierarchical = num_groups % num_nodes == 0;
  // Only the hierarchical policy splits GPUs over nodes (the global one sees one node).
  if (plan.hierarchical && num_gpus % num_nodes != 0) {
    return InvalidArgumentError("eplb: num_gpus (" + std::to_string(num_gpus) +
                                ") must be a multiple of num_nodes (" + std::to_string(num_nodes) +
                                ")");
  }
  const int32_t groups = plan.hierarchical ? num_groups : 1;
  const int32_t nodes = plan.hierarchical ? num_nodes : 1;
  if (num_log % groups != 0) {
    return InvalidArgumentError("eplb: " + std::to_string(num_log) + " experts do not split into " +
                                std::to_string(groups) + " groups");
  }
  if (plan.hierarchical && (num_log / nodes) > num_replicas / nodes) {
    return InvalidArgumentError("eplb: a node gets more experts than physical slots");
  }
  for (const auto& layer : weight) {
    std::vector<float> w(layer.begin(), layer.end());  // the reference works in float32
    std::vector<int32_t> phy2log, phy_rank, logcnt;
    Hierarchical(w, num_replicas, groups, nodes, num_gpus, &phy2log, &phy_rank, &logcnt);
    const int32_t max_cnt = *std::max_element(logcnt.begin(), logcnt.end());
    std::vector<std::vector<int32_t>> log2phy(num_log, std::vector<int32_t>(max_cnt, -1));
    for (int32_t p = 0; p < num_replicas; ++p) log2phy[phy2log[p]][phy_rank[p]] = p;
    plan.phy2log.push_back(std::move(phy2log));
    plan.log2phy.push_back(std::move(log2phy));
    plan.logcnt.push_back(std::move(logcnt));
  }
  return plan;
}

}  // namespace switchyard
