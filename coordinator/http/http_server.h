// HttpServer: a small HTTP/1.1 server on Boost.Beast, one thread per connection. Every read and
// write has a deadline (a stalled, silent or trickling client is dropped), request bodies are
// size-limited (413), the header block to 64 KiB (431), unparsed buffered bytes to 1 MiB;
// malformed framing gets 400 and a closed connection; the number of connections is capped (503
// beyond max_connections, closed at once beyond twice that). An exception thrown by the handler
// becomes a 500 on that connection. "Expect: 100-continue" gets its interim answer (or the 413)
// before the body is read. Handlers may answer once (Respond) or stream a chunked body
// (StartStream / WriteChunk / EndStream) for Server-Sent Events, checking PeerClosed() to notice
// a client that went away.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "common/status.h"

namespace switchyard {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;                                    // 0: an ephemeral port (see HttpServer::port())
  int64_t max_body_bytes = 8 << 20;                // larger request bodies get 413
  std::chrono::milliseconds read_timeout{30000};   // per request, headers and body together
  std::chrono::milliseconds write_timeout{30000};  // per response write
  int max_connections = 1024;
};

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // path (query string removed)
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// One request's answer. Used only by the connection thread that called the handler.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  // A complete response. `extra_headers` are added as given. Errors: the write failed/timed out.
  virtual Status Respond(int status, const std::string& content_type, const std::string& body,
                         const std::map<std::string, std::string>& extra_headers = {}) = 0;
  // Starts a chunked 200 response (the connection closes after EndStream).
  virtual Status StartStream(const std::string& content_type) = 0;
  virtual Status WriteChunk(const std::string& data) = 0;
  virtual Status EndStream() = 0;
  // True when the client has closed its side (non-blocking check).
  virtual bool PeerClosed() = 0;
};

// Called on the connection's thread; may block (e.g. while streaming). Must answer through
// `exchange` (a handler that does not answer gets a 500).
using HttpHandler = std::function<void(const HttpRequest& request, HttpExchange& exchange)>;

class HttpServer {
 public:
  // Binds and listens, then accepts on its own thread. Errors: bad host, port in use (named).
  static StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                     HttpHandler handler);
  // Stop()s. When connection threads outlived Stop's bound, the server's internal state is
  // deliberately not freed (they still reference it); the handler's own captures must then
  // outlive them too, so callers stop the server before what the handler uses.
  ~HttpServer();
  // Stops accepting, shuts every connection down and waits (bounded, 10 s) for their threads.
  // Idempotent. Thread-safe.
  void Stop();
  int port() const { return port_; }

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace switchyard
