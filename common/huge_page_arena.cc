#include "common/huge_page_arena.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <map>
#include <mutex>
#include <string>

#include "common/logging.h"

namespace switchyard {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kChunkBytes = size_t{64} << 20;  // buffers over half of this get their own chunk
constexpr size_t kAlign = 64;
constexpr std::align_val_t kHeapAlign{kAlign};

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

struct Chunk {
  uint8_t* base = nullptr;
  size_t size = 0;
  size_t used = 0;                 // bump offset
  int64_t live = 0;                // buffers not yet freed
  std::map<size_t, size_t> holes;  // freed [offset, end) below `used`, coalesced
};

struct Arena {
  std::mutex mu;
  std::map<uintptr_t, Chunk> chunks;  // by base address
  Chunk* current = nullptr;           // where small buffers are carved from
  int64_t live_bytes = 0, live_buffers = 0;
};

Arena& TheArena() {
  static Arena* arena = new Arena;  // never destroyed: buffers may be freed during exit
  return *arena;
}

// 2 MiB-aligned anonymous memory of `size` bytes (a multiple of 2 MiB), advised for huge pages
// before its first touch; nullptr if the mapping fails.
uint8_t* MapChunk(size_t size) {
  const size_t len = size + kHugePage;
  void* raw = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t r = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t b = RoundUp(r, kHugePage);
  if (b > r) munmap(raw, b - r);
  if (r + len > b + size) munmap(reinterpret_cast<void*>(b + size), r + len - (b + size));
  void* p = reinterpret_cast<void*>(b);
#ifdef MADV_HUGEPAGE
  madvise(p, size, MADV_HUGEPAGE);  // advice only: a no-op where THP is "never"
#endif
  return static_cast<uint8_t*>(p);
}

// Gives the memory of the whole 2 MiB pages inside [begin, end) (offsets in c) back to the
// kernel; the next touch faults in zeroed pages. Partial pages stay: they may hold live bytes.
void ReleasePages(const Chunk& c, size_t begin, size_t end) {
  const size_t b = RoundUp(begin, kHugePage), e = end / kHugePage * kHugePage;
  if (e > b) madvise(c.base + b, e - b, MADV_DONTNEED);
}

// Marks [off, off + len) of c free: merged with the free space around it, handed back to the bump
// allocator when it reaches `used`, and its whole pages released, so that freed weights do not
// stay resident while other buffers keep the chunk.
void FreeRange(Chunk* c, size_t off, size_t len) {
  size_t begin = off, end = off + len;
  auto next = c->holes.lower_bound(begin);
  if (next != c->holes.end() && next->first == end) {
    end = next->second;
    next = c->holes.erase(next);
  }
  if (next != c->holes.begin()) {
    auto prev = std::prev(next);
    if (prev->second == begin) {
      begin = prev->first;
      c->holes.erase(prev);
    }
  }
  if (end == c->used) {  // nothing live from `begin` on: the bump frontier moves back
    ReleasePages(*c, begin, std::min(c->size, RoundUp(c->used, kHugePage)));
    c->used = begin;
  } else {
    c->holes.emplace(begin, end);
    ReleasePages(*c, begin, end);
  }
}

// A new chunk of `size` bytes in the arena's table (a.mu held); throws std::bad_alloc.
Chunk* NewChunk(Arena& a, size_t size) {
  uint8_t* base = MapChunk(size);
  if (base == nullptr) throw std::bad_alloc();
  try {
    Chunk* c = &a.chunks[reinterpret_cast<uintptr_t>(base)];
    c->base = base;
    c->size = size;
    return c;
  } catch (...) {
    munmap(base, size);
    throw;
  }
}

std::atomic<int> g_enabled{-1};  // -1: not yet read from the environment

bool EnabledFromEnv() {
  const char* env = std::getenv("SWITCHYARD_HUGEPAGES");
  if (env == nullptr) return true;
  auto on = ParseHugePages(env);
  if (!on.ok()) {
    LOG_WARN("memory", "%s; the huge-page arena stays on", on.status().message().c_str());
    return true;
  }
  return *on;
}

}  // namespace

StatusOr<bool> ParseHugePages(const std::string& text) {
  if (text == "on" || text == "1" || text == "true") return true;
  if (text == "off" || text == "0" || text == "false") return false;
  return InvalidArgumentError("SWITCHYARD_HUGEPAGES='" + text + "': expected on or off");
}

bool HugePageArenaEnabled() {
  int e = g_enabled.load(std::memory_order_acquire);
  if (e < 0) {
    int expected = -1;
    g_enabled.compare_exchange_strong(expected, EnabledFromEnv() ? 1 : 0);
    e = g_enabled.load(std::memory_order_acquire);
  }
  return e == 1;
}

void SetHugePageArenaEnabled(bool enabled) {
  g_enabled.store(enabled ? 1 : 0, std::memory_order_release);
}

void* HugePageAlloc(size_t bytes) {
  if (bytes < kHugePageArenaMinBytes || !HugePageArenaEnabled()) {
    return ::operator new(std::max<size_t>(bytes, 1), kHeapAlign);
  }
  if (bytes > SIZE_MAX / 2) throw std::bad_alloc();
  const size_t need = RoundUp(bytes, kAlign);
  Arena& a = TheArena();
  std::lock_guard<std::mutex> lock(a.mu);
  Chunk* c = nullptr;
  if (need > kChunkBytes / 2) {
    c = NewChunk(a, RoundUp(need, kHugePage));
  } else {
    if (a.current == nullptr || a.current->size - a.current->used < need) {
      a.current = NewChunk(a, kChunkBytes);
    }
    c = a.current;
  }
  uint8_t* p = c->base + c->used;
  c->used += need;
  ++c->live;
  a.live_bytes += static_cast<int64_t>(need);
  ++a.live_buffers;
  return p;
}

void HugePageFree(void* p, size_t bytes) noexcept {
  if (p == nullptr) return;
  if (bytes >= kHugePageArenaMinBytes) {
    Arena& a = TheArena();
    std::lock_guard<std::mutex> lock(a.mu);
    const uintptr_t addr = reinterpret_cast<uintptr_t>(p);
    auto it = a.chunks.upper_bound(addr);
    if (it != a.chunks.begin()) {
      --it;
      Chunk& c = it->second;
      if (addr < it->first + c.size) {
        a.live_bytes -= static_cast<int64_t>(RoundUp(bytes, kAlign));
        --a.live_buffers;
        FreeRange(&c, addr - it->first, RoundUp(bytes, kAlign));
        if (--c.live == 0 && &c != a.current) {  // the newest chunk stays mapped for reuse
          munmap(c.base, c.size);
          a.chunks.erase(it);
        }
        return;
      }
    }
  }
  ::operator delete(p, kHeapAlign);
}

HugePageArenaStats GetHugePageArenaStats() {
  Arena& a = TheArena();
  std::lock_guard<std::mutex> lock(a.mu);
  HugePageArenaStats s;
  for (const auto& [base, c] : a.chunks) {
    ++s.chunks;
    s.mapped_bytes += static_cast<int64_t>(c.size);
  }
  s.live_bytes = a.live_bytes;
  s.live_buffers = a.live_buffers;
  return s;
}

}  // namespace switchyard
