// The transport conformance suite over the UCX backend. ctest runs this binary under mpirun with 2
// and 4 ranks (label mpi): CreateTransport(kUcx) takes rank and world size from Open MPI's
// environment and exchanges worker addresses through an MPI allgather; the UCX transport itself
// never calls MPI. Run alone it is a one-rank UCX world; in a build without UCX it skips.
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

class UcxConformance : public ::testing::TestWithParam<testing::ConformanceCase> {};

TEST_P(UcxConformance, Runs) {
  if (!g_transport) GTEST_SKIP() << g_skip_reason;
  const testing::ConformanceCase& test_case = GetParam();
  if (g_transport->world_size() < test_case.min_world_size) {
    GTEST_SKIP() << test_case.name << " needs " << test_case.min_world_size << " ranks";
  }
  test_case.body(*g_transport);
}

INSTANTIATE_TEST_SUITE_P(Suite, UcxConformance, ::testing::ValuesIn(testing::ConformanceCases()),
                         [](const ::testing::TestParamInfo<testing::ConformanceCase>& info) {
                           return std::string(info.param.name);
                         });

TEST(UcxTransportTest, WorldMatchesLauncher) {
  if (!g_transport) GTEST_SKIP() << g_skip_reason;
  EXPECT_EQ(g_transport->name(), "ucx");
  EXPECT_TRUE(g_transport->capabilities().host_memory);
  EXPECT_FALSE(g_transport->capabilities().device_memory);
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
  using namespace switchyard;
  ::testing::InitGoogleTest(&argc, argv);
  TransportOptions options;
  options.connect_timeout = std::chrono::seconds(30);
  auto created = CreateTransport(TransportKind::kUcx, options);
  std::unique_ptr<Transport> owned;
  if (created.ok()) {
    owned = std::move(created).value();
    g_transport = owned.get();
  } else if (created.status().code() == StatusCode::kUnimplemented) {
    g_skip_reason = created.status().message();
  } else {
    std::fprintf(stderr, "transport_ucx_test: %s\n", created.status().ToString().c_str());
    return 1;
  }
  const int rc = RUN_ALL_TESTS();
  g_transport = nullptr;
  owned.reset();
  Status shutdown = ShutdownTransports();
  if (!shutdown.ok()) {
    std::fprintf(stderr, "transport_ucx_test: %s\n", shutdown.ToString().c_str());
    return 1;
  }
  return rc;
}
