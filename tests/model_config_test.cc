// Tests for ParseModelConfig / LoadModelConfig: the five oracle fixtures' config.json (derived
// values per family) and the errors for unsupported, missing, mistyped and inconsistent keys.
// Error inputs are the deepseek_v3_qlora fixture's text with one substring replaced.
#include "model/model_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "model/random_checkpoint.h"
#include "test_util.h"

namespace switchyard {
namespace {

std::string ReadFixtureConfig(const std::string& name) {
  std::ifstream in(testing::FixtureDir(name) + "/config.json");
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_FALSE(text.str().empty()) << name;
  return text.str();
}

ModelConfig LoadFixture(const std::string& name) {
  auto config = LoadModelConfig(testing::FixtureDir(name));
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? *config : ModelConfig{};
}

// The fixture text with every occurrence of `from` replaced by `to` (which must occur).
std::string Edited(const std::string& fixture, const std::string& from, const std::string& to) {
  std::string text = ReadFixtureConfig(fixture);
  size_t count = 0;
  for (size_t pos = text.find(from); pos != std::string::npos; pos = text.find(from, pos)) {
    text.replace(pos, from.size(), to);
    pos += to.size();
    ++count;
  }
  EXPECT_GT(count, 0u) << "'" << from << "' not in " << fixture;
  return text;
}

// Passes when `status` is an error of `code` whose message holds every fragment.
::testing::AssertionResult IsError(const Status& status, StatusCode code,
                                   std::initializer_list<std::string> fragments) {
  if (status.ok()) return ::testing::AssertionFailure() << "expected an error, got OK";
  if (status.code() != code) {
    return ::testing::AssertionFailure() << "wrong code: " << status.ToString();
  }
  for (const auto& f : fragments) {
    if (status.message().find(f) == std::string::npos) {
      return ::testing::AssertionFailure() << "message lacks '" << f << "': " << status.ToString();
    }
  }
  return ::testing::AssertionSuccess() << status.ToString();
}

Status ParseStatus(const std::string& text) {
  return ParseModelConfig(text, "edited/config.json").status();
}

TEST(ModelConfigTest, DeepseekV3WithQLoraAndYarn) {
  ModelConfig c = LoadFixture("deepseek_v3_qlora");
  EXPECT_EQ(c.family, ModelFamily::kDeepseekV3);
  EXPECT_EQ(c.architecture, "DeepseekV3ForCausalLM");
  EXPECT_TRUE(c.mla);
  EXPECT_EQ(c.vocab_size, 160);
  EXPECT_EQ(c.hidden, 48);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.q_lora_rank, 24);
  EXPECT_EQ(c.kv_lora_rank, 16);
  EXPECT_EQ(c.qk_nope_head_dim, 8);
  EXPECT_EQ(c.qk_rope_head_dim, 8);
  EXPECT_EQ(c.v_head_dim, 8);
  EXPECT_EQ(c.qk_head_dim(), 16);
  EXPECT_EQ(c.moe_layer, (std::vector<bool>{false, true, true}));
  EXPECT_EQ(c.NumMoeLayers(), 2);
  EXPECT_EQ(c.num_experts, 16);
  EXPECT_EQ(c.num_topk, 4);
  EXPECT_EQ(c.n_group, 4);
  EXPECT_EQ(c.topk_group, 2);
  EXPECT_EQ(c.moe_intermediate_size, 16);
  EXPECT_EQ(c.shared_intermediate_size, 16);  // n_shared_experts 1 * moe_intermediate_size
  EXPECT_TRUE(c.sigmoid_group_routing);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 2.5);
  EXPECT_EQ(c.eos_token_id, 1);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{1}));
  EXPECT_EQ(c.rope.dim, 8);
  EXPECT_TRUE(c.rope.interleave);
  EXPECT_TRUE(c.rope.yarn);
  EXPECT_DOUBLE_EQ(c.rope.factor, 4.0);
  EXPECT_DOUBLE_EQ(c.rope.original_max_position_embeddings, 64);
  EXPECT_DOUBLE_EQ(c.rope.beta_fast, 32);
  EXPECT_DOUBLE_EQ(c.rope.beta_slow, 1);
  EXPECT_DOUBLE_EQ(c.rope.attention_factor, 1.0);  // mscale == mscale_all_dim
  const double m = 0.1 * std::log(4.0) + 1.0;
  EXPECT_NEAR(c.attn_scale, m * m / std::sqrt(16.0), 1e-12);
  EXPECT_NEAR(c.attn_scale, 0.3241192, 1e-6);
  EXPECT_NE(c.Summary().find("YaRN"), std::string::npos) << c.Summary();
}

TEST(ModelConfigTest, DeepseekV3WithoutQLora) {
  ModelConfig c = LoadFixture("deepseek_v3_noqlora");
  EXPECT_TRUE(c.mla);
  EXPECT_EQ(c.q_lora_rank, 0);  // null
  EXPECT_EQ(c.qk_head_dim(), 20);
  EXPECT_EQ(c.moe_layer, (std::vector<bool>{true, true}));
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.n_group, 2);
  EXPECT_EQ(c.topk_group, 1);
  EXPECT_EQ(c.shared_intermediate_size, 64);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.routed_scaling_factor, 1.5);
  EXPECT_FALSE(c.rope.yarn);
  EXPECT_DOUBLE_EQ(c.rope.attention_factor, 1.0);
  EXPECT_NEAR(c.attn_scale, 1.0 / std::sqrt(20.0), 1e-12);
}

TEST(ModelConfigTest, Qwen3MoeLayersFollowMlpOnlyLayersAndSparseStep) {
  ModelConfig c = LoadFixture("qwen3_moe");
  EXPECT_EQ(c.family, ModelFamily::kQwen3Moe);
  EXPECT_FALSE(c.mla);
  EXPECT_EQ(c.moe_layer, (std::vector<bool>{false, true, true}));  // mlp_only_layers [0]
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.qk_head_dim(), 16);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.num_topk, 2);
  EXPECT_EQ(c.moe_intermediate_size, 32);
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_FALSE(c.sigmoid_group_routing);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.eos_token_id, -1);  // no eos_token_id key
  EXPECT_TRUE(c.eos_token_ids.empty());
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.rope.dim, 16);
  EXPECT_FALSE(c.rope.interleave);
  EXPECT_FALSE(c.rope.yarn);
  EXPECT_DOUBLE_EQ(c.attn_scale, 0.25);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
}

TEST(ModelConfigTest, Qwen3MoeTiedEmbeddings) {
  ModelConfig c = LoadFixture("qwen3_moe_tied");
  EXPECT_TRUE(c.tie_word_embeddings);
  // decoder_sparse_step 2: layers whose (index + 1) is a multiple of 2.
  EXPECT_EQ(c.moe_layer, (std::vector<bool>{false, true, false, true}));
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.num_topk, 3);
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
}

TEST(ModelConfigTest, MixtralEveryLayerIsMoe) {
  ModelConfig c = LoadFixture("mixtral");
  EXPECT_EQ(c.family, ModelFamily::kMixtral);
  EXPECT_EQ(c.moe_layer, (std::vector<bool>{true, true}));
  EXPECT_TRUE(c.norm_topk_prob);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.num_topk, 2);
  EXPECT_EQ(c.moe_intermediate_size, 32);  // = intermediate_size
  EXPECT_EQ(c.head_dim, 16);               // null -> hidden / heads
  EXPECT_EQ(c.num_kv_heads, 2);
  EXPECT_EQ(c.sliding_window, 0);  // null
  EXPECT_EQ(c.eos_token_id, 2);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.shared_intermediate_size, 0);
}

TEST(ModelConfigTest, DefaultModelConfigParses) {
  auto c = ParseModelConfig(DefaultModelConfigJson(), "default");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->family, ModelFamily::kDeepseekV3);
  EXPECT_EQ(c->moe_layer, (std::vector<bool>{false, true, true, true}));
  EXPECT_EQ(c->num_experts, 32);
  EXPECT_EQ(c->n_group, 4);
  EXPECT_EQ(c->topk_group, 2);
  EXPECT_EQ(c->num_topk, 4);
  EXPECT_EQ(c->q_lora_rank, 128);
  EXPECT_EQ(c->shared_intermediate_size, 128);
  EXPECT_TRUE(c->rope.yarn);
  EXPECT_DOUBLE_EQ(c->rope.original_max_position_embeddings, 4096);
  EXPECT_EQ(c->eos_token_id, 1);
}

TEST(ModelConfigErrorTest, UnsupportedArchitectureListsSupported) {
  Status s = ParseStatus(Edited("deepseek_v3_qlora", "DeepseekV3ForCausalLM", "LlamaForCausalLM"));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument,
                      {"edited/config.json", "LlamaForCausalLM", "DeepseekV3ForCausalLM",
                       "Qwen3MoeForCausalLM", "MixtralForCausalLM"}));
}

TEST(ModelConfigErrorTest, MissingArchitectures) {
  Status s = ParseStatus(Edited("mixtral", "\"architectures\"", "\"archs\""));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"'architectures'", "supported"}));
}

TEST(ModelConfigErrorTest, MissingRequiredKeyNamesIt) {
  Status s = ParseStatus(Edited("deepseek_v3_qlora", "\"hidden_size\": 48,", ""));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"edited/config.json", "'hidden_size'"}));
  s = ParseStatus(Edited("qwen3_moe", "\"num_experts\": 8,", ""));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"'num_experts'"}));
  s = ParseStatus(Edited("deepseek_v3_qlora", "\"kv_lora_rank\": 16,", ""));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"'kv_lora_rank'"}));
}

TEST(ModelConfigErrorTest, WrongTypeNamesKey) {
  Status s =
      ParseStatus(Edited("deepseek_v3_qlora", "\"hidden_size\": 48", "\"hidden_size\": \"64\""));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"'hidden_size'", "integer", "\"64\""}));
  s = ParseStatus(
      Edited("mixtral", "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0"));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"'tie_word_embeddings'"}));
  s = ParseStatus(Edited("mixtral", "\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": \"small\""));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"'rms_norm_eps'", "number"}));
}

TEST(ModelConfigErrorTest, NonPositiveSize) {
  Status s = ParseStatus(Edited("mixtral", "\"vocab_size\": 256", "\"vocab_size\": 0"));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"'vocab_size'", "> 0"}));
}

TEST(ModelConfigErrorTest, NullQLoraRankIsSingleQProj) {
  auto c = ParseModelConfig(
      Edited("deepseek_v3_qlora", "\"q_lora_rank\": 24", "\"q_lora_rank\": null"), "edited");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->q_lora_rank, 0);
  EXPECT_TRUE(c->mla);
}

TEST(ModelConfigErrorTest, RoutedExpertsNotMultipleOfGroups) {
  Status s = ParseStatus(
      Edited("deepseek_v3_qlora", "\"n_routed_experts\": 16", "\"n_routed_experts\": 18"));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"n_routed_experts (18)", "n_group (4)"}));
}

TEST(ModelConfigErrorTest, TopkGroupAboveGroups) {
  Status s = ParseStatus(Edited("deepseek_v3_qlora", "\"topk_group\": 2", "\"topk_group\": 5"));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"topk_group", "n_group"}));
}

TEST(ModelConfigErrorTest, TopkAboveExperts) {
  Status s =
      ParseStatus(Edited("mixtral", "\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 9"));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"num_experts_per_tok"}));
}

TEST(ModelConfigErrorTest, LinearRopeScalingRejected) {
  Status s = ParseStatus(Edited("deepseek_v3_qlora", "\"yarn\"", "\"linear\""));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"rope_scaling", "'linear'", "yarn"}));
  s = ParseStatus(Edited("qwen3_moe", "\"rope_scaling\": null",
                         "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}"));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"rope_scaling", "Qwen3MoeForCausalLM"}));
}

TEST(ModelConfigErrorTest, YarnFactorMustBePositive) {
  Status s = ParseStatus(Edited("deepseek_v3_qlora", "\"factor\": 4.0", "\"factor\": 0.0"));
  EXPECT_TRUE(IsError(s, StatusCode::kInvalidArgument, {"rope_scaling", "'factor'", "> 0"}));
}

// A rope_scaling error names its origin once (regression: it used to be prefixed twice).
TEST(ModelConfigErrorTest, RopeScalingErrorNamesOriginOnce) {
  Status s = ParseStatus(Edited("deepseek_v3_qlora", "\"factor\": 4.0", "\"factor\": 0.0"));
  EXPECT_EQ(s.message(), "edited/config.json: rope_scaling: 'factor' must be a number > 0");
}

TEST(ModelConfigErrorTest, QuantizedCheckpointUnimplemented) {
  Status s = ParseStatus(Edited("deepseek_v3_qlora", "\"architectures\"",
                                "\"quantization_config\": {\"quant_method\": \"fp8\"},\n  "
                                "\"architectures\""));
  EXPECT_TRUE(IsError(s, StatusCode::kUnimplemented, {"quantization_config"}));
}

TEST(ModelConfigErrorTest, NotJson) {
  EXPECT_TRUE(IsError(ParseStatus("{\"architectures\": [\"MixtralForCausalLM\""),
                      StatusCode::kInvalidArgument, {"edited/config.json", "JSON"}));
  EXPECT_TRUE(IsError(ParseStatus("[1, 2]"), StatusCode::kInvalidArgument, {"JSON object"}));
  EXPECT_TRUE(IsError(ParseStatus(""), StatusCode::kInvalidArgument, {"JSON"}));
}

TEST(ModelConfigErrorTest, MissingDirectory) {
  auto c = LoadModelConfig("/nonexistent/switchyard/model");
  EXPECT_TRUE(
      IsError(c.status(), StatusCode::kNotFound, {"/nonexistent/switchyard/model/config.json"}));
}

}  // namespace
}  // namespace switchyard
