// Layout conversions of the FP4 panel path (fp4_panel_kernel.h), AVX2: token-major activations to
// the packed k-major layout (with the int8 emulation done on the transposed vectors, one lane per
// token), and the panel's yᵀ back to token-major rows. Both go through 8x8 register transposes.
#include <immintrin.h>

#include <cfloat>
#include <limits>

#include "kernels/cpu/fp4_internal.h"
#include "kernels/cpu/fp4_panel_kernel.h"

namespace switchyard::cpu::fp4_internal {
namespace {

#define SY_AVX2 __attribute__((target("avx2,fma")))

// r[i] = row i (8 floats) -> r[i] = column i.
SY_AVX2 inline void Transpose8x8(__m256 r[8]) {
  __m256 a[8], b[8];
  for (int i = 0; i < 8; i += 2) {
    a[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    a[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    b[i] = _mm256_shuffle_ps(a[i], a[i + 2], 0x44);
    b[i + 1] = _mm256_shuffle_ps(a[i], a[i + 2], 0xEE);
    b[i + 2] = _mm256_shuffle_ps(a[i + 1], a[i + 3], 0x44);
    b[i + 3] = _mm256_shuffle_ps(a[i + 1], a[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(b[i], b[i + 4], 0x20);
    r[i + 4] = _mm256_permute2f128_ps(b[i], b[i + 4], 0x31);
  }
}

// The int8 emulation of one block (v[c]: column c of 8 tokens, c < block), one token per lane:
// the same operations as the per-block path (fp4_acts.cc, ScaleOf + EmulateBlockAvx2), so the
// values are bit-identical: a NaN or Inf in the block gives NaN for the whole block, else
// q = clamp(round_even(x · (127 / amax)), ±127) · (amax / 127) (an all-zero block stays zero).
SY_AVX2 inline void EmulateBlock(__m256* v, int block) {
  const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(FLT_MAX);
  const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  const __m256 k127 = _mm256_set1_ps(127.0f),
               nan = _mm256_set1_ps(std::numeric_limits<float>::quiet_NaN());
  __m256 amax = _mm256_setzero_ps(), finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int c = 0; c < block; ++c) {
    const __m256 a = _mm256_andnot_ps(sign, v[c]);
    finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, big, _CMP_LE_OQ));  // false for NaN, Inf
    amax = _mm256_max_ps(a, amax);
  }
  const __m256 positive = _mm256_cmp_ps(amax, _mm256_setzero_ps(), _CMP_GT_OQ);
  const __m256 inv = _mm256_and_ps(_mm256_and_ps(finite, positive), _mm256_div_ps(k127, amax));
  const __m256 scale = _mm256_blendv_ps(nan, _mm256_div_ps(amax, k127), finite);
  for (int c = 0; c < block; ++c) {
    __m256 q = _mm256_mul_ps(v[c], inv);
    q = _mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_min_ps(_mm256_max_ps(q, lo), hi);
    v[c] = _mm256_mul_ps(q, scale);
  }
}

// 8 tokens (rows x, stride ldx) -> dst[c * 16 + lane] for c < cols (a multiple of `block`), with
// the int8 emulation per token and block when `emulate`.
SY_AVX2 void Pack8Tokens(const float* x, int64_t ldx, int64_t cols, int block, bool emulate,
                         float* dst) {
  __m256 v[32];  // one block: column c of the 8 tokens in v[c]
  for (int64_t b = 0; b < cols; b += block) {
    for (int c = 0; c < block; c += 8) {
      for (int i = 0; i < 8; ++i) v[c + i] = _mm256_loadu_ps(x + i * ldx + b + c);
      Transpose8x8(v + c);
    }
    if (emulate) EmulateBlock(v, block);
    for (int c = 0; c < block; ++c) _mm256_store_ps(dst + (b + c) * kTokenBlock, v[c]);
  }
}

}  // namespace

void PreparePanelTokens(const float* x, int64_t ldx, int64_t t0, int64_t t1, const Fp4Weight& w,
                        PreparedActs* out) {
  const int block = Fp4BlockSize(w.format);
  const int64_t padded = w.padded_cols;
  int64_t t = t0;
  if (HasAvx2() && out->panel && w.cols == padded) {
    const bool emulate = out->act == Fp4Activations::kInt8;
    for (; t % 8 == 0 && t + 8 <= t1; t += 8) {
      Pack8Tokens(x + t * ldx, ldx, padded, block, emulate,
                  out->xf.data() + t / kTokenBlock * kTokenBlock * padded + t % kTokenBlock);
    }
  }
  if (t < t1) PrepareTokens(x, ldx, t, t1, w, out);  // ragged rows or tokens, portable builds
}

SY_AVX2 void TransposeAvx2(const float* ct, int64_t ldc, int64_t rows, int64_t t0, int64_t nt,
                           float* dst, int64_t ldd) {
  int64_t j = 0;
  if (nt == 8) {
    for (; j + 8 <= rows; j += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(ct + (j + i) * ldc + t0);
      Transpose8x8(r);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + i * ldd + j, r[i]);
    }
  }
  for (int64_t t = 0; t < nt; ++t) {
    for (int64_t jj = j; jj < rows; ++jj) dst[t * ldd + jj] = ct[jj * ldc + t0 + t];
  }
}

SY_AVX2 void PackRowsAvx2(const float* ct, int64_t ldc, int64_t rows, int64_t nt, int block,
                          bool emulate, float* dst, int64_t ldd) {
  __m256 v[32];
  for (int64_t tb = 0; tb * kTokenBlock < nt; ++tb) {
    const int halves = nt - tb * kTokenBlock > 8 ? 2 : 1;
    for (int half = 0; half < halves; ++half) {
      const float* src = ct + tb * kTokenBlock + half * 8;
      float* out = dst + tb * kTokenBlock * ldd + half * 8;
      for (int64_t b = 0; b < rows; b += block) {
        for (int c = 0; c < block; ++c) v[c] = _mm256_load_ps(src + (b + c) * ldc);
        if (emulate) EmulateBlock(v, block);
        for (int c = 0; c < block; ++c) _mm256_store_ps(out + (b + c) * kTokenBlock, v[c]);
      }
    }
  }
}

}  // namespace switchyard::cpu::fp4_internal
