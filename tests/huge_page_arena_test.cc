// common/huge_page_arena.h: packing, alignment, chunk lifetime, the heap fallback, threads.
#include "common/huge_page_arena.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace switchyard {
namespace {

bool Aligned64(const void* p) { return reinterpret_cast<uintptr_t>(p) % 64 == 0; }

// The transparent huge page mode in brackets ("always", "madvise", "never"); "" if unknown.
std::string ThpMode() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t b = text.find('['), e = text.find(']');
  return b == std::string::npos || e == std::string::npos ? "" : text.substr(b + 1, e - b - 1);
}

// Whether the mapping that holds p carries the MADV_HUGEPAGE flag ("hg" in VmFlags of
// /proc/self/smaps): 1 or 0; -1 if not reported.
int AdvisedHugePages(const void* p) {
  std::ifstream f("/proc/self/smaps");
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(f, line);) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= a && a < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) {
      std::istringstream flags(line.substr(8));
      for (std::string flag; flags >> flag;) {
        if (flag == "hg") return 1;
      }
      return 0;
    }
  }
  return -1;
}

// Resident 4 KiB pages of [p, p + n) (p 4 KiB-aligned), by mincore.
size_t ResidentPages(const uint8_t* p, size_t n) {
  std::vector<unsigned char> vec((n + 4095) / 4096);
  if (mincore(const_cast<uint8_t*>(p), n, vec.data()) != 0) return SIZE_MAX;
  size_t resident = 0;
  for (unsigned char v : vec) resident += v & 1;
  return resident;
}

// Every test starts with the arena on, whatever SWITCHYARD_HUGEPAGES says.
class HugePageArena : public ::testing::Test {
 protected:
  void SetUp() override { SetHugePageArenaEnabled(true); }
};

TEST_F(HugePageArena, SmallBuffersComeFromTheHeap) {
  const HugePageArenaStats before = GetHugePageArenaStats();
  void* p = HugePageAlloc(kHugePageArenaMinBytes - 1);
  EXPECT_TRUE(Aligned64(p));
  EXPECT_EQ(GetHugePageArenaStats().live_buffers, before.live_buffers);
  std::memset(p, 0xAB, kHugePageArenaMinBytes - 1);
  HugePageFree(p, kHugePageArenaMinBytes - 1);
  EXPECT_EQ(GetHugePageArenaStats().live_bytes, before.live_bytes);
}

TEST_F(HugePageArena, PacksBuffersBackToBackOnHugePages) {
  const HugePageArenaStats before = GetHugePageArenaStats();
  const size_t n = 100 * 1024 + 3;  // not a multiple of 64: the next buffer starts aligned
  std::vector<uint8_t*> bufs;
  for (int i = 0; i < 4; ++i) bufs.push_back(static_cast<uint8_t*>(HugePageAlloc(n)));
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(Aligned64(bufs[i])) << i;
    std::memset(bufs[i], i + 1, n);
  }
  const size_t stride = (n + 63) / 64 * 64;
  for (int i = 1; i < 4; ++i) EXPECT_EQ(bufs[i], bufs[i - 1] + stride) << "packed back to back";
  for (int i = 0; i < 4; ++i) {
    for (size_t j = 0; j < n; j += 997) ASSERT_EQ(bufs[i][j], i + 1) << "buffers overlap";
  }
  const HugePageArenaStats mid = GetHugePageArenaStats();
  EXPECT_EQ(mid.live_buffers, before.live_buffers + 4);
  EXPECT_EQ(mid.live_bytes, before.live_bytes + 4 * static_cast<int64_t>(stride));
  if (!ThpMode().empty()) {  // the kernel has transparent huge pages
    const int advised = AdvisedHugePages(bufs[0]);
    if (advised >= 0) {
      EXPECT_EQ(advised, 1) << "the chunk is not advised for huge pages";
    }
  }
  for (uint8_t* p : bufs) HugePageFree(p, n);
  EXPECT_EQ(GetHugePageArenaStats().live_buffers, before.live_buffers);
  EXPECT_EQ(GetHugePageArenaStats().live_bytes, before.live_bytes);
}

TEST_F(HugePageArena, TheNewestChunkIsReusedOnceEmpty) {
  const size_t n = 1 << 20;
  void* first = HugePageAlloc(n);
  HugePageFree(first, n);
  const HugePageArenaStats empty = GetHugePageArenaStats();
  void* again = HugePageAlloc(n);
  EXPECT_EQ(again, first) << "an emptied newest chunk starts again from its beginning";
  EXPECT_EQ(GetHugePageArenaStats().chunks, empty.chunks);
  HugePageFree(again, n);
}

TEST_F(HugePageArena, LargeBuffersGetTheirOwnChunkAndGiveItBack) {
  const HugePageArenaStats before = GetHugePageArenaStats();
  const size_t n = (size_t{40} << 20) + 12345;
  uint8_t* p = static_cast<uint8_t*>(HugePageAlloc(n));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % (size_t{2} << 20), 0u) << "own chunk, 2 MiB aligned";
  p[0] = 1;
  p[n - 1] = 2;
  const HugePageArenaStats mid = GetHugePageArenaStats();
  EXPECT_EQ(mid.chunks, before.chunks + 1);
  EXPECT_EQ(mid.mapped_bytes, before.mapped_bytes + (int64_t{42} << 20));
  HugePageFree(p, n);
  const HugePageArenaStats after = GetHugePageArenaStats();
  EXPECT_EQ(after.chunks, before.chunks) << "the chunk is unmapped with its buffer";
  EXPECT_EQ(after.mapped_bytes, before.mapped_bytes);
}

TEST_F(HugePageArena, AFullChunkIsUnmappedWhenItsLastBufferGoes) {
  const HugePageArenaStats before = GetHugePageArenaStats();
  // 3 x 30 MiB: two fill one 64 MiB chunk, the third starts another.
  const size_t n = size_t{30} << 20;
  std::vector<void*> bufs;
  for (int i = 0; i < 3; ++i) bufs.push_back(HugePageAlloc(n));
  EXPECT_GE(GetHugePageArenaStats().chunks, before.chunks + 1);
  for (void* p : bufs) HugePageFree(p, n);
  const HugePageArenaStats after = GetHugePageArenaStats();
  EXPECT_LE(after.chunks, before.chunks + 1) << "only the newest chunk may stay mapped";
  EXPECT_EQ(after.live_buffers, before.live_buffers);
}

TEST_F(HugePageArena, FreedSpaceIsReleasedAndReusedAtTheFrontier) {
  const size_t small = size_t{1} << 20, big = size_t{6} << 20;
  auto* keep = static_cast<uint8_t*>(HugePageAlloc(small));
  auto* hole = static_cast<uint8_t*>(HugePageAlloc(big));
  auto* last = static_cast<uint8_t*>(HugePageAlloc(small));
  std::memset(keep, 1, small);
  std::memset(hole, 2, big);
  std::memset(last, 3, small);
  // The whole 2 MiB pages inside `hole` (at least 2 of its 6 MiB).
  const size_t huge = size_t{2} << 20;
  const uintptr_t b = (reinterpret_cast<uintptr_t>(hole) + huge - 1) / huge * huge;
  const uintptr_t e = (reinterpret_cast<uintptr_t>(hole) + big) / huge * huge;
  ASSERT_GE(e - b, 2 * huge);
  const auto* inner = reinterpret_cast<const uint8_t*>(b);
  ASSERT_EQ(ResidentPages(inner, e - b), (e - b) / 4096) << "touched pages are resident";
  HugePageFree(hole, big);  // a hole between two live buffers
  EXPECT_EQ(ResidentPages(inner, e - b), 0u) << "a freed buffer's whole pages are released";
  EXPECT_EQ(keep[small - 1], 1);
  EXPECT_EQ(last[0], 3) << "the neighbours keep their bytes";
  HugePageFree(last, small);  // the hole now reaches the frontier: the chunk carries on from it
  void* again = HugePageAlloc(small);
  EXPECT_EQ(again, hole) << "freed space at the end of the used part is handed out again";
  HugePageFree(again, small);
  HugePageFree(keep, small);
}

TEST_F(HugePageArena, DisablingKeepsLiveBuffersValid) {
  const HugePageArenaStats before = GetHugePageArenaStats();
  const size_t n = 256 * 1024;
  void* arena = HugePageAlloc(n);
  SetHugePageArenaEnabled(false);
  EXPECT_FALSE(HugePageArenaEnabled());
  void* heap = HugePageAlloc(n);
  EXPECT_TRUE(Aligned64(heap));
  EXPECT_EQ(GetHugePageArenaStats().live_buffers, before.live_buffers + 1) << "heap, not arena";
  HugePageFree(arena, n);  // allocated while enabled, freed while disabled
  SetHugePageArenaEnabled(true);
  HugePageFree(heap, n);  // allocated while disabled, freed while enabled
  EXPECT_EQ(GetHugePageArenaStats().live_buffers, before.live_buffers);
}

TEST_F(HugePageArena, ImpossibleSizesThrow) {
  EXPECT_THROW(HugePageAlloc(SIZE_MAX - 10), std::bad_alloc);
  HugePageAllocator<uint64_t> a;
  EXPECT_THROW(a.allocate(SIZE_MAX / 4), std::bad_alloc);
}

TEST_F(HugePageArena, VectorsCopyMoveAndCompare) {
  HugePageBytes a(300 * 1024);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<uint8_t>(i * 7);
  HugePageBytes b = a;
  EXPECT_EQ(a, b);
  EXPECT_NE(a.data(), b.data());
  HugePageBytes c = std::move(b);
  EXPECT_EQ(a, c);
  c.assign(10, 1);
  EXPECT_EQ(c.size(), 10u);
  c.shrink_to_fit();
  EXPECT_EQ(c, HugePageBytes(10, 1));
}

TEST_F(HugePageArena, ThreadsAllocateAndFreeConcurrently) {
  const HugePageArenaStats before = GetHugePageArenaStats();
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &bad] {
      std::mt19937 rng(t);
      std::vector<std::pair<uint8_t*, size_t>> live;
      for (int i = 0; i < 300; ++i) {
        const size_t n = 32 * 1024 + rng() % (2 << 20);
        auto* p = static_cast<uint8_t*>(HugePageAlloc(n));
        std::memset(p, t * 16 + i % 16, n);
        live.push_back({p, n});
        if (live.size() > 8) {
          const size_t k = rng() % live.size();
          auto [q, m] = live[k];
          const uint8_t want = q[0];
          for (size_t j = 0; j < m; j += 4093) bad[t] += q[j] != want;
          bad[t] += (want >> 4) != t;
          HugePageFree(q, m);
          live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
        }
      }
      for (auto [q, m] : live) HugePageFree(q, m);
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(bad[t], 0) << "thread " << t << " saw another's bytes";
  const HugePageArenaStats after = GetHugePageArenaStats();
  EXPECT_EQ(after.live_buffers, before.live_buffers);
  EXPECT_EQ(after.live_bytes, before.live_bytes);
  EXPECT_LE(after.chunks, before.chunks + 1);
}

}  // namespace
}  // namespace switchyard
