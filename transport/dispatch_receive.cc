// Dispatch, receiving side: received messages (and this rank's own rows) -> ReceivedTokens; and
// the wire helpers shared with Combine.
#include <cstring>
#include <mutex>
#include <string>

#include "transport/dispatch.h"
#include "transport/dispatch_wire.h"
#include "transport/transport.h"

namespace switchyard {
namespace dispatch_wire {
namespace {

constexpr uint64_t kHeaderSalt = 0x5348445259415244ull;    // distinct seeds per use, so a row
constexpr uint64_t kDispatchSalt = 0x6469737061746368ull;  // checksum never validates a header
constexpr uint64_t kCombineSalt = 0x636f6d62696e6521ull;   // or a combine row by accident

}  // namespace

uint64_t HeaderChecksum(const int64_t* words) {
  return dispatch_codec::Checksum64(words, 8 * (kHeaderWords - 1), kHeaderSalt);
}

uint64_t DispatchRowChecksum(int64_t layer, int32_t token, int32_t count, const std::byte* experts,
                             const std::byte* weights, const std::byte* row, int64_t row_bytes) {
  const int32_t meta[2] = {token, count};
  uint64_t s = dispatch_codec::Checksum64(meta, 8, kDispatchSalt ^ static_cast<uint64_t>(layer));
  s = dispatch_codec::Checksum64(experts, 4 * int64_t{count}, s);
  s = dispatch_codec::Checksum64(weights, 4 * int64_t{count}, s);
  return dispatch_codec::Checksum64(row, row_bytes, s);
}

uint64_t CombineRowChecksum(int64_t layer, int64_t token, const std::byte* row, int64_t row_bytes) {
  const int64_t meta[2] = {layer, token};
  return dispatch_codec::Checksum64(row, row_bytes,
                                    dispatch_codec::Checksum64(meta, 16, kCombineSalt));
}

void Quarantine(std::vector<std::byte>&& buffer) {
  static std::mutex mu;
  // Never destroyed: a backend may touch these until MPI_Finalize or process exit.
  static auto* kept = new std::vector<std::vector<std::byte>>();
  if (buffer.empty()) return;
  std::lock_guard<std::mutex> lock(mu);
  kept->push_back(std::move(buffer));
  buffer = std::vector<std::byte>();
}

std::string RankList(const std::vector<int>& ranks) {
  return (ranks.size() == 1 ? "rank " : "ranks ") + transport_internal::FormatRanks(ranks);
}

}  // namespace dispatch_wire

using namespace dispatch_wire;  // NOLINT: this file implements the wire format

Status Dispatcher::Unpack(int me, const DispatchLayout& layout, const float* x, const uint16_t* xb,
                          bool in_place, int64_t hidden, PayloadDtype dtype,
                          ReceivedTokens* received) {
  const int n = layout.world_size;
  ReceivedTokens& out = *received;
  out.hidden = hidden;
  const int64_t h = hidden;
  const auto codec = ToCodec(dtype);
  const int64_t rb = dispatch_codec::RowBytes(codec, h);
  const int32_t num_local_experts = static_cast<int32_t>(layout.num_tokens_per_expert[me].size());
  auto where = [me] { return "dispatch on rank " + std::to_string(me); };
  out.world_size = n;
  out.num_local_experts = num_local_experts;
  out.source_prefix.resize(n + 1);
  out.source_prefix[0] = 0;
  int64_t total_entries = 0;
  for (int p = 0; p < n; ++p) {
    int64_t rows, entries;
    if (p == me) {
      const int64_t first = layout.rank_prefix[me], last = layout.rank_prefix[me + 1];
      rows = last - first;
      entries = layout.entry_prefix[last] - layout.entry_prefix[first];
    } else {
      rows = peer_header_[kHeaderWords * p + kRows];
      entries = peer_header_[kHeaderWords * p + kEntries];
    }
    out.source_prefix[p + 1] = out.source_prefix[p] + rows;
    total_entries += entries;
  }
  const int64_t total_rows = out.source_prefix[n];
  // BF16 in: views into the receive buffer and the hidden states, no FP32 copy.
  if (in_place) {
    out.rows.clear();
    out.bf16_rows.resize(total_rows);
  } else {
    out.rows.resize(total_rows * h);
    out.bf16_rows.clear();
  }
  out.row_source_token.resize(total_rows);
  out.entry_prefix.resize(total_rows + 1);
  out.entry_prefix[0] = 0;
  out.entry_row.resize(total_entries);
  out.entry_local_expert.resize(total_entries);
  out.entry_weight.resize(total_entries);
  int64_t entry_base = 0;
  for (int p = 0; p < n; ++p) {
    const int64_t row_base = out.source_prefix[p];
    const int64_t rows = out.source_prefix[p + 1] - row_base;
    int64_t entries;
    if (p == me) {
      // This rank's own rows: straight from the hidden states, rounded as transit would.
      const int64_t first = layout.rank_prefix[me], e0 = layout.entry_prefix[first];
      entries = layout.entry_prefix[first + rows] - e0;
      for (int64_t i = 0; i < rows; ++i) {
        const int64_t tok = layout.row_token_idx[first + i];
        if (in_place) {
          out.bf16_rows[row_base + i] = xb + tok * h;
        } else {
          dispatch_codec::RoundTripRow(x + tok * h, h, codec, out.rows.data() + (row_base + i) * h,
                                       /*accumulate=*/false);
        }
        out.row_source_token[row_base + i] = tok;
        for (int64_t j = layout.entry_prefix[first + i]; j < layout.entry_prefix[first + i + 1];
             ++j) {
          out.entry_row[entry_base + j - e0] = row_base + i;
        }
        out.entry_prefix[row_base + i + 1] = entry_base + layout.entry_prefix[first + i + 1] - e0;
      }
      if (entries > 0) {
        std::memcpy(out.entry_local_expert.data() + entry_base,
                    layout.entry_local_expert.data() + e0, 4 * entries);
        std::memcpy(out.entry_weight.data() + entry_base, layout.entry_weight.data() + e0,
                    4 * entries);
      }
    } else {
      entries = peer_header_[kHeaderWords * p + kEntries];
      const Body b = BodyLayout(rows, entries, rb, options_.integrity);
      const std::byte* body = recv_msg_[p] + kHeaderBytes;
      for (int64_t i = 0; i < rows; ++i) {
        if (in_place) {
          // Rows start 2-byte aligned: slots are 8-aligned, the header 64 bytes, rows 2h bytes.
          out.bf16_rows[row_base + i] = reinterpret_cast<const uint16_t*>(body + i * rb);
        } else {
          dispatch_codec::DecodeRow(body + i * rb, h, codec, out.rows.data() + (row_base + i) * h,
                                    /*accumulate=*/false);
        }
      }
      int64_t seen = 0;
      for (int64_t i = 0; i < rows; ++i) {
        int32_t meta[2];
        std::memcpy(meta, body + b.meta + 8 * i, 8);
        const int32_t c = meta[1];
        if (meta[0] < 0 || c < 0 || seen + c > entries) {
          return DataLossError(where() + ": rank " + std::to_string(p) + " sent row " +
                               std::to_string(i) + " with a bad token index " +
                               std::to_string(meta[0]) + " or entry count " + std::to_string(c));
        }
        out.row_source_token[row_base + i] = meta[0];
        for (int64_t j = 0; j < c; ++j) out.entry_row[entry_base + seen + j] = row_base + i;
        seen += c;
        out.entry_prefix[row_base + i + 1] = entry_base + seen;
      }
      if (seen != entries) {
        return DataLossError(where() + ": rank " + std::to_string(p) + " announced " +
                             std::to_string(entries) + " entries but its rows list " +
                             std::to_string(seen));
      }
      if (entries > 0) {
        std::memcpy(out.entry_local_expert.data() + entry_base, body + b.experts, 4 * entries);
        std::memcpy(out.entry_weight.data() + entry_base, body + b.weights, 4 * entries);
      }
    }
    for (int64_t j = entry_base; j < entry_base + entries; ++j) {
      const int32_t e = out.entry_local_expert[j];
      if (e < 0 || e >= num_local_experts) {
        return DataLossError(where() + ": rank " + std::to_string(p) + " sent an entry for local " +
                             "expert " + std::to_string(e) + ", this rank has " +
                             std::to_string(num_local_experts));
      }
    }
    entry_base += entries;
  }
  // The entries grouped by local expert (a counting sort, stable: ascending entry index).
  out.expert_prefix.assign(num_local_experts + 1, 0);
  for (int64_t j = 0; j < total_entries; ++j) ++out.expert_prefix[out.entry_local_expert[j] + 1];
  for (int32_t e = 0; e < num_local_experts; ++e) {
    out.expert_prefix[e + 1] += out.expert_prefix[e];
  }
  out.expert_entries.resize(total_entries);
  // Fill through expert_prefix shifted by one, then shift back (no extra buffer).
  for (int64_t j = 0; j < total_entries; ++j) {
    out.expert_entries[out.expert_prefix[out.entry_local_expert[j]]++] = j;
  }
  for (int32_t e = num_local_experts; e > 0; --e) out.expert_prefix[e] = out.expert_prefix[e - 1];
  out.expert_prefix[0] = 0;
  return OkStatus();
}

}  // namespace switchyard
