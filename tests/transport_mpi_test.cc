// The transport conformance suite over the MPI backend. ctest runs this binary under mpirun with
// 2 and 4 ranks (label mpi); every rank runs every case in the same order. In a build without MPI
// the binary runs alone and reports the cases as skipped.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "mpi_test_main.h"
#include "tests/transport_conformance.h"
#include "transport/transport_factory.h"

namespace switchyard {
namespace {

class MpiConformance : public ::testing::TestWithParam<testing::ConformanceCase> {};

TEST_P(MpiConformance, Runs) {
  if (!testing::MpiTransport()) GTEST_SKIP() << testing::MpiSkipReason();
  const testing::ConformanceCase& test_case = GetParam();
  if (testing::MpiTransport()->world_size() < test_case.min_world_size) {
    GTEST_SKIP() << test_case.name << " needs " << test_case.min_world_size << " ranks";
  }
  test_case.body(*testing::MpiTransport());
}

INSTANTIATE_TEST_SUITE_P(Suite, MpiConformance, ::testing::ValuesIn(testing::ConformanceCases()),
                         [](const ::testing::TestParamInfo<testing::ConformanceCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(MpiTransportTest, WorldMatchesLauncher) {
  if (!testing::MpiTransport()) GTEST_SKIP() << testing::MpiSkipReason();
  EXPECT_EQ(testing::MpiTransport()->name(), "mpi");
  if (const char* size = std::getenv("OMPI_COMM_WORLD_SIZE")) {
    EXPECT_EQ(testing::MpiTransport()->world_size(), std::atoi(size));
  }
  if (const char* rank = std::getenv("OMPI_COMM_WORLD_RANK")) {
    EXPECT_EQ(testing::MpiTransport()->rank(), std::atoi(rank));
  }
}

}  // namespace
}  // namespace switchyard

int main(int argc, char** argv) {
  return switchyard::testing::RunMpiTests(argc, argv, "transport_mpi_test");
}
