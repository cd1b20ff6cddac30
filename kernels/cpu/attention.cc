// Causal attention for one sequence over its cached keys/values. Work items are (query, head)
// pairs; each thread keeps one score row of ctx_len floats.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace switchyard::cpu {
namespace {

inline float Dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

inline void Axpy(float alpha, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// Softmax over scores[first..last] (inclusive), in place; returns nothing outside the range.
inline void SoftmaxRange(float* scores, int64_t first, int64_t last) {
  SoftmaxInPlace(scores + first, last - first + 1);
}

bool WorthParallel(int64_t num_q, int64_t num_heads, int64_t ctx_len, int64_t width) {
  return num_q * num_heads * ctx_len * width > 32768;
}

}  // namespace

void AttentionGqa(const float* q, int64_t num_q, int64_t start_pos, const float* k, const float* v,
                  int64_t ctx_len, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                  float scale, int64_t window, float* out) {
  const int64_t group = num_heads / num_kv_heads;
  const int64_t kv_stride = num_kv_heads * head_dim;
  const int64_t items = num_q * num_heads;
#pragma omp parallel if (WorthParallel(num_q, num_heads, ctx_len, head_dim))
  {
    std::vector<float> scores(ctx_len);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t qi = item / num_heads, h = item % num_heads, kvh = h / group;
      const int64_t pos = start_pos + qi;
      const int64_t first = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
      const float* qv = q + (qi * num_heads + h) * head_dim;
      for (int64_t t = first; t <= pos; ++t) {
        scores[t] = Dot(qv, k + t * kv_stride + kvh * head_dim, head_dim) * scale;
      }
      SoftmaxRange(scores.data(), first, pos);
      float* o = out + (qi * num_heads + h) * head_dim;
      std::fill(o, o + head_dim, 0.0f);
      for (int64_t t = first; t <= pos; ++t)
        Axpy(scores[t], v + t * kv_stride + kvh * head_dim, o, head_dim);
    }
  }
}

void AttentionMla(const float* q_lat, const float* q_pe, int64_t num_q, int64_t start_pos,
                  const float* cache, int64_t ctx_len, int64_t num_heads, int64_t lat, int64_t rope,
                  float scale, float* out) {
  const int64_t row = lat + rope;
  const int64_t items = num_q * num_heads;
#pragma omp parallel if (WorthParallel(num_q, num_heads, ctx_len, row))
  {
    std::vector<float> scores(ctx_len);
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t qi = item / num_heads, h = item % num_heads;
      const int64_t pos = start_pos + qi;
      const float* ql = q_lat + (qi * num_heads + h) * lat;
      const float* qp = q_pe + (qi * num_heads + h) * rope;
      for (int64_t t = 0; t <= pos; ++t) {
        const float* c = cache + t * row;
        scores[t] = (Dot(ql, c, lat) + Dot(qp, c + lat, rope)) * scale;
      }
      SoftmaxRange(scores.data(), 0, pos);
      float* o = out + (qi * num_heads + h) * lat;
      std::fill(o, o + lat, 0.0f);
      for (int64_t t = 0; t <= pos; ++t) Axpy(scores[t], cache + t * row, o, lat);
    }
  }
}

}  // namespace switchyard::cpu
