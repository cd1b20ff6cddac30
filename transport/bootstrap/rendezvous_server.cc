// RendezvousServer (rendezvous.h): the server side of the TCP allgather.

// clang-format off
#include <utility>  // first: Boost.Asio 1.74 uses std::exchange without including it
// clang-format on

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include "common/logging.h"
#include "transport/bootstrap/rendezvous.h"
#include "transport/bootstrap/rendezvous_wire.h"

namespace switchyard {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;
using namespace rendezvous_wire;

std::string Endpoint(const tcp::socket& socket) {
  error_code ec;
  auto ep = socket.remote_endpoint(ec);
  return ec ? std::string("unknown peer")
            : ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace

// Server: one io_context on one thread; callbacks only, so no locking inside the round.
class RendezvousServer::Impl {
 public:
  Impl(int world_size, Deadline deadline)
      : acceptor_(io_), world_size_(world_size), deadline_(deadline), joined_(world_size) {}

  Status Listen(const std::string& host, int port) {
    error_code ec;
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(host, std::to_string(port), tcp::resolver::passive, ec);
    if (ec || results.empty()) {
      return InvalidArgumentError("rendezvous server: cannot resolve bind address '" + host +
                                  "': " + ec.message());
    }
    tcp::endpoint ep = results.begin()->endpoint();
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return UnavailableError("rendezvous server: cannot listen on " + host + ":" +
                              std::to_string(port) + ": " + ec.message());
    }
    port_ = acceptor_.local_endpoint().port();
    return OkStatus();
  }
  int port() const { return port_; }

  void Run() {
    Accept();
    io_.run_until(deadline_.when());
    if (!finished_ && !stopping_) {
      std::vector<int> missing;
      for (int r = 0; r < world_size_; ++r) {
        if (!joined_[r]) missing.push_back(r);
      }
      Fail(DeadlineExceededError("rendezvous on port " + std::to_string(port_) + ": rank(s) " +
                                 transport_internal::FormatRanks(missing) +
                                 " did not join before the deadline (" +
                                 std::to_string(world_size_ - missing.size()) + " of " +
                                 std::to_string(world_size_) + " joined)"));
      io_.restart();
      io_.run_for(kVerdictGrace / 2);
    }
    CloseAll();
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    cv_.notify_all();
  }

  void Stop() {
    stopping_ = true;
    io_.stop();
  }

  Status Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return done_; });
    return result_;
  }

 private:
  struct Conn {
    explicit Conn(tcp::socket s) : socket(std::move(s)) {}
    tcp::socket socket;
    std::array<unsigned char, kHelloBytes> hello{};
    std::string blob;
    std::string reply;
  };
  using ConnPtr = std::shared_ptr<Conn>;

  void Accept() {
    acceptor_.async_accept([this](error_code ec, tcp::socket socket) {
      if (ec) return;  // acceptor closed
      auto conn = std::make_shared<Conn>(std::move(socket));
      all_.push_back(conn);
      ReadHello(conn);
      Accept();
    });
  }

  void ReadHello(const ConnPtr& conn) {
    asio::async_read(conn->socket, asio::buffer(conn->hello), [this, conn](error_code ec, size_t) {
      if (ec) return;  // the peer went away before saying who it is: it does not count
      const unsigned char* h = conn->hello.data();
      const uint32_t magic = GetLe(h, 4), version = GetLe(h + 4, 4);
      const int64_t rank = GetLe(h + 8, 4), world = GetLe(h + 12, 4);
      const uint64_t length = GetLe(h + 16, 8);
      const std::string who = "rendezvous: connection from " + Endpoint(conn->socket);
      std::string error;
      if (magic != kMagic || version != kVersion) {
        error = who + ": not a Switchyard rendezvous hello (magic/version)";
      } else if (world != world_size_) {
        error = who + " (rank " + std::to_string(rank) + "): world size " + std::to_string(world) +
                ", the server expects " + std::to_string(world_size_);
      } else if (rank < 0 || rank >= world_size_) {
        error = who + ": rank " + std::to_string(rank) + " outside [0, " +
                std::to_string(world_size_) + ")";
      } else if (joined_[rank]) {
        error = who + ": rank " + std::to_string(rank) + " already joined";
      } else if (length > kMaxBlobBytes) {
        error = who + " (rank " + std::to_string(rank) + "): blob of " + std::to_string(length) +
                " bytes exceeds the " + std::to_string(kMaxBlobBytes) + "-byte limit";
      }
      if (!error.empty()) {
        LOG_WARN("bootstrap", "%s", error.c_str());
        Write(conn, Reply(StatusCode::kInvalidArgument, error), nullptr);
        return;
      }
      conn->blob.resize(length);
      asio::async_read(conn->socket, asio::buffer(conn->blob),
                       [this, conn, rank](error_code ec2, size_t) {
                         if (ec2 || joined_[rank] || finished_) return;
                         joined_[rank] = conn;
                         if (++num_joined_ == world_size_) Succeed();
                       });
    });
  }

  void Write(const ConnPtr& conn, std::string reply, void (Impl::*on_done)()) {
    conn->reply = std::move(reply);
    asio::async_write(conn->socket, asio::buffer(conn->reply),
                      [this, conn, on_done](error_code, size_t) {
                        error_code ignored;
                        conn->socket.shutdown(tcp::socket::shutdown_send, ignored);
                        if (on_done) (this->*on_done)();
                      });
  }

  void Succeed() {
    std::string body;
    for (const ConnPtr& conn : joined_) {
      PutU64(body, conn->blob.size());
      body += conn->blob;
    }
    const std::string reply = Reply(StatusCode::kOk, body);
    error_code ignored;
    acceptor_.close(ignored);
    for (const ConnPtr& conn : joined_) Write(conn, reply, &Impl::OneWritten);
  }

  void OneWritten() {
    if (++num_written_ < world_size_) return;
    finished_ = true;
    io_.stop();
  }

  void Fail(Status status) {
    error_code ignored;
    acceptor_.close(ignored);
    {
      std::lock_guard<std::mutex> lock(mu_);
      result_ = status;
    }
    for (const ConnPtr& conn : joined_) {
      if (conn) Write(conn, Reply(status.code(), status.message()), nullptr);
    }
  }

  void CloseAll() {
    error_code ignored;
    acceptor_.close(ignored);
    for (const ConnPtr& conn : all_) conn->socket.close(ignored);
    all_.clear();
    joined_.assign(world_size_, nullptr);
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  const int world_size_;
  const Deadline deadline_;
  int port_ = 0;
  std::vector<ConnPtr> joined_;  // by rank
  std::vector<ConnPtr> all_;     // every accepted connection (closed at the end)
  int num_joined_ = 0;
  int num_written_ = 0;
  bool finished_ = false;
  std::atomic<bool> stopping_{false};

  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  Status result_;
};

RendezvousServer::RendezvousServer(std::unique_ptr<Impl> impl, int port)
    : impl_(std::move(impl)), port_(port) {}

StatusOr<std::unique_ptr<RendezvousServer>> RendezvousServer::Start(const std::string& bind_host,
                                                                    int port, int world_size,
                                                                    Deadline deadline) {
  if (world_size < 1) {
    return InvalidArgumentError("rendezvous server: world size " + std::to_string(world_size) +
                                " < 1");
  }
  auto impl = std::make_unique<Impl>(world_size, deadline);
  RETURN_IF_ERROR(impl->Listen(bind_host, port));
  const int bound = impl->port();
  auto server = std::unique_ptr<RendezvousServer>(new RendezvousServer(std::move(impl), bound));
  server->thread_ = std::thread([raw = server->impl_.get()] { raw->Run(); });
  return server;
}

RendezvousServer::~RendezvousServer() {
  impl_->Stop();
  if (thread_.joinable()) thread_.join();
}

Status RendezvousServer::Wait() { return impl_->Wait(); }

}  // namespace switchyard
