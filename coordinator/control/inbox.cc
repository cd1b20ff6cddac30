#include "coordinator/control/inbox.h"

namespace switchyard {

ChannelInbox::ChannelInbox(const std::vector<std::unique_ptr<ControlChannel>>& channels) {
  for (size_t r = 0; r < channels.size(); ++r) {
    ControlChannel* ch = channels[r].get();
    threads_.emplace_back([this, r, ch] { Read(static_cast<int>(r), ch); });
  }
}

ChannelInbox::~ChannelInbox() {
  stop_ = true;
  for (auto& t : threads_) t.join();
}

bool ChannelInbox::Pop(Deadline deadline, Event* event) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_until(lock, deadline.when(), [this] { return !events_.empty(); })) return false;
  *event = std::move(events_.front());
  events_.pop_front();
  return true;
}

void ChannelInbox::Read(int rank, ControlChannel* channel) {
  while (!stop_) {
    // A short receive deadline so that stop_ is seen promptly.
    auto m = channel->Receive(Deadline::After(std::chrono::milliseconds(200)));
    if (!m.ok() && m.status().code() == StatusCode::kDeadlineExceeded) continue;
    Event e;
    e.rank = rank;
    if (m.ok()) {
      e.text = std::move(*m);
    } else {
      e.status = m.status();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      events_.push_back(std::move(e));
    }
    cv_.notify_all();
    if (!m.ok()) return;
  }
}

}  // namespace switchyard
