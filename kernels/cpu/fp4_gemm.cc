#include "kernels/cpu/fp4_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/fp4_format.h"

namespace switchyard::cpu {
namespace {

// 2·e2m1 for each code: exact small integers, so a block's dot is scaled by scale/2 once.
constexpr int8_t kTwiceE2m1[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

// Scale byte -> float for both scale types (decoded once; the GEMM looks them up per block).
struct ScaleTables {
  float e4m3[256], e8m0[256];
  ScaleTables() {
    for (int i = 0; i < 256; ++i) {
      e4m3[i] = fp4::E4m3ToF32(static_cast<uint8_t>(i));
      e8m0[i] = fp4::E8m0ToF32(static_cast<uint8_t>(i));
    }
  }
};
const ScaleTables& Tables() {
  static const ScaleTables tables;
  return tables;
}

// The per-block multiplier of 2·e2m1 (half the block's dequantization scale).
inline float BlockFactor(const Fp4Weight& w, uint8_t scale) {
  return w.format == Fp4Format::kNvFp4 ? 0.5f * Tables().e4m3[scale] * w.global_scale
                                       : 0.5f * Tables().e8m0[scale];
}

// Decodes 16 codes (8 packed bytes) into two vectors of 2·e2m1 as floats.
__attribute__((target("avx2,fma"))) inline void Decode16(const uint8_t* packed, __m256* lo,
                                                         __m256* hi) {
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kTwiceE2m1));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(packed));
  const __m128i even = _mm_and_si128(v, mask);
  const __m128i odd = _mm_and_si128(_mm_srli_epi16(v, 4), mask);
  const __m128i w8 = _mm_shuffle_epi8(table, _mm_unpacklo_epi8(even, odd));  // element order
  *lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(w8));
  *hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(w8, 8)));
}

__attribute__((target("avx2,fma"))) inline float HSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Rows [r0, r1) of y for MR rows of x. Full blocks vectorised; the tail block (cols not a
// multiple of the block) uses a zero-padded copy of x.
template <int MR>
__attribute__((target("avx2,fma"))) void RowsAvx2(const float* x, int64_t ldx, const Fp4Weight& w,
                                                  int64_t r0, int64_t r1, float* y, int64_t ldy) {
  const int block = Fp4BlockSize(w.format);
  const int64_t nblocks = w.padded_cols / block, full = w.cols / block;
  const int64_t row_bytes = w.padded_cols / 2;
  alignas(32) float tail[MR][32];
  const int64_t tail_len = w.cols - full * block;
  for (int i = 0; i < MR; ++i) {
    std::fill(tail[i], tail[i] + 32, 0.0f);
    if (tail_len > 0) std::memcpy(tail[i], x + i * ldx + full * block, tail_len * sizeof(float));
  }
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* packed = w.packed.data() + r * row_bytes;
    const uint8_t* scales = w.scales.data() + r * nblocks;
    __m256 acc[MR];
    for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nblocks; ++b) {
      const __m256 factor = _mm256_set1_ps(BlockFactor(w, scales[b]));
      for (int half = 0; half < block; half += 16) {
        __m256 w0, w1;
        Decode16(packed + (b * block + half) / 2, &w0, &w1);
        w0 = _mm256_mul_ps(w0, factor);
        w1 = _mm256_mul_ps(w1, factor);
        for (int i = 0; i < MR; ++i) {
          const float* xs = b < full ? x + i * ldx + b * block + half : tail[i] + half;
          acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(xs), w0, acc[i]);
          acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(xs + 8), w1, acc[i]);
        }
      }
    }
    for (int i = 0; i < MR; ++i) y[i * ldy + r] = HSum(acc[i]);
  }
}

void RowsScalar(const float* x, int64_t ldx, int64_t m, const Fp4Weight& w, int64_t r0, int64_t r1,
                float* y, int64_t ldy) {
  const int block = Fp4BlockSize(w.format);
  const int64_t nblocks = w.padded_cols / block, row_bytes = w.padded_cols / 2;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nblocks; ++b) {
        const float factor = BlockFactor(w, w.scales[r * nblocks + b]);
        float part = 0.0f;
        for (int j = 0; j < block && b * block + j < w.cols; ++j) {
          const int64_t c = b * block + j;
          part += x[i * ldx + c] * kTwiceE2m1[fp4::UnpackE2m1(w.packed.data() + r * row_bytes, c)];
        }
        acc += part * factor;
      }
      y[i * ldy + r] = acc;
    }
  }
}

// Block b of a row into dst[b * block ...] as FP32.
__attribute__((target("avx2,fma"))) void DequantizeBlockAvx2(const Fp4Weight& w,
                                                             const uint8_t* packed, uint8_t scale,
                                                             int64_t b, float* dst) {
  const int block = Fp4BlockSize(w.format);
  const __m256 factor = _mm256_set1_ps(BlockFactor(w, scale));
  for (int half = 0; half < block; half += 16) {
    __m256 w0, w1;
    Decode16(packed + (b * block + half) / 2, &w0, &w1);
    _mm256_storeu_ps(dst + b * block + half, _mm256_mul_ps(w0, factor));
    _mm256_storeu_ps(dst + b * block + half + 8, _mm256_mul_ps(w1, factor));
  }
}

bool DetectAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

void Rows(const float* x, int64_t m, const Fp4Weight& w, int64_t r0, int64_t r1, float* y) {
  static const bool avx2 = DetectAvx2();
  const int64_t ld = w.cols, ldy = w.rows;
  if (!avx2) {
    RowsScalar(x, ld, m, w, r0, r1, y, ldy);
    return;
  }
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) RowsAvx2<4>(x + i * ld, ld, w, r0, r1, y + i * ldy, ldy);
  for (; i < m; ++i) RowsAvx2<1>(x + i * ld, ld, w, r0, r1, y + i * ldy, ldy);
}

}  // namespace

const char* Fp4FormatName(Fp4Format format) {
  return format == Fp4Format::kNvFp4 ? "nvfp4" : "mxfp4";
}

int Fp4BlockSize(Fp4Format format) {
  return format == Fp4Format::kNvFp4 ? fp4::kNvFp4Block : fp4::kMxFp4Block;
}

bool Fp4MatMulUsesAvx2() {
  static const bool avx2 = DetectAvx2();
  return avx2;
}

StatusOr<Fp4Weight> QuantizeFp4(const float* w, int64_t rows, int64_t cols, Fp4Format format,
                                const std::string& name) {
  if (rows < 0 || cols <= 0) {
    return InvalidArgumentError("tensor '" + name + "': cannot quantize shape [" +
                                std::to_string(rows) + ", " + std::to_string(cols) + "]");
  }
  float amax = 0.0f;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float v = w[r * cols + c];
      if (!std::isfinite(v)) {
        return InvalidArgumentError("tensor '" + name + "' has a non-finite weight (" +
                                    std::to_string(v) + ") at row " + std::to_string(r) +
                                    ", column " + std::to_string(c) + "; it cannot be quantized");
      }
      amax = std::max(amax, std::fabs(v));
    }
  }
  const int block = Fp4BlockSize(format);
  Fp4Weight out;
  out.format = format;
  out.rows = rows;
  out.cols = cols;
  out.padded_cols = (cols + block - 1) / block * block;
  out.packed.assign(rows * out.padded_cols / 2, 0);
  out.scales.assign(rows * (out.padded_cols / block), 0);
  if (format == Fp4Format::kNvFp4) out.global_scale = fp4::NvFp4GlobalScale(amax);
  std::vector<float> row(out.padded_cols, 0.0f);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(w + r * cols, w + (r + 1) * cols, row.begin());  // zero padding stays
    uint8_t* packed = out.packed.data() + r * out.padded_cols / 2;
    uint8_t* scales = out.scales.data() + r * (out.padded_cols / block);
    if (format == Fp4Format::kNvFp4) {
      fp4::NvFp4QuantizeRow(row.data(), out.padded_cols, out.global_scale, packed, scales);
    } else {
      fp4::MxFp4QuantizeRow(row.data(), out.padded_cols, packed, scales);
    }
  }
  return out;
}

std::vector<float> DequantizeFp4(const Fp4Weight& w) {
  std::vector<float> out(w.rows * w.cols);
  std::vector<float> row(w.padded_cols);
  const int block = Fp4BlockSize(w.format);
  for (int64_t r = 0; r < w.rows; ++r) {
    const uint8_t* packed = w.packed.data() + r * w.padded_cols / 2;
    const uint8_t* scales = w.scales.data() + r * (w.padded_cols / block);
    if (w.format == Fp4Format::kNvFp4) {
      fp4::NvFp4DequantizeRow(packed, scales, w.padded_cols, w.global_scale, row.data());
    } else {
      fp4::MxFp4DequantizeRow(packed, scales, w.padded_cols, row.data());
    }
    std::copy(row.begin(), row.begin() + w.cols, out.begin() + r * w.cols);
  }
  return out;
}

namespace {

constexpr int64_t kRowsPerItem = 16;
// From this many tokens on, a panel of weight rows is dequantized once into FP32 and multiplied
// with the FP32 kernel (decode cost amortised over the tokens); below it, codes are decoded in
// registers for each token group.
constexpr int64_t kPanelMinTokens = 16;

void PanelRows(const float* x, int64_t m, const Fp4Weight& w, int64_t r0, int64_t r1, float* y,
               std::vector<float>* panel, std::vector<float>* out) {
  const int block = Fp4BlockSize(w.format);
  const int64_t n = r1 - r0, nblocks = w.padded_cols / block;
  panel->resize(n * w.padded_cols);
  out->resize(m * n);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* packed = w.packed.data() + r * w.padded_cols / 2;
    const uint8_t* scales = w.scales.data() + r * nblocks;
    float* dst = panel->data() + (r - r0) * w.cols;  // rows of exactly cols floats
    const int64_t full = Fp4MatMulUsesAvx2() ? w.cols / block : 0;
    for (int64_t b = 0; b < full; ++b) DequantizeBlockAvx2(w, packed, scales[b], b, dst);
    for (int64_t b = full; b < nblocks; ++b) {
      const float factor = BlockFactor(w, scales[b]);
      for (int j = 0; j < block && b * block + j < w.cols; ++j) {
        dst[b * block + j] = kTwiceE2m1[fp4::UnpackE2m1(packed, b * block + j)] * factor;
      }
    }
  }
  MatMulTransBSerial(x, m, w.cols, panel->data(), n, out->data());
  for (int64_t i = 0; i < m; ++i) {
    std::copy(out->begin() + i * n, out->begin() + (i + 1) * n, y + i * w.rows + r0);
  }
}

}  // namespace

void Fp4MatMulTransB(const float* x, int64_t m, const Fp4Weight& w, float* y) {
  if (m == 0 || w.rows == 0) return;
  const int64_t items = (w.rows + kRowsPerItem - 1) / kRowsPerItem;
  if (m >= kPanelMinTokens) {
#pragma omp parallel
    {
      std::vector<float> panel, out;
#pragma omp for schedule(static)
      for (int64_t it = 0; it < items; ++it) {
        PanelRows(x, m, w, it * kRowsPerItem, std::min(w.rows, (it + 1) * kRowsPerItem), y, &panel,
                  &out);
      }
    }
    return;
  }
#pragma omp parallel for schedule(static) if (m * w.rows * w.cols > (int64_t{1} << 16))
  for (int64_t it = 0; it < items; ++it) {
    Rows(x, m, w, it * kRowsPerItem, std::min(w.rows, (it + 1) * kRowsPerItem), y);
  }
}

void Fp4MatMulTransBSerial(const float* x, int64_t m, const Fp4Weight& w, float* y) {
  if (m == 0 || w.rows == 0) return;
  if (m >= kPanelMinTokens) {
    std::vector<float> panel, out;
    for (int64_t r0 = 0; r0 < w.rows; r0 += kRowsPerItem) {
      PanelRows(x, m, w, r0, std::min(w.rows, r0 + kRowsPerItem), y, &panel, &out);
    }
    return;
  }
  Rows(x, m, w, 0, w.rows, y);
}

void Fp4MatMulTransBReference(const float* x, int64_t m, const Fp4Weight& w, float* y) {
  const std::vector<float> deq = DequantizeFp4(w);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double acc = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        acc += static_cast<double>(x[i * w.cols + c]) * deq[r * w.cols + c];
      }
      y[i * w.rows + r] = static_cast<float>(acc);
    }
  }
}

}  // namespace switchyard::cpu
