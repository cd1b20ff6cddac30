#include "model/weights.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <new>
#include <set>

#include "common/dtype.h"
#include "common/logging.h"
#include "kernels/fp4_format.h"
#include "model/safetensors.h"

namespace switchyard {
namespace {

struct Slot {
  WeightSpec spec;
  Tensor* dest;
  Linear* linear = nullptr;  // routed-expert projections: may be quantized after loading
};

class SlotBuilder {
 public:
  explicit SlotBuilder(std::vector<Slot>* slots) : slots_(slots) {}
  void Add(const std::string& name, std::vector<int64_t> shape, Tensor* dest,
           WeightSpec::Kind kind) {
    slots_->push_back(Slot{WeightSpec{name, std::move(shape), kind}, dest});
  }
  void Linear(const std::string& prefix, int64_t out, int64_t in, switchyard::Linear* dest,
              bool bias = false) {
    Add(prefix + ".weight", {out, in}, &dest->weight, WeightSpec::Kind::kLinear);
    if (bias) Add(prefix + ".bias", {out}, &dest->bias, WeightSpec::Kind::kBias);
  }
  void ExpertLinear(const std::string& prefix, int64_t out, int64_t in, switchyard::Linear* dest) {
    Add(prefix + ".weight", {out, in}, &dest->weight, WeightSpec::Kind::kExpertLinear);
    slots_->back().linear = dest;
  }
  void Norm(const std::string& name, int64_t n, Tensor* dest) {
    Add(name, {n}, dest, WeightSpec::Kind::kNorm);
  }
  // Dense and shared-expert MLPs: FP32, or FP4 when the checkpoint stores them so.
  void Mlp(const std::string& prefix, const char* gate, const char* up, const char* down,
           int64_t hidden, int64_t inter, MlpWeights* dest) {
    Linear(prefix + "." + gate, inter, hidden, &dest->gate);
    slots_->back().linear = &dest->gate;
    Linear(prefix + "." + up, inter, hidden, &dest->up);
    slots_->back().linear = &dest->up;
    Linear(prefix + "." + down, hidden, inter, &dest->down);
    slots_->back().linear = &dest->down;
  }
  void ExpertMlp(const std::string& prefix, const char* gate, const char* up, const char* down,
                 int64_t hidden, int64_t inter, MlpWeights* dest) {
    ExpertLinear(prefix + "." + gate, inter, hidden, &dest->gate);
    ExpertLinear(prefix + "." + up, inter, hidden, &dest->up);
    ExpertLinear(prefix + "." + down, hidden, inter, &dest->down);
  }

 private:
  std::vector<Slot>* slots_;
};

void AttentionSlots(const ModelConfig& c, const std::string& p, AttentionWeights* a,
                    SlotBuilder& b) {
  const int64_t h = c.hidden;
  const bool bias = c.attention_bias;
  if (c.mla) {
    const int64_t qk = c.qk_head_dim();
    if (c.q_lora_rank == 0) {
      b.Linear(p + "q_proj", c.num_heads * qk, h, &a->q);
    } else {
      b.Linear(p + "q_a_proj", c.q_lora_rank, h, &a->q_a, bias);
      b.Norm(p + "q_a_layernorm.weight", c.q_lora_rank, &a->q_a_norm);
      b.Linear(p + "q_b_proj", c.num_heads * qk, c.q_lora_rank, &a->q_b);
    }
    b.Linear(p + "kv_a_proj_with_mqa", c.kv_lora_rank + c.qk_rope_head_dim, h, &a->kv_a, bias);
    b.Norm(p + "kv_a_layernorm.weight", c.kv_lora_rank, &a->kv_a_norm);
    b.Linear(p + "kv_b_proj", c.num_heads * (c.qk_nope_head_dim + c.v_head_dim), c.kv_lora_rank,
             &a->kv_b);
    b.Linear(p + "o_proj", h, c.num_heads * c.v_head_dim, &a->o, bias);
    return;
  }
  b.Linear(p + "q_proj", c.num_heads * c.head_dim, h, &a->q, bias);
  b.Linear(p + "k_proj", c.num_kv_heads * c.head_dim, h, &a->k, bias);
  b.Linear(p + "v_proj", c.num_kv_heads * c.head_dim, h, &a->v, bias);
  b.Linear(p + "o_proj", h, c.num_heads * c.head_dim, &a->o, bias);
  if (c.family == ModelFamily::kQwen3Moe) {
    b.Norm(p + "q_norm.weight", c.head_dim, &a->q_norm);
    b.Norm(p + "k_norm.weight", c.head_dim, &a->k_norm);
  }
}

void BuildSlots(const ModelConfig& c, const LoadSelection& sel, ModelWeights* w,
                std::vector<Slot>* slots) {
  SlotBuilder b(slots);
  w->layers.resize(c.num_layers);
  if (sel.embeddings) {
    b.Add("model.embed_tokens.weight", {c.vocab_size, c.hidden}, &w->embed,
          WeightSpec::Kind::kEmbedding);
  }
  std::vector<int64_t> layers = sel.layers;
  if (layers.empty()) {
    for (int64_t l = 0; l < c.num_layers; ++l) layers.push_back(l);
  }
  const bool mixtral = c.family == ModelFamily::kMixtral;
  for (int64_t l : layers) {
    LayerWeights& lw = w->layers[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    b.Norm(p + "input_layernorm.weight", c.hidden, &lw.input_norm);
    b.Norm(p + "post_attention_layernorm.weight", c.hidden, &lw.post_attention_norm);
    AttentionSlots(c, p + "self_attn.", &lw.attn, b);
    lw.is_moe = c.moe_layer[l];
    if (!lw.is_moe) {
      b.Mlp(p + "mlp", "gate_proj", "up_proj", "down_proj", c.hidden, c.intermediate_size,
            &lw.dense);
      continue;
    }
    const std::string moe = p + (mixtral ? "block_sparse_moe" : "mlp");
    b.Linear(moe + ".gate", c.num_experts, c.hidden, &lw.router);
    if (c.sigmoid_group_routing) {
      b.Add(moe + ".gate.e_score_correction_bias", {c.num_experts}, &lw.router_bias,
            WeightSpec::Kind::kRouterBias);
    }
    lw.experts.resize(c.num_experts);
    for (int64_t e = 0; e < c.num_experts; ++e) {
      if (sel.want_expert && !sel.want_expert(l, e)) continue;
      const std::string ep = moe + ".experts." + std::to_string(e);
      if (mixtral) {
        b.ExpertMlp(ep, "w1", "w3", "w2", c.hidden, c.moe_intermediate_size, &lw.experts[e]);
      } else {
        b.ExpertMlp(ep, "gate_proj", "up_proj", "down_proj", c.hidden, c.moe_intermediate_size,
                    &lw.experts[e]);
      }
    }
    if (c.shared_intermediate_size > 0) {
      b.Mlp(moe + ".shared_experts", "gate_proj", "up_proj", "down_proj", c.hidden,
            c.shared_intermediate_size, &lw.shared);
    }
  }
  if (sel.embeddings) {
    b.Norm("model.norm.weight", c.hidden, &w->norm);
    if (!c.tie_word_embeddings) {
      b.Add("lm_head.weight", {c.vocab_size, c.hidden}, &w->lm_head, WeightSpec::Kind::kEmbedding);
    }
  }
}

// Live progress on a terminal; a log line per 10% otherwise. Quiet for the first second.
class Progress {
  static constexpr double kQuietSeconds = 1.0;

 public:
  Progress(int64_t total_bytes, int64_t total_tensors)
      : total_bytes_(total_bytes),
        total_tensors_(total_tensors),
        tty_(isatty(STDERR_FILENO) == 1),
        start_(std::chrono::steady_clock::now()) {}
  void Update(int64_t bytes, int64_t tensors) {
    double secs = Seconds();
    double rate = secs > 0 ? bytes / secs / 1e6 : 0;
    int decile = total_bytes_ > 0 ? static_cast<int>(10 * bytes / total_bytes_) : 10;
    if (secs < kQuietSeconds) return;  // small checkpoints load silently
    if (tty_) {
      if (secs - last_print_ < 0.1 && tensors != total_tensors_) return;
      last_print_ = secs;
      std::fprintf(stderr, "\rloading weights: %.2f / %.2f GB, %lld / %lld tensors, %.0f MB/s   ",
                   bytes / 1e9, total_bytes_ / 1e9, static_cast<long long>(tensors),
                   static_cast<long long>(total_tensors_), rate);
      if (tensors == total_tensors_) std::fprintf(stderr, "\n");
    } else if (decile > last_decile_) {
      last_decile_ = decile;
      LOG_INFO("load", "weights %d%%: %.2f / %.2f GB, %lld / %lld tensors, %.0f MB/s", decile * 10,
               bytes / 1e9, total_bytes_ / 1e9, static_cast<long long>(tensors),
               static_cast<long long>(total_tensors_), rate);
    }
  }
  double Seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  int64_t total_bytes_, total_tensors_;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  double last_print_ = -1;
  int last_decile_ = 0;
};

std::string ShapeText(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The companions of an FP4 weight `<prefix>.weight` (U8 [out, in/2]): `<prefix>.weight_scale`
// (F8_E4M3 [out, in/16] for NVFP4; F8_E8M0 or U8 [out, in/32] for MXFP4) and, for NVFP4,
// `<prefix>.weight_scale_2` (F32, one element: the per-tensor scale). ModelOpt's `input_scale`
// (activation calibration) is not needed: activations stay FP32.
struct Fp4Parts {
  Checkpoint::Entry scale{nullptr, nullptr};
  Checkpoint::Entry scale_2{nullptr, nullptr};
  cpu::Fp4Format format = cpu::Fp4Format::kNvFp4;
};

std::string Where(const Checkpoint::Entry& e) {
  return "tensor '" + e.info->name + "' in '" + e.file->path() + "' at byte " +
         std::to_string(e.file->FileOffset(*e.info));
}

Status ResolveFp4(const Checkpoint& ckpt, const WeightSpec& spec, Fp4Parts* parts) {
  const std::string prefix = spec.name.substr(0, spec.name.size() - std::string(".weight").size());
  const Checkpoint::Entry weight = ckpt.Find(spec.name);
  const int64_t out = spec.shape[0], in = spec.shape[1];
  parts->scale = ckpt.Find(prefix + ".weight_scale");
  if (parts->scale.file == nullptr) {
    return NotFoundError(Where(weight) + " is U8 (FP4) but '" + prefix +
                         ".weight_scale' is missing");
  }
  const TensorInfo& scale = *parts->scale.info;
  if (scale.dtype == DType::kF8E4M3) {
    parts->format = cpu::Fp4Format::kNvFp4;
  } else if (scale.dtype == DType::kF8E8M0 || scale.dtype == DType::kU8) {
    parts->format = cpu::Fp4Format::kMxFp4;
  } else {
    return InvalidArgumentError(Where(parts->scale) + " has dtype " + DTypeName(scale.dtype) +
                                " (FP4 block scales are F8_E4M3 for NVFP4, F8_E8M0/U8 for MXFP4)");
  }
  const int block = cpu::Fp4BlockSize(parts->format);
  if (in % block != 0) {
    return InvalidArgumentError(
        Where(weight) + ": " + std::to_string(in) + " input features are not a multiple of the " +
        std::to_string(block) + "-element " + cpu::Fp4FormatName(parts->format) + " block");
  }
  if (weight.info->shape != std::vector<int64_t>{out, in / 2}) {
    return InvalidArgumentError(Where(weight) + " has shape " + weight.info->ShapeString() +
                                ", FP4 packing of config.json's [" + std::to_string(out) + ", " +
                                std::to_string(in) + "] needs [" + std::to_string(out) + ", " +
                                std::to_string(in / 2) + "]");
  }
  if (scale.shape != std::vector<int64_t>{out, in / block}) {
    return InvalidArgumentError(Where(parts->scale) + " has shape " + scale.ShapeString() +
                                ", expected [" + std::to_string(out) + ", " +
                                std::to_string(in / block) + "]");
  }
  if (parts->format == cpu::Fp4Format::kNvFp4) {
    parts->scale_2 = ckpt.Find(prefix + ".weight_scale_2");
    if (parts->scale_2.file == nullptr) {
      return NotFoundError(Where(weight) + " is NVFP4 but '" + prefix +
                           ".weight_scale_2' is missing");
    }
    const TensorInfo& s2 = *parts->scale_2.info;
    if (s2.dtype != DType::kF32 || s2.NumElements() != 1) {
      return InvalidArgumentError(Where(parts->scale_2) + " must be one F32 value, got " +
                                  DTypeName(s2.dtype) + " " + s2.ShapeString());
    }
    float g;
    std::memcpy(&g, parts->scale_2.file->Data(s2), 4);
    if (!std::isfinite(g) || g <= 0) {
      return InvalidArgumentError(Where(parts->scale_2) + " holds " + std::to_string(g) +
                                  ", not a positive finite scale");
    }
  }
  return OkStatus();
}

cpu::Fp4Weight ReadFp4(const WeightSpec& spec, const Checkpoint::Entry& weight,
                       const Fp4Parts& parts) {
  cpu::Fp4Weight w;
  w.format = parts.format;
  w.rows = spec.shape[0];
  w.cols = w.padded_cols = spec.shape[1];
  const uint8_t* packed = weight.file->Data(*weight.info);
  w.packed.assign(packed, packed + (weight.info->end - weight.info->begin));
  const uint8_t* scales = parts.scale.file->Data(*parts.scale.info);
  w.scales.assign(scales, scales + (parts.scale.info->end - parts.scale.info->begin));
  if (parts.scale_2.file != nullptr) {
    std::memcpy(&w.global_scale, parts.scale_2.file->Data(*parts.scale_2.info), 4);
  }
  return w;
}

// DeepSeek FP8 (config quant_algo "FP8_BLOCK"): a linear `<prefix>.weight` stored as F8_E4M3
// [out, in] with `<prefix>.weight_scale_inv` F32 [ceil(out/R), ceil(in/C)], R x C the config's
// block; w[i][j] = e4m3(w[i][j]) * s[i/R][j/C] (DeepSeek kernel.py weight_dequant_kernel).
struct Fp8Parts {
  Checkpoint::Entry scale{nullptr, nullptr};
  int64_t block_rows = 0, block_cols = 0;
};

// Checks the weight's shape, and the scale's presence, dtype, shape and values (all of them: the
// scales are 1/16384 of the weight bytes). Appends every problem found to `problems`.
bool ResolveFp8(const Checkpoint& ckpt, const ModelConfig& config, const WeightSpec& spec,
                const Checkpoint::Entry& weight, Fp8Parts* parts,
                std::vector<std::string>* problems) {
  if (config.fp8_block_rows <= 0 || config.fp8_block_cols <= 0) {
    problems->push_back(Where(weight) +
                        " is F8_E4M3 but config.json declares no FP8 quantization_config"
                        " (quant_method fp8, weight_block_size [128, 128])");
    return false;
  }
  const int64_t out = spec.shape[0], in = spec.shape[1];
  bool ok = true;
  if (weight.info->shape != spec.shape) {
    problems->push_back(Where(weight) + " has shape " + weight.info->ShapeString() +
                        ", config.json implies " + ShapeText(spec.shape));
    ok = false;
  }
  parts->block_rows = config.fp8_block_rows;
  parts->block_cols = config.fp8_block_cols;
  const std::string scale_name = spec.name + "_scale_inv";
  parts->scale = ckpt.Find(scale_name);
  if (parts->scale.file == nullptr) {
    problems->push_back(Where(weight) + " is F8_E4M3 but '" + scale_name + "' is missing");
    return false;
  }
  const TensorInfo& scale = *parts->scale.info;
  const std::vector<int64_t> scale_shape = {(out + parts->block_rows - 1) / parts->block_rows,
                                            (in + parts->block_cols - 1) / parts->block_cols};
  if (scale.dtype != DType::kF32) {
    problems->push_back(Where(parts->scale) + " has dtype " + DTypeName(scale.dtype) +
                        " (FP8 block scales are F32)");
    return false;
  }
  if (scale.shape != scale_shape) {
    problems->push_back(Where(parts->scale) + " has shape " + scale.ShapeString() + ", expected " +
                        ShapeText(scale_shape) + " (" + std::to_string(parts->block_rows) + "x" +
                        std::to_string(parts->block_cols) + " blocks of " + ShapeText(spec.shape) +
                        ")");
    return false;
  }
  const uint8_t* data = parts->scale.file->Data(scale);
  for (int64_t b = 0; b < scale.NumElements(); ++b) {
    float s;
    std::memcpy(&s, data + 4 * b, 4);
    if (!std::isfinite(s) || s <= 0) {
      problems->push_back(Where(parts->scale) + " holds " + std::to_string(s) + " at block [" +
                          std::to_string(b / scale_shape[1]) + ", " +
                          std::to_string(b % scale_shape[1]) + "], not a positive finite scale");
      return false;
    }
  }
  return ok;
}

// Dequantizes into `dst` ([out, in] FP32). A NaN code (0x7F/0xFF; E4M3 has no Inf) is an error.
Status DequantizeFp8(const WeightSpec& spec, const Checkpoint::Entry& weight, const Fp8Parts& parts,
                     float* dst) {
  float lut[256];
  for (int c = 0; c < 256; ++c) lut[c] = fp4::E4m3ToF32(static_cast<uint8_t>(c));
  const int64_t out = spec.shape[0], in = spec.shape[1];
  const int64_t scale_cols = (in + parts.block_cols - 1) / parts.block_cols;
  const uint8_t* codes = weight.file->Data(*weight.info);
  const uint8_t* scale_bytes = parts.scale.file->Data(*parts.scale.info);
  for (int64_t i = 0; i < out; ++i) {
    const uint8_t* row = codes + i * in;
    float* y = dst + i * in;
    const uint8_t* srow = scale_bytes + 4 * (i / parts.block_rows) * scale_cols;
    for (int64_t j0 = 0, b = 0; j0 < in; j0 += parts.block_cols, ++b) {
      float s;
      std::memcpy(&s, srow + 4 * b, 4);
      const int64_t j1 = std::min(in, j0 + parts.block_cols);
      uint8_t nan = 0;
      for (int64_t j = j0; j < j1; ++j) {
        y[j] = lut[row[j]] * s;
        nan |= static_cast<uint8_t>((row[j] & 0x7F) == fp4::kE4m3NaN);
      }
      if (nan) {
        int64_t j = j0;
        while ((row[j] & 0x7F) != fp4::kE4m3NaN) ++j;
        return InvalidArgumentError(Where(weight) + " holds an E4M3 NaN at [" + std::to_string(i) +
                                    ", " + std::to_string(j) + "]");
      }
    }
  }
  return OkStatus();
}

}  // namespace

// Deliberately one thread: the cost is
// page faults (source mapping and fresh destination pages), which serialise on the address-space
// lock; two threads measured 1.7-2x slower here (bench_load, 1.8 GB F32: 4.5 s vs 2.6 s).
void ConvertToF32(const uint8_t* src, DType dtype, int64_t count, float* dst) {
  constexpr int64_t kChunk = 1 << 16;
  for (int64_t c0 = 0; c0 < count; c0 += kChunk) {
    int64_t c1 = std::min(count, c0 + kChunk);
    if (dtype == DType::kF32) {
      std::memcpy(dst + c0, src + 4 * c0, 4 * (c1 - c0));
    } else {
      for (int64_t i = c0; i < c1; ++i) {
        uint16_t bits;
        std::memcpy(&bits, src + 2 * i, 2);
        dst[i] = dtype == DType::kBF16 ? Bf16ToF32(bits) : F16ToF32(bits);
      }
    }
  }
}

StatusOr<ExpertFormat> ParseExpertFormat(const std::string& text) {
  if (text == "f32") return ExpertFormat::kF32;
  if (text == "nvfp4") return ExpertFormat::kNvFp4;
  if (text == "mxfp4") return ExpertFormat::kMxFp4;
  return InvalidArgumentError("expert format '" + text + "' is not one of f32, nvfp4, mxfp4");
}

const char* ExpertFormatName(ExpertFormat format) {
  switch (format) {
    case ExpertFormat::kF32:
      return "f32";
    case ExpertFormat::kNvFp4:
      return "nvfp4";
    case ExpertFormat::kMxFp4:
      return "mxfp4";
  }
  return "?";
}

int64_t ModelWeights::ResidentBytes() const {
  int64_t total = embed.bytes() + norm.bytes() + lm_head.bytes();
  auto mlp = [](const MlpWeights& m) { return m.gate.Bytes() + m.up.Bytes() + m.down.Bytes(); };
  for (const auto& l : layers) {
    total += l.input_norm.bytes() + l.post_attention_norm.bytes();
    const AttentionWeights& a = l.attn;
    for (const Linear* lin : {&a.q, &a.k, &a.v, &a.o, &a.q_a, &a.q_b, &a.kv_a, &a.kv_b}) {
      total += lin->Bytes();
    }
    total += a.q_norm.bytes() + a.k_norm.bytes() + a.q_a_norm.bytes() + a.kv_a_norm.bytes();
    total += mlp(l.dense) + l.router.Bytes() + l.router_bias.bytes() + mlp(l.shared);
    for (const auto& e : l.experts) total += mlp(e);
  }
  return total;
}

int64_t ModelWeights::ExpertBytes() const {
  int64_t total = 0;
  for (const auto& l : layers) {
    for (const auto& e : l.experts) total += e.gate.Bytes() + e.up.Bytes() + e.down.Bytes();
  }
  return total;
}

std::vector<WeightSpec> RequiredWeights(const ModelConfig& config, const LoadSelection& selection) {
  ModelWeights scratch;
  std::vector<Slot> slots;
  BuildSlots(config, selection, &scratch, &slots);
  std::vector<WeightSpec> specs;
  specs.reserve(slots.size());
  for (auto& s : slots) specs.push_back(std::move(s.spec));
  return specs;
}

StatusOr<std::unique_ptr<ModelWeights>> LoadModelWeights(const std::string& dir,
                                                         const ModelConfig& config,
                                                         const LoadSelection& selection,
                                                         LoadReport* report) {
  for (int64_t l : selection.layers) {
    if (l < 0 || l >= config.num_layers) {
      return InvalidArgumentError("load selection names layer " + std::to_string(l) +
                                  " but the model has " + std::to_string(config.num_layers));
    }
  }
  ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(dir));
  auto weights = std::make_unique<ModelWeights>();
  std::vector<Slot> slots;
  BuildSlots(config, selection, weights.get(), &slots);

  // Pass 1: resolve and check everything; nothing is allocated until all of it is right.
  std::vector<std::string> problems;
  std::vector<Checkpoint::Entry> entries(slots.size());
  std::vector<Fp4Parts> fp4_parts(slots.size());
  std::vector<Fp8Parts> fp8_parts(slots.size());
  int64_t total_bytes = 0;
  for (size_t i = 0; i < slots.size(); ++i) {
    const WeightSpec& spec = slots[i].spec;
    Checkpoint::Entry e = ckpt->Find(spec.name);
    if (e.file == nullptr) {
      problems.push_back("missing tensor '" + spec.name + "' (expected " + ShapeText(spec.shape) +
                         ")");
      continue;
    }
    const TensorInfo& info = *e.info;
    if (slots[i].linear != nullptr && info.dtype == DType::kU8) {  // stored in FP4
      Status st = ResolveFp4(*ckpt, spec, &fp4_parts[i]);
      if (!st.ok()) {
        problems.push_back(st.message());
        continue;
      }
      entries[i] = e;
      total_bytes += static_cast<int64_t>(info.end - info.begin);
      continue;
    }
    const bool linear =
        spec.kind == WeightSpec::Kind::kLinear || spec.kind == WeightSpec::Kind::kExpertLinear;
    if (linear && info.dtype == DType::kF8E4M3) {  // DeepSeek FP8, block-scaled
      if (!ResolveFp8(*ckpt, config, spec, e, &fp8_parts[i], &problems)) continue;
      entries[i] = e;
      total_bytes += static_cast<int64_t>(info.end - info.begin);
      continue;
    }
    if (info.dtype != DType::kF32 && info.dtype != DType::kBF16 && info.dtype != DType::kF16) {
      problems.push_back("tensor '" + spec.name + "' in '" + e.file->path() + "' at byte " +
                         std::to_string(e.file->FileOffset(info)) + " has dtype " +
                         DTypeName(info.dtype) + " (supported: F32, BF16, F16)");
      continue;
    }
    if (info.shape != spec.shape) {
      problems.push_back("tensor '" + spec.name + "' in '" + e.file->path() + "' at byte " +
                         std::to_string(e.file->FileOffset(info)) + " has shape " +
                         info.ShapeString() + ", config.json implies " + ShapeText(spec.shape));
      continue;
    }
    entries[i] = e;
    total_bytes += static_cast<int64_t>(info.end - info.begin);
  }
  if (!problems.empty()) {
    std::string msg = "checkpoint '" + dir + "': " + std::to_string(problems.size()) +
                      " problem(s) with the tensors config.json needs:";
    const size_t shown = std::min<size_t>(problems.size(), 40);
    for (size_t i = 0; i < shown; ++i) msg += "\n  " + problems[i];
    if (shown < problems.size()) {
      msg += "\n  ... and " + std::to_string(problems.size() - shown) + " more";
    }
    return NotFoundError(msg);
  }

  // Pass 2: convert tensor by tensor, releasing each one's file pages once it is resident.
  Progress progress(total_bytes, static_cast<int64_t>(slots.size()));
  int64_t done_bytes = 0;
  try {
    for (size_t i = 0; i < slots.size(); ++i) {
      const TensorInfo& info = *entries[i].info;
      if (fp4_parts[i].scale.file != nullptr) {
        slots[i].linear->fp4 = ReadFp4(slots[i].spec, entries[i], fp4_parts[i]);
        done_bytes += static_cast<int64_t>(info.end - info.begin);
        progress.Update(done_bytes, static_cast<int64_t>(i + 1));
        continue;
      }
      const bool quantize = slots[i].spec.kind == WeightSpec::Kind::kExpertLinear &&
                            selection.expert_format != ExpertFormat::kF32;
      // Kept weights go to the huge-page arena; a tensor about to be quantized is temporary.
      Tensor t = quantize ? Tensor::Uninitialized(slots[i].spec.shape)
                          : Tensor::UninitializedWeights(slots[i].spec.shape);
      if (fp8_parts[i].scale.file != nullptr) {
        Status st = DequantizeFp8(slots[i].spec, entries[i], fp8_parts[i], t.data());
        if (!st.ok()) return st.WithContext("checkpoint '" + dir + "'");
        fp8_parts[i].scale.file->Release(*fp8_parts[i].scale.info);
      } else {
        ConvertToF32(entries[i].file->Data(info), info.dtype, info.NumElements(), t.data());
      }
      entries[i].file->Release(info);
      if (quantize) {
        const auto format = selection.expert_format == ExpertFormat::kNvFp4
                                ? cpu::Fp4Format::kNvFp4
                                : cpu::Fp4Format::kMxFp4;
        auto q = cpu::QuantizeFp4(t.data(), t.dim(0), t.dim(1), format, slots[i].spec.name);
        if (!q.ok()) return q.status().WithContext("checkpoint '" + dir + "'");
        slots[i].linear->fp4 = std::move(*q);  // the FP32 tensor is freed here
      } else {
        *slots[i].dest = std::move(t);
      }
      done_bytes += static_cast<int64_t>(info.end - info.begin);
      progress.Update(done_bytes, static_cast<int64_t>(i + 1));
    }
  } catch (const std::bad_alloc&) {
    return ResourceExhaustedError("out of memory loading checkpoint '" + dir + "' after " +
                                  std::to_string(done_bytes) + " of " +
                                  std::to_string(total_bytes) + " bytes; nothing was kept");
  }
  if (report != nullptr) {
    report->tensors = static_cast<int64_t>(slots.size());
    report->bytes_read = done_bytes;
    report->bytes_resident = weights->ResidentBytes();
    report->seconds = progress.Seconds();
  }
  LOG_INFO("load", "loaded %zu tensors from '%s': %.1f MB read, %.1f MB resident in %.2f s",
           slots.size(), dir.c_str(), done_bytes / 1e6, weights->ResidentBytes() / 1e6,
           progress.Seconds());
  return weights;
}

}  // namespace switchyard
