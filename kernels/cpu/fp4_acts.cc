// Activation preparation for the FP4 GEMM: per-block int8 quantization (scale = amax/127, round
// to nearest even) in the int8 kernel's layout, or FP32 rows padded to whole weight blocks.
#include <immintrin.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/cpu/fp4_internal.h"

namespace switchyard::cpu {
namespace fp4_internal {
namespace {

// Quantizes n <= 32 floats; the scale is amax/127 (0 for an all-zero block; a NaN/Inf amax is
// returned as the scale with all codes 0, so the products stay NaN as FP32 ones would).
float ScaleOf(const float* x, int n, float* inv) {
  float amax = 0.0f;
  bool finite = true;  // std::max skips a NaN, so it is looked for separately
  for (int i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    finite = finite && a <= FLT_MAX;
    amax = std::max(amax, a);
  }
  if (!finite) {
    *inv = 0.0f;
    return std::numeric_limits<float>::quiet_NaN();
  }
  *inv = amax > 0.0f ? 127.0f / amax : 0.0f;
  return amax / 127.0f;
}

inline int8_t Code(float v, float inv) {
  if (inv == 0.0f) return 0;  // all-zero or non-finite block
  return static_cast<int8_t>(std::clamp(std::nearbyint(v * inv), -127.0f, 127.0f));
}

// Emulated values q·scale for one block, vectorised; same codes as the scalar Code().
__attribute__((target("avx2,fma"))) void EmulateBlockAvx2(const float* x, int n, float* out) {
  float inv;
  const float scale = ScaleOf(x, n, &inv);
  int i = 0;
  const __m256 vinv = _mm256_set1_ps(inv), vs = _mm256_set1_ps(scale);
  const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  for (; i + 8 <= n; i += 8) {
    __m256 q = _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv);
    q = _mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_min_ps(_mm256_max_ps(q, lo), hi);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(q, vs));
  }
  for (; i < n; ++i) out[i] = Code(x[i], inv) * scale;
}

void EmulateBlock(const float* x, int n, float* out) {
  if (HasAvx2()) {
    EmulateBlockAvx2(x, n, out);
    return;
  }
  float inv;
  const float scale = ScaleOf(x, n, &inv);
  for (int i = 0; i < n; ++i) out[i] = Code(x[i], inv) * scale;
}

// Position of element o (0..63) of a group in the kernel layout (fp4_internal.h).
inline int LayoutIndex(int o) {
  const int half = o / 32, within = o % 32;
  return ((within & 1) ? 32 : 0) + half * 16 + within / 2;
}

__attribute__((target("avx2,fma"))) inline float HMax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// 32 floats (blocks of `block` = 16 or 32) -> 32 codes in element order and the block scales; the
// same codes and scales as QuantizeBlockInt8.
__attribute__((target("avx2,fma"))) __m256i Codes32Avx2(const float* x, int block, float* scales) {
  const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(FLT_MAX);
  __m256 v[4], a[4];
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    a[i] = _mm256_andnot_ps(sign, v[i]);
  }
  const int per = block / 8;  // vectors per block
  __m256i codes[4];
  for (int b = 0; b < 4 / per; ++b) {
    __m256 amax = a[b * per], bad = _mm256_cmp_ps(a[b * per], big, _CMP_NLE_UQ);
    for (int i = 1; i < per; ++i) {
      amax = _mm256_max_ps(amax, a[b * per + i]);
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(a[b * per + i], big, _CMP_NLE_UQ));
    }
    const float m = HMax(amax);
    float inv = 0.0f;
    if (_mm256_movemask_ps(bad) != 0) {
      scales[b] = std::numeric_limits<float>::quiet_NaN();
    } else {
      inv = m > 0.0f ? 127.0f / m : 0.0f;
      scales[b] = m / 127.0f;
    }
    const __m256 vinv = _mm256_set1_ps(inv);
    for (int i = 0; i < per; ++i) {
      __m256 t = _mm256_mul_ps(v[b * per + i], vinv);
      if (inv == 0.0f) t = _mm256_setzero_ps();  // NaN/Inf blocks: codes 0
      t = _mm256_min_ps(_mm256_max_ps(t, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
      codes[b * per + i] = _mm256_cvtps_epi32(t);  // round to nearest even (MXCSR default)
    }
  }
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(codes[0], codes[1]),
                                       _mm256_packs_epi32(codes[2], codes[3]));
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// One whole group of 64 floats -> 64 codes in the kernel layout and the group's block scales.
__attribute__((target("avx2,fma"))) void QuantizeGroupAvx2(const float* x, int block, int8_t* q,
                                                           float* scales) {
  // Per 16-byte lane: even elements first, odd second; then 64-bit quads to
  // [evens 0-30 | odds 1-31] for each half, and the halves' evens / odds into the two registers.
  const __m256i deinterleave =
      _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12,
                       14, 1, 3, 5, 7, 9, 11, 13, 15);
  __m256i n[2];
  for (int h = 0; h < 2; ++h) {
    n[h] = Codes32Avx2(x + 32 * h, block, scales + 32 * h / block);
    n[h] = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(n[h], deinterleave), 0xD8);
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_permute2x128_si256(n[0], n[1], 0x20));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + 32),
                      _mm256_permute2x128_si256(n[0], n[1], 0x31));
}

}  // namespace

float QuantizeBlockInt8(const float* x, int n, int8_t* q) {
  float inv;
  const float scale = ScaleOf(x, n, &inv);
  for (int i = 0; i < n; ++i) q[i] = Code(x[i], inv);
  return scale;
}

void ResizeActs(int64_t m, const Fp4Weight& w, Fp4Activations act, PreparedActs* out) {
  out->act = act;
  out->m = m;
  out->cols = w.cols;
  out->padded_cols = w.padded_cols;
  out->panel = m >= kPanelMinTokens;
  if (out->panel) {  // packed per 16 tokens; the padding tokens are zero
    const int64_t blocks = (m + kTokenBlock - 1) / kTokenBlock;
    out->xf.resize(blocks * kTokenBlock * w.padded_cols);
    for (int64_t t = m; t < blocks * kTokenBlock; ++t) {
      float* dst = out->xf.data() + t / kTokenBlock * kTokenBlock * w.padded_cols + t % kTokenBlock;
      for (int64_t c = 0; c < w.padded_cols; ++c) dst[c * kTokenBlock] = 0.0f;
    }
    return;
  }
  if (act == Fp4Activations::kF32) {
    out->xf.resize(m * w.padded_cols);
    return;
  }
  Int8Acts& a = out->q;
  a.m = m;
  a.groups = (w.padded_cols + 63) / 64;
  a.pairs = (a.groups + 1) / 2;
  a.nblocks = w.padded_cols / Fp4BlockSize(w.format);
  a.q.resize(m * a.pairs * 128);
  a.scale.resize(m * a.nblocks);
  if (HasAvx2()) {
    a.lane_scale.resize(m * a.pairs * 8);
    a.lane_offset.resize(m * a.pairs * 8);
  }
}

void PrepareTokens(const float* x, int64_t ldx, int64_t t0, int64_t t1, const Fp4Weight& w,
                   PreparedActs* out) {
  const int block = Fp4BlockSize(w.format);
  const int64_t cols = w.cols, padded = w.padded_cols;
  if (out->panel) {
    std::vector<float> row(padded, 0.0f);
    for (int64_t t = t0; t < t1; ++t) {
      if (out->act == Fp4Activations::kF32) {
        std::memcpy(row.data(), x + t * ldx, cols * sizeof(float));
      } else {
        for (int64_t b = 0; b * block < cols; ++b) {
          const int n = static_cast<int>(std::min<int64_t>(block, cols - b * block));
          EmulateBlock(x + t * ldx + b * block, n, row.data() + b * block);
        }
      }
      float* dst = out->xf.data() + t / kTokenBlock * kTokenBlock * padded + t % kTokenBlock;
      for (int64_t c = 0; c < padded; ++c) dst[c * kTokenBlock] = row[c];
    }
    return;
  }
  if (out->act == Fp4Activations::kF32) {
    for (int64_t t = t0; t < t1; ++t) {
      float* dst = out->xf.data() + t * padded;
      std::fill(dst + cols, dst + padded, 0.0f);
      std::memcpy(dst, x + t * ldx, cols * sizeof(float));
    }
    return;
  }
  for (int64_t t = t0; t < t1; ++t) PrepareInt8Pairs(x, ldx, t, 0, out->q.pairs, w, &out->q);
}

void PrepareInt8Pairs(const float* x, int64_t ldx, int64_t t, int64_t p0, int64_t p1,
                      const Fp4Weight& w, Int8Acts* a) {
  const int block = Fp4BlockSize(w.format);
  const int64_t cols = w.cols, nblocks = a->nblocks, per_group = 64 / block;
  const float* xt = x + t * ldx;
  int8_t* q = a->q.data() + t * a->pairs * 128;
  float* scale = a->scale.data() + t * nblocks;
  std::memset(q + p0 * 128, 0, (p1 - p0) * 128);
  int8_t codes[32];
  for (int64_t g = 2 * p0; g < 2 * p1; ++g) {
    if (HasAvx2() && (g + 1) * 64 <= cols) {  // whole groups vectorised
      QuantizeGroupAvx2(xt + g * 64, block, q + g * 64, scale + g * per_group);
      continue;
    }
    for (int64_t b = g * per_group; b < std::min(nblocks, (g + 1) * per_group); ++b) {
      const int n = static_cast<int>(std::clamp<int64_t>(cols - b * block, 0, block));
      scale[b] = n > 0 ? QuantizeBlockInt8(xt + b * block, n, codes) : 0.0f;
      for (int i = 0; i < n; ++i) {
        const int64_t c = b * block + i;
        q[c / 64 * 64 + LayoutIndex(static_cast<int>(c % 64))] = codes[i];
      }
    }
  }
  if (HasAvx2()) {  // the AVX2 kernel's per-lane terms (fp4_internal.h)
    float* lane_scale = a->lane_scale.data() + t * a->pairs * 8;
    int32_t* lane_offset = a->lane_offset.data() + t * a->pairs * 8;
    for (int64_t p = p0; p < p1; ++p) {
      Int8LaneOffsets(q + p * 128, lane_offset + p * 8);
      for (int lane = 0; lane < 8; ++lane) {
        const int64_t blk = Int8LaneBlock(w.format, p, lane);
        lane_scale[p * 8 + lane] = blk < nblocks ? scale[blk] : 0.0f;
      }
    }
  }
}

}  // namespace fp4_internal

void EmulateInt8Activations(const float* x, int64_t m, int64_t cols, Fp4Format format, float* out) {
  const int block = Fp4BlockSize(format);
  for (int64_t t = 0; t < m; ++t) {
    for (int64_t b = 0; b * block < cols; ++b) {
      const int n = static_cast<int>(std::min<int64_t>(block, cols - b * block));
      fp4_internal::EmulateBlock(x + t * cols + b * block, n, out + t * cols + b * block);
    }
  }
}

}  // namespace switchyard::cpu
