// Baselines shared by the benchmarks, measured in the same run as what they are compared with.
#pragma once

#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <vector>

namespace switchyard::bench {

inline double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

__attribute__((target("avx2"))) inline float SumAvx2(const float* a, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {  // four independent accumulators keep the loads in flight
    s0 = _mm256_add_ps(s0, _mm256_loadu_ps(a + i));
    s1 = _mm256_add_ps(s1, _mm256_loadu_ps(a + i + 8));
    s2 = _mm256_add_ps(s2, _mm256_loadu_ps(a + i + 16));
    s3 = _mm256_add_ps(s3, _mm256_loadu_ps(a + i + 24));
  }
  float t[8];
  _mm256_storeu_ps(t, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
  float sum = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
  for (; i < n; ++i) sum += a[i];
  return sum;
}

inline float SumPortable(const float* a, int64_t n) {
  float s[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += a[i + j];
  float sum = 0;
  for (int j = 0; j < 8; ++j) sum += s[j];
  for (; i < n; ++i) sum += a[i];
  return sum;
}

// One read of [a, a + n) by all threads (each its own contiguous part), GB/s.
inline double ReadOnceGBs(const float* a, int64_t n) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2");
  const double t0 = Now();
  float total = 0;
#pragma omp parallel reduction(+ : total)
  {
    const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t begin = n * id / threads, end = n * (id + 1) / threads;
    total += avx2 ? SumAvx2(a + begin, end - begin) : SumPortable(a + begin, end - begin);
  }
  const double gbs = static_cast<double>(n) * sizeof(float) / (Now() - t0) / 1e9;
  return total < 0 ? 0 : gbs;  // the sum is used, so the reads are not optimised away
}

// Best of 5 ReadOnceGBs over [a, a + n).
inline double BestReadGBs(const float* a, int64_t n) {
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) best = std::max(best, ReadOnceGBs(a, n));
  return best;
}

// Streaming read bandwidth (GB/s) over `bytes` (far larger than the caches) with all compute
// threads, each reading its own contiguous part; best of 5 after a warm-up touch.
inline double StreamReadGBs(int64_t bytes = int64_t{1} << 30) {
  const std::vector<float> a(bytes / static_cast<int64_t>(sizeof(float)), 1.0f);
  return BestReadGBs(a.data(), static_cast<int64_t>(a.size()));
}

// A buffer of `bytes` (a multiple of 2 MiB) on 2 MiB pages where the kernel grants them (advised
// before the first touch), filled with 1.0f; std::free it.
inline float* HugePageFloats(int64_t bytes) {
  float* a = static_cast<float*>(std::aligned_alloc(size_t{2} << 20, bytes));
  if (a == nullptr) std::abort();
  madvise(a, bytes, MADV_HUGEPAGE);
  std::fill(a, a + bytes / static_cast<int64_t>(sizeof(float)), 1.0f);
  return a;
}

// StreamReadGBs over a buffer on huge pages (same read, same threads, best of 5).
inline double StreamReadHugeGBs(int64_t bytes = int64_t{1} << 30) {
  float* a = HugePageFloats(bytes);
  const double best = BestReadGBs(a, bytes / static_cast<int64_t>(sizeof(float)));
  std::free(a);
  return best;
}

// The stream baseline of benchmarks whose data may sit on huge pages (the weights do: the
// huge-page arena): the better of the plain read and the huge-page read.
inline double StreamBaselineGBs() { return std::max(StreamReadGBs(), StreamReadHugeGBs()); }

}  // namespace switchyard::bench
