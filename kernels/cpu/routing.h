// MoE routing: router logits -> each token's top-k experts and their weights.
//
// Two rules, exactly as the reference implementations compute them:
// - DeepSeek-V3 (noaux_tc): s = sigmoid(logit); b = s + bias picks experts: group score = sum of
//   the top-2 b in each of n_group groups, the best topk_group groups are kept (others masked to
//   -inf, the DeepSeek reference; transformers masks with 0, identical while every b > 0), top-k
//   of b among them. Weights are the unbiased s of the chosen experts, divided by their sum
//   (+1e-20) when norm_topk_prob, times routed_scaling_factor.
// - softmax top-k (Qwen3-MoE, Mixtral): p = softmax(logits); top-k of p; divided by their sum when
//   norm_topk_prob; times routed_scaling_factor (1 for these families).
// Ties go to the lower expert (or group) index. Outputs are ordered by descending selection score.
#pragma once

#include <cstdint>

namespace switchyard::cpu {

struct RoutingParams {
  int64_t num_experts = 0;
  int64_t num_topk = 0;
  bool sigmoid_group = false;  // DeepSeek rule (else softmax top-k)
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
  const float* bias = nullptr;  // e_score_correction_bias [num_experts]; DeepSeek rule only
};

// logits: [num_tokens, num_experts]; topk_idx / topk_weights: [num_tokens, num_topk].
// Parallel over tokens; no heap allocation per token.
void RouteTopK(const float* logits, int64_t num_tokens, const RoutingParams& params,
               int32_t* topk_idx, float* topk_weights);

}  // namespace switchyard::cpu
