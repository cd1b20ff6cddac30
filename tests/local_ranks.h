// Runs a body on every rank of a LocalWorld, one thread per rank (tests of collectives).
#pragma once

#include <functional>
#include <thread>
#include <vector>

#include "transport/local/local_transport.h"
#include "transport/transport.h"

namespace switchyard::testing {

// Runs body(rank, transport) on one thread per rank in `ranks` and joins them.
inline void RunRanks(LocalWorld& world, const std::vector<int>& ranks,
                     const std::function<void(int, Transport&)>& body) {
  std::vector<std::thread> threads;
  for (int r : ranks) {
    threads.emplace_back([&world, &body, r] { body(r, world.transport(r)); });
  }
  for (std::thread& thread : threads) thread.join();
}

inline std::vector<int> AllRanks(int n) {
  std::vector<int> ranks(n);
  for (int r = 0; r < n; ++r) ranks[r] = r;
  return ranks;
}

}  // namespace switchyard::testing
