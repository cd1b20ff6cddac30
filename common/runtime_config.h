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

struct RuntimeConfig {
  std::string log_level = "info";     // trace|debug|info|warn|error|off
  int num_threads = 0;                // compute threads; 0 = all online cores
  int64_t max_seq_len = 4096;         // KV-cache capacity per sequence, in tokens
  int64_t max_batch_tokens = 8192;    // most tokens in one forward step (prefill chunks + decodes)
  std::string expert_format = "f32";  // routed experts in memory: f32 | nvfp4 | mxfp4
};

// Reads the YAML file at `path` over `config` (keys absent from the file keep their values).
Status LoadRuntimeConfigYaml(const std::string& path, RuntimeConfig* config);
// Parses YAML text (for tests); `origin` names the source in error messages.
Status ParseRuntimeConfigYaml(const std::string& text, const std::string& origin,
                              RuntimeConfig* config);
// Applies SWITCHYARD_LOG_LEVEL, SWITCHYARD_NUM_THREADS, SWITCHYARD_MAX_SEQ_LEN,
// SWITCHYARD_MAX_BATCH_TOKENS, SWITCHYARD_EXPERT_FORMAT when set.
Status ApplyRuntimeConfigEnv(RuntimeConfig* config);
// Checks ranges; errors name the key.
Status ValidateRuntimeConfig(const RuntimeConfig& config);
// The effective configuration as YAML (what `--print-config` shows).
std::string RuntimeConfigToYaml(const RuntimeConfig& config);

}  // namespace switchyard
