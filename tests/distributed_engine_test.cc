// The forward pass with a DistributedExpertRunner over N local ranks (threads) reproduces the
// single-process engine: identical greedy tokens, logits within 1e-5 relative, for 1, 2 and 4
// ranks, with replicated experts, on the Hugging Face fixtures. Each rank loads only the experts
// placed on it and serves its own prompts (attention is data-parallel); ranks run every step in
// lockstep, with empty batches once their prompts are done.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <thread>

#include "distributed_rank.h"
#include "transport/transport_factory.h"

namespace switchyard {
namespace {

using testing::kNewTokens;
using testing::Placement;

class DistributedEngineTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(DistributedEngineTest, ReproducesSingleProcessEngine) {
  const auto [fixture, world] = GetParam();
  const std::string dir = testing::FixtureDir(fixture);
  const auto prompts = testing::Prompts(dir);
  const testing::Reference reference = testing::SingleProcessReference(dir, prompts);
  ASSERT_EQ(reference.results.size(), prompts.size());
  auto local = MakeLocalWorld(world);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  std::vector<testing::RankResult> results(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      std::vector<std::vector<int32_t>> mine;
      for (size_t p : testing::OwnedPrompts(prompts.size(), r, world)) mine.push_back(prompts[p]);
      results[r] = testing::RunRank(dir, &(*local)->transport(r), mine);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    testing::CheckRank(fixture, reference, r, world,
                       testing::OwnedPrompts(prompts.size(), r, world), results[r]);
  }
}

// A rank that never joins the step: the others' forward pass fails within the runner's deadline,
// naming it, instead of hanging.
TEST(DistributedEngineFaultTest, SilentPeerIsNamedWithinTheDeadline) {
  const std::string dir = testing::FixtureDir("mixtral");
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok());
  auto weights = LoadModelWeights(dir, *config);
  ASSERT_TRUE(weights.ok());
  Model model(*config, std::move(*weights));
  auto local = MakeLocalWorld(2);
  ASSERT_TRUE(local.ok());
  DistributedExpertOptions options;
  options.timeout = std::chrono::milliseconds(200);
  DistributedExpertRunner runner(model.config(), model.weights(), &(*local)->transport(0),
                                 std::vector<ExpertPlacement>(config->num_layers, Placement(8, 2)),
                                 options);
  KvCache cache(model.config(), 16);
  ForwardBatch batch;
  batch.tokens = {1, 2, 3};
  batch.chunks.push_back({cache.Allocate(), 3, false, true});
  Tensor logits;
  const auto start = std::chrono::steady_clock::now();
  Status s = model.Forward(batch, &cache, &runner, &logits);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
  EXPECT_NE(s.message().find("rank 1"), std::string::npos) << s.ToString();
  EXPECT_LT(secs, 5.0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DistributedEngineTest,
                         ::testing::Combine(::testing::ValuesIn(testing::DistributedFixtures()),
                                            ::testing::Values(1, 2, 4)));

}  // namespace
}  // namespace switchyard
