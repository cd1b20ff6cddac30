// Runtime settings of one process (not the model: that comes from the checkpoint's config.json).
//
// Precedence: built-in default < YAML file < SWITCHYARD_* environment < command-line flag.
// Every key is documented in configs/README.md. Unknown keys and mistyped values are errors that
// name the key (and the file).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace switchyard {

// The `cluster:` section: a distributed deployment (coordinator + workers). Absent = the
// single-process engine. Keys documented in configs/README.md ("Cluster settings").
struct ClusterConfig {
  std::string model;                // checkpoint directory every worker reads its share of
  int workers = 1;                  // worker ranks (under mpirun: world size - 1)
  std::string transport = "local";  // data plane: local | mpi | ucx | nccl
  std::string coordinator_address = "127.0.0.1";  // where workers reach the coordinator (TCP)
  std::string bind_address = "0.0.0.0";           // what the coordinator listens on
  int control_port = 0;                           // 0 = any free port (MPI launches broadcast it)
  int racks = 1;                         // topology: racks x nodes_per_rack x gpus_per_node
  int nodes_per_rack = 1;                //   must equal workers (one worker per GPU)
  int gpus_per_node = 0;                 // 0 = workers / (racks * nodes_per_rack)
  std::string placement = "eplb";        // eplb | contiguous | path of a plan JSON
  int redundant_experts_per_worker = 0;  // EPLB replica slots per worker
  int64_t heartbeat_interval_ms = 500;
  int64_t heartbeat_timeout_ms = 10000;  // a worker silent this long is declared dead
  int64_t step_timeout_ms = 60000;       // one forward step on every worker
  int64_t register_timeout_ms = 120000;  // every worker registered and loaded
  int64_t load_window_steps = 128;       // expert-load statistics: sliding window in steps
  int64_t kv_cache_tokens = 0;           // KV positions per worker; 0 = 16 x max_seq_len
};

// The `serving:` section: settings of `switchyard serve` (the OpenAI HTTP API). Optional; its
// command-line flags override it. Keys documented in configs/README.md ("Serving settings").
struct ServingConfig {
  std::string host = "127.0.0.1";   // address the HTTP server listens on
  int port = 8000;                  // 0: ephemeral (the "listening on" log line tells which)
  std::string served_model_name;    // model id in the API; empty: the checkpoint directory's name
  int64_t max_queue = 256;          // waiting requests before 429
  int64_t max_running = 256;        // requests running at once over all workers
  int64_t request_timeout_s = 600;  // longest a request may take end to end
  bool exit_on_worker_failure = true;      // false: keep answering 503 until a signal
  int64_t worker_failure_grace_ms = 5000;  // after a worker failure: /ready 503, then exit 1
  int64_t shutdown_timeout_ms = 20000;     // bound of a clean shutdown (and a signalled worker)
  int64_t stats_interval_s = 10;           // periodic stats log line; 0: off
};

struct RuntimeConfig {
  std::string log_level = "info";     // trace|debug|info|warn|error|off
  std::string log_format = "text";    // text | json (one JSON object per line)
  int num_threads = 0;                // compute threads; 0 = all online cores
  int64_t max_seq_len = 4096;         // KV-cache capacity per sequence, in tokens
  int64_t max_batch_tokens = 8192;    // most tokens in one forward step (prefill chunks + decodes)
  std::string expert_format = "f32";  // routed experts in memory: f32 | nvfp4 | mxfp4
  bool has_cluster = false;           // the YAML had a `cluster:` section
  ClusterConfig cluster;
  bool has_serving = false;  // the YAML (or serve flags) set `serving:` keys
  ServingConfig serving;
};

// Reads the YAML file at `path` over `config` (keys absent from the file keep their values).
Status LoadRuntimeConfigYaml(const std::string& path, RuntimeConfig* config);
// Parses YAML text (for tests); `origin` names the source in error messages.
Status ParseRuntimeConfigYaml(const std::string& text, const std::string& origin,
                              RuntimeConfig* config);
// Applies SWITCHYARD_LOG_LEVEL, SWITCHYARD_NUM_THREADS, SWITCHYARD_MAX_SEQ_LEN,
// SWITCHYARD_MAX_BATCH_TOKENS, SWITCHYARD_EXPERT_FORMAT when set.
Status ApplyRuntimeConfigEnv(RuntimeConfig* config);
// Checks ranges; errors name the key (cluster keys as `cluster.<key>`, serving keys as
// `serving.<key>`).
Status ValidateRuntimeConfig(const RuntimeConfig& config);
Status ValidateClusterConfig(const ClusterConfig& cluster);
Status ValidateServingConfig(const ServingConfig& serving);
// The effective configuration as YAML (what `--print-config` shows).
std::string RuntimeConfigToYaml(const RuntimeConfig& config);

}  // namespace switchyard
