// Transport: the data plane between ranks (variable all-to-all, point-to-point, barrier).
//
// Every call takes a Deadline; nothing waits without one. A peer that does not answer in time is
// reported as DeadlineExceeded naming that peer's rank(s) and the operation; a peer known to be
// dead is reported as Unavailable naming it. This header compiles identically whatever backends are
// built (no MPI/UCX/NCCL/CUDA headers here); backends live under transport/<backend>/ and are
// created by transport/transport_factory.h.
//
// Deadlines: a deadline already in the past still lets a call finish if it can without waiting
// (a one-rank collective, a message already delivered).
//
// Threading: a Transport object belongs to one rank and is used by one thread at a time (calls on
// the same object must not overlap). Different ranks' objects (e.g. the local backend's threads)
// may be used concurrently. Collective calls (AllToAllV, AllToAllCounts, Barrier) must be issued in
// the same order on every rank of the world; every rank takes part in every collective, even with
// nothing to send.
//
// After an error: the object stays usable. A collective that failed on some ranks consumes one
// collective "slot" on those ranks; a late peer that later issues the same call still matches it
// (it may complete from data already delivered, or fail itself), and later collectives line up
// again. Data from an abandoned call is never delivered into a later call. Because an abandoned
// send cannot always be withdrawn (MPI cannot cancel a send that has started), a late peer may read
// the send buffer of a call that already returned an error on this rank: treat the step as failed
// on every rank (the fail-stop default), rather than trusting what the late peer received.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace switchyard {

using TransportClock = std::chrono::steady_clock;

// A point in time by which a call must finish. There is deliberately no "infinite" deadline.
class Deadline {
 public:
  explicit Deadline(TransportClock::time_point when) : when_(when) {}
  // now + timeout.
  static Deadline After(std::chrono::nanoseconds timeout) {
    return Deadline(TransportClock::now() + timeout);
  }
  TransportClock::time_point when() const { return when_; }
  bool Expired() const { return TransportClock::now() >= when_; }
  // Time left, never negative.
  std::chrono::nanoseconds Remaining() const;

 private:
  TransportClock::time_point when_;
};

// What memory a backend can move.
struct TransportCapabilities {
  bool host_memory = false;    // buffers in ordinary host memory
  bool device_memory = false;  // buffers in GPU memory (NCCL; CUDA-aware MPI/UCX later)
};

class Transport {
 public:
  virtual ~Transport() = default;

  // This rank, in [0, world_size()). Constant for the object's lifetime; thread-safe.
  virtual int rank() const = 0;
  // Number of ranks in the world, >= 1. Constant; thread-safe.
  virtual int world_size() const = 0;
  // Backend name ("local", "mpi"). Constant; thread-safe.
  virtual std::string_view name() const = 0;
  // Constant; thread-safe.
  virtual TransportCapabilities capabilities() const = 0;

  // Variable all-to-all of bytes (collective). Rank r sends send[send_offsets[p], +send_counts[p])
  // to each rank p (itself included) and receives what rank p sent it into
  // recv[recv_offsets[p], +recv_counts[p]). All four spans have world_size() entries; counts and
  // offsets are in bytes, >= 0, and each region lies inside its buffer (else InvalidArgument,
  // detected before anything is sent, so a call wrong on every rank fails on every rank without
  // communicating). Counts must agree on both sides (recv_counts[p] on this rank ==
  // send_counts[r] on rank p; exchange them first with AllToAllCounts when only the sender knows);
  // a mismatch is reported as InvalidArgument naming the peer. Receive regions must not overlap
  // each other or the send buffer. Zero counts are fine (a message is still exchanged with every
  // peer, so every call also shows that all peers reached it).
  // Ownership: buffers stay the caller's; nothing is retained after return (see the header comment
  // for abandoned sends after an error). Blocking: returns when all data has been received and the
  // send buffer may be reused, or on error.
  // Errors: InvalidArgument (bad spans or count mismatch), DeadlineExceeded (names the ranks whose
  // data or acknowledgement is still missing), Unavailable (names dead ranks), Internal (backend
  // failure, with the backend's error text). On error the contents of recv are unspecified.
  virtual Status AllToAllV(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                           std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                           std::span<const int64_t> recv_counts,
                           std::span<const int64_t> recv_offsets, Deadline deadline) = 0;

  // Variable all-to-all whose receive sizes are upper bounds (collective; one exchange where
  // AllToAllV would need the counts first). Like AllToAllV, except: recv_capacity[p] is the most
  // rank p may send this rank (its region is recv[recv_offsets[p], +recv_capacity[p])), and
  // recv_sizes[p] (world_size() entries, written on success) gets what rank p actually sent,
  // <= recv_capacity[p]; bytes of a region past recv_sizes[p] are unspecified. This rank's own
  // part needs send_counts[r] <= recv_capacity[r]. Every capacity and every message is at most
  // kMaxBoundedMessageBytes (InvalidArgument before communicating). The sender must know the
  // receiver's bound (e.g. agreed in an earlier call): a message longer than the receiver's
  // capacity fails the call on the receiver as InvalidArgument naming the sender (its bytes are
  // dropped; the sender's call may succeed). Ordering, blocking, ownership and the other errors
  // as AllToAllV; AllToAllV and AllToAllVBounded calls share one collective sequence, and every
  // rank must call the same one of the two at the same position. On error recv and recv_sizes
  // are unspecified.
  virtual Status AllToAllVBounded(std::span<const std::byte> send,
                                  std::span<const int64_t> send_counts,
                                  std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                                  std::span<const int64_t> recv_capacity,
                                  std::span<const int64_t> recv_offsets,
                                  std::span<int64_t> recv_sizes, Deadline deadline) = 0;
  // Largest message or capacity AllToAllVBounded accepts (one MPI message per peer).
  static constexpr int64_t kMaxBoundedMessageBytes = int64_t{1} << 30;

  // Collective exchange of one int64 per peer: recv_counts[p] = the send_counts[r] of rank p.
  // Both spans have world_size() entries (else InvalidArgument). Built on AllToAllV; same blocking,
  // ordering and error behaviour.
  Status AllToAllCounts(std::span<const int64_t> send_counts, std::span<int64_t> recv_counts,
                        Deadline deadline);

  // Point-to-point send of `data` to rank `peer` with `tag` (0 <= tag <= kMaxTag); peer != rank().
  // Messages between a pair of ranks with the same tag arrive in order; different tags are
  // independent. Blocking: returns once `data` may be reused, which may be before or after the
  // matching Recv starts (the local backend buffers; MPI waits for the receiver on large
  // messages, so two ranks that both Send large messages to each other first can stall until the
  // deadline). Messages are limited to 2^31-1 bytes (MPI counts are int).
  // Errors: InvalidArgument (peer/tag/size), DeadlineExceeded / Unavailable naming `peer`.
  virtual Status Send(int peer, int tag, std::span<const std::byte> data, Deadline deadline) = 0;

  // Receives the next message from `peer` with `tag` into `data`; returns its size in bytes
  // (<= data.size()). A message longer than `data` is consumed and reported as OutOfRange.
  // Blocking until a message arrives or the deadline passes. Errors: InvalidArgument (peer/tag),
  // OutOfRange (too long), DeadlineExceeded / Unavailable naming `peer`.
  virtual StatusOr<int64_t> Recv(int peer, int tag, std::span<std::byte> data,
                                 Deadline deadline) = 0;

  // Collective: returns when every rank has entered the barrier. Errors: DeadlineExceeded naming
  // the ranks not (yet) seen, Unavailable naming dead ranks.
  virtual Status Barrier(Deadline deadline) = 0;

  // Largest user tag accepted by every backend (MPI guarantees at least 32767).
  static constexpr int kMaxTag = 32767;

  // True when the backend already knows, without communicating, that rank `peer` (this rank
  // included) is dead: for waits outside the transport (the dispatcher's shared-memory path) to
  // report Unavailable at once. The default (MPI, ...) knows nothing: false. Thread-safe, cheap.
  virtual bool KnownDead(int peer) const {
    (void)peer;
    return false;
  }
};

// Helpers shared by backends (transport.cc).
namespace transport_internal {

// "2" or "1, 3" or "0, 1, 2, ... (+61 more)".
std::string FormatRanks(const std::vector<int>& ranks);
// Validates the spans of an AllToAllV call (sizes, signs, bounds) for `op` on `rank`.
Status ValidateAllToAllV(std::string_view op, int rank, int world_size, size_t send_size,
                         std::span<const int64_t> send_counts,
                         std::span<const int64_t> send_offsets, size_t recv_size,
                         std::span<const int64_t> recv_counts,
                         std::span<const int64_t> recv_offsets);
// ValidateAllToAllV for AllToAllVBounded (`recv_counts` are the capacities), plus the
// recv_sizes length, send_counts[rank] <= capacity and the kMaxBoundedMessageBytes limit.
Status ValidateAllToAllVBounded(std::string_view op, int rank, int world_size, size_t send_size,
                                std::span<const int64_t> send_counts,
                                std::span<const int64_t> send_offsets, size_t recv_size,
                                std::span<const int64_t> recv_capacity,
                                std::span<const int64_t> recv_offsets, size_t recv_sizes_size);
// Validates peer and tag of a Send/Recv.
Status ValidatePeerTag(std::string_view op, int rank, int world_size, int peer, int tag);
// "<op> on rank R: deadline exceeded after N ms waiting for rank(s) ...".
Status PeerDeadlineError(std::string_view op, int rank, const std::vector<int>& peers,
                         TransportClock::time_point started, std::string_view detail = {});
// "<op> on rank R: rank(s) ... unavailable (<why>)".
Status PeerUnavailableError(std::string_view op, int rank, const std::vector<int>& peers,
                            std::string_view why);

// Base of the backends whose collectives are one pairwise exchange (every peer gets a message,
// empty ones included, so each call also proves that every peer reached it): AllToAllV validates
// its spans and calls Exchange; Barrier is an exchange of empty messages (unlike MPI_Ibarrier it
// can be abandoned at a deadline and names the missing ranks).
class PairwiseExchangeTransport : public Transport {
 public:
  Status AllToAllV(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                   std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                   std::span<const int64_t> recv_counts, std::span<const int64_t> recv_offsets,
                   Deadline deadline) override;
  Status AllToAllVBounded(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                          std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                          std::span<const int64_t> recv_capacity,
                          std::span<const int64_t> recv_offsets, std::span<int64_t> recv_sizes,
                          Deadline deadline) override;
  Status Barrier(Deadline deadline) override;

 protected:
  // One all-pairs exchange of validated spans; `what` names the operation in errors. With empty
  // `recv_sizes` every receive must get exactly recv_counts[p] bytes; otherwise recv_counts are
  // capacities (each <= kMaxBoundedMessageBytes, one message per peer) and recv_sizes[p] gets what
  // rank p sent (this rank's own entry included).
  virtual Status Exchange(const char* what, std::span<const std::byte> send,
                          std::span<const int64_t> send_counts,
                          std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                          std::span<const int64_t> recv_counts,
                          std::span<const int64_t> recv_offsets, std::span<int64_t> recv_sizes,
                          Deadline deadline) = 0;

  // Exchange's message from `rank` to itself: copied from send to recv (recv_sizes[rank] set when
  // bounded). False, copying nothing, when unbounded and this rank's send and receive counts for
  // itself differ (the caller reports it). Spans validated as for Exchange.
  static bool CopyOwnMessage(int rank, std::span<const std::byte> send,
                             std::span<const int64_t> send_counts,
                             std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                             std::span<const int64_t> recv_counts,
                             std::span<const int64_t> recv_offsets, std::span<int64_t> recv_sizes);
};

}  // namespace transport_internal
}  // namespace switchyard
