// Fault driver for dispatch/combine over a multi-process backend (mpi, or ucx bootstrapped by
// mpirun), run under mpirun by fault_mpi_run.sh:
//   fault_mpi_test --fault stall|kill --at dispatch|mid|combine [--deadline-ms N] [--backend
//   mpi|ucx]
// The last rank is the victim: it sleeps past the deadline, or raise(SIGKILL)s itself, just
// before the chosen AllToAllV of its round (fault_dispatch_cases.h; "mid" = the remainder
// exchange of a two-exchange dispatch). Every survivor prints one line
//   FAULT PASS rank R: <its error>            or            FAULT FAIL rank R: <what is wrong>
// and exits 0/1. With a dead peer MPI_Finalize cannot complete (Open MPI 4.1 has no ULFM), so
// after a kill survivors leave with _exit once their line is flushed; the script judges by these
// lines, not by mpirun's exit status. Hard limit: an alarm (the script adds `timeout`).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "fault_dispatch_cases.h"
#include "shm_probe.h"
#include "transport/transport_factory.h"

using namespace switchyard;

int main(int argc, char** argv) {
  testing::ArmWatchdog(60);
  std::string fault, at, backend = "mpi";
  int deadline_ms = 1000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i];
    if (arg == "--fault") fault = argv[i + 1];
    if (arg == "--at") at = argv[i + 1];
    if (arg == "--deadline-ms") deadline_ms = std::atoi(argv[i + 1]);
    if (arg == "--backend") backend = argv[i + 1];
  }
  if ((fault != "stall" && fault != "kill") ||
      (at != "dispatch" && at != "mid" && at != "combine" && at != "shm-dispatch" &&
       at != "shm-combine") ||
      deadline_ms <= 0 || (backend != "mpi" && backend != "ucx")) {
    std::fprintf(stderr,
                 "usage: fault_mpi_test --fault stall|kill --at "
                 "dispatch|mid|combine|shm-dispatch|shm-combine "
                 "[--deadline-ms N] [--backend mpi|ucx]\n");
    return 2;
  }
  auto created = CreateTransport(backend == "ucx" ? TransportKind::kUcx : TransportKind::kMpi);
  if (!created.ok()) {
    std::printf("FAULT SKIP: %s\n", created.status().ToString().c_str());
    return created.status().code() == StatusCode::kUnimplemented ? 0 : 1;
  }
  std::unique_ptr<Transport> t = std::move(*created);
  const int me = t->rank(), n = t->world_size();
  testing::FaultScenario sc;
  sc.victim = n - 1;
  sc.deadline = std::chrono::milliseconds(deadline_ms);
  if (at == "mid") {  // two exchanges: eager prefix, then the remainder
    sc.hidden = 2048;
    sc.tokens = 64;
  }
  sc.at_call = at == "dispatch" ? 0 : (at == "mid" ? 1 : (sc.hidden >= 1024 ? 2 : 1));
  if (at.rfind("shm-", 0) == 0) {  // the shared-memory path: before its Dispatch / Combine
    sc.shared_memory = true;
    sc.at_call = at == "shm-dispatch" ? 0 : 1;
    if (!testing::ShmUnusable().empty()) {
      std::printf("FAULT SKIP: %s\n", testing::ShmUnusable().c_str());
      return 0;
    }
  }
  const bool kill = fault == "kill";
  const testing::FaultOutcome o = testing::RunFaultRound(*t, sc, [&] {
    if (kill) {
      std::fflush(stdout);
      raise(SIGKILL);
    }
    std::this_thread::sleep_for(sc.deadline + std::chrono::milliseconds(500));
  });
  int rc = 0;
  if (me != sc.victim) {
    // A dead peer: shared-memory MPI has no failure detector, so the survivors see the deadline;
    // UCX in its default PEER error mode reports Unavailable.
    const std::string problem =
        testing::CheckSurvivor(o, sc, {StatusCode::kDeadlineExceeded, StatusCode::kUnavailable},
                               /*slack_s=*/2.0);
    std::printf("FAULT %s rank %d: %s (%.3f s)\n", problem.empty() ? "PASS" : "FAIL", me,
                problem.empty() ? o.status.ToString().c_str() : problem.c_str(), o.elapsed_s);
    rc = problem.empty() ? 0 : 1;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  if (kill) {
    // Linger a little so that a survivor still waiting does not see this one leave as well.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    _exit(rc);
  }
  t.reset();
  const Status shutdown = ShutdownTransports();
  if (!shutdown.ok()) {
    std::printf("FAULT FAIL rank %d: shutdown: %s\n", me, shutdown.ToString().c_str());
    rc = 1;
  }
  return rc;
}
