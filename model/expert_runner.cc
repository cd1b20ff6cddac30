#include "model/expert_runner.h"

#include <algorithm>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/fp4_gemm.h"
#include "kernels/cpu/fp4_grouped.h"

namespace switchyard {
namespace {

// y[n, out] = x[n, in] · Wᵀ for an FP32 or FP4 projection.
template <bool kParallel>
void Project(const Linear& lin, const float* x, int64_t n, float* y) {
  if (lin.quantized()) {
    (kParallel ? cpu::Fp4MatMulTransB : cpu::Fp4MatMulTransBSerial)(x, n, lin.fp4, y,
                                                                    cpu::DefaultFp4Activations());
  } else {
    (kParallel ? cpu::MatMulTransB : cpu::MatMulTransBSerial)(x, n, lin.in(), lin.weight.data(),
                                                              lin.out(), y, nullptr);
  }
}

template <bool kParallel>
void Mlp(const MlpWeights& mlp, const float* x, int64_t n, float* scratch, float* out) {
  const int64_t inter = mlp.gate.out();
  float* gate = scratch;
  float* up = scratch + n * inter;
  Project<kParallel>(mlp.gate, x, n, gate);
  Project<kParallel>(mlp.up, x, n, up);
  cpu::SiluMul(gate, up, n * inter, gate);
  Project<kParallel>(mlp.down, gate, n, out);
}

bool AllFp4(const MlpWeights& mlp) {
  return mlp.gate.quantized() && mlp.up.quantized() && mlp.down.quantized();
}

cpu::Fp4ExpertMlp Fp4View(const MlpWeights& mlp) {
  return {&mlp.gate.fp4, &mlp.up.fp4, &mlp.down.fp4};
}

}  // namespace

void RunMlpSerial(const MlpWeights& mlp, const float* x, int64_t n, float* scratch, float* out) {
  Mlp<false>(mlp, x, n, scratch, out);
}
void RunMlp(const MlpWeights& mlp, const float* x, int64_t n, float* scratch, float* out) {
  if (AllFp4(mlp) && n > 0) {
    // One expert through the grouped kernel: its scheduling and fused SwiGLU.
    thread_local cpu::Fp4GroupedWorkspace workspace;
    const Status status = cpu::Fp4GroupedMlp({Fp4View(mlp)}, {0, n}, x, mlp.down.out(), out,
                                             cpu::DefaultFp4Activations(), &workspace);
    if (status.ok()) return;  // shapes that do not fit fall through to the generic path
  }
  Mlp<true>(mlp, x, n, scratch, out);
}

LocalExpertRunner::LocalExpertRunner(const ModelConfig& config, const ModelWeights& weights)
    : config_(config), weights_(weights) {}

Status LocalExpertRunner::Run(int64_t layer, const float* hidden, int64_t num_tokens,
                              const int32_t* topk_idx, const float* topk_weights, float* out) {
  const int64_t h = config_.hidden, k = config_.num_topk, e_count = config_.num_experts;
  const int64_t inter = config_.moe_intermediate_size;
  const auto& experts = weights_.layers[layer].experts;
  // Layout: tokens grouped by expert, in token order within an expert.
  counts_.assign(e_count, 0);
  for (int64_t i = 0; i < num_tokens * k; ++i) {
    int32_t e = topk_idx[i];
    if (e < 0 || e >= e_count) {
      return InternalError("layer " + std::to_string(layer) + ": routed to expert " +
                           std::to_string(e) + " of " + std::to_string(e_count));
    }
    if (!experts[e].loaded()) {
      return FailedPreconditionError("layer " + std::to_string(layer) + ": expert " +
                                     std::to_string(e) + " is not loaded in this process");
    }
    ++counts_[e];
  }
  std::vector<int64_t> offset(e_count + 1, 0);
  for (int64_t e = 0; e < e_count; ++e) offset[e + 1] = offset[e] + counts_[e];
  std::vector<int64_t> position(num_tokens * k);
  {
    std::vector<int64_t> fill(offset.begin(), offset.end() - 1);
    for (int64_t i = 0; i < num_tokens * k; ++i) position[i] = fill[topk_idx[i]]++;
  }
  const int64_t rows = num_tokens * k;
  gathered_.resize(rows * h);
  results_.resize(rows * h);
  for (int64_t i = 0; i < rows; ++i) {
    std::memcpy(&gathered_[position[i] * h], hidden + (i / k) * h, h * sizeof(float));
  }
  bool fp4 = true;
  for (int64_t e = 0; e < e_count; ++e) fp4 = fp4 && (counts_[e] == 0 || AllFp4(experts[e]));
  int64_t max_group = 0;
  for (int64_t e = 0; e < e_count; ++e) max_group = std::max(max_group, counts_[e]);
  if (fp4) {
    // FP4 experts: all of the layer in one grouped call ((expert, row panel) work items).
    fp4_experts_.resize(e_count);
    for (int64_t e = 0; e < e_count; ++e) {
      fp4_experts_[e] = counts_[e] > 0 ? Fp4View(experts[e]) : cpu::Fp4ExpertMlp{};
    }
    RETURN_IF_ERROR(cpu::Fp4GroupedMlp(fp4_experts_, offset, gathered_.data(), h, results_.data(),
                                       cpu::DefaultFp4Activations(), &fp4_workspace_));
  } else if (max_group <= 64) {
    // Decode-sized groups: one expert per thread.
#pragma omp parallel
    {
      std::vector<float> scratch(2 * max_group * inter);
#pragma omp for schedule(dynamic, 1)
      for (int64_t e = 0; e < e_count; ++e) {
        if (counts_[e] == 0) continue;
        RunMlpSerial(experts[e], &gathered_[offset[e] * h], counts_[e], scratch.data(),
                     &results_[offset[e] * h]);
      }
    }
  } else {
    // Prefill-sized groups: each product parallel inside.
    scratch_.resize(2 * max_group * inter);
    for (int64_t e = 0; e < e_count; ++e) {
      if (counts_[e] == 0) continue;
      RunMlp(experts[e], &gathered_[offset[e] * h], counts_[e], scratch_.data(),
             &results_[offset[e] * h]);
    }
  }
  // Combine in top-k order so the sum does not depend on scheduling.
#pragma omp parallel for schedule(static) if (num_tokens * h > 16384)
  for (int64_t t = 0; t < num_tokens; ++t) {
    float* o = out + t * h;
    std::fill(o, o + h, 0.0f);
    for (int64_t j = 0; j < k; ++j) {
      const float w = topk_weights[t * k + j];
      const float* y = &results_[position[t * k + j] * h];
      for (int64_t c = 0; c < h; ++c) o[c] += w * y[c];
    }
  }
  return OkStatus();
}

}  // namespace switchyard
