#include "coordinator/control/tcp_channel.h"

#include <poll.h>

#include <boost/asio.hpp>
#include <thread>

namespace switchyard {
namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// Waits until `fd` is readable (POLLIN) or writable (POLLOUT) or the deadline passes. Returns
// false on timeout. EINTR is retried.
bool PollFd(int fd, short events, Deadline deadline) {
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline.Remaining()).count();
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return true;  // let the read/write report the error
  }
}

std::string Describe(const tcp::endpoint& ep) {
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

class TcpChannel : public ControlChannel {
 public:
  TcpChannel(std::unique_ptr<asio::io_context> io, tcp::socket socket, std::string peer)
      : io_(std::move(io)), socket_(std::move(socket)), peer_(std::move(peer)) {
    boost::system::error_code ec;
    socket_.non_blocking(true, ec);
    socket_.set_option(tcp::no_delay(true), ec);
  }
  ~TcpChannel() override { Close(); }

  Status Send(const std::string& message, Deadline deadline) override {
    if (message.size() > kMaxMessageBytes) {
      return InvalidArgumentError("control message of " + std::to_string(message.size()) +
                                  " bytes to " + peer_ + " exceeds the limit");
    }
    std::lock_guard<std::mutex> lock(send_mu_);
    std::string frame(4, '\0');
    const uint32_t n = static_cast<uint32_t>(message.size());
    for (int i = 0; i < 4; ++i) frame[i] = static_cast<char>((n >> (24 - 8 * i)) & 0xff);
    frame += message;
    size_t sent = 0;
    while (sent < frame.size()) {
      if (closed_.load()) return UnavailableError("control channel to " + peer_ + " is closed");
      boost::system::error_code ec;
      sent += socket_.write_some(asio::buffer(frame.data() + sent, frame.size() - sent), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        if (!PollFd(socket_.native_handle(), POLLOUT, deadline)) {
          return DeadlineExceededError("sending a control message to " + peer_ +
                                       ": deadline exceeded (peer not reading)");
        }
      } else if (ec) {
        return UnavailableError("sending a control message to " + peer_ + ": " + ec.message());
      }
    }
    return OkStatus();
  }

  StatusOr<std::string> Receive(Deadline deadline) override {
    while (true) {
      if (buffer_.size() >= 4) {
        uint32_t n = 0;
        for (int i = 0; i < 4; ++i) n = (n << 8) | static_cast<uint8_t>(buffer_[i]);
        if (n > kMaxMessageBytes) {
          return DataLossError("control frame from " + peer_ + " announces " + std::to_string(n) +
                               " bytes, above the limit");
        }
        if (buffer_.size() >= 4 + size_t{n}) {
          std::string m = buffer_.substr(4, n);
          buffer_.erase(0, 4 + size_t{n});
          return m;
        }
      }
      if (closed_.load()) return UnavailableError("control channel to " + peer_ + " is closed");
      char chunk[65536];
      boost::system::error_code ec;
      const size_t got = socket_.read_some(asio::buffer(chunk), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        if (!PollFd(socket_.native_handle(), POLLIN, deadline)) {
          return DeadlineExceededError("no control message from " + peer_ + " before the deadline");
        }
        continue;
      }
      if (ec == asio::error::eof) {
        return UnavailableError("connection closed by " + peer_ +
                                (buffer_.empty() ? "" : " in the middle of a message"));
      }
      if (ec) return UnavailableError("connection to " + peer_ + " lost: " + ec.message());
      buffer_.append(chunk, got);
    }
  }

  void Close() override {
    if (closed_.exchange(true)) return;
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_both, ec);
  }

  std::string peer() const override { return peer_; }

 private:
  std::unique_ptr<asio::io_context> io_;
  tcp::socket socket_;
  std::string peer_;
  std::mutex send_mu_;
  std::atomic<bool> closed_{false};
  std::string buffer_;  // received bytes not yet returned
};

}  // namespace

struct TcpListener::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
};

TcpListener::TcpListener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TcpListener::~TcpListener() = default;

StatusOr<std::unique_ptr<TcpListener>> TcpListener::Listen(const std::string& bind_address,
                                                           int port) {
  if (port < 0 || port > 65535) {
    return InvalidArgumentError("control port " + std::to_string(port) + " is not in [0, 65535]");
  }
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(bind_address, ec);
  if (ec) {
    return InvalidArgumentError("control bind address '" + bind_address +
                                "' is not an IP address: " + ec.message());
  }
  auto impl = std::make_unique<Impl>();
  const tcp::endpoint ep(address, static_cast<uint16_t>(port));
  const std::string where = "listening on " + bind_address + ":" + std::to_string(port);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) impl->acceptor.non_blocking(true, ec);
  if (ec) return UnavailableError(where + ": " + ec.message());
  return std::unique_ptr<TcpListener>(new TcpListener(std::move(impl)));
}

int TcpListener::port() const { return impl_->acceptor.local_endpoint().port(); }

StatusOr<std::unique_ptr<ControlChannel>> TcpListener::Accept(Deadline deadline) {
  while (true) {
    auto io = std::make_unique<asio::io_context>();
    tcp::socket socket(*io);
    boost::system::error_code ec;
    impl_->acceptor.accept(socket, ec);
    if (!ec) {
      const std::string peer = Describe(socket.remote_endpoint(ec));
      return std::unique_ptr<ControlChannel>(
          new TcpChannel(std::move(io), std::move(socket), peer));
    }
    if (ec != asio::error::would_block && ec != asio::error::try_again) {
      return UnavailableError("accepting a control connection: " + ec.message());
    }
    if (!PollFd(impl_->acceptor.native_handle(), POLLIN, deadline)) {
      return DeadlineExceededError("no worker connected to the control port " +
                                   std::to_string(port()) + " before the deadline");
    }
  }
}

StatusOr<std::unique_ptr<ControlChannel>> ConnectTcp(const std::string& host, int port,
                                                     Deadline deadline) {
  const std::string where = "connecting to the coordinator at " + host + ":" + std::to_string(port);
  auto io = std::make_unique<asio::io_context>();
  tcp::resolver resolver(*io);
  boost::system::error_code ec;
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) {
    return InvalidArgumentError(where + ": cannot resolve '" + host + "': " + ec.message());
  }
  const tcp::endpoint ep = *results.begin();
  std::string last = "no attempt";
  while (true) {
    tcp::socket socket(*io);
    socket.open(ep.protocol(), ec);
    if (!ec) socket.non_blocking(true, ec);
    if (!ec) socket.connect(ep, ec);
    if (ec == asio::error::in_progress || ec == asio::error::would_block) {
      if (PollFd(socket.native_handle(), POLLOUT, deadline)) {
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(socket.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len);
        ec = boost::system::error_code(err, boost::system::system_category());
      } else {
        ec = asio::error::timed_out;
      }
    }
    if (!ec) {
      return std::unique_ptr<ControlChannel>(
          new TcpChannel(std::move(io), std::move(socket), Describe(ep) + " (coordinator)"));
    }
    last = ec.message();
    if (deadline.Expired())
      return DeadlineExceededError(where + ": deadline exceeded (" + last + ")");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Status ParseEndpoint(const std::string& text, const std::string& what, std::string* host,
                     int* port) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    return InvalidArgumentError(what + " '" + text + "' is not HOST:PORT");
  }
  char* end = nullptr;
  const long p = std::strtol(text.c_str() + colon + 1, &end, 10);
  if (*end != '\0' || p <= 0 || p > 65535) {
    return InvalidArgumentError(what + " '" + text + "': port must be in [1, 65535]");
  }
  *host = text.substr(0, colon);
  *port = static_cast<int>(p);
  return OkStatus();
}

}  // namespace switchyard
