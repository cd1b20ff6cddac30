// bench_fp4: FP4-weight GEMM (FP32 activations) on CPU against this machine's limits, same run.
//   bench_fp4 [--format nvfp4|mxfp4]
// Shapes: a DeepSeek-V3 expert's gate/up projection ([2048, 7168] weights) for decode-sized
// (1, 4, 16 tokens) and prefill-sized (256 tokens) groups. Baselines: streaming read bandwidth
// (decode reads every weight byte once), the FP32 FMA peak of all threads, and OpenBLAS sgemm on
// the same shape with FP32 weights. One JSON line per case.
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/parallel.h"
#include "kernels/cpu/fp4_gemm.h"

using namespace switchyard;

namespace {

// Independent FMA chains on every thread: the FP32 FMA peak (GFLOP/s).
__attribute__((target("avx2,fma"))) double FmaPeakGflops() {
  constexpr int64_t kIters = 20'000'000;
  const double t0 = bench::Now();
  float sink = 0;
#pragma omp parallel reduction(+ : sink)
  {
    __m256 a[10];
    for (int i = 0; i < 10; ++i) a[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
    const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < kIters; ++it) {
      for (int i = 0; i < 10; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
    }
    float t[8];
    __m256 s = a[0];
    for (int i = 1; i < 10; ++i) s = _mm256_add_ps(s, a[i]);
    _mm256_storeu_ps(t, s);
    sink += t[0];
  }
  const double secs = bench::Now() - t0;
  return sink == 0 ? 0 : omp_get_max_threads() * kIters * 10.0 * 16 / secs / 1e9;
}

template <typename F>
double BestSeconds(F&& fn, int reps) {
  fn();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = bench::Now();
    fn();
    best = std::min(best, bench::Now() - t0);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  PreferPassiveOpenMpWait(argv);
  cpu::Fp4Format format = cpu::Fp4Format::kNvFp4;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--format" && i + 1 < argc) {
      format = std::string(argv[++i]) == "mxfp4" ? cpu::Fp4Format::kMxFp4 : cpu::Fp4Format::kNvFp4;
    } else {
      std::fprintf(stderr, "usage: bench_fp4 [--format nvfp4|mxfp4]\n");
      return 2;
    }
  }
  SetComputeThreads(0);
  const int64_t rows = 2048, cols = 7168;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> w(rows * cols);
  for (auto& v : w) v = dist(rng);
  auto q = cpu::QuantizeFp4(w.data(), rows, cols, format, "bench");
  if (!q.ok()) return 1;
  const double stream = bench::StreamReadGBs();
  const double peak = FmaPeakGflops();
  std::printf(
      "# %s, threads %d, weights [%lld, %lld]: FP4 %.1f MB vs FP32 %.1f MB; stream %.1f "
      "GB/s, FMA peak %.0f GFLOP/s, avx2 %d\n",
      cpu::Fp4FormatName(format), ComputeThreads(), static_cast<long long>(rows),
      static_cast<long long>(cols), q->Bytes() / 1e6, rows * cols * 4 / 1e6, stream, peak,
      cpu::Fp4MatMulUsesAvx2() ? 1 : 0);
  for (int64_t m : {1, 4, 16, 256}) {
    std::vector<float> x(m * cols), y(m * rows);
    for (auto& v : x) v = dist(rng);
    const int reps = m >= 256 ? 3 : 20;
    const double fp4_s =
        BestSeconds([&] { cpu::Fp4MatMulTransB(x.data(), m, *q, y.data()); }, reps);
    const double blas_s = BestSeconds(
        [&] {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, rows, cols, 1.0f, x.data(), cols,
                      w.data(), cols, 0.0f, y.data(), rows);
        },
        reps);
    const double flops = 2.0 * m * rows * cols;
    const double weight_gbs = q->Bytes() / fp4_s / 1e9;
    std::printf(
        "{\"bench\": \"fp4_gemm\", \"format\": \"%s\", \"m\": %lld, \"n\": %lld, \"k\": %lld, "
        "\"fp4_ms\": %.3f, \"fp4_GFLOPs\": %.1f, \"fma_peak_GFLOPs\": %.0f, \"of_peak\": %.3f, "
        "\"weight_GBps\": %.2f, \"stream_GBps\": %.2f, \"of_stream\": %.3f, "
        "\"openblas_fp32_ms\": %.3f, \"speedup_vs_openblas_fp32\": %.2f}\n",
        cpu::Fp4FormatName(format), static_cast<long long>(m), static_cast<long long>(rows),
        static_cast<long long>(cols), fp4_s * 1e3, flops / fp4_s / 1e9, peak,
        flops / fp4_s / 1e9 / peak, weight_gbs, stream, weight_gbs / stream, blas_s * 1e3,
        blas_s / fp4_s);
  }
  return 0;
}
