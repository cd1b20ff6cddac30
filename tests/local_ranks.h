// Runs a body on every rank of a LocalWorld, one thread per rank (tests of collectives).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <thread>
#include <vector>

#include "shm_probe.h"
#include "transport/local/local_transport.h"
#include "transport/transport.h"
#include "transport/transport_factory.h"

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

// Runs a suite case (anything with `name`, `min_world_size` and `body(Transport&)`) on every rank
// of a fresh local world of `world_size` ranks; skips when the case needs more ranks.
template <typename Case>
void RunCaseOnLocalWorld(const Case& test_case, int world_size) {
  if (world_size < test_case.min_world_size) {
    GTEST_SKIP() << test_case.name << " needs " << test_case.min_world_size << " ranks";
  }
  auto world = MakeLocalWorld(world_size);
  ASSERT_TRUE(world.ok()) << world.status().ToString();
  RunRanks(**world, AllRanks(world_size), [&](int, Transport& t) { test_case.body(t); });
}

}  // namespace switchyard::testing
