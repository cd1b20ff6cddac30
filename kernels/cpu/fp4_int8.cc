// FP4 weights x int8 activations (few tokens). Per 64 weights (32 packed bytes): one load, a
// shift and two masks split the nibbles into even and odd elements (the activation layout of
// fp4_internal.h matches), four byte shuffles give 2·e2m1 and |2·e2m1| for both; then per token:
// two sign-transfers and vpmaddubsw, one int16 add, one vpmaddwd (exact int32 sums of 8 products),
// one convert, one permute of the precomputed weight x activation block scales and one FMA.
// Weight scales are decoded 8 at a time in registers (E4M3 / E8M0 bit tricks, exact, NaN kept).
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/fp4_internal.h"
#include "kernels/fp4_format.h"

namespace switchyard::cpu::fp4_internal {
namespace {

constexpr int8_t kAbsTwiceE2m1[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, 1, 2, 3, 4, 6, 8, 12};

#define SY_AVX2 __attribute__((target("avx2,fma")))
#define SY_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

SY_AVX2_INLINE float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 scale bytes (low 64 bits of `bytes`) -> 8 block factors (scale · factor), as BlockFactor().
SY_AVX2_INLINE __m256 DecodeScales(__m128i bytes, bool nv, __m256 factor) {
  const __m256i c = _mm256_cvtepu8_epi32(bytes);
  __m256 f;
  __m256i nan;
  if (nv) {  // E4M3: sign, 4-bit exponent, 3-bit mantissa placed under an FP32 exponent of -127
    const __m256i mag = _mm256_and_si256(c, _mm256_set1_epi32(0x7F));
    const __m256i bits =
        _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24),
                        _mm256_slli_epi32(mag, 20));
    f = _mm256_mul_ps(_mm256_castsi256_ps(bits), _mm256_set1_ps(0x1p120f));
    nan = _mm256_cmpeq_epi32(mag, _mm256_set1_epi32(0x7F));
  } else {  // E8M0: 2^(c-127); code 0 is 2^-127 (a subnormal), 0xFF NaN
    f = _mm256_castsi256_ps(
        _mm256_max_epi32(_mm256_slli_epi32(c, 23), _mm256_set1_epi32(0x00400000)));
    nan = _mm256_cmpeq_epi32(c, _mm256_set1_epi32(0xFF));
  }
  f = _mm256_mul_ps(f, factor);
  return _mm256_blendv_ps(f, _mm256_set1_ps(__builtin_nanf("")), _mm256_castsi256_ps(nan));
}

constexpr int64_t kChunksPerKBlock = 32;  // k-block of 32 x 256 elements: a token's codes (8 KB)
                                          // stay in L1 while the item's rows stream past

// The 32 packed bytes of a 64-element group -> 2·e2m1 (wq) and |2·e2m1| (wa) bytes of its even
// elements (a: low nibbles) and odd elements (b: high nibbles), in the activation layout.
struct Codes64 {
  __m256i wqa, waa, wqb, wab;
};
SY_AVX2_INLINE Codes64 Decode64(__m256i v) {
  const __m256i tsigned =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kTwiceE2m1)));
  const __m256i tabs =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kAbsTwiceE2m1)));
  const __m256i mask = _mm256_set1_epi8(0x0F);
  const __m256i lo = _mm256_and_si256(v, mask);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), mask);
  return {_mm256_shuffle_epi8(tsigned, lo), _mm256_shuffle_epi8(tabs, lo),
          _mm256_shuffle_epi8(tsigned, hi), _mm256_shuffle_epi8(tabs, hi)};
}

// Per int32 lane j: the exact sum of the 8 products of elements 8j..8j+7 of the group's half
// j / 4 (even and odd halves added as int16: |sum| <= 2 · 2·12·127 = 6096, no saturation).
SY_AVX2_INLINE __m256 Dot64(const Codes64& w, const int8_t* q) {
  const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q));
  const __m256i qb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32));
  const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(w.waa, _mm256_sign_epi8(qa, w.wqa)),
                                       _mm256_maddubs_epi16(w.wab, _mm256_sign_epi8(qb, w.wqb)));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
}

// Rows [r0, r1) for tokens t0 .. t0+MR. k is walked in k-blocks (outer) so the tokens' codes stay
// in L1 while the rows (L2-resident within a work item) stream past; partial sums go into y.
// Per 256-element chunk the 16 (NVFP4) or 8 (MXFP4) weight block scales are decoded at once and
// multiplied by each token's activation scales; each 64-element group then takes its lanes'
// scales (int32 lane j covers block 4g + j/2 resp. 2g + j/4) with one permute.
template <int MR>
SY_AVX2 void RowsAvx2(const Int8Acts& a, int64_t t0, const Fp4Weight& w, int64_t r0, int64_t r1,
                      float* y, int64_t ldy) {
  const bool nv = w.format == Fp4Format::kNvFp4;
  const int64_t chunks = w.padded_cols / 256;
  const int64_t row_bytes = w.padded_cols / 2, nblocks = a.nblocks, qstride = a.groups * 64;
  const int8_t* q = a.q.data() + t0 * qstride;
  const float* sx = a.scale.data() + t0 * nblocks;
  const __m256 factor = _mm256_set1_ps(nv ? 0.5f * w.global_scale : 0.5f);
  alignas(32) static constexpr int32_t kIdx[2][4][8] = {
      {{0, 0, 1, 1, 2, 2, 3, 3},
       {4, 4, 5, 5, 6, 6, 7, 7},
       {0, 0, 1, 1, 2, 2, 3, 3},
       {4, 4, 5, 5, 6, 6, 7, 7}},  // NVFP4: group gi takes blocks 4gi.. from S[gi / 2]
      {{0, 0, 0, 0, 1, 1, 1, 1},
       {2, 2, 2, 2, 3, 3, 3, 3},
       {4, 4, 4, 4, 5, 5, 5, 5},
       {6, 6, 6, 6, 7, 7, 7, 7}}};  // MXFP4: blocks 2gi, 2gi + 1
  // Few tokens: two accumulator sets (even/odd groups) so the FMA latency is not the limit.
  constexpr int kSets = MR <= 2 ? 2 : 1;
  for (int64_t kb = 0; kb == 0 || kb < chunks; kb += kChunksPerKBlock) {
    const int64_t kb_end = std::min(chunks, kb + kChunksPerKBlock);
    const bool last = kb_end == chunks;
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* p = w.packed.data() + r * row_bytes;
      const uint8_t* s = w.scales.data() + r * nblocks;
      __m256 acc[kSets * MR];
#pragma GCC unroll 16
      for (int i = 0; i < kSets * MR; ++i) acc[i] = _mm256_setzero_ps();
      for (int64_t ch = kb; ch < kb_end; ++ch) {
        __m256 st[MR][2];  // per token: weight x activation scale of the chunk's blocks
        if (nv) {
          const __m128i sb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s + ch * 16));
          const __m256 s0 = DecodeScales(sb, true, factor);
          const __m256 s1 = DecodeScales(_mm_srli_si128(sb, 8), true, factor);
#pragma GCC unroll 16
          for (int i = 0; i < MR; ++i) {
            st[i][0] = _mm256_mul_ps(s0, _mm256_loadu_ps(sx + i * nblocks + ch * 16));
            st[i][1] = _mm256_mul_ps(s1, _mm256_loadu_ps(sx + i * nblocks + ch * 16 + 8));
          }
        } else {
          const __m256 s8 = DecodeScales(
              _mm_loadl_epi64(reinterpret_cast<const __m128i*>(s + ch * 8)), false, factor);
#pragma GCC unroll 16
          for (int i = 0; i < MR; ++i) {
            st[i][0] = _mm256_mul_ps(s8, _mm256_loadu_ps(sx + i * nblocks + ch * 8));
          }
        }
#pragma GCC unroll 16
        for (int gi = 0; gi < 4; ++gi) {
          const int64_t g = ch * 4 + gi;
          const Codes64 c =
              Decode64(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + g * 32)));
          const __m256i idx =
              _mm256_load_si256(reinterpret_cast<const __m256i*>(kIdx[nv ? 0 : 1][gi]));
#pragma GCC unroll 16
          for (int i = 0; i < MR; ++i) {
            const __m256 scale = _mm256_permutevar8x32_ps(st[i][nv ? gi / 2 : 0], idx);
            __m256& ac = acc[(gi % kSets) * MR + i];
            ac = _mm256_fmadd_ps(Dot64(c, q + i * qstride + g * 64), scale, ac);
          }
        }
      }
      if (last) {  // the groups after the last whole chunk, the final one maybe partial
        for (int64_t g = chunks * 4; g < a.groups; ++g) {
          alignas(32) uint8_t bytes[32] = {};
          const int64_t n = std::min<int64_t>(32, row_bytes - g * 32);
          for (int64_t j = 0; j < n; ++j) bytes[j] = p[g * 32 + j];
          const Codes64 c = Decode64(_mm256_load_si256(reinterpret_cast<const __m256i*>(bytes)));
#pragma GCC unroll 16
          for (int i = 0; i < MR; ++i) {
            alignas(32) float lanes[8];
            for (int j = 0; j < 8; ++j) {
              const int64_t b = nv ? 4 * g + (j / 4) * 2 + (j % 4) / 2 : 2 * g + j / 4;
              lanes[j] = b < nblocks ? BlockFactor(w, s[b]) * sx[i * nblocks + b] : 0.0f;
            }
            acc[i] =
                _mm256_fmadd_ps(Dot64(c, q + i * qstride + g * 64), _mm256_load_ps(lanes), acc[i]);
          }
        }
      }
      if (kSets == 2) {
#pragma GCC unroll 16
        for (int i = 0; i < MR; ++i) acc[i] = _mm256_add_ps(acc[i], acc[MR + i]);
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
    const int8_t* q = a.q.data() + t * a.groups * 64;
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

void Int8Rows(const Int8Acts& a, const Fp4Weight& w, int64_t r0, int64_t r1, float* y,
              int64_t ldy) {
  if (!HasAvx2()) {
    RowsScalar(a, w, r0, r1, y, ldy);
    return;
  }
  int64_t t = 0;
  for (; t + 4 <= a.m; t += 4) RowsAvx2<4>(a, t, w, r0, r1, y, ldy);
  switch (a.m - t) {
    case 3:
      RowsAvx2<3>(a, t, w, r0, r1, y, ldy);
      break;
    case 2:
      RowsAvx2<2>(a, t, w, r0, r1, y, ldy);
      break;
    case 1:
      RowsAvx2<1>(a, t, w, r0, r1, y, ldy);
      break;
    default:
      break;
  }
}

}  // namespace switchyard::cpu::fp4_internal
