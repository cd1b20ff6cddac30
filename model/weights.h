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
#include "kernels/cpu/fp4_gemm.h"
#include "model/model_config.h"
#include "model/safetensors.h"

namespace switchyard {

struct Linear {
  Tensor weight;       // [out, in] FP32, or empty when quantized
  cpu::Fp4Weight fp4;  // the FP4 form (routed experts with expert_format nvfp4/mxfp4)
  Tensor bias;         // [out] or empty
  bool quantized() const { return fp4.rows > 0; }
  bool loaded() const { return !weight.empty() || quantized(); }
  int64_t out() const { return quantized() ? fp4.rows : weight.empty() ? 0 : weight.dim(0); }
  int64_t in() const { return quantized() ? fp4.cols : weight.empty() ? 0 : weight.dim(1); }
  int64_t Bytes() const { return weight.bytes() + bias.bytes() + fp4.Bytes(); }
};

// How routed experts are held in memory: FP32 as loaded, or quantized at load time.
enum class ExpertFormat { kF32, kNvFp4, kMxFp4 };
// Parses "f32" | "nvfp4" | "mxfp4".
StatusOr<ExpertFormat> ParseExpertFormat(const std::string& text);
const char* ExpertFormatName(ExpertFormat format);

struct MlpWeights {  // SwiGLU: down(silu(gate x) * up x)
  Linear gate, up, down;
  bool loaded() const { return gate.loaded(); }
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
  // Routed experts are quantized tensor by tensor as they load (the FP32 copy is dropped at
  // once); a NaN/Inf weight is an error naming the tensor.
  ExpertFormat expert_format = ExpertFormat::kF32;
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

// Converts `count` F32/BF16/F16 elements from a checkpoint to FP32 (other dtypes: not allowed).
void ConvertToF32(const uint8_t* src, DType dtype, int64_t count, float* dst);

// The checkpoint tensor names (and shapes) a configuration needs, in load order. Used by the
// loader and by the generator of the built-in default model.
struct WeightSpec {
  std::string name;
  std::vector<int64_t> shape;
  enum class Kind {
    kNorm,
    kLinear,
    kExpertLinear,
    kBias,
    kEmbedding,
    kRouterBias
  } kind = Kind::kLinear;
};
std::vector<WeightSpec> RequiredWeights(const ModelConfig& config,
                                        const LoadSelection& selection = {});

}  // namespace switchyard
