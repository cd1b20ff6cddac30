// The forward pass of a supported MoE model on CPU (FP32 compute).
//
// One call runs a batch of sequence chunks through every layer: each chunk is some consecutive
// tokens of one sequence (a whole prompt, a prefill chunk, or one decode token) starting at the
// sequence's current KV-cache length. Attention is per sequence; everything else runs on the
// whole batch. Routed experts go through an ExpertRunner, so the single-process engine and the
// distributed worker run this same code.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "common/tensor.h"
#include "model/expert_runner.h"
#include "model/kv_cache.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace switchyard {

struct SequenceChunk {
  int64_t slot = 0;         // KV-cache slot; its length is the chunk's first position
  int64_t num_tokens = 0;   // > 0
  bool all_logits = false;  // logits for every token (else only the last one)
  bool want_logits = true;  // false: no logits at all (a prefill chunk that is not the last)
};

struct ForwardBatch {
  std::vector<int32_t> tokens;  // all chunks' tokens, chunk after chunk
  std::vector<SequenceChunk> chunks;
};

class Model {
 public:
  Model(ModelConfig config, std::unique_ptr<ModelWeights> weights);

  // Runs the batch, appends its keys/values to `cache` (advancing each slot's length) and writes
  // logits rows (per chunk: all tokens, the last token, or none, in chunk order) into `logits`
  // [rows, vocab]. Errors: bad token ids or positions beyond max_seq_len (InvalidArgument /
  // ResourceExhausted, cache unchanged), or the expert runner's errors.
  Status Forward(const ForwardBatch& batch, KvCache* cache, ExpertRunner* experts,
                 Tensor* logits) const;

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return *weights_; }

 private:
  struct Step;  // per-call scratch (positions, rope tables, activations)
  void Attention(int64_t layer, const Step& step, KvCache* cache, const float* x, float* out) const;
  void AttentionGqa(int64_t layer, const Step& step, KvCache* cache, const float* x,
                    float* out) const;
  void AttentionMla(int64_t layer, const Step& step, KvCache* cache, const float* x,
                    float* out) const;
  Status Moe(int64_t layer, int64_t num_tokens, const float* x, ExpertRunner* experts,
             float* out) const;

  ModelConfig config_;
  std::unique_ptr<ModelWeights> weights_;
  std::vector<float> inv_freq_;  // RoPE inverse frequencies (rope.dim / 2)
};

// RoPE inverse frequencies as transformers computes them (FP32), YaRN included.
std::vector<float> RopeInverseFrequencies(const RopeConfig& rope);

}  // namespace switchyard
