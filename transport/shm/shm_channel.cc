#include "transport/shm/shm_channel.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace switchyard {
namespace {

constexpr int64_t kLineBytes = 64;
constexpr int64_t kPage = 4096;

int64_t RoundUp(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

}  // namespace

std::string ShmChannel::StepName(const char* phase, int64_t layer) {
  return std::string(phase) + " layer " + std::to_string(layer) + " (shared memory)";
}

int64_t ShmChannel::SlotsOffset(int world_size) {
  const int64_t table = PeerMemory::kReservedBytes + kNumLines * kLineBytes;
  return RoundUp(table + 8 * (world_size + 1), kPage);
}

void ShmChannel::CappedSizes(int world_size, int64_t max_segment_bytes, int64_t* slot,
                             int64_t* combine) {
  const int64_t room = std::max<int64_t>(max_segment_bytes - SlotsOffset(world_size), 2 * kPage);
  // Wishes beyond the room are clamped first (no overflow when rounding up).
  const int64_t max_slot =
      std::max<int64_t>(room / 2 / std::max(world_size - 1, 1) / kPage * kPage, kPage);
  const int64_t max_combine = std::max<int64_t>(room / 2 / kPage * kPage, kPage);
  *slot = std::min(RoundUp(std::clamp<int64_t>(*slot, kPage, max_slot), kPage), max_slot);
  *combine =
      std::min(RoundUp(std::clamp<int64_t>(*combine, kPage, max_combine), kPage), max_combine);
}

StatusOr<std::unique_ptr<ShmChannel>> ShmChannel::Create(Transport& t, int64_t slot_bytes,
                                                         int64_t combine_bytes,
                                                         int64_t max_segment_bytes,
                                                         Deadline deadline, std::string* why_not) {
  const int n = t.world_size();
  if (n < 2) {
    if (why_not != nullptr) *why_not = "a world of one rank";
    return std::unique_ptr<ShmChannel>();
  }
  // The largest wish of any rank, so every segment has the same layout.
  std::vector<int64_t> mine(n, slot_bytes), all(n);
  RETURN_IF_ERROR(t.AllToAllCounts(mine, all, deadline));
  int64_t slot = *std::max_element(all.begin(), all.end());
  mine.assign(n, combine_bytes);
  RETURN_IF_ERROR(t.AllToAllCounts(mine, all, deadline));
  int64_t combine = *std::max_element(all.begin(), all.end());

  const int64_t slots_offset = SlotsOffset(n);
  CappedSizes(n, max_segment_bytes, &slot, &combine);
  const int64_t combine_offset = slots_offset + (n - 1) * slot;
  const int64_t total = combine_offset + combine;

  std::string why;
  ASSIGN_OR_RETURN(std::unique_ptr<PeerMemory> mem, PeerMemory::Create(t, total, deadline, &why));
  if (mem == nullptr) {
    if (why_not != nullptr) *why_not = why;
    return std::unique_ptr<ShmChannel>();
  }
  // Every rank sees every size, so all reach the same verdict.
  for (int p = 0; p < n; ++p) {
    if (mem->size(p) < total) {
      if (why_not != nullptr) {
        *why_not = "rank " + std::to_string(p) + " got a " + std::to_string(mem->size(p)) +
                   "-byte segment of the " + std::to_string(total) + " bytes needed (/dev/shm)";
      }
      return std::unique_ptr<ShmChannel>();
    }
  }
  std::unique_ptr<ShmChannel> ch(new ShmChannel());
  ch->mem_ = std::move(mem);
  ch->slot_bytes_ = slot;
  ch->combine_bytes_ = combine;
  ch->slots_offset_ = slots_offset;
  ch->combine_offset_ = combine_offset;
  return ch;
}

uint64_t* ShmChannel::SeqWord(int r, Line line) const {
  return reinterpret_cast<uint64_t*>(mem_->base(r) + PeerMemory::kReservedBytes +
                                     kLineBytes * line);
}

std::byte* ShmChannel::Slot(int receiver, int sender) const {
  const int k = sender < receiver ? sender : sender - 1;
  return mem_->base(receiver) + slots_offset_ + slot_bytes_ * k;
}

std::byte* ShmChannel::CombineArea(int r) const { return mem_->base(r) + combine_offset_; }

int64_t* ShmChannel::CombineTable(int r) const {
  return reinterpret_cast<int64_t*>(mem_->base(r) + PeerMemory::kReservedBytes +
                                    kNumLines * kLineBytes);
}

void ShmChannel::Publish(Line line, uint64_t seq, const int64_t* words, int num_words) {
  uint64_t* s = SeqWord(rank(), line);
  int64_t w[kWords] = {};
  std::copy(words, words + std::min(num_words, kWords), w);
  std::memcpy(s + 1, w, sizeof w);
  std::atomic_ref<uint64_t>(*s).store(seq, std::memory_order_release);
  published_[line] = seq;
}

Status ShmChannel::WaitAll(Line line, uint64_t seq, Deadline deadline, const char* phase,
                           int64_t layer, const Transport& t, int64_t* words) const {
  const int n = world_size(), me = rank();
  const auto started = TransportClock::now();
  auto what = [phase, layer] { return StepName(phase, layer); };  // for errors only
  auto past_error = [&](const std::vector<int>& past) {
    return CancelledError(what() + " on rank " + std::to_string(me) + ": " +
                          (past.size() == 1 ? "rank " : "ranks ") +
                          transport_internal::FormatRanks(past) + " already past step " +
                          std::to_string(seq) + " (abandoned it)");
  };
  // Polls in rounds; the first peer still missing is where the next round starts.
  int next = 0;
  bool long_wait = false;
  for (uint64_t round = 0;; ++round) {
    bool missing = false, ahead = false;
    for (int i = 0; i < n; ++i) {
      const int p = (next + i) % n;
      if (p == me) continue;
      const uint64_t v =
          std::atomic_ref<uint64_t>(*SeqWord(p, line)).load(std::memory_order_acquire);
      if (v < seq) {
        if (!missing) next = p;
        missing = true;
      } else if (v > seq) {
        ahead = true;
      }
    }
    if (!missing && !ahead) break;
    if (ahead || (round & 63) == 63) {
      // Slow path: find who, and whether the wait is over (vectors only here).
      std::vector<int> late, past, dead, broken;
      for (int p = 0; p < n; ++p) {
        if (p == me) continue;
        const uint64_t v =
            std::atomic_ref<uint64_t>(*SeqWord(p, line)).load(std::memory_order_acquire);
        if (v > seq) past.push_back(p);
        if (v < seq) {
          late.push_back(p);
          if (std::atomic_ref<uint64_t>(*SeqWord(p, kBroken)).load(std::memory_order_acquire)) {
            broken.push_back(p);
          }
          if (t.KnownDead(p) || ((round & 1023) == 1023 && mem_->PeerDead(p))) dead.push_back(p);
        }
      }
      if (!past.empty()) return past_error(past);
      if (t.KnownDead(me)) {
        return transport_internal::PeerUnavailableError(what(), me, {me}, "this rank is dead");
      }
      if (!dead.empty()) return transport_internal::PeerUnavailableError(what(), me, dead, "dead");
      if (!broken.empty()) {
        return FailedPreconditionError(
            what() + " on rank " + std::to_string(me) + ": " +
            (broken.size() == 1 ? "rank " : "ranks ") + transport_internal::FormatRanks(broken) +
            " stopped after a failed step (fail-stop: recreate the dispatchers on every rank)");
      }
      const auto now = TransportClock::now();
      if (!late.empty() && now >= deadline.when()) {
        return transport_internal::PeerDeadlineError(what(), me, late, started);
      }
      long_wait = now - started > std::chrono::milliseconds(2);
    }
    if (round < 256) {
      CpuRelax();
    } else if (!long_wait) {
      sched_yield();
    } else {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
  }
  // The words, then the number again: a peer that has meanwhile gone on to its next step (after
  // abandoning this one) may have rewritten them.
  std::vector<int> moved_on;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    std::memcpy(words + kWords * p, SeqWord(p, line) + 1, 8 * kWords);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (std::atomic_ref<uint64_t>(*SeqWord(p, line)).load(std::memory_order_relaxed) != seq) {
      moved_on.push_back(p);
    }
  }
  if (!moved_on.empty()) return past_error(moved_on);
  return OkStatus();
}

void ShmChannel::MarkBroken() {
  std::atomic_ref<uint64_t>(*SeqWord(rank(), kBroken)).store(1, std::memory_order_release);
}

}  // namespace switchyard
