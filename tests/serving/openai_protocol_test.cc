// The OpenAI request parser: types, ranges, defaults, n, prompt forms, messages; and the error
// body's shape.
#include "coordinator/http/openai_protocol.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace switchyard {
namespace {

ApiError ParseError(const std::string& body, bool chat = false) {
  CompletionParams p;
  ApiError e;
  EXPECT_FALSE(ParseCompletionRequest(body, chat, &p, &e)) << body;
  return e;
}

TEST(OpenAiProtocolTest, RejectsBadInputNamingTheParameter) {
  EXPECT_EQ(ParseError("{oops").param, "");
  EXPECT_EQ(ParseError("[]").status, 400);
  EXPECT_EQ(ParseError(R"({"prompt":"a"})").param, "model");
  EXPECT_EQ(ParseError(R"({"model":"m"})").param, "prompt");
  EXPECT_EQ(ParseError(R"({"model":"m","prompt":"a","max_tokens":0})").param, "max_tokens");
  EXPECT_EQ(ParseError(R"({"model":"m","prompt":"a","max_tokens":1.5})").param, "max_tokens");
  EXPECT_EQ(ParseError(R"({"model":"m","prompt":"a","top_p":0})").param, "top_p");
  EXPECT_EQ(ParseError(R"({"model":"m","prompt":"a","temperature":"hot"})").param, "temperature");
  EXPECT_EQ(ParseError(R"({"model":"m","prompt":"a","n":3})").param, "n");
  EXPECT_EQ(ParseError(R"({"model":"m","prompt":"a","stop":[1]})").param, "stop");
  EXPECT_EQ(ParseError(R"({"model":"m","prompt":[1,-2]})").param, "prompt");
  EXPECT_EQ(ParseError(R"({"model":"m","prompt":["a","b"]})").param, "prompt");
  EXPECT_EQ(ParseError(R"({"model":"m","messages":[{"content":"x"}]})", true).param, "messages[0]");
}

TEST(OpenAiProtocolTest, ParsesTheSupportedForms) {
  CompletionParams p;
  ApiError e;
  ASSERT_TRUE(ParseCompletionRequest(
      R"({"model":"m","prompt":[5,6],"max_tokens":7,"temperature":0,"top_k":-1,"seed":3,
          "stop":"x","stream":true,"stream_options":{"include_usage":true},"unknown":1})",
      false, &p, &e))
      << e.message;
  EXPECT_EQ(p.prompt_ids, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(*p.max_tokens, 7);
  EXPECT_EQ(p.sampling.temperature, 0.0f);
  EXPECT_EQ(p.sampling.top_k, 0);
  EXPECT_EQ(p.sampling.seed, 3u);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"x"}));
  EXPECT_TRUE(p.stream && p.include_usage);
  ASSERT_TRUE(ParseCompletionRequest(
      R"({"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]})", true,
      &p, &e));
  ASSERT_EQ(p.messages.size(), 1u);
  EXPECT_EQ(p.messages[0].content, "hi");
  EXPECT_FALSE(p.max_tokens.has_value());
}

TEST(OpenAiProtocolTest, ErrorBodyHasTheOpenAiShape) {
  auto j = nlohmann::json::parse(
      ErrorBody(MakeApiError(404, "no", "invalid_request_error", "model", "model_not_found")));
  EXPECT_EQ(j["error"]["message"], "no");
  EXPECT_EQ(j["error"]["param"], "model");
  EXPECT_EQ(j["error"]["code"], "model_not_found");
  j = nlohmann::json::parse(ErrorBody(MakeApiError(400, "bad")));
  EXPECT_TRUE(j["error"]["param"].is_null() && j["error"]["code"].is_null());
}

}  // namespace
}  // namespace switchyard
