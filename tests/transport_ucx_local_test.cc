// UCX ranks WITHOUT MPI: the parent test hosts a RendezvousServer on an ephemeral port and spawns
// copies of this binary as ranks (explicit rank / world / endpoint through TransportOptions, as the
// coordinator would start them). Children run the whole conformance suite; in a second world one
// rank kills itself mid-exchange and the survivors must fail within their deadline naming it.
// Every child has a hard time limit (killed by the parent). Skips when UCX is not built.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/transport_conformance.h"
#include "transport/bootstrap/rendezvous.h"
#include "transport/transport_factory.h"

extern char** environ;

namespace switchyard {
namespace {

using namespace std::chrono_literals;

// Set in children: "<role> <rank> <world> <port>".
constexpr const char* kChildEnv = "SWITCHYARD_UCX_TEST_CHILD";
constexpr int kVictim = 2;  // the rank that dies in the DeadPeer world

struct ChildSpec {
  std::string role;
  int rank = -1;
  int world = 0;
  int port = 0;
};

bool ParseChild(ChildSpec* spec) {
  const char* text = std::getenv(kChildEnv);
  if (!text) return false;
  char role[32] = {};
  if (std::sscanf(text, "%31s %d %d %d", role, &spec->rank, &spec->world, &spec->port) != 4) {
    return false;
  }
  spec->role = role;
  return true;
}

StatusOr<std::unique_ptr<Transport>> ChildTransport(const ChildSpec& spec) {
  TransportOptions options;
  options.rank = spec.rank;
  options.world_size = spec.world;
  options.rendezvous = "127.0.0.1:" + std::to_string(spec.port);
  options.rank0_serves = false;  // the parent test serves
  options.connect_timeout = 20s;
  return CreateTransport(TransportKind::kUcx, options);
}

// Spawns `world` children running `filter` with role `role`, waits up to `limit` for all of them
// (killing the rest after it) and returns their wait statuses.
std::vector<int> RunWorld(const std::string& role, int world, const std::string& filter,
                          std::chrono::seconds limit) {
  auto server = RendezvousServer::Start("127.0.0.1", 0, world, Deadline::After(limit));
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  if (!server.ok()) return {};
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    const std::string spec = std::string(kChildEnv) + "=" + role + " " + std::to_string(r) + " " +
                             std::to_string(world) + " " + std::to_string((*server)->port());
    const std::string filter_arg = "--gtest_filter=" + filter;
    std::vector<std::string> env_strings;
    for (char** e = environ; *e; ++e) {
      const std::string entry(*e);
      // No launcher identity may leak in: these ranks know only what they are told.
      if (entry.rfind("OMPI_", 0) == 0 || entry.rfind("PMIX_", 0) == 0 ||
          entry.rfind("SWITCHYARD_RANK", 0) == 0 || entry.rfind("SWITCHYARD_BOOTSTRAP", 0) == 0) {
        continue;
      }
      env_strings.push_back(entry);
    }
    env_strings.push_back(spec);
    std::vector<char*> envp;
    for (std::string& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::string exe = "/proc/self/exe";
    std::vector<char*> argv = {exe.data(), const_cast<char*>(filter_arg.c_str()), nullptr};
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), envp.data());
    EXPECT_EQ(rc, 0) << "posix_spawn: " << rc;
    if (rc == 0) pids.push_back(pid);
  }
  std::vector<int> statuses(pids.size(), -1);
  std::vector<bool> done(pids.size(), false);
  const auto until = TransportClock::now() + limit;
  size_t left = pids.size();
  while (left > 0 && TransportClock::now() < until) {
    for (size_t i = 0; i < pids.size(); ++i) {
      if (done[i]) continue;
      int status = 0;
      if (waitpid(pids[i], &status, WNOHANG) == pids[i]) {
        statuses[i] = status;
        done[i] = true;
        --left;
      }
    }
    std::this_thread::sleep_for(20ms);
  }
  for (size_t i = 0; i < pids.size(); ++i) {
    if (done[i]) continue;
    ADD_FAILURE() << "rank " << i << " still running after " << limit.count() << " s: killed";
    kill(pids[i], SIGKILL);
    waitpid(pids[i], &statuses[i], 0);
  }
  return statuses;
}

TEST(UcxWithoutMpi, ConformanceSuite) {
  if (std::getenv(kChildEnv)) GTEST_SKIP() << "parent-only test";
  if (!TransportBuilt(TransportKind::kUcx)) GTEST_SKIP() << "UCX transport not built";
  const std::vector<int> statuses = RunWorld("conformance", 3, "UcxChild.Conformance", 90s);
  ASSERT_EQ(statuses.size(), 3u);
  for (size_t r = 0; r < statuses.size(); ++r) {
    EXPECT_TRUE(WIFEXITED(statuses[r]) && WEXITSTATUS(statuses[r]) == 0)
        << "rank " << r << " wait status " << statuses[r] << " (see its output above)";
  }
}

TEST(UcxWithoutMpi, DeadPeerIsNamedWithinDeadline) {
  if (std::getenv(kChildEnv)) GTEST_SKIP() << "parent-only test";
  if (!TransportBuilt(TransportKind::kUcx)) GTEST_SKIP() << "UCX transport not built";
  const std::vector<int> statuses = RunWorld("deadpeer", 3, "UcxChild.DeadPeer", 60s);
  ASSERT_EQ(statuses.size(), 3u);
  for (int r = 0; r < 3; ++r) {
    if (r == kVictim) {
      EXPECT_TRUE(WIFSIGNALED(statuses[r]) && WTERMSIG(statuses[r]) == SIGKILL)
          << "the victim should have died by SIGKILL, wait status " << statuses[r];
    } else {
      EXPECT_TRUE(WIFEXITED(statuses[r]) && WEXITSTATUS(statuses[r]) == 0)
          << "rank " << r << " wait status " << statuses[r] << " (see its output above)";
    }
  }
}

// ---- children ----

TEST(UcxChild, Conformance) {
  ChildSpec spec;
  if (!ParseChild(&spec) || spec.role != "conformance") GTEST_SKIP() << "runs as a spawned rank";
  auto transport = ChildTransport(spec);
  ASSERT_TRUE(transport.ok()) << transport.status().ToString();
  Transport& t = **transport;
  ASSERT_EQ(t.rank(), spec.rank);
  ASSERT_EQ(t.world_size(), spec.world);
  for (const testing::ConformanceCase& c : testing::ConformanceCases()) {
    if (t.world_size() < c.min_world_size) continue;
    SCOPED_TRACE(std::string("case ") + c.name + " on rank " + std::to_string(spec.rank));
    c.body(t);
    // A failed case leaves the ranks out of step: stop rather than cascade.
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(UcxChild, DeadPeer) {
  ChildSpec spec;
  if (!ParseChild(&spec) || spec.role != "deadpeer") GTEST_SKIP() << "runs as a spawned rank";
  auto transport = ChildTransport(spec);
  ASSERT_TRUE(transport.ok()) << transport.status().ToString();
  Transport& t = **transport;
  const int n = t.world_size();
  // One good round, so every connection is up.
  testing::CheckedAllToAllV(t, [](int s, int d, int) -> int64_t { return 100 + s + d; });
  if (HasFatalFailure()) return;
  if (t.rank() == kVictim) {
    // Die while the others are already waiting for this rank in the next exchange.
    std::this_thread::sleep_for(200ms);
    raise(SIGKILL);
  }
  const auto deadline = 5s;
  constexpr int64_t kBytes = int64_t{1} << 18;  // as the victim sends: large enough for rendezvous
  std::vector<std::byte> send(n * kBytes), recv(n * kBytes);
  std::vector<int64_t> counts(n, kBytes), offsets(n);
  for (int p = 0; p < n; ++p) offsets[p] = p * kBytes;
  const auto start = TransportClock::now();
  Status s = t.AllToAllV(send, counts, offsets, recv, counts, offsets, Deadline::After(deadline));
  const auto waited = TransportClock::now() - start;
  std::printf(
      "rank %d: time to error after the peer died: %lld ms: %s\n", t.rank(),
      static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()),
      s.ToString().c_str());
  EXPECT_TRUE(s.code() == StatusCode::kUnavailable || s.code() == StatusCode::kDeadlineExceeded)
      << s.ToString();
  EXPECT_TRUE(testing::HasText(s, "rank " + std::to_string(kVictim))) << s.ToString();
  EXPECT_LT(waited, deadline + 500ms);
  // Later calls that involve the dead rank fail too (never hang).
  Status again = t.Barrier(Deadline::After(2s));
  EXPECT_FALSE(again.ok());
  // The survivors may have left too by now, so the victim can be named in a list ("ranks 1, 2").
  const std::regex names_victim("ranks? ([0-9]+, )*" + std::to_string(kVictim) + "\\b");
  EXPECT_TRUE(std::regex_search(std::string(again.message()), names_victim)) << again.ToString();
}

}  // namespace
}  // namespace switchyard
