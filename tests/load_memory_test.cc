// Each weight is resident once: loading a checkpoint whose file dtype is the compute dtype (F32)
// raises peak RSS by at most 1.2x the checkpoint size (no second copy during or after loading).
#include <gtest/gtest.h>

#include "common/memory_stats.h"
#include "model/model_config.h"
#include "model/random_checkpoint.h"
#include "model/weights.h"
#include "test_util.h"

namespace switchyard {
namespace {

// ~200 MB in F32: one MoE layer of 32 experts of 1024 x 512, plus attention and embeddings.
constexpr const char* kConfig = R"({
  "architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 4096, "hidden_size": 1024,
  "intermediate_size": 1024, "moe_intermediate_size": 512, "num_hidden_layers": 1,
  "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 128, "num_experts": 32,
  "num_experts_per_tok": 4, "norm_topk_prob": true, "eos_token_id": 1
})";

TEST(LoadMemoryTest, PeakRssWithinOnePointTwoOfCheckpoint) {
  testing::TempDir dir;
  RandomCheckpointOptions options;
  options.dtype = DType::kF32;
  options.max_shard_bytes = 64 << 20;  // sharded, like real checkpoints
  ASSERT_TRUE(WriteRandomCheckpoint(dir.path(), kConfig, options).ok());
  auto config = ParseModelConfig(kConfig, "test");
  ASSERT_TRUE(config.ok());
  if (!ResetPeakRss()) GTEST_SKIP() << "/proc/self/clear_refs not available";
  const int64_t baseline = CurrentRssBytes();
  LoadReport report;
  auto weights = LoadModelWeights(dir.path(), *config, {}, &report);
  ASSERT_TRUE(weights.ok()) << weights.status().ToString();
  const int64_t peak = PeakRssBytes() - baseline;
  ASSERT_EQ(report.bytes_read, report.bytes_resident);  // F32 file -> F32 compute
  const double ratio = static_cast<double>(peak) / report.bytes_read;
  RecordProperty("peak_over_checkpoint", std::to_string(ratio));
  std::printf("checkpoint %.1f MB, peak RSS increase %.1f MB, ratio %.3f\n",
              report.bytes_read / 1e6, peak / 1e6, ratio);
  EXPECT_GE(ratio, 0.9);  // the weights really are resident
  EXPECT_LE(ratio, 1.2);
}

}  // namespace
}  // namespace switchyard
