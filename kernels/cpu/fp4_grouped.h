// Grouped FP4 expert MLP on CPU: every expert of a layer in one call. Tokens come pre-gathered per
// expert (rows offsets[e] .. offsets[e+1] of x); each expert computes
//   out = down(silu(gate x) * up x)
// with FP4 weights (fp4_gemm.h; int8 or FP32 activations). The call schedules (expert, row-panel)
// work items over the caller's OpenMP team, so several small experts and one large expert both
// use every core; SwiGLU is fused into the gate/up items.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/fp4_gemm.h"

namespace switchyard::cpu {

struct Fp4ExpertMlp {
  const Fp4Weight* gate = nullptr;  // [inter, hidden]
  const Fp4Weight* up = nullptr;    // [inter, hidden]
  const Fp4Weight* down = nullptr;  // [hidden, inter]
};

// Buffers reused across calls (grow-only). One workspace per concurrent caller.
class Fp4GroupedWorkspace {
 public:
  Fp4GroupedWorkspace();
  ~Fp4GroupedWorkspace();
  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// out[offsets[e] .. offsets[e+1], hidden] = MLP_e(x rows of expert e) for every e < experts.size().
// offsets has experts.size() + 1 non-decreasing entries starting at 0; an expert with no rows is
// skipped (its weight pointers may then be null). x and out are [offsets.back(), hidden] and must
// not overlap. Blocking; parallel over the caller's OpenMP threads; results do not depend on the
// thread count. Errors (nothing written then): InvalidArgument naming the expert for missing
// weights, mismatched shapes (gate/up [inter, hidden], down [hidden, inter]) or bad offsets.
// Not thread-safe per workspace.
Status Fp4GroupedMlp(const std::vector<Fp4ExpertMlp>& experts, const std::vector<int64_t>& offsets,
                     const float* x, int64_t hidden, float* out, Fp4Activations act,
                     Fp4GroupedWorkspace* workspace);

}  // namespace switchyard::cpu
