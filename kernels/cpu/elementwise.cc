// Row-wise and element-wise kernels: RMSNorm, SwiGLU, softmax, RoPE.
#include <cmath>

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

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
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
