#include "model/chat_template.h"

namespace switchyard {
namespace {

std::string Where(size_t i) { return "messages[" + std::to_string(i) + "]"; }

Status CheckRoles(const std::vector<ChatMessage>& messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    if (r != "system" && r != "user" && r != "assistant") {
      return InvalidArgumentError(Where(i) + ".role: '" + r +
                                  "' is not supported (system, user or assistant)");
    }
  }
  return OkStatus();
}

// Python's str.lstrip/rstrip/strip with a character set of one character.
std::string LStrip(const std::string& s, char c) {
  const size_t b = s.find_first_not_of(c);
  return b == std::string::npos ? "" : s.substr(b);
}
std::string RStrip(const std::string& s, char c) {
  const size_t e = s.find_last_not_of(c);
  return e == std::string::npos ? "" : s.substr(0, e + 1);
}
std::string Strip(const std::string& s, char c) { return LStrip(RStrip(s, c), c); }

bool StartsWith(const std::string& s, const std::string& p) {
  return s.compare(0, p.size(), p) == 0;
}
bool EndsWith(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

std::string RenderDeepSeekV3(const std::vector<ChatMessage>& messages, bool generation_prompt) {
  std::string system;
  bool first_system = true;
  for (const ChatMessage& m : messages) {
    if (m.role != "system") continue;
    system += (first_system ? "" : "\n\n") + m.content;
    first_system = false;
  }
  std::string out = "<｜begin▁of▁sentence｜>" + system;
  for (const ChatMessage& m : messages) {
    if (m.role == "user") out += "<｜User｜>" + m.content;
    if (m.role == "assistant") out += "<｜Assistant｜>" + m.content + "<｜end▁of▁sentence｜>";
  }
  if (generation_prompt) out += "<｜Assistant｜>";
  return out;
}

std::string RenderQwen3(const std::vector<ChatMessage>& messages,
                        const ChatTemplateOptions& options) {
  std::string out;
  if (!messages.empty() && messages[0].role == "system") {
    out += "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n";
  }
  // The last user message that is not a tool response; turns after it show their reasoning.
  size_t last_query = messages.size() - 1;
  for (size_t k = messages.size(); k-- > 0;) {
    const std::string& c = messages[k].content;
    if (messages[k].role == "user" &&
        !(StartsWith(c, "<tool_response>") && EndsWith(c, "</tool_response>"))) {
      last_query = k;
      break;
    }
  }
  const std::string kEnd = "</think>";
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i > 0)) {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      continue;
    }
    if (m.role != "assistant") continue;
    std::string content = m.content, reasoning;
    if (m.reasoning_content) {
      reasoning = *m.reasoning_content;
    } else if (content.find(kEnd) != std::string::npos) {
      std::string before = RStrip(content.substr(0, content.find(kEnd)), '\n');
      const size_t open = before.rfind("<think>");
      if (open != std::string::npos) before = before.substr(open + 7);
      reasoning = LStrip(before, '\n');
      content = LStrip(content.substr(content.rfind(kEnd) + kEnd.size()), '\n');
    }
    const bool last = i + 1 == messages.size();
    if (i > last_query && (last || !reasoning.empty())) {
      out += "<|im_start|>assistant\n<think>\n" + Strip(reasoning, '\n') + "\n</think>\n\n" +
             LStrip(content, '\n');
    } else {
      out += "<|im_start|>assistant\n" + content;
    }
    out += "<|im_end|>\n";
  }
  if (options.add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (options.enable_thinking == false) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

StatusOr<std::string> RenderMixtral(const std::vector<ChatMessage>& messages) {
  size_t first = 0;
  std::optional<std::string> system;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    first = 1;
  }
  std::string out = "<s>";
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool user_turn = (i - first) % 2 == 0;
    if ((m.role == "user") != user_turn) {
      return InvalidArgumentError(Where(i) +
                                  ": after the optional system message, roles must "
                                  "alternate user/assistant/user/assistant/...");
    }
    if (m.role == "user") {
      out += " [INST] " + (i == first && system ? *system + "\n\n" : "") + m.content + " [/INST]";
    } else if (m.role == "assistant") {
      out += " " + m.content + "</s>";
    } else {
      return InvalidArgumentError(Where(i) +
                                  ".role: only user and assistant roles are supported, "
                                  "besides an initial system message");
    }
  }
  return out;
}

}  // namespace

StatusOr<ChatFamily> ChatFamilyForModelType(const std::string& model_type) {
  if (model_type == "deepseek_v3") return ChatFamily::kDeepSeekV3;
  if (model_type == "qwen3" || model_type == "qwen3_moe") return ChatFamily::kQwen3;
  if (model_type == "mixtral") return ChatFamily::kMixtral;
  return NotFoundError("no built-in chat template for model_type '" + model_type +
                       "' (deepseek_v3, qwen3, qwen3_moe, mixtral)");
}

StatusOr<std::string> RenderChat(ChatFamily family, const std::vector<ChatMessage>& messages,
                                 const ChatTemplateOptions& options) {
  RETURN_IF_ERROR(CheckRoles(messages));
  if (messages.empty()) return InvalidArgumentError("messages: empty");
  switch (family) {
    case ChatFamily::kDeepSeekV3:
      return RenderDeepSeekV3(messages, options.add_generation_prompt);
    case ChatFamily::kQwen3:
      return RenderQwen3(messages, options);
    case ChatFamily::kMixtral:
      return RenderMixtral(messages);
  }
  return InternalError("unknown chat family");
}

}  // namespace switchyard
