// Tests for LoadModelWeights: random checkpoints (WriteRandomCheckpoint) of tiny DeepSeek-V3 and
// Qwen3-MoE configurations in F32/BF16/F16, single-file and sharded, subsets (LoadSelection), and
// broken checkpoints rewritten with WriteSafetensors (missing tensors, wrong shape or dtype).
#include "model/weights.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "model/random_checkpoint.h"
#include "model/safetensors.h"
#include "model/safetensors_writer.h"
#include "test_util.h"

namespace switchyard {
namespace {

// 3 layers (1 dense, 2 MoE), MLA with q_lora, 8 experts in 2 groups, a shared expert.
constexpr const char* kDeepseekJson = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "vocab_size": 64, "hidden_size": 32,
  "intermediate_size": 48, "moe_intermediate_size": 16, "num_hidden_layers": 3,
  "first_k_dense_replace": 1, "num_attention_heads": 2, "q_lora_rank": 16, "kv_lora_rank": 16,
  "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8, "n_routed_experts": 8,
  "n_shared_experts": 1, "num_experts_per_tok": 2, "n_group": 2, "topk_group": 1,
  "max_position_embeddings": 64, "eos_token_id": 1})";

constexpr const char* kQwenTiedJson = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 40, "hidden_size": 32,
  "intermediate_size": 24, "moe_intermediate_size": 8, "num_hidden_layers": 2,
  "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8, "num_experts": 4,
  "num_experts_per_tok": 2, "tie_word_embeddings": true, "mlp_only_layers": [0]})";

ModelConfig Parse(const char* json) {
  auto c = ParseModelConfig(json, "test config");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : ModelConfig{};
}

std::string WriteCheckpoint(const testing::TempDir& tmp, const std::string& name, DType dtype,
                            int64_t max_shard_bytes = 0, const char* json = kDeepseekJson) {
  const std::string dir = tmp.path() + "/" + name;
  RandomCheckpointOptions options;
  options.dtype = dtype;
  options.seed = 7;
  options.max_shard_bytes = max_shard_bytes;
  Status st = WriteRandomCheckpoint(dir, json, options);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return dir;
}

std::unique_ptr<ModelWeights> Load(const std::string& dir, const ModelConfig& config,
                                   const LoadSelection& selection = {},
                                   LoadReport* report = nullptr) {
  auto w = LoadModelWeights(dir, config, selection, report);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? std::move(*w) : nullptr;
}

// Every tensor field, in a fixed order (empty ones included).
std::vector<const Tensor*> AllTensors(const ModelWeights& w) {
  std::vector<const Tensor*> out = {&w.embed, &w.norm, &w.lm_head};
  auto mlp = [&](const MlpWeights& m) {
    for (const Linear* l : {&m.gate, &m.up, &m.down}) out.push_back(&l->weight);
  };
  for (const auto& l : w.layers) {
    const AttentionWeights& a = l.attn;
    out.insert(out.end(), {&l.input_norm, &l.post_attention_norm, &a.q_norm, &a.k_norm, &a.q_a_norm,
                           &a.kv_a_norm, &l.router.weight, &l.router_bias});
    for (const Linear* lin : {&a.q, &a.k, &a.v, &a.o, &a.q_a, &a.q_b, &a.kv_a, &a.kv_b}) {
      out.push_back(&lin->weight);
      out.push_back(&lin->bias);
    }
    mlp(l.dense);
    mlp(l.shared);
    for (const auto& e : l.experts) mlp(e);
  }
  return out;
}

bool SameValues(const Tensor& a, const Tensor& b) {
  return a.shape() == b.shape() && (a.empty() || std::memcmp(a.data(), b.data(), a.bytes()) == 0);
}

// Decodes a checkpoint tensor's bytes to floats.
std::vector<float> ReadAsFloats(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo* info = file.Find(name);
  if (info == nullptr) return {};  // fails the comparison
  const uint8_t* p = file.Data(*info);
  std::vector<float> out(info->NumElements());
  for (size_t i = 0; i < out.size(); ++i) {
    if (info->dtype == DType::kF32) {
      std::memcpy(&out[i], p + 4 * i, 4);
    } else {
      uint16_t bits;
      std::memcpy(&bits, p + 2 * i, 2);
      out[i] = info->dtype == DType::kBF16 ? Bf16ToF32(bits) : F16ToF32(bits);
    }
  }
  return out;
}

std::vector<float> Values(const Tensor& t) { return {t.data(), t.data() + t.size()}; }

// Rewrites `path` through `edit` (false drops the tensor; a changed dtype/shape gets zero bytes).
void Rewrite(const std::string& path, const std::function<bool(TensorToWrite&)>& edit) {
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  std::vector<TensorToWrite> tensors;
  for (const TensorInfo& info : (*file)->header().tensors) {
    TensorToWrite t{info.name, info.dtype, info.shape, nullptr};
    if (!edit(t)) continue;
    if (t.dtype == info.dtype && t.shape == info.shape) {
      const uint8_t* src = (*file)->Data(info);
      t.fill = [src](uint8_t* out, uint64_t bytes) { std::memcpy(out, src, bytes); };
    } else {
      t.fill = [](uint8_t* out, uint64_t bytes) { std::memset(out, 0, bytes); };
    }
    tensors.push_back(std::move(t));
  }
  Status st = WriteSafetensors(path, std::move(tensors), {{"format", "pt"}});
  ASSERT_TRUE(st.ok()) << st.ToString();
}

TEST(WeightsTest, FullLoad) {
  testing::TempDir tmp;
  const std::string dir = WriteCheckpoint(tmp, "f32", DType::kF32);
  const ModelConfig c = Parse(kDeepseekJson);
  LoadReport report;
  auto w = Load(dir, c, {}, &report);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->embed.shape(), (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(w->lm_head.shape(), (std::vector<int64_t>{64, 32}));
  EXPECT_EQ(w->norm.shape(), (std::vector<int64_t>{32}));
  ASSERT_EQ(w->layers.size(), 3u);
  EXPECT_FALSE(w->layers[0].is_moe);
  EXPECT_TRUE(w->layers[0].dense.loaded());
  EXPECT_TRUE(w->layers[0].experts.empty());
  for (int l = 1; l < 3; ++l) {
    const LayerWeights& lw = w->layers[l];
    EXPECT_TRUE(lw.is_moe);
    EXPECT_EQ(lw.router.weight.shape(), (std::vector<int64_t>{8, 32}));
    EXPECT_EQ(lw.router_bias.shape(), (std::vector<int64_t>{8}));
    EXPECT_TRUE(lw.shared.loaded());
    ASSERT_EQ(lw.experts.size(), 8u);
    for (const auto& e : lw.experts) EXPECT_TRUE(e.loaded());
    EXPECT_EQ(lw.experts[0].down.weight.shape(), (std::vector<int64_t>{32, 16}));
    EXPECT_EQ(lw.attn.q_b.weight.shape(), (std::vector<int64_t>{2 * 16, 16}));
    EXPECT_EQ(lw.attn.kv_a.weight.shape(), (std::vector<int64_t>{16 + 8, 32}));
  }
  const auto specs = RequiredWeights(c);
  int64_t elements = 0;
  for (const auto& s : specs) {
    int64_t n = 1;
    for (int64_t d : s.shape) n *= d;
    elements += n;
  }
  EXPECT_EQ(report.tensors, static_cast<int64_t>(specs.size()));
  EXPECT_EQ(report.bytes_read, 4 * elements);
  EXPECT_EQ(report.bytes_resident, 4 * elements);
  EXPECT_EQ(w->ResidentBytes(), 4 * elements);
  EXPECT_EQ(w->ExpertBytes(), 2 * 8 * 3 * 16 * 32 * 4);
}

class WeightsDtypeTest : public ::testing::TestWithParam<DType> {};

TEST_P(WeightsDtypeTest, ValuesAreTheWrittenFloatsRounded) {
  testing::TempDir tmp;
  const ModelConfig c = Parse(kDeepseekJson);
  auto reference = Load(WriteCheckpoint(tmp, "f32", DType::kF32), c);
  const std::string dir = WriteCheckpoint(tmp, "x", GetParam());
  auto w = Load(dir, c);
  ASSERT_TRUE(reference && w);
  // Against the F32 checkpoint of the same seed, rounded to the dtype.
  auto rounded = [](float v, DType d) {
    if (d == DType::kBF16) return Bf16ToF32(F32ToBf16(v));
    if (d == DType::kF16) return F16ToF32(F32ToF16(v));
    return v;
  };
  auto all = AllTensors(*w), ref_all = AllTensors(*reference);
  ASSERT_EQ(all.size(), ref_all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(all[i]->shape(), ref_all[i]->shape());
    for (int64_t j = 0; j < all[i]->size(); ++j) {
      ASSERT_EQ((*all[i])[j], rounded((*ref_all[i])[j], GetParam())) << "tensor " << i << " " << j;
    }
  }
  // Against a direct read of the file.
  auto file = SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->Find("model.embed_tokens.weight")->dtype, GetParam());
  EXPECT_EQ(ReadAsFloats(**file, "model.embed_tokens.weight"), Values(w->embed));
  EXPECT_EQ(ReadAsFloats(**file, "model.layers.1.mlp.experts.3.down_proj.weight"),
            Values(w->layers[1].experts[3].down.weight));
  EXPECT_EQ(ReadAsFloats(**file, "model.layers.0.self_attn.q_a_layernorm.weight"),
            Values(w->layers[0].attn.q_a_norm));
  EXPECT_EQ(ReadAsFloats(**file, "model.layers.2.mlp.gate.e_score_correction_bias"),
            Values(w->layers[2].router_bias));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, WeightsDtypeTest,
                         ::testing::Values(DType::kF32, DType::kBF16, DType::kF16),
                         [](const auto& info) { return std::string(DTypeName(info.param)); });

TEST(WeightsTest, SubsetLoadsOnlySelectedLayersAndExperts) {
  testing::TempDir tmp;
  const std::string dir = WriteCheckpoint(tmp, "bf16", DType::kBF16);
  const ModelConfig c = Parse(kDeepseekJson);
  auto full = Load(dir, c);
  ASSERT_NE(full, nullptr);

  LoadSelection sel;
  sel.layers = {1};
  sel.want_expert = [](int64_t, int64_t e) { return e % 2 == 0; };
  LoadReport report;
  auto w = Load(dir, c, sel, &report);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(report.tensors, static_cast<int64_t>(RequiredWeights(c, sel).size()));
  EXPECT_FALSE(w->embed.empty());
  EXPECT_TRUE(w->layers[0].input_norm.empty());
  EXPECT_FALSE(w->layers[0].dense.loaded());
  EXPECT_TRUE(w->layers[2].input_norm.empty());
  EXPECT_TRUE(w->layers[2].router.weight.empty());
  const LayerWeights& l1 = w->layers[1];
  EXPECT_FALSE(l1.input_norm.empty());
  EXPECT_FALSE(l1.router.weight.empty());
  EXPECT_TRUE(l1.shared.loaded());
  ASSERT_EQ(l1.experts.size(), 8u);
  for (int e = 0; e < 8; ++e) EXPECT_EQ(l1.experts[e].loaded(), e % 2 == 0) << e;
  EXPECT_TRUE(SameValues(l1.experts[4].up.weight, full->layers[1].experts[4].up.weight));
  EXPECT_EQ(4 * w->ExpertBytes(), full->ExpertBytes());  // 1 of 2 layers, 4 of 8 experts
  EXPECT_LT(w->ResidentBytes(), full->ResidentBytes());

  // One expert per layer across all layers, no embeddings.
  LoadSelection one;
  one.want_expert = [](int64_t l, int64_t e) { return e == l; };
  one.embeddings = false;
  w = Load(dir, c, one);
  ASSERT_NE(w, nullptr);
  EXPECT_TRUE(w->embed.empty() && w->lm_head.empty() && w->norm.empty());
  EXPECT_TRUE(w->layers[0].dense.loaded());
  EXPECT_TRUE(w->layers[2].experts[2].loaded());
  EXPECT_FALSE(w->layers[2].experts[1].loaded());
  EXPECT_EQ(8 * w->ExpertBytes(), full->ExpertBytes());
}

TEST(WeightsTest, InvalidSelectionLayer) {
  testing::TempDir tmp;
  const std::string dir = WriteCheckpoint(tmp, "f32", DType::kF32);
  const ModelConfig c = Parse(kDeepseekJson);
  for (int64_t bad : {int64_t{3}, int64_t{-1}}) {
    LoadSelection sel;
    sel.layers = {0, bad};
    auto w = LoadModelWeights(dir, c, sel);
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(w.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(w.status().message().find("layer " + std::to_string(bad)), std::string::npos)
        << w.status().ToString();
  }
}

TEST(WeightsTest, MissingTensorsAreListedInOneError) {
  testing::TempDir tmp;
  const std::string dir = WriteCheckpoint(tmp, "f32", DType::kF32);
  const std::vector<std::string> removed = {"model.layers.0.mlp.up_proj.weight",
                                            "model.layers.2.mlp.experts.5.gate_proj.weight",
                                            "lm_head.weight"};
  Rewrite(dir + "/model.safetensors", [&](TensorToWrite& t) {
    return std::find(removed.begin(), removed.end(), t.name) == removed.end();
  });
  auto w = LoadModelWeights(dir, Parse(kDeepseekJson));
  ASSERT_FALSE(w.ok());
  const std::string msg = w.status().message();
  EXPECT_EQ(w.status().code(), StatusCode::kNotFound);
  EXPECT_NE(msg.find("3 problem(s)"), std::string::npos) << msg;
  for (const auto& name : removed) {
    EXPECT_NE(msg.find("missing tensor '" + name + "'"), std::string::npos) << msg;
  }
  EXPECT_NE(msg.find("(expected [48, 32])"), std::string::npos) << msg;
}

TEST(WeightsTest, WrongShapeAndDtypeNameTensorFileAndOffset) {
  testing::TempDir tmp;
  const std::string dir = WriteCheckpoint(tmp, "f32", DType::kF32);
  const std::string path = dir + "/model.safetensors";
  Rewrite(path, [](TensorToWrite& t) {
    if (t.name == "model.norm.weight") t.shape = {33};
    if (t.name == "model.layers.1.mlp.gate.weight") t.dtype = DType::kI32;
    return true;
  });
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  auto offset = [&](const std::string& name) {
    return "at byte " + std::to_string((*file)->FileOffset(*(*file)->Find(name)));
  };
  auto w = LoadModelWeights(dir, Parse(kDeepseekJson));
  ASSERT_FALSE(w.ok());
  const std::string msg = w.status().message();
  EXPECT_NE(msg.find("2 problem(s)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'model.norm.weight' in '" + path + "' " + offset("model.norm.weight") +
                     " has shape [33], config.json implies [32]"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("tensor 'model.layers.1.mlp.gate.weight' in '" + path + "' " +
                     offset("model.layers.1.mlp.gate.weight") + " has dtype I32"),
            std::string::npos)
      << msg;
}

TEST(WeightsTest, ShardedLoadsTheSameValues) {
  testing::TempDir tmp;
  const ModelConfig c = Parse(kDeepseekJson);
  const std::string single = WriteCheckpoint(tmp, "single", DType::kBF16);
  const std::string sharded = WriteCheckpoint(tmp, "sharded", DType::kBF16, 8192);
  EXPECT_TRUE(std::filesystem::exists(sharded + "/model.safetensors.index.json"));
  EXPECT_FALSE(std::filesystem::exists(sharded + "/model.safetensors"));
  int shards = 0;
  for (const auto& entry : std::filesystem::directory_iterator(sharded)) {
    shards += entry.path().filename().string().starts_with("model-");
  }
  EXPECT_GT(shards, 2);
  auto a = Load(single, c), b = Load(sharded, c);
  ASSERT_TRUE(a && b);
  auto ta = AllTensors(*a), tb = AllTensors(*b);
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) EXPECT_TRUE(SameValues(*ta[i], *tb[i])) << i;
  EXPECT_EQ(a->ResidentBytes(), b->ResidentBytes());
}

TEST(WeightsTest, TiedEmbeddingsHaveNoLmHead) {
  testing::TempDir tmp;
  const ModelConfig c = Parse(kQwenTiedJson);
  for (const auto& spec : RequiredWeights(c)) EXPECT_NE(spec.name, "lm_head.weight");
  auto w = Load(WriteCheckpoint(tmp, "qwen", DType::kF16, 0, kQwenTiedJson), c);
  ASSERT_NE(w, nullptr);
  EXPECT_TRUE(w->lm_head.empty());
  EXPECT_EQ(w->LmHead().data(), w->embed.data());
  EXPECT_EQ(w->layers[1].attn.q_norm.shape(), (std::vector<int64_t>{8}));
  EXPECT_EQ(w->layers[1].attn.k.weight.shape(), (std::vector<int64_t>{16, 32}));
  EXPECT_TRUE(w->layers[0].dense.loaded());
  EXPECT_TRUE(w->layers[1].router_bias.empty());
  EXPECT_EQ(w->layers[1].experts.size(), 4u);
}

TEST(WeightsTest, MissingCheckpointDirectory) {
  auto w = LoadModelWeights("/nonexistent/switchyard/ckpt", Parse(kDeepseekJson));
  ASSERT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find("/nonexistent/switchyard/ckpt"), std::string::npos)
      << w.status().ToString();
}

}  // namespace
}  // namespace switchyard
