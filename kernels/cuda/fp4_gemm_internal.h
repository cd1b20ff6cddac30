// Internal to kernels/cuda: what the grouped FP4 GEMM dispatcher (fp4_gemm.cu) shares with its
// paths (fp4_gemm_dequant.cu for every GPU, fp4_gemm_sm100.cu for Blackwell cuBLASLt).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/fp4_cuda.h"

namespace switchyard::cuda::internal {

// Experts per kernel launch: their token offsets travel as a kernel parameter (no upload, no
// device allocation); larger groups are split into launches of this many experts.
inline constexpr int kMaxExpertsPerLaunch = 256;

struct ExpertLayout {
  int32_t offsets[kMaxExpertsPerLaunch + 1];  // token rows, relative to the launch's first row
  int32_t num_experts;
};

// One launch's worth of a grouped GEMM: experts [first_expert, first_expert + layout.num_experts).
struct GemmChunk {
  ExpertLayout layout;
  int64_t first_expert = 0;
  int64_t first_row = 0;         // global token row of layout.offsets[0]
  int32_t max_tokens = 0;        // largest expert group in the chunk
  int32_t small_groups = 0;      // non-empty groups with <= kGemvMaxTokens tokens
  int32_t large_groups = 0;      // groups with more
  int32_t min_tokens = 0;        // smallest non-empty small group (0: none)
  int32_t max_small_tokens = 0;  // largest small group
};

inline constexpr int kGemvMaxTokens = 16;  // largest group of the decode shapes

// Splits validated host offsets into launch chunks.
std::vector<GemmChunk> MakeChunks(const int64_t* offsets, int64_t num_experts);

// kDequantBf16 for one chunk: enqueues the decode (1..8, 9..16 tokens) and/or prefill shapes of
// the tensor-core kernel (fp4_gemm_dequant.cu).
Status LaunchDequantGemm(const Fp4GroupedGemmArgs& args, const GemmChunk& chunk, cudaStream_t s);

// Per-device state behind Fp4GemmContext.
class GemmContextImpl;
GemmContextImpl& ImplOf(Fp4GemmContext& ctx);  // the context was made by CreateFp4GemmContext

// Whether the cuBLASLt path can run this problem; if not, *why says which condition failed.
bool CublasLtEligible(const GemmContextImpl& ctx, const Fp4GroupedGemmArgs& args, std::string* why);
// kCublasLtNvFp4 for the whole problem. Unimplemented (with the shape) when cuBLASLt returns no
// algorithm, so that kAuto can fall back.
Status RunCublasLtGemm(GemmContextImpl& ctx, const Fp4GroupedGemmArgs& args,
                       const std::vector<GemmChunk>& chunks);

}  // namespace switchyard::cuda::internal
