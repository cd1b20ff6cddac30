#include "coordinator/http/http_server.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <system_error>

#include "common/logging.h"

namespace switchyard {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

// Request header block limit (431 beyond it) and the most unparsed bytes a connection buffers
// (an over-long chunk-size line or chunk extension ends the connection instead of growing it).
constexpr uint32_t kHeaderLimit = 64 * 1024;
constexpr size_t kReadBufferLimit = 1 << 20;

std::string ErrorJson(const std::string& message, const char* type) {
  std::string escaped;
  for (char c : message) {
    if (c == '"' || c == '\\') {
      escaped += '\\';
      escaped += c;
    } else if (static_cast<unsigned char>(c) >= 0x20) {
      escaped += c;
    }
  }
  return R"({"error":{"message":")" + escaped + R"(","type":")" + type +
         R"(","param":null,"code":null}})";
}

// One connection, driven synchronously on its own thread by running its own io_context for each
// operation: async operations give tcp_stream's deadlines, run() makes them blocking.
class Connection : public HttpExchange {
 public:
  Connection(net::io_context* ioc, tcp::socket socket, const HttpServerOptions& options)
      : ioc_(ioc), stream_(std::move(socket)), options_(options), buffer_(kReadBufferLimit) {}

  // Reads one request. Returns false when the connection should close (after answering a
  // malformed or oversize request where that is possible). `timeout` bounds the whole request
  // (headers and body): a client that sends slowly (slow loris) is dropped when it runs out,
  // without an answer (tcp_stream closes the socket when its deadline passes).
  bool Read(HttpRequest* out, bool* keep_alive, std::chrono::milliseconds timeout) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(static_cast<uint64_t>(options_.max_body_bytes));
    parser.header_limit(kHeaderLimit);
    const auto until = std::chrono::steady_clock::now() + timeout;
    stream_.expires_at(until);
    beast::error_code ec;
    http::async_read_header(stream_, buffer_, parser, [&](beast::error_code e, size_t) { ec = e; });
    Run();
    // A client that sent "Expect: 100-continue" (curl does for bodies over 1 KiB) waits for this
    // (curl: 1 s) before sending the body; an oversize body was refused above with 413 instead.
    if (!ec && !parser.is_done() &&
        beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      if (!WriteRaw("HTTP/1.1 100 Continue\r\n\r\n").ok()) return false;
      stream_.expires_at(until);  // the request's deadline still holds
    }
    if (!ec && !parser.is_done()) {
      http::async_read(stream_, buffer_, parser, [&](beast::error_code e, size_t) { ec = e; });
      Run();
    }
    if (ec) keep_alive_ = false;  // every error answer below closes the connection
    if (ec == http::error::body_limit) {
      (void)Respond(413, "application/json",
                    ErrorJson("request body larger than " +
                                  std::to_string(options_.max_body_bytes) + " bytes",
                              "invalid_request_error"),
                    {});
      Drain();
      return false;
    }
    if (ec == http::error::header_limit) {
      (void)Respond(
          431, "application/json",
          ErrorJson("request header block larger than " + std::to_string(kHeaderLimit) + " bytes",
                    "invalid_request_error"),
          {});
      Drain();
      return false;
    }
    if (ec) {
      const bool started = parser.got_some() || buffer_.size() > 0;
      const bool quiet = ec == http::error::end_of_stream || ec == beast::error::timeout ||
                         ec == net::error::connection_reset || ec == net::error::eof ||
                         ec == net::error::operation_aborted;
      if (!quiet && started) {
        (void)Respond(
            400, "application/json",
            ErrorJson("malformed HTTP request (" + ec.message() + ")", "invalid_request_error"),
            {});
        Drain();
      }
      return false;
    }
    auto& req = parser.get();
    out->method = std::string(req.method_string());
    std::string target(req.target());
    out->target = target.substr(0, target.find('?'));
    out->headers.clear();
    for (const auto& f : req) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out->headers[name] = std::string(f.value());
    }
    out->body = std::move(req.body());
    *keep_alive = req.keep_alive();
    keep_alive_ = *keep_alive;
    responded_ = false;
    return true;
  }

  Status Respond(int status, const std::string& content_type, const std::string& body,
                 const std::map<std::string, std::string>& extra_headers) override {
    responded_ = true;
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::server, "switchyard");
    res.set(http::field::content_type, content_type);
    for (const auto& [k, v] : extra_headers) res.set(k, v);
    res.keep_alive(keep_alive_);
    res.body() = body;
    res.prepare_payload();
    stream_.expires_after(options_.write_timeout);
    beast::error_code ec;
    http::async_write(stream_, res, [&](beast::error_code e, size_t) { ec = e; });
    Run();
    if (ec) return UnavailableError("writing the HTTP response: " + ec.message());
    return OkStatus();
  }

  Status StartStream(const std::string& content_type) override {
    responded_ = true;
    streamed_ = true;
    return WriteRaw("HTTP/1.1 200 OK\r\nServer: switchyard\r\nContent-Type: " + content_type +
                    "\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: "
                    "close\r\n\r\n");
  }

  Status WriteChunk(const std::string& data) override {
    if (data.empty()) return OkStatus();  // an empty chunk would end the body
    char size[32];
    std::snprintf(size, sizeof(size), "%zx\r\n", data.size());
    return WriteRaw(size + data + "\r\n");
  }

  Status EndStream() override { return WriteRaw("0\r\n\r\n"); }

  bool PeerClosed() override {
    const int fd = stream_.socket().native_handle();
    pollfd p{fd, static_cast<short>(POLLIN | POLLRDHUP), 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char c;
    return ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }

  // After refusing a request that may still be arriving: stop sending and read (and drop) what
  // the client still sends for up to a second, so that it sees the answer instead of a reset.
  void Drain() {
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
    std::vector<char> sink(64 * 1024);
    while (!ec && std::chrono::steady_clock::now() < until) {
      stream_.expires_at(until);
      stream_.async_read_some(net::buffer(sink), [&](beast::error_code e, size_t) { ec = e; });
      Run();
    }
  }

  bool responded() const { return responded_; }
  bool streamed() const { return streamed_; }
  tcp::socket& socket() { return stream_.socket(); }

 private:
  void Run() {
    ioc_->restart();
    ioc_->run();
  }

  Status WriteRaw(std::string data) {
    stream_.expires_after(options_.write_timeout);
    beast::error_code ec;
    net::async_write(stream_, net::buffer(data), [&](beast::error_code e, size_t) { ec = e; });
    Run();
    if (ec) return UnavailableError("writing to the HTTP client: " + ec.message());
    return OkStatus();
  }

  net::io_context* ioc_;
  beast::tcp_stream stream_;
  const HttpServerOptions& options_;
  beast::flat_buffer buffer_;
  bool keep_alive_ = false;
  bool responded_ = false;
  bool streamed_ = false;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  net::io_context accept_ioc;
  tcp::acceptor acceptor{accept_ioc};
  std::thread accept_thread;
  std::mutex mu;
  std::condition_variable done;
  std::set<int> open_fds;  // connections in flight, shut down by Stop
  int active = 0;
  bool stopping = false;
  bool abandoned = false;  // Stop gave up waiting: connection threads may still use this

  // Beyond max_connections a connection still gets a thread, to read its request briefly and
  // answer 503; beyond twice that it is closed at once, so a connection flood cannot create
  // threads without bound.
  int HardConnectionCap() const { return 2 * std::max(options.max_connections, 1); }

  void Accept() {
    auto ioc = std::make_shared<net::io_context>();
    auto socket = std::make_shared<tcp::socket>(*ioc);
    acceptor.async_accept(*socket, [this, ioc, socket](beast::error_code ec) {
      if (ec) {
        if (ec != net::error::operation_aborted) {
          LOG_WARN("http", "accept failed: %s", ec.message().c_str());
          Accept();
        }
        return;
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stopping) return;
        if (active >= HardConnectionCap()) {
          beast::error_code ignored;
          socket->close(ignored);
          Accept();
          return;
        }
        ++active;
        open_fds.insert(socket->native_handle());
      }
      try {
        std::thread([this, ioc, socket] { Serve(ioc.get(), std::move(*socket)); }).detach();
      } catch (const std::system_error& e) {  // out of threads: drop this client, keep serving
        LOG_WARN("http", "cannot start a connection thread: %s", e.what());
        std::lock_guard<std::mutex> lock(mu);
        open_fds.erase(socket->native_handle());
        beast::error_code ignored;
        socket->close(ignored);
        --active;
        done.notify_all();
      }
      Accept();
    });
  }

  void Serve(net::io_context* ioc, tcp::socket socket) {
    const int fd = socket.native_handle();
    bool over_limit;
    {
      std::lock_guard<std::mutex> lock(mu);
      over_limit = active > options.max_connections;
    }
    {
      Connection conn(ioc, std::move(socket), options);
      HttpRequest req;
      bool keep_alive = false;
      if (over_limit) {
        const auto brief =
            std::min<std::chrono::milliseconds>(options.read_timeout, std::chrono::seconds(1));
        if (conn.Read(&req, &keep_alive, brief)) {
          (void)conn.Respond(503, "application/json",
                             ErrorJson("too many connections", "server_error"),
                             {{"Retry-After", "1"}});
        }
      } else {
        while (conn.Read(&req, &keep_alive, options.read_timeout)) {
          // An exception must not escape a connection thread (std::terminate): answer 500 and
          // close this connection only.
          try {
            handler(req, conn);
          } catch (const std::exception& e) {
            LOG_ERROR("http", "handler for %s %s threw: %s", req.method.c_str(), req.target.c_str(),
                      e.what());
            if (!conn.responded()) {
              (void)conn.Respond(500, "application/json",
                                 ErrorJson("internal error", "server_error"), {});
            }
            break;
          }
          if (!conn.responded()) {
            (void)conn.Respond(500, "application/json",
                               ErrorJson("the handler gave no response", "server_error"), {});
          }
          if (conn.streamed() || !keep_alive) break;
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      open_fds.erase(fd);
      beast::error_code ec;
      conn.socket().shutdown(tcp::socket::shutdown_both, ec);
    }
    std::lock_guard<std::mutex> lock(mu);
    --active;
    done.notify_all();
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() {
  Stop();
  std::lock_guard<std::mutex> lock(impl_->mu);
  // Threads Stop gave up on still reference the state: it is left allocated (a bounded leak at
  // shutdown) rather than freed under them.
  if (impl_->abandoned) (void)impl_.release();
}

StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                        HttpHandler handler) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->handler = std::move(handler);
  beast::error_code ec;
  const auto address = net::ip::make_address(options.host, ec);
  if (ec) return InvalidArgumentError("HTTP host '" + options.host + "': " + ec.message());
  const tcp::endpoint endpoint(address, static_cast<unsigned short>(options.port));
  const std::string where = options.host + ":" + std::to_string(options.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return UnavailableError("HTTP server cannot listen on " + where + ": " + ec.message());
  std::unique_ptr<HttpServer> server(new HttpServer(std::move(impl)));
  server->port_ = server->impl_->acceptor.local_endpoint().port();
  Impl* p = server->impl_.get();
  p->Accept();
  p->accept_thread = std::thread([p] { p->accept_ioc.run(); });
  return server;
}

void HttpServer::Stop() {
  Impl* p = impl_.get();
  {
    std::lock_guard<std::mutex> lock(p->mu);
    if (p->stopping) return;
    p->stopping = true;
  }
  net::post(p->accept_ioc, [p] {
    beast::error_code ec;
    p->acceptor.close(ec);
  });
  p->accept_thread.join();
  std::unique_lock<std::mutex> lock(p->mu);
  for (int fd : p->open_fds) ::shutdown(fd, SHUT_RDWR);
  if (!p->done.wait_for(lock, std::chrono::seconds(10), [p] { return p->active == 0; })) {
    LOG_ERROR("http", "%d connection(s) still open after 10 s at shutdown; abandoning them",
              p->active);
    p->abandoned = true;
  }
}

}  // namespace switchyard
