// Generates checkpoints with random weights in the Hugging Face layout of a model family: the
// built-in default model (DeepSeek-V3-shaped), and large checkpoints for load benchmarks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "model/safetensors.h"

namespace switchyard {

struct RandomCheckpointOptions {
  DType dtype = DType::kBF16;  // F32, BF16 or F16
  uint64_t seed = 1;
  int64_t max_shard_bytes = 0;  // > 0: shard the weights and write model.safetensors.index.json
};

// Writes `<dir>/config.json` (the given text, verbatim) and the weights every tensor of that
// configuration needs, drawn from N(0, 0.02²) (norm weights around 1; router bias around 0).
// The directory is created if missing.
Status WriteRandomCheckpoint(const std::string& dir, const std::string& config_json,
                             const RandomCheckpointOptions& options);

// config.json of the built-in default model: a small DeepSeek-V3 (MLA with q_lora, YaRN, one
// dense layer then MoE layers with 32 experts in 4 groups, top-4, a shared expert).
std::string DefaultModelConfigJson();

// tokenizer.json of the built-in default model: byte-level BPE in the DeepSeek-V3 layout (its
// pre-tokenizer regexes, BOS prepended) with exactly the model's 2048 ids; BOS 0, EOS 1. Compiled
// in from model/tokenizer_default.json. Static storage; thread-safe.
std::string_view DefaultModelTokenizerJson();

// Writes the built-in default model into `dir` (BF16, two shards) with its tokenizer.json and a
// tokenizer_config.json naming BOS/EOS.
Status WriteDefaultModel(const std::string& dir);

}  // namespace switchyard
