#include "worker/local_cluster.h"

#include "common/logging.h"
#include "worker/worker.h"

namespace switchyard {
namespace {

// A channel that can be frozen: once frozen, sends are dropped and receives wait until their
// deadline, as with a process that hangs while its socket stays open.
class FreezableChannel : public ControlChannel {
 public:
  explicit FreezableChannel(std::unique_ptr<ControlChannel> inner) : inner_(std::move(inner)) {}
  Status Send(const std::string& message, Deadline deadline) override {
    if (frozen_) return OkStatus();
    return inner_->Send(message, deadline);
  }
  StatusOr<std::string> Receive(Deadline deadline) override {
    while (frozen_ && !closed_ && !deadline.Expired()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (frozen_) {
      return closed_ ? UnavailableError("frozen channel closed")
                     : DeadlineExceededError("frozen channel");
    }
    return inner_->Receive(deadline);
  }
  void Close() override {
    closed_ = true;
    inner_->Close();
  }
  std::string peer() const override { return inner_->peer(); }
  void Freeze() { frozen_ = true; }

 private:
  std::unique_ptr<ControlChannel> inner_;
  std::atomic<bool> frozen_{false};
  std::atomic<bool> closed_{false};
};

}  // namespace

StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(const RuntimeConfig& runtime,
                                                            Clock* clock) {
  const int n = runtime.cluster.workers;
  std::unique_ptr<LocalCluster> c(new LocalCluster());
  ASSIGN_OR_RETURN(c->world_, LocalWorld::Create(n));
  std::vector<std::unique_ptr<ControlChannel>> coordinator_side;
  for (int r = 0; r < n; ++r) {
    auto [coord, worker] = MakeInMemoryChannelPair("worker thread " + std::to_string(r));
    coordinator_side.push_back(std::move(coord));
    c->worker_channels_.push_back(std::make_unique<FreezableChannel>(std::move(worker)));
  }
  LocalWorld* world = c->world_.get();
  for (int r = 0; r < n; ++r) {
    ControlChannel* channel = c->worker_channels_[r].get();
    c->threads_.emplace_back([channel, world, r] {
      WorkerOptions options;
      options.known_rank = r;
      options.idle_timeout = std::chrono::minutes(10);
      Status s = RunWorker(
          channel,
          [world](const AssignMsg& a) -> StatusOr<Transport*> { return &world->transport(a.rank); },
          options);
      if (!s.ok()) LOG_DEBUG("worker", "worker thread %d ended: %s", r, s.ToString().c_str());
      channel->Close();
    });
  }
  c->coordinator_ = std::make_unique<Coordinator>(runtime, clock);
  Status s = c->coordinator_->Start(std::move(coordinator_side));
  if (!s.ok()) return s;  // the destructor stops the workers
  return c;
}

LocalCluster::~LocalCluster() {
  if (coordinator_) coordinator_->Shutdown();
  for (auto& ch : worker_channels_) ch->Close();
  // Workers still blocked in a collective (a peer failed) leave at once instead of waiting for
  // their step deadline; after a clean shutdown nobody is waiting and this changes nothing.
  for (int r = 0; world_ && r < world_->world_size(); ++r) world_->Kill(r);
  for (auto& t : threads_) t.join();
}

void LocalCluster::KillWorker(int rank) {
  world_->Kill(rank);
  worker_channels_[rank]->Close();
}

void LocalCluster::HangWorker(int rank) {
  static_cast<FreezableChannel*>(worker_channels_[rank].get())->Freeze();
}

}  // namespace switchyard
