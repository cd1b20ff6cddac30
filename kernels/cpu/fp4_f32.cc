// FP4 weights x FP32 activations, few tokens (SWITCHYARD_FP4_ACTIVATIONS=f32): codes decoded to
// 2·e2m1 floats in registers once per 4 tokens, one FMA per 8 weights and token, the block factor
// applied to the decoded weights. Portable form for CPUs without AVX2/FMA.
#include <immintrin.h>

#include "kernels/cpu/fp4_internal.h"
#include "kernels/fp4_format.h"

namespace switchyard::cpu::fp4_internal {
namespace {

// Decodes 16 codes (8 packed bytes) into two vectors of 2·e2m1 as floats.
__attribute__((target("avx2,fma"))) inline void Decode16(const uint8_t* packed, __m256* lo,
                                                         __m256* hi) {
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kTwiceE2m1));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed));
  const __m128i even = _mm_and_si128(v, mask);
  const __m128i odd = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
  const __m128i w8 = _mm_shuffle_epi8(table, _mm_unpacklo_epi8(even, odd));  // element order
  *lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w8));
  *hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w8, 8)));
}

__attribute__((target("avx2,fma"))) inline float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// FP32 activations, few tokens: rows [r0, r1) of y for MR rows of x (padded to padded_cols with
// zeros, so every block is whole). Codes are decoded in registers once per MR tokens.
template <int MR>
__attribute__((target("avx2,fma"))) void F32RowsAvx2(const float* x, int64_t ldx,
                                                     const Fp4Weight& w, int64_t r0, int64_t r1,
                                                     float* y, int64_t ldy) {
  const int block = Fp4BlockSize(w.format);
  const int64_t nblocks = w.padded_cols / block, row_bytes = w.padded_cols / 2;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* packed = w.packed.data() + r * row_bytes;
    const uint8_t* scales = w.scales.data() + r * nblocks;
    __m256 acc[MR];
    for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nblocks; ++b) {
      const __m256 factor = _mm256_set1_ps(BlockFactor(w, scales[b]));
      for (int half = 0; half < block; half += 16) {
        __m256 w0, w1;
        Decode16(packed + (b * block + half) / 2, &w0, &w1);
        w0 = _mm256_mul_ps(w0, factor);
        w1 = _mm256_mul_ps(w1, factor);
        for (int i = 0; i < MR; ++i) {
          const float* xs = x + i * ldx + b * block + half;
          acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(xs), w0, acc[i]);
          acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(xs + 8), w1, acc[i]);
        }
      }
    }
    for (int i = 0; i < MR; ++i) y[i * ldy + r] = HSum(acc[i]);
  }
}

void F32RowsScalar(const float* x, int64_t ldx, int64_t m, const Fp4Weight& w, int64_t r0,
                   int64_t r1, float* y, int64_t ldy) {
  const int block = Fp4BlockSize(w.format);
  const int64_t nblocks = w.padded_cols / block, row_bytes = w.padded_cols / 2;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nblocks; ++b) {
        const float factor = BlockFactor(w, w.scales[r * nblocks + b]);
        float part = 0.0f;
        for (int j = 0; j < block; ++j) {
          const int64_t c = b * block + j;
          part += x[i * ldx + c] * kTwiceE2m1[fp4::UnpackE2m1(w.packed.data() + r * row_bytes, c)];
        }
        acc += part * factor;
      }
      y[i * ldy + r] = acc;
    }
  }
}

}  // namespace

void F32Rows(const float* x, int64_t ldx, int64_t m, const Fp4Weight& w, int64_t r0, int64_t r1,
             float* y, int64_t ldy) {
  if (!HasAvx2()) {
    F32RowsScalar(x, ldx, m, w, r0, r1, y, ldy);
    return;
  }
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) F32RowsAvx2<4>(x + i * ldx, ldx, w, r0, r1, y + i * ldy, ldy);
  for (; i < m; ++i) F32RowsAvx2<1>(x + i * ldx, ldx, w, r0, r1, y + i * ldy, ldy);
}

}  // namespace switchyard::cpu::fp4_internal
