#include "kernels/cpu/fp4_gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "common/logging.h"
#include "kernels/cpu/fp4_internal.h"
#include "kernels/fp4_format.h"

namespace switchyard::cpu {
namespace fp4_internal {
namespace {

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

// FP32 activations, few tokens: rows [r0, r1) of y for MR rows of x (padded to padded_cols with
// zeros, so every block is whole). Codes are decoded in registers once per MR tokens.
template <int MR>
__attribute__((target("avx2,fma"))) void F32RowsAvx2(const float* x, int64_t ldx,
                                                     const Fp4Weight& w, int64_t r0, int64_t r1,
                                                     float* y, int64_t ldy) {
  const int block = Fp4BlockSize(w.format);
  const int64_t nblocks = w.padded_cols / block, row_bytes = w.padded_cols / 2;
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
          const float* xs = x + i * ldx + b * block + half;
          acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(xs), w0, acc[i]);
          acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(xs + 8), w1, acc[i]);
        }
      }
    }
    for (int i = 0; i < MR; ++i) y[i * ldy + r] = HSum(acc[i]);
  }
}

void F32RowsScalar(const float* x, int64_t ldx, int64_t m, const Fp4Weight& w, int64_t r0,
                   int64_t r1, float* y, int64_t ldy) {
  const int block = Fp4BlockSize(w.format);
  const int64_t nblocks = w.padded_cols / block, row_bytes = w.padded_cols / 2;
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (int64_t b = 0; b < nblocks; ++b) {
        const float factor = BlockFactor(w, w.scales[r * nblocks + b]);
        float part = 0.0f;
        for (int j = 0; j < block; ++j) {
          const int64_t c = b * block + j;
          part += x[i * ldx + c] * kTwiceE2m1[fp4::UnpackE2m1(w.packed.data() + r * row_bytes, c)];
        }
        acc += part * factor;
      }
      y[i * ldy + r] = acc;
    }
  }
}

// SWITCHYARD_FP4_PORTABLE=1 forces the portable kernels (tests run them on AVX2 machines too).
bool DetectAvx2() {
  const char* portable = std::getenv("SWITCHYARD_FP4_PORTABLE");
  if (portable != nullptr && std::string(portable) == "1") return false;
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

}  // namespace

bool HasAvx2() {
  static const bool avx2 = DetectAvx2();
  return avx2;
}

float BlockFactor(const Fp4Weight& w, uint8_t scale) {
  return w.format == Fp4Format::kNvFp4 ? 0.5f * Tables().e4m3[scale] * w.global_scale
                                       : 0.5f * Tables().e8m0[scale];
}

void F32Rows(const float* x, int64_t ldx, int64_t m, const Fp4Weight& w, int64_t r0, int64_t r1,
             float* y, int64_t ldy) {
  if (!HasAvx2()) {
    F32RowsScalar(x, ldx, m, w, r0, r1, y, ldy);
    return;
  }
  int64_t i = 0;
  for (; i + 4 <= m; i += 4) F32RowsAvx2<4>(x + i * ldx, ldx, w, r0, r1, y + i * ldy, ldy);
  for (; i < m; ++i) F32RowsAvx2<1>(x + i * ldx, ldx, w, r0, r1, y + i * ldy, ldy);
}

void ComputeRows(const PreparedActs& a, const Fp4Weight& w, int64_t r0, int64_t r1, float* y,
                 int64_t ldy, std::vector<float>* scratch) {
  if (a.panel) {
    PanelRows(a.xf.data(), a.m, w, r0, r1, y, ldy, scratch);
  } else if (a.act == Fp4Activations::kF32) {
    F32Rows(a.xf.data(), a.padded_cols, a.m, w, r0, r1, y, ldy);
  } else {
    Int8Rows(a.q, w, r0, r1, y, ldy);
  }
}

void ComputeRowsPair(const PreparedActs& a, const Fp4Weight& w0, const Fp4Weight& w1, int64_t r0,
                     int64_t r1, float* y0, float* y1, int64_t ldy, std::vector<float>* scratch) {
  if (a.panel) {
    PanelRowsPair(a.xf.data(), a.m, w0, w1, r0, r1, y0, y1, ldy, scratch);
  } else {
    ComputeRows(a, w0, r0, r1, y0, ldy, scratch);
    ComputeRows(a, w1, r0, r1, y1, ldy, scratch);
  }
}

}  // namespace fp4_internal

using fp4_internal::HasAvx2;

const char* Fp4FormatName(Fp4Format format) {
  return format == Fp4Format::kNvFp4 ? "nvfp4" : "mxfp4";
}

int Fp4BlockSize(Fp4Format format) {
  return format == Fp4Format::kNvFp4 ? fp4::kNvFp4Block : fp4::kMxFp4Block;
}

bool Fp4MatMulUsesAvx2() { return HasAvx2(); }

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

const char* Fp4ActivationsName(Fp4Activations act) {
  return act == Fp4Activations::kInt8 ? "int8" : "f32";
}

StatusOr<Fp4Activations> ParseFp4Activations(const std::string& text) {
  if (text == "int8") return Fp4Activations::kInt8;
  if (text == "f32") return Fp4Activations::kF32;
  return InvalidArgumentError("FP4 activation mode '" + text + "' is not int8 or f32");
}

Fp4Activations DefaultFp4Activations() {
  static const Fp4Activations act = [] {
    const char* env = std::getenv("SWITCHYARD_FP4_ACTIVATIONS");
    Fp4Activations a = Fp4Activations::kInt8;
    if (env != nullptr) {
      auto parsed = ParseFp4Activations(env);
      if (parsed.ok()) {
        a = *parsed;
      } else {
        LOG_WARN("fp4", "SWITCHYARD_FP4_ACTIVATIONS: %s; using int8",
                 parsed.status().message().c_str());
      }
    }
    LOG_INFO("fp4", "FP4 expert GEMM: %s activations (SWITCHYARD_FP4_ACTIVATIONS=int8|f32), %s",
             Fp4ActivationsName(a), HasAvx2() ? "AVX2/FMA" : "portable");
    return a;
  }();
  return act;
}

void Fp4MatMulTransB(const float* x, int64_t m, const Fp4Weight& w, float* y, Fp4Activations act) {
  if (m == 0 || w.rows == 0) return;
  fp4_internal::PreparedActs a;
  fp4_internal::ResizeActs(m, w, act, &a);
  const bool panel = a.panel;
  const int64_t rows_per_item = panel ? fp4_internal::kPanelRows : fp4_internal::kSmallRowsPerItem;
  const int64_t items = (w.rows + rows_per_item - 1) / rows_per_item;
  const bool parallel = m * w.rows * w.cols > (int64_t{1} << 16);
#pragma omp parallel if (parallel)
  {
#pragma omp for schedule(static)
    for (int64_t t = 0; t < m; ++t) fp4_internal::PrepareTokens(x, w.cols, t, t + 1, w, &a);
    std::vector<float> scratch;
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < items; ++it) {
      fp4_internal::ComputeRows(a, w, it * rows_per_item,
                                std::min(w.rows, (it + 1) * rows_per_item), y, w.rows, &scratch);
    }
  }
}

void Fp4MatMulTransBSerial(const float* x, int64_t m, const Fp4Weight& w, float* y,
                           Fp4Activations act) {
  if (m == 0 || w.rows == 0) return;
  fp4_internal::PreparedActs a;
  fp4_internal::ResizeActs(m, w, act, &a);
  fp4_internal::PrepareTokens(x, w.cols, 0, m, w, &a);
  std::vector<float> scratch;
  const int64_t step = a.panel ? fp4_internal::kPanelRows : fp4_internal::kSmallRowsPerItem;
  for (int64_t r0 = 0; r0 < w.rows; r0 += step) {
    fp4_internal::ComputeRows(a, w, r0, std::min(w.rows, r0 + step), y, w.rows, &scratch);
  }
}

void Fp4MatMulTransBReference(const float* x, int64_t m, const Fp4Weight& w, float* y,
                              Fp4Activations act) {
  const std::vector<float> deq = DequantizeFp4(w);
  std::vector<float> xe(x, x + m * w.cols);
  if (act == Fp4Activations::kInt8) EmulateInt8Activations(x, m, w.cols, w.format, xe.data());
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t r = 0; r < w.rows; ++r) {
      double acc = 0;
      for (int64_t c = 0; c < w.cols; ++c) {
        acc += static_cast<double>(xe[i * w.cols + c]) * deq[r * w.cols + c];
      }
      y[i * w.rows + r] = static_cast<float>(acc);
    }
  }
}

}  // namespace switchyard::cpu
