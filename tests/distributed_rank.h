// Shared by distributed_engine_test (ranks as threads) and distributed_engine_mpi_test (ranks as
// MPI processes): one rank's lockstep generation with a DistributedExpertRunner, and the check of
// its results against the single-process engine.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "model/engine.h"
#include "model/safetensors.h"
#include "test_util.h"
#include "worker/distributed_expert_runner.h"

namespace switchyard::testing {

inline constexpr int kNewTokens = 6;

inline std::vector<std::vector<int32_t>> Prompts(const std::string& dir) {
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
inline ExpertPlacement Placement(int32_t experts, int32_t world) {
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
inline RankResult RunRank(const std::string& dir, Transport* transport,
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

// The single-process engine's results for every prompt (all in one batch).
struct Reference {
  std::vector<GenerationResult> results;
  int64_t expert_bytes = 0;
  int64_t num_experts = 0;
};

inline Reference SingleProcessReference(const std::string& dir,
                                        const std::vector<std::vector<int32_t>>& prompts) {
  RuntimeConfig runtime;
  runtime.max_seq_len = 64;
  auto engine = Engine::Load(dir, runtime);
  EXPECT_TRUE(engine.ok()) << engine.status().ToString();
  if (!engine.ok()) return {};
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts) requests.push_back({p, kNewTokens, {}, true});
  auto results = (*engine)->Generate(requests, /*keep_logits=*/true);
  EXPECT_TRUE(results.ok()) << results.status().ToString();
  if (!results.ok()) return {};
  return {std::move(*results), (*engine)->model().weights().ExpertBytes(),
          (*engine)->model().config().num_experts};
}

// Prompts served by `rank`: p % world == rank.
inline std::vector<size_t> OwnedPrompts(size_t num_prompts, int rank, int world) {
  std::vector<size_t> owned;
  for (size_t p = rank; p < num_prompts; p += world) owned.push_back(p);
  return owned;
}

// Identical greedy tokens, logits within 1e-5 relative, expert memory 1/world (+ replicas).
inline void CheckRank(const std::string& fixture, const Reference& ref, int rank, int world,
                      const std::vector<size_t>& owned, const RankResult& result) {
  ASSERT_TRUE(result.status.ok()) << "rank " << rank << ": " << result.status.ToString();
  const bool has_replica = world > 1 && (rank == 0 || rank == world - 1);
  EXPECT_EQ(result.expert_bytes,
            ref.expert_bytes / world + (has_replica ? ref.expert_bytes / ref.num_experts : 0))
      << "rank " << rank;
  for (size_t i = 0; i < owned.size(); ++i) {
    const auto& want = ref.results[owned[i]];
    EXPECT_EQ(result.tokens[i], want.tokens) << fixture << " prompt " << owned[i];
    for (size_t s = 0; s < want.logits.size() && s < result.logits[i].size(); ++s) {
      double max_ref = 0, max_diff = 0;
      for (size_t v = 0; v < want.logits[s].size(); ++v) {
        max_ref = std::max(max_ref, std::fabs(double{want.logits[s][v]}));
        max_diff =
            std::max(max_diff, std::fabs(double{result.logits[i][s][v]} - want.logits[s][v]));
      }
      EXPECT_LE(max_diff / max_ref, 1e-5) << fixture << " prompt " << owned[i] << " step " << s;
    }
  }
}

inline const std::vector<std::string>& DistributedFixtures() {
  static const std::vector<std::string> names = {"deepseek_v3_qlora", "deepseek_v3_noqlora",
                                                 "qwen3_moe", "qwen3_moe_tied", "mixtral"};
  return names;
}

}  // namespace switchyard::testing
