#include "coordinator/http/openai_server.h"

#include <algorithm>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <iterator>
#include <mutex>

#include "common/logging.h"
#include "coordinator/http/openai_protocol.h"

namespace switchyard {
namespace {

constexpr auto kPollSlice = std::chrono::milliseconds(100);
const char* kJson = "application/json";

// The serving thread pushes a request's events; the connection thread pops them.
class EventQueue {
 public:
  void Push(const ServeEvent& e) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(e);
    }
    cv_.notify_one();
  }
  // Waits up to `slice` for an event.
  bool Pop(std::chrono::milliseconds slice, ServeEvent* out) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, slice, [&] { return !events_.empty(); })) return false;
    *out = std::move(events_.front());
    events_.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<ServeEvent> events_;
};

int Answer(HttpExchange& ex, const ApiError& e,
           const std::map<std::string, std::string>& headers = {}) {
  (void)ex.Respond(e.status, kJson, ErrorBody(e), headers);
  return e.status;
}

ApiError FromStatus(const Status& s) {
  ApiError e;
  e.message = s.message();
  switch (s.code()) {
    case StatusCode::kInvalidArgument:
      e.status = 400;
      break;
    case StatusCode::kResourceExhausted:
      e.status = 429;
      e.type = "rate_limit_error";
      break;
    case StatusCode::kUnavailable:
      e.status = 503;
      e.type = "server_error";
      break;
    default:
      e.status = 500;
      e.type = "server_error";
  }
  return e;
}

ChatFamily ChatFamilyOf(ModelFamily f) {
  switch (f) {
    case ModelFamily::kQwen3Moe:
      return ChatFamily::kQwen3;
    case ModelFamily::kMixtral:
      return ChatFamily::kMixtral;
    default:
      return ChatFamily::kDeepSeekV3;
  }
}

}  // namespace

std::optional<ChatFamily> ChatFamilyForModel(const ModelConfig& config) {
  return ChatFamilyOf(config.family);
}

StatusOr<std::unique_ptr<OpenAiServer>> OpenAiServer::Start(ServingEngine* engine,
                                                            const Tokenizer* tokenizer,
                                                            std::optional<ChatFamily> chat,
                                                            ServingMetrics* metrics,
                                                            OpenAiServerOptions options) {
  std::unique_ptr<OpenAiServer> s(new OpenAiServer());
  s->engine_ = engine;
  s->tokenizer_ = tokenizer;
  s->chat_ = chat;
  s->metrics_ = metrics;
  s->options_ = std::move(options);
  s->created_ = static_cast<int64_t>(std::time(nullptr));
  OpenAiServer* self = s.get();
  ASSIGN_OR_RETURN(
      s->http_, HttpServer::Start(s->options_.http, [self](const HttpRequest& r, HttpExchange& ex) {
        self->Handle(r, ex);
      }));
  return s;
}

OpenAiServer::~OpenAiServer() {
  if (http_) http_->Stop();
}

void OpenAiServer::Handle(const HttpRequest& req, HttpExchange& ex) {
  const std::string& path = req.target;
  int status = 200;
  std::string handler = path;
  auto want = [&](const char* method) {
    if (req.method == method) return true;
    ApiError e = MakeApiError(405, "method " + req.method + " is not allowed on " + path);
    status = Answer(ex, e, {{"Allow", method}});
    return false;
  };
  if (path == "/health") {
    if (want("GET")) (void)ex.Respond(200, kJson, R"({"status":"ok"})");
  } else if (path == "/ready") {
    if (want("GET")) {
      const bool ok = engine_->healthy();
      status = ok ? 200 : 503;
      (void)ex.Respond(status, kJson, ok ? R"({"status":"ready"})" : R"({"status":"not ready"})");
    }
  } else if (path == "/metrics") {
    if (want("GET")) {
      (void)ex.Respond(200, metrics::kPrometheusContentType, metrics_->RenderPrometheus());
    }
  } else if (path == "/v1/models") {
    if (want("GET")) (void)ex.Respond(200, kJson, ModelsBody(options_.model_name, created_));
  } else if (path == "/v1/completions" || path == "/v1/chat/completions") {
    if (want("POST")) status = HandleCompletion(req, ex, path == "/v1/chat/completions");
  } else {
    handler = "other";
    status = Answer(ex, MakeApiError(404, "no route for " + req.method + " " + path,
                                     "invalid_request_error", "", "not_found"));
  }
  // The method is client-chosen (any token parses): only known ones become metric labels, so a
  // client cannot create series without bound.
  static const char* const kMethods[] = {"GET",  "POST",    "PUT",  "DELETE",
                                         "HEAD", "OPTIONS", "PATCH"};
  const bool known =
      std::find(std::begin(kMethods), std::end(kMethods), req.method) != std::end(kMethods);
  metrics_->OnHttp(handler, known ? req.method : "other", status);
}

int OpenAiServer::HandleCompletion(const HttpRequest& req, HttpExchange& ex, bool chat) {
  CompletionParams p;
  ApiError err;
  if (!ParseCompletionRequest(req.body, chat, &p, &err)) return Answer(ex, err);
  if (p.model != options_.model_name) {
    return Answer(ex,
                  MakeApiError(404,
                               "the model '" + p.model + "' does not exist; this server serves '" +
                                   options_.model_name + "'",
                               "invalid_request_error", "model", "model_not_found"));
  }
  ServeRequest sr;
  std::string text;
  bool special = true;
  if (chat) {
    if (!chat_)
      return Answer(ex,
                    MakeApiError(400, "this model has no chat template", "invalid_request_error"));
    auto rendered = RenderChat(*chat_, p.messages, {});
    if (!rendered.ok())
      return Answer(
          ex, MakeApiError(400, rendered.status().message(), "invalid_request_error", "messages"));
    text = *rendered;
    special = false;  // the template carries BOS
  } else if (p.prompt_text) {
    text = *p.prompt_text;
  }
  if (chat || p.prompt_text) {
    auto ids = tokenizer_->Encode(text, special);
    if (!ids.ok())
      return Answer(ex, MakeApiError(400, ids.status().message(), "invalid_request_error",
                                     chat ? "messages" : "prompt"));
    sr.gen.prompt = std::move(*ids);
  } else {
    sr.gen.prompt = p.prompt_ids;
  }
  const int64_t prompt_len = static_cast<int64_t>(sr.gen.prompt.size());
  if (prompt_len == 0)
    return Answer(ex, MakeApiError(400, "the prompt encodes to no tokens", "invalid_request_error",
                                   "prompt"));
  const int64_t room = options_.max_seq_len - prompt_len;
  sr.gen.max_new_tokens =
      p.max_tokens ? *p.max_tokens : (chat ? room : std::min(options_.default_max_tokens, room));
  if (room < 1 || sr.gen.max_new_tokens > room) {
    return Answer(
        ex, MakeApiError(400,
                         "this model's maximum context length is " +
                             std::to_string(options_.max_seq_len) + " tokens; the prompt has " +
                             std::to_string(prompt_len) + " and max_tokens is " +
                             std::to_string(sr.gen.max_new_tokens),
                         "invalid_request_error", p.max_tokens ? "max_tokens" : "prompt",
                         "context_length_exceeded"));
  }
  sr.gen.sampling = p.sampling;
  sr.gen.ignore_eos = p.ignore_eos;
  sr.stop = p.stop;
  auto events = std::make_shared<EventQueue>();
  auto id = engine_->Submit(std::move(sr), [events](const ServeEvent& e) { events->Push(e); });
  if (!id.ok()) {
    ApiError e = FromStatus(id.status());
    if (e.status == 400) e.param = "prompt";
    std::map<std::string, std::string> headers;
    if (e.status == 429) headers["Retry-After"] = "1";
    return Answer(ex, e, headers);
  }
  const std::string rid = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(*id);
  ScopedRequestId log_id(rid);  // log lines of this request carry its id
  const auto deadline = std::chrono::steady_clock::now() + options_.request_timeout;
  bool streaming = false;
  if (p.stream) {
    if (!ex.StartStream("text/event-stream").ok()) {
      engine_->Cancel(*id);
      return 200;
    }
    streaming = true;
    if (chat && !ex.WriteChunk(StreamChunk(true, rid, created_, p.model, "", "", true)).ok()) {
      engine_->Cancel(*id);
      return 200;
    }
  }
  std::string out;
  while (true) {
    ServeEvent ev;
    if (!events->Pop(kPollSlice, &ev)) {
      if (ex.PeerClosed()) {
        LOG_INFO("http", "client disconnected, cancelling");
        engine_->Cancel(*id);
        return 499;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        engine_->Cancel(*id);
        ApiError e = MakeApiError(500,
                                  "the request took longer than " +
                                      std::to_string(options_.request_timeout.count()) + " s",
                                  "server_error");
        if (streaming) {
          (void)ex.WriteChunk(StreamError(e));
          (void)ex.WriteChunk(kStreamDone);
          (void)ex.EndStream();
          return 200;
        }
        return Answer(ex, e);
      }
      continue;
    }
    if (!ev.finished) {
      if (!streaming) {
        out += ev.text;
      } else if (!ev.text.empty() &&
                 !ex.WriteChunk(StreamChunk(chat, rid, created_, p.model, ev.text, "", false))
                      .ok()) {
        LOG_INFO("http", "client gone mid-stream, cancelling");
        engine_->Cancel(*id);
        return 499;
      }
      continue;
    }
    if (ev.finish_reason == "error" || ev.finish_reason == "abort") {
      ApiError e =
          ev.finish_reason == "abort"
              ? MakeApiError(503, "the request was aborted (server shutting down)", "server_error")
              : FromStatus(ev.error);
      if (streaming) {
        (void)ex.WriteChunk(StreamError(e));
        (void)ex.WriteChunk(kStreamDone);
        (void)ex.EndStream();
        return 200;
      }
      return Answer(ex, e);
    }
    const Usage usage{ev.prompt_tokens, ev.completion_tokens};
    if (!streaming) {
      (void)ex.Respond(200, kJson,
                       CompletionBody(chat, rid, created_, p.model, out, ev.finish_reason, usage));
      return 200;
    }
    Status s =
        ex.WriteChunk(StreamChunk(chat, rid, created_, p.model, "", ev.finish_reason, false));
    if (s.ok() && p.include_usage)
      s = ex.WriteChunk(UsageChunk(chat, rid, created_, p.model, usage));
    if (s.ok()) s = ex.WriteChunk(kStreamDone);
    if (s.ok()) (void)ex.EndStream();
    return 200;
  }
}

}  // namespace switchyard
