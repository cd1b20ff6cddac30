// The TCP rendezvous (transport/bootstrap/rendezvous.h) and bootstrap options from the environment
// (transport/bootstrap/bootstrap.h). Ranks are threads of this process, on loopback.
#include "transport/bootstrap/bootstrap.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "transport/bootstrap/rendezvous.h"

namespace switchyard {
namespace {

using namespace std::chrono_literals;

bool HasText(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

std::string BlobOf(int rank) {
  // Binary, with zero bytes, odd lengths, rank 1 empty.
  std::string blob;
  for (int i = 0; i < (rank == 1 ? 0 : 37 * rank + 3); ++i)
    blob.push_back(static_cast<char>(i * 7 + rank));
  return blob;
}

// Runs RendezvousAllGather for `ranks` of a `world`-rank world on threads.
std::vector<StatusOr<std::vector<std::string>>> JoinRanks(int port, int world,
                                                          const std::vector<int>& ranks,
                                                          std::chrono::milliseconds timeout) {
  std::vector<StatusOr<std::vector<std::string>>> results(ranks.size(), InternalError("not run"));
  std::vector<std::thread> threads;
  const Deadline deadline = Deadline::After(timeout);
  for (size_t i = 0; i < ranks.size(); ++i) {
    threads.emplace_back([&, i] {
      results[i] =
          RendezvousAllGather("127.0.0.1", port, ranks[i], world, BlobOf(ranks[i]), deadline);
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

TEST(Rendezvous, AllGathersBlobsInRankOrder) {
  auto server = RendezvousServer::Start("127.0.0.1", 0, 4, Deadline::After(10s));
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_GT((*server)->port(), 0);
  auto results = JoinRanks((*server)->port(), 4, {3, 1, 0, 2}, 10s);
  for (auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    ASSERT_EQ(result->size(), 4u);
    for (int r = 0; r < 4; ++r) EXPECT_EQ((*result)[r], BlobOf(r)) << "blob of rank " << r;
  }
  EXPECT_TRUE((*server)->Wait().ok());
}

TEST(Rendezvous, MissingRankIsNamedAtTheDeadline) {
  const auto timeout = 300ms;
  auto server = RendezvousServer::Start("127.0.0.1", 0, 3, Deadline::After(timeout));
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const auto start = TransportClock::now();
  auto results = JoinRanks((*server)->port(), 3, {0, 2}, timeout);
  const auto waited = TransportClock::now() - start;
  for (auto& result : results) {
    EXPECT_EQ(result.status().code(), StatusCode::kDeadlineExceeded) << result.status().ToString();
    EXPECT_TRUE(HasText(result.status(), "rank(s) 1 did not join")) << result.status().ToString();
  }
  EXPECT_GE(waited, timeout - 10ms);
  EXPECT_LT(waited, timeout + 2s);
  Status served = (*server)->Wait();
  EXPECT_EQ(served.code(), StatusCode::kDeadlineExceeded) << served.ToString();
}

TEST(Rendezvous, RefusesBadHellosAndStillServesTheRest) {
  auto server = RendezvousServer::Start("127.0.0.1", 0, 2, Deadline::After(10s));
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const int port = (*server)->port();
  // Wrong world size, then a rank outside the world (caught by the client itself).
  auto wrong_world = RendezvousAllGather("127.0.0.1", port, 0, 3, "x", Deadline::After(5s));
  EXPECT_EQ(wrong_world.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(HasText(wrong_world.status(), "world size 3, the server expects 2"))
      << wrong_world.status().ToString();
  auto bad_rank = RendezvousAllGather("127.0.0.1", port, 2, 2, "x", Deadline::After(5s));
  EXPECT_EQ(bad_rank.status().code(), StatusCode::kInvalidArgument);
  // Garbage bytes instead of a hello: refused, nothing crashes.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  const char garbage[24] = "GET / HTTP/1.1\r\n\r\n";
  ASSERT_EQ(write(fd, garbage, sizeof(garbage)), static_cast<ssize_t>(sizeof(garbage)));
  unsigned char head[4] = {};
  ASSERT_EQ(read(fd, head, sizeof(head)), 4);
  EXPECT_EQ(head[0], static_cast<unsigned char>(StatusCode::kInvalidArgument));
  close(fd);
  // A real round still completes; a duplicate rank 0 is refused while the first one waits.
  std::thread first([&] {
    auto r = RendezvousAllGather("127.0.0.1", port, 0, 2, "zero", Deadline::After(5s));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
  });
  std::this_thread::sleep_for(100ms);
  auto duplicate = RendezvousAllGather("127.0.0.1", port, 0, 2, "again", Deadline::After(5s));
  EXPECT_EQ(duplicate.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(HasText(duplicate.status(), "rank 0 already joined"))
      << duplicate.status().ToString();
  auto second = RendezvousAllGather("127.0.0.1", port, 1, 2, "one", Deadline::After(5s));
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ((*second)[0], "zero");
  EXPECT_EQ((*second)[1], "one");
  first.join();
  EXPECT_TRUE((*server)->Wait().ok());
}

TEST(Rendezvous, UnreachableServerIsADeadline) {
  // A port that was free a moment ago: nothing listens there.
  int port = 0;
  {
    auto probe = RendezvousServer::Start("127.0.0.1", 0, 1, Deadline::After(1ms));
    ASSERT_TRUE(probe.ok());
    port = (*probe)->port();
  }
  const auto start = TransportClock::now();
  auto r = RendezvousAllGather("127.0.0.1", port, 0, 2, "x", Deadline::After(200ms));
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_TRUE(HasText(r.status(), "not reachable")) << r.status().ToString();
  EXPECT_LT(TransportClock::now() - start, 2s);
}

TEST(Rendezvous, ParseHostPort) {
  auto ok = ParseHostPort("node-7:29500", "X");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->host, "node-7");
  EXPECT_EQ(ok->port, 29500);
  auto v6 = ParseHostPort("[::1]:80", "X");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  for (const char* bad : {"node", "node:", ":80", "node:http", "node:70000", "node:-1"}) {
    auto r = ParseHostPort(bad, "SWITCHYARD_BOOTSTRAP");
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(HasText(r.status(), "SWITCHYARD_BOOTSTRAP")) << r.status().ToString();
  }
}

// Sets environment variables for one test and restores them after.
class ScopedEnv {
 public:
  ScopedEnv() {
    for (const char* name : kNames) {
      const char* v = std::getenv(name);
      saved_.emplace_back(name, v ? std::optional<std::string>(v) : std::nullopt);
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    for (auto& [name, value] : saved_) {
      if (value) {
        setenv(name, value->c_str(), 1);
      } else {
        unsetenv(name);
      }
    }
  }
  void Set(const char* name, const char* value) { setenv(name, value, 1); }

 private:
  static constexpr const char* kNames[] = {"SWITCHYARD_RANK",
                                           "SWITCHYARD_WORLD_SIZE",
                                           "OMPI_COMM_WORLD_RANK",
                                           "OMPI_COMM_WORLD_SIZE",
                                           "PMIX_RANK",
                                           "SLURM_PROCID",
                                           "SLURM_NTASKS",
                                           "SWITCHYARD_BOOTSTRAP",
                                           "SWITCHYARD_BOOTSTRAP_SERVER"};
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

TEST(BootstrapOptions, Precedence) {
  ScopedEnv env;
  auto none = ResolveBootstrapOptions({});
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(none->rank, 0);
  EXPECT_EQ(none->world_size, 1);
  env.Set("SLURM_PROCID", "1");
  env.Set("SLURM_NTASKS", "4");
  env.Set("OMPI_COMM_WORLD_RANK", "2");
  env.Set("OMPI_COMM_WORLD_SIZE", "5");
  auto ompi = ResolveBootstrapOptions({});
  ASSERT_TRUE(ompi.ok());
  EXPECT_EQ(ompi->rank, 2);
  EXPECT_EQ(ompi->world_size, 5);
  env.Set("SWITCHYARD_RANK", "3");
  env.Set("SWITCHYARD_WORLD_SIZE", "6");
  env.Set("SWITCHYARD_BOOTSTRAP", "head:1234");
  env.Set("SWITCHYARD_BOOTSTRAP_SERVER", "external");
  auto ours = ResolveBootstrapOptions({});
  ASSERT_TRUE(ours.ok());
  EXPECT_EQ(ours->rank, 3);
  EXPECT_EQ(ours->world_size, 6);
  EXPECT_EQ(ours->endpoint, "head:1234");
  EXPECT_FALSE(ours->rank0_serves);
  BootstrapOptions explicit_options;
  explicit_options.rank = 0;
  explicit_options.world_size = 2;
  explicit_options.endpoint = "127.0.0.1:5";
  auto given = ResolveBootstrapOptions(explicit_options);
  ASSERT_TRUE(given.ok());
  EXPECT_EQ(given->rank, 0);
  EXPECT_EQ(given->world_size, 2);
  EXPECT_EQ(given->endpoint, "127.0.0.1:5");
  EXPECT_TRUE(given->rank0_serves);
}

TEST(BootstrapOptions, BadValuesNameTheVariable) {
  ScopedEnv env;
  env.Set("SWITCHYARD_RANK", "two");
  auto r = ResolveBootstrapOptions({});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(HasText(r.status(), "SWITCHYARD_RANK")) << r.status().ToString();
  env.Set("SWITCHYARD_RANK", "4");
  env.Set("SWITCHYARD_WORLD_SIZE", "4");
  r = ResolveBootstrapOptions({});
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(HasText(r.status(), "rank 4 (from SWITCHYARD_RANK)")) << r.status().ToString();
  env.Set("SWITCHYARD_RANK", "1");
  env.Set("SWITCHYARD_BOOTSTRAP", "nohost");
  r = ResolveBootstrapOptions({});
  EXPECT_TRUE(HasText(r.status(), "SWITCHYARD_BOOTSTRAP")) << r.status().ToString();
  env.Set("SWITCHYARD_BOOTSTRAP", "h:1");
  env.Set("SWITCHYARD_BOOTSTRAP_SERVER", "rank1");
  r = ResolveBootstrapOptions({});
  EXPECT_TRUE(HasText(r.status(), "SWITCHYARD_BOOTSTRAP_SERVER")) << r.status().ToString();
}

TEST(TcpBlobAllGather, RankZeroServes) {
  // Rank 0 hosts the server on a port that was free a moment ago.
  int port = 0;
  {
    auto probe = RendezvousServer::Start("127.0.0.1", 0, 1, Deadline::After(1ms));
    ASSERT_TRUE(probe.ok());
    port = (*probe)->port();
  }
  std::vector<StatusOr<std::vector<std::string>>> results(3, InternalError("not run"));
  std::vector<std::thread> threads;
  const Deadline deadline = Deadline::After(10s);
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      BootstrapOptions options;
      options.rank = r;
      options.world_size = 3;
      options.endpoint = "127.0.0.1:" + std::to_string(port);
      results[r] = TcpBlobAllGather(options)(BlobOf(r), deadline);
    });
  }
  for (std::thread& t : threads) t.join();
  for (auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    for (int r = 0; r < 3; ++r) EXPECT_EQ((*result)[r], BlobOf(r));
  }
  // Rank 1 waiting for a rank 0 that never starts its server: the error says who was missing.
  BootstrapOptions orphan;
  orphan.rank = 1;
  orphan.world_size = 2;
  orphan.endpoint = "127.0.0.1:" + std::to_string(port);
  auto no_server = TcpBlobAllGather(orphan)("x", Deadline::After(200ms));
  EXPECT_EQ(no_server.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(HasText(no_server.status(), "rank 0 hosts this rendezvous"))
      << no_server.status().ToString();
  BootstrapOptions lonely;
  lonely.rank = 0;
  lonely.world_size = 2;
  auto no_endpoint = TcpBlobAllGather(lonely)("x", Deadline::After(1s));
  EXPECT_EQ(no_endpoint.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(HasText(no_endpoint.status(), "SWITCHYARD_BOOTSTRAP"));
}

}  // namespace
}  // namespace switchyard
