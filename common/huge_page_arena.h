// Long-lived large buffers (model weights) on transparent huge pages, without per-buffer waste.
//
// One-token decode streams every weight byte from memory once per step. On 4 KiB pages each page
// costs a TLB miss (a nested page walk in a VM), and a streaming read over 2 MiB pages is 20-30%
// faster on the project's CPU machine. madvise(MADV_HUGEPAGE) only covers whole 2 MiB-aligned
// pages, so a buffer from malloc keeps its unaligned head and tail (up to 4 MiB, most of an expert
// weight's scales) on 4 KiB pages, and rounding every buffer up to 2 MiB would waste up to half of
// a small one. The arena instead packs buffers back to back (64-byte aligned) into 2 MiB-aligned
// 64 MiB chunks (a buffer over 32 MiB gets a chunk of its own, its size rounded up to 2 MiB) that
// are advised for huge pages before anything touches them. Buffers under 64 KiB stay on the heap.
//
// Contract:
// - HugePageAlloc(bytes) returns 64-byte-aligned memory (uninitialised) or throws std::bad_alloc;
//   HugePageFree(p, bytes) takes back exactly what one HugePageAlloc returned, with the same
//   size. Freed space is not handed out again until it reaches the end of its chunk's used part
//   (then the chunk carries on from there) or the chunk empties; meanwhile its whole 2 MiB pages
//   are given back to the kernel (MADV_DONTNEED), so freed buffers do not stay resident. A chunk
//   is unmapped once every buffer in it is freed, except the newest, which stays mapped (its
//   pages released) for the next buffers. A request that does not fit the rest of the newest
//   chunk starts a new one; the rest is never touched (address space, not memory).
// - Buffers under kHugePageArenaMinBytes, and every buffer while the arena is disabled, come from
//   the ordinary heap; HugePageFree tells the two apart by address, so disabling the arena while
//   buffers are live is safe.
// - The arena is on by default; SWITCHYARD_HUGEPAGES=off (read once, on first use) or
//   SetHugePageArenaEnabled(false) turns it off. Where the kernel has no transparent huge pages
//   (mode "never"), the advice is a no-op and the arena still packs the buffers.
// - Everything here is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

#include "common/status.h"

namespace switchyard {

inline constexpr size_t kHugePageArenaMinBytes = size_t{64} << 10;

void* HugePageAlloc(size_t bytes);
void HugePageFree(void* p, size_t bytes) noexcept;

// "on" | "1" | "true" -> true, "off" | "0" | "false" -> false; anything else is InvalidArgument
// naming the text (SWITCHYARD_HUGEPAGES: the binaries refuse it at start-up; read lazily here, an
// invalid value logs a warning and keeps the arena on).
StatusOr<bool> ParseHugePages(const std::string& text);
bool HugePageArenaEnabled();
void SetHugePageArenaEnabled(bool enabled);

struct HugePageArenaStats {
  int64_t chunks = 0;        // chunks mapped now
  int64_t mapped_bytes = 0;  // their total size (virtual; untouched parts cost no memory)
  int64_t live_bytes = 0;    // bytes handed out and not yet freed
  int64_t live_buffers = 0;
};
HugePageArenaStats GetHugePageArenaStats();

// Standard allocator over HugePageAlloc/HugePageFree (stateless: every instance is equal).
template <class T>
struct HugePageAllocator {
  using value_type = T;
  HugePageAllocator() = default;
  template <class U>
  HugePageAllocator(const HugePageAllocator<U>&) noexcept {}
  T* allocate(size_t n) {
    if (n > SIZE_MAX / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(HugePageAlloc(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) noexcept { HugePageFree(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const HugePageAllocator<U>&) const noexcept {
    return true;
  }
};

// Bytes of a weight tensor kept on huge pages (FP4 codes and scales).
using HugePageBytes = std::vector<uint8_t, HugePageAllocator<uint8_t>>;

}  // namespace switchyard
