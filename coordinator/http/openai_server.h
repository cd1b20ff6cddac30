// OpenAiServer: the OpenAI-compatible HTTP API over a ServingEngine.
//
//   POST /v1/completions, POST /v1/chat/completions (streamed as SSE with `stream: true`),
//   GET /v1/models, GET /health (liveness: 200 while the process serves HTTP),
//   GET /ready (200 when the model is loaded and every worker is up, else 503),
//   GET /metrics (Prometheus text).
//
// Errors use the OpenAI body {"error": {message, type, param, code}}: 400 bad JSON / types /
// ranges / n != 1 / prompt + max_tokens beyond the context (code context_length_exceeded),
// 404 unknown model or path, 405 wrong method, 413 body over the size limit, 429 queue full
// (Retry-After header), 500 internal, 503 cluster not serving. A client that disconnects cancels
// its request (its KV cache is freed on the worker).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "coordinator/http/http_server.h"
#include "coordinator/serving/serving_engine.h"
#include "model/chat_template.h"
#include "model/model_config.h"
#include "model/tokenizer.h"

namespace switchyard {

struct OpenAiServerOptions {
  std::string model_name;           // the served model id (`model` in requests and responses)
  int64_t max_seq_len = 4096;       // prompt + max_tokens must fit
  int64_t default_max_tokens = 16;  // /v1/completions without max_tokens (OpenAI's default)
  std::chrono::seconds request_timeout{600};  // longest a request may take end to end
  HttpServerOptions http;
};

// The chat-template family of a model's config (every supported family has one).
std::optional<ChatFamily> ChatFamilyForModel(const ModelConfig& config);

class OpenAiServer {
 public:
  // Starts listening. `engine`, `tokenizer` and `metrics` must outlive the server; `chat` is the
  // chat-template family (nullopt: /v1/chat/completions answers 400). Errors: HttpServer::Start's.
  static StatusOr<std::unique_ptr<OpenAiServer>> Start(ServingEngine* engine,
                                                       const Tokenizer* tokenizer,
                                                       std::optional<ChatFamily> chat,
                                                       ServingMetrics* metrics,
                                                       OpenAiServerOptions options);
  ~OpenAiServer();
  int port() const { return http_->port(); }
  // Stops accepting and closes open connections (their requests are cancelled). Idempotent.
  void Stop() { http_->Stop(); }

 private:
  OpenAiServer() = default;
  void Handle(const HttpRequest& req, HttpExchange& ex);
  int HandleCompletion(const HttpRequest& req, HttpExchange& ex, bool chat);

  ServingEngine* engine_ = nullptr;
  const Tokenizer* tokenizer_ = nullptr;
  std::optional<ChatFamily> chat_;
  ServingMetrics* metrics_ = nullptr;
  OpenAiServerOptions options_;
  int64_t created_ = 0;
  std::unique_ptr<HttpServer> http_;
};

}  // namespace switchyard
