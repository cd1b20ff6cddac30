// EPLB against the upstream outputs: the README's worked example (hierarchical) and values from
// running upstream eplb.py (global policy), shared/reference/specs.md §6.3-6.4.
#include "coordinator/placement/eplb.h"

#include <gtest/gtest.h>

namespace switchyard {
namespace {

using Mat = std::vector<std::vector<int32_t>>;
using Cube = std::vector<std::vector<std::vector<int32_t>>>;

const std::vector<std::vector<double>> kWeight = {
    {90, 132, 40, 61, 104, 165, 39, 4, 73, 56, 183, 86},
    {20, 107, 104, 64, 19, 197, 187, 157, 172, 86, 16, 27}};

TEST(EplbTest, ReadmeWorkedExampleHierarchical) {
  auto plan = RebalanceExperts(kWeight, 16, 4, 2, 8);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_TRUE(plan->hierarchical);
  EXPECT_EQ(plan->phy2log, (Mat{{5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1},
                                {7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1}}));
  EXPECT_EQ(plan->log2phy, (Cube{{{12, -1},
                                  {15, 13},
                                  {11, -1},
                                  {6, -1},
                                  {7, 5},
                                  {0, 2},
                                  {1, -1},
                                  {3, -1},
                                  {4, -1},
                                  {9, -1},
                                  {8, 10},
                                  {14, -1}},
                                 {{13, -1},
                                  {15, 11},
                                  {8, -1},
                                  {14, -1},
                                  {9, -1},
                                  {10, 12},
                                  {2, 4},
                                  {0, -1},
                                  {6, 3},
                                  {7, -1},
                                  {1, -1},
                                  {5, -1}}}));
  EXPECT_EQ(plan->logcnt,
            (Mat{{1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1}, {1, 2, 1, 1, 1, 2, 2, 1, 2, 1, 1, 1}}));
  // Per-GPU load (2 slots per GPU) as upstream reports it.
  const std::vector<std::vector<double>> gpu_load = {
      {121.5, 86.5, 125.0, 113.0, 147.5, 131.5, 156.0, 152.0},
      {173.0, 179.5, 120.5, 172.0, 123.0, 152.0, 118.5, 117.5}};
  for (int l = 0; l < 2; ++l) {
    for (int g = 0; g < 8; ++g) {
      double load = 0;
      for (int p = 2 * g; p < 2 * g + 2; ++p) {
        const int e = plan->phy2log[l][p];
        load += kWeight[l][e] / plan->logcnt[l][e];
      }
      EXPECT_DOUBLE_EQ(load, gpu_load[l][g]) << "layer " << l << " gpu " << g;
    }
  }
}

TEST(EplbTest, GlobalPolicyWhenGroupsDoNotSplitOverNodes) {
  auto plan = RebalanceExperts(kWeight, 16, 4, 3, 8);  // 4 % 3 != 0 -> global
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_FALSE(plan->hierarchical);
  EXPECT_EQ(plan->phy2log, (Mat{{10, 6, 10, 7, 0, 2, 11, 4, 5, 9, 5, 4, 8, 3, 1, 1},
                                {1, 10, 2, 4, 5, 11, 5, 0, 6, 7, 6, 3, 8, 8, 9, 7}}));
  EXPECT_EQ(plan->log2phy, (Cube{{{4, -1},
                                  {14, 15},
                                  {5, -1},
                                  {13, -1},
                                  {11, 7},
                                  {8, 10},
                                  {1, -1},
                                  {3, -1},
                                  {12, -1},
                                  {9, -1},
                                  {0, 2},
                                  {6, -1}},
                                 {{7, -1},
                                  {0, -1},
                                  {2, -1},
                                  {11, -1},
                                  {3, -1},
                                  {4, 6},
                                  {8, 10},
                                  {15, 9},
                                  {12, 13},
                                  {14, -1},
                                  {1, -1},
                                  {5, -1}}}));
  EXPECT_EQ(plan->logcnt,
            (Mat{{1, 2, 1, 1, 2, 2, 1, 1, 1, 1, 2, 1}, {1, 1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 1}}));
}

TEST(EplbTest, BuildingBlocks) {
  std::vector<int32_t> pack, rank;
  BalancedPacking({262, 330, 116, 325}, 2, &pack, &rank);  // README layer 0 groups
  EXPECT_EQ(pack, (std::vector<int32_t>{1, 0, 0, 1}));
  EXPECT_EQ(rank, (std::vector<int32_t>{1, 0, 1, 0}));
  std::vector<int32_t> phy2log, phy_rank, cnt;
  ReplicateExperts({61, 104, 165, 39, 4, 73}, 8, &phy2log, &phy_rank, &cnt);
  EXPECT_EQ(phy2log, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 2, 1}));
  EXPECT_EQ(cnt, (std::vector<int32_t>{1, 2, 2, 1, 1, 1}));
}

TEST(EplbTest, BadArgumentsNameTheConstraint) {
  EXPECT_NE(RebalanceExperts(kWeight, 15, 4, 2, 8).status().message().find("multiple of num_gpus"),
            std::string::npos);
  EXPECT_NE(RebalanceExperts(kWeight, 18, 4, 4, 6).status().message().find("num_nodes"),
            std::string::npos);
  EXPECT_NE(RebalanceExperts(kWeight, 8, 4, 2, 8).status().message().find("at least"),
            std::string::npos);
  EXPECT_NE(RebalanceExperts({{1, 2}, {1}}, 2, 1, 1, 1).status().message().find("layer 1"),
            std::string::npos);
  EXPECT_NE(RebalanceExperts({{1, -2}}, 2, 1, 1, 1).status().message().find("expert 1"),
            std::string::npos);
  EXPECT_NE(RebalanceExperts(kWeight, 16, 5, 1, 8).status().message().find("groups"),
            std::string::npos);
}

}  // namespace
}  // namespace switchyard
