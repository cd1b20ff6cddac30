#include "coordinator/control/heartbeat.h"

namespace switchyard {

HeartbeatMonitor::HeartbeatMonitor(Clock* clock, int num_ranks, std::chrono::milliseconds timeout)
    : clock_(clock), timeout_(timeout), last_(num_ranks, clock->Now()) {}

void HeartbeatMonitor::Beat(int rank) {
  std::lock_guard<std::mutex> lock(mu_);
  if (rank >= 0 && rank < static_cast<int>(last_.size())) last_[rank] = clock_->Now();
}

std::vector<HeartbeatMonitor::Silent> HeartbeatMonitor::SilentRanks() const {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = clock_->Now();
  std::vector<Silent> out;
  for (size_t r = 0; r < last_.size(); ++r) {
    const auto age = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_[r]);
    if (age > timeout_) out.push_back({static_cast<int>(r), age});
  }
  return out;
}

}  // namespace switchyard
