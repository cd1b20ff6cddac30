#include "model/random_checkpoint.h"

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "model/model_config.h"
#include "model/safetensors_writer.h"
#include "model/weights.h"

namespace switchyard {
namespace {

// Deterministic normal numbers: splitmix64 + Box-Muller; a stream per tensor.
class Normal {
 public:
  explicit Normal(uint64_t seed) : state_(seed) {}
  float Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = (Bits() >> 11) * 0x1.0p-53, u2 = (Bits() >> 11) * 0x1.0p-53;
    u1 = std::max(u1, 1e-300);
    double r = std::sqrt(-2.0 * std::log(u1));
    spare_ = static_cast<float>(r * std::sin(2 * M_PI * u2));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(2 * M_PI * u2));
  }

 private:
  uint64_t Bits() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t state_;
  bool has_spare_ = false;
  float spare_ = 0;
};

uint64_t NameHash(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return h;
}

Status WriteTextFile(const std::string& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) return InternalError("cannot write '" + path + "'");
  return OkStatus();
}

}  // namespace

Status WriteRandomCheckpoint(const std::string& dir, const std::string& config_json,
                             const RandomCheckpointOptions& options) {
  if (options.dtype != DType::kF32 && options.dtype != DType::kBF16 &&
      options.dtype != DType::kF16) {
    return InvalidArgumentError("random checkpoints are F32, BF16 or F16");
  }
  ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(config_json, "generated config.json"));
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return InvalidArgumentError("cannot create '" + dir + "': " + ec.message());
  {
    std::ofstream out(dir + "/config.json");
    out << config_json;
    if (!out) return InternalError("cannot write '" + dir + "/config.json'");
  }
  const int bytes_per = DTypeBits(options.dtype) / 8;
  std::vector<std::vector<TensorToWrite>> shards(1);
  int64_t shard_bytes = 0, total_bytes = 0;
  for (const WeightSpec& spec : RequiredWeights(config)) {
    int64_t count = 1;
    for (int64_t d : spec.shape) count *= d;
    const int64_t bytes = count * bytes_per;
    if (options.max_shard_bytes > 0 && shard_bytes > 0 &&
        shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shard_bytes += bytes;
    total_bytes += bytes;
    const uint64_t seed = options.seed ^ NameHash(spec.name);
    const WeightSpec::Kind kind = spec.kind;
    const DType dtype = options.dtype;
    TensorToWrite t{spec.name, dtype, spec.shape, nullptr};
    t.fill = [seed, kind, dtype, count](uint8_t* out, uint64_t bytes) {
      Normal normal(seed);
      std::vector<float> values(count);
      for (int64_t i = 0; i < count; ++i) {
        float z = normal.Next();
        switch (kind) {
          case WeightSpec::Kind::kNorm:
            values[i] = 1.0f + 0.1f * z;
            break;
          case WeightSpec::Kind::kRouterBias:
            values[i] = 0.02f * z;
            break;
          case WeightSpec::Kind::kEmbedding:
            values[i] = 1.0f * z;
            break;
          default:
            values[i] = 0.05f * z;
            break;
        }
      }
      FillFromFloats(std::move(values), dtype)(out, bytes);
    };
    shards.back().push_back(std::move(t));
  }
  if (shards.size() == 1) {
    std::filesystem::remove(dir + "/model.safetensors.index.json", ec);
    return WriteSafetensors(dir + "/model.safetensors", std::move(shards[0]), {{"format", "pt"}});
  }
  std::map<std::string, std::string> weight_map;
  const int n = static_cast<int>(shards.size());
  for (int i = 0; i < n; ++i) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05d-of-%05d.safetensors", i + 1, n);
    for (const auto& t : shards[i]) weight_map[t.name] = name;
    RETURN_IF_ERROR(WriteSafetensors(dir + "/" + name, std::move(shards[i]), {{"format", "pt"}}));
  }
  std::filesystem::remove(dir + "/model.safetensors", ec);
  return WriteSafetensorsIndex(dir + "/model.safetensors.index.json", weight_map,
                               static_cast<uint64_t>(total_bytes));
}

std::string DefaultModelConfigJson() {
  return R"({
  "architectures": ["DeepseekV3ForCausalLM"],
  "model_type": "deepseek_v3",
  "vocab_size": 2048,
  "hidden_size": 256,
  "intermediate_size": 768,
  "moe_intermediate_size": 128,
  "num_hidden_layers": 4,
  "first_k_dense_replace": 1,
  "moe_layer_freq": 1,
  "num_attention_heads": 8,
  "num_key_value_heads": 8,
  "q_lora_rank": 128,
  "kv_lora_rank": 64,
  "qk_nope_head_dim": 32,
  "qk_rope_head_dim": 16,
  "v_head_dim": 32,
  "n_routed_experts": 32,
  "n_shared_experts": 1,
  "num_experts_per_tok": 4,
  "n_group": 4,
  "topk_group": 2,
  "topk_method": "noaux_tc",
  "scoring_func": "sigmoid",
  "norm_topk_prob": true,
  "routed_scaling_factor": 2.5,
  "hidden_act": "silu",
  "rms_norm_eps": 1e-06,
  "max_position_embeddings": 16384,
  "rope_theta": 10000,
  "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 4096,
                   "beta_fast": 32, "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
  "tie_word_embeddings": false,
  "attention_bias": false,
  "bos_token_id": 0,
  "eos_token_id": 1,
  "torch_dtype": "bfloat16"
}
)";
}

Status WriteDefaultModel(const std::string& dir) {
  RandomCheckpointOptions options;
  options.dtype = DType::kBF16;
  options.seed = 20261128;
  options.max_shard_bytes = 16 << 20;
  RETURN_IF_ERROR(WriteRandomCheckpoint(dir, DefaultModelConfigJson(), options));
  RETURN_IF_ERROR(WriteTextFile(dir + "/tokenizer.json", DefaultModelTokenizerJson()));
  return WriteTextFile(dir + "/tokenizer_config.json", R"({
  "tokenizer_class": "LlamaTokenizerFast",
  "add_bos_token": true,
  "add_eos_token": false,
  "bos_token": "<｜begin▁of▁sentence｜>",
  "eos_token": "<｜end▁of▁sentence｜>",
  "pad_token": "<｜▁pad▁｜>",
  "model_max_length": 16384
}
)");
}

}  // namespace switchyard
