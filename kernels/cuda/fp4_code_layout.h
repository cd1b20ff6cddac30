// The "MMA pairs" layout of FP4 code words (Fp4CodeLayout::kMmaPairs in fp4_cuda.h): each 32-bit
// word of a packed row (8 codes, code i = nibble i, little-endian) has its 32 bits permuted at
// upload so that the decode kernel turns it into the four BF16 pairs (code 2i, code 2i + 1) with
// 10 integer instructions instead of 13, and the pairs match consecutive activations (no
// re-pairing of activations). Header-only, host and device, no CUDA headers: the host permutes at
// upload, the device decodes with the same functions, the tests check both on the host.
//
// A decoded pair is a BF16 pair of e2m1 * 2^-126 (sign -> bit 15, exponent/mantissa bits e1 e0 m
// -> bits 8..6; high half the same at +16), the bit pattern of fp4_mma.cuh's E2m1PairBits. Where
// the 16 bits of each half hold the codes of pair p (lo code in bits 0..15, hi code at +16):
//   pair 0: em at 6..8, sign at 15  -> w & kPairMask                              (1 op)
//   pair 1: em at 3..5, sign at 12  -> (w << 3) & kPairMask                       (2 ops)
//   pair 2: em at 0..2, sign at 14  -> ((w & 0x40074007) * (2^6 + 2^1)) & mask    (3 ops)
//   pair 3: em at 9..11, sign at 13 -> (((w >> 3) & 0x05C005C0) * (1 + 2^5)) & mask (4 ops)
// In pairs 2 and 3 the multiply adds two shifted copies whose set bits never overlap (no carries),
// so it is an OR of the copies: the em copy and the sign copy each land on the mask.
#pragma once

#include <cstdint>

#include "kernels/fp4_format.h"  // SY_HOST_DEVICE

namespace switchyard::cuda::pairs {

inline constexpr uint32_t kPairMask = 0x81C081C0u;
// Bit position of the em field (3 bits) and of the sign of pair p's lo code (hi code: +16): nibble
// p of these constants (plain integers, usable in device code): em 6, 3, 0, 9; sign 15, 12, 14, 13.
inline constexpr uint32_t kEmBase = 0x9036u;
inline constexpr uint32_t kSignBit = 0xDECFu;

// The permuted word of 8 codes in the packed (cpu::Fp4Weight) order.
SY_HOST_DEVICE inline constexpr uint32_t PermuteWord(uint32_t packed) {
  uint32_t out = 0;
  for (int p = 0; p < 4; ++p) {
    for (int h = 0; h < 2; ++h) {
      const uint32_t code = (packed >> (4 * (2 * p + h))) & 0xFu;
      out |= (code & 7u) << (((kEmBase >> (4 * p)) & 0xFu) + 16 * h);
      out |= (code >> 3) << (((kSignBit >> (4 * p)) & 0xFu) + 16 * h);
    }
  }
  return out;
}

// Pair p (0..3) of a permuted word, as BF16 bits of (e2m1(code 2p), e2m1(code 2p + 1)) * 2^-126.
template <int p>
SY_HOST_DEVICE inline constexpr uint32_t PairBits(uint32_t w) {
  static_assert(p >= 0 && p < 4, "four pairs per word");
  if constexpr (p == 0) {
    return w & kPairMask;
  } else if constexpr (p == 1) {
    return (w << 3) & kPairMask;
  } else if constexpr (p == 2) {
    return ((w & 0x40074007u) * ((1u << 6) + (1u << 1))) & kPairMask;
  } else {
    return (((w >> 3) & 0x05C005C0u) * (1u + (1u << 5))) & kPairMask;
  }
}

}  // namespace switchyard::cuda::pairs
