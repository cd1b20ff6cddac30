// HeartbeatMonitor: when did each worker last show signs of life, and who has been silent too
// long. Time comes from an injected Clock, so tests advance a FakeClock instead of sleeping.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "coordinator/control/control_channel.h"

namespace switchyard {

class HeartbeatMonitor {
 public:
  // `clock` must outlive the monitor. Every rank starts as "seen now".
  HeartbeatMonitor(Clock* clock, int num_ranks, std::chrono::milliseconds timeout);

  // Rank `rank` showed life (any message counts). Thread-safe; out-of-range ranks are ignored.
  void Beat(int rank);

  struct Silent {
    int rank;
    std::chrono::milliseconds silent_for;
  };
  // Ranks not seen for longer than the timeout, ascending. Thread-safe.
  std::vector<Silent> SilentRanks() const;

  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  Clock* clock_;
  std::chrono::milliseconds timeout_;
  mutable std::mutex mu_;
  std::vector<TransportClock::time_point> last_;
};

}  // namespace switchyard
