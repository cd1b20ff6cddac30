// Workers on GPUs with transport nccl (worker/worker.h, worker/worker_gpu.h). The coordinator runs
// in this process with in-memory control channels; workers are threads that pick a GPU as a
// worker process would (local rank = worker rank) and create their NCCL data plane through the
// coordinator's rendezvous.
//   NoGpu.*: without a usable GPU every nccl worker fails at once, naming its rank and the reason,
//            and the coordinator's start fails with it (not a hang). Runs on CPU machines.
//   Gpu.*:   with a GPU (and NCCL built), a 1-worker nccl cluster reproduces the single-process
//            engine (greedy tokens identical, logits within 1e-5 relative).
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "coordinator/coordinator.h"
#include "distributed_rank.h"
#include "transport/transport_factory.h"
#include "worker/worker.h"
#include "worker/worker_gpu.h"

namespace switchyard {
namespace {

bool HaveGpu() {
  static const bool have = [] {
    auto gpu = ChooseWorkerGpu(0, 0, 0, /*required=*/false);
    return gpu.ok() && *gpu >= 0;
  }();
  return have;
}

RuntimeConfig NcclRuntime(const std::string& model, int workers) {
  RuntimeConfig rt;
  rt.max_seq_len = 64;
  rt.has_cluster = true;
  rt.cluster.model = model;
  rt.cluster.workers = workers;
  rt.cluster.transport = "nccl";
  rt.cluster.placement = "contiguous";
  rt.cluster.bind_address = "127.0.0.1";
  rt.cluster.step_timeout_ms = 60000;
  rt.cluster.register_timeout_ms = 60000;
  return rt;
}

// Coordinator + worker threads; the destructor shuts down and joins.
struct ThreadCluster {
  explicit ThreadCluster(const RuntimeConfig& rt) : coordinator(rt) {
    std::vector<std::unique_ptr<ControlChannel>> coordinator_side;
    worker_status.resize(rt.cluster.workers);
    for (int r = 0; r < rt.cluster.workers; ++r) {
      auto [coord, worker] = MakeInMemoryChannelPair("worker thread " + std::to_string(r));
      coordinator_side.push_back(std::move(coord));
      worker_channels.push_back(std::move(worker));
    }
    for (int r = 0; r < rt.cluster.workers; ++r) {
      threads.emplace_back([this, r] {
        WorkerOptions options;
        options.known_rank = r;
        options.idle_timeout = std::chrono::seconds(120);
        options.connect_timeout = std::chrono::seconds(60);
        worker_status[r] = RunWorker(
            worker_channels[r].get(),
            [](const AssignMsg&) -> StatusOr<Transport*> {
              return InternalError("nccl workers must not ask the provider");
            },
            options);
        worker_channels[r]->Close();
      });
    }
    start = coordinator.Start(std::move(coordinator_side));
  }
  ~ThreadCluster() {
    coordinator.Shutdown();
    for (auto& ch : worker_channels) ch->Close();
    for (auto& t : threads) t.join();
  }

  Coordinator coordinator;
  Status start;
  std::vector<std::unique_ptr<ControlChannel>> worker_channels;
  std::vector<Status> worker_status;
  std::vector<std::thread> threads;
};

TEST(NoGpu, NcclWorkersFailFastNamingRankAndReason) {
  if (HaveGpu()) GTEST_SKIP() << "a GPU is present: the no-GPU failure does not apply";
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<Status> workers;
  Status start;
  {
    ThreadCluster cluster(NcclRuntime(testing::FixtureDir("mixtral"), 2));
    start = cluster.start;
    cluster.coordinator.Shutdown();
    for (auto& t : cluster.threads) t.join();
    cluster.threads.clear();
    workers = cluster.worker_status;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(start.ok());
  EXPECT_NE(start.message().find("needs a GPU"), std::string::npos) << start.ToString();
  EXPECT_NE(start.message().find("worker rank"), std::string::npos) << start.ToString();
  for (size_t r = 0; r < workers.size(); ++r) {
    EXPECT_EQ(workers[r].code(), StatusCode::kFailedPrecondition) << workers[r].ToString();
    EXPECT_NE(workers[r].message().find("worker rank " + std::to_string(r)), std::string::npos)
        << workers[r].ToString();
  }
  EXPECT_LT(secs, 30.0) << "the failure took too long (registration/loading deadlines?)";
}

TEST(Gpu, OneNcclWorkerReproducesTheEngine) {
  if (!HaveGpu()) GTEST_SKIP() << "no usable GPU (or CUDA not built)";
  if (!TransportBuilt(TransportKind::kNccl)) GTEST_SKIP() << "NCCL transport not built";
  const std::string fixture = "qwen3_moe";
  const std::string dir = testing::FixtureDir(fixture);
  const auto prompts = testing::Prompts(dir);
  const testing::Reference ref = testing::SingleProcessReference(dir, prompts);
  ASSERT_EQ(ref.results.size(), prompts.size());
  ThreadCluster cluster(NcclRuntime(dir, 1));
  ASSERT_TRUE(cluster.start.ok()) << cluster.start.ToString();
  std::vector<GenerationRequest> requests;
  for (const auto& p : prompts) requests.push_back({p, testing::kNewTokens, {}, true});
  BatchOutcome out = cluster.coordinator.Generate(requests, /*keep_logits=*/true);
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(out.finished[i]);
    EXPECT_EQ(out.results[i].tokens, ref.results[i].tokens) << "prompt " << i;
    ASSERT_EQ(out.results[i].logits.size(), ref.results[i].logits.size());
    for (size_t s = 0; s < ref.results[i].logits.size(); ++s) {
      const auto& got = out.results[i].logits[s];
      const auto& want = ref.results[i].logits[s];
      ASSERT_EQ(got.size(), want.size());
      double max_ref = 0, max_diff = 0;
      for (size_t v = 0; v < want.size(); ++v) {
        max_ref = std::max(max_ref, std::fabs(double{want[v]}));
        max_diff = std::max(max_diff, std::fabs(double{got[v]} - want[v]));
      }
      EXPECT_LE(max_diff / max_ref, 1e-5) << "prompt " << i << " step " << s;
    }
  }
}

}  // namespace
}  // namespace switchyard
