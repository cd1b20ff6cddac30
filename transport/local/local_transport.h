// The in-process backend: N ranks as threads of one process, sharing mailboxes.
//
// Real, not a mock: AllToAllV copies each rank's bytes into the peers' receive buffers (one copy
// into a message owned by the world, one copy out), waits on condition variables with the caller's
// deadline, detects count mismatches, and reports stalled ranks (DeadlineExceeded) and killed ranks
// (Unavailable) by number. Used by tests and as the single-machine backend.
#pragma once

#include <memory>
#include <vector>

#include "common/status.h"
#include "transport/transport.h"

namespace switchyard {

class LocalWorld {
 public:
  // A world of `world_size` ranks (1..65536). Errors: InvalidArgument.
  static StatusOr<std::unique_ptr<LocalWorld>> Create(int world_size);
  ~LocalWorld();
  LocalWorld(const LocalWorld&) = delete;
  LocalWorld& operator=(const LocalWorld&) = delete;

  int world_size() const;
  // Rank `rank`'s transport, owned by the world (valid while it lives). Each rank's object is meant
  // for one thread at a time (see transport.h); different ranks' objects may run concurrently.
  // `rank` must be in [0, world_size()) (checked: a broken invariant aborts).
  Transport& transport(int rank);

  // Simulates the death of `rank` (fault tests): every call waiting on it returns Unavailable
  // naming it at once, later calls involving it fail the same way, and its own transport returns
  // Unavailable from every call. Messages it sent before dying are still delivered. Irreversible;
  // thread-safe.
  void Kill(int rank);
  bool IsKilled(int rank) const;

  struct State;  // shared by the ranks' transports (local_transport.cc)

 private:
  explicit LocalWorld(int world_size);
  std::shared_ptr<State> state_;
  std::vector<std::unique_ptr<Transport>> transports_;
};

// A one-rank local transport that owns its world (the single-process default).
std::unique_ptr<Transport> CreateSingleRankLocalTransport();

}  // namespace switchyard
