// MoE dispatch/combine, the MOVE phase: on top of a DispatchLayout (transport/dispatch_layout.h),
// moves token rows to the ranks that own their experts and the experts' combined rows back.
//
// One step of an MoE layer, on every rank of the world (collective, same order everywhere):
//
//   DispatchLayout layout = ComputeDispatchLayout(...);            // this rank's tokens
//   dispatcher.Dispatch(t, layout, hidden, hidden_size, dtype, deadline, &received);
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
// Wire format (internal; every rank runs the same code): per peer, one 32-byte header
// {rows, entries, hidden, dtype} (first AllToAllV), then one message (second AllToAllV) holding the
// rows in the transit dtype, each row's entry count (int32), the entries' local expert (int32)
// and weight (float), each section padded to 4 bytes. Combine is one AllToAllV whose counts are
// the dispatch's, reversed.
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
// with the phase prepended ("dispatch counts: ...", "dispatch payload: ...", "combine: ...").
// Arguments wrong on this rank are reported as InvalidArgument before anything is sent (the peers
// then fail with DeadlineExceeded naming this rank). A peer that disagrees on hidden size or
// transit dtype, or sends malformed entries, is InvalidArgument / DataLoss naming that peer; this
// rank has then taken part in both collectives, so the world stays in step. After an error, treat
// the step as failed on every rank (see transport.h, "After an error").
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "transport/dispatch_layout.h"
#include "transport/transport.h"

namespace switchyard {

// Element type of rows in transit. Rows are FP32 on both ends; BF16 rounds each element once
// (round to nearest even) when it is sent and widens it exactly when it is received.
enum class PayloadDtype : int32_t { kF32 = 0, kBF16 = 1 };

// "f32", "bf16".
const char* PayloadDtypeName(PayloadDtype dtype);
// Bytes per element in transit (4 or 2).
int64_t PayloadDtypeSize(PayloadDtype dtype);

// What a rank received in one Dispatch: the receiver's view.
struct ReceivedTokens {
  int32_t world_size = 0;
  int64_t hidden = 0;
  int32_t num_local_experts = 0;
  // Received rows, grouped by source rank ascending (in the order each source sent them: by token
  // index). FP32 (BF16 transit already widened). [num_rows() * hidden].
  std::vector<float> rows;
  std::vector<int64_t> source_prefix;  // [world_size + 1]: rows of source p are
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

  int64_t num_rows() const { return static_cast<int64_t>(entry_prefix.size()) - 1; }
  int64_t num_entries() const { return static_cast<int64_t>(entry_row.size()); }
  const float* row(int64_t i) const { return rows.data() + i * hidden; }
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
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;
  Dispatcher(Dispatcher&&) = default;
  Dispatcher& operator=(Dispatcher&&) = default;

  // Collective. Sends row `row` of `layout` (token layout.row_token_idx[row] of `hidden_states`,
  // converted to `dtype`) and its (local expert, weight) entries to its destination rank, and
  // fills `received` (its vectors are resized, reusing their capacity) with what every rank sent
  // here. Two AllToAllV calls: the per-peer header (row and entry counts, hidden, dtype), then
  // the payload.
  // layout: computed on this rank (ComputeDispatchLayout with my rank) for a placement of
  //   t.world_size() ranks; it need not outlive the call (the dispatcher copies what Combine
  //   needs).
  // hidden_states: [layout.num_tokens, hidden] FP32 (may be null when num_tokens == 0).
  // hidden: > 0, the same on every rank; dtype: the same on every rank.
  // Ranks with zero tokens still call (they send empty messages and may receive rows).
  // Errors: InvalidArgument (layout of another world size, hidden <= 0, null hidden states; a peer
  // with another hidden size or dtype, naming it), DataLoss (malformed entries from a peer, naming
  // it), and the transport's errors. On error `received` is unspecified and Combine refuses to run
  // until the next successful Dispatch.
  Status Dispatch(Transport& t, const DispatchLayout& layout, const float* hidden_states,
                  int64_t hidden, PayloadDtype dtype, Deadline deadline, ReceivedTokens* received);

  // Collective; the inverse of the last successful Dispatch on this object. Sends received row i's
  // combined output row_out[i] (converted to `dtype`, which may differ from the dispatch dtype but
  // must be the same on every rank) back to the rank it came from, and writes
  //   out[t] = Σ over this rank's rows of token t, by destination rank ascending,
  // for every token of the dispatched layout (tokens without rows: zeros). One AllToAllV.
  // row_out: [received.num_rows(), hidden] (may be null when there are no received rows);
  // out: [layout.num_tokens, hidden] (may be null when num_tokens == 0); it may alias
  // the dispatched hidden states, not row_out. Each call is one collective; calling it twice for
  // one Dispatch repeats the exchange (every rank must do the same).
  // Errors: FailedPrecondition (no successful Dispatch yet), InvalidArgument (null buffers), and
  // the transport's errors (a peer that combined with another dtype shows as a count mismatch
  // naming it). On error `out` is unspecified.
  Status Combine(Transport& t, const float* row_out, PayloadDtype dtype, Deadline deadline,
                 float* out);

 private:
  // Bookkeeping of the last successful Dispatch.
  bool ready_ = false;
  int32_t world_ = 0;
  int64_t hidden_ = 0;
  int64_t num_tokens_ = 0;
  std::vector<uint8_t> token_started_;     // Combine: token already has its first row
  std::vector<int64_t> sent_rank_prefix_;  // [world + 1] rows sent to each rank (layout order)
  std::vector<int64_t> sent_row_token_;    // [sent rows] source token of each sent row
  std::vector<int64_t> recv_rank_prefix_;  // [world + 1] rows received from each rank
  // Reusable buffers.
  std::vector<int64_t> header_send_, header_recv_;
  std::vector<int64_t> send_counts_, send_offsets_, recv_counts_, recv_offsets_;
  std::vector<int64_t> header_counts_, header_offsets_;
  std::vector<std::byte> send_buf_, recv_buf_;
};

}  // namespace switchyard
