// `switchyard serve`: the OpenAI-compatible HTTP server (coordinator/http) with continuous
// batching (coordinator/serving) over a cluster of workers: threads of this process (transport
// local) or worker processes (mpi, ucx, nccl) launched with it under mpirun/srun
// (`-np 1 switchyard serve : -np N switchyard worker`) or started by hand.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "common/runtime_config.h"
#include "common/status.h"

namespace switchyard {

// `serve` flags; each one that is set overrides its `serving.<key>` from the YAML.
struct ServeFlags {
  std::optional<std::string> host;
  std::optional<int> port;
  std::optional<std::string> served_model_name;
  std::optional<int64_t> max_queue;
  std::optional<int64_t> max_running;
};

// Writes the flags that are set over `serving` (and marks config->has_serving) and validates
// the result. Errors: InvalidArgument naming the flag and the serving.<key> it overrides.
Status ApplyServeFlags(const ServeFlags& flags, RuntimeConfig* config);

// Starts the cluster (apps/cluster_start.h), the serving loop and the HTTP server per
// runtime.serving, logs "listening on http://HOST:PORT", and serves until SIGINT/SIGTERM: then
// it stops HTTP (open requests are cancelled), sends `shutdown` to the workers (worker
// processes exit 0) and finalizes MPI, within serving.shutdown_timeout_ms. A worker failure
// ends every queued and running request with an error and turns /ready to 503; with
// serving.exit_on_worker_failure the process exits 1 after serving.worker_failure_grace_ms
// (else it answers 503 until a signal, then exits 1). Blocking for the life of the server.
// Returns the process exit code: 0 after a signal, 1 failure, 2 bad configuration.
int RunServeCommand(const RuntimeConfig& runtime);

}  // namespace switchyard
