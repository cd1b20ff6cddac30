// FP4 weights x int8 activations (few tokens). Per pair of 64-element groups (64 packed bytes):
// two loads, shifts and masks split the nibbles into even and odd elements (the activation layout
// of fp4_internal.h matches), four byte shuffles give unsigned codes 2·e2m1 + 12 (0..24); then per
// token four vpmaddubsw (no sign transfer needed: the codes are unsigned), two int16 adds, one
// vphaddw + vpmaddwd leaving 8 exact int32 lane sums (one per NVFP4 block of the pair; MXFP4: 2
// lanes per block), one subtraction of the precomputed 12·Σq of each lane, one convert, one
// multiply by the activation scales and one FMA with the weight block scales (decoded 8 at a time
// in registers: E4M3 / E8M0 bit tricks, exact; the scale kind is a template parameter, so the
// usual E4M3 case costs one multiply; NaN scale codes are looked for 16 at a time and patched in
// only where present).
// Few-token calls stream their weights from memory: the weight stream is prefetched 2 KiB ahead
// (the hardware prefetcher stops at 4 KiB pages; rows are 1-4 KiB).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "kernels/cpu/fp4_internal.h"
#include "kernels/fp4_format.h"

namespace switchyard::cpu::fp4_internal {
namespace {

#define SY_AVX2 __attribute__((target("avx2,fma")))
#define SY_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

// 2·e2m1 + kInt8CodeOffset per code: unsigned bytes for vpmaddubsw.
constexpr int8_t kOffsetCodes[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};
static_assert(kInt8CodeOffset == 12);

constexpr int64_t kPairsPerKBlock = 64;  // k-block of 8192 elements: a token's codes (8 KB) stay
                                         // in L1 while the item's rows stream past
constexpr int64_t kPrefetchBytes = 2048;

SY_AVX2_INLINE float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Unsigned codes of a pair: even (a) and odd (b) elements of its groups 0 and 1.
struct PairCodes {
  __m256i a0, b0, a1, b1;
};
SY_AVX2_INLINE PairCodes DecodePair(__m256i v0, __m256i v1) {
  const __m256i table =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kOffsetCodes)));
  const __m256i mask = _mm256_set1_epi8(0x0F);
  return {_mm256_shuffle_epi8(table, _mm256_and_si256(v0, mask)),
          _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v0, 4), mask)),
          _mm256_shuffle_epi8(table, _mm256_and_si256(v1, mask)),
          _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v1, 4), mask))};
}

// int32 lane sums of a pair with the token's 128 codes q: int16 sums of 4 elements (<= 4·24·127,
// no saturation), vphaddw to 8 elements (<= 24384), vpmaddwd to 16 elements of one block each.
SY_AVX2_INLINE __m256i PairDot(const PairCodes& w, const int8_t* q) {
  const __m256i* v = reinterpret_cast<const __m256i*>(q);
  const __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(w.a0, _mm256_loadu_si256(v)),
                                      _mm256_maddubs_epi16(w.b0, _mm256_loadu_si256(v + 1)));
  const __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(w.a1, _mm256_loadu_si256(v + 2)),
                                      _mm256_maddubs_epi16(w.b1, _mm256_loadu_si256(v + 3)));
  return _mm256_madd_epi16(_mm256_hadd_epi16(s0, s1), _mm256_set1_epi16(1));
}

// How a weight's block scales become block factors (2·e2m1 multipliers), chosen once per call:
// E4M3 with the global factor folded into one multiply, E4M3 in two multiplies, or E8M0.
enum ScaleKind { kNvFolded, kNvTwoStep, kMx };

// 8 scale bytes (low 64 bits, already in lane order) -> 8 block factors, as BlockFactor() for
// scale codes that are not NaN (NaN codes: WithNanScales): E4M3 placed under an FP32 exponent of
// -127 (sign from the sign-extended byte), times mul1 = 2^120 · factor where that product is exact
// (kNvFolded: the same single rounding), else times 2^120 then the factor (mul2); E8M0 2^(c-127)
// (code 0 is 2^-127, a subnormal) times the factor (mul2).
template <int KIND>
SY_AVX2_INLINE __m256 DecodeScales(__m128i bytes, __m256 mul1, __m256 mul2) {
  if (KIND == kMx) {
    const __m256i c = _mm256_cvtepu8_epi32(bytes);
    return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_max_epi32(_mm256_slli_epi32(c, 23),
                                                              _mm256_set1_epi32(0x00400000))),
                         mul2);
  }
  const __m256i c = _mm256_cvtepi8_epi32(bytes);
  const __m256i bits =
      _mm256_and_si256(_mm256_slli_epi32(c, 20), _mm256_set1_epi32(static_cast<int>(0x87F00000u)));
  const __m256 f = _mm256_mul_ps(_mm256_castsi256_ps(bits), mul1);
  return KIND == kNvFolded ? f : _mm256_mul_ps(f, mul2);
}

// Bit i set when scale byte i of `bytes` is a NaN code (E4M3 S.1111.111, E8M0 0xFF): rare, so
// the kernel tests 16 scales at once and patches factors only when one is.
template <int KIND>
SY_AVX2_INLINE int NanScaleMask(__m128i bytes) {
  const __m128i c = KIND == kMx ? bytes : _mm_and_si128(bytes, _mm_set1_epi8(0x7F));
  return _mm_movemask_epi8(_mm_cmpeq_epi8(c, _mm_set1_epi8(KIND == kMx ? -1 : 0x7F)));
}

// f with the lanes whose scale byte (low 64 bits of bytes, lane order) is a NaN code set to NaN.
template <int KIND>
SY_AVX2_INLINE __m256 WithNanScales(__m256 f, __m128i bytes) {
  const __m256i c = _mm256_cvtepu8_epi32(bytes);
  const __m256i nan = KIND == kMx ? _mm256_cmpeq_epi32(c, _mm256_set1_epi32(0xFF))
                                  : _mm256_cmpeq_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x7F)),
                                                       _mm256_set1_epi32(0x7F));
  return _mm256_blendv_ps(f, _mm256_set1_ps(__builtin_nanf("")), _mm256_castsi256_ps(nan));
}

// Both halves' factors of 16 scale bytes in lane order (bytes 0-7: f0, 8-15: f1).
template <int KIND>
SY_AVX2_INLINE void ScaleFactors(__m128i sb, __m256 mul1, __m256 mul2, __m256* f0, __m256* f1) {
  const __m128i hi = _mm_srli_si128(sb, 8);
  *f0 = DecodeScales<KIND>(sb, mul1, mul2);
  *f1 = DecodeScales<KIND>(hi, mul1, mul2);
  if (__builtin_expect(NanScaleMask<KIND>(sb) != 0, 0)) {
    *f0 = WithNanScales<KIND>(*f0, sb);
    *f1 = WithNanScales<KIND>(*f1, hi);
  }
}

// acc[i] += the pair's contribution for token i.
template <int MR>
SY_AVX2_INLINE void PairTokens(const PairCodes& c, __m256 ws, const int8_t* q, const int32_t* off,
                               const float* sx, int64_t q_stride, int64_t lane_stride,
                               __m256* acc) {
#pragma GCC unroll 16
  for (int i = 0; i < MR; ++i) {
    const __m256i d = _mm256_sub_epi32(
        PairDot(c, q + i * q_stride),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(off + i * lane_stride)));
    const __m256 st = _mm256_mul_ps(ws, _mm256_loadu_ps(sx + i * lane_stride));
    acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), st, acc[i]);
  }
}

// Rows [r0, r1) for tokens t0 .. t0+MR. k is walked in k-blocks (outer) so the tokens' codes stay
// in L1 while the rows (L2-resident within a work item) stream past; partial sums go into y.
// Whole chunks of two pairs (16 NVFP4 / 8 MXFP4 scale bytes, one load and one shuffle into lane
// order) run in the main loop; an odd last pair or a row's partial last pair is copied into zeroed
// buffers (its lanes past nblocks have activation scale 0).
template <int MR, int64_t PF, int KIND>
SY_AVX2 void RowsAvx2(const Int8Acts& a, int64_t t0, const Fp4Weight& w, int64_t r0, int64_t r1,
                      float* y, int64_t ldy) {
  constexpr bool nv = KIND != kMx;
  const int64_t row_bytes = w.padded_cols / 2, nblocks = a.nblocks, pairs = a.pairs;
  const int64_t q_stride = pairs * 128, lane_stride = pairs * 8;
  const int64_t whole = row_bytes / 64, scale_bytes = nv ? 8 : 4;  // per pair
  const int8_t* q = a.q.data() + t0 * q_stride;
  const int32_t* off = a.lane_offset.data() + t0 * lane_stride;
  const float* sx = a.lane_scale.data() + t0 * lane_stride;
  const float factor = nv ? 0.5f * w.global_scale : 0.5f;
  const __m256 mul1 = _mm256_set1_ps(KIND == kNvFolded ? factor * 0x1p120f : 0x1p120f);
  const __m256 mul2 = _mm256_set1_ps(factor);
  const __m128i order = nv ? _mm_setr_epi8(0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15)
                           : _mm_setr_epi8(0, 0, 2, 2, 1, 1, 3, 3, 4, 4, 6, 6, 5, 5, 7, 7);
  for (int64_t kb = 0; kb < pairs; kb += kPairsPerKBlock) {
    const int64_t kb_end = std::min(pairs, kb + kPairsPerKBlock);
    const int64_t chunk_end = kb + (std::min(kb_end, whole) - kb) / 2 * 2;
    if (PF > 0) {  // the first PF bytes of the first row (the loop prefetches the rest)
      const uint8_t* p = w.packed.data() + r0 * row_bytes + kb * 64;
      const uint8_t* s = w.scales.data() + r0 * nblocks + kb * scale_bytes;
      for (int64_t o = 0; o < PF; o += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
      }
      for (int64_t o = 0; o < PF / 8; o += 64) {
        _mm_prefetch(reinterpret_cast<const char*>(s + o), _MM_HINT_T0);
      }
    }
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* p = w.packed.data() + r * row_bytes;
      const uint8_t* s = w.scales.data() + r * nblocks;
      __m256 acc[MR];
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
      int64_t pr = kb;
      for (; pr < chunk_end; pr += 2) {
        if (PF > 0) {
          _mm_prefetch(reinterpret_cast<const char*>(p + pr * 64 + PF), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(p + pr * 64 + 64 + PF), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(s + pr * scale_bytes + PF / 8), _MM_HINT_T0);
        }
        const __m128i sb =
            _mm_shuffle_epi8(nv ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + pr * 8))
                                : _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + pr * 4)),
                             order);
        __m256 ws0, ws1;
        ScaleFactors<KIND>(sb, mul1, mul2, &ws0, &ws1);
        const auto* v = reinterpret_cast<const __m256i*>(p + pr * 64);
        PairTokens<MR>(DecodePair(_mm256_loadu_si256(v), _mm256_loadu_si256(v + 1)), ws0,
                       q + pr * 128, off + pr * 8, sx + pr * 8, q_stride, lane_stride, acc);
        PairTokens<MR>(DecodePair(_mm256_loadu_si256(v + 2), _mm256_loadu_si256(v + 3)), ws1,
                       q + pr * 128 + 128, off + pr * 8 + 8, sx + pr * 8 + 8, q_stride, lane_stride,
                       acc);
      }
      for (; pr < kb_end; ++pr) {
        alignas(32) uint8_t bytes[64] = {};
        alignas(16) uint8_t sc[16] = {};
        std::memcpy(bytes, p + pr * 64, std::min<int64_t>(64, row_bytes - pr * 64));
        std::memcpy(sc, s + pr * scale_bytes,
                    std::min<int64_t>(scale_bytes, nblocks - pr * scale_bytes));
        const __m128i sb =
            _mm_shuffle_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc)), order);
        const auto* v = reinterpret_cast<const __m256i*>(bytes);
        __m256 ws0, ws1;
        ScaleFactors<KIND>(sb, mul1, mul2, &ws0, &ws1);
        PairTokens<MR>(DecodePair(_mm256_load_si256(v), _mm256_load_si256(v + 1)), ws0,
                       q + pr * 128, off + pr * 8, sx + pr * 8, q_stride, lane_stride, acc);
      }
#pragma GCC unroll 16
      for (int i = 0; i < MR; ++i) {
        float* out = y + (t0 + i) * ldy + r;
        *out = kb == 0 ? HSum(acc[i]) : *out + HSum(acc[i]);
      }
    }
  }
}

// Portable: exact int32 block dots, one FP32 multiply-add per block.
void RowsScalar(const Int8Acts& a, const Fp4Weight& w, int64_t r0, int64_t r1, float* y,
                int64_t ldy) {
  const int block = Fp4BlockSize(w.format);
  const int64_t row_bytes = w.padded_cols / 2;
  for (int64_t t = 0; t < a.m; ++t) {
    const int8_t* q = a.q.data() + t * a.pairs * 128;
    const float* sx = a.scale.data() + t * a.nblocks;
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* p = w.packed.data() + r * row_bytes;
      float acc = 0.0f;
      for (int64_t b = 0; b < a.nblocks; ++b) {
        int32_t dot = 0;
        for (int j = 0; j < block; ++j) {
          const int64_t e = b * block + j;
          const int o = static_cast<int>(e % 64), within = o % 32;
          const int8_t qe = q[e / 64 * 64 + ((within & 1) ? 32 : 0) + o / 32 * 16 + within / 2];
          dot += qe * kTwiceE2m1[fp4::UnpackE2m1(p, e)];
        }
        acc += static_cast<float>(dot) * (BlockFactor(w, w.scales[r * a.nblocks + b]) * sx[b]);
      }
      y[t * ldy + r] = acc;
    }
  }
}

}  // namespace

int64_t Int8LaneBlock(Fp4Format format, int64_t pair, int lane) {
  // vphaddw + vpmaddwd leave, per 128-bit half h, lanes (group 0, group 1) x (2 quarters); an
  // NVFP4 block is a quarter of a group, an MXFP4 block a half.
  static constexpr int kNv[8] = {0, 1, 4, 5, 2, 3, 6, 7};
  static constexpr int kMx[8] = {0, 0, 2, 2, 1, 1, 3, 3};
  return format == Fp4Format::kNvFp4 ? 8 * pair + kNv[lane] : 4 * pair + kMx[lane];
}

SY_AVX2 void Int8LaneOffsets(const int8_t* q, int32_t* lane_offset) {
  const __m256i c = _mm256_set1_epi8(kInt8CodeOffset);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(lane_offset), PairDot({c, c, c, c}, q));
}

namespace {

// RowsAvx2 for the weight's scale kind (kNvFolded when 2^120 · factor is exact).
template <int MR, int64_t PF>
void RowsAvx2Any(const Int8Acts& a, int64_t t0, const Fp4Weight& w, int64_t r0, int64_t r1,
                 float* y, int64_t ldy) {
  if (w.format == Fp4Format::kMxFp4) {
    RowsAvx2<MR, PF, kMx>(a, t0, w, r0, r1, y, ldy);
    return;
  }
  const float factor = 0.5f * w.global_scale;
  if (factor < 0x1p7f && factor >= 0x1p-126f) {
    RowsAvx2<MR, PF, kNvFolded>(a, t0, w, r0, r1, y, ldy);
  } else {
    RowsAvx2<MR, PF, kNvTwoStep>(a, t0, w, r0, r1, y, ldy);
  }
}

// Tokens [t0, t0 + mr), mr in 1..3: the first pass over the rows prefetches.
template <int MR>
void RowsTail(const Int8Acts& a, int64_t t0, bool first, const Fp4Weight& w, int64_t r0, int64_t r1,
              float* y, int64_t ldy) {
  if (first) {
    RowsAvx2Any<MR, kPrefetchBytes>(a, t0, w, r0, r1, y, ldy);
  } else {
    RowsAvx2Any<MR, 0>(a, t0, w, r0, r1, y, ldy);
  }
}

}  // namespace

void Int8Rows(const Int8Acts& a, const Fp4Weight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy) {
  if (!HasAvx2()) {
    RowsScalar(a, w, r0, r1, y, ldy);
    return;
  }
  // The first pass over the rows streams them from memory (prefetched); later passes (4 tokens
  // each) find the work item's rows in L2, where a prefetch would only cost issue slots.
  int64_t t = 0;
  if (a.m >= 4) {
    RowsAvx2Any<4, kPrefetchBytes>(a, 0, w, r0, r1, y, ldy);
    t = 4;
  }
  for (; t + 4 <= a.m; t += 4) RowsAvx2Any<4, 0>(a, t, w, r0, r1, y, ldy);
  const bool first = t == 0;
  switch (a.m - t) {
    case 3:
      RowsTail<3>(a, t, first, w, r0, r1, y, ldy);
      break;
    case 2:
      RowsTail<2>(a, t, first, w, r0, r1, y, ldy);
      break;
    case 1:
      RowsTail<1>(a, t, first, w, r0, r1, y, ldy);
      break;
    default:
      break;
  }
}

}  // namespace switchyard::cpu::fp4_internal
