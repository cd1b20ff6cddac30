// The forward pass with a DistributedExpertRunner over N local ranks (threads) reproduces the
// single-process engine: identical greedy tokens, logits within 1e-5 relative, for 1, 2 and 4
// ranks, with replicated experts, on the Hugging Face fixtures. Each rank loads only the experts
// placed on it and serves its own prompts (attention is data-parallel); ranks run every step in
// lockstep, with empty batches once their prompts are done.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <thread>

#include "model/engine.h"
#include "model/safetensors.h"
#include "test_util.h"
#include "transport/transport_factory.h"
#include "worker/distributed_expert_runner.h"

namespace switchyard {
namespace {

constexpr int kNewTokens = 6;

std::vector<std::vector<int32_t>> Prompts(const std::string& dir) {
  auto file = SafetensorsFile::Open(dir + "/reference.safetensors");
  EXPECT_TRUE(file.ok());
  std::vector<std::vector<int32_t>> out;
  for (int p = 0; file.ok(); ++p) {
    const TensorInfo* in = (*file)->Find("prompt_" + std::to_string(p) + ".input_ids");
    if (in == nullptr) break;
    std::vector<int32_t> ids(in->NumElements());
    std::memcpy(ids.data(), (*file)->Data(*in), ids.size() * 4);
    out.push_back(std::move(ids));
  }
  // A fourth, longer prompt so that 4 ranks each get one.
  out.push_back({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13});
  return out;
}

// Contiguous experts plus a replica of expert 0 on the last rank (and of the last expert on
// rank 0), so replica choice is exercised.
ExpertPlacement Placement(int32_t experts, int32_t world) {
  const int32_t per_rank = experts / world;
  std::vector<std::vector<ExpertReplica>> replicas(experts);
  for (int32_t e = 0; e < experts; ++e) replicas[e].push_back({e / per_rank, e % per_rank});
  if (world > 1) {
    replicas[0].push_back({world - 1, per_rank});
    replicas[experts - 1].push_back({0, per_rank});
  }
  return ExpertPlacement(world, std::move(replicas));
}

struct RankResult {
  RankResult() = default;
  explicit RankResult(Status s) : status(std::move(s)) {}
  Status status;
  std::vector<std::vector<int32_t>> tokens;             // per prompt of this rank
  std::vector<std::vector<std::vector<float>>> logits;  // per prompt, per step
  int64_t expert_bytes = 0;
};

// One rank: prefill its prompts, then greedy decode, for kNewTokens lockstep steps.
RankResult RunRank(const std::string& dir, Transport* transport,
                   const std::vector<std::vector<int32_t>>& prompts) {
  RankResult res;
  auto config = LoadModelConfig(dir);
  if (!config.ok()) return RankResult(config.status());
  const int32_t world = transport->world_size(), rank = transport->rank();
  std::vector<ExpertPlacement> placement(
      config->num_layers, Placement(static_cast<int32_t>(config->num_experts), world));
  LoadSelection selection;
  selection.want_expert = [&](int64_t layer, int64_t e) {
    for (const auto& r : placement[layer].replicas(static_cast<int32_t>(e))) {
      if (r.rank_idx == rank) return true;
    }
    return false;
  };
  auto weights = LoadModelWeights(dir, *config, selection);
  if (!weights.ok()) return RankResult(weights.status());
  res.expert_bytes = (*weights)->ExpertBytes();
  Model model(*config, std::move(*weights));
  DistributedExpertRunner runner(model.config(), model.weights(), transport, placement);
  res.status = runner.Validate();
  if (!res.status.ok()) return res;
  KvCache cache(model.config(), 64);
  std::vector<int64_t> slots;
  std::vector<int32_t> next;
  res.tokens.resize(prompts.size());
  res.logits.resize(prompts.size());
  const int64_t vocab = model.config().vocab_size;
  for (int step = 0; step < kNewTokens; ++step) {
    ForwardBatch batch;
    for (size_t p = 0; p < prompts.size(); ++p) {
      if (step == 0) {
        slots.push_back(cache.Allocate());
        batch.tokens.insert(batch.tokens.end(), prompts[p].begin(), prompts[p].end());
        batch.chunks.push_back({slots[p], static_cast<int64_t>(prompts[p].size()), false, true});
      } else {
        batch.tokens.push_back(next[p]);
        batch.chunks.push_back({slots[p], 1, false, true});
      }
    }
    Tensor logits;
    res.status = model.Forward(batch, &cache, &runner, &logits);
    if (!res.status.ok()) return res;
    next.assign(prompts.size(), 0);
    for (size_t p = 0; p < prompts.size(); ++p) {
      const float* row = logits.data() + p * vocab;
      next[p] = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
      res.tokens[p].push_back(next[p]);
      res.logits[p].emplace_back(row, row + vocab);
    }
  }
  return res;
}

class DistributedEngineTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(DistributedEngineTest, ReproducesSingleProcessEngine) {
  const auto [fixture, world] = GetParam();
  const std::string dir = testing::FixtureDir(fixture);
  const auto prompts = Prompts(dir);
  // Reference: the single-process engine, all prompts in one batch.
  RuntimeConfig runtime;
  runtime.max_seq_len = 64;
  auto engine = Engine::Load(dir, runtime);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts) requests.push_back({p, kNewTokens, {}, true});
  auto reference = (*engine)->Generate(requests, /*keep_logits=*/true);
  ASSERT_TRUE(reference.ok()) << reference.status().ToString();
  const int64_t full_expert_bytes = (*engine)->model().weights().ExpertBytes();

  auto local = MakeLocalWorld(world);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  std::vector<RankResult> results(world);
  std::vector<std::vector<size_t>> owned(world);  // prompt p served by rank p % world
  for (size_t p = 0; p < prompts.size(); ++p) owned[p % world].push_back(p);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      std::vector<std::vector<int32_t>> mine;
      for (size_t p : owned[r]) mine.push_back(prompts[p]);
      results[r] = RunRank(dir, &(*local)->transport(r), mine);
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < world; ++r) {
    ASSERT_TRUE(results[r].status.ok()) << "rank " << r << ": " << results[r].status.ToString();
    // Each rank holds 1/world of the expert weights, plus one replica on the first and last rank.
    const int64_t experts = (*engine)->model().config().num_experts;
    const bool has_replica = world > 1 && (r == 0 || r == world - 1);
    EXPECT_EQ(results[r].expert_bytes,
              full_expert_bytes / world + (has_replica ? full_expert_bytes / experts : 0))
        << "rank " << r;
    for (size_t i = 0; i < owned[r].size(); ++i) {
      const auto& ref = (*reference)[owned[r][i]];
      EXPECT_EQ(results[r].tokens[i], ref.tokens) << fixture << " prompt " << owned[r][i];
      for (size_t s = 0; s < ref.logits.size() && s < results[r].logits[i].size(); ++s) {
        double max_ref = 0, max_diff = 0;
        for (size_t v = 0; v < ref.logits[s].size(); ++v) {
          max_ref = std::max(max_ref, std::fabs(double{ref.logits[s][v]}));
          max_diff =
              std::max(max_diff, std::fabs(double{results[r].logits[i][s][v]} - ref.logits[s][v]));
        }
        EXPECT_LE(max_diff / max_ref, 1e-5)
            << fixture << " prompt " << owned[r][i] << " step " << s;
      }
    }
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
                         ::testing::Combine(::testing::Values("deepseek_v3_qlora",
                                                              "deepseek_v3_noqlora", "qwen3_moe",
                                                              "qwen3_moe_tied", "mixtral"),
                                            ::testing::Values(1, 2, 4)));

}  // namespace
}  // namespace switchyard
