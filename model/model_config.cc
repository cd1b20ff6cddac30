#include "model/model_config.h"

#include <cmath>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/file_util.h"

namespace switchyard {
namespace {

using json = nlohmann::json;

constexpr const char* kSupported = "DeepseekV3ForCausalLM, Qwen3MoeForCausalLM, MixtralForCausalLM";

// Typed access to config keys; the first error is kept and later reads are no-ops.
class Keys {
 public:
  Keys(const json& root, std::string origin) : root_(root), origin_(std::move(origin)) {}

  bool Has(const char* key) const {
    auto it = root_.find(key);
    return it != root_.end() && !it->is_null();
  }
  int64_t Int(const char* key) { return IntOr(key, 0, /*required=*/true); }
  int64_t IntOr(const char* key, int64_t fallback, bool required = false) {
    if (!Has(key)) {
      if (required) Fail(std::string("missing required key '") + key + "'");
      return fallback;
    }
    const json& v = root_.at(key);
    if (!v.is_number_integer()) {
      Fail(std::string("key '") + key + "' must be an integer, got " + v.dump());
      return fallback;
    }
    return v.get<int64_t>();
  }
  int64_t PositiveInt(const char* key) {
    int64_t v = Int(key);
    if (status_.ok() && v <= 0)
      Fail(std::string("key '") + key + "' must be > 0, got " + std::to_string(v));
    return v;
  }
  double NumberOr(const char* key, double fallback) {
    if (!Has(key)) return fallback;
    const json& v = root_.at(key);
    if (!v.is_number()) {
      Fail(std::string("key '") + key + "' must be a number, got " + v.dump());
      return fallback;
    }
    return v.get<double>();
  }
  bool BoolOr(const char* key, bool fallback) {
    if (!Has(key)) return fallback;
    const json& v = root_.at(key);
    if (!v.is_boolean()) {
      Fail(std::string("key '") + key + "' must be true or false, got " + v.dump());
      return fallback;
    }
    return v.get<bool>();
  }
  std::string StringOr(const char* key, const std::string& fallback) {
    if (!Has(key)) return fallback;
    const json& v = root_.at(key);
    if (!v.is_string()) {
      Fail(std::string("key '") + key + "' must be a string, got " + v.dump());
      return fallback;
    }
    return v.get<std::string>();
  }
  std::vector<int64_t> IntListOr(const char* key) {
    std::vector<int64_t> out;
    if (!Has(key)) return out;
    const json& v = root_.at(key);
    if (v.is_number_integer()) return {v.get<int64_t>()};
    if (!v.is_array()) {
      Fail(std::string("key '") + key + "' must be an integer or a list of integers");
      return out;
    }
    for (const auto& e : v) {
      if (!e.is_number_integer()) {
        Fail(std::string("key '") + key + "' must hold integers, got " + e.dump());
        return {};
      }
      out.push_back(e.get<int64_t>());
    }
    return out;
  }
  void Fail(const std::string& message) {
    if (status_.ok()) status_ = InvalidArgumentError(origin_ + ": " + message);
  }
  // Takes over an error that already names its origin (from a nested Keys).
  void Adopt(const Status& status) {
    if (status_.ok()) status_ = status;
  }
  const Status& status() const { return status_; }
  const json& root() const { return root_; }

 private:
  const json& root_;
  std::string origin_;
  Status status_;
};

double YarnMscale(double scale, double mscale) {
  return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

void ParseRopeScaling(Keys& keys, const std::string& origin, ModelConfig* c) {
  if (!keys.Has("rope_scaling")) return;
  const json& rs = keys.root().at("rope_scaling");
  if (!rs.is_object()) {
    keys.Fail("key 'rope_scaling' must be an object or null");
    return;
  }
  Keys r(rs, origin + ": rope_scaling");
  std::string type = r.StringOr("rope_type", r.StringOr("type", "default"));
  if (type == "default") return;
  if (type != "yarn") {
    keys.Fail("rope_scaling type '" + type + "' is not supported (supported: yarn, default)");
    return;
  }
  c->rope.yarn = true;
  c->rope.factor = r.NumberOr("factor", 0);
  if (c->rope.factor <= 0) r.Fail("'factor' must be a number > 0");
  c->rope.original_max_position_embeddings = r.NumberOr(
      "original_max_position_embeddings", static_cast<double>(c->max_position_embeddings));
  c->rope.beta_fast = r.NumberOr("beta_fast", 32);
  c->rope.beta_slow = r.NumberOr("beta_slow", 1);
  if (c->rope.beta_fast == 0) c->rope.beta_fast = 32;  // transformers: `get("beta_fast") or 32`
  if (c->rope.beta_slow == 0) c->rope.beta_slow = 1;
  double mscale = r.NumberOr("mscale", 0);
  double mscale_all_dim = r.NumberOr("mscale_all_dim", 0);
  if (r.Has("attention_factor")) {
    c->rope.attention_factor = r.NumberOr("attention_factor", 1.0);
  } else if (mscale != 0 && mscale_all_dim != 0) {
    c->rope.attention_factor =
        YarnMscale(c->rope.factor, mscale) / YarnMscale(c->rope.factor, mscale_all_dim);
  } else {
    c->rope.attention_factor = YarnMscale(c->rope.factor, 1.0);
  }
  // DeepSeek MLA: the softmax scale grows with mscale_all_dim (transformers DeepseekV3Attention).
  if (c->mla && mscale_all_dim != 0) {
    double m = YarnMscale(c->rope.factor, mscale_all_dim);
    c->attn_scale *= m * m;
  }
  keys.Adopt(r.status());
}

void ParseEos(Keys& keys, ModelConfig* c) {
  for (int64_t id : keys.IntListOr("eos_token_id")) {
    if (id < 0 || id > INT32_MAX) {
      keys.Fail("key 'eos_token_id' holds " + std::to_string(id) + ", not a token id");
      return;
    }
    c->eos_token_ids.push_back(static_cast<int32_t>(id));
  }
  c->eos_token_id = c->eos_token_ids.empty() ? -1 : c->eos_token_ids[0];
}

void ParseDeepseekV3(Keys& k, const std::string& origin, ModelConfig* c) {
  c->mla = true;
  c->num_kv_heads = k.IntOr("num_key_value_heads", c->num_heads);
  c->q_lora_rank = k.IntOr("q_lora_rank", 0);  // null -> 0: a single q_proj
  if (c->q_lora_rank < 0) k.Fail("key 'q_lora_rank' must be >= 0 or null");
  c->kv_lora_rank = k.PositiveInt("kv_lora_rank");
  c->qk_nope_head_dim = k.PositiveInt("qk_nope_head_dim");
  c->qk_rope_head_dim = k.PositiveInt("qk_rope_head_dim");
  c->v_head_dim = k.PositiveInt("v_head_dim");
  if (c->qk_rope_head_dim % 2 != 0) k.Fail("key 'qk_rope_head_dim' must be even");
  c->num_experts = k.PositiveInt("n_routed_experts");
  c->num_topk = k.PositiveInt("num_experts_per_tok");
  c->moe_intermediate_size = k.PositiveInt("moe_intermediate_size");
  c->shared_intermediate_size = k.IntOr("n_shared_experts", 0) * c->moe_intermediate_size;
  c->n_group = k.IntOr("n_group", 1);
  c->topk_group = k.IntOr("topk_group", 1);
  c->norm_topk_prob = k.BoolOr("norm_topk_prob", true);
  c->routed_scaling_factor = k.NumberOr("routed_scaling_factor", 1.0);
  c->sigmoid_group_routing = true;
  std::string topk_method = k.StringOr("topk_method", "noaux_tc");
  if (topk_method != "noaux_tc") {
    k.Fail("topk_method '" + topk_method + "' is not supported (supported: noaux_tc)");
  }
  std::string scoring = k.StringOr("scoring_func", "sigmoid");
  if (scoring != "sigmoid") {
    k.Fail("scoring_func '" + scoring + "' is not supported (supported: sigmoid)");
  }
  std::string act = k.StringOr("hidden_act", "silu");
  if (act != "silu") k.Fail("hidden_act '" + act + "' is not supported (supported: silu)");
  if (c->n_group < 1 || c->num_experts % c->n_group != 0) {
    k.Fail("n_routed_experts (" + std::to_string(c->num_experts) +
           ") must be a multiple of n_group (" + std::to_string(c->n_group) + ")");
  }
  if (c->num_experts / std::max<int64_t>(c->n_group, 1) < 2 && c->n_group > 1) {
    k.Fail("group-limited routing needs >= 2 experts per group (n_routed_experts / n_group)");
  }
  if (c->topk_group < 1 || c->topk_group > c->n_group) k.Fail("topk_group must be in [1, n_group]");
  if (c->num_topk > c->topk_group * (c->num_experts / std::max<int64_t>(c->n_group, 1))) {
    k.Fail("num_experts_per_tok exceeds the experts in topk_group groups");
  }
  int64_t first_dense = k.IntOr("first_k_dense_replace", 0);
  int64_t freq = k.IntOr("moe_layer_freq", 1);
  if (freq < 1) k.Fail("key 'moe_layer_freq' must be >= 1");
  c->moe_layer.resize(c->num_layers);
  // DeepSeek's layer rule: MoE from first_k_dense_replace on, every moe_layer_freq-th layer.
  for (int64_t l = 0; l < c->num_layers; ++l) {
    c->moe_layer[l] = l >= first_dense && l % std::max<int64_t>(freq, 1) == 0;
  }
  c->rope.theta = k.NumberOr("rope_theta", 10000.0);
  c->rope.dim = c->qk_rope_head_dim;
  c->rope.interleave = k.BoolOr("rope_interleave", true);
  c->attn_scale = 1.0 / std::sqrt(static_cast<double>(c->qk_head_dim()));
  ParseRopeScaling(k, origin, c);
}

void ParseGqaFamily(Keys& k, const std::string& origin, ModelConfig* c) {
  c->num_kv_heads = k.IntOr("num_key_value_heads", c->num_heads);
  if (c->num_kv_heads <= 0 || c->num_heads % c->num_kv_heads != 0) {
    k.Fail("num_attention_heads (" + std::to_string(c->num_heads) +
           ") must be a positive multiple of num_key_value_heads (" +
           std::to_string(c->num_kv_heads) + ")");
  }
  c->head_dim = k.IntOr("head_dim", c->num_heads > 0 ? c->hidden / c->num_heads : 0);
  if (c->head_dim <= 0 || c->head_dim % 2 != 0) k.Fail("head_dim must be positive and even");
  c->moe_layer.resize(c->num_layers);
  std::string act = k.StringOr("hidden_act", "silu");
  if (act != "silu") k.Fail("hidden_act '" + act + "' is not supported (supported: silu)");
  if (c->family == ModelFamily::kQwen3Moe) {
    c->num_experts = k.PositiveInt("num_experts");
    c->num_topk = k.PositiveInt("num_experts_per_tok");
    c->moe_intermediate_size = k.PositiveInt("moe_intermediate_size");
    c->norm_topk_prob = k.BoolOr("norm_topk_prob", false);
    c->attention_bias = k.BoolOr("attention_bias", false);
    int64_t step = k.IntOr("decoder_sparse_step", 1);
    if (step < 1) k.Fail("key 'decoder_sparse_step' must be >= 1");
    std::vector<int64_t> mlp_only = k.IntListOr("mlp_only_layers");
    for (int64_t l = 0; l < c->num_layers; ++l) {
      bool dense = std::find(mlp_only.begin(), mlp_only.end(), l) != mlp_only.end();
      c->moe_layer[l] = !dense && (l + 1) % std::max<int64_t>(step, 1) == 0;
    }
    c->rope.theta = k.NumberOr("rope_theta", 10000.0);
    if (k.BoolOr("use_sliding_window", false)) c->sliding_window = k.IntOr("sliding_window", 0);
  } else {  // Mixtral
    c->num_experts = k.PositiveInt("num_local_experts");
    c->num_topk = k.PositiveInt("num_experts_per_tok");
    c->moe_intermediate_size = c->intermediate_size;
    c->norm_topk_prob = true;
    for (int64_t l = 0; l < c->num_layers; ++l) c->moe_layer[l] = true;
    c->rope.theta = k.NumberOr("rope_theta", 1e6);
    c->sliding_window = k.IntOr("sliding_window", 0);
  }
  if (c->num_topk > c->num_experts) k.Fail("num_experts_per_tok exceeds the number of experts");
  c->rope.dim = c->head_dim;
  c->rope.interleave = false;
  c->attn_scale = 1.0 / std::sqrt(static_cast<double>(c->head_dim));
  if (k.Has("rope_scaling")) {
    const json& rs = k.root().at("rope_scaling");
    std::string type = rs.is_object() ? rs.value("rope_type", rs.value("type", "default")) : "";
    if (type != "default") {
      k.Fail("rope_scaling for " + c->architecture + " is not supported (only null)");
    }
  }
  (void)origin;
}

// DeepSeek's FP8 block-scaled checkpoints (README_WEIGHTS.md): quant_method "fp8", fmt "e4m3",
// activation_scheme "dynamic", weight_block_size [128, 128]. fmt and activation_scheme default to
// those values when absent (transformers' FineGrainedFP8Config does the same); weight_block_size
// is required, as without it "fp8" means per-tensor scales (`weight_scale`), which are not
// supported.
Status ParseFp8Quantization(const json& q, const std::string& origin, ModelConfig* c) {
  const std::string fmt = q.contains("fmt") ? q.at("fmt").dump() : "\"e4m3\"";
  if (fmt != "\"e4m3\"") {
    return UnimplementedError(origin + ": quantization_config.fmt " + fmt +
                              " is not supported (supported: \"e4m3\")");
  }
  const std::string scheme =
      q.contains("activation_scheme") ? q.at("activation_scheme").dump() : "\"dynamic\"";
  if (scheme != "\"dynamic\"") {
    return UnimplementedError(origin + ": quantization_config.activation_scheme " + scheme +
                              " is not supported (supported: \"dynamic\")");
  }
  const json* block = q.contains("weight_block_size") ? &q.at("weight_block_size") : nullptr;
  if (block == nullptr || block->is_null()) {
    return UnimplementedError(origin +
                              ": quantization_config.weight_block_size is missing: per-tensor FP8 "
                              "is not supported (supported: weight_block_size [128, 128])");
  }
  if (*block != json::array({128, 128})) {
    return UnimplementedError(origin + ": quantization_config.weight_block_size " + block->dump() +
                              " is not supported (supported: [128, 128])");
  }
  c->quant_algo = "FP8_BLOCK";
  c->fp8_block_rows = 128;
  c->fp8_block_cols = 128;
  return OkStatus();
}

}  // namespace

const char* ModelFamilyName(ModelFamily family) {
  switch (family) {
    case ModelFamily::kDeepseekV3:
      return "deepseek_v3";
    case ModelFamily::kQwen3Moe:
      return "qwen3_moe";
    case ModelFamily::kMixtral:
      return "mixtral";
  }
  return "?";
}

int64_t ModelConfig::NumMoeLayers() const {
  int64_t n = 0;
  for (bool m : moe_layer) n += m;
  return n;
}

std::string ModelConfig::Summary() const {
  std::ostringstream out;
  out << ModelFamilyName(family) << ": " << num_layers << " layers (" << NumMoeLayers()
      << " MoE), hidden " << hidden << ", vocab " << vocab_size << ", " << num_heads << " heads";
  if (mla) {
    out << " MLA(q_lora " << q_lora_rank << ", kv_lora " << kv_lora_rank << ")";
  } else {
    out << " GQA(" << num_kv_heads << " kv heads, head_dim " << head_dim << ")";
  }
  out << ", " << num_experts << " experts top-" << num_topk;
  if (shared_intermediate_size > 0) out << " + shared";
  if (rope.yarn) out << ", YaRN x" << rope.factor;
  return out.str();
}

StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text, const std::string& origin) {
  json root = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    return InvalidArgumentError(origin + ": not a JSON object");
  }
  Keys k(root, origin);
  ModelConfig c;
  auto arch_it = root.find("architectures");
  if (arch_it == root.end() || !arch_it->is_array() || arch_it->empty() ||
      !(*arch_it)[0].is_string()) {
    return InvalidArgumentError(origin + ": key 'architectures' must be a non-empty list of names" +
                                " (supported: " + kSupported + ")");
  }
  c.architecture = (*arch_it)[0].get<std::string>();
  if (c.architecture == "DeepseekV3ForCausalLM") {
    c.family = ModelFamily::kDeepseekV3;
  } else if (c.architecture == "Qwen3MoeForCausalLM") {
    c.family = ModelFamily::kQwen3Moe;
  } else if (c.architecture == "MixtralForCausalLM") {
    c.family = ModelFamily::kMixtral;
  } else {
    return InvalidArgumentError(origin + ": architecture '" + c.architecture +
                                "' is not supported (supported: " + kSupported + ")");
  }
  if (root.contains("quantization_config")) {
    const json& q = root.at("quantization_config");
    // A missing or non-string value reads as "" (reported as unsupported, never thrown).
    auto text = [&q](const char* key) {
      auto it = q.is_object() ? q.find(key) : q.end();
      return it != q.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    const std::string method = text("quant_method");
    if (method == "fp8") {
      RETURN_IF_ERROR(ParseFp8Quantization(q, origin, &c));
    } else if (method == "modelopt") {
      const std::string algo = text("quant_algo");
      if (algo != "NVFP4" && algo != "W4A16_NVFP4" && algo != "MXFP4") {
        return UnimplementedError(origin + ": quantization_config.quant_algo '" + algo +
                                  "' is not supported (supported: NVFP4, W4A16_NVFP4, MXFP4)");
      }
      c.quant_algo = algo;
    } else {
      return UnimplementedError(origin + ": quantization_config.quant_method '" + method +
                                "' is not supported (supported: modelopt with quant_algo NVFP4," +
                                " W4A16_NVFP4 or MXFP4; fp8 with fmt e4m3 and weight_block_size" +
                                " [128, 128])");
    }
  }
  c.vocab_size = k.PositiveInt("vocab_size");
  c.hidden = k.PositiveInt("hidden_size");
  c.intermediate_size = k.PositiveInt("intermediate_size");
  c.num_layers = k.PositiveInt("num_hidden_layers");
  c.num_heads = k.PositiveInt("num_attention_heads");
  c.rms_norm_eps = k.NumberOr("rms_norm_eps", c.family == ModelFamily::kMixtral ? 1e-5 : 1e-6);
  c.tie_word_embeddings = k.BoolOr("tie_word_embeddings", false);
  c.attention_bias = k.BoolOr("attention_bias", false);
  c.max_position_embeddings = k.IntOr("max_position_embeddings", 4096);
  ParseEos(k, &c);
  if (!k.status().ok()) return k.status();
  if (c.family == ModelFamily::kDeepseekV3) {
    ParseDeepseekV3(k, origin, &c);
  } else {
    ParseGqaFamily(k, origin, &c);
  }
  if (!k.status().ok()) return k.status();
  if (c.family == ModelFamily::kMixtral && c.attention_bias) {
    return InvalidArgumentError(origin + ": attention_bias is not supported for Mixtral");
  }
  return c;
}

StatusOr<ModelConfig> LoadModelConfig(const std::string& dir) {
  const std::string path = dir + "/config.json";
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status().WithContext("model config");
  return ParseModelConfig(*text, path);
}

}  // namespace switchyard
