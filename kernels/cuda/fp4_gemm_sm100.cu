// kCublasLtNvFp4 path of the grouped FP4 expert GEMM (Blackwell, compute capability >= 10.0) and
// the per-device context. Activations are quantized to NVFP4 on the device with a global scale
// from their amax (fp4::NvFp4GlobalScale, the same header code as the CPU codec), block scales
// written straight into the cuBLASLt 128x4 layout per expert; then one block-scaled matmul per
// non-empty expert: TN (A = W_e [N, K], B = x_e [T, K], both K-contiguous), FP32 compute,
// alpha = act_global_scale * W_e.global_scale read from device memory. The installed cuBLASLt
// (13.1) has no grouped block-scaled API (shared/reference/specs.md §2.6).
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/fp4_device.cuh"
#include "kernels/cuda/fp4_gemm_internal.h"
#include "kernels/fp4_scale_layout.h"

namespace switchyard::cuda::internal {

class GemmContextImpl final : public Fp4GemmContext {
 public:
  ~GemmContextImpl() override {
    if (lt != nullptr) cublasLtDestroy(lt);
  }
  int compute_capability() const override { return cc; }

  int cc = 0;
  cublasLtHandle_t lt = nullptr;  // created on CC >= 10.0 only
  DeviceBuffer workspace, act_packed, act_scales, amax, alpha, zero;
};

GemmContextImpl& ImplOf(Fp4GemmContext& ctx) { return static_cast<GemmContextImpl&>(ctx); }

namespace {

constexpr int64_t kWorkspaceBytes = 32 << 20;

Status LtStatus(cublasStatus_t st, const std::string& what) {
  if (st == CUBLAS_STATUS_SUCCESS) return OkStatus();
  return InternalError(what + ": " + cublasLtGetStatusName(st) + ": " +
                       cublasLtGetStatusString(st));
}

Status Grow(DeviceBuffer* buf, int64_t bytes, const char* what) {
  if (buf->bytes() >= bytes) return OkStatus();
  *buf = DeviceBuffer();  // free first: the old contents are scratch
  ASSIGN_OR_RETURN(*buf, DeviceBuffer::Alloc(bytes + bytes / 4, what));
  return OkStatus();
}

// Token rows of the chunk's experts plus where each expert's swizzled scales start.
struct ActLayout {
  ExpertLayout experts;
  int32_t scale_base[kMaxExpertsPerLaunch + 1];
};

__global__ void AmaxKernel(const uint16_t* __restrict__ x, int64_t n, unsigned* amax_bits) {
  unsigned m = 0;  // |bf16| as float bits: ordered like the values (NaN above inf)
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    m = max(m, (static_cast<unsigned>(x[i]) << 16) & 0x7FFFFFFFu);
  }
  m = __reduce_max_sync(0xFFFFFFFFu, m);
  if ((threadIdx.x & 31) == 0) atomicMax(amax_bits, m);
}

__device__ __forceinline__ float ActGlobalScale(const unsigned* amax_bits) {
  return fp4::NvFp4GlobalScale(__uint_as_float(*amax_bits));
}

__global__ void AlphaKernel(const unsigned* amax_bits, const float* wgs, int n, float* alpha) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) alpha[i] = ActGlobalScale(amax_bits) * wgs[i];
}

// One thread per (row, 16-element block) of the chunk's activations.
__global__ void ActQuantKernel(ActLayout layout, const uint16_t* __restrict__ x, int K,
                               const unsigned* amax_bits, uint8_t* __restrict__ packed,
                               uint8_t* __restrict__ scales) {
  const int scale_cols = K / fp4::kNvFp4Block;
  const int64_t rows = layout.experts.offsets[layout.experts.num_experts];
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= rows * scale_cols) return;
  const int row = static_cast<int>(idx / scale_cols), c = static_cast<int>(idx % scale_cols);
  int lo = 0, hi = layout.experts.num_experts - 1;  // last expert whose first row <= row
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (layout.experts.offsets[mid] <= row) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  float v[fp4::kNvFp4Block];
  const uint16_t* src = x + static_cast<int64_t>(row) * K + c * fp4::kNvFp4Block;
#pragma unroll
  for (int i = 0; i < fp4::kNvFp4Block; ++i) v[i] = Bf16ToFloat(src[i]);
  const int64_t at = layout.scale_base[lo] +
                     fp4::SwizzledScaleOffset(row - layout.experts.offsets[lo], c, scale_cols);
  scales[at] =
      fp4::NvFp4QuantizeBlock(v, ActGlobalScale(amax_bits), packed + idx * (fp4::kNvFp4Block / 2));
}

template <typename T, typename Destroy>
struct LtHandle {
  T h = nullptr;
  Destroy destroy;
  explicit LtHandle(Destroy d) : destroy(d) {}
  ~LtHandle() {
    if (h != nullptr) destroy(h);
  }
};

template <typename V>
Status SetDesc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const V& v,
               const char* name) {
  return LtStatus(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof v),
                  std::string("cublasLtMatmulDescSetAttribute ") + name);
}

}  // namespace

bool CublasLtEligible(const GemmContextImpl& ctx, const Fp4GroupedGemmArgs& args,
                      std::string* why) {
  const Fp4ExpertWeights& w = *args.weights;
  if (ctx.cc < 100) {
    *why = "compute capability " + std::to_string(ctx.cc / 10) + "." + std::to_string(ctx.cc % 10) +
           " < 10.0 (no FP4 tensor cores)";
  } else if (ctx.lt == nullptr) {
    *why = "no cuBLASLt handle";
  } else if (w.format != cpu::Fp4Format::kNvFp4) {
    *why = "weights are MXFP4 (this path is NVFP4 only)";
  } else if (!w.swizzled) {
    *why = "weights were uploaded without swizzled scales";
  } else if (w.layout != Fp4CodeLayout::kPacked) {
    *why = "weights were uploaded in the kMmaPairs code layout (kDequantBf16 only)";
  } else if (w.cols % 32 != 0 || w.rows % 16 != 0) {
    *why = "shape [" + std::to_string(w.rows) + ", " + std::to_string(w.cols) +
           "]: K must be a multiple of 32 and N of 16 (16-byte alignment)";
  } else if (reinterpret_cast<uintptr_t>(args.y_dev) % 16 != 0) {
    *why = "y_dev is not 16-byte aligned";
  } else {
    return true;
  }
  return false;
}

Status RunCublasLtGemm(GemmContextImpl& ctx, const Fp4GroupedGemmArgs& args,
                       const std::vector<GemmChunk>& chunks) {
  const Fp4ExpertWeights& w = *args.weights;
  const int64_t N = w.rows, K = w.cols, E = w.num_experts, scale_cols = K / fp4::kNvFp4Block;
  auto stream = static_cast<cudaStream_t>(args.stream);
  if (args.total_tokens == 0) return OkStatus();

  // Swizzled activation scales: expert e at base[e], padded to 128 rows.
  std::vector<int64_t> base(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t t = args.expert_offsets[e + 1] - args.expert_offsets[e];
    base[e + 1] = base[e] + (t > 0 ? fp4::SwizzledScaleBytes(t, scale_cols) : 0);
  }
  if (base[E] > INT32_MAX) return InvalidArgumentError("Fp4GroupedGemm: too many activation rows");
  RETURN_IF_ERROR(Grow(&ctx.act_packed, args.total_tokens * K / 2, "NVFP4 activations"));
  RETURN_IF_ERROR(Grow(&ctx.act_scales, base[E], "NVFP4 activation scales"));
  RETURN_IF_ERROR(Grow(&ctx.alpha, E * static_cast<int64_t>(sizeof(float)), "per-expert alpha"));
  auto* amax = ctx.amax.as<unsigned>();
  SY_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(amax, 0, sizeof(unsigned), stream), "amax reset");
  SY_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(ctx.act_scales.data(), 0, base[E], stream),
                          "activation scale padding");
  AmaxKernel<<<264, 256, 0, stream>>>(args.x_dev, args.total_tokens * K, amax);
  RETURN_IF_ERROR(LaunchStatus("activation amax kernel"));
  AlphaKernel<<<static_cast<unsigned>((E + 255) / 256), 256, 0, stream>>>(
      amax, w.global_scales.as<float>(), static_cast<int>(E), ctx.alpha.as<float>());
  RETURN_IF_ERROR(LaunchStatus("alpha kernel"));
  for (const GemmChunk& c : chunks) {
    ActLayout layout;
    layout.experts = c.layout;
    for (int i = 0; i <= c.layout.num_experts; ++i) {
      layout.scale_base[i] = static_cast<int32_t>(base[c.first_expert + i] - base[c.first_expert]);
    }
    const int64_t blocks = int64_t{c.layout.offsets[c.layout.num_experts]} * scale_cols;
    if (blocks == 0) continue;
    ActQuantKernel<<<static_cast<unsigned>((blocks + 255) / 256), 256, 0, stream>>>(
        layout, args.x_dev + c.first_row * K, static_cast<int>(K), amax,
        ctx.act_packed.as<uint8_t>() + c.first_row * K / 2,
        ctx.act_scales.as<uint8_t>() + base[c.first_expert]);
    RETURN_IF_ERROR(LaunchStatus("activation NVFP4 quantize kernel"));
  }

  LtHandle<cublasLtMatmulDesc_t, decltype(&cublasLtMatmulDescDestroy)> desc(
      &cublasLtMatmulDescDestroy);
  RETURN_IF_ERROR(LtStatus(cublasLtMatmulDescCreate(&desc.h, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                           "cublasLtMatmulDescCreate"));
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  const int32_t vec16 = CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3;
  const cublasLtPointerMode_t device_ptrs = CUBLASLT_POINTER_MODE_DEVICE;
  RETURN_IF_ERROR(SetDesc(desc.h, CUBLASLT_MATMUL_DESC_TRANSA, op_t, "TRANSA"));
  RETURN_IF_ERROR(SetDesc(desc.h, CUBLASLT_MATMUL_DESC_TRANSB, op_n, "TRANSB"));
  RETURN_IF_ERROR(SetDesc(desc.h, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, vec16, "A_SCALE_MODE"));
  RETURN_IF_ERROR(SetDesc(desc.h, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, vec16, "B_SCALE_MODE"));
  RETURN_IF_ERROR(SetDesc(desc.h, CUBLASLT_MATMUL_DESC_POINTER_MODE, device_ptrs, "POINTER_MODE"));

  using Layout = LtHandle<cublasLtMatrixLayout_t, decltype(&cublasLtMatrixLayoutDestroy)>;
  const cudaDataType_t out_type = args.y_type == ElemType::kF32 ? CUDA_R_32F : CUDA_R_16BF;
  const int64_t out_elem = args.y_type == ElemType::kF32 ? 4 : 2;
  Layout a_layout(&cublasLtMatrixLayoutDestroy);
  RETURN_IF_ERROR(LtStatus(cublasLtMatrixLayoutCreate(&a_layout.h, CUDA_R_4F_E2M1, K, N, K),
                           "cublasLtMatrixLayoutCreate(A)"));
  LtHandle<cublasLtMatmulPreference_t, decltype(&cublasLtMatmulPreferenceDestroy)> pref(
      &cublasLtMatmulPreferenceDestroy);
  RETURN_IF_ERROR(
      LtStatus(cublasLtMatmulPreferenceCreate(&pref.h), "cublasLtMatmulPreferenceCreate"));
  const uint64_t ws_bytes = static_cast<uint64_t>(ctx.workspace.bytes());
  RETURN_IF_ERROR(
      LtStatus(cublasLtMatmulPreferenceSetAttribute(
                   pref.h, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes),
               "cublasLtMatmulPreferenceSetAttribute"));

  std::map<int64_t, cublasLtMatmulHeuristicResult_t> algos;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t t0 = args.expert_offsets[e], T = args.expert_offsets[e + 1] - t0;
    if (T == 0) continue;
    const std::string where = "expert " + std::to_string(e) + " (" + std::to_string(T) +
                              " tokens, N " + std::to_string(N) + ", K " + std::to_string(K) + ")";
    const void* a_scale =
        w.swizzled_scales.as<uint8_t>() + e * fp4::SwizzledScaleBytes(N, scale_cols);
    const void* b_scale = ctx.act_scales.as<uint8_t>() + base[e];
    RETURN_IF_ERROR(
        SetDesc(desc.h, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, a_scale, "A_SCALE_POINTER"));
    RETURN_IF_ERROR(
        SetDesc(desc.h, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, b_scale, "B_SCALE_POINTER"));
    Layout b_layout(&cublasLtMatrixLayoutDestroy), d_layout(&cublasLtMatrixLayoutDestroy);
    RETURN_IF_ERROR(LtStatus(cublasLtMatrixLayoutCreate(&b_layout.h, CUDA_R_4F_E2M1, K, T, K),
                             "cublasLtMatrixLayoutCreate(B) " + where));
    RETURN_IF_ERROR(LtStatus(cublasLtMatrixLayoutCreate(&d_layout.h, out_type, N, T, N),
                             "cublasLtMatrixLayoutCreate(D) " + where));
    auto cached = algos.find(T);  // experts with equal token counts share the heuristic's pick
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    cublasStatus_t hs = CUBLAS_STATUS_SUCCESS;
    if (cached != algos.end()) {
      result = cached->second;
      found = 1;
    } else {
      hs = cublasLtMatmulAlgoGetHeuristic(ctx.lt, desc.h, a_layout.h, b_layout.h, d_layout.h,
                                          d_layout.h, pref.h, 1, &result, &found);
      if (hs == CUBLAS_STATUS_SUCCESS && found > 0) algos.emplace(T, result);
    }
    if (hs != CUBLAS_STATUS_SUCCESS || found == 0) {
      return UnimplementedError("cuBLASLt offers no NVFP4 block-scaled algorithm for " + where +
                                (hs != CUBLAS_STATUS_SUCCESS
                                     ? std::string(": ") + cublasLtGetStatusName(hs)
                                     : std::string()));
    }
    const void* a = w.packed.as<uint8_t>() + e * N * K / 2;
    const void* b = ctx.act_packed.as<uint8_t>() + t0 * K / 2;
    void* d = static_cast<char*>(args.y_dev) + t0 * N * out_elem;
    RETURN_IF_ERROR(
        LtStatus(cublasLtMatmul(ctx.lt, desc.h, ctx.alpha.as<float>() + e, a, a_layout.h, b,
                                b_layout.h, ctx.zero.as<float>(), d, d_layout.h, d, d_layout.h,
                                &result.algo, ctx.workspace.data(), ws_bytes, stream),
                 "cublasLtMatmul " + where));
  }
  return OkStatus();
}

}  // namespace switchyard::cuda::internal

namespace switchyard::cuda {

StatusOr<std::unique_ptr<Fp4GemmContext>> CreateFp4GemmContext() {
  std::string why;
  if (DeviceCount(&why) == 0) return UnavailableError("CreateFp4GemmContext: no GPU: " + why);
  ASSIGN_OR_RETURN(const int cc, CurrentDeviceComputeCapability());
  auto ctx = std::make_unique<internal::GemmContextImpl>();
  ctx->cc = cc;
  if (cc >= 100) {
    RETURN_IF_ERROR(internal::LtStatus(cublasLtCreate(&ctx->lt), "cublasLtCreate"));
    ASSIGN_OR_RETURN(ctx->workspace,
                     DeviceBuffer::Alloc(internal::kWorkspaceBytes, "cuBLASLt workspace"));
    ASSIGN_OR_RETURN(ctx->amax, DeviceBuffer::Alloc(sizeof(unsigned), "activation amax"));
    const float zero = 0.0f;
    ASSIGN_OR_RETURN(ctx->zero, DeviceBuffer::FromHost(&zero, sizeof zero, "beta = 0"));
  }
  return std::unique_ptr<Fp4GemmContext>(std::move(ctx));
}

}  // namespace switchyard::cuda
