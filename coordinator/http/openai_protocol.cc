#include "coordinator/http/openai_protocol.h"

#include <limits>
#include <nlohmann/json.hpp>

namespace switchyard {
namespace {

using nlohmann::json;

json NullIfEmpty(const std::string& s) { return s.empty() ? json(nullptr) : json(s); }

bool Fail(ApiError* e, const std::string& param, const std::string& message) {
  e->status = 400;
  e->type = "invalid_request_error";
  e->param = param;
  e->message = message;
  return false;
}

// A request value quoted in an error message: scalars as JSON (strings cut at 64 bytes), arrays
// and objects by kind only, since dumping a hostile deeply nested value would recurse deeply and
// echo the whole body back.
std::string Shown(const json& v) {
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  if (v.is_string() && v.get_ref<const std::string&>().size() > 64) {
    return json(v.get_ref<const std::string&>().substr(0, 64))
               .dump(-1, ' ', false, json::error_handler_t::replace) +
           "...";
  }
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool Present(const json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

// Reads an optional number field into *v with a range check.
bool Number(const json& j, const char* key, double lo, double hi, double* v, ApiError* e) {
  if (!Present(j, key)) return true;
  if (!j[key].is_number()) return Fail(e, key, std::string("'") + key + "' must be a number");
  *v = j[key].get<double>();
  if (!(*v >= lo && *v <= hi)) {
    return Fail(e, key,
                std::string("'") + key + "' must be within [" + Shown(json(lo)) + ", " +
                    Shown(json(hi)) + "], got " + Shown(j[key]));
  }
  return true;
}

// True for an integer JSON number above INT64_MAX (get<int64_t> would wrap it negative).
bool AboveInt64(const json& v) {
  return v.is_number_unsigned() &&
         v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

bool Integer(const json& j, const char* key, int64_t lo, int64_t* v, ApiError* e) {
  if (!Present(j, key)) return true;
  if (!j[key].is_number_integer()) {
    return Fail(e, key, std::string("'") + key + "' must be an integer");
  }
  if (AboveInt64(j[key])) {
    return Fail(e, key, std::string("'") + key + "' is out of range, got " + Shown(j[key]));
  }
  *v = j[key].get<int64_t>();
  if (*v < lo) {
    return Fail(e, key,
                std::string("'") + key + "' must be >= " + std::to_string(lo) + ", got " +
                    std::to_string(*v));
  }
  return true;
}

// `nested`: p is the one element of an outer array (the OpenAI "array of prompts" form); one level
// only, so that a deeply nested body cannot recurse deeply.
bool ParsePrompt(const json& p, bool nested, CompletionParams* out, ApiError* e) {
  if (p.is_string()) {
    out->prompt_text = p.get<std::string>();
    return true;
  }
  if (p.is_array() && p.size() == 1 && p[0].is_string()) {
    out->prompt_text = p[0].get<std::string>();
    return true;
  }
  if (p.is_array() && !p.empty() && p[0].is_array()) {
    if (nested) return Fail(e, "prompt", "'prompt' nests arrays more than one level deep");
    if (p.size() != 1) return Fail(e, "prompt", "only one prompt per request is supported");
    return ParsePrompt(p[0], true, out, e);
  }
  if (p.is_array() && !p.empty()) {
    for (const auto& t : p) {
      if (!t.is_number_integer()) {
        return Fail(
            e, "prompt",
            "'prompt' must be a string or an array of token ids (integers); found " + Shown(t));
      }
      const int64_t id = AboveInt64(t) ? -1 : t.get<int64_t>();
      if (id < 0 || id > INT32_MAX) {
        return Fail(e, "prompt", "prompt token id " + Shown(t) + " is out of range");
      }
      out->prompt_ids.push_back(static_cast<int32_t>(id));
    }
    return true;
  }
  return Fail(e, "prompt", "'prompt' must be a non-empty string or array of token ids");
}

bool ParseMessages(const json& m, CompletionParams* out, ApiError* e) {
  if (!m.is_array() || m.empty())
    return Fail(e, "messages", "'messages' must be a non-empty array");
  for (size_t i = 0; i < m.size(); ++i) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    const json& msg = m[i];
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string()) {
      return Fail(e, where, where + " must be an object with a string 'role'");
    }
    ChatMessage cm;
    cm.role = msg["role"].get<std::string>();
    const json content = msg.value("content", json(nullptr));
    if (content.is_string()) {
      cm.content = content.get<std::string>();
    } else if (content.is_array()) {
      for (const auto& part : content) {
        // No json::value() here: it throws when "type" is present but not a string.
        if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
            !part.contains("text") || !part["text"].is_string()) {
          return Fail(e, where + ".content", "only text content parts are supported");
        }
        cm.content += part["text"].get<std::string>();
      }
    } else if (!content.is_null()) {
      return Fail(e, where + ".content", where + ".content must be a string or an array");
    }
    out->messages.push_back(std::move(cm));
  }
  return true;
}

}  // namespace

std::string ErrorBody(const ApiError& e) {
  return json{{"error",
               {{"message", e.message},
                {"type", e.type},
                {"param", NullIfEmpty(e.param)},
                {"code", NullIfEmpty(e.code)}}}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

bool ParseCompletionJson(const std::string& body, bool chat, CompletionParams* out, ApiError* e) {
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return Fail(e, "", "the request body is not valid JSON");
  if (!j.is_object()) return Fail(e, "", "the request body must be a JSON object");
  if (!j.contains("model") || !j["model"].is_string()) {
    return Fail(e, "model", "'model' is required and must be a string");
  }
  out->model = j["model"].get<std::string>();
  if (chat) {
    if (!j.contains("messages")) return Fail(e, "messages", "'messages' is required");
    if (!ParseMessages(j["messages"], out, e)) return false;
  } else {
    if (!j.contains("prompt")) return Fail(e, "prompt", "'prompt' is required");
    if (!ParsePrompt(j["prompt"], false, out, e)) return false;
  }
  int64_t n = 1;
  if (!Integer(j, "n", 1, &n, e)) return false;
  if (n != 1) return Fail(e, "n", "only n = 1 is supported");
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    int64_t v = 0;
    if (!Present(j, key)) continue;
    if (!Integer(j, key, 1, &v, e)) return false;
    out->max_tokens = v;
  }
  double temperature = 1.0, top_p = 1.0;
  if (!Number(j, "temperature", 0.0, 2.0, &temperature, e)) return false;
  if (!Number(j, "top_p", 1e-9, 1.0, &top_p, e)) return false;
  out->sampling.temperature = static_cast<float>(temperature);
  out->sampling.top_p = static_cast<float>(top_p);
  int64_t top_k = 0;
  if (!Integer(j, "top_k", -1, &top_k, e)) return false;
  out->sampling.top_k = top_k < 0 ? 0 : top_k;
  int64_t seed = 0;
  if (!Integer(j, "seed", INT64_MIN, &seed, e)) return false;
  out->sampling.seed = static_cast<uint64_t>(seed);
  if (Present(j, "stop")) {
    const json& s = j["stop"];
    if (s.is_string()) {
      out->stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      if (s.size() > kMaxStopSequences) {
        return Fail(e, "stop",
                    "at most " + std::to_string(kMaxStopSequences) + " stop sequences, got " +
                        std::to_string(s.size()));
      }
      for (const auto& x : s) {
        if (!x.is_string()) return Fail(e, "stop", "'stop' must be a string or array of strings");
        out->stop.push_back(x.get<std::string>());
      }
    } else {
      return Fail(e, "stop", "'stop' must be a string or array of strings");
    }
  }
  for (auto [key, dst] : {std::pair{"stream", &out->stream}, {"ignore_eos", &out->ignore_eos}}) {
    if (!Present(j, key)) continue;
    if (!j[key].is_boolean()) return Fail(e, key, std::string("'") + key + "' must be a boolean");
    *dst = j[key].get<bool>();
  }
  if (Present(j, "stream_options")) {
    const json& so = j["stream_options"];
    if (!so.is_object()) return Fail(e, "stream_options", "'stream_options' must be an object");
    if (Present(so, "include_usage")) {
      if (!so["include_usage"].is_boolean()) {
        return Fail(e, "stream_options.include_usage", "'include_usage' must be a boolean");
      }
      out->include_usage = so["include_usage"].get<bool>();
    }
  }
  return true;
}

}  // namespace

bool ParseCompletionRequest(const std::string& body, bool chat, CompletionParams* out,
                            ApiError* e) {
  *out = CompletionParams{};
  // The checks above never let nlohmann::json throw; this is the backstop that keeps a missed
  // case a 400 instead of an exception on a connection thread.
  try {
    return ParseCompletionJson(body, chat, out, e);
  } catch (const json::exception& x) {
    *out = CompletionParams{};
    return Fail(e, "", std::string("the request body could not be read: ") + x.what());
  }
}

std::string CompletionBody(bool chat, const std::string& id, int64_t created,
                           const std::string& model, const std::string& text,
                           const std::string& finish_reason, const Usage& usage) {
  json choice = {
      {"index", 0}, {"finish_reason", NullIfEmpty(finish_reason)}, {"logprobs", nullptr}};
  if (chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  return json{{"id", id},
              {"object", chat ? "chat.completion" : "text_completion"},
              {"created", created},
              {"model", model},
              {"choices", json::array({choice})},
              {"usage",
               {{"prompt_tokens", usage.prompt_tokens},
                {"completion_tokens", usage.completion_tokens},
                {"total_tokens", usage.prompt_tokens + usage.completion_tokens}}}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string StreamChunk(bool chat, const std::string& id, int64_t created, const std::string& model,
                        const std::string& text, const std::string& finish_reason, bool first) {
  json choice = {
      {"index", 0}, {"finish_reason", NullIfEmpty(finish_reason)}, {"logprobs", nullptr}};
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return "data: " +
         json{{"id", id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", created},
              {"model", model},
              {"choices", json::array({choice})}}
             .dump(-1, ' ', false, json::error_handler_t::replace) +
         "\n\n";
}

std::string UsageChunk(bool chat, const std::string& id, int64_t created, const std::string& model,
                       const Usage& usage) {
  return "data: " +
         json{{"id", id},
              {"object", chat ? "chat.completion.chunk" : "text_completion"},
              {"created", created},
              {"model", model},
              {"choices", json::array()},
              {"usage",
               {{"prompt_tokens", usage.prompt_tokens},
                {"completion_tokens", usage.completion_tokens},
                {"total_tokens", usage.prompt_tokens + usage.completion_tokens}}}}
             .dump(-1, ' ', false, json::error_handler_t::replace) +
         "\n\n";
}

std::string StreamError(const ApiError& e) { return "data: " + ErrorBody(e) + "\n\n"; }

std::string ModelsBody(const std::string& model, int64_t created) {
  return json{{"object", "list"},
              {"data", json::array({{{"id", model},
                                     {"object", "model"},
                                     {"created", created},
                                     {"owned_by", "switchyard"}}})}}
      .dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace switchyard
