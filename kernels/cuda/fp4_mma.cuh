// Device building blocks of the FP4 tensor-core GEMM (internal to kernels/cuda): cp.async,
// shared-memory loads, the BF16 m16n8k16 MMA, and the FP4 -> BF16 decode in registers. sm_89 and
// newer (the hardware E4M3 conversion); the library is built for sm_90a and sm_100a.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cuda/fp4_code_layout.h"

namespace switchyard::cuda::internal {

// cp.async of 16 bytes; src_bytes < 16 zero-fills the rest (0: all zeros, nothing read).
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, int src_bytes) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(src_bytes));
}
// cp.async of 8 / 4 bytes (through L1: .cg takes 16 only), zero-filling past src_bytes.
__device__ __forceinline__ void CpAsync8(void* smem, const void* gmem, int src_bytes) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void CpAsync4(void* smem, const void* gmem, int src_bytes) {
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem),
               "r"(src_bytes));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ uint4 Lds16(const void* smem) {
  uint4 v;
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "r"(s));
  return v;
}

__device__ __forceinline__ uint32_t Lds16Bits(const void* smem) {
  uint16_t v;
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ld.shared.u16 %0, [%1];\n" : "=h"(v) : "r"(s));
  return v;
}
__device__ __forceinline__ uint32_t Lds8Bits(const void* smem) {
  uint32_t v;
  const uint32_t s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  asm volatile("ld.shared.u8 %0, [%1];\n" : "=r"(v) : "r"(s));
  return v;
}

// Two E4M3 bytes (lo = bits 0..7, hi = bits 8..15) -> BF16 pairs {lo, lo} and {hi, hi} of
// value * 2^118, exactly (hardware E4M3 -> F16, exact; F16 -> F32 exact; the power-of-two product
// is exact and has <= 4 significant bits, so the BF16 truncation is too). Zero, sign and NaN kept.
__device__ __forceinline__ void E4m3PairToBf16Scaled(uint32_t two, uint32_t* lo2, uint32_t* hi2) {
  uint32_t h2;
  asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(h2) : "h"(static_cast<uint16_t>(two)));
  const float lo = __half2float(__ushort_as_half(static_cast<unsigned short>(h2 & 0xFFFFu)));
  const float hi = __half2float(__ushort_as_half(static_cast<unsigned short>(h2 >> 16)));
  const uint32_t lb = __float_as_uint(lo * 0x1p118f), hb = __float_as_uint(hi * 0x1p118f);
  *lo2 = __byte_perm(lb, lb, 0x3232);
  *hi2 = __byte_perm(hb, hb, 0x3232);
}

// d += a (16x16 BF16, row) * b (16x8 BF16, col), FP32 accumulation. Fragment layout (PTX ISA,
// mma.m16n8k16, g = lane / 4, t = lane % 4): a0 = A[g][2t..2t+1], a1 = A[g+8][2t..],
// a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]; b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g];
// d0,d1 = D[g][2t..2t+1], d2,d3 = D[g+8][2t..2t+1].
__device__ __forceinline__ void MmaBf16(float* d, uint32_t a0, uint32_t a1, uint32_t a2,
                                        uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Two e2m1 codes as a BF16 pair scaled by 2^-126: nibble i of `w` (bits 4i..4i+3) in the low half,
// nibble i + 4 in the high half. sign -> bit 15, exponent/mantissa bits (e1 e0 m) -> bits 8..6:
// 0.5 becomes the subnormal 2^-127, 1.0 the normal 2^-126, ... 6.0 = 1.5 * 2^-124 (all exact).
// `src` is w (i = 0, 1) or w >> 8 (i = 2, 3): the two nibbles sit at bits 4k and 4k + 16, k = i
// % 2. One multiply places two copies of them (shifted by 6 - 4k and 12 - 4k: bits 6..9 / 22..25
// and 12..15 / 28..31, disjoint, so the sum is an OR); the mask keeps em from the first, sign from
// the second.
template <int k>
__device__ __forceinline__ uint32_t E2m1PairBits(uint32_t src) {
  constexpr uint32_t kNibbles = 0x000F000Fu << (4 * k);
  constexpr uint32_t kCopies = (1u << (6 - 4 * k)) + (1u << (12 - 4 * k));
  return ((src & kNibbles) * kCopies) & 0x81C081C0u;
}

// a * b for BF16 pairs, round to nearest (exact for the products used here). fma with -0 keeps
// a * b = +0 as +0. BF16 arithmetic keeps subnormal inputs (no flush).
__device__ __forceinline__ uint32_t MulBf16x2(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
  return d;
}

// The pairs (nibble i, nibble i + 4), i = 0..3, of one 32-bit code word, times `scale2` (a BF16
// pair holding block_scale * 2^118 twice): values e2m1 * block_scale * 2^-8, exact.
__device__ __forceinline__ void DecodeWord(uint32_t w, uint32_t scale2, uint32_t* p) {
  const uint32_t w8 = w >> 8;
  p[0] = MulBf16x2(E2m1PairBits<0>(w), scale2);
  p[1] = MulBf16x2(E2m1PairBits<1>(w), scale2);
  p[2] = MulBf16x2(E2m1PairBits<0>(w8), scale2);
  p[3] = MulBf16x2(E2m1PairBits<1>(w8), scale2);
}
// The same for a word in the kMmaPairs layout (fp4_code_layout.h): pair i holds codes 2i, 2i + 1
// (consecutive columns, matching consecutive activations), 10 integer instructions per word.
__device__ __forceinline__ void DecodePairsWord(uint32_t w, uint32_t scale2, uint32_t* p) {
  p[0] = MulBf16x2(pairs::PairBits<0>(w), scale2);
  p[1] = MulBf16x2(pairs::PairBits<1>(w), scale2);
  p[2] = MulBf16x2(pairs::PairBits<2>(w), scale2);
  p[3] = MulBf16x2(pairs::PairBits<3>(w), scale2);
}

// The accumulators hold sums of (value * 2^-8) * x: this undoes the 2^-8 (exact).
inline constexpr float kDecodeUnscale = 256.0f;

// Activations re-paired to match DecodeWord: from 8 consecutive BF16 x0..x7 (x.x = x0,x1 ...)
// the pairs (x_i, x_{i+4}).
__device__ __forceinline__ void PairActs(uint4 x, uint32_t* y) {
  y[0] = __byte_perm(x.x, x.z, 0x5410);
  y[1] = __byte_perm(x.x, x.z, 0x7632);
  y[2] = __byte_perm(x.y, x.w, 0x5410);
  y[3] = __byte_perm(x.y, x.w, 0x7632);
}

}  // namespace switchyard::cuda::internal
