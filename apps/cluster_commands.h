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

// Coordinator (also `run` with a cluster): starts or accepts the workers, runs every request of
// the JSONL file, writes one JSON line per request (an "error" line for requests a failure
// stopped), prints throughput. Returns the process exit code (0 ok, 1 failure, 2 bad input).
int RunCoordinatorCommand(const RuntimeConfig& runtime, const ClusterCommandFlags& flags);

// One worker process: finds the coordinator (MPI broadcast under mpirun/srun, else --coordinator
// or cluster.coordinator_address:control_port), serves until shutdown. Returns the exit code.
int RunWorkerCommand(const RuntimeConfig& runtime, const ClusterCommandFlags& flags);

}  // namespace switchyard
