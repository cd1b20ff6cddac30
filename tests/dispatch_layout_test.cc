// Dispatch layout against a single-rank reference: route, run a known per-expert function on
// the receiving side, combine, compare.
#include "transport/dispatch_layout.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

namespace switchyard {
namespace {

// Expert e scales its input by (e + 1); replicas of e compute the same thing.
float ExpertFn(int32_t logical_expert, float x) { return (logical_expert + 1) * x; }

TEST(DispatchLayoutTest, OneRowPerTokenAndRank) {
  ExpertPlacement placement = ExpertPlacement::Contiguous(8, 4);  // 2 experts per rank
  ASSERT_TRUE(placement.Validate().ok());
  // Token 0 -> experts 0, 1 (both rank 0); token 1 -> experts 1, 6 (ranks 0 and 3).
  const int32_t idx[] = {0, 1, 1, 6};
  const float w[] = {0.75f, 0.25f, 0.5f, 0.5f};
  auto layout = ComputeDispatchLayout(idx, w, 2, 2, placement, ReplicaPolicy::kBalance, 0);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_EQ(layout->num_tokens_per_rank, (std::vector<int64_t>{2, 0, 0, 1}));
  EXPECT_EQ(layout->rank_prefix, (std::vector<int64_t>{0, 2, 2, 2, 3}));
  EXPECT_EQ(layout->row_token_idx, (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(layout->entry_prefix, (std::vector<int64_t>{0, 2, 3, 4}));
  EXPECT_EQ(layout->entry_local_expert, (std::vector<int32_t>{0, 1, 1, 0}));
  EXPECT_EQ(layout->entry_weight, (std::vector<float>{0.75f, 0.25f, 0.5f, 0.5f}));
  EXPECT_EQ(layout->num_tokens_per_expert[0], (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(layout->num_tokens_per_expert[3], (std::vector<int64_t>{1, 0}));
}

// Random routings over placements with replicas: every (token, k) is delivered exactly once, the
// layout's counts agree with its rows, and dispatch -> experts -> combine equals the reference.
TEST(DispatchLayoutTest, RandomRoutingsWithReplicasMatchReference) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    const int32_t world = 1 + trial % 4, experts = 8 * world, topk = 1 + trial % 6;
    const int64_t tokens = trial % 7 == 0 ? 0 : 1 + rng() % 40;
    // Contiguous placement plus replicas of a few hot experts on other ranks.
    std::vector<std::vector<ExpertReplica>> replicas(experts);
    std::vector<int32_t> next_slot(world, 8);
    for (int32_t e = 0; e < experts; ++e) replicas[e].push_back({e / 8, e % 8});
    for (int hot = 0; hot < 3 && world > 1; ++hot) {
      const int32_t e = rng() % experts, rank = (e / 8 + 1 + hot) % world;
      bool already = false;
      for (const auto& r : replicas[e]) already |= r.rank_idx == rank;
      if (!already) replicas[e].push_back({rank, next_slot[rank]++});
    }
    ExpertPlacement placement(world, replicas);
    ASSERT_TRUE(placement.Validate().ok());
    std::vector<int32_t> idx(tokens * topk);
    std::vector<float> weights(tokens * topk), x(tokens);
    for (int64_t t = 0; t < tokens; ++t) {
      x[t] = static_cast<float>(t % 5) - 2.0f;
      std::set<int32_t> chosen;
      for (int32_t k = 0; k < topk; ++k) {
        int32_t e;
        do e = rng() % experts;
        while (!chosen.insert(e).second);
        idx[t * topk + k] = e;
        weights[t * topk + k] = 0.125f * (k + 1);
      }
    }
    for (ReplicaPolicy policy : {ReplicaPolicy::kBalance, ReplicaPolicy::kPreferLocal}) {
      const int32_t me = trial % world;
      auto layout =
          ComputeDispatchLayout(idx.data(), weights.data(), tokens, topk, placement, policy, me);
      ASSERT_TRUE(layout.ok()) << layout.status().ToString();
      // Receiver side: slot -> logical expert, per rank.
      std::map<std::pair<int32_t, int32_t>, int32_t> slot_expert;
      for (int32_t e = 0; e < experts; ++e) {
        for (const auto& r : placement.replicas(e))
          slot_expert[{r.rank_idx, r.local_expert_idx}] = e;
      }
      std::vector<float> combined(tokens, 0.0f);
      std::vector<std::vector<int64_t>> per_expert(world);
      for (int32_t r = 0; r < world; ++r) per_expert[r].assign(placement.NumLocalExperts(r), 0);
      int64_t entries = 0;
      for (int32_t r = 0; r < world; ++r) {
        std::set<int64_t> tokens_on_rank;
        for (int64_t row = layout->rank_prefix[r]; row < layout->rank_prefix[r + 1]; ++row) {
          const int64_t t = layout->row_token_idx[row];
          EXPECT_TRUE(tokens_on_rank.insert(t).second) << "token sent twice to rank " << r;
          float out = 0;  // what rank r returns for this row: weights applied at the receiver
          for (int64_t en = layout->entry_prefix[row]; en < layout->entry_prefix[row + 1]; ++en) {
            const int32_t slot = layout->entry_local_expert[en];
            ++per_expert[r][slot];
            out += layout->entry_weight[en] * ExpertFn(slot_expert.at({r, slot}), x[t]);
            ++entries;
          }
          combined[t] += out;
        }
        EXPECT_EQ(static_cast<int64_t>(tokens_on_rank.size()), layout->num_tokens_per_rank[r]);
      }
      EXPECT_EQ(entries, tokens * topk);
      EXPECT_EQ(per_expert, layout->num_tokens_per_expert);
      for (int64_t t = 0; t < tokens; ++t) {
        float ref = 0;
        for (int32_t k = 0; k < topk; ++k) {
          ref += weights[t * topk + k] * ExpertFn(idx[t * topk + k], x[t]);
        }
        EXPECT_NEAR(combined[t], ref, 1e-5f * (1 + std::abs(ref))) << "trial " << trial;
      }
    }
  }
}

TEST(DispatchLayoutTest, PreferLocalPicksOwnReplicaThenNode) {
  // Expert 0 on ranks 0 and 2; expert 1 on ranks 1 and 3. Nodes: {0,1}, {2,3}.
  ExpertPlacement placement(4, {{{0, 0}, {2, 0}}, {{1, 0}, {3, 0}}}, {0, 0, 1, 1});
  ASSERT_TRUE(placement.Validate().ok());
  const int32_t idx[] = {0, 1, 0, 1};
  const float w[] = {0.5f, 0.5f, 0.5f, 0.5f};
  auto on2 = ComputeDispatchLayout(idx, w, 2, 2, placement, ReplicaPolicy::kPreferLocal, 2);
  ASSERT_TRUE(on2.ok());
  // From rank 2: expert 0 stays on rank 2, expert 1 goes to rank 3 (same node).
  EXPECT_EQ(on2->num_tokens_per_rank, (std::vector<int64_t>{0, 0, 2, 2}));
  auto balanced = ComputeDispatchLayout(idx, w, 2, 2, placement, ReplicaPolicy::kBalance, 2);
  ASSERT_TRUE(balanced.ok());
  EXPECT_EQ(balanced->num_rows(), 4);
}

TEST(DispatchLayoutTest, BadInputIsAnError) {
  ExpertPlacement placement = ExpertPlacement::Contiguous(4, 2);
  const int32_t bad[] = {4};
  const float w[] = {1.0f};
  auto s = ComputeDispatchLayout(bad, w, 1, 1, placement, ReplicaPolicy::kBalance, 0);
  EXPECT_NE(s.status().message().find("expert 4 of 4"), std::string::npos);
  auto r = ComputeDispatchLayout(bad, w, 1, 1, placement, ReplicaPolicy::kBalance, 2);
  EXPECT_NE(r.status().message().find("rank 2"), std::string::npos);
  EXPECT_NE(ExpertPlacement(2, {{}}).Validate().message().find("expert 0 has no replica"),
            std::string::npos);
  EXPECT_NE(ExpertPlacement(2, {{{5, 0}}}).Validate().message().find("rank 5"), std::string::npos);
  EXPECT_NE(ExpertPlacement(2, {{{0, 0}}, {{0, 0}}}).Validate().message().find("already taken"),
            std::string::npos);
  EXPECT_NE(ExpertPlacement(2, {{{0, 1}}}).Validate().message().find("gaps"), std::string::npos);
}

}  // namespace
}  // namespace switchyard
