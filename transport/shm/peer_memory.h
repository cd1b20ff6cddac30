// PeerMemory: one POSIX shared-memory segment per rank, mapped by every rank of a world whose ranks
// all run on one host (one node of CPU ranks, or threads of one process), so that a rank can
// write straight into a peer's memory and read a peer's results in place, as DeepEP's intranode
// kernels do through NVLink buffers. Built collectively over any Transport (its AllToAllV carries
// the segment names); after that no call goes through the transport.
//
// Setup (Create, collective, the same call on every rank):
//   1. every rank publishes its identity (host name, boot id, uid, pid, pid namespace) and the
//      bytes it asks for; ranks that are not all on one host (same host name and boot id) get
//      no PeerMemory (nullptr, not an error) on every rank;
//   2. each rank creates its segment (shm_open + posix_fallocate, so a full /dev/shm is an error at
//      setup, never a SIGBUS later; the size is capped at a quarter of the free space of /dev/shm),
//      writes a random nonce into its first line, and publishes name, size and nonce;
//   3. each rank maps every peer's segment and checks size and nonce; the ranks agree (one more
//      exchange) that all of them succeeded, and each unlinks its own name (the mappings stay: no
//      name is left in /dev/shm, even if a process dies later).
// Any local failure in 2 or 3 makes every rank return nullptr (the caller falls back to the
// transport); only transport errors are errors.
//
// Liveness: when every rank runs in the same pid namespace, PeerDead(p) tells a peer process that
// has exited (kill(pid, 0) == ESRCH) so that waits can report Unavailable at once instead of
// waiting for their deadline. Threads of one process (the local backend) are never reported dead.
//
// Thread-safety: the object is immutable after Create; memory it maps is shared with the peers
// (the protocol on top decides who writes what, see transport/dispatch_shm.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "transport/transport.h"

namespace switchyard {

class PeerMemory {
 public:
  // Smallest segment Create makes (a rank that cannot get this much makes the setup fail over).
  static constexpr int64_t kMinBytes = int64_t{64} << 10;

  // Collective over `t` (three AllToAllV calls, every rank must call it at the same point).
  // `bytes`: the segment this rank wants (rounded up to 4 KiB, at least kMinBytes; capped at a
  // quarter of /dev/shm's free space: the actual size is size(rank())). Returns nullptr on every
  // rank when
  // shared memory cannot be used by all of them (why: in *why_not, if non-null, e.g. "ranks on
  // different hosts", "rank 2: shm_open: Permission denied"); a world of one rank gets a
  // PeerMemory of its own segment. Errors: the transport's (DeadlineExceeded/Unavailable naming
  // peers), InvalidArgument for bytes <= 0.
  static StatusOr<std::unique_ptr<PeerMemory>> Create(Transport& t, int64_t bytes,
                                                      Deadline deadline,
                                                      std::string* why_not = nullptr);

  PeerMemory(const PeerMemory&) = delete;
  PeerMemory& operator=(const PeerMemory&) = delete;
  ~PeerMemory();  // unmaps every segment (the names are already gone)

  int rank() const { return rank_; }
  int world_size() const { return static_cast<int>(segments_.size()); }
  // Rank r's segment as mapped in this process; size(r) bytes, 4 KiB aligned, zero-filled at
  // creation except its first 64 bytes (reserved: magic, nonce, size).
  std::byte* base(int r) const { return segments_[r].base; }
  int64_t size(int r) const { return segments_[r].bytes; }
  // First usable byte offset in every segment (after the reserved line).
  static constexpr int64_t kReservedBytes = 64;

  // True when rank r's process is known to have exited (same pid namespace: kill(pid, 0) fails
  // with ESRCH, or /proc/<pid>/stat shows a zombie not yet reaped by its launcher). A few
  // syscalls; false for this rank and for threads of this process.
  bool PeerDead(int r) const;

  // Leaves every mapping in place forever (for a caller that cannot prove that no peer still
  // writes into its memory after a failure); the destructor then unmaps nothing.
  void Leak() { leaked_ = true; }

 private:
  struct Segment {
    std::byte* base = nullptr;
    int64_t bytes = 0;
    int64_t pid = 0;
  };
  PeerMemory() = default;

  int rank_ = 0;
  bool pids_comparable_ = false;  // every rank in this pid namespace, in other processes
  bool leaked_ = false;
  std::vector<Segment> segments_;
};

}  // namespace switchyard
