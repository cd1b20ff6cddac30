// DistributedExpertRunner's per-link traffic counters (the worker side of the dispatch/combine
// metrics): two local ranks with hand-made routing, so the rows on every link are known.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "local_ranks.h"
#include "model/model_config.h"
#include "model/weights.h"
#include "test_util.h"
#include "worker/distributed_expert_runner.h"

namespace switchyard {
namespace {

TEST(LinkTraffic, CountsBytesPerPeerAndTime) {
  const std::string dir = testing::FixtureDir("mixtral");
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto weights = LoadModelWeights(dir, *config);
  ASSERT_TRUE(weights.ok()) << weights.status().ToString();
  ASSERT_EQ(config->num_experts, 8);
  ASSERT_EQ(config->num_topk, 2);
  const int64_t h = config->hidden;
  int64_t layer = 0;
  while (!config->moe_layer[layer]) ++layer;

  // Experts 0-3 on rank 0, 4-7 on rank 1, no replicas.
  std::vector<std::vector<ExpertReplica>> replicas(8);
  for (int32_t e = 0; e < 8; ++e) replicas[e].push_back({e / 4, e % 4});
  const std::vector<ExpertPlacement> placement(config->num_layers, ExpertPlacement(2, replicas));
  // Rank 0: token 0 -> experts {0, 5}, token 1 -> {6, 7}: 2 rows (3 entries) to rank 1.
  // Rank 1: token 0 -> experts {1, 2}: 1 row (2 entries) to rank 0.
  const std::vector<std::vector<int32_t>> topk = {{0, 5, 6, 7}, {1, 2}};
  auto world = MakeLocalWorld(2);
  ASSERT_TRUE(world.ok()) << world.status().ToString();
  std::vector<LinkTraffic> traffic(2);
  std::vector<Status> status(2);
  testing::RunRanks(**world, {0, 1}, [&](int r, Transport& t) {
    DistributedExpertRunner runner(*config, **weights, &t, placement);
    status[r] = runner.Validate();
    if (!status[r].ok()) return;
    const int64_t n = static_cast<int64_t>(topk[r].size()) / 2;
    std::vector<float> hidden(n * h, 0.5f), out(n * h), w(topk[r].size(), 0.5f);
    for (int step = 0; step < 2 && status[r].ok(); ++step) {
      status[r] = runner.Run(layer, hidden.data(), n, topk[r].data(), w.data(), out.data());
    }
    traffic[r] = runner.link_traffic();
  });
  for (int r = 0; r < 2; ++r)
    ASSERT_TRUE(status[r].ok()) << "rank " << r << ": " << status[r].ToString();

  const int64_t row = 4 * h;  // F32 transit rows, integrity off
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(traffic[r].calls, 2);
    EXPECT_EQ(traffic[r].dispatch_bytes[r], 0) << "nothing goes over a link to itself";
    EXPECT_EQ(traffic[r].combine_bytes[r], 0);
    EXPECT_GT(traffic[r].dispatch_seconds, 0.0);
    EXPECT_GT(traffic[r].combine_seconds, 0.0);
  }
  // Combine sends back the rows received: rank 0 got 1 row per step from rank 1, rank 1 got 2.
  EXPECT_EQ(traffic[0].combine_bytes[1], 2 * 1 * row);
  EXPECT_EQ(traffic[1].combine_bytes[0], 2 * 2 * row);
  // Dispatch messages carry the rows plus a header and the entries.
  EXPECT_GT(traffic[0].dispatch_bytes[1], 2 * 2 * row);
  EXPECT_GT(traffic[1].dispatch_bytes[0], 2 * 1 * row);
  EXPECT_GT(traffic[0].dispatch_bytes[1], traffic[1].dispatch_bytes[0]);
}

}  // namespace
}  // namespace switchyard
