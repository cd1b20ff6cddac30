#include "transport/dispatch.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "common/dtype.h"

namespace switchyard {

const char* PayloadDtypeName(PayloadDtype dtype) {
  switch (dtype) {
    case PayloadDtype::kF32:
      return "f32";
    case PayloadDtype::kBF16:
      return "bf16";
  }
  return "?";
}

int64_t PayloadDtypeSize(PayloadDtype dtype) { return dtype == PayloadDtype::kBF16 ? 2 : 4; }

namespace {

constexpr int kHeaderWords = 4;  // {rows, entries, hidden, dtype} per peer
constexpr int64_t kHeaderBytes = kHeaderWords * sizeof(int64_t);

bool ValidDtype(int64_t d) {
  return d == static_cast<int64_t>(PayloadDtype::kF32) ||
         d == static_cast<int64_t>(PayloadDtype::kBF16);
}

int64_t Pad4(int64_t n) { return (n + 3) & ~int64_t{3}; }

// Bytes of one peer's dispatch message: rows, per-row entry counts (int32), entries' local
// expert (int32) and weight (float).
int64_t MessageBytes(int64_t rows, int64_t entries, int64_t hidden, int64_t elem_size) {
  return Pad4(rows * hidden * elem_size) + 4 * rows + 8 * entries;
}

// The BF16 kernels below have AVX2 versions chosen at run time; they compute exactly what the
// scalar F32ToBf16 / Bf16ToF32 compute (round to nearest even, NaN kept quiet), 8 values a step.
bool HaveAvx2() {
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return avx2;
}

__attribute__((target("avx2"))) void EncodeBf16Avx2(const float* src, int64_t n, std::byte* dst) {
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i quiet = _mm256_set1_epi32(0x40);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), lsb), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    const __m256i nan_bits = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
    const __m256i bits = _mm256_blendv_epi8(rounded, nan_bits, nan);
    // 8 x u32 (each < 2^16) -> 8 x u16 in order.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; ++i) {
    const uint16_t b = F32ToBf16(src[i]);
    std::memcpy(dst + 2 * i, &b, 2);
  }
}

__attribute__((target("avx2"))) inline __m256 LoadBf16x8(const std::byte* src) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

__attribute__((target("avx2"))) void DecodeBf16Avx2(const std::byte* src, int64_t n, float* dst,
                                                    bool accumulate) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = LoadBf16x8(src + 2 * i);
    _mm256_storeu_ps(dst + i, accumulate ? _mm256_add_ps(_mm256_loadu_ps(dst + i), v) : v);
  }
  for (; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, src + 2 * i, 2);
    dst[i] = accumulate ? dst[i] + Bf16ToF32(b) : Bf16ToF32(b);
  }
}

// Converts n FP32 values to the transit dtype at dst (unaligned bytes).
void EncodeRow(const float* src, int64_t n, PayloadDtype dtype, std::byte* dst) {
  if (dtype == PayloadDtype::kF32) {
    std::memcpy(dst, src, n * sizeof(float));
    return;
  }
  if (HaveAvx2()) {
    EncodeBf16Avx2(src, n, dst);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t b = F32ToBf16(src[i]);
    std::memcpy(dst + 2 * i, &b, 2);
  }
}

// Widens n transit values at src to FP32.
void DecodeRow(const std::byte* src, int64_t n, PayloadDtype dtype, float* dst) {
  if (dtype == PayloadDtype::kF32) {
    std::memcpy(dst, src, n * sizeof(float));
    return;
  }
  if (HaveAvx2()) {
    DecodeBf16Avx2(src, n, dst, /*accumulate=*/false);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, src + 2 * i, 2);
    dst[i] = Bf16ToF32(b);
  }
}

// dst[i] += transit value i.
void AccumulateRow(const std::byte* src, int64_t n, PayloadDtype dtype, float* dst) {
  if (dtype == PayloadDtype::kF32) {
    for (int64_t i = 0; i < n; ++i) {
      float v;
      std::memcpy(&v, src + 4 * i, 4);
      dst[i] += v;
    }
    return;
  }
  if (HaveAvx2()) {
    DecodeBf16Avx2(src, n, dst, /*accumulate=*/true);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, src + 2 * i, 2);
    dst[i] += Bf16ToF32(b);
  }
}

std::string RankList(const std::vector<int>& ranks) {
  return (ranks.size() == 1 ? "rank " : "ranks ") + transport_internal::FormatRanks(ranks);
}

std::span<const std::byte> ConstBytes(const std::vector<std::byte>& v, int64_t n) {
  return std::span<const std::byte>(v.data(), static_cast<size_t>(n));
}
std::span<std::byte> Bytes(std::vector<std::byte>& v, int64_t n) {
  return std::span<std::byte>(v.data(), static_cast<size_t>(n));
}

}  // namespace

void SumEntriesPerRow(const ReceivedTokens& received, const float* entry_out, float* row_out) {
  const int64_t h = received.hidden;
  for (int64_t i = 0; i < received.num_rows(); ++i) {
    float* acc = row_out + i * h;
    std::fill(acc, acc + h, 0.0f);
    for (int64_t j = received.entry_prefix[i]; j < received.entry_prefix[i + 1]; ++j) {
      const float w = received.entry_weight[j];
      const float* v = entry_out + j * h;
      // dispatch.cc is compiled with -ffp-contract=off: a product then a sum, never an FMA.
      for (int64_t k = 0; k < h; ++k) acc[k] += w * v[k];
    }
  }
}

Status Dispatcher::Dispatch(Transport& t, const DispatchLayout& layout, const float* hidden_states,
                            int64_t hidden, PayloadDtype dtype, Deadline deadline,
                            ReceivedTokens* received) {
  ready_ = false;
  const int n = t.world_size();
  const int me = t.rank();
  // Built only on error paths (no allocation per call).
  auto where = [me] { return "dispatch on rank " + std::to_string(me); };
  if (received == nullptr) return InvalidArgumentError(where() + ": null output");
  if (layout.world_size != n || static_cast<int>(layout.rank_prefix.size()) != n + 1 ||
      static_cast<int>(layout.num_tokens_per_expert.size()) != n ||
      static_cast<int64_t>(layout.entry_prefix.size()) != layout.num_rows() + 1 ||
      layout.rank_prefix[n] != layout.num_rows()) {
    return InvalidArgumentError(where() + ": layout is for a world of " +
                                std::to_string(layout.world_size) + " ranks (or malformed), not " +
                                std::to_string(n));
  }
  if (hidden <= 0) {
    return InvalidArgumentError(where() + ": hidden size " + std::to_string(hidden) +
                                " must be > 0");
  }
  if (!ValidDtype(static_cast<int64_t>(dtype))) {
    return InvalidArgumentError(where() + ": unknown payload dtype");
  }
  if (layout.num_tokens > 0 && hidden_states == nullptr) {
    return InvalidArgumentError(where() + ": null hidden states for " +
                                std::to_string(layout.num_tokens) + " tokens");
  }
  const int64_t esize = PayloadDtypeSize(dtype);
  const int32_t num_local_experts = static_cast<int32_t>(layout.num_tokens_per_expert[me].size());

  // (a) Headers: {rows, entries, hidden, dtype} to every peer.
  header_send_.resize(kHeaderWords * n);
  header_recv_.resize(kHeaderWords * n);
  header_counts_.assign(n, kHeaderBytes);
  header_offsets_.resize(n);
  for (int p = 0; p < n; ++p) {
    const int64_t first = layout.rank_prefix[p], last = layout.rank_prefix[p + 1];
    int64_t* h = &header_send_[kHeaderWords * p];
    h[0] = last - first;
    h[1] = layout.entry_prefix[last] - layout.entry_prefix[first];
    h[2] = hidden;
    h[3] = static_cast<int64_t>(dtype);
    header_offsets_[p] = kHeaderBytes * p;
  }
  RETURN_IF_ERROR(t.AllToAllV(std::as_bytes(std::span<const int64_t>(header_send_)), header_counts_,
                              header_offsets_,
                              std::as_writable_bytes(std::span<int64_t>(header_recv_)),
                              header_counts_, header_offsets_, deadline)
                      .WithContext("dispatch counts"));

  // (b) Payload. Each side sizes a message with the sender's hidden size and dtype, so counts
  // agree even when peers disagree on them; the disagreement is reported after the exchange.
  send_counts_.resize(n);
  send_offsets_.resize(n);
  recv_counts_.resize(n);
  recv_offsets_.resize(n);
  int64_t send_total = 0, recv_total = 0;
  std::vector<int> mismatched, malformed;
  for (int p = 0; p < n; ++p) {
    const int64_t* s = &header_send_[kHeaderWords * p];
    send_counts_[p] = MessageBytes(s[0], s[1], hidden, esize);
    send_offsets_[p] = send_total;
    send_total += send_counts_[p];
    const int64_t* r = &header_recv_[kHeaderWords * p];
    const bool sane = r[0] >= 0 && r[1] >= 0 && r[2] > 0 && ValidDtype(r[3]) &&
                      r[0] <= (int64_t{1} << 40) / r[2] && r[1] <= (int64_t{1} << 40);
    if (!sane) {
      malformed.push_back(p);
      recv_counts_[p] = 0;  // the transport then reports the count mismatch naming p
    } else {
      if (r[2] != hidden || r[3] != static_cast<int64_t>(dtype)) mismatched.push_back(p);
      recv_counts_[p] = MessageBytes(r[0], r[1], r[2], PayloadDtypeSize(PayloadDtype(r[3])));
    }
    recv_offsets_[p] = recv_total;
    recv_total += recv_counts_[p];
  }
  if (static_cast<int64_t>(send_buf_.size()) < send_total) send_buf_.resize(send_total);
  if (static_cast<int64_t>(recv_buf_.size()) < recv_total) recv_buf_.resize(recv_total);
  for (int p = 0; p < n; ++p) {
    const int64_t first = layout.rank_prefix[p], last = layout.rank_prefix[p + 1];
    const int64_t rows = last - first;
    const int64_t e0 = layout.entry_prefix[first], entries = layout.entry_prefix[last] - e0;
    std::byte* dst = send_buf_.data() + send_offsets_[p];
    for (int64_t row = first; row < last; ++row) {
      const int64_t tok = layout.row_token_idx[row];
      EncodeRow(hidden_states + tok * hidden, hidden, dtype, dst + (row - first) * hidden * esize);
    }
    dst += Pad4(rows * hidden * esize);
    for (int64_t row = first; row < last; ++row) {
      const int32_t c =
          static_cast<int32_t>(layout.entry_prefix[row + 1] - layout.entry_prefix[row]);
      std::memcpy(dst + 4 * (row - first), &c, 4);
    }
    dst += 4 * rows;
    if (entries > 0) {
      std::memcpy(dst, layout.entry_local_expert.data() + e0, 4 * entries);
      std::memcpy(dst + 4 * entries, layout.entry_weight.data() + e0, 4 * entries);
    }
  }
  RETURN_IF_ERROR(t.AllToAllV(ConstBytes(send_buf_, send_total), send_counts_, send_offsets_,
                              Bytes(recv_buf_, recv_total), recv_counts_, recv_offsets_, deadline)
                      .WithContext("dispatch payload"));
  if (!malformed.empty()) {
    return DataLossError(where() + ": malformed dispatch header from " + RankList(malformed));
  }
  if (!mismatched.empty()) {
    std::string detail;
    for (int p : mismatched) {
      const int64_t* r = &header_recv_[kHeaderWords * p];
      detail += (detail.empty() ? "" : "; ") + std::string("rank ") + std::to_string(p) +
                " sends hidden " + std::to_string(r[2]) + " as " +
                PayloadDtypeName(PayloadDtype(r[3]));
    }
    return InvalidArgumentError(where() + " (hidden " + std::to_string(hidden) + " as " +
                                PayloadDtypeName(dtype) + "): peers disagree: " + detail);
  }

  // (c) Unpack: rows by source rank, entries by row, then entries grouped by local expert.
  ReceivedTokens& out = *received;
  out.world_size = n;
  out.hidden = hidden;
  out.num_local_experts = num_local_experts;
  out.source_prefix.resize(n + 1);
  out.source_prefix[0] = 0;
  int64_t total_entries = 0;
  for (int p = 0; p < n; ++p) {
    out.source_prefix[p + 1] = out.source_prefix[p] + header_recv_[kHeaderWords * p];
    total_entries += header_recv_[kHeaderWords * p + 1];
  }
  const int64_t total_rows = out.source_prefix[n];
  out.rows.resize(total_rows * hidden);
  out.entry_prefix.resize(total_rows + 1);
  out.entry_prefix[0] = 0;
  out.entry_row.resize(total_entries);
  out.entry_local_expert.resize(total_entries);
  out.entry_weight.resize(total_entries);
  int64_t entry_base = 0;
  for (int p = 0; p < n; ++p) {
    const int64_t rows = header_recv_[kHeaderWords * p];
    const int64_t entries = header_recv_[kHeaderWords * p + 1];
    const int64_t row_base = out.source_prefix[p];
    const std::byte* src = recv_buf_.data() + recv_offsets_[p];
    for (int64_t i = 0; i < rows; ++i) {
      DecodeRow(src + i * hidden * esize, hidden, dtype, out.rows.data() + (row_base + i) * hidden);
    }
    src += Pad4(rows * hidden * esize);
    int64_t seen = 0;
    for (int64_t i = 0; i < rows; ++i) {
      int32_t c;
      std::memcpy(&c, src + 4 * i, 4);
      if (c < 0 || seen + c > entries) {
        return DataLossError(where() + ": rank " + std::to_string(p) + " sent row " +
                             std::to_string(i) + " with a bad entry count " + std::to_string(c));
      }
      for (int64_t j = 0; j < c; ++j) out.entry_row[entry_base + seen + j] = row_base + i;
      seen += c;
      out.entry_prefix[row_base + i + 1] = entry_base + seen;
    }
    if (seen != entries) {
      return DataLossError(where() + ": rank " + std::to_string(p) + " announced " +
                           std::to_string(entries) + " entries but its rows list " +
                           std::to_string(seen));
    }
    src += 4 * rows;
    if (entries > 0) {
      std::memcpy(out.entry_local_expert.data() + entry_base, src, 4 * entries);
      std::memcpy(out.entry_weight.data() + entry_base, src + 4 * entries, 4 * entries);
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

  // Bookkeeping for Combine.
  world_ = n;
  hidden_ = hidden;
  num_tokens_ = layout.num_tokens;
  sent_rank_prefix_.assign(layout.rank_prefix.begin(), layout.rank_prefix.end());
  sent_row_token_.assign(layout.row_token_idx.begin(), layout.row_token_idx.end());
  recv_rank_prefix_.assign(out.source_prefix.begin(), out.source_prefix.end());
  ready_ = true;
  return OkStatus();
}

Status Dispatcher::Combine(Transport& t, const float* row_out, PayloadDtype dtype,
                           Deadline deadline, float* out) {
  const int me = t.rank();
  auto where = [me] { return "combine on rank " + std::to_string(me); };
  if (!ready_) return FailedPreconditionError(where() + ": no successful Dispatch to combine");
  const int n = world_;
  if (t.world_size() != n) {
    return InvalidArgumentError(where() + ": transport world of " + std::to_string(t.world_size()) +
                                " ranks, dispatched over " + std::to_string(n));
  }
  if (!ValidDtype(static_cast<int64_t>(dtype))) {
    return InvalidArgumentError(where() + ": unknown payload dtype");
  }
  const int64_t recv_rows = recv_rank_prefix_[n];
  if (recv_rows > 0 && row_out == nullptr) {
    return InvalidArgumentError(where() + ": null expert output for " + std::to_string(recv_rows) +
                                " received rows");
  }
  if (num_tokens_ > 0 && out == nullptr) {
    return InvalidArgumentError(where() + ": null output for " + std::to_string(num_tokens_) +
                                " tokens");
  }
  const int64_t h = hidden_, esize = PayloadDtypeSize(dtype), row_bytes = h * esize;
  send_counts_.resize(n);
  send_offsets_.resize(n);
  recv_counts_.resize(n);
  recv_offsets_.resize(n);
  for (int p = 0; p < n; ++p) {
    // Back to each source the rows it sent here; from each destination the rows sent there.
    send_counts_[p] = (recv_rank_prefix_[p + 1] - recv_rank_prefix_[p]) * row_bytes;
    send_offsets_[p] = recv_rank_prefix_[p] * row_bytes;
    recv_counts_[p] = (sent_rank_prefix_[p + 1] - sent_rank_prefix_[p]) * row_bytes;
    recv_offsets_[p] = sent_rank_prefix_[p] * row_bytes;
  }
  const int64_t send_total = recv_rows * row_bytes;
  const int64_t recv_total = sent_rank_prefix_[n] * row_bytes;
  std::span<const std::byte> send;
  if (dtype == PayloadDtype::kF32) {
    // Sent straight from the caller's rows.
    send = std::span<const std::byte>(reinterpret_cast<const std::byte*>(row_out),
                                      static_cast<size_t>(send_total));
  } else {
    if (static_cast<int64_t>(send_buf_.size()) < send_total) send_buf_.resize(send_total);
    for (int64_t i = 0; i < recv_rows; ++i) {
      EncodeRow(row_out + i * h, h, dtype, send_buf_.data() + i * row_bytes);
    }
    send = ConstBytes(send_buf_, send_total);
  }
  if (static_cast<int64_t>(recv_buf_.size()) < recv_total) recv_buf_.resize(recv_total);
  RETURN_IF_ERROR(t.AllToAllV(send, send_counts_, send_offsets_, Bytes(recv_buf_, recv_total),
                              recv_counts_, recv_offsets_, deadline)
                      .WithContext("combine"));
  // Rows are in layout order (destination rank ascending), so each token sums its ranks'
  // contributions in ascending rank order, starting from +0: the first contribution is written as
  // 0 + v (one pass instead of a zero fill and an add), later ones are added.
  token_started_.assign(num_tokens_, 0);
  for (int64_t row = 0; row < sent_rank_prefix_[n]; ++row) {
    const int64_t token = sent_row_token_[row];
    float* dst = out + token * h;
    if (!token_started_[token]) {
      DecodeRow(recv_buf_.data() + row * row_bytes, h, dtype, dst);
      for (int64_t k = 0; k < h; ++k) dst[k] = 0.0f + dst[k];  // turns -0 into +0, as 0 + v does
      token_started_[token] = 1;
    } else {
      AccumulateRow(recv_buf_.data() + row * row_bytes, h, dtype, dst);
    }
  }
  for (int64_t token = 0; token < num_tokens_; ++token) {
    if (!token_started_[token]) std::fill(out + token * h, out + (token + 1) * h, 0.0f);
  }
  return OkStatus();
}

}  // namespace switchyard
