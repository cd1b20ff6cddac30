#include "transport/dispatch.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "transport/dispatch_wire.h"

namespace switchyard {

using namespace dispatch_wire;  // NOLINT: this file implements the wire format

const char* PayloadDtypeName(PayloadDtype dtype) {
  switch (dtype) {
    case PayloadDtype::kF32:
      return "f32";
    case PayloadDtype::kBF16:
      return "bf16";
    case PayloadDtype::kFP8:
      return "fp8";
  }
  return "?";
}

int64_t PayloadRowBytes(PayloadDtype dtype, int64_t hidden) {
  return dispatch_codec::RowBytes(ToCodec(dtype), hidden);
}

int64_t DispatchWireRowOffset(PayloadDtype dtype, int64_t hidden, int64_t row) {
  return kHeaderBytes + row * PayloadRowBytes(dtype, hidden);
}

int64_t DispatchMessageBytes(const DispatchLayout& layout, int me, int peer, int64_t hidden,
                             PayloadDtype dtype, bool integrity) {
  if (peer == me) return 0;
  const int64_t first = layout.rank_prefix[peer], last = layout.rank_prefix[peer + 1];
  return kHeaderBytes + BodyLayout(last - first,
                                   layout.entry_prefix[last] - layout.entry_prefix[first],
                                   PayloadRowBytes(dtype, hidden), integrity)
                            .total;
}

int64_t CombineMessageBytes(int64_t rows, int64_t hidden, PayloadDtype dtype, bool integrity) {
  return rows * (PayloadRowBytes(dtype, hidden) + (integrity ? 8 : 0));
}

StatusOr<DispatcherOptions> DispatcherOptions::FromEnv() {
  DispatcherOptions o;
  const char* v = std::getenv("SWITCHYARD_INTEGRITY");
  if (v != nullptr && *v != '\0') {
    const std::string s = v;
    if (s == "1" || s == "true" || s == "on") {
      o.integrity = true;
    } else if (s == "0" || s == "false" || s == "off") {
      o.integrity = false;
    } else {
      return InvalidArgumentError("SWITCHYARD_INTEGRITY=" + s + ": expected 1|0|true|false|on|off");
    }
  }
  v = std::getenv("SWITCHYARD_DISPATCH_SHM");
  if (v != nullptr && *v != '\0') {
    const std::string s = v;
    if (s == "auto") {
      o.shared_memory = SharedMemoryMode::kAuto;
    } else if (s == "off" || s == "0" || s == "false") {
      o.shared_memory = SharedMemoryMode::kOff;
    } else if (s == "on" || s == "1" || s == "true") {
      o.shared_memory = SharedMemoryMode::kRequire;
    } else {
      return InvalidArgumentError("SWITCHYARD_DISPATCH_SHM=" + s + ": expected auto|off|on");
    }
  }
  return o;
}

namespace {

bool ValidDtype(int64_t d) { return d >= 0 && d <= static_cast<int64_t>(PayloadDtype::kFP8); }

}  // namespace

Status Dispatcher::Dispatch(Transport& t, int64_t layer, const DispatchLayout& layout,
                            const float* hidden_states, int64_t hidden, PayloadDtype dtype,
                            Deadline deadline, ReceivedTokens* received) {
  return DispatchImpl(t, layer, layout, hidden_states, nullptr, /*bf16_in=*/false, hidden, dtype,
                      deadline, received);
}

Status Dispatcher::DispatchBf16(Transport& t, int64_t layer, const DispatchLayout& layout,
                                const uint16_t* hidden_states, int64_t hidden, Deadline deadline,
                                ReceivedTokens* received) {
  return DispatchImpl(t, layer, layout, nullptr, hidden_states, /*bf16_in=*/true, hidden,
                      PayloadDtype::kBF16, deadline, received);
}

Status Dispatcher::DispatchImpl(Transport& t, int64_t layer, const DispatchLayout& layout,
                                const float* hidden_states, const uint16_t* bf16_states,
                                bool bf16_in, int64_t hidden, PayloadDtype dtype, Deadline deadline,
                                ReceivedTokens* received) {
  ready_ = false;
  traffic_.dispatch_payload_bytes = traffic_.dispatch_transport_bytes = 0;
  traffic_.dispatch_exchanges = 0;
  const int n = t.world_size();
  const int me = t.rank();
  // Built only on error paths (no allocation per call).
  auto where = [me, layer] {
    return "dispatch layer " + std::to_string(layer) + " on rank " + std::to_string(me);
  };
  Status bad;
  if (received == nullptr) {
    bad = InvalidArgumentError(where() + ": null output");
  } else if (layout.world_size != n || static_cast<int>(layout.rank_prefix.size()) != n + 1 ||
             static_cast<int>(layout.num_tokens_per_expert.size()) != n ||
             static_cast<int64_t>(layout.entry_prefix.size()) != layout.num_rows() + 1 ||
             layout.rank_prefix[n] != layout.num_rows()) {
    bad = InvalidArgumentError(where() + ": layout is for a world of " +
                               std::to_string(layout.world_size) + " ranks (or malformed), not " +
                               std::to_string(n));
  } else if (hidden <= 0) {
    bad =
        InvalidArgumentError(where() + ": hidden size " + std::to_string(hidden) + " must be > 0");
  } else if (layer < 0) {
    bad = InvalidArgumentError(where() + ": layer must be >= 0");
  } else if (!ValidDtype(static_cast<int64_t>(dtype))) {
    bad = InvalidArgumentError(where() + ": unknown payload dtype");
  } else if (layout.num_tokens > 0 &&
             (bf16_in ? bf16_states == nullptr : hidden_states == nullptr)) {
    bad = InvalidArgumentError(where() + ": null hidden states for " +
                               std::to_string(layout.num_tokens) + " tokens");
  } else if (layout.num_tokens >= (int64_t{1} << 31)) {
    bad = InvalidArgumentError(where() + ": " + std::to_string(layout.num_tokens) +
                               " tokens; at most 2^31-1 per call");
  }
  if (!bad.ok()) {
    eager_bytes_ = kInitialEagerBytes;  // the peers' calls fail too (they wait for this rank)
    if (shm_ != nullptr && shm_broken_.empty()) ShmAbandonDispatch();  // peers fail at once
    return bad;
  }
  traffic_.dispatch_shared_memory = false;
  Status exchanged = SetUpSharedMemory(t, layer, layout, hidden, dtype, deadline);
  bool moved = false;
  if (exchanged.ok() && shm_ != nullptr) {
    exchanged = ShmBreak(
        ShmExchange(t, layer, layout, hidden_states, bf16_states, hidden, dtype, deadline, &moved));
  }
  if (exchanged.ok() && !moved) {
    exchanged = Exchange(t, layer, layout, hidden_states, bf16_states, hidden, dtype, deadline);
    if (!exchanged.ok()) {
      Quarantine(std::move(send_buf_));
      Quarantine(std::move(recv_buf_));
      if (shm_ != nullptr) (void)ShmBreak(exchanged);  // the fallback failed on this rank
    }
  }
  if (!exchanged.ok()) {
    eager_bytes_ = kInitialEagerBytes;
    return exchanged;
  }
  traffic_.dispatch_shared_memory = moved;

  // Every exchange is done (the world is in step); now judge what the peers sent.
  std::vector<int> malformed, disagree;
  const int64_t dtype_word = static_cast<int64_t>(dtype) | (int64_t{options_.integrity} << 8);
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    const int64_t* h = &peer_header_[kHeaderWords * p];
    if (h[kRows] < 0) {
      malformed.push_back(p);
    } else if (h[kHidden] != hidden || h[kDtypeWord] != dtype_word || h[kLayer] != layer) {
      disagree.push_back(p);
    }
  }
  if (!malformed.empty()) {
    return DataLossError(where() + ": malformed or corrupt dispatch header from " +
                         RankList(malformed));
  }
  if (!disagree.empty()) {
    std::string detail;
    for (int p : disagree) {
      const int64_t* h = &peer_header_[kHeaderWords * p];
      detail += (detail.empty() ? "" : "; ") + std::string("rank ") + std::to_string(p) +
                " sends hidden " + std::to_string(h[kHidden]) + " as " +
                PayloadDtypeName(PayloadDtype(h[kDtypeWord] & 0xff)) + " for layer " +
                std::to_string(h[kLayer]) + ", integrity " + ((h[kDtypeWord] >> 8) ? "on" : "off");
    }
    return InvalidArgumentError(
        where() + " (hidden " + std::to_string(hidden) + " as " + PayloadDtypeName(dtype) +
        ", integrity " + (options_.integrity ? "on" : "off") + "): peers disagree: " + detail);
  }
  if (options_.integrity) RETURN_IF_ERROR(VerifyDispatchRows(me, layer));
  RETURN_IF_ERROR(Unpack(me, layout, hidden_states, bf16_states, bf16_in, hidden, dtype, received));

  // Bookkeeping for Combine.
  layer_ = layer;
  world_ = n;
  hidden_ = hidden;
  num_tokens_ = layout.num_tokens;
  sent_rank_prefix_.assign(layout.rank_prefix.begin(), layout.rank_prefix.end());
  sent_row_token_.assign(layout.row_token_idx.begin(), layout.row_token_idx.end());
  recv_rank_prefix_.assign(received->source_prefix.begin(), received->source_prefix.end());
  recv_row_token_.assign(received->row_source_token.begin(), received->row_source_token.end());
  ready_ = true;
  return OkStatus();
}

Status Dispatcher::Exchange(Transport& t, int64_t layer, const DispatchLayout& layout,
                            const float* x, const uint16_t* xb, int64_t hidden, PayloadDtype dtype,
                            Deadline deadline) {
  const int n = t.world_size(), me = t.rank();
  const int64_t rb = dispatch_codec::RowBytes(ToCodec(dtype), hidden);
  const int64_t cap = EagerCap(options_.max_first_exchange_bytes, n);
  const int64_t eager = std::min(eager_bytes_, cap);
  auto context = [layer] { return "dispatch layer " + std::to_string(layer); };

  // Send side: one slot per peer, header + body bytes; nothing for this rank itself.
  const int64_t my_max = PlanMessages(me, layout, rb);
  int64_t send_total = 0;
  for (int p = 0; p < n; ++p) send_total += send_msg_[p];
  if (static_cast<int64_t>(send_buf_.size()) < send_total) send_buf_.resize(send_total);
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    PackMessage(p, layer, layout, x, xb, hidden, dtype, my_max, send_buf_.data() + send_slot_[p],
                /*stream=*/false);
  }

  // (1) Every message up to E bytes (all of it when it fits, else its first E bytes), received
  // into slots of E bytes: one exchange with receive sizes bounded by E.
  send_counts_.assign(n, 0);
  send_offsets_.assign(n, 0);
  recv_counts_.assign(n, 0);
  recv_offsets_.assign(n, 0);
  recv_sizes_.assign(n, 0);
  int64_t first_moved = 0;
  for (int p = 0, k = 0; p < n; ++p) {
    if (p == me) continue;
    send_counts_[p] = std::min(send_msg_[p], eager);
    first_moved += send_counts_[p];
    recv_counts_[p] = eager;
    send_offsets_[p] = send_slot_[p];
    recv_offsets_[p] = eager * k++;
  }
  const int64_t eager_total = eager * (n - 1);
  if (static_cast<int64_t>(recv_buf_.size()) < eager_total) recv_buf_.resize(eager_total);
  auto send_span = std::span<const std::byte>(send_buf_.data(), static_cast<size_t>(send_total));
  // (Context strings are built on error paths only: no allocation per call.)
  Status st = t.AllToAllVBounded(send_span, send_counts_, send_offsets_,
                                 std::span<std::byte>(recv_buf_.data(), eager_total), recv_counts_,
                                 recv_offsets_, recv_sizes_, deadline);
  if (!st.ok()) return st.WithContext(context());
  traffic_.dispatch_transport_bytes += first_moved;
  traffic_.dispatch_exchanges = 1;

  // Headers. A malformed one gets rows = -1 (reported by the caller) and no remainder.
  peer_header_.assign(kHeaderWords * n, 0);
  int64_t max_body = my_max;
  recv_slot_.assign(n, 0);
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    int64_t* h = &peer_header_[kHeaderWords * p];
    if (recv_sizes_[p] < kHeaderBytes) {  // not even a header
      h[kRows] = -1;
      h[kBody] = eager - kHeaderBytes;
      continue;
    }
    std::memcpy(h, recv_buf_.data() + recv_offsets_[p], kHeaderBytes);
    if (!SaneHeader(h) || recv_sizes_[p] != std::min(eager, kHeaderBytes + h[kBody])) {
      h[kRows] = -1;
      h[kBody] = eager - kHeaderBytes;
      continue;
    }
    max_body = std::max(max_body, h[kMaxBody]);
  }

  // (2) Remainders, when some message is longer than E (every rank computes the same max_body).
  if (kHeaderBytes + max_body > eager) {
    int64_t recv_total = 0;
    for (int p = 0; p < n; ++p) {
      if (p == me) continue;
      recv_slot_[p] = recv_total;
      recv_total += std::max(eager, kHeaderBytes + peer_header_[kHeaderWords * p + kBody]);
    }
    if (static_cast<int64_t>(recv_buf_.size()) < recv_total) recv_buf_.resize(recv_total);
    // Spread the eager prefixes to their slots, last first (slots only move right).
    for (int p = n - 1; p >= 0; --p) {
      if (p == me) continue;
      std::memmove(recv_buf_.data() + recv_slot_[p], recv_buf_.data() + recv_offsets_[p],
                   recv_sizes_[p]);  // what arrived (<= E), not the whole slot
    }
    int64_t moved = 0;
    for (int p = 0; p < n; ++p) {
      if (p == me) continue;
      send_counts_[p] = std::max<int64_t>(0, send_msg_[p] - eager);
      send_offsets_[p] = send_slot_[p] + std::min(eager, send_msg_[p]);
      recv_counts_[p] =
          std::max<int64_t>(0, kHeaderBytes + peer_header_[kHeaderWords * p + kBody] - eager);
      recv_offsets_[p] = recv_slot_[p] + eager;
      moved += send_counts_[p];
    }
    st = t.AllToAllV(send_span, send_counts_, send_offsets_,
                     std::span<std::byte>(recv_buf_.data(), recv_total), recv_counts_,
                     recv_offsets_, deadline);
    if (!st.ok()) return st.WithContext(context() + " (remainder)");
    traffic_.dispatch_transport_bytes += moved;
    traffic_.dispatch_exchanges = 2;
  } else {
    for (int p = 0; p < n; ++p) recv_slot_[p] = recv_offsets_[p];
  }
  eager_bytes_ = NextEagerBytes(max_body, cap);
  recv_msg_.assign(n, nullptr);
  for (int p = 0; p < n; ++p) {
    if (p != me) recv_msg_[p] = recv_buf_.data() + recv_slot_[p];
  }
  return OkStatus();
}

int64_t Dispatcher::PlanMessages(int me, const DispatchLayout& layout, int64_t row_bytes) {
  const int n = layout.world_size;
  send_slot_.assign(n, 0);
  send_msg_.assign(n, 0);
  int64_t my_max = 0, total = 0;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    const int64_t first = layout.rank_prefix[p], last = layout.rank_prefix[p + 1];
    const Body b = BodyLayout(last - first, layout.entry_prefix[last] - layout.entry_prefix[first],
                              row_bytes, options_.integrity);
    my_max = std::max(my_max, b.total);
    send_slot_[p] = total;
    send_msg_[p] = kHeaderBytes + b.total;
    total += send_msg_[p];
  }
  traffic_.dispatch_payload_bytes = total;
  return my_max;
}

void Dispatcher::PackMessage(int p, int64_t layer, const DispatchLayout& layout, const float* x,
                             const uint16_t* xb, int64_t hidden, PayloadDtype dtype, int64_t my_max,
                             std::byte* msg, bool stream) const {
  const bool integrity = options_.integrity;
  const auto codec = ToCodec(dtype);
  const int64_t rb = dispatch_codec::RowBytes(codec, hidden);
  const int64_t first = layout.rank_prefix[p], last = layout.rank_prefix[p + 1];
  const int64_t rows = last - first, e0 = layout.entry_prefix[first];
  const int64_t entries = layout.entry_prefix[last] - e0;
  const Body b = BodyLayout(rows, entries, rb, integrity);
  int64_t h[kHeaderWords] = {
      rows,    entries, hidden, static_cast<int64_t>(dtype) | (int64_t{integrity} << 8),
      b.total, my_max,  layer,  0};
  if (integrity) h[kCheck] = static_cast<int64_t>(HeaderChecksum(h));
  std::memcpy(msg, h, kHeaderBytes);
  std::byte* body = msg + kHeaderBytes;
  for (int64_t row = first; row < last; ++row) {
    const int64_t tok = layout.row_token_idx[row];
    if (xb != nullptr) {  // BF16 in: already the transit format (null only without rows)
      if (stream) {
        dispatch_codec::StreamCopy(body + (row - first) * rb, xb + tok * hidden, rb);
      } else {
        std::memcpy(body + (row - first) * rb, xb + tok * hidden, rb);
      }
    } else {
      dispatch_codec::EncodeRow(x + tok * hidden, hidden, codec, body + (row - first) * rb);
    }
  }
  std::memset(body + rows * rb, 0, b.meta - rows * rb);
  for (int64_t row = first; row < last; ++row) {
    const int32_t meta[2] = {
        static_cast<int32_t>(layout.row_token_idx[row]),
        static_cast<int32_t>(layout.entry_prefix[row + 1] - layout.entry_prefix[row])};
    std::memcpy(body + b.meta + 8 * (row - first), meta, 8);
  }
  if (entries > 0) {
    std::memcpy(body + b.experts, layout.entry_local_expert.data() + e0, 4 * entries);
    std::memcpy(body + b.weights, layout.entry_weight.data() + e0, 4 * entries);
  }
  if (!integrity) return;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t row = first + i, ej = layout.entry_prefix[row] - e0;
    int32_t meta[2];
    std::memcpy(meta, body + b.meta + 8 * i, 8);
    const uint64_t c = DispatchRowChecksum(layer, meta[0], meta[1], body + b.experts + 4 * ej,
                                           body + b.weights + 4 * ej, body + i * rb, rb);
    std::memcpy(body + b.checks + 8 * i, &c, 8);
  }
}

bool Dispatcher::SaneHeader(int64_t* h) {
  const bool checked =
      !((h[kDtypeWord] >> 8) & 1) || h[kCheck] == static_cast<int64_t>(HeaderChecksum(h));
  const int64_t d = h[kDtypeWord] & 0xff;
  const int64_t h_rb = h[kHidden] > 0 && h[kHidden] <= (int64_t{1} << 30) && ValidDtype(d)
                           ? dispatch_codec::RowBytes(ToCodec(PayloadDtype(d)), h[kHidden])
                           : -1;
  const bool sane =
      checked && h_rb > 0 && h[kRows] >= 0 && h[kEntries] >= 0 && (h[kDtypeWord] >> 9) == 0 &&
      h[kRows] <= (int64_t{1} << 40) / h_rb && h[kEntries] <= (int64_t{1} << 40) &&
      h[kMaxBody] >= h[kBody] &&
      h[kBody] == BodyLayout(h[kRows], h[kEntries], h_rb, (h[kDtypeWord] >> 8) & 1).total;
  if (!sane) h[kRows] = -1;
  return sane;
}

Status Dispatcher::VerifyDispatchRows(int me, int64_t layer) {
  const int n = static_cast<int>(recv_msg_.size());
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    const int64_t* h = &peer_header_[kHeaderWords * p];
    const int64_t rows = h[kRows], entries = h[kEntries];
    const auto codec = ToCodec(PayloadDtype(h[kDtypeWord] & 0xff));
    const int64_t rb = dispatch_codec::RowBytes(codec, h[kHidden]);
    const Body b = BodyLayout(rows, entries, rb, true);
    const std::byte* body = recv_msg_[p] + kHeaderBytes;
    int64_t seen = 0;
    for (int64_t i = 0; i < rows; ++i) {
      int32_t meta[2];
      std::memcpy(meta, body + b.meta + 8 * i, 8);
      uint64_t sent;
      std::memcpy(&sent, body + b.checks + 8 * i, 8);
      const bool in_bounds = meta[1] >= 0 && seen + meta[1] <= entries;
      const uint64_t got =
          in_bounds ? DispatchRowChecksum(layer, meta[0], meta[1], body + b.experts + 4 * seen,
                                          body + b.weights + 4 * seen, body + i * rb, rb)
                    : ~sent;
      if (got != sent) {
        return DataLossError("dispatch integrity check failed on rank " + std::to_string(me) +
                             ": layer " + std::to_string(layer) + ", row " + std::to_string(i) +
                             " from rank " + std::to_string(p) + " to rank " + std::to_string(me) +
                             " (token " + std::to_string(meta[0]) + " of rank " +
                             std::to_string(p) + "): checksum mismatch");
      }
      if (in_bounds) seen += meta[1];
    }
  }
  return OkStatus();
}

}  // namespace switchyard
