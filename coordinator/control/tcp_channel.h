// The control plane over TCP (Boost.Asio): frames of a 4-byte big-endian length + the message.
//
// Sockets are non-blocking underneath and every wait is a poll() bounded by the caller's
// Deadline, so a silent or dead peer is an error, never a hang. A peer that closes (or whose
// process dies: the kernel closes its sockets) makes Receive fail with Unavailable at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "coordinator/control/control_channel.h"

namespace switchyard {

class TcpListener {
 public:
  // Listens on `bind_address`:`port` (port 0: any free port; see port()). Errors: InvalidArgument
  // (bad address), Unavailable (bind/listen failed, with the system's reason).
  static StatusOr<std::unique_ptr<TcpListener>> Listen(const std::string& bind_address, int port);
  ~TcpListener();

  // The port actually bound. Constant; thread-safe.
  int port() const;

  // The next incoming connection. Blocking until one arrives or the deadline passes
  // (DeadlineExceeded). One thread at a time.
  StatusOr<std::unique_ptr<ControlChannel>> Accept(Deadline deadline);

  struct Impl;

 private:
  explicit TcpListener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Connects to `host`:`port`, retrying refused connections (the listener may not be up yet) until
// the deadline. Errors: DeadlineExceeded (naming the endpoint and the last error), InvalidArgument
// (host cannot be resolved).
StatusOr<std::unique_ptr<ControlChannel>> ConnectTcp(const std::string& host, int port,
                                                     Deadline deadline);

// Splits "host:port". Errors: InvalidArgument naming `what` and the text.
Status ParseEndpoint(const std::string& text, const std::string& what, std::string* host,
                     int* port);

}  // namespace switchyard
