// The shared-memory building blocks of dispatch (transport/shm/): PeerMemory segments mapped by
// every rank of a local world (ranks as threads), their names gone from /dev/shm after setup;
// ShmChannel's layout and WaitAll (sequence numbers, deadlines naming late ranks, out-of-step
// ranks, dead ranks via Transport::KnownDead).
#include "transport/shm/shm_channel.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "local_ranks.h"
#include "transport/shm/peer_memory.h"
#include "transport/transport_factory.h"

namespace switchyard {
namespace {

using std::chrono::milliseconds;
using testing::AllRanks;
using testing::RunRanks;

Deadline Soon(int ms = 10000) { return Deadline::After(milliseconds(ms)); }

// Names in /dev/shm made by this process (PeerMemory names start with /switchyard-<pid>-).
int OurShmNames() {
  const std::string prefix = "switchyard-" + std::to_string(getpid()) + "-";
  int n = 0;
  if (DIR* d = opendir("/dev/shm")) {
    while (dirent* e = readdir(d)) n += std::strncmp(e->d_name, prefix.c_str(), prefix.size()) == 0;
    closedir(d);
  }
  return n;
}

TEST(PeerMemory, EveryRankSeesEveryRanksSegment) {
  constexpr int kRanks = 3;
  auto world = MakeLocalWorld(kRanks);
  ASSERT_TRUE(world.ok());
  std::vector<std::unique_ptr<PeerMemory>> mems(kRanks);
  RunRanks(**world, AllRanks(kRanks), [&](int me, Transport& t) {
    std::string why;
    auto made = PeerMemory::Create(t, (me + 1) * 100000, Soon(), &why);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    ASSERT_NE(*made, nullptr) << why;
    mems[me] = std::move(*made);
    // Each rank writes its rank into its own segment past the reserved line.
    std::memset(mems[me]->base(me) + PeerMemory::kReservedBytes, 'a' + me, 4096);
    ASSERT_TRUE(t.Barrier(Soon()).ok());
    for (int p = 0; p < kRanks; ++p) {
      EXPECT_GE(mems[me]->size(p), (p + 1) * 100000);  // rounded up to pages
      EXPECT_EQ(mems[me]->size(p) % 4096, 0);
      EXPECT_EQ(static_cast<char>(mems[me]->base(p)[PeerMemory::kReservedBytes + 4095]), 'a' + p);
      EXPECT_FALSE(mems[me]->PeerDead(p));  // threads of this process are never dead
    }
  });
  EXPECT_EQ(OurShmNames(), 0);  // every name unlinked once all had mapped
  mems.clear();
  EXPECT_EQ(OurShmNames(), 0);
}

TEST(PeerMemory, OneRankWorldAndBadSize) {
  auto world = MakeLocalWorld(1);
  ASSERT_TRUE(world.ok());
  auto made = PeerMemory::Create((*world)->transport(0), 1 << 16, Soon());
  ASSERT_TRUE(made.ok());
  ASSERT_NE(*made, nullptr);
  EXPECT_EQ((*made)->world_size(), 1);
  auto bad = PeerMemory::Create((*world)->transport(0), 0, Soon());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

// A rank that never joins: the others' setup fails naming it within the deadline (and leaves no
// name behind).
TEST(PeerMemory, MissingRankIsNamed) {
  auto world = MakeLocalWorld(3);
  ASSERT_TRUE(world.ok());
  RunRanks(**world, {0, 1}, [&](int, Transport& t) {
    auto made = PeerMemory::Create(t, 1 << 16, Soon(200));
    EXPECT_EQ(made.status().code(), StatusCode::kDeadlineExceeded) << made.status().ToString();
    EXPECT_NE(made.status().message().find("rank 2"), std::string::npos)
        << made.status().ToString();
  });
  EXPECT_EQ(OurShmNames(), 0);
}

TEST(ShmChannel, LayoutAndWaits) {
  constexpr int kRanks = 4;
  auto world = MakeLocalWorld(kRanks);
  ASSERT_TRUE(world.ok());
  std::atomic<int> done{0};
  RunRanks(**world, AllRanks(kRanks), [&](int me, Transport& t) {
    std::string why;
    // Rank 2 asks for the largest slots: every rank gets them.
    auto made =
        ShmChannel::Create(t, me == 2 ? 200000 : 5000, 70000, int64_t{1} << 30, Soon(), &why);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    ASSERT_NE(*made, nullptr) << why;
    ShmChannel& ch = **made;
    EXPECT_GE(ch.slot_bytes(), 200000);
    EXPECT_GE(ch.combine_bytes(), 70000);
    // Slots of distinct senders in one receiver do not overlap; areas differ per rank.
    for (int r = 0; r < kRanks; ++r) {
      for (int a = 0; a < kRanks; ++a) {
        for (int b = a + 1; b < kRanks; ++b) {
          if (a == r || b == r) continue;
          EXPECT_GE(std::abs(ch.Slot(r, a) - ch.Slot(r, b)), ch.slot_bytes());
        }
      }
      EXPECT_GE(ch.CombineArea(r) - ch.Slot(r, r == 0 ? 1 : 0), ch.slot_bytes());
    }
    // Everyone publishes step 1 with a word; everyone waits for all.
    const int64_t mine[2] = {me * 10, me * 10 + 1};
    ch.Publish(ShmChannel::kEnter, 1, mine, 2);
    std::vector<int64_t> words(kRanks * ShmChannel::kWords, -1);
    ASSERT_TRUE(ch.WaitAll(ShmChannel::kEnter, 1, Soon(), "test", 9, t, words.data()).ok());
    for (int p = 0; p < kRanks; ++p) {
      if (p == me) continue;
      EXPECT_EQ(words[ShmChannel::kWords * p], p * 10);
      EXPECT_EQ(words[ShmChannel::kWords * p + 1], p * 10 + 1);
      EXPECT_EQ(words[ShmChannel::kWords * p + 2], 0);
    }
    // Rank 3 never publishes step 1 on kData: the others' wait names it at the deadline.
    if (me != 3) ch.Publish(ShmChannel::kData, 1, nullptr, 0);
    if (me != 3) {
      const auto start = TransportClock::now();
      Status st = ch.WaitAll(ShmChannel::kData, 1, Soon(150), "test", 9, t, words.data());
      EXPECT_EQ(st.code(), StatusCode::kDeadlineExceeded) << st.ToString();
      EXPECT_NE(st.message().find("waiting for rank 3"), std::string::npos) << st.ToString();
      EXPECT_NE(st.message().find("test layer 9 (shared memory)"), std::string::npos);
      EXPECT_LT(TransportClock::now() - start, std::chrono::seconds(2));
    }
    // Rank 0 runs ahead to step 2 on kCombineDone; the others, waiting for step 1, see it past.
    ASSERT_TRUE(t.Barrier(Soon()).ok());
    if (me == 0) ch.Publish(ShmChannel::kCombineDone, 2, nullptr, 0);
    ASSERT_TRUE(t.Barrier(Soon()).ok());
    if (me != 0) {
      ch.Publish(ShmChannel::kCombineDone, 1, nullptr, 0);
      Status st = ch.WaitAll(ShmChannel::kCombineDone, 1, Soon(), "test", 9, t, words.data());
      EXPECT_EQ(st.code(), StatusCode::kCancelled) << st.ToString();
      EXPECT_NE(st.message().find("rank 0 already past step 1"), std::string::npos)
          << st.ToString();
    }
    ASSERT_TRUE(t.Barrier(Soon()).ok());
    ++done;
  });
  EXPECT_EQ(done.load(), kRanks);
}

// A rank the transport knows is dead (LocalWorld::Kill) is Unavailable at once, not at the
// deadline.
TEST(ShmChannel, KnownDeadRankIsUnavailable) {
  constexpr int kRanks = 3;
  auto world = MakeLocalWorld(kRanks);
  ASSERT_TRUE(world.ok());
  std::vector<std::unique_ptr<ShmChannel>> channels(kRanks);
  RunRanks(**world, AllRanks(kRanks), [&](int me, Transport& t) {
    auto made = ShmChannel::Create(t, 4096, 4096, int64_t{1} << 30, Soon(), nullptr);
    ASSERT_TRUE(made.ok() && *made != nullptr);
    channels[me] = std::move(*made);
  });
  (*world)->Kill(1);
  RunRanks(**world, {0, 2}, [&](int me, Transport& t) {
    channels[me]->Publish(ShmChannel::kEnter, 1, nullptr, 0);
    std::vector<int64_t> words(kRanks * ShmChannel::kWords);
    const auto start = TransportClock::now();
    Status st =
        channels[me]->WaitAll(ShmChannel::kEnter, 1, Soon(20000), "test", 0, t, words.data());
    EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
    EXPECT_NE(st.message().find("rank 1"), std::string::npos) << st.ToString();
    EXPECT_LT(TransportClock::now() - start, std::chrono::seconds(1));
  });
}

}  // namespace
}  // namespace switchyard
