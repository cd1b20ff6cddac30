// Combine: the inverse of the last Dispatch, and the receiver's weighted sum (SumEntriesPerRow).
#include <algorithm>
#include <cstring>
#include <string>

#include "transport/dispatch.h"
#include "transport/dispatch_wire.h"

namespace switchyard {

using namespace dispatch_wire;  // NOLINT: this file implements the wire format

void SumEntriesPerRow(const ReceivedTokens& received, const float* entry_out, float* row_out) {
  const int64_t h = received.hidden;
  for (int64_t i = 0; i < received.num_rows(); ++i) {
    float* acc = row_out + i * h;
    std::fill(acc, acc + h, 0.0f);
    for (int64_t j = received.entry_prefix[i]; j < received.entry_prefix[i + 1]; ++j) {
      const float w = received.entry_weight[j];
      const float* v = entry_out + j * h;
      // Compiled with -ffp-contract=off: a product then a sum, never an FMA.
      for (int64_t k = 0; k < h; ++k) acc[k] += w * v[k];
    }
  }
}

Status Dispatcher::Combine(Transport& t, const float* row_out, PayloadDtype dtype,
                           Deadline deadline, float* out) {
  return CombineImpl(t, row_out, nullptr, dtype, deadline, out, nullptr);
}

Status Dispatcher::CombineBf16(Transport& t, const uint16_t* row_out, Deadline deadline,
                               float* out) {
  return CombineImpl(t, nullptr, row_out, PayloadDtype::kBF16, deadline, out, nullptr);
}

Status Dispatcher::CombineBf16(Transport& t, const uint16_t* row_out, Deadline deadline,
                               uint16_t* out) {
  return CombineImpl(t, nullptr, row_out, PayloadDtype::kBF16, deadline, nullptr, out);
}

uint16_t* Dispatcher::Bf16CombineRows() {
  if (!ready_) return nullptr;
  if (shm_ != nullptr && shm_combine_count_ == 0 && shm_broken_.empty()) {
    // The shared combine area (row i at i * 2 * hidden bytes, as ShmCombine publishes it), when
    // the rows and their checksums fit: the experts' writes are then the only copy. Not for a
    // second Combine of one Dispatch (a slow peer may still read the first one's rows there).
    const int64_t rows = recv_rank_prefix_[world_];
    if (Pad8(rows * hidden_ * 2) + (options_.integrity ? 8 * rows : 0) <= shm_->combine_bytes()) {
      return reinterpret_cast<uint16_t*>(shm_->CombineArea(shm_->rank()));
    }
  }
  // At least one value, so that the pointer is never null after a successful Dispatch.
  const size_t bytes =
      static_cast<size_t>(std::max<int64_t>(recv_rank_prefix_[world_] * hidden_, 1) * 2);
  if (combine_rows_.size() < bytes) combine_rows_.resize(bytes);
  // Operator new's alignment suits 2-byte values.
  return reinterpret_cast<uint16_t*>(combine_rows_.data());
}

Status Dispatcher::CombineImpl(Transport& t, const float* row_out, const uint16_t* rb16,
                               PayloadDtype dtype, Deadline deadline, float* out,
                               uint16_t* out_bf16) {
  const int me = t.rank();
  const int64_t layer = layer_;
  auto where = [me, layer] {
    return "combine layer " + std::to_string(layer) + " on rank " + std::to_string(me);
  };
  traffic_.combine_transport_bytes = 0;
  // A combine refused on this rank: the peers waiting for its rows learn it at once (Cancelled).
  auto refuse = [this, &t](Status st) {
    if (shm_ != nullptr && shm_broken_.empty() && shm_world_ == t.world_size()) {
      ShmAbandonCombine();
    }
    return st;
  };
  if (!ready_) {
    return refuse(FailedPreconditionError(where() + ": no successful Dispatch to combine" +
                                          (shm_broken_.empty() ? "" : " (" + shm_broken_ + ")")));
  }
  const int n = world_;
  if (t.world_size() != n) {
    return refuse(InvalidArgumentError(where() + ": transport world of " +
                                       std::to_string(t.world_size()) + " ranks, dispatched over " +
                                       std::to_string(n)));
  }
  if (dtype != PayloadDtype::kF32 && dtype != PayloadDtype::kBF16) {
    return refuse(InvalidArgumentError(where() + ": combine payload must be f32 or bf16, not " +
                                       PayloadDtypeName(dtype)));
  }
  const int64_t recv_rows = recv_rank_prefix_[n];
  if (recv_rows > 0 && row_out == nullptr && rb16 == nullptr) {
    return refuse(InvalidArgumentError(where() + ": null expert output for " +
                                       std::to_string(recv_rows) + " received rows"));
  }
  if (num_tokens_ > 0 && out == nullptr && out_bf16 == nullptr) {
    return refuse(InvalidArgumentError(where() + ": null output for " +
                                       std::to_string(num_tokens_) + " tokens"));
  }
  const bool integrity = options_.integrity;
  const int64_t h = hidden_;
  const auto codec = ToCodec(dtype);
  const int64_t rb = dispatch_codec::RowBytes(codec, h);
  const int64_t per_row = rb + (integrity ? 8 : 0);  // a message: rows, then their checksums
  traffic_.combine_shared_memory = false;
  peer_rows_.assign(n, nullptr);
  peer_checks_.assign(n, nullptr);
  bool moved = false;
  if (shm_ != nullptr) {
    const Status st = ShmBreak(ShmCombine(t, row_out, rb16, codec, per_row, deadline, &moved));
    if (!st.ok()) return st;
  }
  if (moved) {
    traffic_.combine_shared_memory = true;
    Status st = integrity ? VerifyCombineRows(me, layer, rb) : OkStatus();
    if (st.ok()) SumOwnAndPeers(me, codec, rb, row_out, rb16, out, out_bf16);
    ShmCombineDone();  // the peers' areas are no longer read
    return st;
  }
  // BF16 rows in the dispatcher's own combine buffer go out in place (each source's rows are
  // contiguous there); anything else is packed into send_buf_. Only the dispatcher's own buffers
  // can be kept alive after a failed exchange (Quarantine), so a caller's buffer is always copied.
  const bool in_place = rb16 != nullptr && !integrity && recv_rows > 0 &&
                        rb16 == reinterpret_cast<const uint16_t*>(combine_rows_.data()) &&
                        combine_rows_.size() >= static_cast<size_t>(recv_rows * rb);
  std::vector<std::byte>& send = in_place ? combine_rows_ : send_buf_;
  send_counts_.assign(n, 0);
  send_offsets_.assign(n, 0);
  recv_counts_.assign(n, 0);
  recv_offsets_.assign(n, 0);
  int64_t send_total = 0, recv_total = 0;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    // Back to each source the rows it sent here; from each destination the rows sent there.
    const int64_t back = recv_rank_prefix_[p + 1] - recv_rank_prefix_[p];
    send_counts_[p] = back * per_row;
    send_offsets_[p] = in_place ? recv_rank_prefix_[p] * rb : send_total;
    send_total += send_counts_[p];
    recv_counts_[p] = (sent_rank_prefix_[p + 1] - sent_rank_prefix_[p]) * per_row;
    recv_offsets_[p] = recv_total;
    recv_total += recv_counts_[p];
  }
  if (in_place) {
    send_total = recv_rows * rb;
  } else {
    if (static_cast<int64_t>(send_buf_.size()) < send_total) send_buf_.resize(send_total);
    for (int p = 0; p < n; ++p) {
      if (p == me) continue;
      std::byte* msg = send_buf_.data() + send_offsets_[p];
      const int64_t first = recv_rank_prefix_[p], rows = recv_rank_prefix_[p + 1] - first;
      if (rb16 != nullptr && rows > 0) {  // BF16 rows, contiguous per source: one copy
        std::memcpy(msg, rb16 + first * h, rows * rb);
      }
      for (int64_t i = 0; i < rows; ++i) {
        if (rb16 == nullptr)
          dispatch_codec::EncodeRow(row_out + (first + i) * h, h, codec, msg + i * rb);
        if (integrity) {
          const uint64_t c =
              CombineRowChecksum(layer, recv_row_token_[first + i], msg + i * rb, rb);
          std::memcpy(msg + rows * rb + 8 * i, &c, 8);
        }
      }
    }
  }
  if (static_cast<int64_t>(recv_buf_.size()) < recv_total) recv_buf_.resize(recv_total);
  const Status exchanged =
      t.AllToAllV(std::span<const std::byte>(send.data(), static_cast<size_t>(send_total)),
                  send_counts_, send_offsets_, std::span<std::byte>(recv_buf_.data(), recv_total),
                  recv_counts_, recv_offsets_, deadline);
  if (!exchanged.ok()) {
    Quarantine(std::move(send));
    Quarantine(std::move(recv_buf_));
    if (shm_ != nullptr) (void)ShmBreak(exchanged);  // the fallback failed on this rank
    return exchanged.WithContext("combine layer " + std::to_string(layer));
  }
  for (int p = 0; p < n; ++p) traffic_.combine_transport_bytes += send_counts_[p];
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    peer_rows_[p] = recv_buf_.data() + recv_offsets_[p];
    peer_checks_[p] = peer_rows_[p] + (sent_rank_prefix_[p + 1] - sent_rank_prefix_[p]) * rb;
  }
  if (integrity) RETURN_IF_ERROR(VerifyCombineRows(me, layer, rb));
  SumOwnAndPeers(me, codec, rb, row_out, rb16, out, out_bf16);
  return OkStatus();
}

Status Dispatcher::VerifyCombineRows(int me, int64_t layer, int64_t rb) const {
  for (int p = 0; p < world_; ++p) {
    if (p == me) continue;
    const int64_t first = sent_rank_prefix_[p], rows = sent_rank_prefix_[p + 1] - first;
    for (int64_t i = 0; i < rows; ++i) {
      uint64_t sent;
      std::memcpy(&sent, peer_checks_[p] + 8 * i, 8);
      const int64_t token = sent_row_token_[first + i];
      if (CombineRowChecksum(layer, token, peer_rows_[p] + i * rb, rb) != sent) {
        return DataLossError("combine integrity check failed on rank " + std::to_string(me) +
                             ": layer " + std::to_string(layer) + ", row " + std::to_string(i) +
                             " from rank " + std::to_string(p) + " to rank " + std::to_string(me) +
                             " (token " + std::to_string(token) + " of rank " + std::to_string(me) +
                             "): checksum mismatch");
      }
    }
  }
  return OkStatus();
}

void Dispatcher::SumOwnAndPeers(int me, dispatch_codec::Codec codec, int64_t rb,
                                const float* row_out, const uint16_t* rb16, float* out,
                                uint16_t* out_bf16) {
  const int64_t h = hidden_;
  // This rank's own rows (received rows [first, first + rows)), as SumTokens takes them.
  const int64_t first = recv_rank_prefix_[me], rows = recv_rank_prefix_[me + 1] - first;
  const float* self_f32 = row_out != nullptr ? row_out + first * h : nullptr;
  const uint16_t* self_b16 = rb16 != nullptr ? rb16 + first * h : nullptr;
  if (codec == dispatch_codec::Codec::kBF16 && rb16 == nullptr && rows > 0) {
    // FP32 rows in, BF16 transit: round this rank's own rows once, as transit would, so every
    // token sums BF16 rows in one pass.
    self_bf16_.resize(rows * h);
    for (int64_t i = 0; i < rows; ++i) {
      dispatch_codec::EncodeRow(row_out + (first + i) * h, h, codec,
                                reinterpret_cast<std::byte*>(self_bf16_.data() + i * h));
    }
    self_b16 = self_bf16_.data();
  }
  SumTokens(me, codec, rb, self_b16, self_f32, out, out_bf16);
}

void Dispatcher::SumTokens(int me, dispatch_codec::Codec codec, int64_t rb,
                           const uint16_t* self_b16, const float* self_f32, float* out,
                           uint16_t* out_bf16) {
  const int n = world_;
  const int64_t h = hidden_;
  // Token by token (each output row is written once, while it is in cache): a token sums its
  // ranks' contributions in ascending rank order, starting from +0. token_row_prefix_ /
  // token_rows_: a counting sort of the sent rows by token, stable, so each token's rows come by
  // destination rank ascending (rows are grouped by rank in layout order).
  const int64_t sent_rows = sent_rank_prefix_[n];
  token_row_prefix_.assign(num_tokens_ + 1, 0);
  for (int64_t r = 0; r < sent_rows; ++r) ++token_row_prefix_[sent_row_token_[r] + 1];
  for (int64_t tok = 0; tok < num_tokens_; ++tok) {
    token_row_prefix_[tok + 1] += token_row_prefix_[tok];
  }
  token_rows_.resize(sent_rows);
  for (int p = 0; p < n; ++p) {
    for (int64_t r = sent_rank_prefix_[p]; r < sent_rank_prefix_[p + 1]; ++r) {
      // Fill through the prefix of the token (shifted back below).
      token_rows_[token_row_prefix_[sent_row_token_[r]]++] = r;
    }
  }
  for (int64_t tok = num_tokens_; tok > 0; --tok)
    token_row_prefix_[tok] = token_row_prefix_[tok - 1];
  token_row_prefix_[0] = 0;
  const bool bf16 = codec == dispatch_codec::Codec::kBF16;
  // An output far larger than the caches is written with non-temporal stores (no read for
  // ownership of lines the sum overwrites whole; the caller reads it from memory anyway).
  const bool stream = bf16 && num_tokens_ * h * (out != nullptr ? 4 : 2) >= kStreamBytes;
  for (int64_t tok = 0; tok < num_tokens_; ++tok) {
    float* dst = out != nullptr ? out + tok * h : nullptr;
    if (!bf16) std::fill(dst, dst + h, 0.0f);
    row_ptrs_.clear();
    for (int64_t k = token_row_prefix_[tok]; k < token_row_prefix_[tok + 1]; ++k) {
      const int64_t r = token_rows_[k];
      int p = 0;
      while (r >= sent_rank_prefix_[p + 1]) ++p;  // n is small
      const int64_t i = r - sent_rank_prefix_[p];
      // What this rank returns to itself never leaves it: rounded as transit would (self_b16
      // already is; self_f32 is FP32 rows with F32 transit).
      const std::byte* peer_row = p == me ? nullptr : peer_rows_[p] + i * rb;
      if (bf16) {
        row_ptrs_.push_back(p == me ? self_b16 + i * h
                                    : reinterpret_cast<const uint16_t*>(peer_row));
      } else if (p == me) {
        dispatch_codec::RoundTripRow(self_f32 + i * h, h, codec, dst, /*accumulate=*/true);
      } else {
        dispatch_codec::DecodeRow(peer_row, h, codec, dst, /*accumulate=*/true);
      }
    }
    if (bf16) {
      // Received BF16 rows start 2-byte aligned (offsets are sums of 2h-byte rows and 8-byte
      // checksums).
      dispatch_codec::SumBf16Rows(row_ptrs_.data(), static_cast<int>(row_ptrs_.size()), h, dst,
                                  out_bf16 != nullptr ? out_bf16 + tok * h : nullptr, stream);
    }
  }
  if (stream) dispatch_codec::StreamFence();
}

}  // namespace switchyard
