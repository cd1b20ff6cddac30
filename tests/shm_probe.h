// Whether the dispatcher's shared-memory path can run on this machine (no gtest: also used by the
// MPI fault driver).
#pragma once

#include <chrono>
#include <string>

#include "transport/shm/peer_memory.h"
#include "transport/transport_factory.h"

namespace switchyard::testing {

// Why the dispatcher's shared memory cannot be used on this machine ("" when it can), from a
// one-rank PeerMemory: tests of the shared-memory path skip with this reason where it cannot
// (e.g. no writable /dev/shm).
inline const std::string& ShmUnusable() {
  static const std::string why = [] {
    auto world = MakeLocalWorld(1);
    if (!world.ok()) return world.status().ToString();
    std::string reason;
    auto made = PeerMemory::Create((*world)->transport(0), PeerMemory::kMinBytes,
                                   Deadline::After(std::chrono::seconds(10)), &reason);
    if (!made.ok()) return made.status().ToString();
    return *made == nullptr ? "shared memory unusable: " + reason : std::string();
  }();
  return why;
}

}  // namespace switchyard::testing
