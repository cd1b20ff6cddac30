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

// Budgets far beyond any machine would overflow int64 in the admission sums (worker load + prompt
// + max_tokens; the capacity summed over workers; 16 x max_seq_len): refused, naming the key.
TEST(KvBudgetConfigTest, HugeBudgetsAreRefused) {
  RuntimeConfig rt;
  Status s = ParseRuntimeConfigYaml(
      "cluster:\n  model: /m\n  kv_cache_tokens: 9223372036854775807\n", "t.yaml", &rt);
  EXPECT_NE(s.message().find("cluster.kv_cache_tokens must be in [0, 1099511627776]"),
            std::string::npos)
      << s.ToString();
  rt = RuntimeConfig();
  s = ParseRuntimeConfigYaml("max_seq_len: 1000000000000000000\n", "t.yaml", &rt);
  EXPECT_NE(s.message().find("max_seq_len must be in [1, 1099511627776]"), std::string::npos)
      << s.ToString();
  rt = RuntimeConfig();  // a refused parse leaves what it read
  s = ParseRuntimeConfigYaml("cluster:\n  model: /m\n  step_timeout_ms: 99999999999999\n", "t.yaml",
                             &rt);
  EXPECT_NE(s.message().find("cluster.step_timeout_ms must be in [1, 2592000000]"),
            std::string::npos)
      << s.ToString();
  rt = RuntimeConfig();
  EXPECT_TRUE(ParseRuntimeConfigYaml("max_seq_len: 1048576\ncluster:\n  model: /m\n"
                                     "  kv_cache_tokens: 1099511627776\n",
                                     "t.yaml", &rt)
                  .ok())
      << "1M contexts and a 2^40-position budget are fine";
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
  // Counts, times and finish reasons a worker cannot have produced: a negative batch would
  // corrupt the throughput stats, an unknown finish reason would reach the client and become a
  // metric label.
  bad = m;
  bad.batch_tokens = -3;
  refused(bad, "batch_tokens -3");
  bad = m;
  bad.forward_seconds = -1;
  refused(bad, "forward_seconds");
  TokenOut t;
  t.id = 5;
  t.token = 17;
  t.finished = true;
  t.finish_reason = "exploded";
  bad = m;
  bad.tokens = {t};
  refused(bad, "token 0 (request 5): finish_reason 'exploded'");
  t.finish_reason = "length";
  t.token = -2;
  bad.tokens = {t};
  refused(bad, "token 0 (request 5): token id -2");
  t.token = 17;
  bad.tokens = {t};
  ASSERT_TRUE(DecodeStepResult(EncodeStepResult(bad), "w1", &back).ok());
  ASSERT_EQ(back.tokens.size(), 1u);
  EXPECT_EQ(back.tokens[0].finish_reason, "length");
  // A step_done without the new fields (an older worker) is refused, naming the field.
  StepResultMsg out;
  Status s =
      DecodeStepResult(R"({"type":"step_done","rank":0,"step":1,"tokens":[],"expert_counts":[],)"
                       R"("batch_tokens":0,"forward_seconds":0.0})",
                       "w0", &out);
  EXPECT_NE(s.message().find("kv_used_tokens"), std::string::npos) << s.ToString();
}

// nlohmann's get<int32_t> narrows silently (2^32 + 17 would become token 17, a valid id): token
// ids and prompt ids beyond int32, or not integers, are refused naming the field.
TEST(StepDoneProtocolTest, TokenIdsBeyondInt32AreRefused) {
  StepResultMsg out;
  Status s = DecodeStepResult(
      R"({"type":"step_done","rank":0,"step":1,"tokens":[{"id":3,"token":4294967313,)"
      R"("finished":false}],"expert_counts":[],"batch_tokens":1,"forward_seconds":0.0,)"
      R"("kv_used_tokens":0,"kv_capacity_tokens":10,"link_traffic":{"dispatch_bytes":[],)"
      R"("combine_bytes":[],"dispatch_seconds":0.0,"combine_seconds":0.0}})",
      "w0", &out);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("token 4294967313 is not an int32"), std::string::npos)
      << s.ToString();

  StepMsg step;
  step.step = 2;
  WorkRequest w;
  w.id = 9;
  w.request.prompt = {5, 6};
  w.request.max_new_tokens = 3;
  step.add.push_back(w);
  const std::string text = EncodeStep(step);
  StepMsg back;
  ASSERT_TRUE(DecodeStep(text, "coordinator", &back).ok());
  ASSERT_EQ(back.add.size(), 1u);
  EXPECT_EQ(back.add[0].request.prompt, (std::vector<int32_t>{5, 6}));
  for (const char* bad_id : {"4294967301", "1.5", "-2147483649"}) {
    std::string bad = text;
    const size_t at = bad.find("[5,6]");
    ASSERT_NE(at, std::string::npos) << text;
    bad.replace(at, 5, std::string("[5,") + bad_id + "]");
    s = DecodeStep(bad, "coordinator", &back);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find(std::string("prompt ") + bad_id + " is not an int32"),
              std::string::npos)
        << s.ToString();
  }
}

}  // namespace
}  // namespace switchyard
