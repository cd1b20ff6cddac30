// The KV-budget config key (cluster.kv_cache_tokens: parsed, validated naming the key, printed,
// 0 = automatic) and step_done's KV and link-traffic fields (round trip, range checks naming the
// field and the sender, missing fields refused).
#include <gtest/gtest.h>

#include <string>

#include "common/runtime_config.h"
#include "coordinator/control/protocol.h"
#include "coordinator/coordinator.h"

namespace switchyard {
namespace {

TEST(KvBudgetConfigTest, KeyIsParsedValidatedAndPrinted) {
  RuntimeConfig rt;
  ASSERT_TRUE(
      ParseRuntimeConfigYaml("cluster:\n  model: /m\n  kv_cache_tokens: 4096\n", "t.yaml", &rt)
          .ok());
  EXPECT_EQ(rt.cluster.kv_cache_tokens, 4096);
  EXPECT_TRUE(ValidateRuntimeConfig(rt).ok());
  EXPECT_NE(RuntimeConfigToYaml(rt).find("  kv_cache_tokens: 4096\n"), std::string::npos);
  rt.cluster.kv_cache_tokens = -1;
  Status s = ValidateRuntimeConfig(rt);
  EXPECT_NE(s.message().find("cluster.kv_cache_tokens"), std::string::npos) << s.ToString();
  s = ParseRuntimeConfigYaml("cluster:\n  kv_cache_tokens: lots\n", "t.yaml", &rt);
  EXPECT_NE(s.message().find("cluster.kv_cache_tokens"), std::string::npos) << s.ToString();
  // 0 = automatic: kAutoKvSequencesPerWorker full-length sequences per worker.
  RuntimeConfig autort;
  autort.max_seq_len = 300;
  autort.has_cluster = true;
  EXPECT_EQ(Coordinator(autort).kv_cache_tokens(), kAutoKvSequencesPerWorker * 300);
}

TEST(StepDoneProtocolTest, KvAndLinkFieldsRoundTripAndAreChecked) {
  StepResultMsg m;
  m.rank = 1;
  m.step = 4;
  m.kv_used_tokens = 30;
  m.kv_capacity_tokens = 100;
  m.link_traffic.dispatch_bytes = {500, 0};
  m.link_traffic.combine_bytes = {400, 0};
  m.link_traffic.dispatch_seconds = 0.25;
  m.link_traffic.combine_seconds = 0.5;
  StepResultMsg back;
  ASSERT_TRUE(DecodeStepResult(EncodeStepResult(m), "w1", &back).ok());
  EXPECT_EQ(back.kv_used_tokens, 30);
  EXPECT_EQ(back.kv_capacity_tokens, 100);
  EXPECT_EQ(back.link_traffic.dispatch_bytes, m.link_traffic.dispatch_bytes);
  EXPECT_EQ(back.link_traffic.combine_bytes, m.link_traffic.combine_bytes);
  EXPECT_DOUBLE_EQ(back.link_traffic.dispatch_seconds, 0.25);
  EXPECT_DOUBLE_EQ(back.link_traffic.combine_seconds, 0.5);

  auto refused = [](StepResultMsg bad, const std::string& want) {
    StepResultMsg out;
    Status s = DecodeStepResult(EncodeStepResult(bad), "w1", &out);
    EXPECT_FALSE(s.ok()) << want;
    EXPECT_NE(s.message().find(want), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("'step_done' from w1"), std::string::npos) << s.ToString();
  };
  StepResultMsg bad = m;
  bad.kv_used_tokens = 101;
  refused(bad, "kv_used_tokens 101");
  bad = m;
  bad.kv_capacity_tokens = -1;
  refused(bad, "kv_capacity_tokens -1");
  bad = m;
  bad.link_traffic.combine_bytes = {1};
  refused(bad, "link_traffic.dispatch_bytes has 2 entries");
  bad = m;
  bad.link_traffic.dispatch_bytes[1] = -5;
  refused(bad, "bytes to rank 1");
  bad = m;
  bad.link_traffic.combine_seconds = -1;
  refused(bad, "combine_seconds");
  // A step_done without the new fields (an older worker) is refused, naming the field.
  StepResultMsg out;
  Status s =
      DecodeStepResult(R"({"type":"step_done","rank":0,"step":1,"tokens":[],"expert_counts":[],)"
                       R"("batch_tokens":0,"forward_seconds":0.0})",
                       "w0", &out);
  EXPECT_NE(s.message().find("kv_used_tokens"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace switchyard
