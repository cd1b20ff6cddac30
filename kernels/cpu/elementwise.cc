// Row-wise and element-wise kernels: RMSNorm, SwiGLU, softmax, RoPE.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"

namespace switchyard::cpu {

void RmsNormSerial(const float* x, const float* weight, int64_t rows, int64_t n, float eps,
                   float* y) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    // Mean of squares accumulated in FP32, as transformers does.
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i) sum += xr[i] * xr[i];
    float inv = 1.0f / std::sqrt(sum / static_cast<float>(n) + eps);
    for (int64_t i = 0; i < n; ++i) yr[i] = weight[i] * (xr[i] * inv);
  }
}

void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y) {
  if (rows * n < 16384) {
    RmsNormSerial(x, weight, rows, n, eps, y);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) RmsNormSerial(x + r * n, weight, 1, n, eps, y + r * n);
}

// SiluMul: out = g / (1 + exp(-g)) * u with exp from a Cody-Waite reduction and Cephes' degree-6
// polynomial (<= ~2 ulp). The AVX2 and scalar paths run the same IEEE operations in the same order
// (every product that meets an addition is an explicit FMA, so compiler contraction cannot make
// them differ): results are bit-identical whichever path runs and wherever a call splits n.
namespace {

constexpr float kLog2e = 1.44269504088896341f, kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
// exp(x) for x clamped to [kExpLo, kExpHi]: n = round(x·log2 e) stays in [-127, 128], and the
// scaling by 2^n is split in two exact steps; above ln(FLT_MAX) the second step overflows to +inf,
// at kExpLo the result is ~4.6e-39 (1 + it rounds to 1, as 1 + 0 would). NaN stays NaN.
constexpr float kExpLo = -88.3f, kExpHi = 88.75f;
constexpr float kP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                         4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

float Pow2(int32_t e) {  // 2^e for e in [-126, 127]
  const uint32_t bits = static_cast<uint32_t>(e + 127) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

float SiluMulScalar(float g, float u) {
  float x = -g;
  x = kExpLo > x ? kExpLo : x;  // the operand order of vmaxps/vminps: NaN passes through
  x = kExpHi < x ? kExpHi : x;
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(n, -kLn2Hi, x);
  r = std::fma(n, -kLn2Lo, r);
  float p = kP[0];
  for (int i = 1; i < 6; ++i) p = std::fma(p, r, kP[i]);
  const float y = std::fma(p, r * r, r) + 1.0f;
  const int32_t ni = n == n ? static_cast<int32_t>(n) : 0, h = ni > 0 ? 1 : -1;  // NaN: y is NaN
  const float t = y * Pow2(ni - h);
  const float d = std::fma(t, Pow2(h), 1.0f);  // 1 + exp(-g)
  return g / d * u;
}

__attribute__((target("avx2,fma"))) void SiluMulAvx2(const float* gate, const float* up, int64_t n,
                                                     float* out) {
  const __m256 lo = _mm256_set1_ps(kExpLo), hi = _mm256_set1_ps(kExpHi);
  const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
  const __m256i bias = _mm256_set1_epi32(127), ione = _mm256_set1_epi32(1);
  for (int64_t i = 0; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    __m256 x = _mm256_xor_ps(g, sign);
    x = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
    const __m256 nf = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(nf, _mm256_set1_ps(-kLn2Hi), x);
    r = _mm256_fmadd_ps(nf, _mm256_set1_ps(-kLn2Lo), r);
    __m256 p = _mm256_set1_ps(kP[0]);
    for (int k = 1; k < 6; ++k) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kP[k]));
    const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), one);
    const __m256i ni = _mm256_cvtps_epi32(nf);  // nf is integral: exact
    // h = n > 0 ? 1 : -1
    const __m256i h = _mm256_sub_epi32(
        _mm256_and_si256(_mm256_cmpgt_epi32(ni, _mm256_setzero_si256()), _mm256_set1_epi32(2)),
        ione);
    const __m256 s1 =
        _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), bias), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, bias), 23));
    const __m256 d = _mm256_fmadd_ps(_mm256_mul_ps(y, s1), s2, one);
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, d), _mm256_loadu_ps(up + i)));
  }
}

bool SiluMulUsesAvx2() {
  static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return avx2;
}

}  // namespace

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  int64_t i = 0;
  if (SiluMulUsesAvx2()) {
    i = n / 8 * 8;
    SiluMulAvx2(gate, up, i, out);
  }
  for (; i < n; ++i) out[i] = SiluMulScalar(gate[i], up[i]);
}

void SoftmaxInPlace(float* x, int64_t n) {
  if (n <= 0) return;
  float max = x[0];
  for (int64_t i = 1; i < n; ++i) max = std::max(max, x[i]);
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += x[i];
  }
  float inv = 1.0f / sum;
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void ApplyRope(float* x, int64_t dim, const float* cos, const float* sin, bool interleave) {
  int64_t half = dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    int64_t a = interleave ? 2 * i : i;
    int64_t b = interleave ? 2 * i + 1 : i + half;
    float x0 = x[a], x1 = x[b];
    x[a] = x0 * cos[i] - x1 * sin[i];
    x[b] = x1 * cos[i] + x0 * sin[i];
  }
}

}  // namespace switchyard::cpu
