// ControlChannel: the control plane between the coordinator and one worker — whole messages
// (JSON text, see protocol.h) in both directions, every wait bounded by a Deadline.
//
// Implementations: an in-memory pair (tests, workers as threads of the coordinator's process) and
// TCP with Boost.Asio (tcp_channel.h). A Clock is injected where timing matters (heartbeats), so
// tests advance time instead of sleeping.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "common/status.h"
#include "transport/transport.h"

namespace switchyard {

// Time source for heartbeat and timeout logic. Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TransportClock::time_point Now() const = 0;
};

// The real steady clock (a process-wide instance; never destroyed).
Clock* SteadyClock();

// A clock that moves only when told (tests). Thread-safe.
class FakeClock : public Clock {
 public:
  TransportClock::time_point Now() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return now_;
  }
  void Advance(std::chrono::nanoseconds d) {
    std::lock_guard<std::mutex> lock(mu_);
    now_ += d;
  }

 private:
  mutable std::mutex mu_;
  TransportClock::time_point now_{};
};

class ControlChannel {
 public:
  virtual ~ControlChannel() = default;

  // Sends one whole message. Thread-safe (concurrent senders are serialised; a heartbeat thread
  // may send while the main thread sends step results). Blocking until the message is handed to
  // the peer's queue / the socket, or the deadline passes.
  // Errors: Unavailable (closed locally or by the peer), DeadlineExceeded, InvalidArgument (larger
  // than kMaxMessageBytes).
  virtual Status Send(const std::string& message, Deadline deadline) = 0;

  // The next whole message. Only one thread may receive at a time. Blocking until a message
  // arrives or the deadline passes; a deadline that passes loses nothing (the next call sees the
  // message). Errors: DeadlineExceeded, Unavailable (the peer closed or died: "connection closed
  // by <peer>"), DataLoss (a malformed frame).
  virtual StatusOr<std::string> Receive(Deadline deadline) = 0;

  // Closes both directions: the peer's pending and later Receive calls fail with Unavailable.
  // Idempotent; thread-safe.
  virtual void Close() = 0;

  // Who is on the other side ("127.0.0.1:40000", "in-memory peer"), for messages. Constant.
  virtual std::string peer() const = 0;

  static constexpr size_t kMaxMessageBytes = size_t{256} << 20;
};

// Two connected in-memory endpoints (first: coordinator side, second: worker side). Messages
// queue without bound; each side's Close wakes the other's Receive with Unavailable.
std::pair<std::unique_ptr<ControlChannel>, std::unique_ptr<ControlChannel>> MakeInMemoryChannelPair(
    const std::string& name);

}  // namespace switchyard
