// Engine: generation over a Model with a KV cache — batched prefill (chunked to the step token
// budget), then batched decode, one sampler per request.
//
// All requests of a Generate call run together: every step carries the decode token of each
// running request plus as much pending prompt as the budget allows. Blocking; one Generate at a
// time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/runtime_config.h"
#include "common/status.h"
#include "model/expert_runner.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/sampler.h"

namespace switchyard {

struct GenerationRequest {
  std::vector<int32_t> prompt;  // token ids, non-empty
  int64_t max_new_tokens = 16;
  SamplingParams sampling;
  bool ignore_eos = false;  // keep going past the model's EOS token
};

struct GenerationResult {
  std::vector<int32_t> tokens;             // generated ids
  std::vector<std::vector<float>> logits;  // per generated token, when asked for
  std::string finish_reason;               // "length" or "stop"
  double time_to_first_token_s = 0;
};

struct GenerationStats {
  int64_t steps = 0;
  int64_t prompt_tokens = 0;
  int64_t generated_tokens = 0;
  double prefill_seconds = 0;  // steps that carried prompt tokens
  double decode_seconds = 0;   // steps with decode tokens only
};

class Engine {
 public:
  // Loads config.json and weights from `model_dir` and runs experts in-process.
  static StatusOr<std::unique_ptr<Engine>> Load(const std::string& model_dir,
                                                const RuntimeConfig& runtime);
  // Uses an existing model and expert runner (both must outlive the engine).
  Engine(const Model* model, ExpertRunner* experts, const RuntimeConfig& runtime);

  // Checks every request first (ids in the vocabulary, lengths within max_seq_len, sampling
  // parameters): a bad request fails the call before any compute, naming its index.
  StatusOr<std::vector<GenerationResult>> Generate(const std::vector<GenerationRequest>& requests,
                                                   bool keep_logits = false,
                                                   GenerationStats* stats = nullptr);

  const Model& model() const { return *model_; }
  const KvCache& cache() const { return *cache_; }

 private:
  std::unique_ptr<Model> owned_model_;
  std::unique_ptr<ExpertRunner> owned_experts_;
  const Model* model_;
  ExpertRunner* experts_;
  RuntimeConfig runtime_;
  std::unique_ptr<KvCache> cache_;
};

}  // namespace switchyard
