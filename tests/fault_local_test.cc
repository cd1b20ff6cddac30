// Fault tests of dispatch/combine over the local backend (ranks as threads): one rank stalls past
// the deadline or is killed (LocalWorld::Kill) in the dispatch, in the middle of a two-exchange
// dispatch, or in the combine; the others must name it within the deadline. Bodies in
// fault_dispatch_cases.h (shared with the MPI driver, fault_mpi_test.cc). Hard limits: ctest
// TIMEOUT and an alarm armed by the test environment.
#include <gtest/gtest.h>

#include <thread>

#include "fault_dispatch_cases.h"
#include "local_ranks.h"

namespace switchyard {
namespace {

using std::chrono::milliseconds;
using testing::CheckSurvivor;
using testing::FaultOutcome;
using testing::FaultScenario;

class Watchdog : public ::testing::Environment {
 public:
  void SetUp() override { testing::ArmWatchdog(60); }
};
const auto* const kWatchdog = ::testing::AddGlobalTestEnvironment(new Watchdog);

enum class Fault { kStall, kKill };

struct Case {
  const char* name;
  Fault fault;
  int at_call;
  int64_t hidden, tokens;
  bool shared_memory =
      false;  // FaultScenario::shared_memory: act before dispatch (0) / combine (1)
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class LocalFault : public ::testing::TestWithParam<Case> {};

TEST_P(LocalFault, SurvivorsNameTheVictim) {
  const Case& c = GetParam();
  if (c.shared_memory && !testing::ShmUnusable().empty()) GTEST_SKIP() << testing::ShmUnusable();
  constexpr int kRanks = 4;
  FaultScenario sc;
  sc.victim = 2;
  sc.at_call = c.at_call;
  sc.hidden = c.hidden;
  sc.tokens = c.tokens;
  sc.shared_memory = c.shared_memory;
  // A kill must be noticed at once, long before the deadline; a stall only at the deadline.
  sc.deadline = c.fault == Fault::kKill ? milliseconds(20000) : milliseconds(300);
  auto world = MakeLocalWorld(kRanks);
  ASSERT_TRUE(world.ok());
  LocalWorld& w = **world;
  std::vector<FaultOutcome> outcomes(kRanks);
  testing::RunRanks(w, testing::AllRanks(kRanks), [&](int me, Transport& t) {
    outcomes[me] = testing::RunFaultRound(t, sc, [&] {
      if (c.fault == Fault::kKill) {
        w.Kill(sc.victim);
      } else {
        std::this_thread::sleep_for(sc.deadline + milliseconds(300));
      }
    });
  });
  const std::vector<StatusCode> allowed = {c.fault == Fault::kKill ? StatusCode::kUnavailable
                                                                   : StatusCode::kDeadlineExceeded};
  const double slack_s = c.fault == Fault::kKill ? -19.0 : 1.0;  // kill: within 1 s
  for (int r = 0; r < kRanks; ++r) {
    if (r == sc.victim) continue;
    EXPECT_EQ(CheckSurvivor(outcomes[r], sc, allowed, slack_s), "") << "rank " << r;
  }
  if (c.fault == Fault::kKill) {
    EXPECT_EQ(outcomes[sc.victim].status.code(), StatusCode::kUnavailable)
        << outcomes[sc.victim].status.ToString();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Cases, LocalFault,
    ::testing::Values(Case{"StallInDispatch", Fault::kStall, 0, 64, 8},
                      Case{"StallInCombine", Fault::kStall, 1, 64, 8},
                      Case{"StallMidDispatch", Fault::kStall, 1, 2048, 64},
                      Case{"KillInDispatch", Fault::kKill, 0, 64, 8},
                      Case{"KillInCombine", Fault::kKill, 1, 64, 8},
                      Case{"KillMidDispatch", Fault::kKill, 1, 2048, 64},
                      Case{"ShmStallInDispatch", Fault::kStall, 0, 64, 8, true},
                      Case{"ShmStallInCombine", Fault::kStall, 1, 64, 8, true},
                      Case{"ShmKillInDispatch", Fault::kKill, 0, 64, 8, true},
                      Case{"ShmKillInCombine", Fault::kKill, 1, 64, 8, true}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace switchyard
