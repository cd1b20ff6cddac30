// ShmChannel: the shared-memory data path of one Dispatcher (transport/dispatch.h) over a
// PeerMemory. Every rank's segment holds, in this order:
//   - the reserved line (PeerMemory) and four control lines, each written by its owner only:
//       kEnter        a Dispatch has begun on the owner (its slots may be written);
//       kData         the owner has written its messages into every peer's slot;
//       kCombineReady the owner's combine rows are readable in its combine area;
//       kCombineDone  the owner has finished reading every peer's combine area;
//       kBroken       the owner's dispatcher stopped after a failed step (fail-stop);
//     a line is a 64-bit sequence number (release store by the owner, acquire load by the peers)
//     and kWords int64 words written before it;
//   - the combine table: world + 1 int64 (the owner's received-row prefix by source rank);
//   - world - 1 dispatch slots of slot_bytes() each, one per sender (written by that sender only);
//   - the combine area of combine_bytes() (written by the owner, read by every source).
// The protocol on top (transport/dispatch_shm.cc) writes into a peer's memory only after seeing
// that peer's line for the same sequence number, and reads only after the writer's line; so no
// memory is written while someone reads it, and a stale or early line is told by its number.
//
// Thread-safety: used by its Dispatcher's thread only; the peers run the same code on theirs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "transport/shm/peer_memory.h"
#include "transport/transport.h"

namespace switchyard {

class ShmChannel {
 public:
  enum Line : int {
    kEnter = 0,
    kData = 1,
    kCombineReady = 2,
    kCombineDone = 3,
    kBroken = 4,  // set once (MarkBroken) when this rank's dispatcher stopped after a failure
    kNumLines = 5
  };
  static constexpr int kWords = 7;

  // Collective over `t` (AllToAllCounts + PeerMemory::Create). Every rank passes the slot and
  // combine sizes it would like; all use the largest of each (rounded up to 4 KiB), capped so a
  // segment stays within max_segment_bytes (slots and combine area get half each). Returns
  // nullptr on every rank when shared memory is not usable by all (why in *why_not: other
  // hosts, /dev/shm full or too small for the sizes, a world of one rank). Errors: the transport's.
  static StatusOr<std::unique_ptr<ShmChannel>> Create(Transport& t, int64_t slot_bytes,
                                                      int64_t combine_bytes,
                                                      int64_t max_segment_bytes, Deadline deadline,
                                                      std::string* why_not);

  // "dispatch layer 3 (shared memory)": how errors of this path name a step.
  static std::string StepName(const char* phase, int64_t layer);

  // The slot and combine sizes Create gives for these wishes (rounded up to 4 KiB, capped), for
  // callers that decide whether a rebuild could grow the channel at all.
  static void CappedSizes(int world_size, int64_t max_segment_bytes, int64_t* slot,
                          int64_t* combine);

  int rank() const { return mem_->rank(); }
  int world_size() const { return mem_->world_size(); }
  int64_t slot_bytes() const { return slot_bytes_; }
  int64_t combine_bytes() const { return combine_bytes_; }

  // Where `sender` writes its message to `receiver` (sender != receiver): slot_bytes() bytes in
  // the receiver's segment, 64-byte aligned.
  std::byte* Slot(int receiver, int sender) const;
  // Rank r's combine area (combine_bytes(), 64-byte aligned) and combine table (world + 1 int64).
  std::byte* CombineArea(int r) const;
  int64_t* CombineTable(int r) const;

  // Writes this rank's `line`: words (at most kWords, the rest zero), then seq (release).
  void Publish(Line line, uint64_t seq, const int64_t* words, int num_words);
  // Waits until every peer's `line` shows `seq`, then copies their words into
  // words[kWords * p ...] (world * kWords entries; this rank's own entries are left alone).
  // The words are read after the wait and the number checked again (a peer that abandoned the
  // step may already be rewriting them for its next one).
  // Errors (phase and layer name the step: "dispatch layer 3 (shared memory)"): DeadlineExceeded
  // naming
  // the ranks still missing; Unavailable naming ranks whose process exited; FailedPrecondition
  // naming missing ranks that are broken (kBroken); Cancelled naming ranks already past `seq`
  // (they abandoned the step).
  // Unavailable also when `t` says this rank itself is dead.
  // Spins with a pause, then yields the CPU between polls (ranks may outnumber cores), and after
  // 2 ms sleeps 20 us between polls (a long wait, e.g. for a peer still computing, burns no core).
  // `t` is asked whether a late peer is KnownDead (the local backend's killed ranks).
  Status WaitAll(Line line, uint64_t seq, Deadline deadline, const char* phase, int64_t layer,
                 const Transport& t, int64_t* words) const;

  // The last sequence number this rank published on `line` (0 before the first).
  uint64_t published(Line line) const { return published_[line]; }

  // Marks this rank broken (kBroken, sticky): peers waiting for it fail at once.
  void MarkBroken();

  // After a failure that may leave a peer writing into this process's mappings: keep them.
  void Leak() { mem_->Leak(); }

 private:
  ShmChannel() = default;
  static int64_t SlotsOffset(int world_size);
  uint64_t* SeqWord(int r, Line line) const;

  std::unique_ptr<PeerMemory> mem_;
  int64_t slot_bytes_ = 0, combine_bytes_ = 0;
  int64_t slots_offset_ = 0, combine_offset_ = 0;
  uint64_t published_[kNumLines] = {};
};

}  // namespace switchyard
