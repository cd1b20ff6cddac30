// AVX2/FMA packing and microkernel of the FP4 panel path (fp4_panel_kernel.h).
//
// Microkernel: 6 weight rows x 16 tokens, 12 accumulators + 2 activation vectors + 1 broadcast =
// 15 ymm registers, no spills. Per k: 2 aligned activation loads, 6 broadcasts of consecutive
// packed weights, 12 FMAs (0.67 loads per FMA; Zen 3 and Intel cores since Haswell sustain 2 FMAs
// and 2-3 loads per cycle, so the FMAs are the bound). The packed weights are read as one
// sequential stream (48 floats per 8 k), the activations stay in L1 across all tiles of a panel.
#include "kernels/cpu/fp4_panel_kernel.h"

#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/fp4_internal.h"

namespace switchyard::cpu::fp4_internal {
namespace {

#define SY_AVX2 __attribute__((target("avx2,fma")))

// One 6 x (8 · NV) tile over kl columns (see PanelTokenBlockAvx2).
// Also prefetches `lines` cache lines from `ahead` into L2 (the next token block's activations).
template <int NV>
SY_AVX2 void Tile(const float* xs, const float* pa, int64_t kl, bool accumulate, float* ct,
                  int64_t ldc, const float* ahead, int64_t lines) {
  // C rows were last touched a whole k-block ago (L2/L3): start fetching them now.
  for (int j = 0; j < kPanelMr; ++j) {
    _mm_prefetch(reinterpret_cast<const char*>(ct + j * ldc), _MM_HINT_T0);
  }
  for (int64_t i = 0; i < lines; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(ahead + i * 16), _MM_HINT_T1);
  }
  __m256 acc[kPanelMr][NV];
#pragma GCC unroll 8
  for (int j = 0; j < kPanelMr; ++j) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[j][v] = _mm256_setzero_ps();
  }
  for (int64_t p8 = 0; p8 < kl; p8 += 8) {
#pragma GCC unroll 4  // 8 spills accumulators (GCC 13); 4 keeps all 15 registers in place
    for (int q = 0; q < 8; ++q) {
      __m256 x[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) x[v] = _mm256_load_ps(xs + q * kTokenBlock + v * 8);
#pragma GCC unroll 8
      for (int j = 0; j < kPanelMr; ++j) {
        const __m256 a = _mm256_broadcast_ss(pa + j * 8 + q);
#pragma GCC unroll 2
        for (int v = 0; v < NV; ++v) acc[j][v] = _mm256_fmadd_ps(a, x[v], acc[j][v]);
      }
    }
    xs += 8 * kTokenBlock;
    pa += 8 * kPanelMr;
  }
#pragma GCC unroll 8
  for (int j = 0; j < kPanelMr; ++j) {
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      float* c = ct + j * ldc + v * 8;
      _mm256_store_ps(c, accumulate ? _mm256_add_ps(_mm256_load_ps(c), acc[j][v]) : acc[j][v]);
    }
  }
}

// Codes and scale bytes of row r, columns [k0, k0 + kl), towards the cache level `hint`.
template <int kHint>
void Prefetch(const Fp4Weight& w, int64_t r, int64_t k0, int64_t kl) {
  const int block = Fp4BlockSize(w.format);
  const char* p = reinterpret_cast<const char*>(w.packed.data() + r * (w.padded_cols / 2) + k0 / 2);
  for (int64_t b = 0; b < kl / 2; b += 64) _mm_prefetch(p + b, static_cast<_mm_hint>(kHint));
  _mm_prefetch(
      reinterpret_cast<const char*>(w.scales.data() + r * (w.padded_cols / block) + k0 / block),
      static_cast<_mm_hint>(kHint));
}

}  // namespace

void BlockFactors(const Fp4Weight& w, float* factors) {
  for (int s = 0; s < 256; ++s) factors[s] = BlockFactor(w, static_cast<uint8_t>(s));
}

SY_AVX2 void PackPanelAvx2(const Fp4Weight& w, const float* factors, int64_t r0, int64_t r1,
                           int64_t k0, int64_t kl, float* dst) {
  const int block = Fp4BlockSize(w.format);
  const int64_t nblocks = w.padded_cols / block, row_bytes = w.padded_cols / 2;
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kTwiceE2m1));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const int64_t tiles = PanelTiles(r1 - r0);
  for (int64_t i = 0; i < tiles; ++i) {
    // Per 16 k, the tile's 6 rows fill 2 x 48 consecutive floats: one sequential write stream.
    const int64_t rows = std::min<int64_t>(kPanelMr, r1 - r0 - i * kPanelMr);
    const uint8_t* p[kPanelMr];
    const uint8_t* s[kPanelMr];
    for (int64_t j = 0; j < rows; ++j) {
      const int64_t r = r0 + i * kPanelMr + j;
      p[j] = w.packed.data() + r * row_bytes + k0 / 2;
      s[j] = w.scales.data() + r * nblocks + k0 / block;
    }
    // Rows are 0.5-4 KB apart, beyond the hardware prefetcher. The first k-block of an item: the
    // rows two tiles ahead (into L1, needed now); every k-block: this tile's rows of the next one
    // (into L2, needed after the caller's pass over the tokens), a few lines per tile.
    if (k0 == 0) {
      const int64_t ahead0 = r0 + (i + 2) * kPanelMr, ahead1 = std::min(r1, ahead0 + kPanelMr);
      for (int64_t r = ahead0; r < ahead1; ++r) Prefetch<_MM_HINT_T0>(w, r, k0, kl);
    }
    const int64_t next_k0 = k0 + kl;
    if (next_k0 < w.padded_cols) {
      const int64_t next_kl = std::min(kPanelKc, w.padded_cols - next_k0);
      const int64_t here1 = std::min(r1, r0 + (i + 1) * kPanelMr);
      for (int64_t r = r0 + i * kPanelMr; r < here1; ++r) {
        Prefetch<_MM_HINT_T1>(w, r, next_k0, next_kl);
      }
    }
    float* out = dst + i * kPanelMr * kl;
    for (int64_t c = 0; c < kl; c += 16, out += 16 * kPanelMr) {
      int64_t j = 0;
      for (; j < rows; ++j) {
        const __m256 factor = _mm256_broadcast_ss(factors + s[j][c / block]);
        const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p[j] + c / 2));
        const __m128i even = _mm_and_si128(v, mask);
        const __m128i odd = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
        const __m128i w8 = _mm_shuffle_epi8(table, _mm_unpacklo_epi8(even, odd));  // k order
        _mm256_store_ps(out + j * 8,
                        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w8)), factor));
        _mm256_store_ps(
            out + 8 * kPanelMr + j * 8,
            _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w8, 8))), factor));
      }
      for (; j < kPanelMr; ++j) {  // padding rows of the last tile
        _mm256_store_ps(out + j * 8, _mm256_setzero_ps());
        _mm256_store_ps(out + 8 * kPanelMr + j * 8, _mm256_setzero_ps());
      }
    }
  }
}

void PanelTokenBlockAvx2(const float* xs, const float* pack, int64_t tiles, int64_t kl, int nv,
                         bool accumulate, float* ct, int64_t ldc, const float* next_xs) {
  // The next block's kl lines of activations, spread over the tiles: they come from L3 or memory,
  // and waiting for them at the start of the next block costs more than the prefetches.
  const int64_t per_tile = next_xs == nullptr ? 0 : (kl + tiles - 1) / tiles;
  for (int64_t i = 0; i < tiles; ++i) {
    const float* pa = pack + i * kPanelMr * kl;
    float* c = ct + i * kPanelMr * ldc;
    const int64_t first = std::min(kl, i * per_tile),
                  lines = std::min(kl, first + per_tile) - first;
    const float* ahead = next_xs == nullptr ? nullptr : next_xs + first * 16;
    if (nv == 2) {
      Tile<2>(xs, pa, kl, accumulate, c, ldc, ahead, lines);
    } else {
      Tile<1>(xs, pa, kl, accumulate, c, ldc, ahead, lines);
    }
  }
}

}  // namespace switchyard::cpu::fp4_internal
