// The engine against Hugging Face transformers: fixtures written by tests/oracle/make_fixtures.py
// (tiny random models saved with save_pretrained, reference logits and greedy tokens).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "common/parallel.h"
#include "model/engine.h"
#include "model/safetensors.h"
#include "test_util.h"

namespace switchyard {
namespace {

constexpr double kTolerance = 1e-4;  // relative to the largest |logit| of the step

struct PromptReference {
  std::vector<int32_t> input_ids, output_ids;
  std::vector<float> logits;          // [steps, vocab]
  std::vector<float> prefill_logits;  // [len, vocab]
};

template <typename T>
std::vector<T> ReadTensor(const SafetensorsFile& file, const std::string& name) {
  const TensorInfo* info = file.Find(name);
  EXPECT_NE(info, nullptr) << name;
  if (info == nullptr) return {};
  std::vector<T> out(info->NumElements());
  std::memcpy(out.data(), file.Data(*info), out.size() * sizeof(T));
  return out;
}

std::vector<PromptReference> LoadReference(const std::string& dir) {
  auto file = SafetensorsFile::Open(dir + "/reference.safetensors");
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  std::vector<PromptReference> refs;
  for (int p = 0; file.ok(); ++p) {
    const std::string prefix = "prompt_" + std::to_string(p) + ".";
    if ((*file)->Find(prefix + "input_ids") == nullptr) break;
    PromptReference ref;
    ref.input_ids = ReadTensor<int32_t>(**file, prefix + "input_ids");
    ref.output_ids = ReadTensor<int32_t>(**file, prefix + "output_ids");
    ref.logits = ReadTensor<float>(**file, prefix + "logits");
    ref.prefill_logits = ReadTensor<float>(**file, prefix + "prefill_logits");
    refs.push_back(std::move(ref));
  }
  return refs;
}

// max |a - b| / max |b| over one row.
double RelativeError(const float* a, const float* b, int64_t n) {
  double max_ref = 0, max_diff = 0;
  for (int64_t i = 0; i < n; ++i) {
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(b[i])));
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[i]) - b[i]));
  }
  return max_diff / std::max(max_ref, 1e-30);
}

// Top-1 minus top-2 of a reference row, relative to its largest |logit|.
double RelativeMargin(const float* row, int64_t n) {
  std::vector<float> v(row, row + n);
  std::partial_sort(v.begin(), v.begin() + 2, v.end(), std::greater<float>());
  double max_abs = 0;
  for (int64_t i = 0; i < n; ++i) max_abs = std::max(max_abs, std::fabs(double{row[i]}));
  return (v[0] - v[1]) / max_abs;
}

class OracleTest : public ::testing::TestWithParam<std::string> {};

void CheckGeneration(const std::string& name, int64_t max_batch_tokens) {
  const std::string dir = testing::FixtureDir(name);
  std::vector<PromptReference> refs = LoadReference(dir);
  ASSERT_EQ(refs.size(), 3u);
  RuntimeConfig runtime;
  runtime.max_seq_len = 64;
  runtime.max_batch_tokens = max_batch_tokens;
  auto engine = Engine::Load(dir, runtime);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  const int64_t vocab = (*engine)->model().config().vocab_size;

  // All prompts (different lengths) in one batch.
  std::vector<GenerationRequest> requests;
  for (const auto& ref : refs) {
    GenerationRequest req;
    req.prompt = ref.input_ids;
    req.max_new_tokens = static_cast<int64_t>(ref.output_ids.size());
    req.ignore_eos = true;
    requests.push_back(req);
  }
  auto results = (*engine)->Generate(requests, /*keep_logits=*/true);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  for (size_t p = 0; p < refs.size(); ++p) {
    const auto& res = (*results)[p];
    const auto& ref = refs[p];
    ASSERT_EQ(res.tokens.size(), ref.output_ids.size());
    for (size_t s = 0; s < ref.output_ids.size(); ++s) {
      const float* ref_row = &ref.logits[s * vocab];
      double err = RelativeError(res.logits[s].data(), ref_row, vocab);
      EXPECT_LE(err, kTolerance) << name << " prompt " << p << " step " << s;
      // A token may differ only where the reference itself cannot tell (margin below tolerance);
      // after that the sequences diverge and nothing more can be compared.
      if (res.tokens[s] != ref.output_ids[s]) {
        EXPECT_LT(RelativeMargin(ref_row, vocab), 2 * kTolerance)
            << name << " prompt " << p << " step " << s << ": token " << res.tokens[s]
            << " != reference " << ref.output_ids[s];
        break;
      }
    }
  }
}

TEST_P(OracleTest, GreedyTokensAndLogitsMatchTransformers) { CheckGeneration(GetParam(), 8192); }

TEST_P(OracleTest, ChunkedPrefillMatches) { CheckGeneration(GetParam(), 3); }

TEST_P(OracleTest, PrefillLogitsAtEveryPosition) {
  const std::string dir = testing::FixtureDir(GetParam());
  std::vector<PromptReference> refs = LoadReference(dir);
  auto config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  auto weights = LoadModelWeights(dir, *config);
  ASSERT_TRUE(weights.ok()) << weights.status().ToString();
  Model model(*config, std::move(*weights));
  LocalExpertRunner experts(model.config(), model.weights());
  KvCache cache(model.config(), 64);
  const int64_t vocab = model.config().vocab_size;
  for (size_t p = 0; p < refs.size(); ++p) {
    ForwardBatch batch;
    batch.tokens = refs[p].input_ids;
    int64_t slot = cache.Allocate();
    batch.chunks.push_back({slot, static_cast<int64_t>(batch.tokens.size()), true, true});
    Tensor logits;
    ASSERT_TRUE(model.Forward(batch, &cache, &experts, &logits).ok());
    ASSERT_EQ(logits.dim(0), static_cast<int64_t>(batch.tokens.size()));
    for (int64_t i = 0; i < logits.dim(0); ++i) {
      EXPECT_LE(RelativeError(logits.data() + i * vocab, &refs[p].prefill_logits[i * vocab], vocab),
                kTolerance)
          << GetParam() << " prompt " << p << " position " << i;
    }
    cache.Free(slot);
  }
}

TEST_P(OracleTest, ResultsDoNotDependOnThreadCount) {
  const std::string dir = testing::FixtureDir(GetParam());
  std::vector<PromptReference> refs = LoadReference(dir);
  RuntimeConfig runtime;
  runtime.max_seq_len = 64;
  auto engine = Engine::Load(dir, runtime);
  ASSERT_TRUE(engine.ok());
  std::vector<GenerationRequest> requests(1);
  requests[0].prompt = refs[1].input_ids;
  requests[0].max_new_tokens = 4;
  requests[0].ignore_eos = true;
  const int before = ComputeThreads();
  SetComputeThreads(1);
  auto one = (*engine)->Generate(requests, true);
  SetComputeThreads(2);
  auto two = (*engine)->Generate(requests, true);
  SetComputeThreads(before);
  ASSERT_TRUE(one.ok() && two.ok());
  EXPECT_EQ((*one)[0].tokens, (*two)[0].tokens);
  EXPECT_EQ((*one)[0].logits, (*two)[0].logits);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OracleTest,
                         ::testing::Values("deepseek_v3_qlora", "deepseek_v3_noqlora", "qwen3_moe",
                                           "qwen3_moe_tied", "mixtral"));

}  // namespace
}  // namespace switchyard
