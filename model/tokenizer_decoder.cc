#include "model/tokenizer_decoder.h"

#include <nlohmann/json.hpp>

#include "model/tokenizer_pipeline.h"
#include "model/tokenizer_text.h"

namespace switchyard::tok {

using json = nlohmann::json;

namespace {

// The byte of a "<0xAB>" token (tokenizers' ByteFallback test), or -1.
int FallbackByte(std::string_view token) {
  if (token.size() != 6 || token.substr(0, 3) != "<0x" || token[5] != '>') return -1;
  int value = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = token[k];
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return -1;
    }
    value = value * 16 + digit;
  }
  return value;
}

// A byte-level token's bytes: the mapped bytes when every character is mapped, else its own.
void AppendByteLevel(std::string_view token, std::string* out) {
  std::string bytes;
  for (size_t i = 0; i < token.size();) {
    const int b = UnicodeToByte(NextCodePoint(token, &i));
    if (b < 0) {
      out->append(token);
      return;
    }
    bytes.push_back(static_cast<char>(b));
  }
  out->append(bytes);
}

void AppendReplaced(const DecodePlan& plan, std::string_view token, std::string* out) {
  if (plan.replacements.empty()) {
    out->append(token);
    return;
  }
  std::string text(token);
  for (const auto& [from, to] : plan.replacements) {
    std::string next;
    size_t prev = 0;
    for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, prev)) {
      next.append(text, prev, at - prev);
      next += to;
      prev = at + from.size();
    }
    next.append(text, prev, std::string::npos);
    text = std::move(next);
  }
  out->append(text);
}

void FlushRun(std::string* run, std::string* out) {
  if (run->empty()) return;
  if (ValidateUtf8(*run, "").ok()) {
    out->append(*run);
  } else {
    for (size_t k = 0; k < run->size(); ++k) out->append("\xEF\xBF\xBD");
  }
  run->clear();
}

}  // namespace

std::string DecodePlan::Decode(const std::vector<std::string_view>& tokens) const {
  std::string out;
  if (join_with_space) {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out += ' ';
      out.append(tokens[i]);
    }
    return out;
  }
  if (byte_level) {
    std::string bytes;
    for (std::string_view t : tokens) AppendByteLevel(t, &bytes);
    AppendLossyUtf8(bytes, /*hold_incomplete=*/false, &out);
    return out;
  }
  std::string run;
  for (std::string_view t : tokens) {
    const int b = byte_fallback ? FallbackByte(t) : -1;
    if (b >= 0) {
      run.push_back(static_cast<char>(b));
      continue;
    }
    FlushRun(&run, &out);
    AppendReplaced(*this, t, &out);
  }
  FlushRun(&run, &out);
  size_t cut = 0;
  for (int k = 0; k < strip_count && out.compare(cut, strip.size(), strip) == 0; ++k) {
    cut += strip.size();
  }
  return out.substr(cut);
}

std::string DecodeStream::Strip(std::string text) {
  size_t cut = 0;
  while (strip_left_ > 0 && cut < text.size() &&
         text.compare(cut, plan_->strip.size(), plan_->strip) == 0) {
    cut += plan_->strip.size();
    --strip_left_;
  }
  if (cut < text.size()) strip_left_ = 0;
  return text.substr(cut);
}

std::string DecodeStream::Push(std::string_view token) {
  std::string out;
  if (plan_->join_with_space) {
    if (!first_) out += ' ';
    first_ = false;
    out.append(token);
    return out;
  }
  if (plan_->byte_level) {
    AppendByteLevel(token, &pending_);
    const size_t used = AppendLossyUtf8(pending_, /*hold_incomplete=*/true, &out);
    pending_.erase(0, used);
    return out;
  }
  const int b = plan_->byte_fallback ? FallbackByte(token) : -1;
  if (b >= 0) {
    pending_.push_back(static_cast<char>(b));  // a run is judged whole when it ends
    return out;
  }
  FlushRun(&pending_, &out);
  AppendReplaced(*plan_, token, &out);
  return Strip(std::move(out));
}

std::string DecodeStream::Finish() {
  std::string out;
  if (plan_->byte_level) {
    AppendLossyUtf8(pending_, /*hold_incomplete=*/false, &out);
  } else {
    FlushRun(&pending_, &out);
    out = Strip(std::move(out));
  }
  pending_.clear();
  return out;
}

namespace {

Status AddDecoder(const json& j, const std::string& path, bool in_sequence, bool* fused,
                  DecodePlan* plan) {
  if (!j.is_object()) return InvalidArgumentError(path + ": not a JSON object");
  ASSIGN_OR_RETURN(std::string type, JsonString(j, "type", path));
  const bool text_steps = plan->byte_fallback || *fused || plan->strip_count > 0;
  if (type == "ByteLevel") {
    if (!plan->replacements.empty() || text_steps) {
      return UnimplementedError(path + ": ByteLevel combined with other decoders is not supported");
    }
    plan->byte_level = true;
    return OkStatus();
  }
  if (plan->byte_level) {
    return UnimplementedError(path + ": '" + type + "' after ByteLevel is not supported");
  }
  if (type == "Replace") {
    if (text_steps) {
      return UnimplementedError(path + ": Replace after ByteFallback/Fuse/Strip is not supported");
    }
    if (!j.contains("pattern") || !j["pattern"].is_object() || !j["pattern"].contains("String") ||
        !j["pattern"]["String"].is_string()) {
      return UnimplementedError(path + ".pattern: only {\"String\": ...} patterns are supported");
    }
    ASSIGN_OR_RETURN(std::string content, JsonString(j, "content", path));
    const std::string from = j["pattern"]["String"].get<std::string>();
    if (from.empty()) return InvalidArgumentError(path + ".pattern.String: empty");
    plan->replacements.emplace_back(from, content);
    return OkStatus();
  }
  if (type == "ByteFallback") {
    plan->byte_fallback = true;
    return OkStatus();
  }
  if (type == "Fuse") {
    *fused = true;
    return OkStatus();
  }
  if (type == "Strip") {
    if (!*fused) return UnimplementedError(path + ": Strip is only supported after Fuse");
    ASSIGN_OR_RETURN(std::string content, JsonString(j, "content", path));
    if (!j.contains("start") || !j["start"].is_number_integer() || !j.contains("stop") ||
        !j["stop"].is_number_integer() || j["start"].get<int64_t>() < 0) {
      return InvalidArgumentError(path + ": 'start' and 'stop' must be integers >= 0");
    }
    if (j["stop"].get<int64_t>() != 0) {
      return UnimplementedError(path + ".stop: stripping the end of the text is not supported");
    }
    plan->strip = content;
    plan->strip_count = static_cast<int>(j["start"].get<int64_t>());
    return OkStatus();
  }
  if (type == "Metaspace") {
    if (text_steps) return UnimplementedError(path + ": Metaspace must come first");
    ASSIGN_OR_RETURN(std::string replacement, JsonString(j, "replacement", path));
    ASSIGN_OR_RETURN(std::string scheme, JsonString(j, "prepend_scheme", path, "always"));
    plan->replacements.emplace_back(replacement, " ");
    if (scheme != "never") {
      *fused = true;  // strips the first token's leading space, i.e. the output's
      plan->strip = " ";
      plan->strip_count = 1;
    }
    return OkStatus();
  }
  if (type == "Sequence" && !in_sequence) {
    if (!j.contains("decoders") || !j["decoders"].is_array()) {
      return InvalidArgumentError(path + ".decoders: missing or not a list");
    }
    for (size_t i = 0; i < j["decoders"].size(); ++i) {
      RETURN_IF_ERROR(AddDecoder(j["decoders"][i], path + ".decoders[" + std::to_string(i) + "]",
                                 true, fused, plan));
    }
    return OkStatus();
  }
  return UnimplementedError(path + ".type: decoder '" + type + "' is not supported");
}

}  // namespace

StatusOr<DecodePlan> ParseDecoder(const json& j, const std::string& path) {
  DecodePlan plan;
  if (j.is_null()) {
    plan.join_with_space = true;
    return plan;
  }
  bool fused = false;
  RETURN_IF_ERROR(AddDecoder(j, path, false, &fused, &plan));
  return plan;
}

}  // namespace switchyard::tok
