// MoE dispatch/combine, the MOVE phase: on top of a DispatchLayout (transport/dispatch_layout.h),
// moves token rows to the ranks that own their experts and the experts' combined rows back.
//
// One step of an MoE layer, on every rank of the world (collective, same order everywhere):
//
//   DispatchLayout layout = ComputeDispatchLayout(...);            // this rank's tokens
//   dispatcher.Dispatch(t, layer, layout, hidden, hidden_size, dtype, deadline, &received);
//   for each local expert e:                                       // the caller (expert runner)
//     run e on received.row(received.entry_row[j]) for j in received.ExpertEntries(e),
//     writing its output for entry j to entry_out[j * hidden_size]
//   SumEntriesPerRow(received, entry_out, row_out);                // weights applied here
//   dispatcher.Combine(t, row_out, dtype, deadline, out);          // out[num_tokens, hidden]
//
// The split: the dispatcher moves bytes and keeps the bookkeeping of the last Dispatch; the
// caller runs the experts. The receiver applies the routing weights (SumEntriesPerRow, or its own
// code), so exactly one row per (token, destination rank) travels back, as in DeepEP.
//
// Wire format (internal; every rank runs the same code). A rank never sends to itself: the rows it
// routes to itself go from the hidden states straight to its ReceivedTokens (and back in Combine)
// through the same rounding as transit, so results do not depend on placement. To every other
// rank it sends one message: a 64-byte header {rows, entries, hidden, dtype | integrity << 8,
// body bytes, the sender's largest body to any peer, layer, header checksum}, then the body: the
// rows in the transit format (dispatch_codec.h), per row the sender's token index and entry count
// (int32 each), the entries' local expert (int32) and weight (float), and in integrity mode one
// 64-bit checksum per row. The header travels in the same exchange as the payload: the first
// exchange (Transport::AllToAllVBounded) moves every message up to a bound E (the same on every
// rank; receive slots of E bytes, each message sent at its actual size, no padding), and only when
// some message is longer (every rank learns the largest body from the headers, so all agree) a
// second AllToAllV moves the remainders. E follows the largest message of the last call (1.25x
// headroom, 1 KiB granularity, at most 64 MiB; 4 KiB at first), so steady traffic, decode or
// prefill, takes one exchange; a call whose messages outgrow the last call's by more than the
// headroom takes two.
// Combine is one AllToAllV (rows, plus a checksum per row in integrity mode) whose sizes both
// sides know from the dispatch.
//
// Shared memory (DispatcherOptions::shared_memory, SWITCHYARD_DISPATCH_SHM; default auto): when
// every rank runs on one host, the first Dispatch sets up a ShmChannel (transport/shm/: one
// /dev/shm segment per rank, mapped by all, three small exchanges over the transport once) and
// from then on no row goes through the transport. Dispatch: every rank announces that it has
// entered the call (so its slots are free) and whether its messages fit the slots; then each
// sender writes its message (the same bytes as on the wire above) straight into its slot in the
// receiver's segment, the only copy, and announces it; receivers read their slots in place.
// Combine: each rank's experts' rows sit in its combine area (Bf16CombineRows() points there, so
// the rows are written once, by the experts) and each source sums its tokens reading the peers'
// rows in place: no copy at all. Every wait spins (then yields) on a sequence number until the
// deadline: a missing peer is DeadlineExceeded naming it, a peer whose process exited is
// Unavailable naming it (same pid namespace), a peer that abandoned the step is Cancelled, a
// broken peer (see "After an error") FailedPrecondition. Results are bitwise the same as over the
// transport. A call whose messages (or combine rows) do not fit goes through the transport (every
// rank learns it from the announcements, so all agree), and the next Dispatch rebuilds the
// channel 1.25x larger, up to max_shared_memory_bytes (when that cap leaves no room to grow, such
// calls keep going through the transport; a rebuild /dev/shm has no room for keeps the old
// size). The setup runs under the first call's deadline (three small exchanges, and the segment
// allocation). Ranks on several hosts, or a /dev/shm without room, use the transport
// (kAuto) or fail (kRequire) on every rank. last_traffic() tells which path each phase took.
//
// Integrity mode (DispatcherOptions::integrity, SWITCHYARD_INTEGRITY=1): the sender checksums
// every row it sends (dispatch: the transit bytes, the token index, the entries and the layer;
// combine: the transit bytes, the layer and the token), the receiver recomputes and fails with
// DataLoss naming the first mismatch (direction, layer, source rank, destination rank, the
// token's index on the rank that dispatched it), in (source rank, row) order. Headers are
// checksummed too. Costs one 64-bit hash pass over the bytes on each side and 8 bytes per row.
//
// Determinism: for a given layout and inputs, every result is bitwise reproducible and independent
// of the backend and of message timing. Combine writes
//   out[t] = ((0 + R_{r0}) + R_{r1}) + ...  over the destination ranks r0 < r1 < ... of token t,
// where R_r is the row rank r returned (rounded to the combine dtype and widened back), and
// SumEntriesPerRow sums a row's entries in the order the source listed them (its top-k order).
// Tokens with no rows (num_topk == 0) get zeros.
//
// Errors: every call takes a Deadline and returns Status. Transport errors (DeadlineExceeded /
// Unavailable naming the peers, InvalidArgument naming a peer whose counts disagree) pass through
// with the phase and layer prepended ("dispatch layer 3: ...", "dispatch layer 3 (remainder):
// ...", "combine layer 3: ...").
// Arguments wrong on this rank are reported as InvalidArgument before anything is sent (the peers
// then fail with DeadlineExceeded naming this rank). A peer that disagrees on hidden size or
// transit dtype or layer, or sends malformed entries, is InvalidArgument / DataLoss naming that
// peer; this rank has then taken part in every exchange, so the world stays in step. After an
// error, treat the step as failed on every rank (see transport.h, "After an error"); a rank whose
// call failed also forgets the bound E, so if a late peer's call succeeded, the next call may
// fail with a count or capacity mismatch too before both line up again. On the shared-memory
// path an abandoned step (a rank's own bad arguments: it tells the others, who fail at once with
// Cancelled naming it) is recoverable: every rank takes one step per call and the next call lines
// up. Any other failure there (a wait past its deadline, a dead or broken peer, a transport error
// while the channel exists) is fail-stop, because the ranks may no longer agree on which
// transport calls come next: the dispatcher marks itself broken in its segment (peers waiting
// for it fail at once with FailedPrecondition naming it) and refuses every later call with
// FailedPrecondition ("recreate the Dispatcher on every rank"); restart the world (dispatchers,
// and the transport, which such a failure can leave one collective out of step).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "transport/dispatch_codec.h"
#include "transport/dispatch_layout.h"
#include "transport/shm/shm_channel.h"
#include "transport/transport.h"

namespace switchyard {

// Element type of rows in transit. Rows are FP32 on both ends; BF16 rounds each element once
// (round to nearest even) when it is sent and widens it exactly when it is received. FP8 (dispatch
// only) is E4M3 with one FP32 scale per 128-element block of each row (scale = block amax / 448,
// as DeepEP does); per element |error| <= 2^-4 |x| + 2^-18.8 amax_block, so <= (2^-4 + 2^-18)
// amax_block (derivation in transport/dispatch_codec.h). Combine takes F32 or BF16.
enum class PayloadDtype : int32_t { kF32 = 0, kBF16 = 1, kFP8 = 2 };

// "f32", "bf16", "fp8".
const char* PayloadDtypeName(PayloadDtype dtype);
// Bytes of one row of `hidden` elements in transit (4h, 2h, or FP8's h rounded up to 4 plus 4
// per 128-element block).
int64_t PayloadRowBytes(PayloadDtype dtype, int64_t hidden);

// Byte offset of row `row` of a dispatch message from its start (after the header), as the
// transport sees it: for fault-injection tests that corrupt a chosen row in flight. In a combine
// message, row i starts at i * PayloadRowBytes(dtype, hidden).
int64_t DispatchWireRowOffset(PayloadDtype dtype, int64_t hidden, int64_t row);

// Bytes of the dispatch message this rank (layout's rank `me`) sends to rank `peer` (header and
// body, as sent; 0 for peer == me: nothing is sent to itself), and of the combine
// message rank `peer` sends back for those rows. For benchmarks that replay the same bytes.
int64_t DispatchMessageBytes(const DispatchLayout& layout, int me, int peer, int64_t hidden,
                             PayloadDtype dtype, bool integrity);
int64_t CombineMessageBytes(int64_t rows, int64_t hidden, PayloadDtype dtype, bool integrity);

// Whether the dispatcher moves rows through shared memory when every rank runs on one host (see
// "Shared memory" above).
enum class SharedMemoryMode : int32_t {
  kAuto = 0,     // when all ranks can map each other's segments; else the transport
  kOff = 1,      // always the transport
  kRequire = 2,  // shared memory or FailedPrecondition (for tests and for operators who must know)
};

struct DispatcherOptions {
  // Checksum every row in transit and verify it on receipt (see "Integrity mode" above).
  bool integrity = false;
  // Must be the same on every rank.
  SharedMemoryMode shared_memory = SharedMemoryMode::kAuto;
  // Largest shared-memory segment per rank (dispatch slots and combine area, half each); calls
  // whose messages do not fit go through the transport. The same on every rank.
  int64_t max_shared_memory_bytes = int64_t{1} << 30;
  // Cap on the bound E of the first dispatch exchange, bytes per peer (see the wire format);
  // clamped to [1 KiB, 64 MiB] and to 256 MiB / (world - 1). Must be the same on every rank. Lower
  // it to trade a second exchange for smaller receive slots (64 KiB: the behaviour before
  // AllToAllVBounded).
  int64_t max_first_exchange_bytes = int64_t{64} << 20;
  // Defaults, with SWITCHYARD_INTEGRITY=1|0 (also true|false, on|off) and
  // SWITCHYARD_DISPATCH_SHM=auto|off|on (on = kRequire) applied when set.
  // Errors: InvalidArgument naming the variable and its value.
  static StatusOr<DispatcherOptions> FromEnv();
};

// What the last Dispatch / Combine handed to the transport for other ranks (bytes sent to itself
// are not counted: none are sent). For benchmarks and tests.
struct DispatchTraffic {
  int64_t dispatch_payload_bytes = 0;    // headers + bodies
  int64_t dispatch_transport_bytes = 0;  // what the exchanges were given (== payload: no padding)
  int dispatch_exchanges = 0;            // 1 (AllToAllVBounded) or 2 (+ an AllToAllV)
  int64_t combine_transport_bytes = 0;
  bool dispatch_shared_memory = false;  // the rows went through shared memory, not the transport
  bool combine_shared_memory = false;
};

// What a rank received in one Dispatch: the receiver's view.
struct ReceivedTokens {
  int32_t world_size = 0;
  int64_t hidden = 0;
  int32_t num_local_experts = 0;
  // Received rows, grouped by source rank ascending (in the order each source sent them: by token
  // index). FP32 (BF16/FP8 transit already widened). [num_rows() * hidden].
  std::vector<float> rows;
  std::vector<int64_t> row_source_token;  // [num_rows()] the token's index on its source rank
  std::vector<int64_t> source_prefix;     // [world_size + 1]: rows of source p are
                                          // [source_prefix[p], source_prefix[p + 1])
  // Entries (one per (token, k) that feeds a local expert here), grouped by row, each row's in
  // the source's top-k order: entries of row i are [entry_prefix[i], entry_prefix[i + 1]).
  std::vector<int64_t> entry_prefix;        // [num_rows() + 1]
  std::vector<int64_t> entry_row;           // [num_entries()] the row each entry belongs to
  std::vector<int32_t> entry_local_expert;  // [num_entries()] in [0, num_local_experts)
  std::vector<float> entry_weight;          // [num_entries()] routing weight
  // The same entries grouped by local expert: entries of expert e are
  // expert_entries[expert_prefix[e] .. expert_prefix[e + 1]), ascending (so by source rank, then
  // row). The receiver's tokens per expert is expert_prefix[e + 1] - expert_prefix[e].
  std::vector<int64_t> expert_prefix;   // [num_local_experts + 1]
  std::vector<int64_t> expert_entries;  // [num_entries()] entry indices

  // DispatchBf16 only (then `rows` stays empty): row i's BF16 values read in place, without a
  // copy: rows from other ranks point into the dispatcher's receive buffer, rows this rank sent
  // itself into the caller's hidden states. Valid until the next Dispatch/DispatchBf16/Combine/
  // CombineBf16 call on the same dispatcher (or until the caller's hidden states change or go
  // away). Empty after an FP32-input Dispatch.
  std::vector<const uint16_t*> bf16_rows;  // [num_rows()]

  int64_t num_rows() const { return static_cast<int64_t>(entry_prefix.size()) - 1; }
  int64_t num_entries() const { return static_cast<int64_t>(entry_row.size()); }
  // Row i widened to FP32 (after Dispatch) / in BF16 (after DispatchBf16).
  const float* row(int64_t i) const { return rows.data() + i * hidden; }
  const uint16_t* row_bf16(int64_t i) const { return bf16_rows[i]; }
  // Entry indices feeding local expert e.
  std::span<const int64_t> ExpertEntries(int32_t e) const {
    return std::span<const int64_t>(expert_entries)
        .subspan(expert_prefix[e], expert_prefix[e + 1] - expert_prefix[e]);
  }
};

// row_out[i] = Σ_j entry_weight[j] · entry_out[j] over the entries j of received row i, in entry
// order, starting from +0.0f (each term added as `acc += w * v`, no fused multiply-add).
// entry_out: [received.num_entries(), hidden] (expert output per entry); row_out:
// [received.num_rows(), hidden]. Rows without entries (none are sent) would get zeros.
void SumEntriesPerRow(const ReceivedTokens& received, const float* entry_out, float* row_out);

// Moves rows for dispatch and combine; owns reusable buffers and the bookkeeping of the last
// Dispatch. One object per rank and MoE layer pipeline, used by one thread at a time (like its
// Transport). Buffers only grow: repeated calls with similar sizes do not allocate.
class Dispatcher {
 public:
  Dispatcher() = default;
  explicit Dispatcher(DispatcherOptions options) : options_(options) {}
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;
  Dispatcher(Dispatcher&&) = default;
  Dispatcher& operator=(Dispatcher&&) = default;

  // Collective. Sends row `row` of `layout` (token layout.row_token_idx[row] of `hidden_states`,
  // converted to `dtype`) and its (local expert, weight) entries to its destination rank, and
  // fills `received` (its vectors are resized, reusing their capacity) with what every rank sent
  // here. One exchange, or two for messages longer than the bound E (see the wire format).
  // layer: >= 0, the MoE layer (the same on every rank; named in integrity reports and checked
  //   against the peers').
  // layout: computed on this rank (ComputeDispatchLayout with my rank) for a placement of
  //   t.world_size() ranks; it need not outlive the call (the dispatcher copies what Combine
  //   needs).
  // hidden_states: [layout.num_tokens, hidden] FP32 (may be null when num_tokens == 0).
  // hidden: > 0, the same on every rank; dtype: the same on every rank.
  // Ranks with zero tokens still call (they send empty messages and may receive rows).
  // Errors: InvalidArgument (layout of another world size, hidden <= 0, negative layer, null hidden
  // states, 2^31 tokens or more; a peer with another hidden size, dtype, layer or integrity
  // setting, naming it), DataLoss (malformed header or entries from a peer, or in integrity mode a
  // checksum mismatch, naming it), and the transport's errors. On error `received` is unspecified
  // and Combine refuses to run until the next successful Dispatch.
  Status Dispatch(Transport& t, int64_t layer, const DispatchLayout& layout,
                  const float* hidden_states, int64_t hidden, PayloadDtype dtype, Deadline deadline,
                  ReceivedTokens* received);

  // Collective; the inverse of the last successful Dispatch on this object. Sends received row i's
  // combined output row_out[i] (converted to `dtype`, which may differ from the dispatch dtype but
  // must be the same on every rank) back to the rank it came from, and writes
  //   out[t] = Σ over this rank's rows of token t, by destination rank ascending,
  // for every token of the dispatched layout (tokens without rows: zeros). One AllToAllV.
  // row_out: [received.num_rows(), hidden] (may be null when there are no received rows);
  // out: [layout.num_tokens, hidden] (may be null when num_tokens == 0); it may alias
  // the dispatched hidden states, not row_out. Each call is one collective; calling it twice for
  // one Dispatch repeats the exchange (every rank must do the same).
  // Errors: FailedPrecondition (no successful Dispatch yet), InvalidArgument (null buffers, FP8),
  // DataLoss (integrity mode: a checksum mismatch, naming the layer, ranks and token), and the
  // transport's errors (a peer that combined with another dtype shows as a count mismatch naming
  // it). On error `out` is unspecified.
  Status Combine(Transport& t, const float* row_out, PayloadDtype dtype, Deadline deadline,
                 float* out);

  // The BF16 path (as DeepEP takes BF16 tensors): the same collective and wire format as
  // Dispatch with dtype kBF16 (ranks may mix the two calls), but the caller hands BF16 hidden
  // states [layout.num_tokens, hidden] (bit patterns, common/dtype.h) which are sent as they are,
  // and `received` gets no FP32 copy: `received->bf16_rows` point at the rows in place (see
  // ReceivedTokens) and `received->rows` is emptied. Saves the conversions and the unpack copy.
  // Same arguments, blocking, errors and thread-safety as Dispatch; the hidden states must stay
  // unchanged while the views are used.
  Status DispatchBf16(Transport& t, int64_t layer, const DispatchLayout& layout,
                      const uint16_t* hidden_states, int64_t hidden, Deadline deadline,
                      ReceivedTokens* received);

  // The BF16 path of Combine (combine dtype kBF16, the same wire as Combine(..., kBF16, ...)):
  // row_out [received.num_rows(), hidden] holds the experts' combined rows already in BF16 and is
  // sent as it is (one copy per peer instead of a conversion per row); out is FP32 as in Combine,
  // summed in the same order, so the result equals Combine(widened row_out, kBF16) bitwise.
  // row_out must not point into the received views (the exchange reuses that buffer). Works after
  // Dispatch or DispatchBf16. Same blocking, errors and thread-safety as Combine.
  Status CombineBf16(Transport& t, const uint16_t* row_out, Deadline deadline, float* out);

  // CombineBf16 with a BF16 output (as DeepEP returns): out [layout.num_tokens, hidden] gets each
  // token's FP32 sum (the same sum, in the same order, as the FP32 output) rounded to BF16 (round
  // to nearest even), written once per element. `out` may alias the dispatched BF16 hidden states
  // (not row_out). Same arguments otherwise, blocking, errors and thread-safety.
  Status CombineBf16(Transport& t, const uint16_t* row_out, Deadline deadline, uint16_t* out);

  // A BF16 buffer of [received.num_rows(), hidden] values owned by the dispatcher, for the
  // experts' combined rows of the last successful Dispatch/DispatchBf16 (row i = received row i):
  // write them here and pass this pointer as CombineBf16's row_out, and with integrity off each
  // peer's rows are sent straight from it (rows are contiguous per source: no pack copy; after a
  // failed exchange the dispatcher keeps the memory alive for a backend that may still read it).
  // Any other row_out is copied into the dispatcher's send buffer first. Contents unspecified
  // until written; the pointer stays valid until the next Dispatch/DispatchBf16 or a failed
  // Combine/CombineBf16 (then call this again for a fresh buffer). Null before the first
  // successful Dispatch or after a failed one. Not thread-safe (like the object); never fails.
  uint16_t* Bf16CombineRows();

  const DispatcherOptions& options() const { return options_; }
  // Bytes handed to the transport by the last Dispatch and Combine (zeros before the first).
  const DispatchTraffic& last_traffic() const { return traffic_; }

 private:
  // x: FP32 hidden states, or (bf16_in) xb: BF16 ones sent as they are (dtype kBF16).
  Status DispatchImpl(Transport& t, int64_t layer, const DispatchLayout& layout, const float* x,
                      const uint16_t* xb, bool bf16_in, int64_t hidden, PayloadDtype dtype,
                      Deadline deadline, ReceivedTokens* received);
  Status Exchange(Transport& t, int64_t layer, const DispatchLayout& layout, const float* x,
                  const uint16_t* xb, int64_t hidden, PayloadDtype dtype, Deadline deadline);
  // in_place: BF16 in (xb; null when there are no tokens), views instead of FP32 rows.
  Status Unpack(int me, const DispatchLayout& layout, const float* x, const uint16_t* xb,
                bool in_place, int64_t hidden, PayloadDtype dtype, ReceivedTokens* received);
  // row_out: FP32, or (rb non-null) BF16 rows sent as they are (dtype kBF16). Output: FP32 `out`,
  // or (out null) BF16 `out_bf16`.
  Status CombineImpl(Transport& t, const float* row_out, const uint16_t* rb, PayloadDtype dtype,
                     Deadline deadline, float* out, uint16_t* out_bf16);
  // Combine's sum: out[t] (or out_bf16[t]) from the received rows (recv_buf_) and self rows
  // (BF16 `self_b16`, or FP32 `self_f32` rounded through `codec`), by rank ascending.
  // self_b16 / self_f32: row i = this rank's i-th own received row.
  void SumTokens(int me, dispatch_codec::Codec codec, int64_t rb, const uint16_t* self_b16,
                 const float* self_f32, float* out, uint16_t* out_bf16);
  Status VerifyDispatchRows(int me, int64_t layer);
  // Combine, after the rows arrived (peer_rows_ / peer_checks_ set): integrity check, then the
  // sum of this rank's own rows and the peers' into out / out_bf16.
  Status VerifyCombineRows(int me, int64_t layer, int64_t rb) const;
  void SumOwnAndPeers(int me, dispatch_codec::Codec codec, int64_t rb, const float* row_out,
                      const uint16_t* rb16, float* out, uint16_t* out_bf16);
  // Message sizes (send_msg_, send slots) of this rank's dispatch messages; returns the largest.
  int64_t PlanMessages(int me, const DispatchLayout& layout, int64_t row_bytes);
  // Writes this rank's message to `peer` (header + body, send_msg_[peer] bytes) at `msg`;
  // stream: BF16 rows copied with non-temporal stores (the caller fences before publishing).
  void PackMessage(int peer, int64_t layer, const DispatchLayout& layout, const float* x,
                   const uint16_t* xb, int64_t hidden, PayloadDtype dtype, int64_t my_max,
                   std::byte* msg, bool stream) const;
  // Checks a received header (copied to h); false when malformed (then h[kRows] = -1).
  static bool SaneHeader(int64_t* h);

  // Shared memory (dispatch_shm.cc). SetUpSharedMemory: at the start of a Dispatch, creates or
  // rebuilds the channel when due (collective; all ranks agree when it is due).
  Status SetUpSharedMemory(Transport& t, int64_t layer, const DispatchLayout& layout,
                           int64_t hidden, PayloadDtype dtype, Deadline deadline);
  // Dispatch through the channel; *moved = false when some message does not fit (then nothing
  // was written and the caller runs Exchange; every rank decides the same).
  Status ShmExchange(Transport& t, int64_t layer, const DispatchLayout& layout, const float* x,
                     const uint16_t* xb, int64_t hidden, PayloadDtype dtype, Deadline deadline,
                     bool* moved);
  // Combine through the channel: publishes this rank's rows (rb16 in place when it is the
  // combine area, else copied there), waits for the peers'; *moved = false when some rank's rows
  // do not fit its area (every rank decides the same; then the transport path runs).
  Status ShmCombine(const Transport& t, const float* row_out, const uint16_t* rb16,
                    dispatch_codec::Codec codec, int64_t per_row, Deadline deadline, bool* moved);
  // After a combine that read the peers' areas: tells them this rank is done.
  void ShmCombineDone();
  // A Dispatch that fails on this rank before moving anything (bad arguments): takes the step
  // and tells the peers, whose calls then fail at once (Cancelled naming this rank).
  void ShmAbandonDispatch();
  // The same for a Combine refused on this rank (no successful Dispatch, bad arguments).
  void ShmAbandonCombine();
  // A failure on the shared-memory path (or of the transport while a channel exists) other than
  // an abandoned step: the ranks may no longer agree on which transport calls come next, so this
  // dispatcher stops for good (fail-stop): marks its channel broken (peers waiting for it fail at
  // once) and refuses every later call. Returns `st`.
  Status ShmBreak(Status st);

  DispatcherOptions options_;
  DispatchTraffic traffic_;
  static constexpr int64_t kInitialEagerBytes = 4096;
  int64_t eager_bytes_ = kInitialEagerBytes;  // E: per-peer size of the first exchange (agreed)
  // Bookkeeping of the last successful Dispatch.
  bool ready_ = false;
  int64_t layer_ = 0;
  int32_t world_ = 0;
  int64_t hidden_ = 0;
  int64_t num_tokens_ = 0;
  std::vector<int64_t> token_row_prefix_;  // Combine: [num_tokens + 1] a token's sent rows are
  std::vector<int64_t> token_rows_;        // token_rows_[prefix[t] .. prefix[t + 1]), rank order
  std::vector<int64_t> sent_rank_prefix_;  // [world + 1] rows sent to each rank (layout order)
  std::vector<int64_t> sent_row_token_;    // [sent rows] source token of each sent row
  std::vector<int64_t> recv_rank_prefix_;  // [world + 1] rows received from each rank
  std::vector<int64_t> recv_row_token_;    // [received rows] token index on the source rank
  // Per peer, from the received headers: {rows, entries, hidden, dtype word, body, max body,
  // layer}.
  std::vector<int64_t> peer_header_;
  // Reusable buffers.
  std::vector<int64_t> send_counts_, send_offsets_, recv_counts_, recv_offsets_;
  std::vector<int64_t> send_slot_, recv_slot_;  // per peer: message start in send_buf_ / recv_buf_
  std::vector<int64_t> send_msg_;    // per peer: bytes of this rank's dispatch message to it
  std::vector<int64_t> recv_sizes_;  // per peer: bytes of its message in the first exchange
  std::vector<std::byte> send_buf_, recv_buf_;
  std::vector<std::byte> combine_rows_;    // Bf16CombineRows(): sent in place by CombineBf16
  std::vector<uint16_t> self_bf16_;        // Combine(kBF16): this rank's own rows rounded once
  std::vector<const uint16_t*> row_ptrs_;  // SumTokens: one token's rows, rank order
  // Per peer, where its message / combine rows / combine row checksums are read from (the
  // transport's receive buffer or a shared-memory slot / area).
  std::vector<const std::byte*> recv_msg_, peer_rows_, peer_checks_;
  // Shared memory: the channel (null: not set up, or refused), whether it was refused for good,
  // and the sizes a (re)build is due with (0: none due).
  std::unique_ptr<ShmChannel> shm_;
  bool shm_refused_ = false;
  std::string shm_refused_why_;
  std::string shm_broken_;             // non-empty: stopped (ShmBreak), the reason
  int shm_world_ = 0, shm_rank_ = -1;  // the world the channel state belongs to
  int64_t shm_want_slot_ = 0, shm_want_combine_ = 0;
  uint64_t shm_dispatch_seq_ = 0, shm_combine_count_ = 0;  // combines since the last Dispatch
  std::vector<int64_t> shm_words_;  // WaitAll's words, [world * ShmChannel::kWords]
};

}  // namespace switchyard
