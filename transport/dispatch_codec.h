// Row codecs and checksums of MoE dispatch/combine (internal to transport/dispatch*.cc; tests use
// it to build references). No communication, no allocation, no state: every function is pure and
// thread-safe.
//
// Transit formats of one row of `hidden` FP32 values (PayloadDtype, transport/dispatch.h):
//   F32:  hidden * 4 bytes, the values as they are.
//   BF16: hidden * 2 bytes, each value rounded to nearest even (common/dtype.h F32ToBf16).
//   FP8:  hidden E4M3 codes (kernels/fp4_format.h F32ToE4m3, saturating), zero bytes up to a
//         multiple of 4, then one FP32 scale per block of kFp8Block elements (the last block may
//         be partial). For block b with amax = max |x_i| over the block:
//           scale = amax / 448 (scale = 1 when amax == 0);  code_i = E4M3(x_i / scale);
//           decoded_i = E4M3ToF32(code_i) * scale.
//         Error bound (finite inputs, scale a normal float, i.e. amax >= 448 * 2^-126): x_i / scale
//         lies in [-448, 448] (up to one FP32 rounding, which saturation absorbs). E4M3 keeps 3
//         mantissa bits, so rounding to nearest moves a value v with |v| >= 2^-6 (normal range) by
//         at most 2^-4 |v|, and a subnormal one (|v| < 2^-6, spacing 2^-9) by at most 2^-10.
//         Scaling back by `scale` (and the two FP32 roundings of the division and the product,
//         each <= 2^-24 relative) gives, per element,
//           |decoded_i - x_i| <= 2^-4 |x_i| + 2^-10 * scale + 2^-22 |x_i|
//                            <= 2^-4 |x_i| + 2^-18.8 * amax + 2^-22 |x_i|   (2^-10 / 448)
//         and so |decoded_i - x_i| <= (2^-4 + 2^-18) * amax_block for every element of the block.
//         A block holding Inf or NaN decodes as NaN (every element of that block).
// Codecs are bitwise equal to the scalar definitions above whether or not AVX2 is used.
#pragma once

#include <cstddef>
#include <cstdint>

namespace switchyard::dispatch_codec {

// Element type codes: the values of PayloadDtype (dispatch.h), repeated here so that this header
// stands alone.
enum class Codec : int32_t { kF32 = 0, kBF16 = 1, kFP8 = 2 };

inline constexpr int64_t kFp8Block = 128;  // elements per FP8 scale

// Bytes of one row of `hidden` elements in transit (see the formats above).
int64_t RowBytes(Codec codec, int64_t hidden);

// Encodes `hidden` FP32 values at `src` into one transit row at `dst` (RowBytes(codec, hidden)
// bytes, any alignment). FP8 writes its padding bytes as zeros.
void EncodeRow(const float* src, int64_t hidden, Codec codec, std::byte* dst);

// Decodes one transit row at `src` into `hidden` FP32 values at `dst`; with `accumulate`,
// dst[i] += value_i instead (a single FP32 addition per element).
void DecodeRow(const std::byte* src, int64_t hidden, Codec codec, float* dst, bool accumulate);

// dst[i] = (or +=, with `accumulate`) the value src[i] has after a round trip through the transit
// format (encode then decode), without materialising the transit row in the caller's memory. What
// rows a rank sends to itself go through (they never leave the process).
void RoundTripRow(const float* src, int64_t hidden, Codec codec, float* dst, bool accumulate);

// Sums `count` BF16 rows of `hidden` values in one pass: acc_i = ((+0.0f + r0_i) + r1_i) + ...
// in FP32 (each row widened exactly, one FP32 addition per row, in the order given; count == 0
// gives +0.0f), then writes acc_i to out_f32[i] or, when out_f32 is null, F32ToBf16(acc_i) to
// out_bf16[i]. Bitwise what a zero-fill followed by DecodeRow(..., kBF16, accumulate) per row
// computes (then rounded), with each output element written once. Rows: 2-byte values, any
// alignment; the outputs must not overlap the rows. stream: write the output with non-temporal
// stores (bypassing the caches, no read for ownership) when it is aligned for them (32 bytes F32,
// 16 bytes BF16), for outputs much larger than the caches; the caller then calls StreamFence()
// before anything else reads them. Same values either way.
void SumBf16Rows(const uint16_t* const* rows, int count, int64_t hidden, float* out_f32,
                 uint16_t* out_bf16, bool stream = false);

// memcpy(dst, src, n) with non-temporal stores (AVX2; plain memcpy otherwise or for small n):
// for copies into memory another core reads later, much larger than the caches. Call
// StreamFence() before publishing the data.
void StreamCopy(void* dst, const void* src, int64_t n);
// Orders the non-temporal stores above before later stores (sfence).
void StreamFence();

// A 64-bit non-cryptographic checksum of `n` bytes, chained through `seed` (an XXH64-style hash:
// four 64-bit lanes over 32-byte stripes, multiply-rotate rounds and a final avalanche). Any
// single-byte change of the input changes the result. ~10 GB/s per core.
uint64_t Checksum64(const void* data, int64_t n, uint64_t seed);

}  // namespace switchyard::dispatch_codec
