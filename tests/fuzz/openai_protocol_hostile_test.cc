// Hostile request bodies for ParseCompletionRequest, as regressions of crashes found while
// writing openai_request_fuzz (the first two crashed the old parser under the fuzzer): each must
// be a 400 naming the parameter, never an exception, a deep recursion or a huge message.
#include <gtest/gtest.h>

#include <string>

#include "coordinator/http/openai_protocol.h"

namespace switchyard {
namespace {

ApiError Rejected(const std::string& body, bool chat = false) {
  CompletionParams p;
  ApiError e;
  EXPECT_FALSE(ParseCompletionRequest(body, chat, &p, &e)) << body.substr(0, 200);
  EXPECT_EQ(e.status, 400);
  EXPECT_FALSE(e.message.empty());
  return e;
}

// A JSON value nested `depth` arrays deep around 1.
std::string Nested(int depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); }

// json::value("type", "") threw type_error when "type" was not a string;
// the exception escaped the connection thread and terminated the server.
TEST(OpenAiProtocolHostileTest, ContentPartTypeOfTheWrongKindIs400) {
  for (const char* part : {R"({"type":5,"text":"x"})", R"({"type":null,"text":"x"})",
                           R"({"type":["text"],"text":"x"})", R"({"type":"text","text":7})"}) {
    const std::string body =
        std::string(R"({"model":"m","messages":[{"role":"user","content":[)") + part + "]}]}";
    EXPECT_EQ(Rejected(body, true).param, "messages[0].content");
  }
}

// A deeply nested prompt recursed once per level in ParsePrompt and again in json::dump for the
// error message: a stack overflow from a body well under the size limit.
TEST(OpenAiProtocolHostileTest, DeeplyNestedPromptIs400WithoutDeepRecursion) {
  const int kDepth = 300000;
  EXPECT_EQ(Rejected(R"({"model":"m","prompt":)" + Nested(kDepth) + "}").param, "prompt");
  const ApiError e = Rejected(R"({"model":"m","prompt":[1,)" + Nested(kDepth) + "]}");
  EXPECT_EQ(e.param, "prompt");
  EXPECT_LT(e.message.size(), 200u) << "the message echoes the nested value";
  EXPECT_EQ(Rejected(R"({"model":"m","prompt":[[1],[2]]})").param, "prompt");
  EXPECT_EQ(Rejected(R"({"model":"m","prompt":[[[1]]]})").param, "prompt");
  CompletionParams p;
  ApiError err;
  ASSERT_TRUE(ParseCompletionRequest(R"({"model":"m","prompt":[[4,5]]})", false, &p, &err));
  EXPECT_EQ(p.prompt_ids, (std::vector<int32_t>{4, 5}));
}

// Integers above INT64_MAX used to wrap negative and be reported as such.
TEST(OpenAiProtocolHostileTest, IntegersBeyondInt64AreOutOfRange) {
  ApiError e = Rejected(R"({"model":"m","prompt":"x","max_tokens":18446744073709551615})");
  EXPECT_EQ(e.param, "max_tokens");
  EXPECT_NE(e.message.find("out of range"), std::string::npos) << e.message;
  e = Rejected(R"({"model":"m","prompt":[9223372036854775808]})");
  EXPECT_NE(e.message.find("9223372036854775808"), std::string::npos) << e.message;
  EXPECT_EQ(Rejected(R"({"model":"m","prompt":"x","seed":18446744073709551615})").param, "seed");
}

TEST(OpenAiProtocolHostileTest, StopSequencesAreCappedAndLongValuesCut) {
  std::string stops;
  for (size_t i = 0; i <= kMaxStopSequences; ++i)
    stops += (i ? ",\"s" : "\"s") + std::to_string(i) + "\"";
  EXPECT_EQ(Rejected(R"({"model":"m","prompt":"x","stop":[)" + stops + "]}").param, "stop");
  const ApiError e = Rejected(R"({"model":"m","prompt":[1,")" + std::string(100000, 'z') + "\"]}");
  EXPECT_LT(e.message.size(), 300u);
}

}  // namespace
}  // namespace switchyard
