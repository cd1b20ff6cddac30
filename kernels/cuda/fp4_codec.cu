// FP4 quantize / dequantize kernels: one thread per scale block, calling the same header functions
// as the CPU codec (kernels/fp4_format.h), so the bytes agree bit for bit. Compiled without fast
// math: IEEE division and no FMA contraction matter at rounding ties.
#include <cuda_runtime.h>

#include <cmath>
#include <string>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/fp4_cuda.h"
#include "kernels/cuda/fp4_device.cuh"

namespace switchyard::cuda {
namespace {

constexpr int kThreads = 256;

template <typename In, int kBlock>
__global__ void QuantizeKernel(const In* __restrict__ x, int64_t num_blocks, float global_scale,
                               fp4::MxScaleRule rule, uint8_t* __restrict__ packed,
                               uint8_t* __restrict__ scales) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= num_blocks) return;
  float v[kBlock];
  const In* src = x + b * kBlock;
#pragma unroll
  for (int i = 0; i < kBlock; ++i) v[i] = ToFloat(src[i]);
  if constexpr (kBlock == fp4::kNvFp4Block) {
    scales[b] = fp4::NvFp4QuantizeBlock(v, global_scale, packed + b * (kBlock / 2));
  } else {
    scales[b] = fp4::MxFp4QuantizeBlock(v, packed + b * (kBlock / 2), rule);
  }
}

template <int kBlock>
__global__ void DequantizeKernel(const uint8_t* __restrict__ packed,
                                 const uint8_t* __restrict__ scales, int64_t num_blocks,
                                 float global_scale, float* __restrict__ out) {
  const int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= num_blocks) return;
  if constexpr (kBlock == fp4::kNvFp4Block) {
    fp4::NvFp4DequantizeBlock(packed + b * (kBlock / 2), scales[b], global_scale, out + b * kBlock);
  } else {
    fp4::MxFp4DequantizeBlock(packed + b * (kBlock / 2), scales[b], out + b * kBlock);
  }
}

Status CheckCodecShape(const char* op, int64_t rows, int64_t cols, cpu::Fp4Format format,
                       float global_scale) {
  const int block = Fp4Block(format);
  if (rows < 0 || cols < 0 || cols % block != 0) {
    return InvalidArgumentError(std::string(op) + ": shape [" + std::to_string(rows) + ", " +
                                std::to_string(cols) + "]: columns must be a multiple of " +
                                std::to_string(block) + " (" + Fp4Name(format) + " block)");
  }
  if (format == cpu::Fp4Format::kNvFp4 && !(std::isfinite(global_scale) && global_scale > 0.0f)) {
    return InvalidArgumentError(std::string(op) + ": NVFP4 global scale " +
                                std::to_string(global_scale) + " must be finite and > 0");
  }
  return OkStatus();
}

unsigned GridFor(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

}  // namespace

Status Fp4QuantizeRows(const void* x_dev, ElemType x_type, int64_t rows, int64_t cols,
                       cpu::Fp4Format format, float global_scale, fp4::MxScaleRule rule,
                       uint8_t* packed_dev, uint8_t* scales_dev, void* stream) {
  RETURN_IF_ERROR(CheckCodecShape("Fp4QuantizeRows", rows, cols, format, global_scale));
  const int64_t num_blocks = rows * (cols / Fp4Block(format));
  if (num_blocks == 0) return OkStatus();
  if (x_dev == nullptr || packed_dev == nullptr || scales_dev == nullptr) {
    return InvalidArgumentError("Fp4QuantizeRows: null device pointer");
  }
  auto s = static_cast<cudaStream_t>(stream);
  const bool nv = format == cpu::Fp4Format::kNvFp4;
  const unsigned grid = GridFor(num_blocks);
  if (x_type == ElemType::kF32) {
    auto x = static_cast<const float*>(x_dev);
    if (nv) {
      QuantizeKernel<float, 16>
          <<<grid, kThreads, 0, s>>>(x, num_blocks, global_scale, rule, packed_dev, scales_dev);
    } else {
      QuantizeKernel<float, 32>
          <<<grid, kThreads, 0, s>>>(x, num_blocks, global_scale, rule, packed_dev, scales_dev);
    }
  } else {
    auto x = static_cast<const Bf16Bits*>(x_dev);
    if (nv) {
      QuantizeKernel<Bf16Bits, 16>
          <<<grid, kThreads, 0, s>>>(x, num_blocks, global_scale, rule, packed_dev, scales_dev);
    } else {
      QuantizeKernel<Bf16Bits, 32>
          <<<grid, kThreads, 0, s>>>(x, num_blocks, global_scale, rule, packed_dev, scales_dev);
    }
  }
  return LaunchStatus("Fp4QuantizeRows kernel launch");
}

Status Fp4DequantizeRows(const uint8_t* packed_dev, const uint8_t* scales_dev, int64_t rows,
                         int64_t cols, cpu::Fp4Format format, float global_scale, float* out_dev,
                         void* stream) {
  RETURN_IF_ERROR(CheckCodecShape("Fp4DequantizeRows", rows, cols, format, global_scale));
  const int64_t num_blocks = rows * (cols / Fp4Block(format));
  if (num_blocks == 0) return OkStatus();
  if (out_dev == nullptr || packed_dev == nullptr || scales_dev == nullptr) {
    return InvalidArgumentError("Fp4DequantizeRows: null device pointer");
  }
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned grid = GridFor(num_blocks);
  if (format == cpu::Fp4Format::kNvFp4) {
    DequantizeKernel<16>
        <<<grid, kThreads, 0, s>>>(packed_dev, scales_dev, num_blocks, global_scale, out_dev);
  } else {
    DequantizeKernel<32>
        <<<grid, kThreads, 0, s>>>(packed_dev, scales_dev, num_blocks, global_scale, out_dev);
  }
  return LaunchStatus("Fp4DequantizeRows kernel launch");
}

}  // namespace switchyard::cuda
