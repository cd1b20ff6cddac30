// Model weights in their compute format (FP32), loaded from a checkpoint.
//
// The loader resolves every tensor the configuration needs (or the chosen subset of layers and
// experts), checks all names, dtypes and shapes BEFORE allocating anything, lists every missing or
// mismatched tensor in one error, then converts each tensor straight from the memory-mapped file
// into its resident buffer and drops the file pages behind it: each weight is resident once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "model/model_config.h"

namespace switchyard {

struct Linear {
  Tensor weight;  // [out, in]
  Tensor bias;    // [out] or empty
  int64_t out() const { return weight.empty() ? 0 : weight.dim(0); }
  int64_t in() const { return weight.empty() ? 0 : weight.dim(1); }
};

struct MlpWeights {  // SwiGLU: down(silu(gate x) * up x)
  Linear gate, up, down;
  bool loaded() const { return !gate.weight.empty(); }
};

struct AttentionWeights {
  // GQA (Qwen3-MoE, Mixtral)
  Linear q, k, v, o;
  Tensor q_norm, k_norm;  // Qwen3 per-head RMSNorm [head_dim], else empty
  // MLA (DeepSeek-V3): q = q_proj(x) or q_b(norm(q_a(x))); kv_a -> [latent | k_pe]; kv_b; o.
  Linear q_a, q_b, kv_a, kv_b;
  Tensor q_a_norm, kv_a_norm;
};

struct LayerWeights {
  Tensor input_norm, post_attention_norm;
  AttentionWeights attn;
  bool is_moe = false;
  MlpWeights dense;                 // dense layers
  Linear router;                    // [num_experts, hidden]
  Tensor router_bias;               // e_score_correction_bias [num_experts] (DeepSeek) or empty
  std::vector<MlpWeights> experts;  // num_experts entries; only the selected ones are loaded
  MlpWeights shared;                // shared experts (DeepSeek), maybe not loaded
};

struct ModelWeights {
  Tensor embed;    // [vocab, hidden]
  Tensor norm;     // [hidden]
  Tensor lm_head;  // [vocab, hidden]; empty when tied to embed
  std::vector<LayerWeights> layers;
  const Tensor& LmHead() const { return lm_head.empty() ? embed : lm_head; }
  int64_t ResidentBytes() const;
  int64_t ExpertBytes() const;  // routed experts only
};

// Which parts to load. Defaults load everything.
struct LoadSelection {
  // Layers whose attention/norms/router/shared experts are loaded (empty = all).
  std::vector<int64_t> layers;
  // Routed expert (layer, expert) to load; null = all experts of the selected layers.
  std::function<bool(int64_t layer, int64_t expert)> want_expert;
  bool embeddings = true;  // embed, final norm, lm_head
};

struct LoadReport {
  int64_t tensors = 0;
  int64_t bytes_read = 0;      // checkpoint bytes converted
  int64_t bytes_resident = 0;  // FP32 bytes now resident
  double seconds = 0;
};

// Loads from a checkpoint directory. Progress goes to stderr: a live line on a terminal, else a
// log line every 10%. On error nothing stays allocated and the error names file/tensor/offset.
StatusOr<std::unique_ptr<ModelWeights>> LoadModelWeights(const std::string& dir,
                                                         const ModelConfig& config,
                                                         const LoadSelection& selection = {},
                                                         LoadReport* report = nullptr);

// The checkpoint tensor names (and shapes) a configuration needs, in load order. Used by the
// loader and by the generator of the built-in default model.
struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  enum class Kind { kNorm, kLinear, kBias, kEmbedding, kRouterBias } kind = Kind::kLinear;
};
std::vector<WeightSpec> RequiredWeights(const ModelConfig& config,
                                        const LoadSelection& selection = {});

}  // namespace switchyard
