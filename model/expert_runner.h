// ExpertRunner: what an MoE layer calls to run its routed experts. The model computes routing;
// the runner maps each (token, k) to an expert, runs it, and returns the weighted sum. The local
// runner computes in-process; a distributed runner dispatches tokens to the ranks owning their
// experts and combines the results. The forward pass is the same for both.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/fp4_grouped.h"
#include "model/model_config.h"
#include "model/weights.h"

namespace switchyard {

class ExpertRunner {
 public:
  virtual ~ExpertRunner() = default;
  // hidden: [num_tokens, hidden]; topk_idx / topk_weights: [num_tokens, num_topk] (logical expert
  // ids). Writes out[num_tokens, hidden] = Σ_k weight · Expert_{idx}(hidden). Called for every MoE
  // layer of every step, also with num_tokens == 0 (distributed runners join collectives then).
  // Blocking; not thread-safe (one forward pass at a time).
  virtual Status Run(int64_t layer, const float* hidden, int64_t num_tokens,
                     const int32_t* topk_idx, const float* topk_weights, float* out) = 0;
};

// Runs experts from in-process weights. Results do not depend on the thread count. When every
// routed expert of a layer is FP4, the layer's experts run in one grouped call
// (kernels/cpu/fp4_grouped.h; activation mode from SWITCHYARD_FP4_ACTIVATIONS).
class LocalExpertRunner : public ExpertRunner {
 public:
  LocalExpertRunner(const ModelConfig& config, const ModelWeights& weights);
  Status Run(int64_t layer, const float* hidden, int64_t num_tokens, const int32_t* topk_idx,
             const float* topk_weights, float* out) override;
  // Tokens routed to each expert by the last Run, per layer (load statistics).
  const std::vector<int64_t>& LastCounts() const { return counts_; }

 private:
  const ModelConfig& config_;
  const ModelWeights& weights_;
  std::vector<int64_t> counts_;
  std::vector<float> gathered_, results_, scratch_;
  std::vector<cpu::Fp4ExpertMlp> fp4_experts_;
  cpu::Fp4GroupedWorkspace fp4_workspace_;
};

// out[n, hidden] = down(silu(gate x) * up x) for n tokens, on the calling thread.
// scratch holds 2 * n * intermediate floats.
void RunMlpSerial(const MlpWeights& mlp, const float* x, int64_t n, float* scratch, float* out);
// Same, parallel inside each product (FP4 experts: the grouped kernel with one expert; it keeps a
// thread_local workspace, so concurrent callers on different threads are safe).
void RunMlp(const MlpWeights& mlp, const float* x, int64_t n, float* scratch, float* out);

}  // namespace switchyard
