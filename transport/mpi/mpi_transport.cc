#include "transport/mpi/mpi_transport.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "transport/mpi/mpi_status.h"

namespace switchyard {
namespace {

using transport_internal::PeerDeadlineError;

// MPI counts are int: larger regions travel as several messages with the same tag, which MPI
// delivers in order.
constexpr int64_t kMaxChunk = int64_t{1} << 30;
static_assert(kMaxChunk >= Transport::kMaxBoundedMessageBytes);

std::mutex g_init_mu;
bool g_we_initialized = false;
std::optional<MpiNodePlace> g_node_place;  // set once by MpiInitOnce (under g_init_mu)

// Collective over MPI_COMM_WORLD: called right after MPI_Init_thread on every rank.
void ComputeNodePlace() {
  MpiNodePlace place;
  MPI_Comm_rank(MPI_COMM_WORLD, &place.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &place.world_size);
  MPI_Comm node = MPI_COMM_NULL;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, place.rank, MPI_INFO_NULL, &node) !=
      MPI_SUCCESS) {
    return;  // callers fall back to the launcher's environment
  }
  MPI_Comm_rank(node, &place.local_rank);
  MPI_Comm_size(node, &place.local_size);
  MPI_Comm_free(&node);
  g_node_place = place;
}

// Text of an operation for error messages, built only when an error is reported (the hot path
// of a collective allocates nothing: small lambdas fit std::function's local storage).
using OpText = std::function<std::string()>;

// A set of outstanding requests, each tied to a peer, polled together until a deadline. Reusable:
// Reset() keeps the capacity, so a collective that reuses one set allocates nothing.
class RequestSet {
 public:
  void Reset() {
    requests_.clear();
    infos_.clear();
  }
  // `size_out` (optional): gets the received byte count (an upper-bound receive, expected -1).
  void AddRecv(MPI_Request request, int peer, int64_t expected, int64_t* size_out = nullptr) {
    requests_.push_back(request);
    infos_.push_back({peer, true, expected, size_out});
  }
  void AddSend(MPI_Request request, int peer) {
    requests_.push_back(request);
    infos_.push_back({peer, false, 0, nullptr});
  }

  // Polls until every request completes or `deadline` passes. Receives that complete with fewer
  // bytes than expected are reported as InvalidArgument naming the peer; *received gets the byte
  // count of the last completed receive (for point-to-point Recv).
  Status Wait(const OpText& op, int rank, Deadline deadline, TransportClock::time_point started,
              int64_t* received = nullptr) {
    const int n = static_cast<int>(requests_.size());
    const OpText where = [&op, rank] { return op() + " on rank " + std::to_string(rank); };
    indices_.resize(n);
    statuses_.resize(n);
    int* indices = indices_.data();
    MPI_Status* statuses = statuses_.data();
    Status first_error;
    int remaining = n;
    int idle_polls = 0;
    TransportClock::time_point idle_since{};
    while (remaining > 0) {
      int done = 0;
      int rc = MPI_Testsome(n, requests_.data(), &done, indices, statuses);
      if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS) {
        std::vector<int> peers = PendingPeers();
        Abandon();
        return MpiCodeToStatus(rc,
                               where() + " (peers " + transport_internal::FormatRanks(peers) + ")");
      }
      if (done == MPI_UNDEFINED) break;  // every request is MPI_REQUEST_NULL
      for (int i = 0; i < done; ++i) {
        const int err = rc == MPI_ERR_IN_STATUS ? statuses[i].MPI_ERROR : MPI_SUCCESS;
        Complete(indices[i], statuses[i], err, where, received, &first_error);
        --remaining;
      }
      if (remaining == 0) break;
      if (TransportClock::now() >= deadline.when()) {
        std::vector<int> peers = PendingPeers();
        std::string detail = PendingDetail();
        // A receive can still match while it is being cancelled: then nothing was lost and the
        // call may succeed after all.
        if (Abandon(where, received, &first_error)) return first_error;
        return PeerDeadlineError(op(), rank, peers, started, detail);
      }
      if (done > 0) {
        idle_polls = 0;
        continue;
      }
      // Spin briefly for latency, then yield the CPU (ranks may share cores). Sleep only after
      // 5 ms without a completion, and briefly: a rendezvous transfer advances only while this
      // rank polls (its ACKs and fragments), so sleeping early stalls the peer too (a count-based
      // 100 us sleep measured up to 6x slower than MPI_Alltoallv on 0.5 MB messages).
      ++idle_polls;
      if (idle_polls == 1) idle_since = TransportClock::now();
      if (idle_polls > 64) {
        if (TransportClock::now() - idle_since > std::chrono::milliseconds(5)) {
          std::this_thread::sleep_for(std::chrono::microseconds(20));
        } else {
          std::this_thread::yield();
        }
      }
    }
    return first_error;
  }

  // Gives up on every request still pending (see Abandon).
  void AbandonAll() { Abandon(); }

 private:
  struct Info {
    int peer;
    bool is_recv;
    int64_t expected;   // bytes, for receives; -1: any
    int64_t* size_out;  // receives: where the received byte count goes (or null)
    bool done = false;
  };

  // Bookkeeping for request i, completed with `status` and error code `err`.
  void Complete(int i, const MPI_Status& status, int err, const OpText& where, int64_t* received,
                Status* first_error) {
    Info& info = infos_[i];
    info.done = true;
    if (err != MPI_SUCCESS) {
      if (first_error->ok()) {
        *first_error =
            MpiCodeToStatus(err, where() + ": " + (info.is_recv ? "receive from" : "send to") +
                                     " rank " + std::to_string(info.peer));
        // A collective receive that overflowed: the peer's count disagrees with ours.
        if (info.is_recv && info.expected >= 0 && first_error->code() == StatusCode::kOutOfRange) {
          *first_error = InvalidArgumentError(where() + ": rank " + std::to_string(info.peer) +
                                              " sent more than the expected " +
                                              std::to_string(info.expected) + " bytes");
        } else if (info.is_recv && info.size_out != nullptr &&
                   first_error->code() == StatusCode::kOutOfRange) {
          *first_error = InvalidArgumentError(where() + ": rank " + std::to_string(info.peer) +
                                              " sent more than this rank's capacity for it");
        }
      }
      return;
    }
    if (!info.is_recv) return;
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    if (received) *received = count;
    if (info.size_out != nullptr) *info.size_out = count;
    if (info.expected >= 0 && count != info.expected && first_error->ok()) {
      *first_error = InvalidArgumentError(where() + ": rank " + std::to_string(info.peer) +
                                          " sent " + std::to_string(count) + " bytes, expected " +
                                          std::to_string(info.expected));
    }
  }

  std::vector<int> PendingPeers() const {
    std::vector<int> peers;
    for (const Info& info : infos_) {
      if (!info.done) peers.push_back(info.peer);
    }
    std::sort(peers.begin(), peers.end());
    peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
    return peers;
  }

  std::string PendingDetail() const {
    int recvs = 0;
    int sends = 0;
    for (const Info& info : infos_) {
      if (!info.done) ++(info.is_recv ? recvs : sends);
    }
    return std::to_string(recvs) + " receive(s) and " + std::to_string(sends) +
           " send(s) still pending";
  }

  // Gives up on every pending request. Receives are cancelled (MPI_Cancel, then polled for up to
  // 100 ms for the cancellation to complete; one that matched meanwhile is completed normally).
  // Sends cannot be cancelled in Open MPI and are released with MPI_Request_free, which lets them
  // finish in the background if the peer ever catches up. Returns true when nothing was actually
  // left pending (every receive matched instead of being cancelled, and there were no sends).
  bool Abandon(const OpText& where = {}, int64_t* received = nullptr,
               Status* first_error = nullptr) {
    bool all_completed = true;
    for (size_t i = 0; i < requests_.size(); ++i) {
      if (requests_[i] == MPI_REQUEST_NULL || infos_[i].done) continue;
      if (infos_[i].is_recv) {
        MPI_Cancel(&requests_[i]);
        const auto grace = TransportClock::now() + std::chrono::milliseconds(100);
        int flag = 0;
        MPI_Status status;
        while (!flag && TransportClock::now() < grace) {
          MPI_Test(&requests_[i], &flag, &status);
          if (!flag) std::this_thread::yield();
        }
        if (flag) {
          int cancelled = 0;
          MPI_Test_cancelled(&status, &cancelled);
          if (cancelled || !first_error) {
            all_completed = false;
          } else {
            Complete(static_cast<int>(i), status, MPI_SUCCESS, where, received, first_error);
          }
          continue;
        }
        LOG_WARN("transport", "MPI receive from rank %d could not be cancelled; abandoned",
                 infos_[i].peer);
      }
      all_completed = false;
      MPI_Request_free(&requests_[i]);
    }
    return all_completed;
  }

  std::vector<MPI_Request> requests_;
  std::vector<Info> infos_;
  std::vector<int> indices_;  // Wait's MPI_Testsome outputs
  std::vector<MPI_Status> statuses_;
};

class MpiTransport final : public transport_internal::PairwiseExchangeTransport {
 public:
  MpiTransport(MPI_Comm collective, MPI_Comm p2p, int rank, int size, int tag_limit)
      : collective_(collective), p2p_(p2p), rank_(rank), size_(size), tag_limit_(tag_limit) {}

  ~MpiTransport() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    MPI_Comm_free(&collective_);
    MPI_Comm_free(&p2p_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string_view name() const override { return "mpi"; }
  TransportCapabilities capabilities() const override {
    return TransportCapabilities{.host_memory = true, .device_memory = false};
  }

  Status Send(int peer, int tag, std::span<const std::byte> data, Deadline deadline) override {
    RETURN_IF_ERROR(transport_internal::ValidatePeerTag("Send", rank_, size_, peer, tag));
    const std::string op = "Send(tag " + std::to_string(tag) + ")";
    if (data.size() > static_cast<size_t>(INT_MAX)) {
      return InvalidArgumentError(op + " on rank " + std::to_string(rank_) + ": " +
                                  std::to_string(data.size()) +
                                  " bytes; point-to-point messages are limited to 2^31-1 bytes");
    }
    const auto started = TransportClock::now();
    RequestSet requests;
    MPI_Request request;
    RETURN_IF_ERROR(MpiCodeToStatus(
        MPI_Isend(data.data(), static_cast<int>(data.size()), MPI_BYTE, peer, tag, p2p_, &request),
        op + " on rank " + std::to_string(rank_) + " to rank " + std::to_string(peer)));
    requests.AddSend(request, peer);
    return requests.Wait([&op] { return op; }, rank_, deadline, started);
  }

  StatusOr<int64_t> Recv(int peer, int tag, std::span<std::byte> data, Deadline deadline) override {
    RETURN_IF_ERROR(transport_internal::ValidatePeerTag("Recv", rank_, size_, peer, tag));
    const std::string op = "Recv(tag " + std::to_string(tag) + ")";
    const auto started = TransportClock::now();
    const int capacity = static_cast<int>(std::min<size_t>(data.size(), INT_MAX));
    RequestSet requests;
    MPI_Request request;
    RETURN_IF_ERROR(MpiCodeToStatus(
        MPI_Irecv(data.data(), capacity, MPI_BYTE, peer, tag, p2p_, &request),
        op + " on rank " + std::to_string(rank_) + " from rank " + std::to_string(peer)));
    requests.AddRecv(request, peer, -1);
    int64_t received = 0;
    RETURN_IF_ERROR(requests.Wait([&op] { return op; }, rank_, deadline, started, &received));
    return received;
  }

 private:
  // Posts every receive, then every send (empty messages included, so each call also shows that
  // every peer reached it), then polls them all until the deadline.
  Status Exchange(const char* what, std::span<const std::byte> send,
                  std::span<const int64_t> send_counts, std::span<const int64_t> send_offsets,
                  std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                  std::span<const int64_t> recv_offsets, std::span<int64_t> recv_sizes,
                  Deadline deadline) override {
    const uint64_t seq = next_seq_++;
    const bool bounded = !recv_sizes.empty();  // capacities <= kMaxChunk: one receive per peer
    const int tag = static_cast<int>(seq % (static_cast<uint64_t>(tag_limit_) + 1));
    // Error texts are built on error paths only (no allocation per call).
    const OpText op = [what, seq] { return std::string(what) + " #" + std::to_string(seq); };
    auto where = [&op, this] { return op() + " on rank " + std::to_string(rank_); };
    const auto started = TransportClock::now();
    Status mismatch;
    if (!CopyOwnMessage(rank_, send, send_counts, send_offsets, recv, recv_counts, recv_offsets,
                        recv_sizes)) {
      mismatch = InvalidArgumentError(where() + ": sends " + std::to_string(send_counts[rank_]) +
                                      " bytes to itself but expects " +
                                      std::to_string(recv_counts[rank_]));
    }
    RequestSet& requests = exchange_requests_;
    requests.Reset();
    for (int pass = 0; pass < 2; ++pass) {
      const bool is_recv = pass == 0;
      for (int i = 1; i < size_; ++i) {
        // Staggered order spreads the load instead of every rank talking to rank 0 first.
        const int p = is_recv ? (rank_ - i + size_) % size_ : (rank_ + i) % size_;
        const int64_t total = is_recv ? recv_counts[p] : send_counts[p];
        const int64_t offset = is_recv ? recv_offsets[p] : send_offsets[p];
        int64_t done = 0;
        do {
          const int chunk = static_cast<int>(std::min(total - done, kMaxChunk));
          MPI_Request request;
          int rc;
          if (is_recv) {
            rc = MPI_Irecv(recv.data() + offset + done, chunk, MPI_BYTE, p, tag, collective_,
                           &request);
          } else {
            rc = MPI_Isend(send.data() + offset + done, chunk, MPI_BYTE, p, tag, collective_,
                           &request);
          }
          if (rc != MPI_SUCCESS) {
            requests.AbandonAll();  // what was already posted
            return MpiCodeToStatus(
                rc, where() + (is_recv ? ": MPI_Irecv from rank " : ": MPI_Isend to rank ") +
                        std::to_string(p));
          }
          if (is_recv && bounded) {
            requests.AddRecv(request, p, -1, &recv_sizes[p]);
          } else if (is_recv) {
            requests.AddRecv(request, p, chunk);
          } else {
            requests.AddSend(request, p);
          }
          done += chunk;
        } while (done < total);
      }
    }
    Status waited = requests.Wait(op, rank_, deadline, started);
    if (!waited.ok()) return waited;
    return mismatch;
  }

  MPI_Comm collective_;
  MPI_Comm p2p_;
  const int rank_;
  const int size_;
  const int tag_limit_;
  uint64_t next_seq_ = 0;
  RequestSet exchange_requests_;  // reused by every collective (one call at a time)
};

}  // namespace

Status MpiInitOnce() {
  std::lock_guard<std::mutex> lock(g_init_mu);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return FailedPreconditionError("MPI transport: MPI is already finalized");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) {
      return InternalError("MPI transport: MPI_Init_thread failed with code " + std::to_string(rc));
    }
    g_we_initialized = true;
    ComputeNodePlace();
    if (provided < MPI_THREAD_SERIALIZED) {
      return FailedPreconditionError("MPI transport: MPI_THREAD_SERIALIZED not provided (got " +
                                     std::to_string(provided) + ")");
    }
  }
  RETURN_IF_ERROR(MpiCodeToStatus(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN),
                                  "MPI transport: MPI_Comm_set_errhandler"));
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  SetLogRank(rank);
  return OkStatus();
}

Status MpiFinalizeOnce() {
  std::lock_guard<std::mutex> lock(g_init_mu);
  if (!g_we_initialized) return OkStatus();
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return OkStatus();
  return MpiCodeToStatus(MPI_Finalize(), "MPI transport: MPI_Finalize");
}

namespace {

// A transport whose collective and point-to-point communicators duplicate `base`.
StatusOr<std::unique_ptr<Transport>> CreateMpiTransportOn(MPI_Comm base) {
  int rank = 0;
  int size = 0;
  RETURN_IF_ERROR(MpiCodeToStatus(MPI_Comm_rank(base, &rank), "MPI_Comm_rank"));
  RETURN_IF_ERROR(MpiCodeToStatus(MPI_Comm_size(base, &size), "MPI_Comm_size"));
  int* tag_ub = nullptr;
  int found = 0;
  RETURN_IF_ERROR(MpiCodeToStatus(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &tag_ub, &found),
                                  "MPI_Comm_get_attr(MPI_TAG_UB)"));
  const int tag_limit = found && tag_ub ? *tag_ub : Transport::kMaxTag;
  if (tag_limit < Transport::kMaxTag) {
    return InternalError("MPI transport: MPI_TAG_UB is " + std::to_string(tag_limit) +
                         ", below the 32767 MPI guarantees");
  }
  MPI_Comm collective = MPI_COMM_NULL;
  MPI_Comm p2p = MPI_COMM_NULL;
  RETURN_IF_ERROR(MpiCodeToStatus(MPI_Comm_dup(base, &collective), "MPI_Comm_dup"));
  Status dup = MpiCodeToStatus(MPI_Comm_dup(base, &p2p), "MPI_Comm_dup");
  if (!dup.ok()) {
    MPI_Comm_free(&collective);
    return dup;
  }
  for (MPI_Comm comm : {collective, p2p}) {
    RETURN_IF_ERROR(MpiCodeToStatus(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN),
                                    "MPI_Comm_set_errhandler"));
  }
  return std::unique_ptr<Transport>(new MpiTransport(collective, p2p, rank, size, tag_limit));
}

}  // namespace

StatusOr<std::unique_ptr<Transport>> CreateMpiTransport() {
  RETURN_IF_ERROR(MpiInitOnce());
  return CreateMpiTransportOn(MPI_COMM_WORLD);
}

StatusOr<std::unique_ptr<Transport>> CreateMpiSubsetTransport(bool member) {
  RETURN_IF_ERROR(MpiInitOnce());
  int world_rank = 0;
  RETURN_IF_ERROR(MpiCodeToStatus(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank), "MPI_Comm_rank"));
  MPI_Comm sub = MPI_COMM_NULL;
  RETURN_IF_ERROR(
      MpiCodeToStatus(MPI_Comm_split(MPI_COMM_WORLD, member ? 0 : MPI_UNDEFINED, world_rank, &sub),
                      "MPI_Comm_split"));
  if (!member) return std::unique_ptr<Transport>();
  auto transport = CreateMpiTransportOn(sub);
  MPI_Comm_free(&sub);  // the transport keeps its duplicates
  return transport;
}

Status MpiBroadcastText(std::string* text, int root, Deadline deadline) {
  RETURN_IF_ERROR(MpiInitOnce());
  char buf[4096] = {0};
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  if (world_rank == root) {
    if (text->size() >= sizeof(buf)) {
      return InvalidArgumentError("MpiBroadcastText: " + std::to_string(text->size()) +
                                  " bytes, at most 4095");
    }
    std::memcpy(buf, text->data(), text->size());
  }
  MPI_Request request;
  RETURN_IF_ERROR(MpiCodeToStatus(
      MPI_Ibcast(buf, sizeof(buf), MPI_CHAR, root, MPI_COMM_WORLD, &request), "MPI_Ibcast"));
  while (true) {
    int done = 0;
    RETURN_IF_ERROR(MpiCodeToStatus(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test"));
    if (done) break;
    if (deadline.Expired()) {
      return DeadlineExceededError("broadcast from world rank " + std::to_string(root) +
                                   " not received before the deadline (rank " +
                                   std::to_string(world_rank) + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  buf[sizeof(buf) - 1] = '\0';
  *text = buf;
  return OkStatus();
}

StatusOr<int> MpiWorldRank() {
  RETURN_IF_ERROR(MpiInitOnce());
  int world_rank = 0;
  RETURN_IF_ERROR(MpiCodeToStatus(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank), "MPI_Comm_rank"));
  return world_rank;
}

StatusOr<MpiNodePlace> MpiNodePlaceOfProcess() {
  std::lock_guard<std::mutex> lock(g_init_mu);
  if (!g_node_place) {
    return FailedPreconditionError("MPI was not initialized by this process's transport layer");
  }
  return *g_node_place;
}

}  // namespace switchyard
