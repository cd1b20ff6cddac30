// bench_fp4: CPU FP4-weight GEMM against this machine's limits, measured in the same run.
//   bench_fp4 [--format nvfp4|mxfp4] [--act int8|f32] [--json] [--quick | --prefill | --decode]
//             [--decode-reps N] [--no-hugepages]
// --decode runs only the three one-token decode cases.
// --prefill runs only the grouped cases of the panel path (64 and 512 tokens per expert).
// Baselines: streaming read bandwidth of all threads (bench_util.h; and the same read over a
// buffer on 2 MiB pages, the larger of the two counts), the FP32 FMA peak of all threads
// (register-only FMA chains), OpenBLAS sgemm on the same shape with FP32 weights. Stream and peak
// are measured at start-up and again before each case (decode: before each repetition); ratios
// use the best so far.
// Cases:
//   decode  one token against weights far larger than the caches (copies cycled so that no call
//           finds its weights in L3): K=4096 x M=32768 and DeepSeek-V3 expert projections
//           [2048, 7168] / [7168, 2048]; ratio = FP4 bytes streamed per second / stream bandwidth.
//           The weights sit where the engine puts them: the huge-page arena
//           (common/huge_page_arena.h; --no-hugepages: the ordinary heap, 4 KiB pages).
//           --decode-reps N (default 5) repetitions of 3 timed passes over the copies. Two ratios:
//           the best and the median repetition against the best stream seen so far in the run (the
//           stream re-measured before each repetition), and, paired, every pass against the faster
//           of the two 256 MB huge-page reads right before and after it (median and best).
//   grouped every expert's gate_up -> SwiGLU -> down through cpu::Fp4GroupedMlp at MoE shapes and
//           1..512 tokens per expert; ratio = FLOP/s (6·tokens·hidden·inter per expert) / peak.
// --json prints only one JSON line per case (with the baselines in each line).
#include <cblas.h>
#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/huge_page_arena.h"
#include "common/parallel.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/fp4_gemm.h"
#include "kernels/cpu/fp4_grouped.h"

using namespace switchyard;

namespace {

// Independent FMA chains on every thread, registers only: the FP32 FMA peak (GFLOP/s). Best of 7
// short trials: the two vCPUs of this machine are shared with neighbours, and a single long trial
// under-reads the peak by up to 2x when one of them is descheduled (seen: 93 vs 186 GFLOP/s).
__attribute__((target("avx2,fma"))) double FmaPeakTrial(int64_t iters) {
  const double t0 = bench::Now();
  float sink = 0;
#pragma omp parallel reduction(+ : sink)
  {
    __m256 a[10];
    for (int i = 0; i < 10; ++i) a[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
    const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; ++it) {
      for (int i = 0; i < 10; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
    }
    float t[8];
    __m256 s = a[0];
    for (int i = 1; i < 10; ++i) s = _mm256_add_ps(s, a[i]);
    _mm256_storeu_ps(t, s);
    sink += t[0];
  }
  const double secs = bench::Now() - t0;
  return sink == 0 ? 0 : omp_get_max_threads() * iters * 10.0 * 16 / secs / 1e9;
}

double FmaPeakGflops() {
  double best = 0;
  for (int trial = 0; trial < 7; ++trial) best = std::max(best, FmaPeakTrial(4'000'000));
  return best;
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

// Wall seconds as BestSeconds; *cpu: the best CPU seconds of the whole process (all threads) per
// call. With passive OpenMP waiting idle threads cost nothing, so this is what the call cost the
// cores: far steadier than wall time on a machine shared with other jobs.
template <typename F>
double BestSecondsAndCpu(F&& fn, int reps, double* cpu) {
  const auto process_cpu = [] {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  };
  fn();
  double best = 1e30;
  *cpu = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = bench::Now(), c0 = process_cpu();
    fn();
    *cpu = std::min(*cpu, process_cpu() - c0);
    best = std::min(best, bench::Now() - t0);
  }
  return best;
}

// One core's FP32 FMA peak (GFLOP/s) by the thread's own CPU time, best of 7: the baseline of the
// CPU-time rates.
__attribute__((target("avx2,fma"))) double CorePeakCpuGflops() {
  const auto thread_cpu = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  };
  double best = 0;
  for (int trial = 0; trial < 7; ++trial) {
    __m256 a[10];
    for (int i = 0; i < 10; ++i) a[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
    const __m256 b = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    const int64_t iters = 2'000'000;
    const double t0 = thread_cpu();
    for (int64_t it = 0; it < iters; ++it) {
      for (int i = 0; i < 10; ++i) a[i] = _mm256_fmadd_ps(a[i], b, c);
    }
    const double secs = thread_cpu() - t0;
    float t[8];
    __m256 sum = a[0];
    for (int i = 1; i < 10; ++i) sum = _mm256_add_ps(sum, a[i]);
    _mm256_storeu_ps(t, sum);
    if (t[0] != 0) best = std::max(best, iters * 10.0 * 16 / secs / 1e9);
  }
  return best;
}

std::vector<float> RandomMatrix(int64_t n, uint64_t seed) {  // ~N(0, 0.02)-like, fast
  std::vector<float> v(n);
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& x : v) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    const float u = static_cast<float>((s >> 40) & 0xFFFFFF) / 16777216.0f;
    x = 0.02f * (u - 0.5f) * 3.4f;
  }
  return v;
}

struct Context {
  cpu::Fp4Format format;
  cpu::Fp4Activations act;
  double stream, peak;
  bool json;
  double core_peak = 0;  // one core, by thread CPU time (CorePeakCpuGflops)
  int decode_reps = 5;   // --decode-reps
};

// This process's anonymous memory on transparent huge pages (MB; -1 if unknown).
double HugePageMb() {
  FILE* f = std::fopen("/proc/self/smaps_rollup", "r");
  if (f == nullptr) return -1;
  char line[256];
  double mb = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    long long kb = 0;
    if (std::sscanf(line, "AnonHugePages: %lld kB", &kb) == 1) mb = kb / 1024.0;
  }
  std::fclose(f);
  return mb;
}

// The median of v (sorted in place); 0 for none.
double Median(std::vector<double>* v) {
  if (v->empty()) return 0;
  std::sort(v->begin(), v->end());
  return (*v)[v->size() / 2];
}

void Decode(Context& ctx, int64_t rows, int64_t cols) {
  const std::vector<float> w = RandomMatrix(rows * cols, rows + cols);
  // The weights as the engine holds them: the huge-page arena (common/huge_page_arena.h), or the
  // ordinary heap with --no-hugepages (SWITCHYARD_HUGEPAGES=off).
  auto q = cpu::QuantizeFp4(w.data(), rows, cols, ctx.format, "bench");
  if (!q.ok()) std::abort();
  // Enough copies that a pass reads >= 256 MB: every call streams its weights from memory.
  const int64_t copies = std::max<int64_t>(2, (int64_t{256} << 20) / q->Bytes() + 1);
  const double huge_before = HugePageMb();
  std::vector<cpu::Fp4Weight> ws(copies, *q);
  const double weight_mb = copies * q->Bytes() / 1048576.0;
  const double huge_mb = std::clamp(HugePageMb() - huge_before, 0.0, weight_mb);
  const std::vector<float> x = RandomMatrix(cols, 7);
  std::vector<float> y(rows);
  // Paired baseline: a read of 256 MB on huge pages right before and right after every timed
  // pass (about as long as the pass); the pass is compared with the faster of its two neighbours,
  // so a busy moment weakens both sides alike.
  const int64_t adjacent_bytes = int64_t{256} << 20;
  float* adjacent = bench::HugePageFloats(adjacent_bytes);
  const int64_t adjacent_n = adjacent_bytes / static_cast<int64_t>(sizeof(float));
  // The machine's load changes within a run: the full baseline is also measured again before
  // every repetition and the best stream seen so far is kept (never a weaker baseline than at
  // start-up); every repetition's best pass is taken against the best stream seen so far in the
  // run (start-up, earlier cases and this one).
  std::vector<double> rep_gbs, paired, adjacent_gbs;
  double stream_lo = 1e30;  // the lowest re-measurement in this case (how busy it got)
  for (int rep = 0; rep < ctx.decode_reps; ++rep) {
    const double stream = bench::StreamBaselineGBs();
    stream_lo = std::min(stream_lo, stream);
    ctx.stream = std::max(ctx.stream, stream);
    double best = 1e30, before = bench::ReadOnceGBs(adjacent, adjacent_n);
    for (int pass = 0; pass < 4; ++pass) {  // pass 0 warms up
      const double t0 = bench::Now();
      for (const auto& wc : ws) cpu::Fp4MatMulTransB(x.data(), 1, wc, y.data(), ctx.act);
      const double seconds = (bench::Now() - t0) / copies;
      const double after = bench::ReadOnceGBs(adjacent, adjacent_n);
      if (pass > 0) {
        best = std::min(best, seconds);
        paired.push_back(q->Bytes() / seconds / 1e9 / std::max(before, after));
        adjacent_gbs.push_back(std::max(before, after));
      }
      before = after;
    }
    rep_gbs.push_back(q->Bytes() / best / 1e9);
  }
  std::free(adjacent);
  const double blas = BestSeconds(
      [&] {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0f, w.data(), cols, x.data(), 1,
                    0.0f, y.data(), 1);
      },
      3);
  std::sort(rep_gbs.begin(), rep_gbs.end());
  const double gbs = rep_gbs.back(), median = rep_gbs[rep_gbs.size() / 2];
  const double best = q->Bytes() / gbs / 1e9;
  const double paired_best = *std::max_element(paired.begin(), paired.end());
  const double paired_median = Median(&paired), adjacent_median = Median(&adjacent_gbs);
  if (!ctx.json) {
    std::printf(
        "decode  [%6lld x %5lld]  fp4 %7.3f ms  %5.1f GB/s = %.2f of stream (median of %d: "
        "%.2f; stream %.1f, lowest re-read %.1f GB/s) | paired: %.2f of the adjacent reads "
        "(median of %zu; best %.2f; adjacent %.1f GB/s) | OpenBLAS fp32 %7.3f ms (%.1fx) | huge "
        "pages %.0f of %.0f MB\n",
        static_cast<long long>(rows), static_cast<long long>(cols), best * 1e3, gbs,
        gbs / ctx.stream, ctx.decode_reps, median / ctx.stream, ctx.stream, stream_lo,
        paired_median, paired.size(), paired_best, adjacent_median, blas * 1e3, blas / best,
        huge_mb, weight_mb);
  }
  std::printf(
      "{\"bench\": \"fp4_decode\", \"format\": \"%s\", \"act\": \"%s\", \"tokens\": 1, "
      "\"rows\": %lld, \"cols\": %lld, \"fp4_ms\": %.4f, \"weight_GBps\": %.2f, "
      "\"stream_GBps\": %.2f, \"of_stream\": %.3f, \"reps\": %d, \"of_stream_median\": %.3f, "
      "\"of_stream_worst\": %.3f, \"stream_lowest_GBps\": %.2f, \"of_adjacent_median\": %.3f, "
      "\"of_adjacent_best\": %.3f, \"adjacent_GBps_median\": %.2f, \"paired_passes\": %zu, "
      "\"hugepage_MB\": %.0f, \"weight_MB\": %.0f, "
      "\"openblas_fp32_ms\": %.4f, \"speedup_vs_openblas_fp32\": %.2f}\n",
      cpu::Fp4FormatName(ctx.format), cpu::Fp4ActivationsName(ctx.act),
      static_cast<long long>(rows), static_cast<long long>(cols), best * 1e3, gbs, ctx.stream,
      gbs / ctx.stream, ctx.decode_reps, median / ctx.stream, rep_gbs.front() / ctx.stream,
      stream_lo, paired_median, paired_best, adjacent_median, paired.size(), huge_mb, weight_mb,
      blas * 1e3, blas / best);
  std::fflush(stdout);
}

struct GroupedCase {
  const char* name;
  int64_t experts, pool, hidden, inter, tokens_per_expert;
};

void Grouped(Context& ctx, const GroupedCase& c) {
  // `pool` distinct experts (together larger than L3), cycled over the `experts` slots.
  std::vector<cpu::Fp4Weight> fp4;
  std::vector<std::vector<float>> f32;  // FP32 copies of 2 experts for the OpenBLAS baseline
  for (int64_t p = 0; p < c.pool; ++p) {
    for (int j = 0; j < 3; ++j) {
      const int64_t rows = j < 2 ? c.inter : c.hidden, cols = j < 2 ? c.hidden : c.inter;
      std::vector<float> w = RandomMatrix(rows * cols, p * 3 + j + 11);
      auto q = cpu::QuantizeFp4(w.data(), rows, cols, ctx.format, "bench");
      if (!q.ok()) std::abort();
      fp4.push_back(std::move(*q));
      if (p < 2) f32.push_back(std::move(w));
    }
  }
  std::vector<cpu::Fp4ExpertMlp> experts(c.experts);
  std::vector<int64_t> offsets(c.experts + 1, 0);
  for (int64_t e = 0; e < c.experts; ++e) {
    const int64_t p = e % c.pool;
    experts[e] = {&fp4[p * 3], &fp4[p * 3 + 1], &fp4[p * 3 + 2]};
    offsets[e + 1] = offsets[e] + c.tokens_per_expert;
  }
  const int64_t rows = offsets.back();
  const std::vector<float> x = RandomMatrix(rows * c.hidden, 5);
  std::vector<float> out(rows * c.hidden);
  cpu::Fp4GroupedWorkspace workspace;
  const double flops = 6.0 * c.tokens_per_expert * c.hidden * c.inter * c.experts;
  const int reps = flops > 2e11 ? 1 : flops > 2e10 ? 2 : 5;
  ctx.peak = std::max(ctx.peak, FmaPeakGflops());  // best peak so far, as the stream in Decode
  double fp4_cpu = 0;
  const double fp4_s = BestSecondsAndCpu(
      [&] {
        if (!cpu::Fp4GroupedMlp(experts, offsets, x.data(), c.hidden, out.data(), ctx.act,
                                &workspace)
                 .ok())
          std::abort();
      },
      reps, &fp4_cpu);
  const double core_gflops = flops / fp4_cpu / 1e9;  // per core-second of CPU time
  // OpenBLAS: the same MLP per expert with FP32 weights (2 experts alternating), per-expert time
  // times the expert count.
  const int64_t t = c.tokens_per_expert;
  std::vector<float> g(t * c.inter), u(t * c.inter), o(t * c.hidden);
  const int64_t base_experts = std::min<int64_t>(c.experts, 4);
  const double blas_s =
      BestSeconds(
          [&] {
            for (int64_t e = 0; e < base_experts; ++e) {
              const auto& wg = f32[(e % 2) * 3];
              const auto& wu = f32[(e % 2) * 3 + 1];
              const auto& wd = f32[(e % 2) * 3 + 2];
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, c.inter, c.hidden, 1.0f,
                          x.data(), c.hidden, wg.data(), c.hidden, 0.0f, g.data(), c.inter);
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, c.inter, c.hidden, 1.0f,
                          x.data(), c.hidden, wu.data(), c.hidden, 0.0f, u.data(), c.inter);
              cpu::SiluMul(g.data(), u.data(), t * c.inter, g.data());
              cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t, c.hidden, c.inter, 1.0f,
                          g.data(), c.inter, wd.data(), c.inter, 0.0f, o.data(), c.hidden);
            }
          },
          reps) *
      c.experts / base_experts;
  const double gflops = flops / fp4_s / 1e9;
  if (!ctx.json) {
    std::printf(
        "grouped %-18s experts %3lld x %3lld tok  fp4 %8.2f ms  %6.1f GFLOP/s = %.2f of "
        "peak | OpenBLAS fp32 %8.2f ms (%.1fx) | cpu time %5.1f GFLOP/s per core = %.2f of a "
        "core\n",
        c.name, static_cast<long long>(c.experts), static_cast<long long>(c.tokens_per_expert),
        fp4_s * 1e3, gflops, gflops / ctx.peak, blas_s * 1e3, blas_s / fp4_s, core_gflops,
        core_gflops / ctx.core_peak);
  }
  std::printf(
      "{\"bench\": \"fp4_grouped_mlp\", \"case\": \"%s\", \"format\": \"%s\", \"act\": \"%s\", "
      "\"experts\": %lld, \"tokens_per_expert\": %lld, \"hidden\": %lld, \"inter\": %lld, "
      "\"fp4_ms\": %.3f, \"GFLOPs\": %.1f, \"fma_peak_GFLOPs\": %.1f, \"of_peak\": %.3f, "
      "\"openblas_fp32_ms\": %.3f, \"speedup_vs_openblas_fp32\": %.2f, "
      "\"cpu_GFLOPs_per_core\": %.1f, \"core_peak_GFLOPs\": %.1f, \"of_core_peak\": %.3f}\n",
      c.name, cpu::Fp4FormatName(ctx.format), cpu::Fp4ActivationsName(ctx.act),
      static_cast<long long>(c.experts), static_cast<long long>(c.tokens_per_expert),
      static_cast<long long>(c.hidden), static_cast<long long>(c.inter), fp4_s * 1e3, gflops,
      ctx.peak, gflops / ctx.peak, blas_s * 1e3, blas_s / fp4_s, core_gflops, ctx.core_peak,
      core_gflops / ctx.core_peak);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (auto st = ApplyOpenMpWaitPolicy(argv); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 2;
  }
  Context ctx{cpu::Fp4Format::kNvFp4, cpu::DefaultFp4Activations(), 0, 0, false};
  bool quick = false, prefill = false, decode = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--format" && i + 1 < argc) {
      ctx.format =
          std::string(argv[++i]) == "mxfp4" ? cpu::Fp4Format::kMxFp4 : cpu::Fp4Format::kNvFp4;
    } else if (arg == "--act" && i + 1 < argc) {
      auto act = cpu::ParseFp4Activations(argv[++i]);
      if (!act.ok()) {
        std::fprintf(stderr, "bench_fp4: %s\n", act.status().ToString().c_str());
        return 2;
      }
      ctx.act = *act;
    } else if (arg == "--json") {
      ctx.json = true;
    } else if (arg == "--quick") {
      quick = true;
    } else if (arg == "--prefill") {
      prefill = true;
    } else if (arg == "--decode") {
      decode = true;
    } else if (arg == "--decode-reps" && i + 1 < argc) {
      char* end = nullptr;
      const long reps = std::strtol(argv[++i], &end, 10);
      if (end == argv[i] || *end != '\0' || reps < 1 || reps > 1000) {
        std::fprintf(stderr, "bench_fp4: --decode-reps '%s' is not a count in 1..1000\n", argv[i]);
        return 2;
      }
      ctx.decode_reps = static_cast<int>(reps);
    } else if (arg == "--no-hugepages") {
      SetHugePageArenaEnabled(false);
    } else {
      std::fprintf(stderr,
                   "usage: bench_fp4 [--format nvfp4|mxfp4] [--act int8|f32] [--json] "
                   "[--quick | --prefill | --decode] [--decode-reps N] [--no-hugepages]\n");
      return 2;
    }
  }
  SetComputeThreads(0);
  ctx.stream = bench::StreamBaselineGBs();
  ctx.peak = FmaPeakGflops();
  ctx.core_peak = CorePeakCpuGflops();
  if (!ctx.json) {
    std::printf(
        "# %s, %s activations, threads %d, avx2 %d: stream read %.1f GB/s, FP32 FMA peak "
        "%.1f GFLOP/s (one core by CPU time: %.1f)\n",
        cpu::Fp4FormatName(ctx.format), cpu::Fp4ActivationsName(ctx.act), ComputeThreads(),
        cpu::Fp4MatMulUsesAvx2() ? 1 : 0, ctx.stream, ctx.peak, ctx.core_peak);
  }
  if (!quick && !prefill) Decode(ctx, 32768, 4096);
  if (!prefill) {
    Decode(ctx, 2048, 7168);
    Decode(ctx, 7168, 2048);
  }
  // DeepSeek-V3 experts (hidden 7168, inter 2048; 256 experts, top-8: 32 per rank of 8) and
  // Qwen3-30B-A3B-like experts (hidden 2048, inter 768; 128 experts, top-8).
  const std::vector<GroupedCase> cases = {
      {"dsv3_h7168_i2048", 32, 4, 7168, 2048, 1},  {"dsv3_h7168_i2048", 32, 4, 7168, 2048, 8},
      {"dsv3_h7168_i2048", 8, 4, 7168, 2048, 64},  {"dsv3_h7168_i2048", 2, 2, 7168, 2048, 512},
      {"qwen3_h2048_i768", 128, 16, 2048, 768, 1}, {"qwen3_h2048_i768", 128, 16, 2048, 768, 8},
      {"qwen3_h2048_i768", 32, 16, 2048, 768, 64}, {"qwen3_h2048_i768", 16, 16, 2048, 768, 512},
  };
  if (decode) return 0;
  for (const auto& c : cases) {
    if (quick && c.tokens_per_expert == 512 && c.hidden > 4096) continue;
    if (prefill && c.tokens_per_expert < 32) continue;  // the panel path: 64 and 512 tokens
    Grouped(ctx, c);
  }
  return 0;
}
