// The forward pass with a DistributedExpertRunner over N local ranks (threads) reproduces the
// single-process engine: identical greedy tokens, logits within 1e-5 relative, for 1, 2 and 4
// ranks, with replicated experts, on the Hugging Face fixtures. Each rank loads only the experts
// placed on it and serves its own prompts (attention is data-parallel); ranks run every step in
// lockstep, with empty batches once their prompts are done. The runner's BF16 path gives bitwise
// the FP32 API's logits with the same BF16 transit (DistributedBf16PathTest).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
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

// The runner's BF16 path (DispatchBf16 / CombineBf16: tokens rounded once, views widened for the
// experts, combine rows sent in place) against the FP32 API with the same transit dtypes: the
// forward pass gives bitwise identical logits (the documented BF16 tolerance is the FP32-API
// path's; here it is zero), on every fixture, with 2 and 4 ranks, for a prefill step and a decode
// step with one rank idle. A third runner with FP32 transit shows the BF16 runs are BF16 (they
// differ from it) and close to it (within a loose 5% of the largest logit).
class DistributedBf16PathTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(DistributedBf16PathTest, MatchesFp32ApiBitwise) {
  const auto [fixture, world] = GetParam();
  const std::string dir = testing::FixtureDir(fixture);
  auto local = MakeLocalWorld(world);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      auto config = LoadModelConfig(dir);
      ASSERT_TRUE(config.ok()) << config.status().ToString();
      auto weights = LoadModelWeights(dir, *config);
      ASSERT_TRUE(weights.ok()) << weights.status().ToString();
      Model model(*config, std::move(*weights));
      const std::vector<ExpertPlacement> placement(
          config->num_layers, Placement(static_cast<int32_t>(config->num_experts), world));
      // 0: the FP32 API with BF16 transit both ways; 1: the BF16 path; 2: BF16 dispatch on the
      // BF16 path, F32 combine; 3: the FP32 API, BF16 dispatch, F32 combine; 4: F32 transit.
      const PayloadDtype bf16 = PayloadDtype::kBF16, f32 = PayloadDtype::kF32;
      const struct {
        PayloadDtype dispatch, combine;
        bool bf16_path;
      } variants[] = {{bf16, bf16, false},
                      {bf16, bf16, true},
                      {bf16, f32, true},
                      {bf16, f32, false},
                      {f32, f32, true}};
      constexpr int kVariants = 5;
      std::vector<std::unique_ptr<DistributedExpertRunner>> runners;
      std::vector<std::unique_ptr<KvCache>> caches;
      std::vector<int64_t> slots;
      for (const auto& v : variants) {
        DistributedExpertOptions options;
        options.dispatch_dtype = v.dispatch;
        options.combine_dtype = v.combine;
        options.bf16_path = v.bf16_path;
        runners.push_back(std::make_unique<DistributedExpertRunner>(
            model.config(), model.weights(), &(*local)->transport(r), placement, options));
        ASSERT_TRUE(runners.back()->Validate().ok());
        caches.push_back(std::make_unique<KvCache>(model.config(), 32));
        slots.push_back(caches.back()->Allocate());
      }
      for (int step = 0; step < 2; ++step) {
        ForwardBatch batch;
        if (step == 0) {  // prefill: a prompt of 3 + 2r tokens, ids from the rank
          for (int i = 0; i < 3 + 2 * r; ++i) batch.tokens.push_back(1 + (7 * i + 3 * r) % 50);
        } else if (r != 1) {  // decode: rank 1 idle (empty batch, still in every collective)
          batch.tokens.push_back(2 + r);
        }
        std::vector<Tensor> logits(kVariants);
        for (int v = 0; v < kVariants; ++v) {
          ForwardBatch b = batch;
          if (!b.tokens.empty()) {
            b.chunks.push_back({slots[v], static_cast<int64_t>(b.tokens.size()), false, true});
          }
          const Status st = model.Forward(b, caches[v].get(), runners[v].get(), &logits[v]);
          ASSERT_TRUE(st.ok()) << "variant " << v << ": " << st.ToString();
        }
        const std::string where =
            fixture + " rank " + std::to_string(r) + " step " + std::to_string(step);
        const size_t n = static_cast<size_t>(logits[0].size());
        for (int v = 1; v < kVariants; ++v) ASSERT_EQ(logits[v].size(), logits[0].size());
        if (n == 0) continue;
        EXPECT_EQ(0, std::memcmp(logits[0].data(), logits[1].data(), 4 * n)) << where;
        EXPECT_EQ(0, std::memcmp(logits[3].data(), logits[2].data(), 4 * n)) << where;
        double max_ref = 0, max_diff = 0;
        for (size_t i = 0; i < n; ++i) {
          max_ref = std::max(max_ref, std::fabs(double{logits[4].data()[i]}));
          max_diff = std::max(max_diff,
                              std::fabs(double{logits[1].data()[i]} - double{logits[4].data()[i]}));
        }
        EXPECT_GT(max_diff, 0.0) << where << ": BF16 transit changed nothing";
        EXPECT_LE(max_diff, 0.05 * max_ref) << where;
      }
    });
  }
  for (auto& t : threads) t.join();
}

INSTANTIATE_TEST_SUITE_P(Fixtures, DistributedBf16PathTest,
                         ::testing::Combine(::testing::ValuesIn(testing::DistributedFixtures()),
                                            ::testing::Values(2, 4)));

INSTANTIATE_TEST_SUITE_P(Fixtures, DistributedEngineTest,
                         ::testing::Combine(::testing::ValuesIn(testing::DistributedFixtures()),
                                            ::testing::Values(1, 2, 4)));

}  // namespace
}  // namespace switchyard
