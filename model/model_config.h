// Model configuration read from a Hugging Face `config.json`.
//
// Supported families (by `architectures[0]`): DeepseekV3ForCausalLM (MLA, YaRN, group-limited
// sigmoid routing with e_score_correction_bias, shared experts), Qwen3MoeForCausalLM (GQA with
// q/k RMSNorm, softmax top-k) and MixtralForCausalLM (GQA, softmax top-k renormalised). Optional
// keys take the defaults of the transformers configuration classes; required keys, wrong types
// and unsupported values are errors naming the key and what is supported.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace switchyard {

enum class ModelFamily { kDeepseekV3, kQwen3Moe, kMixtral };
const char* ModelFamilyName(ModelFamily family);

struct RopeConfig {
  double theta = 10000.0;
  int64_t dim = 0;  // rotated dimensions per head
  bool interleave =
      false;  // true: pairs (x[2i], x[2i+1]) (DeepSeek); false: halves (x[i], x[i+d/2])
  bool yarn = false;
  double factor = 1.0;
  double original_max_position_embeddings = 0;
  double beta_fast = 32, beta_slow = 1;
  double attention_factor = 1.0;  // multiplies cos/sin (YaRN mscale ratio)
};

struct ModelConfig {
  ModelFamily family = ModelFamily::kDeepseekV3;
  std::string architecture;
  int64_t vocab_size = 0;
  int64_t hidden = 0;
  int64_t intermediate_size = 0;  // dense MLP layers
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // GQA head size
  double rms_norm_eps = 1e-6;
  bool attention_bias = false;
  bool tie_word_embeddings = false;
  int64_t sliding_window = 0;  // 0 = full causal attention
  int64_t max_position_embeddings = 0;
  int32_t eos_token_id = -1;  // first EOS id, -1 if none
  std::vector<int32_t> eos_token_ids;

  // Quantized checkpoint (config.json "quantization_config"): "" = none; "NVFP4" /
  // "W4A16_NVFP4" (ModelOpt, quant_method "modelopt"); "MXFP4" (switchyard's MXFP4 layout, same
  // tensor names with E8M0 scales). FP4 tensors are read as stored; the rest as usual.
  // "FP8_BLOCK": DeepSeek's FP8 checkpoints (quant_method "fp8", fmt "e4m3", activation_scheme
  // "dynamic", weight_block_size [128, 128]): a linear `X.weight` may be F8_E4M3 [out, in] with
  // `X.weight_scale_inv` F32 [ceil(out/rows), ceil(in/cols)], one multiplier per
  // fp8_block_rows x fp8_block_cols block (edge blocks partial); the loader dequantizes it to FP32
  // (w = e4m3(w) * s), activations stay FP32. Only [128, 128] is accepted.
  std::string quant_algo;
  int64_t fp8_block_rows = 0;  // > 0 only for "FP8_BLOCK"
  int64_t fp8_block_cols = 0;

  // MLA (DeepSeek); q_lora_rank == 0 means a single q_proj.
  bool mla = false;
  int64_t q_lora_rank = 0;
  int64_t kv_lora_rank = 0;
  int64_t qk_nope_head_dim = 0;
  int64_t qk_rope_head_dim = 0;
  int64_t v_head_dim = 0;

  // MoE
  int64_t num_experts = 0;
  int64_t num_topk = 0;
  int64_t moe_intermediate_size = 0;
  int64_t shared_intermediate_size = 0;  // 0 = no shared expert
  bool sigmoid_group_routing = false;    // DeepSeek noaux_tc; else softmax top-k
  int64_t n_group = 1;
  int64_t topk_group = 1;
  bool norm_topk_prob = false;
  double routed_scaling_factor = 1.0;
  std::vector<bool> moe_layer;  // per layer: MoE (true) or dense MLP

  RopeConfig rope;
  double attn_scale = 0;  // softmax scale of q·k

  int64_t qk_head_dim() const { return mla ? qk_nope_head_dim + qk_rope_head_dim : head_dim; }
  int64_t NumMoeLayers() const;
  // One line: family, sizes, experts, attention kind.
  std::string Summary() const;
};

// Parses config.json text; `origin` (a path) prefixes errors.
StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& origin);
// Reads `<dir>/config.json`.
StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);

}  // namespace switchyard
