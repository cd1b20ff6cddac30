// Device helpers shared by the FP4 kernels (internal to kernels/cuda).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/fp4_format.h"

namespace switchyard::cuda {

// BF16 as its bit pattern: the kernels do their own conversions (exact widening; round to nearest
// even when narrowing, as the host helpers in the tests).
struct Bf16Bits {
  uint16_t bits;
};

__device__ __forceinline__ float ToFloat(float x) { return x; }
__device__ __forceinline__ float ToFloat(Bf16Bits x) {
  return __uint_as_float(static_cast<uint32_t>(x.bits) << 16);
}
__device__ __forceinline__ float Bf16ToFloat(uint16_t bits) {
  return __uint_as_float(static_cast<uint32_t>(bits) << 16);
}
// FP32 -> BF16, round to nearest even; NaN stays a (quiet) NaN.
__device__ __forceinline__ uint16_t FloatToBf16(float f) {
  const uint32_t u = __float_as_uint(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace switchyard::cuda
