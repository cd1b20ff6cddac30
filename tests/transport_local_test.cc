// The transport conformance suite over the local backend (1, 2 and 4 ranks as threads), plus the
// local backend's fault injection (killed and never-joining ranks) and the factory.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "local_ranks.h"
#include "tests/transport_conformance.h"
#include "transport/local/local_transport.h"
#include "transport/transport_factory.h"

namespace switchyard {
namespace {

using std::chrono::milliseconds;
using testing::ConformanceCase;
using testing::HasText;
using testing::OpDeadline;

using testing::AllRanks;
using testing::RunRanks;

class LocalConformance : public ::testing::TestWithParam<std::tuple<ConformanceCase, int>> {};

TEST_P(LocalConformance, Runs) {
  const auto& [test_case, world_size] = GetParam();
  testing::RunCaseOnLocalWorld(test_case, world_size);
}

INSTANTIATE_TEST_SUITE_P(Suite, LocalConformance,
                         ::testing::Combine(::testing::ValuesIn(testing::ConformanceCases()),
                                            ::testing::Values(1, 2, 4)),
                         [](const ::testing::TestParamInfo<LocalConformance::ParamType>& info) {
                           return std::string(std::get<0>(info.param).name) + "_" +
                                  std::to_string(std::get<1>(info.param)) + "ranks";
                         });

// An AllToAllV on `t` with 4 bytes to and from every peer.
Status SmallAllToAll(Transport& t, Deadline deadline) {
  const int n = t.world_size();
  std::vector<int64_t> counts(n, 4), offsets(n);
  for (int p = 0; p < n; ++p) offsets[p] = 4 * p;
  std::vector<std::byte> send(4 * n), recv(4 * n);
  return t.AllToAllV(send, counts, offsets, recv, counts, offsets, deadline);
}

TEST(LocalTransportTest, KillWakesWaitingPeersWithUnavailable) {
  auto world = MakeLocalWorld(4);
  ASSERT_TRUE(world.ok());
  std::atomic<int> unavailable{0};
  std::thread killer([&] {
    std::this_thread::sleep_for(milliseconds(50));
    (*world)->Kill(3);
  });
  RunRanks(**world, {0, 1, 2}, [&](int r, Transport& t) {
    const auto start = TransportClock::now();
    Status s = SmallAllToAll(t, Deadline::After(std::chrono::seconds(10)));
    EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
    EXPECT_TRUE(HasText(s, "rank 3 is unavailable")) << s.ToString();
    EXPECT_LT(TransportClock::now() - start, std::chrono::seconds(2)) << "rank " << r;
    if (s.code() == StatusCode::kUnavailable) ++unavailable;
  });
  killer.join();
  EXPECT_EQ(unavailable.load(), 3);
  EXPECT_TRUE((*world)->IsKilled(3));
  // Later calls fail at once, naming the dead rank; the dead rank's own calls fail too.
  Status barrier = (*world)->transport(0).Barrier(OpDeadline());
  EXPECT_EQ(barrier.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(HasText(barrier, "rank 3")) << barrier.ToString();
  EXPECT_EQ((*world)->transport(3).Barrier(OpDeadline()).code(), StatusCode::kUnavailable);
  std::vector<std::byte> buf(4);
  Status send = (*world)->transport(1).Send(3, 0, buf, OpDeadline());
  EXPECT_EQ(send.code(), StatusCode::kUnavailable);
  EXPECT_TRUE(HasText(send, "rank 3")) << send.ToString();
}

TEST(LocalTransportTest, KillWakesPointToPointReceiver) {
  auto world = MakeLocalWorld(2);
  ASSERT_TRUE(world.ok());
  std::thread killer([&] {
    std::this_thread::sleep_for(milliseconds(30));
    (*world)->Kill(1);
  });
  std::vector<std::byte> buf(8);
  const auto start = TransportClock::now();
  auto got = (*world)->transport(0).Recv(1, 4, buf, Deadline::After(std::chrono::seconds(10)));
  killer.join();
  EXPECT_EQ(got.status().code(), StatusCode::kUnavailable) << got.status().ToString();
  EXPECT_TRUE(HasText(got.status(), "rank 1")) << got.status().ToString();
  EXPECT_LT(TransportClock::now() - start, std::chrono::seconds(2));
}

TEST(LocalTransportTest, NeverJoiningRanksAreNamed) {
  auto world = MakeLocalWorld(4);
  ASSERT_TRUE(world.ok());
  // Ranks 2 and 3 never call: the others name both, within the deadline.
  RunRanks(**world, {0, 1}, [&](int, Transport& t) {
    const auto start = TransportClock::now();
    Status s = SmallAllToAll(t, Deadline::After(milliseconds(100)));
    const auto waited = TransportClock::now() - start;
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
    EXPECT_TRUE(HasText(s, "waiting for ranks 2, 3")) << s.ToString();
    EXPECT_GE(waited, milliseconds(95));
    EXPECT_LT(waited, std::chrono::seconds(2));
  });
}

TEST(LocalTransportTest, ExpiredDeadlineStillCompletesWithoutWaiting) {
  auto t = CreateTransport(TransportKind::kLocal);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ((*t)->world_size(), 1);
  EXPECT_EQ((*t)->rank(), 0);
  EXPECT_EQ((*t)->name(), "local");
  Deadline past(TransportClock::now() - milliseconds(1));
  EXPECT_TRUE(past.Expired());
  EXPECT_EQ(past.Remaining().count(), 0);
  EXPECT_TRUE(SmallAllToAll(**t, past).ok());
  EXPECT_TRUE((*t)->Barrier(past).ok());
}

TEST(TransportFactoryTest, KindsAndUnbuiltBackends) {
  for (const char* name : {"local", "mpi", "ucx", "nccl"}) {
    auto kind = ParseTransportKind(name);
    ASSERT_TRUE(kind.ok()) << name;
    EXPECT_STREQ(TransportKindName(*kind), name);
  }
  auto bad = ParseTransportKind("tcp");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(HasText(bad.status(), "'tcp'"));
  EXPECT_TRUE(TransportBuilt(TransportKind::kLocal));
  // A plain process (no launcher, no SWITCHYARD_* identity) is a one-rank UCX world.
  auto ucx = CreateTransport(TransportKind::kUcx);
  if (TransportBuilt(TransportKind::kUcx)) {
    ASSERT_TRUE(ucx.ok()) << ucx.status().ToString();
    EXPECT_EQ((*ucx)->world_size(), 1);
    EXPECT_EQ((*ucx)->name(), "ucx");
    ucx = UnimplementedError("released");
  } else {
    EXPECT_EQ(ucx.status().code(), StatusCode::kUnimplemented);
    EXPECT_TRUE(HasText(ucx.status(), "SWITCHYARD_ENABLE_UCX")) << ucx.status().ToString();
  }
  EXPECT_FALSE(MakeLocalWorld(0).ok());
  EXPECT_TRUE(ShutdownTransports().ok());
}

}  // namespace
}  // namespace switchyard
