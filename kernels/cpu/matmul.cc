// FP32 x·Wᵀ. The AVX2 path computes 2 rows of x against 4 rows of W per pass (8 accumulators),
// walking k in steps of 8; the portable path is the same loop nest in plain C++.
#include <immintrin.h>

#include <algorithm>

#include "kernels/cpu/cpu_kernels.h"

namespace switchyard::cpu {
namespace {

constexpr int64_t kRowsW = 4;    // W rows per micro-tile
constexpr int64_t kBlockW = 32;  // W rows per parallel work item (stays in L2 for moderate k)

float DotScalar(const float* a, const float* b, int64_t k) {
  float acc = 0.0f;
  for (int64_t i = 0; i < k; ++i) acc += a[i] * b[i];
  return acc;
}

__attribute__((target("avx2,fma"))) inline float HSum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v);
  __m128 hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  __m128 shuf = _mm_movehdup_ps(lo);
  __m128 sums = _mm_add_ps(lo, shuf);
  shuf = _mm_movehl_ps(shuf, sums);
  sums = _mm_add_ss(sums, shuf);
  return _mm_cvtss_f32(sums);
}

// y[i][j] for MR rows of x (stride k) and 4 rows of W (stride k).
template <int MR>
__attribute__((target("avx2,fma"))) void Tile(const float* x, const float* w, int64_t k, float* y,
                                              int64_t ldy, int64_t nw) {
  __m256 acc[MR][kRowsW];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < kRowsW; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t k8 = k / 8 * 8;
  for (int64_t p = 0; p < k8; p += 8) {
    __m256 xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm256_loadu_ps(x + i * k + p);
    for (int j = 0; j < kRowsW; ++j) {
      if (j >= nw) break;
      __m256 wv = _mm256_loadu_ps(w + j * k + p);
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < nw; ++j) {
      float s = HSum(acc[i][j]);
      for (int64_t p = k8; p < k; ++p) s += x[i * k + p] * w[j * k + p];
      y[i * ldy + j] = s;
    }
  }
}

__attribute__((target("avx2,fma"))) void BlockAvx2(const float* x, int64_t m, int64_t k,
                                                   const float* w, int64_t n0, int64_t n1,
                                                   int64_t ldy, float* y) {
  // The W block (n1 - n0 rows) stays cache-resident while pairs of x rows stream past it.
  int64_t i = 0;
  for (; i + 2 <= m; i += 2) {
    for (int64_t j = n0; j < n1; j += kRowsW) {
      Tile<2>(x + i * k, w + j * k, k, y + i * ldy + j, ldy, std::min<int64_t>(kRowsW, n1 - j));
    }
  }
  if (i < m) {
    for (int64_t j = n0; j < n1; j += kRowsW) {
      Tile<1>(x + i * k, w + j * k, k, y + i * ldy + j, ldy, std::min<int64_t>(kRowsW, n1 - j));
    }
  }
}

void BlockScalar(const float* x, int64_t m, int64_t k, const float* w, int64_t n0, int64_t n1,
                 int64_t ldy, float* y) {
  for (int64_t j = n0; j < n1; ++j) {
    for (int64_t i = 0; i < m; ++i) y[i * ldy + j] = DotScalar(x + i * k, w + j * k, k);
  }
}

bool DetectAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

void Block(const float* x, int64_t m, int64_t k, const float* w, int64_t n0, int64_t n1, float* y,
           int64_t ldy, const float* bias) {
  static const bool avx2 = DetectAvx2();
  if (avx2) {
    BlockAvx2(x, m, k, w, n0, n1, ldy, y);
  } else {
    BlockScalar(x, m, k, w, n0, n1, ldy, y);
  }
  if (bias != nullptr) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = n0; j < n1; ++j) y[i * ldy + j] += bias[j];
  }
}

}  // namespace

bool MatMulUsesAvx2() {
  static const bool avx2 = DetectAvx2();
  return avx2;
}

void MatMulTransB(const float* x, int64_t m, int64_t k, const float* w, int64_t n, float* y,
                  const float* bias) {
  if (m == 0 || n == 0) return;
  int64_t blocks = (n + kBlockW - 1) / kBlockW;
  // Tiny products are not worth waking the thread team.
  if (m * n * k < (int64_t{1} << 15)) {
    Block(x, m, k, w, 0, n, y, n, bias);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t n0 = b * kBlockW;
    Block(x, m, k, w, n0, std::min(n, n0 + kBlockW), y, n, bias);
  }
}

void MatMulTransBSerial(const float* x, int64_t m, int64_t k, const float* w, int64_t n, float* y,
                        const float* bias) {
  if (m == 0 || n == 0) return;
  Block(x, m, k, w, 0, n, y, n, bias);
}

void MatMulTransBReference(const float* x, int64_t m, int64_t k, const float* w, int64_t n,
                           float* y, const float* bias) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double acc = bias ? bias[j] : 0.0;
      for (int64_t p = 0; p < k; ++p) acc += static_cast<double>(x[i * k + p]) * w[j * k + p];
      y[i * n + j] = static_cast<float>(acc);
    }
  }
}

}  // namespace switchyard::cpu
