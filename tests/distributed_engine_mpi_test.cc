// The distributed forward pass over the MPI backend: ctest runs this binary under mpirun with 2
// and 4 ranks (label mpi). Every rank serves its own prompts, loads only its experts, runs the
// steps in lockstep with the others, and checks its results against the single-process engine
// (which it also computes). Without MPI the binary runs alone and reports a skip.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "distributed_rank.h"
#include "mpi_test_main.h"
#include "transport/transport_factory.h"

namespace switchyard {
namespace {

class MpiDistributedEngine : public ::testing::TestWithParam<std::string> {};

TEST_P(MpiDistributedEngine, ReproducesSingleProcessEngine) {
  if (!testing::MpiTransport()) GTEST_SKIP() << testing::MpiSkipReason();
  const std::string fixture = GetParam();
  const std::string dir = testing::FixtureDir(fixture);
  const auto prompts = testing::Prompts(dir);
  const testing::Reference reference = testing::SingleProcessReference(dir, prompts);
  ASSERT_EQ(reference.results.size(), prompts.size());
  const int rank = testing::MpiTransport()->rank(), world = testing::MpiTransport()->world_size();
  const auto owned = testing::OwnedPrompts(prompts.size(), rank, world);
  std::vector<std::vector<int32_t>> mine;
  for (size_t p : owned) mine.push_back(prompts[p]);
  testing::CheckRank(fixture, reference, rank, world, owned,
                     testing::RunRank(dir, testing::MpiTransport(), mine));
}

INSTANTIATE_TEST_SUITE_P(Fixtures, MpiDistributedEngine,
                         ::testing::ValuesIn(testing::DistributedFixtures()));

}  // namespace
}  // namespace switchyard

int main(int argc, char** argv) {
  return switchyard::testing::RunMpiTests(argc, argv, "distributed_engine_mpi_test");
}
