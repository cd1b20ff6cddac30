// The distributed runtime in one process: coordinator + 1, 2, 4 workers as threads (local
// transport, in-memory control channels) reproduce the single-process engine on every HF fixture
// (identical greedy tokens, logits within 1e-5 relative) with EPLB placements that include
// replicas; each worker holds only its share of the experts; failures are named, not hung.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <set>
#include <thread>

#include "distributed_rank.h"
#include "worker/local_cluster.h"

namespace switchyard {
namespace {

RuntimeConfig ClusterRuntime(const std::string& model, int workers, int redundant) {
  RuntimeConfig rt;
  rt.max_seq_len = 64;
  rt.has_cluster = true;
  rt.cluster.model = model;
  rt.cluster.workers = workers;
  rt.cluster.transport = "local";
  rt.cluster.placement = "eplb";
  rt.cluster.redundant_experts_per_worker = redundant;
  rt.cluster.step_timeout_ms = 20000;
  rt.cluster.register_timeout_ms = 60000;
  return rt;
}

double MaxRelDiff(const std::vector<float>& got, const std::vector<float>& want) {
  double max_ref = 0, max_diff = 0;
  for (size_t v = 0; v < want.size() && v < got.size(); ++v) {
    max_ref = std::max(max_ref, std::fabs(double{want[v]}));
    max_diff = std::max(max_diff, std::fabs(double{got[v]} - want[v]));
  }
  return got.size() == want.size() ? max_diff / max_ref : 1e30;
}

// A supplied plan with a replica on another worker for every worker: worker w holds its
// contiguous share plus the first expert of worker w + 1 (so replica choice crosses ranks).
std::string WriteCrossReplicaPlan(const std::string& model, int workers,
                                  const testing::TempDir& tmp) {
  auto config = LoadModelConfig(model);
  EXPECT_TRUE(config.ok());
  PlacementPlan plan;
  plan.topology.gpus_per_node = workers;
  const auto experts = static_cast<int32_t>(config->num_experts);
  plan.num_logical_experts = experts;
  const int32_t share = experts / workers;
  plan.slots_per_gpu = share + 1;
  for (int64_t l = 0; l < config->num_layers; ++l) {
    if (!config->moe_layer[l]) continue;
    plan.moe_layers.push_back(static_cast<int32_t>(l));
    std::vector<int32_t> phy2log;
    for (int32_t w = 0; w < workers; ++w) {
      for (int32_t s = 0; s < share; ++s) phy2log.push_back(w * share + s);
      phy2log.push_back(((w + 1) % workers) * share);
    }
    plan.phy2log.push_back(phy2log);
  }
  const std::string path = tmp.path() + "/plan.json";
  std::ofstream(path) << plan.ToJson();
  return path;
}

class CoordinatorLocalTest : public ::testing::TestWithParam<std::tuple<std::string, int>> {};

TEST_P(CoordinatorLocalTest, ReproducesSingleProcessEngine) {
  const auto [fixture, workers] = GetParam();
  const std::string dir = testing::FixtureDir(fixture);
  const auto prompts = testing::Prompts(dir);
  const testing::Reference ref = testing::SingleProcessReference(dir, prompts);
  ASSERT_EQ(ref.results.size(), prompts.size());
  testing::TempDir tmp;
  RuntimeConfig rt = ClusterRuntime(dir, workers, 0);
  rt.cluster.placement = WriteCrossReplicaPlan(dir, workers, tmp);
  auto cluster = LocalCluster::Start(rt);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  Coordinator& coord = (*cluster)->coordinator();
  // Replicas: one extra slot per worker, holding an expert of the next worker.
  const PlacementPlan& plan = coord.plan();
  EXPECT_EQ(plan.num_physical(), plan.num_logical_experts + workers);
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts) requests.push_back({p, testing::kNewTokens, {}, true});
  BatchOutcome out = coord.Generate(requests, /*keep_logits=*/true);
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(out.finished[i]);
    EXPECT_EQ(out.results[i].tokens, ref.results[i].tokens) << fixture << " prompt " << i;
    ASSERT_EQ(out.results[i].logits.size(), ref.results[i].logits.size());
    for (size_t s = 0; s < ref.results[i].logits.size(); ++s) {
      EXPECT_LE(MaxRelDiff(out.results[i].logits[s], ref.results[i].logits[s]), 1e-5)
          << fixture << " prompt " << i << " step " << s;
    }
  }
  // Memory: each worker holds exactly the distinct experts its slots name (two replicas of one
  // expert on the same worker are loaded once): at most (E / workers + 1) of E per layer.
  const int64_t pair_bytes =
      ref.expert_bytes / (ref.num_experts * static_cast<int64_t>(plan.moe_layers.size()));
  for (const WorkerInfo& w : coord.workers()) {
    int64_t pairs = 0;
    for (size_t l = 0; l < plan.moe_layers.size(); ++l) {
      std::set<int32_t> distinct;
      for (int32_t s = 0; s < plan.slots_per_gpu; ++s) {
        distinct.insert(plan.phy2log[l][w.rank * plan.slots_per_gpu + s]);
      }
      pairs += static_cast<int64_t>(distinct.size());
    }
    EXPECT_EQ(w.ready.expert_bytes, pairs * pair_bytes) << "rank " << w.rank;
    EXPECT_LE(w.ready.expert_bytes, ref.expert_bytes / ref.num_experts * plan.slots_per_gpu);
  }
  // Load statistics: every token of every MoE layer went to num_topk experts.
  const auto loads = coord.ExpertLoads();
  ASSERT_EQ(loads.size(), plan.moe_layers.size());
  double total = 0;
  for (double v : loads[0]) total += v;
  EXPECT_GT(total, 0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CoordinatorLocalTest,
                         ::testing::Combine(::testing::ValuesIn(testing::DistributedFixtures()),
                                            ::testing::Values(1, 2, 4)));

// The default placement, EPLB with one redundant slot per worker, over racks and nodes (2 nodes
// of 2 workers), on a DeepSeek fixture with routing groups: the same tokens as the engine.
TEST(CoordinatorEplb, HierarchicalPlanReproducesEngine) {
  const std::string dir = testing::FixtureDir("deepseek_v3_qlora");
  const auto prompts = testing::Prompts(dir);
  const testing::Reference ref = testing::SingleProcessReference(dir, prompts);
  RuntimeConfig rt = ClusterRuntime(dir, 4, 1);
  rt.cluster.nodes_per_rack = 2;
  auto cluster = LocalCluster::Start(rt);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  EXPECT_EQ((*cluster)->coordinator().plan().topology.num_nodes(), 2);
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts) requests.push_back({p, testing::kNewTokens, {}, true});
  BatchOutcome out = (*cluster)->coordinator().Generate(requests);
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(out.results[i].tokens, ref.results[i].tokens) << "prompt " << i;
  }
}

// With 4 workers and no replicas each worker holds a quarter of the expert weights, and the
// attention/embedding part stays whole on every worker.
TEST(CoordinatorMemory, FourWorkersHoldAQuarterOfTheExpertsEach) {
  const std::string dir = testing::FixtureDir("mixtral");
  const testing::Reference ref = testing::SingleProcessReference(dir, {{1, 2, 3}});
  RuntimeConfig rt = ClusterRuntime(dir, 4, 0);
  rt.cluster.placement = "contiguous";
  auto cluster = LocalCluster::Start(rt);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  for (const WorkerInfo& w : (*cluster)->coordinator().workers()) {
    EXPECT_EQ(w.ready.expert_bytes * 4, ref.expert_bytes) << "rank " << w.rank;
    EXPECT_GT(w.ready.resident_bytes, w.ready.expert_bytes);
  }
}

// A worker that dies: the batch fails at once, naming the rank; nothing hangs.
TEST(CoordinatorFailure, DeadWorkerIsNamedAndRequestsFail) {
  const std::string dir = testing::FixtureDir("qwen3_moe");
  auto cluster = LocalCluster::Start(ClusterRuntime(dir, 2, 0));
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  (*cluster)->KillWorker(1);
  const auto t0 = std::chrono::steady_clock::now();
  BatchOutcome out =
      (*cluster)->coordinator().Generate({{{1, 2, 3}, 8, {}, true}, {{4, 5, 6}, 8, {}, true}});
  EXPECT_EQ(out.status.code(), StatusCode::kUnavailable) << out.status.ToString();
  EXPECT_NE(out.status.message().find("worker rank 1"), std::string::npos) << out.status.ToString();
  EXPECT_FALSE(out.finished[0] && out.finished[1]);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
  // The coordinator is aborted: a second batch is refused, not hung.
  EXPECT_FALSE((*cluster)->coordinator().Generate({{{1}, 1, {}, true}}).status.ok());
}

// A worker that hangs with its connection open: the heartbeat monitor (on a fake clock, advanced
// instead of slept) declares it dead, naming it and the timeout.
TEST(CoordinatorFailure, SilentWorkerIsDetectedByHeartbeat) {
  const std::string dir = testing::FixtureDir("qwen3_moe");
  FakeClock clock;
  RuntimeConfig rt = ClusterRuntime(dir, 2, 0);
  rt.cluster.heartbeat_timeout_ms = 5000;
  auto cluster = LocalCluster::Start(rt, &clock);
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  (*cluster)->HangWorker(0);
  std::thread advance([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    clock.Advance(std::chrono::seconds(6));
  });
  const auto t0 = std::chrono::steady_clock::now();
  BatchOutcome out =
      (*cluster)->coordinator().Generate({{{1, 2, 3}, 4, {}, true}, {{4, 5}, 4, {}, true}});
  advance.join();
  EXPECT_EQ(out.status.code(), StatusCode::kUnavailable) << out.status.ToString();
  EXPECT_NE(out.status.message().find("worker rank 0"), std::string::npos) << out.status.ToString();
  EXPECT_NE(out.status.message().find("heartbeat"), std::string::npos) << out.status.ToString();
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 10.0);
}

// EPLB with uniform loads puts both replicas of an expert on one worker; the cluster plan spreads
// them over the node's workers without changing any worker's load.
TEST(CoordinatorPlan, EplbReplicasLandOnDistinctWorkers) {
  auto config = LoadModelConfig(testing::FixtureDir("mixtral"));
  ASSERT_TRUE(config.ok());
  RuntimeConfig rt = ClusterRuntime(testing::FixtureDir("mixtral"), 4, 1);
  auto plan = MakeClusterPlan(rt.cluster, *config);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  ASSERT_TRUE(plan->Validate().ok());
  std::vector<int32_t> moe_layers = plan->moe_layers;
  std::vector<std::vector<double>> uniform(moe_layers.size(), std::vector<double>(8, 1.0));
  auto raw = PlanWithEplb(ClusterTopologyOf(rt.cluster), 8, moe_layers, uniform, 1, 1);
  ASSERT_TRUE(raw.ok());
  auto balance = plan->Balance(uniform), raw_balance = raw->Balance(uniform);
  ASSERT_TRUE(balance.ok() && raw_balance.ok());
  for (size_t l = 0; l < moe_layers.size(); ++l) {
    EXPECT_DOUBLE_EQ((*balance)[l].max_gpu_load, (*raw_balance)[l].max_gpu_load);
    EXPECT_EQ(plan->ReplicaCounts(l), raw->ReplicaCounts(l));
    for (int32_t g = 0; g < 4; ++g) {
      std::set<int32_t> held;
      for (int32_t s = 0; s < plan->slots_per_gpu; ++s) {
        EXPECT_TRUE(held.insert(plan->phy2log[l][g * plan->slots_per_gpu + s]).second)
            << "layer " << l << " worker " << g << " holds an expert twice";
      }
    }
  }
}

TEST(CoordinatorConfig, BadClusterKeysAreNamed) {
  RuntimeConfig rt;
  Status s = ParseRuntimeConfigYaml("cluster:\n  model: m\n  workers: 3\n  gpus_per_node: 2\n",
                                    "c.yaml", &rt);
  EXPECT_NE(s.message().find("cluster.workers"), std::string::npos) << s.ToString();
  s = ParseRuntimeConfigYaml("cluster:\n  model: m\n  wrokers: 2\n", "c.yaml", &rt);
  EXPECT_NE(s.message().find("cluster.wrokers"), std::string::npos) << s.ToString();
  s = ParseRuntimeConfigYaml("cluster:\n  model: m\n  transport: tcp\n", "c.yaml", &rt);
  EXPECT_NE(s.message().find("cluster.transport"), std::string::npos) << s.ToString();
  RuntimeConfig ok;
  ASSERT_TRUE(
      ParseRuntimeConfigYaml("cluster:\n  model: m\n  workers: 4\n  racks: 2\n", "c.yaml", &ok)
          .ok());
  EXPECT_TRUE(ok.has_cluster);
  EXPECT_EQ(ClusterTopologyOf(ok.cluster).gpus_per_node, 2);
  // A plan file that does not fit the cluster is refused naming the key.
  RuntimeConfig bad = ClusterRuntime(testing::FixtureDir("mixtral"), 2, 0);
  bad.cluster.placement = "/nonexistent/plan.json";
  auto cluster = LocalCluster::Start(bad);
  EXPECT_NE(cluster.status().message().find("cluster.placement"), std::string::npos)
      << cluster.status().ToString();
}

}  // namespace
}  // namespace switchyard
