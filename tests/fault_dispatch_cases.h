// Fault tests of MoE dispatch/combine, written once for every backend: one rank (the victim)
// stalls or dies at a chosen AllToAllV call of its round; every other rank must return an error
// naming it (DeadlineExceeded or Unavailable) within the deadline. The victim's misbehaviour is an
// action run by a transport decorator (dispatch_fault_transport.h) just before that call: a sleep
// past the deadline, LocalWorld::Kill, or raise(SIGKILL) in an MPI process. No gtest here, so the
// MPI driver (fault_mpi_test.cc) can print its own report.
#pragma once

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "dispatch_fault_transport.h"
#include "transport/dispatch.h"

namespace switchyard::testing {

// Hard limit for a whole test process: SIGALRM's default action ends it (a hang is a failure,
// never a stuck CI job).
inline void ArmWatchdog(unsigned seconds) { alarm(seconds); }

struct FaultScenario {
  int victim = 0;
  // The victim's AllToAllV call (on its dispatcher's transport) at which `act` runs. Small
  // messages: 0 = the dispatch, 1 = the combine; large ones (hidden >= 1024, 64 tokens): 0 = the
  // dispatch's eager exchange, 1 = its remainder, 2 = the combine.
  int at_call = 0;
  int64_t hidden = 64;
  int64_t tokens = 8;
  std::chrono::milliseconds deadline{500};
  // The dispatcher's shared-memory path (SharedMemoryMode::kRequire) instead of the transport:
  // one good round first (it sets the channel up over the transport), then `act` runs on the
  // victim just before its Dispatch (at_call 0) or its Combine (at_call 1) of the second round.
  bool shared_memory = false;
};

struct FaultOutcome {
  Status status;         // the first error of the round (dispatch, else combine), or OK
  double elapsed_s = 0;  // from the start of the failing call to its return
};

// One dispatch -> identity experts -> combine round on rank t.rank() of a world where every token
// goes top-2 to experts on two ranks; `act` runs on the victim only. Every call gets
// scenario.deadline.
inline FaultOutcome RunFaultRound(Transport& inner, const FaultScenario& sc,
                                  const std::function<void()>& act) {
  FaultyTransport t(inner);
  const int n = t.world_size(), me = t.rank();
  if (me == sc.victim && !sc.shared_memory) t.OnCall(sc.at_call, act);
  const ExpertPlacement placement = ExpertPlacement::Contiguous(2 * n, n);
  std::vector<int32_t> idx;
  std::vector<float> weights, x(sc.tokens * sc.hidden);
  for (int64_t tok = 0; tok < sc.tokens; ++tok) {
    idx.push_back(static_cast<int32_t>(2 * (tok % n)));
    idx.push_back(static_cast<int32_t>(2 * ((tok + 1) % n) + 1));
    weights.push_back(0.5f);
    weights.push_back(0.5f);
  }
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.001f * static_cast<float>(i % 1000);
  auto layout = ComputeDispatchLayout(idx.data(), weights.data(), sc.tokens, 2, placement,
                                      ReplicaPolicy::kBalance, me);
  FaultOutcome o;
  if (!layout.ok()) {
    o.status = layout.status();
    return o;
  }
  DispatcherOptions options;
  options.shared_memory = sc.shared_memory ? SharedMemoryMode::kRequire : SharedMemoryMode::kOff;
  Dispatcher dispatcher(options);
  ReceivedTokens received;
  std::vector<float> row_out, out(x.size());
  if (sc.shared_memory) {  // the good round
    const Deadline d = Deadline::After(std::chrono::seconds(20));
    o.status =
        dispatcher.Dispatch(t, 0, *layout, x.data(), sc.hidden, PayloadDtype::kBF16, d, &received);
    if (o.status.ok()) {
      row_out = received.rows;
      o.status = dispatcher.Combine(t, row_out.data(), PayloadDtype::kBF16, d, out.data());
    }
    if (!o.status.ok()) return o;
    if (!dispatcher.last_traffic().combine_shared_memory) {
      o.status = InternalError("the good round did not go through shared memory");
      return o;
    }
  }
  const bool act_here = me == sc.victim && sc.shared_memory;
  auto start = TransportClock::now();
  auto seconds = [&start] {
    return std::chrono::duration<double>(TransportClock::now() - start).count();
  };
  if (act_here && sc.at_call == 0) act();
  o.status = dispatcher.Dispatch(t, 1, *layout, x.data(), sc.hidden, PayloadDtype::kBF16,
                                 Deadline::After(sc.deadline), &received);
  o.elapsed_s = seconds();
  if (!o.status.ok()) return o;
  row_out = received.rows;
  if (act_here && sc.at_call == 1) act();
  start = TransportClock::now();
  o.status = dispatcher.Combine(t, row_out.data(), PayloadDtype::kBF16,
                                Deadline::After(sc.deadline), out.data());
  o.elapsed_s = seconds();
  return o;
}

// Whether `message` names `rank`: "rank R" or a list "ranks A, B, R" (FormatRanks).
inline bool NamesRank(const std::string& message, int rank) {
  static const std::regex kRanks("ranks? ([0-9]+(?:, [0-9]+)*)");
  for (auto it = std::sregex_iterator(message.begin(), message.end(), kRanks);
       it != std::sregex_iterator(); ++it) {
    std::stringstream list((*it)[1].str());
    std::string item;
    while (std::getline(list, item, ',')) {
      if (std::stoi(item) == rank) return true;
    }
  }
  return false;
}

// "" when a survivor's outcome is right: an error of an allowed kind that names the victim
// (alone or in a list: another survivor that already left may be named too), returned within the
// deadline plus `slack_s`; else what is wrong.
inline std::string CheckSurvivor(const FaultOutcome& o, const FaultScenario& sc,
                                 const std::vector<StatusCode>& allowed, double slack_s) {
  if (o.status.ok()) return "returned OK although rank " + std::to_string(sc.victim) + " failed";
  bool code_ok = false;
  for (StatusCode c : allowed) code_ok |= o.status.code() == c;
  if (!code_ok) return "unexpected error kind: " + o.status.ToString();
  if (!NamesRank(o.status.message(), sc.victim)) {
    return "error does not name rank " + std::to_string(sc.victim) + ": " + o.status.ToString();
  }
  const double limit = std::chrono::duration<double>(sc.deadline).count() + slack_s;
  if (o.elapsed_s > limit) {
    return "took " + std::to_string(o.elapsed_s) + " s, limit " + std::to_string(limit) + " s";
  }
  return "";
}

}  // namespace switchyard::testing
