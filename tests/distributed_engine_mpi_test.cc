// The distributed forward pass over the MPI backend: ctest runs this binary under mpirun with 2
// and 4 ranks (label mpi). Every rank serves its own prompts, loads only its experts, runs the
// steps in lockstep with the others, and checks its results against the single-process engine
// (which it also computes). Without MPI the binary runs alone and reports a skip.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "distributed_rank.h"
#include "transport/transport_factory.h"

namespace switchyard {
namespace {

Transport* g_transport = nullptr;
std::string g_skip_reason;

class MpiDistributedEngine : public ::testing::TestWithParam<std::string> {};

TEST_P(MpiDistributedEngine, ReproducesSingleProcessEngine) {
  if (!g_transport) GTEST_SKIP() << g_skip_reason;
  const std::string fixture = GetParam();
  const std::string dir = testing::FixtureDir(fixture);
  const auto prompts = testing::Prompts(dir);
  const testing::Reference reference = testing::SingleProcessReference(dir, prompts);
  ASSERT_EQ(reference.results.size(), prompts.size());
  const int rank = g_transport->rank(), world = g_transport->world_size();
  const auto owned = testing::OwnedPrompts(prompts.size(), rank, world);
  std::vector<std::vector<int32_t>> mine;
  for (size_t p : owned) mine.push_back(prompts[p]);
  testing::CheckRank(fixture, reference, rank, world, owned,
                     testing::RunRank(dir, g_transport, mine));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MpiDistributedEngine,
                         ::testing::ValuesIn(testing::DistributedFixtures()));

}  // namespace
}  // namespace switchyard

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto transport = switchyard::CreateTransport(switchyard::TransportKind::kMpi);
  std::unique_ptr<switchyard::Transport> owned;
  if (transport.ok()) {
    owned = std::move(transport).value();
    switchyard::g_transport = owned.get();
  } else if (transport.status().code() == switchyard::StatusCode::kUnimplemented) {
    switchyard::g_skip_reason = transport.status().message();
  } else {
    std::fprintf(stderr, "distributed_engine_mpi_test: %s\n",
                 transport.status().ToString().c_str());
    return 1;
  }
  const int rc = RUN_ALL_TESTS();
  owned.reset();
  switchyard::Status shutdown = switchyard::ShutdownTransports();
  if (!shutdown.ok()) {
    std::fprintf(stderr, "distributed_engine_mpi_test: %s\n", shutdown.ToString().c_str());
    return 1;
  }
  return rc;
}
