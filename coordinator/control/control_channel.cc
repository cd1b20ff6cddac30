#include "coordinator/control/control_channel.h"

#include <condition_variable>
#include <deque>

namespace switchyard {
namespace {

class SteadyClockImpl : public Clock {
 public:
  TransportClock::time_point Now() const override { return TransportClock::now(); }
};

// The state two in-memory endpoints share: one queue per direction.
struct Pipe {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> queue[2];  // queue[i]: messages for side i
  bool closed = false;
};

class InMemoryChannel : public ControlChannel {
 public:
  InMemoryChannel(std::shared_ptr<Pipe> pipe, int side, std::string name)
      : pipe_(std::move(pipe)), side_(side), name_(std::move(name)) {}
  ~InMemoryChannel() override { Close(); }

  Status Send(const std::string& message, Deadline) override {
    if (message.size() > kMaxMessageBytes) {
      return InvalidArgumentError("control message of " + std::to_string(message.size()) +
                                  " bytes to " + name_ + " exceeds the limit");
    }
    std::lock_guard<std::mutex> lock(pipe_->mu);
    if (pipe_->closed) return UnavailableError("control channel to " + name_ + " is closed");
    pipe_->queue[1 - side_].push_back(message);
    pipe_->cv.notify_all();
    return OkStatus();
  }

  StatusOr<std::string> Receive(Deadline deadline) override {
    std::unique_lock<std::mutex> lock(pipe_->mu);
    auto& q = pipe_->queue[side_];
    // Messages sent before a close are still delivered, as TCP does.
    pipe_->cv.wait_until(lock, deadline.when(), [&] { return !q.empty() || pipe_->closed; });
    if (!q.empty()) {
      std::string m = std::move(q.front());
      q.pop_front();
      return m;
    }
    if (pipe_->closed) return UnavailableError("connection closed by " + name_);
    return DeadlineExceededError("no control message from " + name_ + " before the deadline");
  }

  void Close() override {
    std::lock_guard<std::mutex> lock(pipe_->mu);
    pipe_->closed = true;
    pipe_->cv.notify_all();
  }

  std::string peer() const override { return name_; }

 private:
  std::shared_ptr<Pipe> pipe_;
  int side_;
  std::string name_;
};

}  // namespace

Clock* SteadyClock() {
  static SteadyClockImpl* clock = new SteadyClockImpl();
  return clock;
}

std::pair<std::unique_ptr<ControlChannel>, std::unique_ptr<ControlChannel>> MakeInMemoryChannelPair(
    const std::string& name) {
  auto pipe = std::make_shared<Pipe>();
  return {std::make_unique<InMemoryChannel>(pipe, 0, name + " (worker side)"),
          std::make_unique<InMemoryChannel>(pipe, 1, name + " (coordinator side)")};
}

}  // namespace switchyard
