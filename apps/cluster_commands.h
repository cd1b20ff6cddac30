// The distributed commands of the CLI: `switchyard coordinator`, `switchyard worker`, and
// `switchyard run` when the configuration has a `cluster:` section.
#pragma once

#include <string>

#include "common/runtime_config.h"

namespace switchyard {

struct ClusterCommandFlags {
  std::string requests;     // JSONL requests (coordinator / run)
  std::string out;          // results file (default stdout)
  std::string coordinator;  // worker: HOST:PORT of the coordinator (when MPI does not tell)
  // coordinator: every generated token's logits as .npy [requests, max max_tokens, vocab],
  // NaN-padded (the layout of `switchyard generate --dump-logits` with several prompts).
  std::string dump_logits;
};

// Coordinator (also `run` with a cluster): starts or accepts the workers (apps/cluster_start.h),
// runs every request of the JSONL file, writes one JSON line per request (an "error" line for
// requests a failure stopped), prints throughput, then shuts the workers down within
// serving.shutdown_timeout_ms. Blocking. Returns the process exit code (0 ok, 1 failure, 2 bad
// input).
int RunCoordinatorCommand(const RuntimeConfig& runtime, const ClusterCommandFlags& flags);

// One worker process: finds the coordinator (MPI broadcast under mpirun/srun, else --coordinator
// or cluster.coordinator_address:control_port), serves until shutdown. SIGINT/SIGTERM do not
// stop it at once (launchers signal every process): it waits up to serving.shutdown_timeout_ms
// for the coordinator's `shutdown` (then exits 0), else, or at a second signal, exits 1. Call it
// from main() before anything starts threads (the signals are blocked for every thread).
// Blocking. Returns the exit code (0 after shutdown, 1 failure, 2 bad configuration).
int RunWorkerCommand(const RuntimeConfig& runtime, const ClusterCommandFlags& flags);

}  // namespace switchyard
