#include "kernels/cpu/fp4_gemm.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <thread>

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

namespace {

constexpr int64_t kPrepPairs = 8;  // 1024 columns per int8 quantization task
// Few-token paths: rows are handed out in units of 8, 8 units (64 rows, as Fp4GroupedMlp's items)
// per take until near the end of the call (GuidedUnits).
constexpr int64_t kSmallUnitRows = 8;
constexpr int64_t kSmallUnitsPerTake = fp4_internal::kSmallRowsPerItem / kSmallUnitRows;

// Work units [0, n) handed out front to back from one shared counter: `big` units at a time while
// plenty are left, then smaller takes (what is left / (2 · threads), at least 1 unit), so the
// threads finish within about one unit of each other; a thread running alone (the others not yet
// awake, or descheduled) walks the weights in order. Next() is lock-free and thread-safe; it
// returns false when every unit has been taken.
class GuidedUnits {
 public:
  GuidedUnits(int64_t n, int threads, int64_t big) : n_(n), div_(2 * int64_t{threads}), big_(big) {}
  bool Next(int64_t* begin, int64_t* end) {
    int64_t front = front_.load(std::memory_order_relaxed);
    for (;;) {
      if (front >= n_) return false;
      const int64_t take = std::clamp<int64_t>((n_ - front) / div_, 1, big_);
      if (front_.compare_exchange_weak(front, front + take, std::memory_order_relaxed)) {
        *begin = front;
        *end = front + take;
        return true;
      }
    }
  }

 private:
  const int64_t n_, div_, big_;
  std::atomic<int64_t> front_{0};
};

// Activation preparation tasks [0, n) claimed by whichever threads are running. Claim() and Done()
// are lock-free; WaitAllDone() returns once every task has finished (release/acquire: their writes
// are visible), waiting only for tasks other threads are in the middle of (each a few
// microseconds; it yields the core while it waits).
class PrepTasks {
 public:
  explicit PrepTasks(int64_t n) : n_(n) {}
  bool Claim(int64_t* i) {
    *i = next_.fetch_add(1, std::memory_order_relaxed);
    return *i < n_;
  }
  void Done() { done_.fetch_add(1, std::memory_order_release); }
  void WaitAllDone() const {
    for (int spins = 0; done_.load(std::memory_order_acquire) < n_; ++spins) {
      if (spins < 64) {
        _mm_pause();
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  const int64_t n_;
  std::atomic<int64_t> next_{0}, done_{0};
};

// Preparation task i of Fp4MatMulTransB (see prep_tasks there).
void PrepareTask(const float* x, const Fp4Weight& w, int64_t i, int64_t pair_chunks,
                 fp4_internal::PreparedActs* a) {
  if (a->panel) {
    fp4_internal::PreparePanelTokens(x, w.cols, 8 * i, std::min(a->m, 8 * i + 8), w, a);
  } else if (a->act == Fp4Activations::kInt8) {
    const int64_t t = i / pair_chunks, p0 = i % pair_chunks * kPrepPairs;
    fp4_internal::PrepareInt8Pairs(x, w.cols, t, p0, std::min(a->q.pairs, p0 + kPrepPairs), w,
                                   &a->q);
  } else {
    fp4_internal::PrepareTokens(x, w.cols, i, i + 1, w, a);
  }
}

}  // namespace

void Fp4MatMulTransB(const float* x, int64_t m, const Fp4Weight& w, float* y, Fp4Activations act) {
  if (m == 0 || w.rows == 0) return;
  fp4_internal::PreparedActs a;
  fp4_internal::ResizeActs(m, w, act, &a);
  // Units of rows: one panel item (126 rows, 21 register tiles), or 8 rows (few tokens).
  const int64_t unit_rows = a.panel ? fp4_internal::kPanelRows : kSmallUnitRows;
  const int64_t units = (w.rows + unit_rows - 1) / unit_rows;
  // Activation preparation tasks: 8-token blocks (panel), (token, 8 pairs of columns) (int8), or
  // tokens (FP32), so that even one long token is quantized by all threads.
  const int64_t pair_chunks = (a.q.pairs + kPrepPairs - 1) / kPrepPairs;
  const int64_t prep_tasks = a.panel                        ? (m + 7) / 8
                             : act == Fp4Activations::kInt8 ? m * pair_chunks
                                                            : m;
  const bool parallel =
      m * w.rows * w.cols > (int64_t{1} << 16) && omp_get_max_threads() > 1 && !omp_in_parallel();
  GuidedUnits work(units, parallel ? omp_get_max_threads() : 1, a.panel ? 1 : kSmallUnitsPerTake);
  PrepTasks prep(prep_tasks);
#pragma omp parallel if (parallel)
  {
    // No barrier between the two phases: the thread that opens the region prepares and starts on
    // the rows at once; the others join as they wake (passive OpenMP wait: 10-25 us).
    for (int64_t i; prep.Claim(&i);) {
      PrepareTask(x, w, i, pair_chunks, &a);
      prep.Done();
    }
    prep.WaitAllDone();
    std::vector<float> scratch;
    for (int64_t u0, u1; work.Next(&u0, &u1);) {
      fp4_internal::ComputeRows(a, w, u0 * unit_rows, std::min(w.rows, u1 * unit_rows), y, w.rows,
                                &scratch);
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
