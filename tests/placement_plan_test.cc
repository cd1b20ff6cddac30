#include "coordinator/placement/placement_plan.h"

#include <gtest/gtest.h>

namespace switchyard {
namespace {

const std::vector<std::vector<double>> kLoad = {
    {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
    {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}};

ClusterTopology TwoNodesFourGpus() {
  ClusterTopology t;
  t.racks = 1;
  t.nodes_per_rack = 2;
  t.gpus_per_node = 4;
  return t;
}

TEST(PlacementPlanTest, EplbPlanImprovesBalanceOverContiguous) {
  // The EPLB README example: 12 experts, 4 groups, 2 nodes x 4 GPUs, 16 slots (2 per GPU).
  auto plan = PlanWithEplb(TwoNodesFourGpus(), 12, {3, 4}, kLoad, /*redundant_per_gpu=*/0, 4);
  // 12 experts do not divide over 8 GPUs: the plan needs whole slots per GPU.
  EXPECT_FALSE(plan.ok());
  ClusterTopology t = TwoNodesFourGpus();
  t.gpus_per_node = 2;  // 4 GPUs: 3 experts each + 1 redundant slot = 16 slots
  auto eplb = PlanWithEplb(t, 12, {3, 4}, kLoad, 1, 4);
  ASSERT_TRUE(eplb.ok()) << eplb.status().ToString();
  auto contiguous = ContiguousPlan(t, 12, {3, 4});
  ASSERT_TRUE(contiguous.ok());
  auto b_eplb = eplb->Balance(kLoad);
  auto b_cont = contiguous->Balance(kLoad);
  ASSERT_TRUE(b_eplb.ok() && b_cont.ok());
  for (size_t l = 0; l < 2; ++l) {
    EXPECT_NEAR((*b_eplb)[l].mean_gpu_load, (*b_cont)[l].mean_gpu_load, 1e-9);
    EXPECT_LT((*b_eplb)[l].max_gpu_load, (*b_cont)[l].max_gpu_load) << "layer " << l;
  }
}

TEST(PlacementPlanTest, JsonRoundTrip) {
  ClusterTopology t = TwoNodesFourGpus();
  t.gpus_per_node = 2;
  auto plan = PlanWithEplb(t, 12, {3, 4}, kLoad, 1, 4);
  ASSERT_TRUE(plan.ok());
  auto back = PlacementPlan::FromJson(plan->ToJson(), "plan.json");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->phy2log, plan->phy2log);
  EXPECT_EQ(back->moe_layers, plan->moe_layers);
  EXPECT_EQ(back->slots_per_gpu, 4);
}

TEST(PlacementPlanTest, SuppliedPlanErrorsNameTheEntry) {
  const std::string head =
      R"({"topology": {"racks": 1, "nodes_per_rack": 1, "gpus_per_node": 2},
          "num_logical_experts": 4, "slots_per_gpu": 2, "layers": [)";
  auto error = [&](const std::string& layers) {
    return PlacementPlan::FromJson(head + layers + "]}", "plan.json").status().message();
  };
  EXPECT_TRUE(
      PlacementPlan::FromJson(head + R"({"layer": 1, "gpus": [[0, 1], [2, 3]]}]})", "p").ok());
  EXPECT_NE(
      error(R"({"layer": 1, "gpus": [[0, 1], [2, 2]]})").find("layer 1: expert 3 is not placed"),
      std::string::npos);
  EXPECT_NE(
      error(R"({"layer": 1, "gpus": [[0, 1], [2, 9]]})").find("slot 3 (GPU 1) holds expert 9"),
      std::string::npos);
  EXPECT_NE(error(R"({"layer": 1, "gpus": [[0, 1, 2], [3]]})").find("gpus[0] must list 2"),
            std::string::npos);
  EXPECT_NE(error(R"({"layer": 1, "gpus": [[0, 1]]})").find("must list 2 GPUs"), std::string::npos);
  EXPECT_NE(error(R"({"gpus": [[0, 1], [2, 3]]})").find("layers[0].'layer'"), std::string::npos);
  EXPECT_NE(PlacementPlan::FromJson("[", "plan.json").status().message().find("plan.json"),
            std::string::npos);
}

}  // namespace
}  // namespace switchyard
