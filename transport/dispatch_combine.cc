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
  return CombineImpl(t, row_out, nullptr, dtype, deadline, out);
}

Status Dispatcher::CombineBf16(Transport& t, const uint16_t* row_out, Deadline deadline,
                               float* out) {
  return CombineImpl(t, nullptr, row_out, PayloadDtype::kBF16, deadline, out);
}

Status Dispatcher::CombineImpl(Transport& t, const float* row_out, const uint16_t* rb16,
                               PayloadDtype dtype, Deadline deadline, float* out) {
  const int me = t.rank();
  const int64_t layer = layer_;
  auto where = [me, layer] {
    return "combine layer " + std::to_string(layer) + " on rank " + std::to_string(me);
  };
  traffic_.combine_transport_bytes = 0;
  if (!ready_) return FailedPreconditionError(where() + ": no successful Dispatch to combine");
  const int n = world_;
  if (t.world_size() != n) {
    return InvalidArgumentError(where() + ": transport world of " + std::to_string(t.world_size()) +
                                " ranks, dispatched over " + std::to_string(n));
  }
  if (dtype != PayloadDtype::kF32 && dtype != PayloadDtype::kBF16) {
    return InvalidArgumentError(where() + ": combine payload must be f32 or bf16, not " +
                                PayloadDtypeName(dtype));
  }
  const int64_t recv_rows = recv_rank_prefix_[n];
  if (recv_rows > 0 && row_out == nullptr && rb16 == nullptr) {
    return InvalidArgumentError(where() + ": null expert output for " + std::to_string(recv_rows) +
                                " received rows");
  }
  if (num_tokens_ > 0 && out == nullptr) {
    return InvalidArgumentError(where() + ": null output for " + std::to_string(num_tokens_) +
                                " tokens");
  }
  const bool integrity = options_.integrity;
  const int64_t h = hidden_;
  const auto codec = ToCodec(dtype);
  const int64_t rb = dispatch_codec::RowBytes(codec, h);
  const int64_t per_row = rb + (integrity ? 8 : 0);  // a message: rows, then their checksums
  send_counts_.assign(n, 0);
  send_offsets_.assign(n, 0);
  recv_counts_.assign(n, 0);
  recv_offsets_.assign(n, 0);
  // Always packed into the dispatcher's own buffer (even F32 without checksums, which could go
  // straight from row_out): after a failed exchange a backend may still read the send buffer, and
  // only the dispatcher's own buffers can be kept alive for that (Quarantine).
  int64_t send_total = 0, recv_total = 0;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    // Back to each source the rows it sent here; from each destination the rows sent there.
    const int64_t back = recv_rank_prefix_[p + 1] - recv_rank_prefix_[p];
    send_counts_[p] = back * per_row;
    send_offsets_[p] = send_total;
    send_total += send_counts_[p];
    recv_counts_[p] = (sent_rank_prefix_[p + 1] - sent_rank_prefix_[p]) * per_row;
    recv_offsets_[p] = recv_total;
    recv_total += recv_counts_[p];
  }
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
        const uint64_t c = CombineRowChecksum(layer, recv_row_token_[first + i], msg + i * rb, rb);
        std::memcpy(msg + rows * rb + 8 * i, &c, 8);
      }
    }
  }
  if (static_cast<int64_t>(recv_buf_.size()) < recv_total) recv_buf_.resize(recv_total);
  const Status exchanged =
      t.AllToAllV(std::span<const std::byte>(send_buf_.data(), static_cast<size_t>(send_total)),
                  send_counts_, send_offsets_, std::span<std::byte>(recv_buf_.data(), recv_total),
                  recv_counts_, recv_offsets_, deadline);
  if (!exchanged.ok()) {
    Quarantine(std::move(send_buf_));
    Quarantine(std::move(recv_buf_));
    return exchanged.WithContext("combine layer " + std::to_string(layer));
  }
  for (int p = 0; p < n; ++p) traffic_.combine_transport_bytes += send_counts_[p];

  if (integrity) {
    for (int p = 0; p < n; ++p) {
      if (p == me) continue;
      const std::byte* msg = recv_buf_.data() + recv_offsets_[p];
      const int64_t first = sent_rank_prefix_[p], rows = sent_rank_prefix_[p + 1] - first;
      for (int64_t i = 0; i < rows; ++i) {
        uint64_t sent;
        std::memcpy(&sent, msg + rows * rb + 8 * i, 8);
        const int64_t token = sent_row_token_[first + i];
        if (CombineRowChecksum(layer, token, msg + i * rb, rb) != sent) {
          return DataLossError("combine integrity check failed on rank " + std::to_string(me) +
                               ": layer " + std::to_string(layer) + ", row " + std::to_string(i) +
                               " from rank " + std::to_string(p) + " to rank " +
                               std::to_string(me) + " (token " + std::to_string(token) +
                               " of rank " + std::to_string(me) + "): checksum mismatch");
        }
      }
    }
  }

  // Token by token (each output row is written once, while it is in cache): a token sums its
  // ranks' contributions in ascending rank order, starting from +0 (zero-fill, then add each).
  // token_row_prefix_ / token_rows_: a counting sort of the sent rows by token, stable, so each
  // token's rows come by destination rank ascending (rows are grouped by rank in layout order).
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
  for (int64_t tok = 0; tok < num_tokens_; ++tok) {
    float* dst = out + tok * h;
    std::fill(dst, dst + h, 0.0f);
    for (int64_t k = token_row_prefix_[tok]; k < token_row_prefix_[tok + 1]; ++k) {
      const int64_t r = token_rows_[k];
      int p = 0;
      while (r >= sent_rank_prefix_[p + 1]) ++p;  // n is small
      const int64_t i = r - sent_rank_prefix_[p];
      if (p == me) {
        // What this rank returns to itself never leaves it: rounded as transit would.
        const int64_t self_row = recv_rank_prefix_[me] + i;
        if (rb16 != nullptr) {
          dispatch_codec::DecodeRow(reinterpret_cast<const std::byte*>(rb16 + self_row * h), h,
                                    codec, dst, /*accumulate=*/true);
        } else {
          dispatch_codec::RoundTripRow(row_out + self_row * h, h, codec, dst,
                                       /*accumulate=*/true);
        }
      } else {
        dispatch_codec::DecodeRow(recv_buf_.data() + recv_offsets_[p] + i * rb, h, codec, dst,
                                  /*accumulate=*/true);
      }
    }
  }
  return OkStatus();
}

}  // namespace switchyard
