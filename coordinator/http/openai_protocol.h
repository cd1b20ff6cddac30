// The OpenAI API's JSON: request parsing with validation (lenient on unknown fields, strict on
// types and ranges), response, stream-chunk and error bodies. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/chat_template.h"
#include "model/sampler.h"

namespace switchyard {

// An error answer: HTTP status and the OpenAI error body's fields.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // empty -> null
  std::string code;   // empty -> null
};

inline ApiError MakeApiError(int status, std::string message,
                             std::string type = "invalid_request_error", std::string param = "",
                             std::string code = "") {
  return ApiError{status, std::move(message), std::move(type), std::move(param), std::move(code)};
}

// {"error": {"message", "type", "param", "code"}}.
std::string ErrorBody(const ApiError& e);

struct CompletionParams {
  std::string model;
  // /v1/completions: text or token ids; /v1/chat/completions: messages.
  std::optional<std::string> prompt_text;
  std::vector<int32_t> prompt_ids;
  std::vector<ChatMessage> messages;
  std::optional<int64_t> max_tokens;  // absent: the server picks (what fits the context)
  SamplingParams sampling;
  std::vector<std::string> stop;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool ignore_eos = false;
};

// The most stop sequences a request may give (OpenAI allows 4; each costs work per token).
inline constexpr size_t kMaxStopSequences = 16;

// Parses a /v1/completions (`chat` false) or /v1/chat/completions body. Returns false with
// *error set (400, naming the parameter) for malformed JSON, wrong types, out-of-range values
// (integers beyond int64 included), n != 1, more than kMaxStopSequences stop sequences, prompt
// arrays nested deeper than [[ids]], or a missing prompt/messages/model. Never throws, for any
// input bytes (fuzzed by tests/fuzz/openai_request_fuzz.cc). Thread-safe.
bool ParseCompletionRequest(const std::string& body, bool chat, CompletionParams* out,
                            ApiError* error);

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
};

// A whole (non-streamed) completion / chat.completion object.
std::string CompletionBody(bool chat, const std::string& id, int64_t created,
                           const std::string& model, const std::string& text,
                           const std::string& finish_reason, const Usage& usage);

// One SSE event "data: {...}\n\n" of a text_completion / chat.completion.chunk stream.
// `finish_reason` empty -> null. With `first` (chat only) the delta carries the role.
std::string StreamChunk(bool chat, const std::string& id, int64_t created, const std::string& model,
                        const std::string& text, const std::string& finish_reason, bool first);
// The usage chunk (empty choices) sent before [DONE] when include_usage was asked for.
std::string UsageChunk(bool chat, const std::string& id, int64_t created, const std::string& model,
                       const Usage& usage);
// An error inside a stream: "data: {"error": ...}\n\n".
std::string StreamError(const ApiError& e);
inline constexpr const char* kStreamDone = "data: [DONE]\n\n";

// The /v1/models list with one model.
std::string ModelsBody(const std::string& model, int64_t created);

}  // namespace switchyard
