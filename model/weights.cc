#include "model/weights.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <new>
#include <set>

#include "common/dtype.h"
#include "common/logging.h"
#include "model/safetensors.h"

namespace switchyard {
namespace {

struct Slot {
  WeightSpec spec;
  Tensor* dest;
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
  void Norm(const std::string& name, int64_t n, Tensor* dest) {
    Add(name, {n}, dest, WeightSpec::Kind::kNorm);
  }
  void Mlp(const std::string& prefix, const char* gate, const char* up, const char* down,
           int64_t hidden, int64_t inter, MlpWeights* dest) {
    Linear(prefix + "." + gate, inter, hidden, &dest->gate);
    Linear(prefix + "." + up, inter, hidden, &dest->up);
    Linear(prefix + "." + down, hidden, inter, &dest->down);
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
        b.Mlp(ep, "w1", "w3", "w2", c.hidden, c.moe_intermediate_size, &lw.experts[e]);
      } else {
        b.Mlp(ep, "gate_proj", "up_proj", "down_proj", c.hidden, c.moe_intermediate_size,
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

// Converts `count` elements of a checkpoint dtype to FP32. Deliberately one thread: the cost is
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

}  // namespace

int64_t ModelWeights::ResidentBytes() const {
  int64_t total = embed.bytes() + norm.bytes() + lm_head.bytes();
  auto mlp = [](const MlpWeights& m) {
    return m.gate.weight.bytes() + m.up.weight.bytes() + m.down.weight.bytes();
  };
  for (const auto& l : layers) {
    total += l.input_norm.bytes() + l.post_attention_norm.bytes();
    const AttentionWeights& a = l.attn;
    for (const Linear* lin : {&a.q, &a.k, &a.v, &a.o, &a.q_a, &a.q_b, &a.kv_a, &a.kv_b}) {
      total += lin->weight.bytes() + lin->bias.bytes();
    }
    total += a.q_norm.bytes() + a.k_norm.bytes() + a.q_a_norm.bytes() + a.kv_a_norm.bytes();
    total += mlp(l.dense) + l.router.weight.bytes() + l.router_bias.bytes() + mlp(l.shared);
    for (const auto& e : l.experts) total += mlp(e);
  }
  return total;
}

int64_t ModelWeights::ExpertBytes() const {
  int64_t total = 0;
  for (const auto& l : layers) {
    for (const auto& e : l.experts) {
      total += e.gate.weight.bytes() + e.up.weight.bytes() + e.down.weight.bytes();
    }
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
      Tensor t = Tensor::Uninitialized(slots[i].spec.shape);
      ConvertToF32(entries[i].file->Data(info), info.dtype, info.NumElements(), t.data());
      entries[i].file->Release(info);
      *slots[i].dest = std::move(t);
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
