// FP4 experts against the FP32 engine on the Hugging Face fixtures: next-token top-1 agreement
// and mean KL(p_fp32 || p_fp4) over every position of the reference sequences (prompt + greedy
// continuation, teacher-forced). The bounds sit between what correct FP4 gives and what a broken
// FP4 path gives (the same test with a corrupted weight layout, which must fail them).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "model/model.h"
#include "model/safetensors.h"
#include "test_util.h"

namespace switchyard {
namespace {

struct Quality {
  double top1 = 0;     // fraction of positions whose argmax agrees
  double mean_kl = 0;  // nats
};

std::vector<std::vector<int32_t>> ReferenceSequences(const std::string& dir) {
  auto file = SafetensorsFile::Open(dir + "/reference.safetensors");
  EXPECT_TRUE(file.ok());
  std::vector<std::vector<int32_t>> out;
  for (int p = 0; file.ok(); ++p) {
    const std::string prefix = "prompt_" + std::to_string(p) + ".";
    const TensorInfo* in = (*file)->Find(prefix + "input_ids");
    const TensorInfo* gen = (*file)->Find(prefix + "output_ids");
    if (in == nullptr || gen == nullptr) break;
    std::vector<int32_t> seq(in->NumElements() + gen->NumElements());
    std::memcpy(seq.data(), (*file)->Data(*in), in->NumElements() * 4);
    std::memcpy(seq.data() + in->NumElements(), (*file)->Data(*gen), gen->NumElements() * 4);
    out.push_back(std::move(seq));
  }
  return out;
}

std::vector<float> AllLogits(const Model& model, const std::vector<int32_t>& seq) {
  LocalExpertRunner experts(model.config(), model.weights());
  KvCache cache(model.config(), 64);
  ForwardBatch batch;
  batch.tokens = seq;
  batch.chunks.push_back({cache.Allocate(), static_cast<int64_t>(seq.size()), true, true});
  Tensor logits;
  EXPECT_TRUE(model.Forward(batch, &cache, &experts, &logits).ok());
  return std::vector<float>(logits.data(), logits.data() + logits.size());
}

std::vector<double> Softmax(const float* x, int64_t n) {
  double max = x[0], sum = 0;
  for (int64_t i = 1; i < n; ++i) max = std::max(max, double{x[i]});
  std::vector<double> p(n);
  for (int64_t i = 0; i < n; ++i) sum += p[i] = std::exp(x[i] - max);
  for (auto& v : p) v /= sum;
  return p;
}

std::unique_ptr<Model> Load(const std::string& dir, ExpertFormat format, bool corrupt = false) {
  auto config = LoadModelConfig(dir);
  EXPECT_TRUE(config.ok());
  LoadSelection selection;
  selection.expert_format = format;
  auto weights = LoadModelWeights(dir, *config, selection);
  EXPECT_TRUE(weights.ok()) << weights.status().ToString();
  if (corrupt) {  // a broken layout: the two codes of every byte swapped
    for (auto& layer : (*weights)->layers) {
      for (auto& e : layer.experts) {
        for (Linear* lin : {&e.gate, &e.up, &e.down}) {
          for (auto& b : lin->fp4.packed) b = static_cast<uint8_t>((b << 4) | (b >> 4));
        }
      }
    }
  }
  return std::make_unique<Model>(*config, std::move(*weights));
}

Quality Compare(const std::string& fixture, ExpertFormat format, bool corrupt = false) {
  const std::string dir = testing::FixtureDir(fixture);
  auto fp32 = Load(dir, ExpertFormat::kF32);
  auto fp4 = Load(dir, format, corrupt);
  const int64_t vocab = fp32->config().vocab_size;
  Quality q;
  int64_t positions = 0;
  for (const auto& seq : ReferenceSequences(dir)) {
    const auto a = AllLogits(*fp32, seq), b = AllLogits(*fp4, seq);
    for (size_t t = 0; t < seq.size(); ++t) {
      const float* la = &a[t * vocab];
      const float* lb = &b[t * vocab];
      q.top1 += std::max_element(la, la + vocab) - la == std::max_element(lb, lb + vocab) - lb;
      const auto pa = Softmax(la, vocab), pb = Softmax(lb, vocab);
      for (int64_t i = 0; i < vocab; ++i) q.mean_kl += pa[i] * std::log(pa[i] / pb[i]);
      ++positions;
    }
  }
  q.top1 /= positions;
  q.mean_kl /= positions;
  return q;
}

// Bounds from measurements (docs/PERFORMANCE.md): correct FP4 experts gave top-1 agreement
// 0.76-0.98 and mean KL 0.003-0.056 (Mixtral, whose every MLP is experts, is the worst); the
// corrupted layout gave KL 0.12-1.23. The KL bound sits between the two.
constexpr double kMinTop1 = 0.7;
constexpr double kMaxKl = 0.09;

class Fp4ModelTest : public ::testing::TestWithParam<std::tuple<std::string, ExpertFormat>> {};

TEST_P(Fp4ModelTest, CloseToFp32Engine) {
  const auto [fixture, format] = GetParam();
  const Quality q = Compare(fixture, format);
  std::printf("%s %s: top-1 agreement %.3f, mean KL %.5f\n", fixture.c_str(),
              ExpertFormatName(format), q.top1, q.mean_kl);
  EXPECT_GE(q.top1, kMinTop1);
  EXPECT_LE(q.mean_kl, kMaxKl);
}

TEST_P(Fp4ModelTest, BrokenLayoutFailsTheBounds) {
  const auto [fixture, format] = GetParam();
  const Quality q = Compare(fixture, format, /*corrupt=*/true);
  std::printf("%s %s corrupted: top-1 agreement %.3f, mean KL %.5f\n", fixture.c_str(),
              ExpertFormatName(format), q.top1, q.mean_kl);
  EXPECT_TRUE(q.top1 < kMinTop1 || q.mean_kl > kMaxKl);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, Fp4ModelTest,
    ::testing::Combine(::testing::Values("deepseek_v3_qlora", "deepseek_v3_noqlora", "qwen3_moe",
                                         "qwen3_moe_tied", "mixtral"),
                       ::testing::Values(ExpertFormat::kNvFp4, ExpertFormat::kMxFp4)));

}  // namespace
}  // namespace switchyard
