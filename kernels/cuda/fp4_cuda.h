// FP4 on the GPU: codec kernels (NVFP4 / MXFP4 quantize and dequantize, bit-exact with
// kernels/fp4_format.h) and the grouped expert GEMM of an MoE layer with FP4 weights.
//
// Compiles without CUDA headers for its callers. Pointers named `*_dev` are device memory (for
// example DeviceBuffer::data()); `stream` is a cudaStream_t passed as void* (nullptr = default
// stream). Launchers validate shapes on the host, enqueue on `stream` and return without waiting;
// errors are Status values (InvalidArgument for bad shapes, Unavailable/Internal for CUDA errors).
// Kernel faults surface at the next synchronization (SynchronizeStream). Thread-safety: launchers
// are reentrant; an Fp4GemmContext is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "kernels/cpu/fp4_gemm.h"
#include "kernels/cuda/device_buffer.h"
#include "kernels/fp4_format.h"

namespace switchyard::cuda {

enum class ElemType { kF32, kBf16 };  // BF16 is passed as uint16_t bit patterns

// Block size (16 / 32) and name ("nvfp4" / "mxfp4") of a format, as cpu::Fp4BlockSize /
// cpu::Fp4FormatName but header-only: the CUDA library needs no CPU kernel object code (so that
// scripts/device/check.sh --rebuild can build it with nvcc alone).
inline int Fp4Block(cpu::Fp4Format f) {
  return f == cpu::Fp4Format::kNvFp4 ? fp4::kNvFp4Block : fp4::kMxFp4Block;
}
inline const char* Fp4Name(cpu::Fp4Format f) {
  return f == cpu::Fp4Format::kNvFp4 ? "nvfp4" : "mxfp4";
}

// ---- Codec -----------------------------------------------------------------------------------

// Quantizes x[rows, cols] (row-major, FP32 or BF16) into packed[rows, cols/2] and
// scales[rows, cols/block] (E4M3 for NVFP4 with `global_scale`; E8M0 for MXFP4 with `rule`;
// global_scale is ignored for MXFP4), one thread per block, with exactly the arithmetic of
// fp4::NvFp4QuantizeBlock / fp4::MxFp4QuantizeBlock: bytes equal the CPU codec's for every input.
// cols must be a multiple of the block size (16 / 32) and rows, cols >= 0; NVFP4 global_scale
// finite and > 0: otherwise InvalidArgument, nothing enqueued.
Status Fp4QuantizeRows(const void* x_dev, ElemType x_type, int64_t rows, int64_t cols,
                       cpu::Fp4Format format, float global_scale, fp4::MxScaleRule rule,
                       uint8_t* packed_dev, uint8_t* scales_dev, void* stream);

// out[rows, cols] (FP32) = dequantized packed/scales (same layout as above), bit-exact with
// fp4::NvFp4DequantizeBlock / fp4::MxFp4DequantizeBlock. Same shape rules.
Status Fp4DequantizeRows(const uint8_t* packed_dev, const uint8_t* scales_dev, int64_t rows,
                         int64_t cols, cpu::Fp4Format format, float global_scale, float* out_dev,
                         void* stream);

// ---- Expert weights on the device --------------------------------------------------------------

// Order of the code bits on the device. kPacked: the cpu::Fp4Weight bytes as they are (every
// path). kMmaPairs: each 32-bit word of a row (8 codes) bit-permuted for the kDequantBf16 kernel
// (kernels/cuda/fp4_code_layout.h: fewer instructions per code, the path's fast layout on Hopper);
// the cuBLASLt path does not accept it.
enum class Fp4CodeLayout { kPacked, kMmaPairs };

// The FP4 weights of num_experts experts of one projection, all [rows = N, cols = K], in the
// cpu::Fp4Weight layout stacked over experts: packed [E, N, padded_cols/2], scales
// [E, N, padded_cols/block], global_scales [E] (FP32; 1.0 for MXFP4). When built for Blackwell
// (swizzled == true, NVFP4 only), swizzled_scales holds each expert's scales in the cuBLASLt
// 128x4 layout (kernels/fp4_scale_layout.h), expert e at e * SwizzledScaleBytes(N, padded_cols/16).
// `packed` holds the codes in `layout` order.
struct Fp4ExpertWeights {
  cpu::Fp4Format format = cpu::Fp4Format::kNvFp4;
  Fp4CodeLayout layout = Fp4CodeLayout::kPacked;
  int64_t num_experts = 0, rows = 0, cols = 0, padded_cols = 0;
  DeviceBuffer packed, scales, global_scales, swizzled_scales;
  std::vector<float> host_global_scales;
  bool swizzled = false;
};

// Copies the experts' weights to the device (synchronous). All experts must share format and
// shape and have the cpu::Fp4Weight buffer sizes; otherwise InvalidArgument naming the expert.
// with_swizzled_scales also builds the Blackwell scale layout (NVFP4 only; ignored for MXFP4).
// `layout` orders the code bits (kMmaPairs: permuted on the host while staging, for kDequantBf16).
StatusOr<Fp4ExpertWeights> UploadFp4ExpertWeights(const std::vector<const cpu::Fp4Weight*>& experts,
                                                  bool with_swizzled_scales,
                                                  Fp4CodeLayout layout = Fp4CodeLayout::kPacked);

// ---- Grouped expert GEMM -----------------------------------------------------------------------

enum class Fp4GemmPath {
  kAuto,           // cuBLASLt on compute capability >= 10.0 when eligible, else kDequantBf16
  kDequantBf16,    // sm_89+: FP4 decoded in registers, BF16 mma.sync -> FP32 (Hopper's path)
  kCublasLtNvFp4,  // Blackwell: activations quantized to NVFP4, cuBLASLt block-scaled matmul
};
const char* Fp4GemmPathName(Fp4GemmPath path);

// Owns per-device state of the grouped GEMM: the cuBLASLt handle and workspace (Blackwell only)
// and scratch buffers that grow to the largest call. Create one per device and thread.
class Fp4GemmContext {
 public:
  virtual ~Fp4GemmContext() = default;
  // Compute capability (major * 10 + minor) of the device the context was created on.
  virtual int compute_capability() const = 0;
};

// Creates a context for the current device. Unavailable when there is no usable GPU.
StatusOr<std::unique_ptr<Fp4GemmContext>> CreateFp4GemmContext();

struct Fp4GroupedGemmArgs {
  // Activations of all experts' tokens, concatenated by expert: [total_tokens, K] BF16 (uint16_t
  // bits), row-major, contiguous, 16-byte aligned.
  const uint16_t* x_dev = nullptr;
  int64_t total_tokens = 0;
  // HOST array of num_experts + 1 offsets: expert e owns rows [offsets[e], offsets[e+1]);
  // offsets[0] = 0, non-decreasing, offsets[num_experts] = total_tokens. Read during the call only.
  const int64_t* expert_offsets = nullptr;
  const Fp4ExpertWeights* weights = nullptr;  // borrowed; num_experts and K define the shapes
  void* y_dev = nullptr;                      // [total_tokens, N], FP32 or BF16
  ElemType y_type = ElemType::kF32;
  Fp4GemmPath path = Fp4GemmPath::kAuto;
  void* stream = nullptr;
};

// y[offsets[e] + t, :] = x[offsets[e] + t, :] · dequant(W_e)ᵀ for every expert e, FP32
// accumulation, the FP32 global scale applied after accumulation.
//  - kDequantBf16: one tensor-core kernel (mma.sync m16n8k16 BF16, weights as rows, tokens as
//    columns) in a decode shape (<= 16 tokens per expert: 64-row tiles, two warps per tile
//    splitting K) and a prefill shape (128 x 128 tiles); codes, scales and activations staged by
//    cp.async, codes decoded in registers to e2m1·block-scale·2^-8 (exact in BF16; weights in
//    the kMmaPairs layout take fewer instructions per code than kPacked). Products with
//    a BF16 activation are exact. Exact for every NVFP4 weight and for MXFP4 block scales in
//    [2^-117, 2^8] (E8M0 bytes 10..135, far wider than real weights need).
//  - kCublasLtNvFp4 (CC >= 10.0, NVFP4, K a multiple of 32, N of 16, y_dev 16-byte aligned,
//    weights uploaded with swizzled scales in the kPacked layout): activations are quantized to
//    NVFP4 on the device (global scale from their amax, as fp4::NvFp4GlobalScale), then one
//    cuBLASLt matmul per non-empty expert with alpha = act_global_scale * W_e.global_scale.
//  - kAuto: cuBLASLt when eligible, falling back to kDequantBf16 if cuBLASLt offers no algorithm.
// *used (optional) receives the path that ran. Enqueues on args.stream and returns without
// waiting; the host offsets are read before returning, the GPU reads x/weights and writes y when
// the stream gets there. The cuBLASLt path may regrow its scratch buffers (cudaFree waits for the
// device). Errors: InvalidArgument for bad offsets/shapes/null or misaligned pointers,
// FailedPrecondition for kCublasLtNvFp4 where ineligible (the reason named), CUDA and cuBLAS
// errors as Internal/Unavailable.
Status Fp4GroupedGemm(Fp4GemmContext& ctx, const Fp4GroupedGemmArgs& args,
                      Fp4GemmPath* used = nullptr);

}  // namespace switchyard::cuda
