// Chat templates (model/chat_template.h) against transformers' apply_chat_template with the real
// templates of DeepSeek-V3, Qwen3 and Mixtral (fixtures written by
// tests/tokenizer/make_chat_fixtures.py), and the rendered prompt through the tokenizer.
#include "model/chat_template.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "model/tokenizer.h"
#include "test_util.h"

namespace switchyard {
namespace {

using json = nlohmann::json;

ChatFamily FamilyOf(const std::string& name) {
  if (name == "deepseek_v3") return ChatFamily::kDeepSeekV3;
  if (name == "qwen3") return ChatFamily::kQwen3;
  return ChatFamily::kMixtral;
}

TEST(ChatTemplateTest, EqualsTransformersWithTheRealTemplates) {
  auto text =
      ReadFileToString(testing::SourceDir() + "/tests/tokenizer/fixtures/chat_templates.json");
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  const json fixture = json::parse(*text);
  int rendered = 0, rejected = 0;
  for (const json& c : fixture["cases"]) {
    std::vector<ChatMessage> messages;
    for (const json& m : c["messages"]) {
      ChatMessage message{m["role"], m["content"], std::nullopt};
      if (m.contains("reasoning_content")) message.reasoning_content = m["reasoning_content"];
      messages.push_back(std::move(message));
    }
    ChatTemplateOptions options;
    options.add_generation_prompt = c["add_generation_prompt"];
    if (c.contains("enable_thinking")) options.enable_thinking = c["enable_thinking"].get<bool>();
    auto out = RenderChat(FamilyOf(c["family"]), messages, options);
    const std::string what = c.dump();
    if (c.contains("error")) {
      EXPECT_FALSE(out.ok()) << what;
      if (!out.ok()) {
        EXPECT_NE(out.status().message().find("messages["), std::string::npos);
      }
      ++rejected;
    } else {
      ASSERT_TRUE(out.ok()) << out.status().ToString() << " " << what;
      EXPECT_EQ(*out, c["expected"].get<std::string>()) << what;
      ++rendered;
    }
  }
  EXPECT_GT(rendered, 80);
  EXPECT_GT(rejected, 4);
}

TEST(ChatTemplateTest, FamiliesAndBadRoles) {
  EXPECT_EQ(*ChatFamilyForModelType("deepseek_v3"), ChatFamily::kDeepSeekV3);
  EXPECT_EQ(*ChatFamilyForModelType("qwen3_moe"), ChatFamily::kQwen3);
  EXPECT_EQ(*ChatFamilyForModelType("mixtral"), ChatFamily::kMixtral);
  EXPECT_EQ(ChatFamilyForModelType("llama").status().code(), StatusCode::kNotFound);
  auto tool = RenderChat(ChatFamily::kQwen3, {{"user", "hi", {}}, {"tool", "x", {}}}, {});
  ASSERT_FALSE(tool.ok());
  EXPECT_NE(tool.status().message().find("messages[1].role: 'tool'"), std::string::npos);
  EXPECT_FALSE(RenderChat(ChatFamily::kDeepSeekV3, {}, {}).ok());
}

// The rendered DeepSeek-V3 prompt tokenizes with its markers as single added tokens and one BOS.
TEST(ChatTemplateTest, RenderedPromptTokenizes) {
  auto tokenizer =
      Tokenizer::FromFile(testing::SourceDir() + "/tests/tokenizer/fixtures/deepseek.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  auto prompt = RenderChat(ChatFamily::kDeepSeekV3,
                           {{"system", "Be brief.", {}}, {"user", "Hello!", {}}}, {});
  ASSERT_TRUE(prompt.ok());
  auto ids = (*tokenizer)->Encode(*prompt, /*add_special_tokens=*/false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), *(*tokenizer)->TokenToId("<｜begin▁of▁sentence｜>"));
  EXPECT_EQ(std::count(ids->begin(), ids->end(), ids->front()), 1);
  EXPECT_EQ(ids->back(), *(*tokenizer)->TokenToId("<｜Assistant｜>"));
  EXPECT_EQ(*(*tokenizer)->Decode(*ids, false), *prompt);
}

}  // namespace
}  // namespace switchyard
