// ParseHostPort and the client side of the TCP allgather (rendezvous.h).
#include "transport/bootstrap/rendezvous.h"  // first: brings <utility>, which Boost.Asio 1.74 needs

#include <array>
#include <boost/asio.hpp>
#include <charconv>
#include <thread>
#include <utility>

#include "transport/bootstrap/rendezvous_wire.h"

namespace switchyard {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using namespace rendezvous_wire;

}  // namespace

StatusOr<HostPort> ParseHostPort(std::string_view text, std::string_view what) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size()) {
    return InvalidArgumentError(std::string(what) + ": '" + std::string(text) +
                                "' is not host:port");
  }
  HostPort out;
  out.host = std::string(text.substr(0, colon));
  if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);  // [::1]:port
  }
  std::string_view port = text.substr(colon + 1);
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), out.port);
  if (ec != std::errc() || end != port.data() + port.size() || out.port < 0 || out.port > 65535) {
    return InvalidArgumentError(std::string(what) + ": port '" + std::string(port) + "' of '" +
                                std::string(text) + "' is not a number in [0, 65535]");
  }
  return out;
}

// Client: each step is one async operation run on a private io_context until done or a time limit.

namespace {

class Client {
 public:
  // Runs `start(done_flag, ec)` and the io_context until the operation completes or `until`;
  // on timeout closes the socket and returns false.
  template <typename Start>
  bool Step(TransportClock::time_point until, Start start, error_code* ec) {
    bool done = false;
    start([&done, ec](error_code e, auto&&...) {
      *ec = e;
      done = true;
    });
    io_.restart();
    io_.run_until(until);
    if (done) return true;
    error_code ignored;
    socket_.close(ignored);
    io_.restart();
    io_.run_for(std::chrono::milliseconds(100));  // drain the cancelled handler
    return false;
  }

  asio::io_context io_;
  tcp::socket socket_{io_};
};

std::string Where(const std::string& host, int port, int rank) {
  return "rendezvous at " + host + ":" + std::to_string(port) + " (rank " + std::to_string(rank) +
         ")";
}

}  // namespace

StatusOr<std::vector<std::string>> RendezvousAllGather(const std::string& host, int port, int rank,
                                                       int world_size, std::string_view blob,
                                                       Deadline deadline) {
  const std::string where = Where(host, port, rank);
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return InvalidArgumentError(where + ": rank " + std::to_string(rank) + " outside [0, " +
                                std::to_string(world_size) + ")");
  }
  if (blob.size() > kMaxBlobBytes) {
    return InvalidArgumentError(where + ": blob of " + std::to_string(blob.size()) +
                                " bytes exceeds the limit");
  }
  const auto started = TransportClock::now();
  auto waited_ms = [&] {
    return std::to_string(
        std::chrono::duration_cast<std::chrono::milliseconds>(TransportClock::now() - started)
            .count());
  };
  Client client;
  error_code ec;
  tcp::resolver resolver(client.io_);
  tcp::resolver::results_type endpoints;
  bool resolved = client.Step(
      deadline.when(),
      [&](auto handler) {
        resolver.async_resolve(host, std::to_string(port),
                               [&, handler](error_code e, tcp::resolver::results_type r) mutable {
                                 endpoints = std::move(r);
                                 handler(e);
                               });
      },
      &ec);
  if (!resolved || ec) {
    return UnavailableError(
        where + ": cannot resolve host: " + (resolved ? ec.message() : std::string("timed out")));
  }
  // Connect, retrying while the server is not up yet.
  std::string last_error = "no attempt";
  while (true) {
    error_code ignored;
    client.socket_.close(ignored);
    const auto attempt_until =
        std::min(deadline.when(), TransportClock::now() + std::chrono::seconds(2));
    bool finished = client.Step(
        attempt_until,
        [&](auto handler) {
          asio::async_connect(
              client.socket_, endpoints,
              [handler](error_code e, const tcp::endpoint&) mutable { handler(e); });
        },
        &ec);
    if (finished && !ec) break;
    last_error = finished ? ec.message() : "connect timed out";
    if (deadline.Expired()) {
      return DeadlineExceededError(where + ": server not reachable after " + waited_ms() + " ms (" +
                                   last_error + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::string hello;
  PutU32(hello, kMagic);
  PutU32(hello, kVersion);
  PutU32(hello, static_cast<uint32_t>(rank));
  PutU32(hello, static_cast<uint32_t>(world_size));
  PutU64(hello, blob.size());
  hello.append(blob);
  if (!client.Step(
          deadline.when(),
          [&](auto handler) { asio::async_write(client.socket_, asio::buffer(hello), handler); },
          &ec) ||
      ec) {
    return UnavailableError(
        where + ": sending the hello failed: " + (ec ? ec.message() : std::string("timed out")));
  }
  // The verdict: wait past the deadline so the server can say who is missing.
  const auto verdict_until = deadline.when() + kVerdictGrace;
  std::array<unsigned char, kReplyHeadBytes> head{};
  if (!client.Step(
          verdict_until,
          [&](auto handler) { asio::async_read(client.socket_, asio::buffer(head), handler); },
          &ec)) {
    return DeadlineExceededError(where + ": no reply from the server after " + waited_ms() + " ms");
  }
  if (ec) {
    return UnavailableError(where +
                            ": connection lost while waiting for the reply: " + ec.message());
  }
  const uint32_t code = GetLe(head.data(), 4);
  const uint64_t length = GetLe(head.data() + 4, 8);
  const uint64_t limit = static_cast<uint64_t>(world_size) * (kMaxBlobBytes + 8);
  if (length > limit) {
    return InvalidArgumentError(where + ": reply of " + std::to_string(length) +
                                " bytes exceeds the limit");
  }
  std::string body(length, '\0');
  if (!client.Step(
          verdict_until,
          [&](auto handler) { asio::async_read(client.socket_, asio::buffer(body), handler); },
          &ec) ||
      ec) {
    return UnavailableError(where + ": reply truncated");
  }
  if (code != static_cast<uint32_t>(StatusCode::kOk)) {
    StatusCode status_code =
        code == static_cast<uint32_t>(StatusCode::kDeadlineExceeded) ? StatusCode::kDeadlineExceeded
        : code == static_cast<uint32_t>(StatusCode::kInvalidArgument) ? StatusCode::kInvalidArgument
                                                                      : StatusCode::kUnavailable;
    return Status(status_code, where + ": server says: " + body);
  }
  std::vector<std::string> blobs;
  size_t pos = 0;
  for (int r = 0; r < world_size; ++r) {
    if (body.size() - pos < 8)
      return InvalidArgumentError(where + ": reply truncated at rank " + std::to_string(r));
    const uint64_t n = GetLe(reinterpret_cast<const unsigned char*>(body.data() + pos), 8);
    pos += 8;
    if (n > body.size() - pos) {
      return InvalidArgumentError(where + ": reply truncated in the blob of rank " +
                                  std::to_string(r));
    }
    blobs.emplace_back(body.substr(pos, n));
    pos += n;
  }
  if (pos != body.size()) return InvalidArgumentError(where + ": trailing bytes in the reply");
  if (blobs[rank] != blob) {
    return InternalError(where + ": the server returned a different blob for this rank");
  }
  return blobs;
}

}  // namespace switchyard