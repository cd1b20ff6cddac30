// libFuzzer target for the OpenAI request path of coordinator/http: the body parser
// (ParseCompletionRequest), the chat templates of the three families (RenderChat) on the parsed
// messages, and the JSON / SSE encoders fed with the request's untrusted text. With Clang it runs
// under ctest (openai_request_fuzz, a few seconds); any compiler builds openai_request_fuzz_replay,
// which runs the seed corpus tests/fuzz/openai_corpus/ through the same checks.
//
//   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++
//   ninja -C build-fuzz openai_request_fuzz
//   build-fuzz/tests/openai_request_fuzz -max_total_time=60 /tmp/new_inputs
//   tests/fuzz/openai_corpus
//
// Input: byte 0 picks the endpoint (bit 0: chat), the chat family (bits 1-2) and the template
// options (bits 3-5); the rest is the request body. Every rejection must be a 400 ApiError with a
// message and a well-formed error body; every accepted request must hold the parser's documented
// ranges; chat rendering must succeed or fail with InvalidArgument naming messages[i]; every
// encoder output must be valid JSON (SSE: exactly one "data: <json>\n\n" event). A violated check
// aborts, so the fuzzer reports it like a crash.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "coordinator/http/openai_protocol.h"
#include "model/chat_template.h"

namespace {

using nlohmann::json;
using switchyard::ApiError;
using switchyard::CompletionParams;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "openai_request_fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

// A JSON document (never throws: a parse error is a violated check).
json ParseJson(const std::string& text, const char* what) {
  json j = json::parse(text, nullptr, false);
  Check(!j.is_discarded(), what);
  return j;
}

// One SSE event: "data: " + a single line of JSON + a blank line, nothing else.
json ParseEvent(const std::string& event, const char* what) {
  Check(event.size() > 8 && event.compare(0, 6, "data: ") == 0, "SSE event starts with data: ");
  Check(event.compare(event.size() - 2, 2, "\n\n") == 0, "SSE event ends with a blank line");
  const std::string payload = event.substr(6, event.size() - 8);
  Check(payload.find('\n') == std::string::npos && payload.find('\r') == std::string::npos,
        "SSE payload is one line (untrusted text cannot end the event)");
  return ParseJson(payload, what);
}

void CheckRejection(const ApiError& e) {
  Check(e.status == 400, "a rejected request is a 400");
  Check(!e.message.empty(), "a rejection has a message");
  Check(e.type == "invalid_request_error", "a rejection is an invalid_request_error");
  const json body = ParseJson(switchyard::ErrorBody(e), "ErrorBody is JSON");
  Check(body["error"]["message"].is_string(), "ErrorBody carries the message");
  Check(body["error"]["param"].is_null() == e.param.empty(), "ErrorBody param is null iff empty");
  (void)ParseEvent(switchyard::StreamError(e), "StreamError is JSON");
}

void CheckAccepted(const CompletionParams& p, bool chat) {
  if (chat) {
    Check(!p.messages.empty(), "a chat request has messages");
  } else {
    Check(p.prompt_text.has_value() != !p.prompt_ids.empty(),
          "a completion has exactly one of prompt text / ids");
    for (int32_t id : p.prompt_ids) Check(id >= 0, "prompt ids are non-negative");
  }
  Check(!p.max_tokens || *p.max_tokens >= 1, "max_tokens >= 1");
  Check(p.sampling.temperature >= 0.0f && p.sampling.temperature <= 2.0f, "temperature range");
  Check(p.sampling.top_p > 0.0f && p.sampling.top_p <= 1.0f, "top_p range");
  Check(p.sampling.top_k >= 0, "top_k >= 0");
  Check(p.stop.size() <= switchyard::kMaxStopSequences, "stop sequences capped");
}

// The chat template of `family` on the parsed messages.
void CheckRender(switchyard::ChatFamily family, const CompletionParams& p, uint8_t flags) {
  switchyard::ChatTemplateOptions options;
  options.add_generation_prompt = (flags & 1) != 0;
  if (flags & 2) options.enable_thinking = (flags & 4) != 0;
  auto text = switchyard::RenderChat(family, p.messages, options);
  if (!text.ok()) {
    Check(text.status().code() == switchyard::StatusCode::kInvalidArgument,
          "a template rejection is InvalidArgument");
    Check(text.status().message().find("messages") != std::string::npos,
          "a template rejection names the message");
    return;
  }
  Check(!text->empty(), "a rendered chat is not empty");
  // Every message's text reaches the prompt (the templates only strip newlines around it).
  for (const auto& m : p.messages) {
    const size_t b = m.content.find_first_not_of('\n'), e = m.content.find_last_not_of('\n');
    if (b == std::string::npos || m.role == "system" || m.role == "assistant") continue;
    Check(text->find(m.content.substr(b, e - b + 1)) != std::string::npos,
          "a user message's text appears in the prompt");
  }
}

// The encoders with the request's own (untrusted) strings as model name and text.
void CheckEncoders(const CompletionParams& p, bool chat) {
  std::string text = p.prompt_text.value_or("");
  if (chat) text = p.messages.back().content;
  const std::string& model = p.model;
  const switchyard::Usage usage{7, 3};
  json j = ParseJson(switchyard::CompletionBody(chat, "id-1", 1, model, text, "stop", usage),
                     "CompletionBody is JSON");
  Check(j["usage"]["total_tokens"] == 10, "CompletionBody usage");
  j = ParseEvent(switchyard::StreamChunk(chat, "id-1", 1, model, text, "", true), "chunk");
  Check(j["choices"][0]["finish_reason"].is_null(), "an unfinished chunk has a null reason");
  (void)ParseEvent(switchyard::StreamChunk(chat, "id-1", 1, model, "", "length", false), "end");
  (void)ParseEvent(switchyard::UsageChunk(chat, "id-1", 1, model, usage), "usage chunk");
  for (const auto& s : p.stop) {
    (void)ParseEvent(switchyard::StreamChunk(chat, "id-1", 1, model, s, "", false), "stop");
  }
  (void)ParseJson(switchyard::ModelsBody(model, 1), "ModelsBody is JSON");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  const bool chat = (mode & 1) != 0;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  CompletionParams p;
  ApiError e;
  if (!switchyard::ParseCompletionRequest(body, chat, &p, &e)) {
    CheckRejection(e);
    return 0;
  }
  CheckAccepted(p, chat);
  if (chat) {
    static constexpr switchyard::ChatFamily kFamilies[] = {switchyard::ChatFamily::kDeepSeekV3,
                                                           switchyard::ChatFamily::kQwen3,
                                                           switchyard::ChatFamily::kMixtral};
    CheckRender(kFamilies[((mode >> 1) & 3) % 3], p, static_cast<uint8_t>(mode >> 3));
  }
  CheckEncoders(p, chat);
  return 0;
}
