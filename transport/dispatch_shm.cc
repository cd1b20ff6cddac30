// Dispatch and combine through shared memory (the "Shared memory" section of transport/dispatch.h;
// the channel's layout and lines: transport/shm/shm_channel.h). The messages are the wire format's,
// so the receive side (headers, Unpack, integrity checks, the combine's sum) is shared with the
// transport path.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "transport/dispatch.h"
#include "transport/dispatch_wire.h"

namespace switchyard {

using namespace dispatch_wire;  // NOLINT: this file implements the wire format

namespace {

// Enter-line words; kFits is 1 (fits), 0 (does not), or kAbandoned.
enum : int { kFits = 0, kMaxMessage = 1, kMaxRows = 2 };
constexpr int64_t kAbandoned = -1;
// Combine-ready-line words.
enum : int { kCombineFits = 0, kCombineNeed = 1, kCombineCodec = 2, kCombineRowBytes = 3 };

// Sizes asked for: 1.25x what is needed now, at least 64 KiB.
int64_t WithHeadroom(int64_t bytes) {
  return std::max<int64_t>(bytes + bytes / 4, PeerMemory::kMinBytes);
}

std::string Step(const char* phase, int64_t layer) {  // for errors only
  return ShmChannel::StepName(phase, layer);
}

// Peers that published an abandoned step (their own error): Cancelled naming them.
Status AbandonedError(const char* phase, int64_t layer, int me, const std::vector<int>& ranks) {
  return CancelledError(Step(phase, layer) + " on rank " + std::to_string(me) + ": " +
                        RankList(ranks) + " abandoned the step (an error on " +
                        (ranks.size() == 1 ? "that rank" : "those ranks") + ")");
}

// The combine area a call with at most `rows` rows per peer wants: every received row (this
// rank's own included) at the larger of the dispatch row and a BF16 row, plus a checksum; capped
// at `cap` (no overflow).
int64_t CombineWish(int n, int64_t rows, int64_t hidden, int64_t rb, int64_t cap) {
  const int64_t per_row = std::max<int64_t>(2 * hidden, rb) + 8;
  if (rows > 0 && rows > cap / per_row / n) return cap;
  return WithHeadroom(int64_t{n} * rows * per_row);
}

}  // namespace

Status Dispatcher::ShmBreak(Status st) {
  if (st.ok() || st.code() == StatusCode::kCancelled) return st;  // abandoned steps: recoverable
  if (shm_broken_.empty()) {
    shm_broken_ = "shared-memory dispatch stopped after a failed step (" + st.ToString() +
                  "); fail-stop: recreate the Dispatcher on every rank";
  }
  if (shm_ != nullptr) shm_->MarkBroken();
  return st;
}

Status Dispatcher::SetUpSharedMemory(Transport& t, int64_t layer, const DispatchLayout& layout,
                                     int64_t hidden, PayloadDtype dtype, Deadline deadline) {
  const int n = t.world_size(), me = t.rank();
  if (options_.shared_memory == SharedMemoryMode::kOff || n < 2) return OkStatus();
  auto where = [layer, me] {
    return "dispatch layer " + std::to_string(layer) + " on rank " + std::to_string(me);
  };
  if (shm_world_ != n || shm_rank_ != me) {  // another world (or first use): start over
    shm_.reset();
    shm_refused_ = false;
    shm_refused_why_.clear();
    shm_broken_.clear();
    shm_want_slot_ = shm_want_combine_ = 0;
    shm_world_ = n;
    shm_rank_ = me;
  }
  // Refused (every rank alike): the transport, or in kRequire an error on every call.
  auto refused = [&] {
    if (options_.shared_memory != SharedMemoryMode::kRequire) return OkStatus();
    return FailedPreconditionError(
        where() + ": shared memory required (SWITCHYARD_DISPATCH_SHM=on) but not usable: " +
        shm_refused_why_);
  };
  if (!shm_broken_.empty()) return FailedPreconditionError(where() + ": " + shm_broken_);
  if (shm_refused_) return refused();
  if (shm_ != nullptr && shm_want_slot_ == 0 && shm_want_combine_ == 0) return OkStatus();
  const int64_t cap = options_.max_shared_memory_bytes;
  int64_t slot = shm_want_slot_, combine = shm_want_combine_;
  const int64_t old_slot = shm_ != nullptr ? shm_->slot_bytes() : 0;
  const int64_t old_combine = shm_ != nullptr ? shm_->combine_bytes() : 0;
  if (shm_ == nullptr) {
    // First call: sized for this call's messages (every rank asks; the largest wish wins).
    const int64_t rb = PayloadRowBytes(dtype, hidden);
    const int64_t my_max = PlanMessages(me, layout, rb);
    int64_t max_rows = 0;
    for (int p = 0; p < n; ++p) {
      if (p != me) max_rows = std::max(max_rows, layout.rank_prefix[p + 1] - layout.rank_prefix[p]);
    }
    slot = WithHeadroom(kHeaderBytes + my_max);
    combine = CombineWish(n, max_rows, hidden, rb, cap);
  }
  slot = std::max(slot, old_slot);
  combine = std::max(combine, old_combine);
  shm_.reset();  // every rank is in this call: no peer reads or writes the old segments now
  shm_dispatch_seq_ = shm_combine_count_ = 0;
  shm_want_slot_ = shm_want_combine_ = 0;
  std::string why;
  auto made = ShmChannel::Create(t, slot, combine, cap, deadline, &why);
  if (made.ok() && *made == nullptr && old_slot > 0) {
    // No room for the larger channel (every rank refused alike): keep the old size.
    made = ShmChannel::Create(t, old_slot, old_combine, cap, deadline, &why);
  }
  if (!made.ok()) {
    return ShmBreak(made.status().WithContext("dispatch layer " + std::to_string(layer) +
                                              ": setting up shared memory"));
  }
  shm_ = std::move(*made);
  if (shm_ == nullptr) {
    shm_refused_ = true;
    shm_refused_why_ = why;
    return refused();
  }
  return OkStatus();
}

Status Dispatcher::ShmExchange(Transport& t, int64_t layer, const DispatchLayout& layout,
                               const float* x, const uint16_t* xb, int64_t hidden,
                               PayloadDtype dtype, Deadline deadline, bool* moved) {
  *moved = false;
  const int n = t.world_size(), me = t.rank();
  shm_combine_count_ = 0;
  if (t.KnownDead(me)) {
    ++shm_dispatch_seq_;
    return transport_internal::PeerUnavailableError(Step("dispatch", layer), me, {me},
                                                    "this rank is dead");
  }
  const int64_t rb = PayloadRowBytes(dtype, hidden);
  const int64_t my_max = PlanMessages(me, layout, rb);
  int64_t max_rows = 0;
  bool fits = true;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    max_rows = std::max(max_rows, layout.rank_prefix[p + 1] - layout.rank_prefix[p]);
    fits = fits && send_msg_[p] <= shm_->slot_bytes();
  }
  // (1) Entered: this rank's slots are free (it is done with the last call's views), and whether
  // its messages fit. Every rank sees every answer, so all take the same path.
  const uint64_t seq = ++shm_dispatch_seq_;
  const int64_t enter[3] = {fits ? 1 : 0, kHeaderBytes + my_max, max_rows};
  shm_->Publish(ShmChannel::kEnter, seq, enter, 3);
  shm_words_.assign(static_cast<size_t>(n) * ShmChannel::kWords, 0);
  Status st =
      shm_->WaitAll(ShmChannel::kEnter, seq, deadline, "dispatch", layer, t, shm_words_.data());
  // (Every rank takes one step per call, failed or not, so a rank that failed a step lines up
  // again with the others at its next call.)
  if (!st.ok()) return st;
  // Peers' words are clamped before any arithmetic (a corrupt word must not overflow).
  const int64_t cap = options_.max_shared_memory_bytes;
  int64_t largest = kHeaderBytes + my_max, most_rows = max_rows;
  std::vector<int> abandoned;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    const int64_t* w = &shm_words_[ShmChannel::kWords * p];
    if (w[kFits] == kAbandoned) abandoned.push_back(p);
    fits = fits && w[kFits] == 1;
    largest = std::max(largest, std::clamp<int64_t>(w[kMaxMessage], 0, cap));
    most_rows = std::max(most_rows, std::clamp<int64_t>(w[kMaxRows], 0, cap));
  }
  largest = std::min(largest, cap);
  if (!abandoned.empty()) return AbandonedError("dispatch", layer, me, abandoned);
  if (!fits) {
    // The transport moves this call; the next Dispatch rebuilds the channel to fit it, when the
    // cap leaves room to grow (every rank computes the same).
    int64_t slot = WithHeadroom(largest), combine = CombineWish(n, most_rows, hidden, rb, cap);
    ShmChannel::CappedSizes(n, cap, &slot, &combine);
    if (slot > shm_->slot_bytes() || combine > shm_->combine_bytes()) {
      shm_want_slot_ = std::max(slot, shm_->slot_bytes());
      shm_want_combine_ = std::max(combine, shm_->combine_bytes());
    }
    return OkStatus();
  }
  // (2) Each message straight into its slot in the receiver's segment (peers in a rotating order
  // so that not every rank writes to the same one first), then announce.
  for (int i = 1; i < n; ++i) {
    const int p = (me + i) % n;
    PackMessage(p, layer, layout, x, xb, hidden, dtype, my_max, shm_->Slot(p, me),
                /*stream=*/send_msg_[p] >= kStreamBytes);
  }
  dispatch_codec::StreamFence();  // non-temporal stores land before the announcement
  shm_->Publish(ShmChannel::kData, seq, nullptr, 0);
  RETURN_IF_ERROR(
      shm_->WaitAll(ShmChannel::kData, seq, deadline, "dispatch", layer, t, shm_words_.data()));
  // (3) Headers, read in place from this rank's slots.
  peer_header_.assign(kHeaderWords * n, 0);
  recv_msg_.assign(n, nullptr);
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    const std::byte* msg = shm_->Slot(me, p);
    int64_t* h = &peer_header_[kHeaderWords * p];
    std::memcpy(h, msg, kHeaderBytes);
    if (SaneHeader(h) && kHeaderBytes + h[kBody] > shm_->slot_bytes()) h[kRows] = -1;
    recv_msg_[p] = msg;
  }
  *moved = true;
  return OkStatus();
}

void Dispatcher::ShmAbandonDispatch() {
  const int64_t enter[3] = {kAbandoned, 0, 0};
  shm_->Publish(ShmChannel::kEnter, ++shm_dispatch_seq_, enter, 3);
  shm_combine_count_ = 0;
}

Status Dispatcher::ShmCombine(const Transport& t, const float* row_out, const uint16_t* rb16,
                              dispatch_codec::Codec codec, int64_t per_row, Deadline deadline,
                              bool* moved) {
  *moved = false;
  const int n = world_, me = shm_->rank();
  if (t.KnownDead(me)) {
    return transport_internal::PeerUnavailableError(Step("combine", layer_), me, {me},
                                                    "this rank is dead");
  }
  const int64_t h = hidden_, rb = dispatch_codec::RowBytes(codec, h);
  const bool integrity = options_.integrity;
  const int64_t rows = recv_rank_prefix_[n];
  const int64_t checks_at = Pad8(rows * rb);
  const int64_t need = integrity ? checks_at + 8 * rows : rows * rb;
  const bool fits = need <= shm_->combine_bytes();
  std::byte* area = shm_->CombineArea(me);
  // Combines of one Dispatch are numbered after it, so a combine skipped on a failed step does
  // not shift the next step's numbers.
  const uint64_t seq = (shm_dispatch_seq_ << 16) + ++shm_combine_count_;
  if (shm_combine_count_ > 1) {
    // Every peer has read this area's previous rows (normally long ago: each entered this step's
    // Dispatch after its last Combine; only a second Combine of one Dispatch can wait here).
    RETURN_IF_ERROR(shm_->WaitAll(ShmChannel::kCombineDone, seq - 1, deadline, "combine", layer_, t,
                                  shm_words_.data()));
  }
  if (fits) {
    if (rb16 != nullptr) {
      if (reinterpret_cast<const std::byte*>(rb16) != area && rows > 0) {
        std::memmove(area, rb16, rows * rb);  // rb16 may point into the area
      }
    } else {
      for (int64_t i = 0; i < rows; ++i) {
        dispatch_codec::EncodeRow(row_out + i * h, h, codec, area + i * rb);
      }
    }
    if (integrity) {
      for (int64_t i = 0; i < rows; ++i) {
        const uint64_t c = CombineRowChecksum(layer_, recv_row_token_[i], area + i * rb, rb);
        std::memcpy(area + checks_at + 8 * i, &c, 8);
      }
    }
    std::copy(recv_rank_prefix_.begin(), recv_rank_prefix_.end(), shm_->CombineTable(me));
  }
  const int64_t ready[4] = {fits ? 1 : 0, need, static_cast<int64_t>(codec), per_row};
  shm_->Publish(ShmChannel::kCombineReady, seq, ready, 4);
  shm_words_.assign(static_cast<size_t>(n) * ShmChannel::kWords, 0);
  const Status waited = shm_->WaitAll(ShmChannel::kCombineReady, seq, deadline, "combine", layer_,
                                      t, shm_words_.data());
  if (!waited.ok()) {
    ShmCombineDone();  // this rank reads nothing this time
    return waited;
  }
  bool all_fit = fits;
  const int64_t cap = options_.max_shared_memory_bytes;
  int64_t largest = std::min(need, cap);
  std::vector<int> disagree, abandoned;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    const int64_t* w = &shm_words_[ShmChannel::kWords * p];
    if (w[kCombineFits] == kAbandoned) {
      abandoned.push_back(p);
      continue;
    }
    all_fit = all_fit && w[kCombineFits] == 1;
    largest = std::max(largest, std::clamp<int64_t>(w[kCombineNeed], 0, cap));
    if (w[kCombineCodec] != static_cast<int64_t>(codec) || w[kCombineRowBytes] != per_row) {
      disagree.push_back(p);
    }
  }
  if (!abandoned.empty()) {
    ShmCombineDone();
    return AbandonedError("combine", layer_, me, abandoned);
  }
  if (!disagree.empty()) {
    ShmCombineDone();
    return InvalidArgumentError(Step("combine", layer_) + " on rank " + std::to_string(me) + ": " +
                                RankList(disagree) + " combined with another dtype");
  }
  if (!all_fit) {
    ShmCombineDone();  // nobody reads any area this time
    int64_t slot = shm_->slot_bytes(), combine = WithHeadroom(largest);
    ShmChannel::CappedSizes(n, cap, &slot, &combine);
    if (combine > shm_->combine_bytes()) {  // the next Dispatch rebuilds, when it can grow
      shm_want_slot_ = std::max(shm_want_slot_, shm_->slot_bytes());
      shm_want_combine_ = combine;
    }
    return OkStatus();
  }
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    const int64_t* table = shm_->CombineTable(p);
    const int64_t expect = sent_rank_prefix_[p + 1] - sent_rank_prefix_[p];
    // The table is the peer's (untrusted like a wire message), read once: its rows and checksums
    // must lie inside its combine area.
    const int64_t first = table[me], last = table[me + 1], peer_rows = table[n];
    const bool in_area = first >= 0 && first <= last && last <= peer_rows &&
                         peer_rows <= shm_->combine_bytes() / rb &&
                         (integrity ? Pad8(peer_rows * rb) + 8 * peer_rows : peer_rows * rb) <=
                             shm_->combine_bytes();
    if (!in_area || last - first != expect) {
      ShmCombineDone();
      return DataLossError(Step("combine", layer_) + " on rank " + std::to_string(me) + ": rank " +
                           std::to_string(p) + " returns rows [" + std::to_string(first) + ", " +
                           std::to_string(last) + ") of " + std::to_string(peer_rows) +
                           " (outside its area, or not the " + std::to_string(expect) +
                           " rows sent to it)");
    }
    const std::byte* peer_area = shm_->CombineArea(p);
    peer_rows_[p] = peer_area + first * rb;
    peer_checks_[p] = peer_area + Pad8(peer_rows * rb) + 8 * first;
  }
  *moved = true;
  return OkStatus();
}

void Dispatcher::ShmAbandonCombine() {
  const int64_t ready[4] = {kAbandoned, 0, 0, 0};
  const uint64_t seq = (shm_dispatch_seq_ << 16) + ++shm_combine_count_;
  shm_->Publish(ShmChannel::kCombineReady, seq, ready, 4);
  shm_->Publish(ShmChannel::kCombineDone, seq, nullptr, 0);
}

void Dispatcher::ShmCombineDone() {
  shm_->Publish(ShmChannel::kCombineDone, (shm_dispatch_seq_ << 16) + shm_combine_count_, nullptr,
                0);
}

}  // namespace switchyard
