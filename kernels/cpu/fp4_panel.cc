// FP4 weights, many tokens: a panel of weight rows x a k-block is dequantized once into FP32
// (L2-resident), then a 6-row x 16-token register tile (12 accumulators; per k: 2 activation
// loads, 6 weight broadcasts, 12 FMAs) walks it for every block of 16 tokens. Activations come
// packed k-major per 16 tokens (PreparedActs::xf), so no weight transposition is needed; the
// panel's yᵀ accumulates over k-blocks in scratch and is transposed into y at the end.
// The dequantization costs ~0.5 instructions per weight and amortises over the tokens.
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/fp4_internal.h"
#include "kernels/fp4_format.h"

namespace switchyard::cpu::fp4_internal {
namespace {

constexpr int64_t kKc = 256;     // k-block: 16 tokens x 256 = 16 KB of activations (L1)
constexpr int64_t kRowTile = 6;  // weight rows per register tile (6 x 2 accumulators)
// Tokens per block (a multiple of 16) for one / two weights: the panels' partial yᵀ for them stays
// in L2 next to the dequantized panels, and each weight panel is dequantized once per block.
constexpr int64_t kMc[2] = {256, 128};

#define SY_AVX2 __attribute__((target("avx2,fma")))
#define SY_AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

// Dequantizes rows [r0, r1), columns [k0, k0 + kl) (whole blocks) into panel[(r - r0) * kl + c].
SY_AVX2 void DequantPanelAvx2(const Fp4Weight& w, int64_t r0, int64_t r1, int64_t k0, int64_t kl,
                              float* panel) {
  const int block = Fp4BlockSize(w.format);
  const int64_t nblocks = w.padded_cols / block, row_bytes = w.padded_cols / 2;
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kTwiceE2m1));
  const __m128i mask = _mm_set1_epi8(0x0F);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* p = w.packed.data() + r * row_bytes;
    const uint8_t* s = w.scales.data() + r * nblocks;
    float* dst = panel + (r - r0) * kl;
    for (int64_t c = 0; c < kl; c += 16) {
      const int64_t e = k0 + c;
      const __m256 factor = _mm256_set1_ps(BlockFactor(w, s[e / block]));
      const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + e / 2));
      const __m128i even = _mm_and_si128(v, mask);
      const __m128i odd = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
      const __m128i w8 = _mm_shuffle_epi8(table, _mm_unpacklo_epi8(even, odd));
      _mm256_storeu_ps(dst + c,
                       _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w8)), factor));
      _mm256_storeu_ps(
          dst + c + 8,
          _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w8, 8))), factor));
    }
  }
}

// ct[j * ldc + v * 8 + lane] (+)= Σ_p panel[j][p] · xp[p][v * 8 + lane] over kl columns, for NR
// weight rows and NV vectors of 8 tokens: NR x NV accumulators, each weight broadcast once per p.
template <int NR, int NV>
SY_AVX2 void Tile(const float* xp, const float* pw, int64_t kl, float* ct, int64_t ldc,
                  bool accumulate) {
  __m256 acc[NR][NV];
#pragma GCC unroll 16
  for (int j = 0; j < NR; ++j)
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) acc[j][v] = _mm256_setzero_ps();
  for (int64_t p = 0; p < kl; ++p) {
    __m256 xv[NV];
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) xv[v] = _mm256_loadu_ps(xp + p * kTokenBlock + v * 8);
#pragma GCC unroll 16
    for (int j = 0; j < NR; ++j) {
      const __m256 wb = _mm256_broadcast_ss(pw + j * kl + p);
#pragma GCC unroll 16
      for (int v = 0; v < NV; ++v) acc[j][v] = _mm256_fmadd_ps(wb, xv[v], acc[j][v]);
    }
  }
#pragma GCC unroll 16
  for (int j = 0; j < NR; ++j) {
#pragma GCC unroll 16
    for (int v = 0; v < NV; ++v) {
      float* c = ct + j * ldc + v * 8;
      _mm256_storeu_ps(c, accumulate ? _mm256_add_ps(_mm256_loadu_ps(c), acc[j][v]) : acc[j][v]);
    }
  }
}

using TileFn = void (*)(const float*, const float*, int64_t, float*, int64_t, bool);
constexpr TileFn kTiles[2][kRowTile] = {
    {Tile<1, 1>, Tile<2, 1>, Tile<3, 1>, Tile<4, 1>, Tile<5, 1>, Tile<6, 1>},
    {Tile<1, 2>, Tile<2, 2>, Tile<3, 2>, Tile<4, 2>, Tile<5, 2>, Tile<6, 2>},
};

// `count` (1 or 2) weights of the same k against the same activations: each 16-token slice of
// the activations is used for both while it sits in L1 (gate and up share their input).
void PanelRowsAvx2(const float* xp, int64_t m, const Fp4Weight* const* w, float* const* y,
                   int count, int64_t r0, int64_t r1, int64_t ldy, std::vector<float>* scratch) {
  const int64_t k = w[0]->padded_cols, nr = r1 - r0;
  const int64_t kc = std::min(kKc, k);
  const int64_t mc = kMc[count - 1];
  const int64_t ldc = std::min(mc, (m + kTokenBlock - 1) / kTokenBlock * kTokenBlock);
  const int64_t need = count * (nr * kc + nr * ldc);
  if (static_cast<int64_t>(scratch->size()) < need) scratch->resize(need);
  float* panel[2];
  float* ct[2];  // [nr, ldc]: yᵀ of this panel for the current token block
  for (int c = 0; c < count; ++c) {
    panel[c] = scratch->data() + c * nr * kc;
    ct[c] = scratch->data() + count * nr * kc + c * nr * ldc;
  }
  for (int64_t m0 = 0; m0 < m; m0 += mc) {
    const int64_t mb = std::min(mc, m - m0);
    const int64_t token_blocks = (mb + kTokenBlock - 1) / kTokenBlock;
    for (int64_t k0 = 0; k0 < k; k0 += kc) {
      const int64_t kl = std::min(kc, k - k0);  // a multiple of 16 (whole blocks)
      for (int c = 0; c < count; ++c) DequantPanelAvx2(*w[c], r0, r1, k0, kl, panel[c]);
      for (int64_t tb = 0; tb < token_blocks; ++tb) {
        const int nv = mb - tb * kTokenBlock > 8 ? 2 : 1;
        const float* xs = xp + (m0 + tb * kTokenBlock) * k + k0 * kTokenBlock;
        for (int c = 0; c < count; ++c) {
          for (int64_t j0 = 0; j0 < nr; j0 += kRowTile) {
            const int64_t nw = std::min<int64_t>(kRowTile, nr - j0);
            kTiles[nv - 1][nw - 1](xs, panel[c] + j0 * kl, kl, ct[c] + j0 * ldc + tb * kTokenBlock,
                                   ldc, k0 > 0);
          }
        }
      }
    }
    for (int c = 0; c < count; ++c) {
      for (int64_t t = 0; t < mb; ++t) {
        for (int64_t j = 0; j < nr; ++j) y[c][(m0 + t) * ldy + r0 + j] = ct[c][j * ldc + t];
      }
    }
  }
}

void PanelRowsScalar(const float* xp, int64_t m, const Fp4Weight& w, int64_t r0, int64_t r1,
                     float* y, int64_t ldy, std::vector<float>* scratch) {
  const int64_t k = w.padded_cols;
  scratch->resize(k);
  const int block = Fp4BlockSize(w.format);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* p = w.packed.data() + r * k / 2;
    for (int64_t c = 0; c < k; ++c) {
      (*scratch)[c] =
          kTwiceE2m1[fp4::UnpackE2m1(p, c)] * BlockFactor(w, w.scales[r * (k / block) + c / block]);
    }
    for (int64_t i = 0; i < m; ++i) {
      float acc = 0.0f;
      const float* xi = xp + i / kTokenBlock * kTokenBlock * k + i % kTokenBlock;
      for (int64_t c = 0; c < k; ++c) acc += xi[c * kTokenBlock] * (*scratch)[c];
      y[i * ldy + r] = acc;
    }
  }
}

}  // namespace

void PanelRows(const float* xp, int64_t m, const Fp4Weight& w, int64_t r0, int64_t r1, float* y,
               int64_t ldy, std::vector<float>* scratch) {
  if (HasAvx2()) {
    const Fp4Weight* ws[1] = {&w};
    float* ys[1] = {y};
    PanelRowsAvx2(xp, m, ws, ys, 1, r0, r1, ldy, scratch);
  } else {
    PanelRowsScalar(xp, m, w, r0, r1, y, ldy, scratch);
  }
}

void PanelRowsPair(const float* xp, int64_t m, const Fp4Weight& w0, const Fp4Weight& w1, int64_t r0,
                   int64_t r1, float* y0, float* y1, int64_t ldy, std::vector<float>* scratch) {
  if (HasAvx2()) {
    const Fp4Weight* ws[2] = {&w0, &w1};
    float* ys[2] = {y0, y1};
    PanelRowsAvx2(xp, m, ws, ys, 2, r0, r1, ldy, scratch);
  } else {
    PanelRowsScalar(xp, m, w0, r0, r1, y0, ldy, scratch);
    PanelRowsScalar(xp, m, w1, r0, r1, y1, ldy, scratch);
  }
}

}  // namespace switchyard::cpu::fp4_internal
