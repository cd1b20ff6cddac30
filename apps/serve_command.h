// `switchyard serve`: the OpenAI-compatible HTTP server (coordinator/http) with continuous
// batching (coordinator/serving) over a cluster of workers.
#pragma once

#include <cstdint>
#include <string>

#include "common/runtime_config.h"

namespace switchyard {

struct ServeFlags {
  std::string host = "127.0.0.1";
  int port = 8000;                // 0: ephemeral (the "listening on" log line tells which)
  std::string served_model_name;  // default: the checkpoint directory's name
  int64_t max_queue = 256;        // waiting requests before 429
  int64_t max_running = 256;      // requests running at once over all workers
};

// Starts the workers (cluster.transport local: threads of this process), the serving loop and
// the HTTP server, logs "listening on http://HOST:PORT", and serves until SIGINT/SIGTERM.
// Returns the process exit code (0 after a signal, 1 failure, 2 bad configuration).
int RunServeCommand(const RuntimeConfig& runtime, const ServeFlags& flags);

}  // namespace switchyard
