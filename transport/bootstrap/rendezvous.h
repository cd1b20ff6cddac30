// A small TCP rendezvous (Boost.Asio) for ranks without MPI: an allgather of byte strings ("blobs":
// UCX worker addresses, an NCCL unique id). One server (on rank 0, the coordinator, or a test)
// collects one blob from each of `world_size` ranks and returns all of them, in rank order, to
// everyone. Asio appears only in rendezvous.cc.
//
// Wire format (little-endian): hello = magic "SYRV", version, rank, world size (u32 each), blob
// length (u64), blob; reply = code (u32; 0 = OK), then world_size x (u64 length, bytes), or a u64
// length and an error message. Blobs are limited to kMaxBlobBytes; anything else is refused with an
// error naming the connection and the field.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/status.h"
#include "transport/transport.h"

namespace switchyard {

// Largest blob one rank may contribute (UCX worker addresses are a few hundred bytes).
inline constexpr uint64_t kMaxBlobBytes = uint64_t{1} << 20;

// "host:port" -> (host, port). Errors: InvalidArgument naming `what` (e.g. the env variable) when
// the port is missing, not a number, or outside [0, 65535].
struct HostPort {
  std::string host;
  int port = 0;
};
StatusOr<HostPort> ParseHostPort(std::string_view text, std::string_view what);

// Serves one allgather round for `world_size` ranks on a background thread.
class RendezvousServer {
 public:
  // Listens on `bind_host`:`port` (port 0: an ephemeral port, see port()) and serves until every
  // rank has joined and received its reply, or until `deadline`; then ranks that joined get an
  // error reply naming the ranks that did not (DeadlineExceeded on their side). Connections with a
  // bad hello (wrong magic/version/world size, rank out of range or already taken, oversized blob)
  // get an InvalidArgument reply and do not count. Returns once listening (non-blocking otherwise).
  // Errors: InvalidArgument (world_size < 1, bad host), Unavailable (bind/listen failed, with the
  // system's reason). Thread-safe: the object may be queried from any thread.
  static StatusOr<std::unique_ptr<RendezvousServer>> Start(const std::string& bind_host, int port,
                                                           int world_size, Deadline deadline);
  // Stops serving (closes every connection) and joins the thread. Blocking, bounded: a few ms.
  ~RendezvousServer();

  // The port actually bound (the ephemeral one when Start got 0). Constant.
  int port() const { return port_; }

  // Blocks until the round ends (every reply written, or the deadline plus a short grace for the
  // error replies). Returns OK when every rank got the blobs, else the error the ranks were told.
  Status Wait();

  class Impl;

 private:
  RendezvousServer(std::unique_ptr<Impl> impl, int port);
  std::unique_ptr<Impl> impl_;
  int port_;
  std::thread thread_;
};

// Client side: connects to `host`:`port` (retrying until the server is up or `deadline`), sends
// this rank's blob, and returns every rank's blob in rank order. Blocking until the reply or the
// deadline; waits up to 2 s past `deadline` for the server's verdict, which names the ranks that
// did not join. Errors: InvalidArgument (bad rank/world/blob, or refused by the server),
// DeadlineExceeded (server not reachable, or ranks missing: named), Unavailable (connection lost).
// Thread-safe (each call uses its own socket).
StatusOr<std::vector<std::string>> RendezvousAllGather(const std::string& host, int port, int rank,
                                                       int world_size, std::string_view blob,
                                                       Deadline deadline);

}  // namespace switchyard
