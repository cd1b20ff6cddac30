// Chat templates of the supported families rendered natively (no Jinja engine): OpenAI-style
// messages -> the prompt text the model's tokenizer_config.json "chat_template" produces through
// transformers' apply_chat_template, for system/user/assistant turns (tool calls are not rendered).
// Checked against transformers with the real templates (tests/chat_template_test.cc).
//   DeepSeek-V3: BOS, system prompts joined by "\n\n", <｜User｜>…,
//   <｜Assistant｜>…<｜end▁of▁sentence｜> Qwen3: <|im_start|>role\n…<|im_end|>\n, <think> blocks
//   for turns after the last user query,
//          enable_thinking=false adds an empty think block to the generation prompt
//   Mixtral: <s>, " [INST] … [/INST]", " …</s>", strictly alternating user/assistant turns
// The rendered text holds its BOS: encode it with add_special_tokens = false.
// Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace switchyard {

enum class ChatFamily { kDeepSeekV3, kQwen3, kMixtral };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
  std::optional<std::string> reasoning_content;  // Qwen3 only; DeepSeek-V3 and Mixtral ignore it
};

struct ChatTemplateOptions {
  bool add_generation_prompt = true;    // end with the assistant's turn header
  std::optional<bool> enable_thinking;  // Qwen3: false -> empty <think></think> after the header
};

// The family of a config.json "model_type": deepseek_v3 -> DeepSeek-V3, qwen3/qwen3_moe -> Qwen3,
// mixtral -> Mixtral. NotFound naming the model_type otherwise.
StatusOr<ChatFamily> ChatFamilyForModelType(const std::string& model_type);

// The prompt text. InvalidArgument naming the message (messages[i]) for a role the family's
// template rejects: any role but system/user/assistant; for Mixtral a system message after the
// first or turns that do not alternate user/assistant (the template's own raise_exception).
StatusOr<std::string> RenderChat(ChatFamily family, const std::vector<ChatMessage>& messages,
                                 const ChatTemplateOptions& options);

}  // namespace switchyard
