// FP4 codec: E2M1 elements, E4M3 / E8M0 scales, NVFP4 and MXFP4 block quantization.
//
// Header-only; every scalar and block function is usable from host C++ and CUDA device code
// (SY_HOST_DEVICE). The whole-matrix helpers at the end are host-only. No CUDA headers, no
// exceptions, no allocation. Normative reference: shared/reference/specs.md §1. The scalar
// encoders are bit-exact with the CUDA toolkit's host converters (__nv_cvt_float_to_fp4 with
// cudaRoundNearest, __nv_cvt_float_to_fp8 with __NV_SATFINITE/__NV_E4M3, __nv_cvt_float_to_e8m0
// with __NV_SATFINITE) for every float input; tests/fp4_format_test.cc checks this.
//
// Layouts (specs §1.3): two E2M1 codes per byte, the element with the lower (even) index in the
// low nibble. A row of n elements packs into n/2 bytes and has n/block scale bytes; a matrix
// [rows, cols] is row-major, packed [rows, cols/2], scales [rows, cols/block]. (The cuBLASLt
// 128x4 swizzled scale layout is a separate concern.)
//
// Floating-point order is fixed (division, then E2M1 rounding): results depend on it at rounding
// ties (specs §1.6). No expression here contains a contractible a*b+c.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SY_HOST_DEVICE __host__ __device__
#else
#define SY_HOST_DEVICE
#endif

namespace switchyard::fp4 {

inline constexpr int kNvFp4Block = 16;  // elements per NVFP4 block (one E4M3 scale)
inline constexpr int kMxFp4Block = 32;  // elements per MXFP4 block (one E8M0 scale)
inline constexpr float kE2m1Max = 6.0f;
inline constexpr float kE4m3Max = 448.0f;
inline constexpr uint8_t kE4m3NaN = 0x7F;  // the NaN code an NVFP4 scale uses for a bad block
inline constexpr uint8_t kE8m0NaN = 0xFF;

namespace detail {

SY_HOST_DEVICE inline uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

SY_HOST_DEVICE inline float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Rounds a finite magnitude (the bits of |x|) to nearest, ties to even, in a binary format with
// `mbits` explicit mantissa bits and minimum normal exponent `emin` (subnormals below it). Returns
// the format's magnitude code, (biased exponent << mbits) | mantissa; a carry out of the mantissa
// moves to the next exponent by itself. No overflow check: the callers saturate first.
SY_HOST_DEVICE inline uint32_t RoundMagnitude(uint32_t abs_bits, int emin, int mbits) {
  int e = static_cast<int>(abs_bits >> 23) - 127;  // unbiased exponent of |x|
  uint32_t sig = abs_bits & 0x7FFFFFu;             // significand in units of 2^(e-23)
  if (abs_bits >> 23) {
    sig |= 0x800000u;
  } else {
    e = -126;  // FP32 subnormal
  }
  const int eq = e > emin ? e : emin;         // binade whose ulp, 2^(eq-mbits), we round to
  const int shift = (eq - mbits) - (e - 23);  // bits of sig below that ulp (>= 23 - mbits)
  uint32_t q = 0;                             // |x| in target ulps, rounded
  if (shift < 25) {                           // otherwise |x| < half an ulp: rounds to 0
    q = sig >> shift;
    const uint32_t rem = sig & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) ++q;
  }
  return (static_cast<uint32_t>(eq - emin) << mbits) + q;
}

SY_HOST_DEVICE inline float AbsF(float x) { return FromBits(Bits(x) & 0x7FFFFFFFu); }
SY_HOST_DEVICE inline bool IsFinite(float x) { return (Bits(x) & 0x7FFFFFFFu) < 0x7F800000u; }

// Max |x[i]| over n values and whether all were finite.
SY_HOST_DEVICE inline float BlockAmax(const float* x, int64_t n, bool* finite) {
  float amax = 0.0f;
  *finite = true;
  for (int64_t i = 0; i < n; ++i) {
    if (!IsFinite(x[i])) *finite = false;
    const float a = AbsF(x[i]);
    if (a > amax) amax = a;
  }
  return amax;
}

}  // namespace detail

// ---- E2M1 (specs §1.1-1.2) ---------------------------------------------------------------------

// float -> 4-bit E2M1 code (bits 3:0; bit 3 = sign). Round to nearest, ties to even. |x| <= 0.25
// -> ±0 (sign kept); |x| > 6 and ±inf saturate to ±6 (0x7 / 0xF); NaN of either sign -> +6 (0x7).
SY_HOST_DEVICE inline uint8_t F32ToE2m1(float x) {
  const uint32_t u = detail::Bits(x);
  const uint32_t a = u & 0x7FFFFFFFu;
  const uint8_t sign = static_cast<uint8_t>((u >> 28) & 0x8u);
  if (a > 0x7F800000u) return 0x7;         // NaN -> +MAXNORM
  if (a > 0x40C00000u) return sign | 0x7;  // |x| > 6 (incl. inf) -> ±6
  return sign | static_cast<uint8_t>(detail::RoundMagnitude(a, 0, 1));
}

// 4-bit E2M1 code (high bits ignored) -> float: ±{0, 0.5, 1, 1.5, 2, 3, 4, 6}; 0x8 is -0.
SY_HOST_DEVICE inline float E2m1ToF32(uint8_t code) {
  const uint32_t e = (code >> 1) & 0x3u, m = code & 0x1u;
  // Normal: 2^(e-1) * (1 + m/2); subnormal: 0 or 0.5 (0x3F000000).
  const uint32_t mag = e != 0 ? ((e + 126u) << 23) | (m << 22) : m * 0x3F000000u;
  return detail::FromBits(mag | (static_cast<uint32_t>(code & 0x8u) << 28));
}

// Two codes -> one byte: `even` (lower index) in bits 3:0, `odd` in bits 7:4 (specs §1.3).
SY_HOST_DEVICE inline uint8_t PackE2m1x2(uint8_t even, uint8_t odd) {
  return static_cast<uint8_t>((even & 0xFu) | ((odd & 0xFu) << 4));
}

// The code of element i of a packed row (byte i/2, low nibble for even i).
SY_HOST_DEVICE inline uint8_t UnpackE2m1(const uint8_t* packed, int64_t i) {
  return static_cast<uint8_t>((packed[i >> 1] >> ((i & 1) * 4)) & 0xFu);
}

// ---- FP8 E4M3, "fn" variant (specs §1.4) -------------------------------------------------------

// float -> E4M3 byte. Round to nearest, ties to even, saturating (as __NV_SATFINITE): |x| > 448
// and ±inf -> ±448 (0x7E / 0xFE); any NaN -> 0x7F; |x| <= 2^-10 -> ±0.
SY_HOST_DEVICE inline uint8_t F32ToE4m3(float x) {
  const uint32_t u = detail::Bits(x);
  const uint32_t a = u & 0x7FFFFFFFu;
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  if (a > 0x7F800000u) return kE4m3NaN;
  if (a > 0x43E00000u) return sign | 0x7E;  // |x| > 448
  return sign | static_cast<uint8_t>(detail::RoundMagnitude(a, -6, 3));
}

// E4M3 byte -> float (exact). 0x7F / 0xFF -> NaN; bias 7; subnormals m * 2^-9.
SY_HOST_DEVICE inline float E4m3ToF32(uint8_t code) {
  const uint32_t sign = static_cast<uint32_t>(code & 0x80u) << 24;
  const uint32_t e = (code >> 3) & 0xFu, m = code & 0x7u;
  if ((code & 0x7Fu) == 0x7Fu) return detail::FromBits(0x7FC00000u);
  if (e == 0) return detail::FromBits(sign | detail::Bits(static_cast<float>(m) * 0x1p-9f));
  return detail::FromBits(sign | ((e + 120u) << 23) | (m << 20));
}

// ---- E8M0 (specs §1.5): 2^(byte-127), 0xFF = NaN, no sign, no zero ------------------------------

enum class E8m0Rounding {
  kFloor,  // 2^floor(log2|x|): cudaRoundZero
  kCeil,   // 2^ceil(log2|x|):  cudaRoundPosInf
};

// float -> E8M0 byte, as __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, rounding): the sign is ignored;
// NaN -> 0xFF; results below 2^-127 (incl. 0) clamp to 0x00; above 2^127 (incl. inf) to 0xFE.
SY_HOST_DEVICE inline uint8_t F32ToE8m0(float x, E8m0Rounding rounding) {
  const uint32_t a = detail::Bits(x) & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return kE8m0NaN;
  uint32_t e = a >> 23;  // floor(log2|x|) + 127 for normal x; 0 for zero and subnormals
  // Round up an inexact |x|: any mantissa bit set and |x| > 2^-127 (subnormals in (2^-127,
  // 2^-126) go to 2^-126; those at or below 2^-127 stay at 0x00 = 2^-127).
  if (rounding == E8m0Rounding::kCeil && (a & 0x7FFFFFu) != 0 && a > 0x00400000u && e < 0xFFu) ++e;
  return static_cast<uint8_t>(e >= 0xFFu ? 0xFEu : e);
}

// E8M0 byte -> float: 2^(byte-127) exactly (0x00 -> 2^-127, an FP32 subnormal); 0xFF -> NaN.
SY_HOST_DEVICE inline float E8m0ToF32(uint8_t code) {
  if (code == kE8m0NaN) return detail::FromBits(0x7FC00000u);
  if (code == 0) return detail::FromBits(0x00400000u);
  return detail::FromBits(static_cast<uint32_t>(code) << 23);
}

// ---- NVFP4 (specs §1.6): x ~= e2m1 * e4m3_block_scale * fp32_global_scale
// ------------------------

// Per-tensor global scale (ModelOpt weight_scale_2) = amax / (6 * 448). amax 0 (all-zero tensor)
// or an underflowing quotient gives 1.0 instead of 0, so that no division below is by zero
// (the all-zero tensor then encodes as zero codes with block scale 1.0).
SY_HOST_DEVICE inline float NvFp4GlobalScale(float amax) {
  const float s = amax / (kE2m1Max * kE4m3Max);
  return s > 0.0f ? s : 1.0f;
}

// Quantizes one block of 16 floats with the ModelOpt weight recipe; writes 8 packed bytes and
// returns the E4M3 block scale. global_scale must be finite and > 0. In FP32, in this order:
//   s = block_amax / (6 * global_scale); s == 0 -> 1;  scale = E4M3(s)  (saturates at 448);
//   d = float(scale) * global_scale;  code_i = E2M1(x_i / d).
// If the scale underflows E4M3 (d == 0) every code is ±0 (sign of x_i). A block holding NaN or
// ±inf gets scale 0x7F (NaN) and all codes 0: it dequantizes to NaN everywhere.
SY_HOST_DEVICE inline uint8_t NvFp4QuantizeBlock(const float* x, float global_scale,
                                                 uint8_t* packed) {
  bool finite;
  const float amax = detail::BlockAmax(x, kNvFp4Block, &finite);
  if (!finite) {
    for (int i = 0; i < kNvFp4Block / 2; ++i) packed[i] = 0;
    return kE4m3NaN;
  }
  float s = amax / (kE2m1Max * global_scale);
  if (s == 0.0f) s = 1.0f;
  const uint8_t scale = F32ToE4m3(s);
  const float d = E4m3ToF32(scale) * global_scale;
  for (int i = 0; i < kNvFp4Block / 2; ++i) {
    uint8_t c[2];
    for (int j = 0; j < 2; ++j) {
      const float v = x[2 * i + j];
      c[j] = d != 0.0f ? F32ToE2m1(v / d) : static_cast<uint8_t>((detail::Bits(v) >> 28) & 0x8u);
    }
    packed[i] = PackE2m1x2(c[0], c[1]);
  }
  return scale;
}

// out[i] = e2m1(code_i) * (float(scale) * global_scale), i < 16 (NaN for scale 0x7F/0xFF).
SY_HOST_DEVICE inline void NvFp4DequantizeBlock(const uint8_t* packed, uint8_t scale,
                                                float global_scale, float* out) {
  const float d = E4m3ToF32(scale) * global_scale;
  for (int i = 0; i < kNvFp4Block; ++i) out[i] = E2m1ToF32(UnpackE2m1(packed, i)) * d;
}

// A row of n elements, n a multiple of 16 (precondition): packed[n/2], scales[n/16].
SY_HOST_DEVICE inline void NvFp4QuantizeRow(const float* x, int64_t n, float global_scale,
                                            uint8_t* packed, uint8_t* scales) {
  for (int64_t b = 0; b < n / kNvFp4Block; ++b) {
    scales[b] = NvFp4QuantizeBlock(x + b * kNvFp4Block, global_scale, packed + b * 8);
  }
}

SY_HOST_DEVICE inline void NvFp4DequantizeRow(const uint8_t* packed, const uint8_t* scales,
                                              int64_t n, float global_scale, float* out) {
  for (int64_t b = 0; b < n / kNvFp4Block; ++b) {
    NvFp4DequantizeBlock(packed + b * 8, scales[b], global_scale, out + b * kNvFp4Block);
  }
}

// ---- MXFP4 (specs §1.7, OCP MX v1.0): x ~= e2m1 * 2^(scale-127) ---------------------------------

enum class MxScaleRule {
  kFloor,  // OCP §6.3 / torchao / microxcaling: e = floor(log2 amax) - 2 (default)
  kRceil,  // cuBLAS / Blackwell cvt.rp:          e = ceil(log2(amax / 6))
};

// Quantizes one block of 32 floats; writes 16 packed bytes and returns the E8M0 scale byte
// e + 127, e clamped below at -127 (a zero block gets 0x00). Elements: E2M1(x_i * 2^-e), an exact
// product, saturating to ±6 (kFloor can map up to 7.99 * 2^e to 6). A block holding NaN or ±inf
// gets scale 0xFF (NaN) and all codes 0: it dequantizes to NaN everywhere.
SY_HOST_DEVICE inline uint8_t MxFp4QuantizeBlock(const float* x, uint8_t* packed,
                                                 MxScaleRule rule = MxScaleRule::kFloor) {
  bool finite;
  const float amax = detail::BlockAmax(x, kMxFp4Block, &finite);
  if (!finite) {
    for (int i = 0; i < kMxFp4Block / 2; ++i) packed[i] = 0;
    return kE8m0NaN;
  }
  int e;  // in [-127, 126] for finite amax either way, so 2^-e below is a normal float
  if (rule == MxScaleRule::kFloor) {
    e = static_cast<int>(F32ToE8m0(amax, E8m0Rounding::kFloor)) - 127 - 2;  // emax(E2M1) = 2
    if (e < -127) e = -127;
  } else {
    e = static_cast<int>(F32ToE8m0(amax / kE2m1Max, E8m0Rounding::kCeil)) - 127;
  }
  const float inv = detail::FromBits(static_cast<uint32_t>(127 - e) << 23);  // 2^-e
  for (int i = 0; i < kMxFp4Block / 2; ++i) {
    packed[i] = PackE2m1x2(F32ToE2m1(x[2 * i] * inv), F32ToE2m1(x[2 * i + 1] * inv));
  }
  return static_cast<uint8_t>(e + 127);
}

// out[i] = e2m1(code_i) * 2^(scale-127), i < 32: exact; NaN for scale 0xFF; ±inf where the product
// reaches 2^128 (only scales >= 0xFD can: kRceil gives code 4 with 0xFD for |x| >= 3.5 * 2^126).
SY_HOST_DEVICE inline void MxFp4DequantizeBlock(const uint8_t* packed, uint8_t scale, float* out) {
  const float s = E8m0ToF32(scale);
  for (int i = 0; i < kMxFp4Block; ++i) out[i] = E2m1ToF32(UnpackE2m1(packed, i)) * s;
}

// A row of n elements, n a multiple of 32 (precondition): packed[n/2], scales[n/32].
SY_HOST_DEVICE inline void MxFp4QuantizeRow(const float* x, int64_t n, uint8_t* packed,
                                            uint8_t* scales,
                                            MxScaleRule rule = MxScaleRule::kFloor) {
  for (int64_t b = 0; b < n / kMxFp4Block; ++b) {
    scales[b] = MxFp4QuantizeBlock(x + b * kMxFp4Block, packed + b * 16, rule);
  }
}

SY_HOST_DEVICE inline void MxFp4DequantizeRow(const uint8_t* packed, const uint8_t* scales,
                                              int64_t n, float* out) {
  for (int64_t b = 0; b < n / kMxFp4Block; ++b) {
    MxFp4DequantizeBlock(packed + b * 16, scales[b], out + b * kMxFp4Block);
  }
}

// ---- Whole matrices [rows, cols], row-major (host only) -----------------------------------------
//
// Rule: cols must be a multiple of the block size (16 NVFP4, 32 MXFP4) and rows, cols >= 0;
// otherwise kBadShape. Quantize also refuses any NaN/inf input with kNonFinite (a weight with
// NaN/inf is an error, not data). On any error nothing is written. Callers turn the result into
// a Status naming the tensor (Fp4ResultName gives the reason).

enum class Fp4Result { kOk, kBadShape, kNonFinite };

inline const char* Fp4ResultName(Fp4Result r) {
  if (r == Fp4Result::kOk) return "ok";
  if (r == Fp4Result::kBadShape) return "columns are not a multiple of the FP4 block size";
  return "contains NaN or Inf";
}

namespace detail {
inline Fp4Result CheckMatrix(const float* x, int64_t rows, int64_t cols, int block, float* amax) {
  if (rows < 0 || cols < 0 || cols % block != 0) return Fp4Result::kBadShape;
  bool finite;
  *amax = BlockAmax(x, rows * cols, &finite);
  return finite ? Fp4Result::kOk : Fp4Result::kNonFinite;
}
}  // namespace detail

// NVFP4 with the global scale computed from the matrix amax (NvFp4GlobalScale), returned in
// *global_scale. packed: rows * cols/2 bytes; scales: rows * cols/16 bytes.
inline Fp4Result NvFp4QuantizeMatrix(const float* x, int64_t rows, int64_t cols, uint8_t* packed,
                                     uint8_t* scales, float* global_scale) {
  float amax;
  const Fp4Result r = detail::CheckMatrix(x, rows, cols, kNvFp4Block, &amax);
  if (r != Fp4Result::kOk) return r;
  *global_scale = NvFp4GlobalScale(amax);
  for (int64_t i = 0; i < rows; ++i) {
    NvFp4QuantizeRow(x + i * cols, cols, *global_scale, packed + i * (cols / 2),
                     scales + i * (cols / kNvFp4Block));
  }
  return Fp4Result::kOk;
}

inline Fp4Result NvFp4DequantizeMatrix(const uint8_t* packed, const uint8_t* scales, int64_t rows,
                                       int64_t cols, float global_scale, float* out) {
  if (rows < 0 || cols < 0 || cols % kNvFp4Block != 0) return Fp4Result::kBadShape;
  for (int64_t i = 0; i < rows; ++i) {
    NvFp4DequantizeRow(packed + i * (cols / 2), scales + i * (cols / kNvFp4Block), cols,
                       global_scale, out + i * cols);
  }
  return Fp4Result::kOk;
}

// MXFP4. packed: rows * cols/2 bytes; scales: rows * cols/32 bytes.
inline Fp4Result MxFp4QuantizeMatrix(const float* x, int64_t rows, int64_t cols, uint8_t* packed,
                                     uint8_t* scales, MxScaleRule rule = MxScaleRule::kFloor) {
  float amax;
  const Fp4Result r = detail::CheckMatrix(x, rows, cols, kMxFp4Block, &amax);
  if (r != Fp4Result::kOk) return r;
  for (int64_t i = 0; i < rows; ++i) {
    MxFp4QuantizeRow(x + i * cols, cols, packed + i * (cols / 2), scales + i * (cols / kMxFp4Block),
                     rule);
  }
  return Fp4Result::kOk;
}

inline Fp4Result MxFp4DequantizeMatrix(const uint8_t* packed, const uint8_t* scales, int64_t rows,
                                       int64_t cols, float* out) {
  if (rows < 0 || cols < 0 || cols % kMxFp4Block != 0) return Fp4Result::kBadShape;
  for (int64_t i = 0; i < rows; ++i) {
    MxFp4DequantizeRow(packed + i * (cols / 2), scales + i * (cols / kMxFp4Block), cols,
                       out + i * cols);
  }
  return Fp4Result::kOk;
}

}  // namespace switchyard::fp4
