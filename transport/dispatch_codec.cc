#include "transport/dispatch_codec.h"

#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "common/dtype.h"
#include "kernels/fp4_format.h"

namespace switchyard::dispatch_codec {
namespace {

int64_t Pad4(int64_t n) { return (n + 3) & ~int64_t{3}; }

// The BF16 kernels have AVX2 versions chosen at run time; they compute exactly what the scalar
// F32ToBf16 / Bf16ToF32 compute (round to nearest even, NaN kept quiet), 8 values a step.
bool HaveAvx2() {
  static const bool avx2 = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return avx2;
}

// 8 floats -> their BF16 bits, each in the low half of a 32-bit lane.
__attribute__((target("avx2"))) inline __m256i Bf16Bits8(__m256i u) {
  const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  const __m256i quiet = _mm256_set1_epi32(0x40);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
  const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), lsb), 16);
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
  const __m256i nan_bits = _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet);
  return _mm256_blendv_epi8(rounded, nan_bits, nan);
}

__attribute__((target("avx2"))) void EncodeBf16Avx2(const float* src, int64_t n, std::byte* dst) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i bits = Bf16Bits8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    // 8 x u32 (each < 2^16) -> 8 x u16 in order.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; ++i) {
    const uint16_t b = F32ToBf16(src[i]);
    std::memcpy(dst + 2 * i, &b, 2);
  }
}

__attribute__((target("avx2"))) void DecodeBf16Avx2(const std::byte* src, int64_t n, float* dst,
                                                    bool accumulate) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i));
    const __m256 v = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    _mm256_storeu_ps(dst + i, accumulate ? _mm256_add_ps(_mm256_loadu_ps(dst + i), v) : v);
  }
  for (; i < n; ++i) {
    uint16_t b;
    std::memcpy(&b, src + 2 * i, 2);
    dst[i] = accumulate ? dst[i] + Bf16ToF32(b) : Bf16ToF32(b);
  }
}

__attribute__((target("avx2"))) void RoundTripBf16Avx2(const float* src, int64_t n, float* dst,
                                                       bool accumulate) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i bits = Bf16Bits8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    const __m256 v = _mm256_castsi256_ps(_mm256_slli_epi32(bits, 16));
    _mm256_storeu_ps(dst + i, accumulate ? _mm256_add_ps(_mm256_loadu_ps(dst + i), v) : v);
  }
  for (; i < n; ++i) {
    const float v = Bf16ToF32(F32ToBf16(src[i]));
    dst[i] = accumulate ? dst[i] + v : v;
  }
}

// Elements [begin, end) of the row sum, in row order (the vector path's order per element).
void SumBf16RowsScalar(const uint16_t* const* rows, int count, int64_t begin, int64_t end,
                       float* out_f32, uint16_t* out_bf16) {
  for (int64_t i = begin; i < end; ++i) {
    float acc = 0.0f;
    for (int r = 0; r < count; ++r) acc += Bf16ToF32(rows[r][i]);
    if (out_f32 != nullptr) {
      out_f32[i] = acc;
    } else {
      out_bf16[i] = F32ToBf16(acc);
    }
  }
}

// 8 BF16 values at p, widened.
__attribute__((target("avx2"))) inline __m256 Widen8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

template <bool kStream>
__attribute__((target("avx2"))) void SumBf16RowsAvx2(const uint16_t* const* rows, int count,
                                                     int64_t n, float* out_f32,
                                                     uint16_t* out_bf16) {
  int64_t i = 0;
  // 16 values per step: interleaving a 256-bit load of BF16 values with zeros puts each value in
  // the high half of a 32-bit lane, i.e. widens it exactly, in the order [0-3, 8-11] (lo) and
  // [4-7, 12-15] (hi) within the two 128-bit halves; packing lo and hi back per half restores
  // the natural order for a BF16 output, two cross-half permutes restore it for FP32.
  const __m256i zero = _mm256_setzero_si256();
  for (; i + 16 <= n; i += 16) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int r = 0; r < count; ++r) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + i));
      lo = _mm256_add_ps(lo, _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, v)));
      hi = _mm256_add_ps(hi, _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, v)));
    }
    if (out_f32 != nullptr) {
      const __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20);   // 0-3, 4-7
      const __m256 second = _mm256_permute2f128_ps(lo, hi, 0x31);  // 8-11, 12-15
      if constexpr (kStream) {
        _mm256_stream_ps(out_f32 + i, first);
        _mm256_stream_ps(out_f32 + i + 8, second);
      } else {
        _mm256_storeu_ps(out_f32 + i, first);
        _mm256_storeu_ps(out_f32 + i + 8, second);
      }
    } else {
      const __m256i packed = _mm256_packus_epi32(Bf16Bits8(_mm256_castps_si256(lo)),
                                                 Bf16Bits8(_mm256_castps_si256(hi)));
      if constexpr (kStream) {
        if (reinterpret_cast<uintptr_t>(out_bf16 + i) % 32 == 0) {
          _mm256_stream_si256(reinterpret_cast<__m256i*>(out_bf16 + i), packed);
        } else {
          _mm_stream_si128(reinterpret_cast<__m128i*>(out_bf16 + i),
                           _mm256_castsi256_si128(packed));
          _mm_stream_si128(reinterpret_cast<__m128i*>(out_bf16 + i + 8),
                           _mm256_extracti128_si256(packed, 1));
        }
      } else {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out_bf16 + i), packed);
      }
    }
  }
  for (; i + 8 <= n; i += 8) {
    __m256 acc = _mm256_setzero_ps();
    for (int r = 0; r < count; ++r) acc = _mm256_add_ps(acc, Widen8(rows[r] + i));
    if (out_f32 != nullptr) {
      if constexpr (kStream) {
        _mm256_stream_ps(out_f32 + i, acc);
      } else {
        _mm256_storeu_ps(out_f32 + i, acc);
      }
    } else {
      const __m256i bits = Bf16Bits8(_mm256_castps_si256(acc));
      const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0x08);
      if constexpr (kStream) {
        _mm_stream_si128(reinterpret_cast<__m128i*>(out_bf16 + i), _mm256_castsi256_si128(packed));
      } else {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out_bf16 + i), _mm256_castsi256_si128(packed));
      }
    }
  }
  SumBf16RowsScalar(rows, count, i, n, out_f32, out_bf16);
}

__attribute__((target("avx2"))) void StreamCopyAvx2(std::byte* dst, const std::byte* src,
                                                    int64_t n) {
  const int64_t head = std::min<int64_t>(n, (32 - reinterpret_cast<uintptr_t>(dst) % 32) % 32);
  std::memcpy(dst, src, head);
  int64_t i = head;
  for (; i + 32 <= n; i += 32) {
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
  }
  std::memcpy(dst + i, src + i, n - i);
}

// E4M3 code -> float, all 256 codes.
const std::array<float, 256>& E4m3Table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int c = 0; c < 256; ++c) t[c] = fp4::E4m3ToF32(static_cast<uint8_t>(c));
    return t;
  }();
  return table;
}

float Fp8Scale(const float* x, int64_t n) {
  float amax = 0.0f;
  bool finite = true;
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    finite &= std::isfinite(a);
    amax = std::max(amax, a);
  }
  if (!finite) return std::nanf("");  // every element of the block decodes as NaN
  return amax == 0.0f ? 1.0f : amax / fp4::kE4m3Max;
}

// The FP8 kernels below have AVX2 versions that compute exactly what the scalar ones compute
// (fp4::F32ToE4m3 of x / scale, the same IEEE division; max is order-independent).
__attribute__((target("avx2"))) float Fp8ScaleAvx2(const float* x, int64_t n) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 inf = _mm256_set1_ps(INFINITY);
  __m256 amax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, inf, _CMP_NLT_UQ));  // inf or NaN
    amax = _mm256_max_ps(amax, a);
  }
  float lanes[8];
  _mm256_storeu_ps(lanes, amax);
  float m = 0.0f;
  for (float v : lanes) m = std::max(m, v);
  bool finite = _mm256_movemask_ps(bad) == 0;
  for (; i < n; ++i) {
    const float a = std::fabs(x[i]);
    finite &= std::isfinite(a);
    m = std::max(m, a);
  }
  if (!finite) return std::nanf("");
  return m == 0.0f ? 1.0f : m / fp4::kE4m3Max;
}

// 8 floats -> their E4M3 codes (as fp4::F32ToE4m3), in the low byte of each 32-bit lane.
__attribute__((target("avx2"))) inline __m256i E4m3Codes8(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i a = _mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff));
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(u, 24), _mm256_set1_epi32(0x80));
  // Normal range (|v| >= 2^-6): round the FP32 mantissa to 3 bits, nearest even, then rebias the
  // exponent from 127 to 7; a carry moves to the exponent by itself.
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(a, 20), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(a, _mm256_set1_epi32(0x7ffff)), lsb), 20);
  const __m256i normal = _mm256_sub_epi32(rounded, _mm256_set1_epi32(120 << 3));
  // Subnormal range: multiples of 2^-9, rounded to nearest even by the conversion (|v| * 2^9 is
  // exact); 2^-6 itself comes out as code 8, the smallest normal.
  const __m256 abs_v = _mm256_castsi256_ps(a);
  const __m256i sub = _mm256_cvtps_epi32(_mm256_mul_ps(abs_v, _mm256_set1_ps(512.0f)));
  const __m256i is_normal = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x3c7fffff));
  __m256i code = _mm256_blendv_epi8(sub, normal, is_normal);
  const __m256i sat = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x43e00000));
  code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7e), sat);
  const __m256i nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7f800000));
  code = _mm256_blendv_epi8(code, _mm256_set1_epi32(0x7f), nan);
  return _mm256_or_si256(_mm256_andnot_si256(nan, sign), code);
}

__attribute__((target("avx2"))) void EncodeFp8BlockAvx2(const float* x, int64_t n, float scale,
                                                        uint8_t* codes) {
  const __m256 s = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i c = E4m3Codes8(_mm256_div_ps(_mm256_loadu_ps(x + i), s));
    const __m256i w = _mm256_packus_epi32(c, c);  // [c0..3 c0..3 | c4..7 c4..7] as u16
    const __m256i b = _mm256_packus_epi16(w, w);  // low 4 bytes of each 128-bit half
    const uint32_t lo = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_castsi256_si128(b)));
    const uint32_t hi = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm256_extracti128_si256(b, 1)));
    std::memcpy(codes + i, &lo, 4);
    std::memcpy(codes + i + 4, &hi, 4);
  }
  for (; i < n; ++i) codes[i] = fp4::F32ToE4m3(x[i] / scale);
}

// E4M3 -> FP32 without a table: the code's 7 magnitude bits placed at the top of an FP32
// mantissa/exponent field read as a float are 2^-120 times the E4M3 value (normal and subnormal
// codes alike), so one exact multiply by 2^120 finishes the job; 0x7F / 0xFF become NaN.
__attribute__((target("avx2"))) void DecodeFp8BlockAvx2(const uint8_t* codes, int64_t n,
                                                        float scale, const float* table, float* dst,
                                                        bool accumulate) {
  const __m256 s = _mm256_set1_ps(scale), two120 = _mm256_set1_ps(0x1p120f);
  const __m256i mag_mask = _mm256_set1_epi32(0x7f), sign_mask = _mm256_set1_epi32(0x80);
  const __m256 nan = _mm256_set1_ps(NAN);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i c =
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i)));
    const __m256i mag = _mm256_and_si256(c, mag_mask);
    const __m256i bits = _mm256_or_si256(_mm256_slli_epi32(mag, 20),
                                         _mm256_slli_epi32(_mm256_and_si256(c, sign_mask), 24));
    __m256 v = _mm256_mul_ps(_mm256_castsi256_ps(bits), two120);
    v = _mm256_blendv_ps(v, nan, _mm256_castsi256_ps(_mm256_cmpeq_epi32(mag, mag_mask)));
    v = _mm256_mul_ps(v, s);
    _mm256_storeu_ps(dst + i, accumulate ? _mm256_add_ps(_mm256_loadu_ps(dst + i), v) : v);
  }
  for (; i < n; ++i) {
    const float v = table[codes[i]] * scale;
    dst[i] = accumulate ? dst[i] + v : v;
  }
}

void EncodeFp8(const float* src, int64_t hidden, std::byte* dst) {
  const int64_t blocks = (hidden + kFp8Block - 1) / kFp8Block;
  std::byte* scales = dst + Pad4(hidden);
  uint8_t* codes = reinterpret_cast<uint8_t*>(dst);
  const bool avx2 = HaveAvx2();
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * kFp8Block, n = std::min(kFp8Block, hidden - first);
    const float scale = avx2 ? Fp8ScaleAvx2(src + first, n) : Fp8Scale(src + first, n);
    if (avx2) {
      EncodeFp8BlockAvx2(src + first, n, scale, codes + first);
    } else {
      for (int64_t i = 0; i < n; ++i) codes[first + i] = fp4::F32ToE4m3(src[first + i] / scale);
    }
    std::memcpy(scales + 4 * b, &scale, 4);
  }
  for (int64_t i = hidden; i < Pad4(hidden); ++i) dst[i] = std::byte{0};
}

void DecodeFp8(const std::byte* src, int64_t hidden, float* dst, bool accumulate) {
  const auto& table = E4m3Table();
  const int64_t blocks = (hidden + kFp8Block - 1) / kFp8Block;
  const std::byte* scales = src + Pad4(hidden);
  const bool avx2 = HaveAvx2();
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t first = b * kFp8Block, n = std::min(kFp8Block, hidden - first);
    float scale;
    std::memcpy(&scale, scales + 4 * b, 4);
    const uint8_t* codes = reinterpret_cast<const uint8_t*>(src) + first;
    float* out = dst + first;
    if (avx2) {
      DecodeFp8BlockAvx2(codes, n, scale, table.data(), out, accumulate);
    } else if (accumulate) {
      for (int64_t i = 0; i < n; ++i) out[i] += table[codes[i]] * scale;
    } else {
      for (int64_t i = 0; i < n; ++i) out[i] = table[codes[i]] * scale;
    }
  }
}

void RoundTripFp8(const float* src, int64_t hidden, float* dst, bool accumulate) {
  // One block at a time through a small buffer: [codes | pad | scale] of one block.
  alignas(64) std::byte row[kFp8Block + 4];
  for (int64_t first = 0; first < hidden; first += kFp8Block) {
    const int64_t n = std::min(kFp8Block, hidden - first);
    EncodeFp8(src + first, n, row);
    DecodeFp8(row, n, dst + first, accumulate);
  }
}

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full,
                   kP3 = 0x165667B19E3779F9ull, kP4 = 0x85EBCA77C2B2AE63ull,
                   kP5 = 0x27D4EB2F165667C5ull;

inline uint64_t Rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
inline uint64_t Round(uint64_t acc, uint64_t v) { return Rotl(acc + v * kP2, 31) * kP1; }
inline uint64_t Merge(uint64_t h, uint64_t lane) { return (h ^ Round(0, lane)) * kP1 + kP4; }
inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

int64_t RowBytes(Codec codec, int64_t hidden) {
  switch (codec) {
    case Codec::kF32:
      return 4 * hidden;
    case Codec::kBF16:
      return 2 * hidden;
    case Codec::kFP8:
      return Pad4(hidden) + 4 * ((hidden + kFp8Block - 1) / kFp8Block);
  }
  return 0;
}

void EncodeRow(const float* src, int64_t hidden, Codec codec, std::byte* dst) {
  switch (codec) {
    case Codec::kF32:
      std::memcpy(dst, src, 4 * hidden);
      return;
    case Codec::kBF16:
      if (HaveAvx2()) {
        EncodeBf16Avx2(src, hidden, dst);
      } else {
        for (int64_t i = 0; i < hidden; ++i) {
          const uint16_t b = F32ToBf16(src[i]);
          std::memcpy(dst + 2 * i, &b, 2);
        }
      }
      return;
    case Codec::kFP8:
      EncodeFp8(src, hidden, dst);
      return;
  }
}

void DecodeRow(const std::byte* src, int64_t hidden, Codec codec, float* dst, bool accumulate) {
  switch (codec) {
    case Codec::kF32:
      if (!accumulate) {
        std::memcpy(dst, src, 4 * hidden);
      } else {
        for (int64_t i = 0; i < hidden; ++i) {
          float v;
          std::memcpy(&v, src + 4 * i, 4);
          dst[i] += v;
        }
      }
      return;
    case Codec::kBF16:
      if (HaveAvx2()) {
        DecodeBf16Avx2(src, hidden, dst, accumulate);
      } else {
        for (int64_t i = 0; i < hidden; ++i) {
          uint16_t b;
          std::memcpy(&b, src + 2 * i, 2);
          dst[i] = accumulate ? dst[i] + Bf16ToF32(b) : Bf16ToF32(b);
        }
      }
      return;
    case Codec::kFP8:
      DecodeFp8(src, hidden, dst, accumulate);
      return;
  }
}

void RoundTripRow(const float* src, int64_t hidden, Codec codec, float* dst, bool accumulate) {
  switch (codec) {
    case Codec::kF32:
      if (!accumulate) {
        std::memmove(dst, src, 4 * hidden);
      } else {
        for (int64_t i = 0; i < hidden; ++i) dst[i] += src[i];
      }
      return;
    case Codec::kBF16:
      if (HaveAvx2()) {
        RoundTripBf16Avx2(src, hidden, dst, accumulate);
      } else {
        for (int64_t i = 0; i < hidden; ++i) {
          const float v = Bf16ToF32(F32ToBf16(src[i]));
          dst[i] = accumulate ? dst[i] + v : v;
        }
      }
      return;
    case Codec::kFP8:
      RoundTripFp8(src, hidden, dst, accumulate);
      return;
  }
}

void SumBf16Rows(const uint16_t* const* rows, int count, int64_t hidden, float* out_f32,
                 uint16_t* out_bf16, bool stream) {
  if (HaveAvx2()) {
    const uintptr_t at = out_f32 != nullptr ? reinterpret_cast<uintptr_t>(out_f32)
                                            : reinterpret_cast<uintptr_t>(out_bf16);
    if (stream && at % (out_f32 != nullptr ? 32 : 16) == 0) {
      SumBf16RowsAvx2<true>(rows, count, hidden, out_f32, out_bf16);
    } else {
      SumBf16RowsAvx2<false>(rows, count, hidden, out_f32, out_bf16);
    }
    return;
  }
  SumBf16RowsScalar(rows, count, 0, hidden, out_f32, out_bf16);
}

void StreamCopy(void* dst, const void* src, int64_t n) {
  if (n >= 256 && HaveAvx2()) {
    StreamCopyAvx2(static_cast<std::byte*>(dst), static_cast<const std::byte*>(src), n);
  } else {
    std::memcpy(dst, src, n);
  }
}

void StreamFence() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_sfence();
#endif
}

uint64_t Checksum64(const void* data, int64_t n, uint64_t seed) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  const uint8_t* const end = p + n;
  uint64_t h;
  if (n >= 32) {
    uint64_t v1 = seed + kP1 + kP2, v2 = seed + kP2, v3 = seed, v4 = seed - kP1;
    for (; p + 32 <= end; p += 32) {
      v1 = Round(v1, Load64(p));
      v2 = Round(v2, Load64(p + 8));
      v3 = Round(v3, Load64(p + 16));
      v4 = Round(v4, Load64(p + 24));
    }
    h = Rotl(v1, 1) + Rotl(v2, 7) + Rotl(v3, 12) + Rotl(v4, 18);
    h = Merge(Merge(Merge(Merge(h, v1), v2), v3), v4);
  } else {
    h = seed + kP5;
  }
  h += static_cast<uint64_t>(n);
  for (; p + 8 <= end; p += 8) h = Rotl(h ^ Round(0, Load64(p)), 27) * kP1 + kP4;
  if (p + 4 <= end) {
    uint32_t k;
    std::memcpy(&k, p, 4);
    h = Rotl(h ^ (static_cast<uint64_t>(k) * kP1), 23) * kP2 + kP3;
    p += 4;
  }
  for (; p < end; ++p) h = Rotl(h ^ (*p * kP5), 11) * kP1;
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  h ^= h >> 32;
  return h;
}

}  // namespace switchyard::dispatch_codec
