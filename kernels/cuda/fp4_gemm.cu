// Grouped FP4 expert GEMM: argument checks, expert chunking and the choice of path by the
// device's compute capability (kernels/cuda/fp4_cuda.h).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/fp4_gemm_internal.h"

namespace switchyard::cuda {

const char* Fp4GemmPathName(Fp4GemmPath path) {
  switch (path) {
    case Fp4GemmPath::kAuto:
      return "auto";
    case Fp4GemmPath::kDequantBf16:
      return "dequant-bf16";
    case Fp4GemmPath::kCublasLtNvFp4:
      return "cublaslt-nvfp4";
  }
  return "?";
}

namespace internal {

std::vector<GemmChunk> MakeChunks(const int64_t* offsets, int64_t num_experts) {
  std::vector<GemmChunk> chunks;
  for (int64_t e0 = 0; e0 < num_experts; e0 += kMaxExpertsPerLaunch) {
    GemmChunk c{};
    c.first_expert = e0;
    c.first_row = offsets[e0];
    const int64_t n = std::min<int64_t>(kMaxExpertsPerLaunch, num_experts - e0);
    c.layout.num_experts = static_cast<int32_t>(n);
    for (int64_t i = 0; i <= n; ++i) {
      c.layout.offsets[i] = static_cast<int32_t>(offsets[e0 + i] - c.first_row);
    }
    for (int64_t i = 0; i < n; ++i) {
      const int32_t t = c.layout.offsets[i + 1] - c.layout.offsets[i];
      c.max_tokens = std::max(c.max_tokens, t);
      if (t > kGemvMaxTokens) {
        ++c.large_groups;
      } else if (t > 0) {
        ++c.small_groups;
        c.min_tokens = c.min_tokens == 0 ? t : std::min(c.min_tokens, t);
        c.max_small_tokens = std::max(c.max_small_tokens, t);
      }
    }
    chunks.push_back(c);
  }
  return chunks;
}

}  // namespace internal

namespace {

Status CheckArgs(const Fp4GroupedGemmArgs& a) {
  const std::string where = "Fp4GroupedGemm: ";
  if (a.weights == nullptr) return InvalidArgumentError(where + "weights is null");
  if (a.expert_offsets == nullptr) return InvalidArgumentError(where + "expert_offsets is null");
  const Fp4ExpertWeights& w = *a.weights;
  if (w.num_experts <= 0 || w.rows <= 0 || w.cols <= 0) {
    return InvalidArgumentError(where + "weights hold no expert matrices");
  }
  if (a.total_tokens < 0 || a.total_tokens > INT32_MAX) {
    return InvalidArgumentError(where + "total_tokens " + std::to_string(a.total_tokens) +
                                " outside [0, 2^31)");
  }
  if (a.expert_offsets[0] != 0) {
    return InvalidArgumentError(
        where + "expert_offsets[0] = " + std::to_string(a.expert_offsets[0]) + ", must be 0");
  }
  for (int64_t e = 0; e < w.num_experts; ++e) {
    if (a.expert_offsets[e + 1] < a.expert_offsets[e]) {
      return InvalidArgumentError(where + "expert_offsets decrease at expert " + std::to_string(e) +
                                  " (" + std::to_string(a.expert_offsets[e]) + " -> " +
                                  std::to_string(a.expert_offsets[e + 1]) + ")");
    }
  }
  if (a.expert_offsets[w.num_experts] != a.total_tokens) {
    return InvalidArgumentError(where + "expert_offsets[" + std::to_string(w.num_experts) +
                                "] = " + std::to_string(a.expert_offsets[w.num_experts]) +
                                " != total_tokens " + std::to_string(a.total_tokens));
  }
  if (a.total_tokens > 0 && (a.x_dev == nullptr || a.y_dev == nullptr)) {
    return InvalidArgumentError(where + "x_dev or y_dev is null");
  }
  if (reinterpret_cast<uintptr_t>(a.x_dev) % 16 != 0) {
    return InvalidArgumentError(where + "x_dev is not 16-byte aligned");
  }
  if (w.rows * w.num_experts > INT32_MAX / 2) {
    return InvalidArgumentError(where + "experts x rows too large for 32-bit row indices");
  }
  return OkStatus();
}

}  // namespace

Status Fp4GroupedGemm(Fp4GemmContext& ctx, const Fp4GroupedGemmArgs& args, Fp4GemmPath* used) {
  RETURN_IF_ERROR(CheckArgs(args));
  internal::GemmContextImpl& impl = internal::ImplOf(ctx);
  const std::vector<internal::GemmChunk> chunks =
      internal::MakeChunks(args.expert_offsets, args.weights->num_experts);
  Fp4GemmPath path = args.path;
  std::string why;
  if (path == Fp4GemmPath::kCublasLtNvFp4 && !internal::CublasLtEligible(impl, args, &why)) {
    return FailedPreconditionError("Fp4GroupedGemm: cuBLASLt NVFP4 path not usable: " + why);
  }
  if (path == Fp4GemmPath::kAuto) {
    path = internal::CublasLtEligible(impl, args, &why) ? Fp4GemmPath::kCublasLtNvFp4
                                                        : Fp4GemmPath::kDequantBf16;
  }
  if (path == Fp4GemmPath::kCublasLtNvFp4) {
    const Status s = internal::RunCublasLtGemm(impl, args, chunks);
    if (s.ok() || args.path != Fp4GemmPath::kAuto || s.code() != StatusCode::kUnimplemented) {
      if (used != nullptr && s.ok()) *used = path;
      return s;
    }
    path = Fp4GemmPath::kDequantBf16;  // kAuto: cuBLASLt has no algorithm for this shape
  }
  if (args.total_tokens > 0) {
    for (const internal::GemmChunk& c : chunks) {
      RETURN_IF_ERROR(internal::LaunchDequantGemm(args, c, static_cast<cudaStream_t>(args.stream)));
    }
  }
  if (used != nullptr) *used = path;
  return OkStatus();
}

}  // namespace switchyard::cuda
