// Hostile HTTP framing against the HttpServer under the OpenAI API (coordinator/http), over real
// loopback sockets with a fake handler: garbage request lines, oversize headers, bad and lying
// Content-Length, chunked bodies (valid, malformed, oversize, endless chunk extension), truncated
// bodies, slow-loris clients, a connection flood, a throwing handler. Each must end in the right
// 4xx/5xx or a closed connection within a deadline; afterwards the server still serves and its
// connection threads are gone.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/http/http_server.h"

namespace switchyard {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kReadTimeout{1000};

// Threads of this process (Linux /proc).
int ThreadCount() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

// A blocking-free client socket: every send and receive has a deadline.
class Client {
 public:
  explicit Client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    (void)::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    pollfd p{fd_, POLLOUT, 0};
    connected_ = ::poll(&p, 1, 2000) == 1 && !(p.revents & (POLLERR | POLLHUP));
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }

  // Sends all of `data` unless the peer stops reading or closes within `limit`; returns the
  // bytes sent.
  size_t Send(const std::string& data, milliseconds limit = milliseconds(2000)) {
    const auto until = Clock::now() + limit;
    size_t sent = 0;
    while (sent < data.size() && Clock::now() < until) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      if (p.revents & (POLLERR | POLLHUP)) break;
      const ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    return sent;
  }
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

  // Reads until the server closes (or resets) the connection or `limit` passes. `closed` tells
  // which; `stop_after` ends the read early once the text holds that many responses.
  std::string Receive(milliseconds limit, bool* closed, int stop_after = 0) {
    const auto until = Clock::now() + limit;
    std::string out;
    *closed = false;
    while (Clock::now() < until) {
      if (stop_after > 0 && Responses(out) >= stop_after) break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) != 1) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        *closed = true;
        break;
      }
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }

  // The number of complete status lines seen.
  static int Responses(const std::string& text) {
    int n = 0;
    for (size_t at = text.find("HTTP/1.1 "); at != std::string::npos;
         at = text.find("HTTP/1.1 ", at + 1)) {
      ++n;
    }
    return n;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// The status code of the first response in `text`, 0 when there is none.
int FirstStatus(const std::string& text) {
  if (text.rfind("HTTP/1.1 ", 0) != 0 || text.size() < 12) return 0;
  return std::stoi(text.substr(9, 3));
}

class HttpFramingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    baseline_threads_ = ThreadCount();
    HttpServerOptions options;
    options.read_timeout = kReadTimeout;
    options.write_timeout = milliseconds(2000);
    options.max_body_bytes = 1024;
    options.max_connections = 4;
    auto server = HttpServer::Start(options, [this](const HttpRequest& r, HttpExchange& ex) {
      handled_.fetch_add(1);
      if (r.target == "/throw") throw std::runtime_error("handler failure on purpose");
      (void)ex.Respond(200, "text/plain",
                       r.method + " " + r.target + " " + std::to_string(r.body.size()));
    });
    ASSERT_TRUE(server.ok()) << server.status().message();
    server_ = std::move(*server);
  }
  void TearDown() override {
    if (server_) server_->Stop();
  }

  // One connection: sends `request` (then half-closes with `shutdown_write`) and returns what
  // came back before the server closed the connection, which must happen within `limit`.
  std::string Exchange(const std::string& request, milliseconds limit,
                       bool shutdown_write = false) {
    Client c(server_->port());
    EXPECT_TRUE(c.connected());
    c.Send(request);
    if (shutdown_write) c.ShutdownWrite();
    bool closed = false;
    const std::string response = c.Receive(limit, &closed);
    EXPECT_TRUE(closed) << "the server kept the connection open for " << limit.count()
                        << " ms after: " << request.substr(0, 80);
    return response;
  }

  // A well-formed request still gets its answer.
  void ExpectServing() {
    const std::string r =
        Exchange("GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", milliseconds(3000));
    EXPECT_EQ(FirstStatus(r), 200) << r;
    EXPECT_NE(r.find("GET /ok 0"), std::string::npos) << r;
  }

  // Connection threads end: the thread count returns to what it was before the server started
  // plus its accept thread, within a deadline.
  void ExpectNoThreadLeak() {
    const auto until = Clock::now() + milliseconds(5000);
    int now = ThreadCount();
    while (now > baseline_threads_ + 1 && Clock::now() < until) {
      std::this_thread::sleep_for(milliseconds(20));
      now = ThreadCount();
    }
    EXPECT_LE(now, baseline_threads_ + 1) << "connection threads left behind";
  }

  std::unique_ptr<HttpServer> server_;
  std::atomic<int> handled_{0};
  int baseline_threads_ = 0;
};

// Generous bound on "closed promptly": an error answer plus the server's 1 s drain.
constexpr milliseconds kPrompt{3000};
// Bound for requests that never complete: the read deadline plus the same margin.
constexpr milliseconds kAfterTimeout = kReadTimeout + kPrompt;

TEST_F(HttpFramingTest, MalformedRequestLinesAndHeadersGet400) {
  for (const std::string& bad : {
           std::string("\x01\x02\x03 garbage\r\n\r\n", 16),
           std::string("GET\r\n\r\n"),
           std::string("GET / HTTP/9.9\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nno colon here\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"),
           std::string("GET / HTTP/1.1\r\nHost: a\0b\r\n\r\n", 29),
       }) {
    const std::string r = Exchange(bad, kPrompt);
    EXPECT_EQ(FirstStatus(r), 400) << "request: " << bad << "\nresponse: " << r;
  }
  EXPECT_EQ(handled_.load(), 0);
  ExpectServing();
  ExpectNoThreadLeak();
}

TEST_F(HttpFramingTest, OversizeHeadersGet431) {
  const std::string huge =
      "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\n\r\n";
  EXPECT_EQ(FirstStatus(Exchange(huge, kPrompt)), 431);
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 8000; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  EXPECT_EQ(FirstStatus(Exchange(many + "\r\n", kPrompt)), 431);
  ExpectServing();
  ExpectNoThreadLeak();
}

TEST_F(HttpFramingTest, ContentLengthThatIsWrongOrLies) {
  EXPECT_EQ(FirstStatus(Exchange("POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", kPrompt)), 400);
  EXPECT_EQ(FirstStatus(Exchange("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", kPrompt)), 400);
  EXPECT_EQ(FirstStatus(Exchange(
                "POST / HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc", kPrompt)),
            400);
  EXPECT_EQ(FirstStatus(Exchange("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n"
                                 "\r\n",
                                 kPrompt)),
            400);
  // Over the body limit (1024 here): 413 before the body is read.
  EXPECT_EQ(
      FirstStatus(Exchange(
          "POST / HTTP/1.1\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'b'), kPrompt)),
      413);
  // More promised than sent, client silent: closed without an answer at the read deadline.
  const auto t0 = Clock::now();
  EXPECT_EQ(Exchange("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort", kAfterTimeout), "");
  EXPECT_GE(Clock::now() - t0, kReadTimeout - milliseconds(50));
  // More promised than sent, then the client half-closes: 400 (truncated body) at once.
  EXPECT_EQ(FirstStatus(Exchange("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort", kPrompt,
                                 /*shutdown_write=*/true)),
            400);
  // Less promised than sent: the rest is read as the next request, which is garbage.
  const std::string r =
      Exchange("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhello world\r\n\r\n", kPrompt);
  EXPECT_EQ(FirstStatus(r), 200) << r;
  EXPECT_NE(r.find("POST / 2"), std::string::npos) << r;
  EXPECT_NE(r.find("HTTP/1.1 400"), std::string::npos) << r;
  ExpectServing();
  ExpectNoThreadLeak();
}

TEST_F(HttpFramingTest, ChunkedBodies) {
  std::string r = Exchange(
      "POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
      "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
      kPrompt);
  EXPECT_EQ(FirstStatus(r), 200) << r;
  EXPECT_NE(r.find("POST /c 11"), std::string::npos) << r;
  EXPECT_EQ(FirstStatus(Exchange(
                "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                kPrompt)),
            400);
  EXPECT_EQ(FirstStatus(Exchange("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 "ffffffffffffffffffff\r\nx\r\n",
                                 kPrompt)),
            400);
  // Chunks adding up past the body limit.
  std::string over = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i) over += "190\r\n" + std::string(400, 'c') + "\r\n";
  EXPECT_EQ(FirstStatus(Exchange(over + "0\r\n\r\n", kPrompt)), 413);
  // Both framings at once (request smuggling): refused.
  EXPECT_EQ(FirstStatus(Exchange("POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: "
                                 "chunked\r\n\r\n0\r\n\r\n",
                                 kPrompt)),
            400);
  // An endless chunk extension must not grow the server's buffer without bound: the connection
  // ends (400 or closed) while the client is still sending.
  {
    Client c(server_->port());
    ASSERT_TRUE(c.connected());
    c.Send("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=");
    const size_t sent = c.Send(std::string(8 << 20, 'e'), milliseconds(4000));
    bool closed = false;
    const std::string resp = c.Receive(kPrompt, &closed);
    EXPECT_TRUE(closed || sent < (8u << 20)) << "an 8 MiB chunk extension was read in full";
    if (!resp.empty()) {
      EXPECT_EQ(FirstStatus(resp), 400) << resp;
    }
  }
  ExpectServing();
  ExpectNoThreadLeak();
}

TEST_F(HttpFramingTest, SlowLorisIsCutAtTheReadDeadline) {
  // Stops mid-header.
  const auto t0 = Clock::now();
  std::string r = Exchange("GET / HTTP/1.1\r\nHost: x\r\nX-Partial: ", kAfterTimeout);
  EXPECT_EQ(r, "");
  EXPECT_GE(Clock::now() - t0, kReadTimeout - milliseconds(50));
  // Keeps trickling one byte every 100 ms: the deadline covers the whole request, not each read.
  {
    Client c(server_->port());
    ASSERT_TRUE(c.connected());
    const auto start = Clock::now();
    const std::string header = "GET / HTTP/1.1\r\nX-Slow: " + std::string(100, 's');
    bool cut = false;
    for (char ch : header) {
      if (c.Send(std::string(1, ch), milliseconds(200)) != 1) {
        cut = true;
        break;
      }
      bool closed = false;
      r = c.Receive(milliseconds(100), &closed);
      if (closed || !r.empty()) {
        cut = true;
        break;
      }
      if (Clock::now() - start > kAfterTimeout) break;
    }
    EXPECT_TRUE(cut) << "a trickling client was still connected after " << kAfterTimeout.count()
                     << " ms";
  }
  // Connects and says nothing: closed quietly at the deadline.
  r = Exchange("", kAfterTimeout);
  EXPECT_TRUE(r.empty()) << r;
  ExpectServing();
  ExpectNoThreadLeak();
}

TEST_F(HttpFramingTest, PipelinedKeepAliveRequestsAreAllAnswered) {
  Client c(server_->port());
  ASSERT_TRUE(c.connected());
  c.Send(
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyz"
      "GET /c HTTP/1.1\r\nConnection: close\r\n\r\n");
  bool closed = false;
  const std::string r = c.Receive(kPrompt, &closed);
  EXPECT_TRUE(closed);
  EXPECT_EQ(Client::Responses(r), 3) << r;
  EXPECT_NE(r.find("GET /a 0"), std::string::npos);
  EXPECT_NE(r.find("POST /b 3"), std::string::npos);
  EXPECT_NE(r.find("GET /c 0"), std::string::npos);
}

// curl sends "Expect: 100-continue" for bodies over 1 KiB and waits up to 1 s for the interim
// answer before sending the body; an oversize body is refused before it is sent.
TEST_F(HttpFramingTest, ExpectContinueIsAnsweredBeforeTheBody) {
  Client c(server_->port());
  ASSERT_TRUE(c.connected());
  c.Send("POST /e HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  bool closed = false;
  std::string r = c.Receive(milliseconds(500), &closed, /*stop_after=*/1);
  EXPECT_EQ(r, "HTTP/1.1 100 Continue\r\n\r\n");
  c.Send("body");
  r = c.Receive(kPrompt, &closed, /*stop_after=*/1);
  EXPECT_EQ(FirstStatus(r), 200) << r;
  EXPECT_NE(r.find("POST /e 4"), std::string::npos) << r;
  EXPECT_EQ(FirstStatus(Exchange("POST / HTTP/1.1\r\nContent-Length: 5000\r\nExpect: "
                                 "100-continue\r\n\r\n",
                                 kPrompt)),
            413);
}

TEST_F(HttpFramingTest, HandlerExceptionIs500AndTheServerLives) {
  EXPECT_EQ(FirstStatus(Exchange("GET /throw HTTP/1.1\r\nHost: x\r\n\r\n", kPrompt)), 500);
  ExpectServing();
  ExpectNoThreadLeak();
}

TEST_F(HttpFramingTest, ConnectionFloodIsBounded) {
  // max_connections 4: up to 8 get a thread (the 5th..8th a 503 when they send), more are closed
  // at once. Silent clients hold theirs until the read deadline.
  std::vector<std::unique_ptr<Client>> flood;
  for (int i = 0; i < 24; ++i) {
    flood.push_back(std::make_unique<Client>(server_->port()));
    ASSERT_TRUE(flood.back()->connected());
  }
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_LE(ThreadCount(), baseline_threads_ + 1 + 8) << "one thread per flooding connection";
  // The 16 beyond the hard cap are closed by the accept loop itself (well before the 1 s read
  // deadline of the 503 path; 3 s allows for a loaded machine).
  std::vector<bool> closed(flood.size(), false);
  int closed_count = 0;
  for (const auto until = Clock::now() + milliseconds(3000);
       closed_count < 24 - 8 && Clock::now() < until;) {
    for (size_t i = 0; i < flood.size(); ++i) {
      bool now_closed = false;
      if (!closed[i]) (void)flood[i]->Receive(milliseconds(1), &now_closed);
      if (now_closed) {
        closed[i] = true;
        ++closed_count;
      }
    }
  }
  EXPECT_GE(closed_count, 24 - 8);
  flood.clear();
  ExpectNoThreadLeak();
  ExpectServing();
}

}  // namespace
}  // namespace switchyard
