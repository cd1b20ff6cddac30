// Tests for Engine::Generate (request validation, EOS, batching, sampling, KV-cache release) on the
// mixtral oracle fixture (and an edited copy of it), and for the Sampler's distribution.
#include "model/engine.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "model/safetensors.h"
#include "model/sampler.h"
#include "test_util.h"

namespace switchyard {
namespace {

std::vector<std::vector<int32_t>> ReferencePrompts(const std::string& dir) {
  auto file = SafetensorsFile::Open(dir + "/reference.safetensors");
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  std::vector<std::vector<int32_t>> prompts;
  for (int p = 0; file.ok(); ++p) {
    const TensorInfo* info = (*file)->Find("prompt_" + std::to_string(p) + ".input_ids");
    if (info == nullptr) break;
    std::vector<int32_t> ids(info->NumElements());
    std::memcpy(ids.data(), (*file)->Data(*info), ids.size() * sizeof(int32_t));
    prompts.push_back(std::move(ids));
  }
  return prompts;
}

GenerationRequest Request(std::vector<int32_t> prompt, int64_t max_new_tokens,
                          SamplingParams sampling = {}) {
  GenerationRequest req;
  req.prompt = std::move(prompt);
  req.max_new_tokens = max_new_tokens;
  req.sampling = sampling;
  req.ignore_eos = true;
  return req;
}

// One engine on the mixtral fixture (vocab 256) for the whole suite.
class EngineTest : public ::testing::Test {
 protected:
  static constexpr int64_t kMaxSeqLen = 48;
  static void SetUpTestSuite() {
    RuntimeConfig runtime;
    runtime.max_seq_len = kMaxSeqLen;
    auto engine = Engine::Load(testing::FixtureDir("mixtral"), runtime);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(*engine).release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(engine_, nullptr);
    prompts_ = ReferencePrompts(testing::FixtureDir("mixtral"));
    ASSERT_EQ(prompts_.size(), 3u);
  }
  std::vector<GenerationResult> Run(const std::vector<GenerationRequest>& requests,
                                    bool keep_logits = false) {
    auto results = engine_->Generate(requests, keep_logits);
    EXPECT_TRUE(results.ok()) << results.status().ToString();
    EXPECT_EQ(engine_->cache().ActiveSlots(), 0);
    return results.ok() ? *results : std::vector<GenerationResult>(requests.size());
  }
  // Fails the call with a message naming request 1 and `fragment`; nothing ran or stayed allocated.
  void ExpectRejected(const GenerationRequest& bad, const std::string& fragment) {
    GenerationStats stats;
    stats.steps = -1;
    auto results = engine_->Generate({Request(prompts_[0], 4), bad}, false, &stats);
    ASSERT_FALSE(results.ok()) << fragment;
    EXPECT_EQ(results.status().code(), StatusCode::kInvalidArgument);
    const std::string msg = results.status().message();
    EXPECT_EQ(msg.rfind("request 1: ", 0), 0u) << msg;
    EXPECT_NE(msg.find(fragment), std::string::npos) << msg;
    EXPECT_EQ(stats.steps, -1);
    EXPECT_EQ(engine_->cache().ActiveSlots(), 0);
    EXPECT_EQ(engine_->cache().BytesInUse(), 0);
  }
  static Engine* engine_;
  std::vector<std::vector<int32_t>> prompts_;
};

Engine* EngineTest::engine_ = nullptr;

TEST_F(EngineTest, RejectsBadRequestsBeforeComputing) {
  ExpectRejected(Request({}, 4), "empty prompt");
  ExpectRejected(Request({3, 256, 4}, 4),
                 "prompt token 1 = 256 is outside the vocabulary [0, 256)");
  ExpectRejected(Request({-1}, 4), "prompt token 0 = -1");
  ExpectRejected(Request({1, 2, 3}, kMaxSeqLen - 2), "exceeds max_seq_len 48");
  ExpectRejected(Request({1, 2, 3}, -1), "max_new_tokens must be >= 0");
  ExpectRejected(Request({1}, 4, {-1.0f, 0, 1.0f, 0}), "temperature");
  ExpectRejected(Request({1}, 4, {std::nanf(""), 0, 1.0f, 0}), "temperature");
  ExpectRejected(Request({1}, 4, {std::numeric_limits<float>::infinity(), 0, 1.0f, 0}),
                 "temperature");
  ExpectRejected(Request({1}, 4, {1.0f, -1, 1.0f, 0}), "top_k");
  ExpectRejected(Request({1}, 4, {1.0f, 0, 0.0f, 0}), "top_p");
  ExpectRejected(Request({1}, 4, {1.0f, 0, 1.5f, 0}), "top_p");
  // Exactly max_seq_len is allowed.
  auto ok = Run({Request({1, 2, 3}, kMaxSeqLen - 3)});
  EXPECT_EQ(ok[0].tokens.size(), static_cast<size_t>(kMaxSeqLen - 3));
}

// prompt.size() + max_new_tokens must not overflow past the max_seq_len check (regression:
// `--max-new-tokens 9223372036854775807` used to run until the KV cache refused).
TEST_F(EngineTest, HugeMaxNewTokensIsRejectedUpFront) {
  ExpectRejected(Request({1, 2, 3}, std::numeric_limits<int64_t>::max()), "exceeds max_seq_len");
}

TEST_F(EngineTest, ZeroNewTokens) {
  GenerationStats stats;
  auto results =
      engine_->Generate({Request(prompts_[0], 0), Request(prompts_[1], 2)}, true, &stats);
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  EXPECT_TRUE((*results)[0].tokens.empty());
  EXPECT_TRUE((*results)[0].logits.empty());
  EXPECT_EQ((*results)[0].finish_reason, "length");
  EXPECT_EQ((*results)[1].tokens.size(), 2u);
  EXPECT_EQ((*results)[1].logits.size(), 2u);
  EXPECT_EQ(stats.generated_tokens, 2);
  EXPECT_EQ(engine_->cache().ActiveSlots(), 0);
  auto none = Run({Request(prompts_[2], 0)});
  EXPECT_TRUE(none[0].tokens.empty());
}

TEST_F(EngineTest, BatchEqualsEachPromptAlone) {
  std::vector<GenerationRequest> batch;
  for (const auto& p : prompts_) batch.push_back(Request(p, 8));
  GenerationStats stats;
  auto together = engine_->Generate(batch, true, &stats);
  ASSERT_TRUE(together.ok()) << together.status().ToString();
  EXPECT_EQ(stats.prompt_tokens, 5 + 11 + 2);
  EXPECT_EQ(stats.generated_tokens, 24);
  for (size_t p = 0; p < batch.size(); ++p) {
    auto alone = Run({batch[p]}, true);
    const GenerationResult& t = (*together)[p];
    ASSERT_EQ(t.tokens, alone[0].tokens) << "prompt " << p;
    EXPECT_EQ(t.finish_reason, "length");
    ASSERT_EQ(t.logits.size(), 8u);
    for (size_t s = 0; s < t.logits.size(); ++s) {
      ASSERT_EQ(t.logits[s].size(), 256u);
      for (size_t v = 0; v < t.logits[s].size(); ++v) {
        ASSERT_NEAR(t.logits[s][v], alone[0].logits[s][v], 1e-6) << p << " " << s << " " << v;
      }
    }
  }
}

TEST_F(EngineTest, SamplingIsReproducibleFromTheSeed) {
  const int64_t n = 24;
  auto sampled = [&](SamplingParams params) { return Run({Request(prompts_[2], n, params)})[0]; };
  const auto greedy = sampled({});
  const auto a = sampled({1.0f, 0, 1.0f, 42});
  EXPECT_EQ(a.tokens, sampled({1.0f, 0, 1.0f, 42}).tokens);
  EXPECT_NE(a.tokens, sampled({1.0f, 0, 1.0f, 43}).tokens);
  EXPECT_NE(a.tokens, greedy.tokens);
  EXPECT_EQ(sampled({1.0f, 1, 1.0f, 42}).tokens, greedy.tokens);  // top_k = 1
  EXPECT_EQ(sampled({1.5f, 0, 1e-6f, 7}).tokens, greedy.tokens);  // tiny top_p
  EXPECT_EQ(sampled({0.0f, 5, 0.5f, 9}).tokens, greedy.tokens);   // temperature 0 wins
  // Requests in one batch draw from their own generators.
  auto both = Run({Request(prompts_[2], n, {1.0f, 0, 1.0f, 42}), Request(prompts_[0], n)});
  EXPECT_EQ(both[0].tokens, a.tokens);
}

// A copy of the fixture whose eos_token_id lists a token the greedy run generates.
TEST_F(EngineTest, StopsAtEosUnlessIgnored) {
  const int64_t n = 8;
  const std::vector<int32_t> free_run = Run({Request(prompts_[0], n)})[0].tokens;
  ASSERT_EQ(free_run.size(), static_cast<size_t>(n));
  // EOS = the first generated token that differs from the first one (else the first one).
  size_t k = 0;
  while (k + 1 < free_run.size() && free_run[k] == free_run[0]) ++k;
  if (free_run[k] == free_run[0]) k = 0;
  const int32_t eos = free_run[k];
  int32_t unused = 255;  // a second EOS id that never comes up
  while (std::find(free_run.begin(), free_run.end(), unused) != free_run.end()) --unused;

  testing::TempDir tmp;
  const std::string fixture = testing::FixtureDir("mixtral");
  std::filesystem::copy_file(fixture + "/model.safetensors", tmp.path() + "/model.safetensors");
  std::ifstream in(fixture + "/config.json");
  std::stringstream text;
  text << in.rdbuf();
  std::string config = text.str();
  const std::string key = "\"eos_token_id\": 2,";
  ASSERT_NE(config.find(key), std::string::npos);
  config.replace(
      config.find(key), key.size(),
      "\"eos_token_id\": [" + std::to_string(unused) + ", " + std::to_string(eos) + "],");
  std::ofstream(tmp.path() + "/config.json") << config;

  RuntimeConfig runtime;
  runtime.max_seq_len = kMaxSeqLen;
  auto engine = Engine::Load(tmp.path(), runtime);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  ASSERT_EQ((*engine)->model().config().eos_token_ids, (std::vector<int32_t>{unused, eos}));
  GenerationRequest stop = Request(prompts_[0], n);
  stop.ignore_eos = false;
  auto res = (*engine)->Generate({stop, Request(prompts_[0], n), Request(prompts_[1], 2)});
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_GT(k, 0u) << "pick a prompt whose greedy output is not one repeated token";
  EXPECT_EQ((*res)[0].tokens, std::vector<int32_t>(free_run.begin(), free_run.begin() + k + 1));
  EXPECT_EQ((*res)[0].finish_reason, "stop");
  EXPECT_EQ((*res)[1].tokens, free_run);  // ignore_eos
  EXPECT_EQ((*res)[1].finish_reason, "length");
  EXPECT_EQ((*res)[2].tokens.size(), 2u);
  EXPECT_EQ((*engine)->cache().ActiveSlots(), 0);
}

TEST(SamplerTest, Validation) {
  EXPECT_TRUE(ValidateSamplingParams({}).ok());
  EXPECT_TRUE(ValidateSamplingParams({0.7f, 40, 0.9f, 3}).ok());
  EXPECT_FALSE(ValidateSamplingParams({-0.1f, 0, 1.0f, 0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({1.0f, -2, 1.0f, 0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({1.0f, 0, -0.5f, 0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({1.0f, 0, std::nanf(""), 0}).ok());
}

TEST(SamplerTest, GreedyTiesGoToTheLowestId) {
  const float logits[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
  Sampler greedy(SamplingParams{});
  EXPECT_EQ(greedy.Sample(logits, 5), 1);
  Sampler top1({1.0f, 1, 1.0f, 5});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(top1.Sample(logits, 5), 1);
}

// Pearson chi-square of `draws` samples against probabilities exp(logits / t) (t: the reference
// temperature, by default the sampler's; restricted to `allowed` tokens); tokens outside
// `allowed` must never appear.
double ChiSquare(const SamplingParams& params, const std::vector<float>& logits,
                 const std::vector<bool>& allowed, int draws, double reference_temperature = 0) {
  if (reference_temperature == 0) reference_temperature = params.temperature;
  Sampler sampler(params);
  std::vector<int> counts(logits.size(), 0);
  for (int i = 0; i < draws; ++i) {
    int32_t t = sampler.Sample(logits.data(), static_cast<int64_t>(logits.size()));
    EXPECT_TRUE(t >= 0 && t < static_cast<int32_t>(logits.size()) && allowed[t]) << t;
    if (t >= 0 && t < static_cast<int32_t>(logits.size())) ++counts[t];
  }
  double total = 0;
  std::vector<double> p(logits.size(), 0);
  for (size_t i = 0; i < logits.size(); ++i) {
    if (allowed[i]) total += p[i] = std::exp(logits[i] / reference_temperature);
  }
  double chi2 = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    if (!allowed[i]) continue;
    const double expected = draws * p[i] / total;
    chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
  }
  return chi2;
}

TEST(SamplerTest, FrequenciesFollowSoftmax) {
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f};
  const std::vector<bool> all(4, true);
  // 16.27: chi-square with 3 degrees of freedom at p = 0.001.
  EXPECT_LT(ChiSquare({1.0f, 0, 1.0f, 11}, logits, all, 20000), 16.27);
  EXPECT_LT(ChiSquare({0.5f, 0, 1.0f, 12}, logits, all, 20000), 16.27);
  EXPECT_LT(ChiSquare({3.0f, 0, 1.0f, 13}, logits, all, 20000), 16.27);
  // top_k = 2 keeps tokens 2 and 0, renormalised (1 degree of freedom: 10.83).
  EXPECT_LT(ChiSquare({1.0f, 2, 1.0f, 14}, logits, {true, false, true, false}, 20000), 10.83);
  // top_p = 0.8 > p(2) = 0.644: the nucleus is {2, 0}.
  EXPECT_LT(ChiSquare({1.0f, 0, 0.8f, 15}, logits, {true, false, true, false}, 20000), 10.83);
  // The statistic does detect a wrong distribution: near-uniform draws against temperature 1.
  EXPECT_GT(ChiSquare({1000.0f, 0, 1.0f, 16}, logits, all, 20000, 1.0), 1000.0);
}

TEST(SamplerTest, TopPBelowTheLargestProbabilityIsGreedy) {
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f};
  Sampler sampler({1.0f, 0, 0.5f, 17});
  for (int i = 0; i < 200; ++i) EXPECT_EQ(sampler.Sample(logits.data(), 4), 2);
}

}  // namespace
}  // namespace switchyard
