#include "kernels/cpu/routing.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_kernels.h"

namespace switchyard::cpu {
namespace {

// Indices of the k largest of values[0..n) into out[0..k), descending, ties to the lower index.
void TopK(const float* values, int64_t n, int64_t k, int32_t* out) {
  for (int64_t j = 0; j < k; ++j) out[j] = -1;
  for (int64_t i = 0; i < n; ++i) {
    float v = values[i];
    // Insertion: strictly greater moves ahead, so an equal later index stays behind.
    int64_t pos = k;
    while (pos > 0 && (out[pos - 1] < 0 || v > values[out[pos - 1]])) --pos;
    if (pos >= k) continue;
    for (int64_t j = k - 1; j > pos; --j) out[j] = out[j - 1];
    out[pos] = static_cast<int32_t>(i);
  }
}

void RouteOne(const float* logits, const RoutingParams& p, float* scratch, int32_t* idx,
              float* weights) {
  const int64_t e = p.num_experts;
  float* score = scratch;       // unbiased scores (weights come from these)
  float* choice = scratch + e;  // selection scores
  if (p.sigmoid_group) {
    for (int64_t i = 0; i < e; ++i) {
      score[i] = 1.0f / (1.0f + std::exp(-logits[i]));
      choice[i] = score[i] + (p.bias ? p.bias[i] : 0.0f);
    }
    if (p.n_group > 1) {
      const int64_t per_group = e / p.n_group;
      float* group_score = scratch + 2 * e;
      for (int64_t g = 0; g < p.n_group; ++g) {
        int32_t top2[2];
        TopK(choice + g * per_group, per_group, 2, top2);
        group_score[g] = choice[g * per_group + top2[0]] +
                         (per_group > 1 ? choice[g * per_group + top2[1]] : 0.0f);
      }
      int32_t kept[64];
      int32_t* kept_groups =
          p.topk_group <= 64 ? kept : reinterpret_cast<int32_t*>(scratch + 3 * e);
      TopK(group_score, p.n_group, p.topk_group, kept_groups);
      for (int64_t g = 0; g < p.n_group; ++g) {
        bool keep = false;
        for (int64_t j = 0; j < p.topk_group; ++j) keep |= kept_groups[j] == g;
        if (!keep) {
          for (int64_t i = 0; i < per_group; ++i) {
            choice[g * per_group + i] = -std::numeric_limits<float>::infinity();
          }
        }
      }
    }
    TopK(choice, e, p.num_topk, idx);
    float sum = 0.0f;
    for (int64_t j = 0; j < p.num_topk; ++j) {
      weights[j] = score[idx[j]];
      sum += weights[j];
    }
    float denom = p.norm_topk_prob ? sum + 1e-20f : 1.0f;
    for (int64_t j = 0; j < p.num_topk; ++j)
      weights[j] = weights[j] / denom * p.routed_scaling_factor;
    return;
  }
  std::copy(logits, logits + e, score);
  SoftmaxInPlace(score, e);
  TopK(score, e, p.num_topk, idx);
  float sum = 0.0f;
  for (int64_t j = 0; j < p.num_topk; ++j) {
    weights[j] = score[idx[j]];
    sum += weights[j];
  }
  float denom = p.norm_topk_prob ? sum : 1.0f;
  for (int64_t j = 0; j < p.num_topk; ++j)
    weights[j] = weights[j] / denom * p.routed_scaling_factor;
}

}  // namespace

void RouteTopK(const float* logits, int64_t num_tokens, const RoutingParams& params,
               int32_t* topk_idx, float* topk_weights) {
  const int64_t e = params.num_experts;
  const size_t scratch_size = static_cast<size_t>(3 * e + params.n_group + 64);
#pragma omp parallel if (num_tokens * e > 65536)
  {
    std::vector<float> scratch(scratch_size);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < num_tokens; ++t) {
      RouteOne(logits + t * e, params, scratch.data(), topk_idx + t * params.num_topk,
               topk_weights + t * params.num_topk);
    }
  }
}

}  // namespace switchyard::cpu
