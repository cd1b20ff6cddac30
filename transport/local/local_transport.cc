#include "transport/local/local_transport.h"

#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace switchyard {
namespace {

using transport_internal::PeerDeadlineError;
using transport_internal::PeerUnavailableError;

// Which collective a message belongs to: ranks calling different collectives at the same position
// is a program error we can name.
enum class CollectiveKind { kAllToAllV, kAllToAllVBounded, kBarrier };

const char* KindName(CollectiveKind kind) {
  switch (kind) {
    case CollectiveKind::kAllToAllV:
      return "AllToAllV";
    case CollectiveKind::kAllToAllVBounded:
      return "AllToAllVBounded";
    case CollectiveKind::kBarrier:
      return "Barrier";
  }
  return "?";
}

struct CollectiveMessage {
  CollectiveKind kind;
  std::vector<std::byte> data;
};

struct Mailbox {
  std::condition_variable cv;
  // Collective messages keyed by (sequence number, source rank): one per pair and call.
  std::map<std::pair<uint64_t, int>, CollectiveMessage> collective;
  // Point-to-point messages keyed by (source rank, tag), FIFO per key.
  std::map<std::pair<int, int>, std::deque<std::vector<std::byte>>> p2p;
};

}  // namespace

// Shared by all ranks of a world. One mutex guards everything; copies happen outside it.
struct LocalWorld::State {
  explicit State(int n) : mailboxes(n), dead(n, false) {}
  std::mutex mu;
  std::vector<Mailbox> mailboxes;
  std::vector<bool> dead;
};

namespace {

class LocalTransport final : public Transport {
 public:
  LocalTransport(std::shared_ptr<LocalWorld::State> state, int rank)
      : state_(std::move(state)), rank_(rank) {}

  int rank() const override { return rank_; }
  int world_size() const override { return static_cast<int>(state_->mailboxes.size()); }
  std::string_view name() const override { return "local"; }
  bool KnownDead(int peer) const override {
    if (peer < 0 || peer >= world_size()) return false;
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->dead[peer];
  }
  TransportCapabilities capabilities() const override {
    return TransportCapabilities{.host_memory = true, .device_memory = false};
  }

  Status AllToAllV(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                   std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                   std::span<const int64_t> recv_counts, std::span<const int64_t> recv_offsets,
                   Deadline deadline) override {
    RETURN_IF_ERROR(transport_internal::ValidateAllToAllV("AllToAllV", rank_, world_size(),
                                                          send.size(), send_counts, send_offsets,
                                                          recv.size(), recv_counts, recv_offsets));
    return Collective(CollectiveKind::kAllToAllV, send, send_counts, send_offsets, recv,
                      recv_counts, recv_offsets, {}, deadline);
  }

  Status AllToAllVBounded(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                          std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                          std::span<const int64_t> recv_capacity,
                          std::span<const int64_t> recv_offsets, std::span<int64_t> recv_sizes,
                          Deadline deadline) override {
    RETURN_IF_ERROR(transport_internal::ValidateAllToAllVBounded(
        "AllToAllVBounded", rank_, world_size(), send.size(), send_counts, send_offsets,
        recv.size(), recv_capacity, recv_offsets, recv_sizes.size()));
    return Collective(CollectiveKind::kAllToAllVBounded, send, send_counts, send_offsets, recv,
                      recv_capacity, recv_offsets, recv_sizes, deadline);
  }

  Status Barrier(Deadline deadline) override {
    std::vector<int64_t> zeros(world_size(), 0);
    return Collective(CollectiveKind::kBarrier, {}, zeros, zeros, {}, zeros, zeros, {}, deadline);
  }

  Status Send(int peer, int tag, std::span<const std::byte> data, Deadline deadline) override {
    (void)deadline;  // Buffered: a send never waits.
    RETURN_IF_ERROR(transport_internal::ValidatePeerTag("Send", rank_, world_size(), peer, tag));
    const std::string op = "Send(tag " + std::to_string(tag) + ")";
    std::vector<std::byte> copy(data.begin(), data.end());
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->dead[rank_]) return PeerUnavailableError(op, rank_, {rank_}, "killed");
      if (state_->dead[peer]) return PeerUnavailableError(op, rank_, {peer}, "killed");
      state_->mailboxes[peer].p2p[{rank_, tag}].push_back(std::move(copy));
    }
    state_->mailboxes[peer].cv.notify_all();
    return OkStatus();
  }

  StatusOr<int64_t> Recv(int peer, int tag, std::span<std::byte> data, Deadline deadline) override {
    RETURN_IF_ERROR(transport_internal::ValidatePeerTag("Recv", rank_, world_size(), peer, tag));
    const std::string op = "Recv(tag " + std::to_string(tag) + ")";
    const auto started = TransportClock::now();
    std::vector<std::byte> message;
    {
      Mailbox& box = state_->mailboxes[rank_];
      std::unique_lock<std::mutex> lock(state_->mu);
      while (true) {
        if (state_->dead[rank_]) return PeerUnavailableError(op, rank_, {rank_}, "killed");
        auto it = box.p2p.find({peer, tag});
        if (it != box.p2p.end() && !it->second.empty()) {
          message = std::move(it->second.front());
          it->second.pop_front();
          if (it->second.empty()) box.p2p.erase(it);
          break;
        }
        if (state_->dead[peer]) return PeerUnavailableError(op, rank_, {peer}, "killed");
        if (TransportClock::now() >= deadline.when()) {
          return PeerDeadlineError(op, rank_, {peer}, started, "no message");
        }
        box.cv.wait_until(lock, deadline.when());
      }
    }
    if (message.size() > data.size()) {
      return OutOfRangeError(op + " on rank " + std::to_string(rank_) + ": message from rank " +
                             std::to_string(peer) + " has " + std::to_string(message.size()) +
                             " bytes, buffer holds " + std::to_string(data.size()));
    }
    if (!message.empty()) std::memcpy(data.data(), message.data(), message.size());
    return static_cast<int64_t>(message.size());
  }

 private:
  // One collective: a message to every peer (even an empty one), then one from every peer. With
  // non-empty `recv_sizes`, recv_counts are capacities and recv_sizes[p] gets each actual size.
  Status Collective(CollectiveKind kind, std::span<const std::byte> send,
                    std::span<const int64_t> send_counts, std::span<const int64_t> send_offsets,
                    std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                    std::span<const int64_t> recv_offsets, std::span<int64_t> recv_sizes,
                    Deadline deadline) {
    const int n = world_size();
    const bool bounded = !recv_sizes.empty();
    const uint64_t seq = next_seq_++;
    const std::string op = std::string(KindName(kind)) + " #" + std::to_string(seq);
    const auto started = TransportClock::now();
    Status mismatch;
    if (bounded) recv_sizes[rank_] = send_counts[rank_];  // validated: <= its capacity
    if (send_counts[rank_] != recv_counts[rank_] && !bounded) {
      mismatch = InvalidArgumentError(op + " on rank " + std::to_string(rank_) + ": sends " +
                                      std::to_string(send_counts[rank_]) +
                                      " bytes to itself but expects " +
                                      std::to_string(recv_counts[rank_]));
    } else if (send_counts[rank_] > 0) {
      std::memmove(recv.data() + recv_offsets[rank_], send.data() + send_offsets[rank_],
                   send_counts[rank_]);
    }

    // Copy outgoing data outside the lock, then post it all at once.
    std::vector<CollectiveMessage> outgoing(n);
    for (int p = 0; p < n; ++p) {
      if (p == rank_) continue;
      const std::byte* from = send.data() + send_offsets[p];
      outgoing[p] = CollectiveMessage{kind, std::vector<std::byte>(from, from + send_counts[p])};
    }
    {
      std::lock_guard<std::mutex> lock(state_->mu);
      if (state_->dead[rank_]) return PeerUnavailableError(op, rank_, {rank_}, "killed");
      std::vector<int> dead_peers;
      for (int p = 0; p < n; ++p) {
        if (p != rank_ && state_->dead[p]) dead_peers.push_back(p);
      }
      if (!dead_peers.empty()) return PeerUnavailableError(op, rank_, dead_peers, "killed");
      // Messages of collectives this rank already finished or abandoned can never match again.
      auto& mine = state_->mailboxes[rank_].collective;
      mine.erase(mine.begin(), mine.lower_bound({seq, 0}));
      for (int p = 0; p < n; ++p) {
        if (p != rank_) state_->mailboxes[p].collective[{seq, rank_}] = std::move(outgoing[p]);
      }
    }
    for (int p = 0; p < n; ++p) {
      if (p != rank_) state_->mailboxes[p].cv.notify_all();
    }

    std::vector<int> pending;
    for (int p = 0; p < n; ++p) {
      if (p != rank_) pending.push_back(p);
    }
    Mailbox& box = state_->mailboxes[rank_];
    std::vector<std::pair<int, CollectiveMessage>> arrived;
    while (!pending.empty()) {
      arrived.clear();
      {
        std::unique_lock<std::mutex> lock(state_->mu);
        while (true) {
          if (state_->dead[rank_]) return PeerUnavailableError(op, rank_, {rank_}, "killed");
          std::vector<int> still;
          for (int p : pending) {
            auto it = box.collective.find({seq, p});
            if (it == box.collective.end()) {
              still.push_back(p);
            } else {
              arrived.emplace_back(p, std::move(it->second));
              box.collective.erase(it);
            }
          }
          pending.swap(still);
          if (!arrived.empty() || pending.empty()) break;
          std::vector<int> dead_peers;
          for (int p : pending) {
            if (state_->dead[p]) dead_peers.push_back(p);
          }
          if (!dead_peers.empty()) return PeerUnavailableError(op, rank_, dead_peers, "killed");
          if (TransportClock::now() >= deadline.when()) {
            return PeerDeadlineError(op, rank_, pending, started, "their data has not arrived");
          }
          box.cv.wait_until(lock, deadline.when());
        }
      }
      for (auto& [p, message] : arrived) {
        if (message.kind != kind) {
          if (mismatch.ok()) {
            mismatch = InvalidArgumentError(op + " on rank " + std::to_string(rank_) + ": rank " +
                                            std::to_string(p) + " called " +
                                            KindName(message.kind) + " at this point");
          }
        } else if (bounded && static_cast<int64_t>(message.data.size()) > recv_counts[p]) {
          if (mismatch.ok()) {
            mismatch = InvalidArgumentError(
                op + " on rank " + std::to_string(rank_) + ": rank " + std::to_string(p) +
                " sent " + std::to_string(message.data.size()) +
                " bytes, more than this rank's capacity of " + std::to_string(recv_counts[p]));
          }
        } else if (!bounded && static_cast<int64_t>(message.data.size()) != recv_counts[p]) {
          if (mismatch.ok()) {
            mismatch = InvalidArgumentError(op + " on rank " + std::to_string(rank_) + ": rank " +
                                            std::to_string(p) + " sent " +
                                            std::to_string(message.data.size()) +
                                            " bytes, expected " + std::to_string(recv_counts[p]));
          }
        } else {
          if (bounded) recv_sizes[p] = static_cast<int64_t>(message.data.size());
          if (!message.data.empty()) {
            std::memcpy(recv.data() + recv_offsets[p], message.data.data(), message.data.size());
          }
        }
      }
    }
    return mismatch;
  }

  std::shared_ptr<LocalWorld::State> state_;
  const int rank_;
  uint64_t next_seq_ = 0;  // position in this rank's sequence of collectives
};

}  // namespace

LocalWorld::LocalWorld(int world_size) : state_(std::make_shared<State>(world_size)) {
  for (int r = 0; r < world_size; ++r) {
    transports_.push_back(std::make_unique<LocalTransport>(state_, r));
  }
}

LocalWorld::~LocalWorld() = default;

StatusOr<std::unique_ptr<LocalWorld>> LocalWorld::Create(int world_size) {
  if (world_size < 1 || world_size > 65536) {
    return InvalidArgumentError("local transport: world size " + std::to_string(world_size) +
                                " outside [1, 65536]");
  }
  return std::unique_ptr<LocalWorld>(new LocalWorld(world_size));
}

int LocalWorld::world_size() const { return static_cast<int>(transports_.size()); }

Transport& LocalWorld::transport(int rank) {
  SY_CHECK(rank >= 0 && rank < world_size());
  return *transports_[rank];
}

void LocalWorld::Kill(int rank) {
  SY_CHECK(rank >= 0 && rank < world_size());
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->dead[rank] = true;
    state_->mailboxes[rank].collective.clear();
    state_->mailboxes[rank].p2p.clear();
  }
  for (Mailbox& box : state_->mailboxes) box.cv.notify_all();
}

bool LocalWorld::IsKilled(int rank) const {
  SY_CHECK(rank >= 0 && rank < world_size());
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->dead[rank];
}

std::unique_ptr<Transport> CreateSingleRankLocalTransport() {
  return std::make_unique<LocalTransport>(std::make_shared<LocalWorld::State>(1), 0);
}

}  // namespace switchyard
