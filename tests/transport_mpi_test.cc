// The transport conformance suite over the MPI backend. ctest runs this binary under mpirun with
// 2 and 4 ranks (label mpi); every rank runs every case in the same order. In a build without MPI
// the binary runs alone and reports the cases as skipped.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

#include "tests/transport_conformance.h"
#include "transport/transport_factory.h"

namespace switchyard {
namespace {

Transport* g_transport = nullptr;
std::string g_skip_reason;

class MpiConformance : public ::testing::TestWithParam<testing::ConformanceCase> {};

TEST_P(MpiConformance, Runs) {
  if (!g_transport) GTEST_SKIP() << g_skip_reason;
  const testing::ConformanceCase& test_case = GetParam();
  if (g_transport->world_size() < test_case.min_world_size) {
    GTEST_SKIP() << test_case.name << " needs " << test_case.min_world_size << " ranks";
  }
  test_case.body(*g_transport);
}

INSTANTIATE_TEST_SUITE_P(Suite, MpiConformance, ::testing::ValuesIn(testing::ConformanceCases()),
                         [](const ::testing::TestParamInfo<testing::ConformanceCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(MpiTransportTest, WorldMatchesLauncher) {
  if (!g_transport) GTEST_SKIP() << g_skip_reason;
  EXPECT_EQ(g_transport->name(), "mpi");
  if (const char* size = std::getenv("OMPI_COMM_WORLD_SIZE")) {
    EXPECT_EQ(g_transport->world_size(), std::atoi(size));
  }
  if (const char* rank = std::getenv("OMPI_COMM_WORLD_RANK")) {
    EXPECT_EQ(g_transport->rank(), std::atoi(rank));
  }
}

}  // namespace
}  // namespace switchyard

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  using switchyard::StatusCode;
  auto transport = switchyard::CreateTransport(switchyard::TransportKind::kMpi);
  std::unique_ptr<switchyard::Transport> owned;
  if (transport.ok()) {
    owned = std::move(transport).value();
    switchyard::g_transport = owned.get();
  } else if (transport.status().code() == StatusCode::kUnimplemented) {
    switchyard::g_skip_reason = transport.status().message();
  } else {
    std::fprintf(stderr, "transport_mpi_test: %s\n", transport.status().ToString().c_str());
    return 1;
  }
  // Only rank 0 prints the full progress; other ranks report failures (default printer kept
  // for them too, as their failures must be visible).
  const int rc = RUN_ALL_TESTS();
  owned.reset();
  switchyard::Status shutdown = switchyard::ShutdownTransports();
  if (!shutdown.ok()) {
    std::fprintf(stderr, "transport_mpi_test: %s\n", shutdown.ToString().c_str());
    return 1;
  }
  return rc;
}
