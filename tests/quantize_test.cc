// `switchyard quantize` output reloads to exactly the engine's load-time quantization, and bad
// FP4 tensors in a checkpoint are errors naming the tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "model/model.h"
#include "model/quantize_checkpoint.h"
#include "model/safetensors_writer.h"
#include "test_util.h"

namespace switchyard {
namespace {

std::unique_ptr<ModelWeights> LoadOrDie(const std::string& dir, ExpertFormat format) {
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  LoadSelection selection;
  selection.expert_format = format;
  auto weights = LoadModelWeights(dir, *config, selection);
  EXPECT_TRUE(weights.ok()) << weights.status().ToString();
  return weights.ok() ? std::move(*weights) : nullptr;
}

std::vector<float> Logits(const std::string& dir, ExpertFormat format) {
  auto config = LoadModelConfig(dir);
  Model model(*config, LoadOrDie(dir, format));
  LocalExpertRunner experts(model.config(), model.weights());
  KvCache cache(model.config(), 32);
  ForwardBatch batch;
  batch.tokens = {3, 1, 4, 1, 5, 9, 2, 6};
  batch.chunks.push_back({cache.Allocate(), 8, true, true});
  Tensor logits;
  EXPECT_TRUE(model.Forward(batch, &cache, &experts, &logits).ok());
  return std::vector<float>(logits.data(), logits.data() + logits.size());
}

class QuantizeTest : public ::testing::TestWithParam<ExpertFormat> {};

TEST_P(QuantizeTest, ReloadReproducesInMemoryQuantizationBitForBit) {
  const std::string in = testing::FixtureDir("deepseek_v3_noqlora");
  testing::TempDir out;
  QuantizeReport report;
  ASSERT_TRUE(QuantizeCheckpoint(in, out.path(), GetParam(), &report).ok());
  EXPECT_EQ(report.tensors_quantized, 2 * 8 * 3);  // 2 MoE layers x 8 experts x 3 projections
  EXPECT_LT(report.bytes_out, report.bytes_in);
  EXPECT_TRUE(std::filesystem::exists(out.path() + "/hf_quant_config.json"));
  auto reloaded = LoadOrDie(out.path(), ExpertFormat::kF32);  // stored FP4 is used as stored
  auto in_memory = LoadOrDie(in, GetParam());
  ASSERT_TRUE(reloaded && in_memory);
  int64_t compared = 0;
  for (size_t l = 0; l < reloaded->layers.size(); ++l) {
    for (size_t e = 0; e < reloaded->layers[l].experts.size(); ++e) {
      const MlpWeights& a = reloaded->layers[l].experts[e];
      const MlpWeights& b = in_memory->layers[l].experts[e];
      for (auto [x, y] : {std::pair{&a.gate, &b.gate}, {&a.up, &b.up}, {&a.down, &b.down}}) {
        ASSERT_TRUE(x->quantized() && y->quantized());
        EXPECT_EQ(x->fp4.packed, y->fp4.packed);
        EXPECT_EQ(x->fp4.scales, y->fp4.scales);
        EXPECT_EQ(x->fp4.global_scale, y->fp4.global_scale);
        EXPECT_EQ(x->fp4.format, y->fp4.format);
        ++compared;
      }
    }
  }
  EXPECT_EQ(compared, 48);
  EXPECT_EQ(Logits(out.path(), ExpertFormat::kF32), Logits(in, GetParam()));
  // Quantizing again is refused.
  testing::TempDir again;
  EXPECT_NE(QuantizeCheckpoint(out.path(), again.path(), GetParam()).message().find("already"),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantizeTest,
                         ::testing::Values(ExpertFormat::kNvFp4, ExpertFormat::kMxFp4));

TEST(QuantizeErrorTest, FeaturesNotAMultipleOfTheBlock) {
  testing::TempDir out;
  // qwen3_moe has hidden 48: fine for NVFP4 (16), not for MXFP4 (32).
  Status s = QuantizeCheckpoint(testing::FixtureDir("qwen3_moe"), out.path(), ExpertFormat::kMxFp4);
  EXPECT_NE(s.message().find("48 input features, not a multiple of the 32-element mxfp4 block"),
            std::string::npos)
      << s.ToString();
}

// Rewrites `dir/model.safetensors` with `edit` applied to the tensor list.
void Rewrite(const std::string& dir, const std::function<void(std::vector<TensorToWrite>*)>& edit) {
  auto file = SafetensorsFile::Open(dir + "/model.safetensors");
  ASSERT_TRUE(file.ok());
  std::vector<TensorToWrite> tensors;
  std::vector<std::shared_ptr<std::vector<uint8_t>>> keep;
  for (const auto& t : (*file)->header().tensors) {
    auto bytes = std::make_shared<std::vector<uint8_t>>((*file)->Data(t),
                                                        (*file)->Data(t) + (t.end - t.begin));
    keep.push_back(bytes);
    tensors.push_back({t.name, t.dtype, t.shape, [bytes](uint8_t* o, uint64_t n) {
                         std::memcpy(o, bytes->data(), std::min<uint64_t>(n, bytes->size()));
                       }});
  }
  edit(&tensors);
  file->reset();
  ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors", std::move(tensors)).ok());
}

TEST(QuantizeErrorTest, BadFp4TensorsNameTheTensor) {
  const std::string name = "model.layers.1.mlp.experts.3.up_proj";
  struct Case {
    const char* expect;
    std::function<void(std::vector<TensorToWrite>*)> edit;
  };
  const std::vector<Case> cases = {
      {"has dtype F32 (FP4 block scales",
       [&](auto* ts) {
         for (auto& t : *ts) {
           if (t.name == name + ".weight_scale") {
             t.dtype = DType::kF32;
             t.shape = {t.shape[0], t.shape[1] / 4};
           }
         }
       }},
      {"weight_scale' in",
       [&](auto* ts) {
         for (auto& t : *ts) {
           if (t.name == name + ".weight_scale") t.shape = {t.shape[1], t.shape[0]};
         }
       }},
      {"weight_scale_2' is missing",
       [&](auto* ts) {
         std::erase_if(*ts, [&](const auto& t) { return t.name == name + ".weight_scale_2"; });
       }},
  };
  for (const auto& c : cases) {
    testing::TempDir out;
    ASSERT_TRUE(QuantizeCheckpoint(testing::FixtureDir("deepseek_v3_noqlora"), out.path(),
                                   ExpertFormat::kNvFp4)
                    .ok());
    Rewrite(out.path(), c.edit);
    auto config = LoadModelConfig(out.path());
    ASSERT_TRUE(config.ok());
    auto weights = LoadModelWeights(out.path(), *config);
    ASSERT_FALSE(weights.ok()) << c.expect;
    EXPECT_NE(weights.status().message().find(c.expect), std::string::npos)
        << weights.status().message();
    EXPECT_NE(weights.status().message().find(name), std::string::npos);
  }
}

}  // namespace
}  // namespace switchyard
