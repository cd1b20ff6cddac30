// How Fp4MatMulTransB splits one call over threads (kernels/cpu/fp4_gemm.cc): activation
// preparation split into (token, 8-pair) tasks must give the same codes, scales and lane terms as
// PrepareTokens, and the row units handed out from the shared counter (64-row takes, shrinking
// takes at the end) must cover every row exactly once for any thread count, including more
// threads than cores. Run with AVX2 and, as fp4_split_test_portable, with
// SWITCHYARD_FP4_PORTABLE=1.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/parallel.h"
#include "kernels/cpu/fp4_gemm.h"
#include "kernels/cpu/fp4_internal.h"
#include "test_util.h"

namespace switchyard::cpu {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  return switchyard::testing::RandomNormal(n, seed, scale);
}

class Fp4SplitTest : public ::testing::TestWithParam<Fp4Format> {};

// Pair ranges of every size (a whole token, single pairs, ragged chunks) in reverse order, on a
// buffer poisoned first: each range writes exactly its own pairs and the result equals
// PrepareTokens, including the ragged last pair and the padding past cols.
TEST_P(Fp4SplitTest, Int8PairRangesEqualWholeTokens) {
  const Fp4Format format = GetParam();
  for (int64_t cols : {64, 100, 1040, 7168}) {
    const int64_t m = 3, rows = 4;
    const auto w = Random(rows * cols, static_cast<uint32_t>(cols), 0.05f);
    auto q = QuantizeFp4(w.data(), rows, cols, format, "w");
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    auto x = Random(m * cols, static_cast<uint32_t>(cols + 1), 1.0f);
    for (int64_t i = 0; i < m * cols; i += 41) x[i] *= 25.0f;
    fp4_internal::PreparedActs want, got;
    fp4_internal::ResizeActs(m, *q, Fp4Activations::kInt8, &want);
    fp4_internal::ResizeActs(m, *q, Fp4Activations::kInt8, &got);
    fp4_internal::PrepareTokens(x.data(), cols, 0, m, *q, &want);
    std::fill(got.q.q.begin(), got.q.q.end(), int8_t{99});
    std::fill(got.q.scale.begin(), got.q.scale.end(), -1.0f);
    std::fill(got.q.lane_scale.begin(), got.q.lane_scale.end(), -1.0f);
    std::fill(got.q.lane_offset.begin(), got.q.lane_offset.end(), -1);
    const int64_t pairs = got.q.pairs;
    for (int64_t t = m - 1; t >= 0; --t) {
      const int64_t step = t + 1;  // 1, 2, 3 pairs per range
      for (int64_t p1 = pairs; p1 > 0; p1 -= step) {
        fp4_internal::PrepareInt8Pairs(x.data(), cols, t, std::max<int64_t>(0, p1 - step), p1, *q,
                                       &got.q);
      }
    }
    const std::string what = std::string(Fp4FormatName(format)) + " cols " + std::to_string(cols);
    EXPECT_EQ(got.q.q, want.q.q) << what;
    EXPECT_EQ(got.q.scale, want.q.scale) << what;
    EXPECT_EQ(got.q.lane_scale, want.q.lane_scale) << what;
    EXPECT_EQ(got.q.lane_offset, want.q.lane_offset) << what;
  }
}

// Many row units (rows not a multiple of the 8-row unit or the 126-row panel item), 1-5 threads,
// int8 and FP32 activations, few-token and panel paths: bit-identical to the serial form, which
// also means no row was skipped (y starts as NaN) or computed twice with different inputs.
TEST_P(Fp4SplitTest, EveryThreadCountCoversEveryRowOnce) {
  const Fp4Format format = GetParam();
  const int64_t rows = 1003;
  for (int64_t cols : {1040, 2048}) {
    const auto w = Random(rows * cols, static_cast<uint32_t>(rows + cols), 0.05f);
    auto q = QuantizeFp4(w.data(), rows, cols, format, "w");
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    for (int64_t m : {1, 3, 9, 40}) {
      const auto x = Random(m * cols, static_cast<uint32_t>(m), 1.0f);
      for (Fp4Activations act : {Fp4Activations::kInt8, Fp4Activations::kF32}) {
        std::vector<float> ys(m * rows, -2.0f);
        Fp4MatMulTransBSerial(x.data(), m, *q, ys.data(), act);
        for (int threads : {1, 2, 3, 5}) {
          SetComputeThreads(threads);
          std::vector<float> y(m * rows, std::nanf(""));
          Fp4MatMulTransB(x.data(), m, *q, y.data(), act);
          EXPECT_EQ(y, ys) << Fp4FormatName(format) << "/" << Fp4ActivationsName(act) << " cols "
                           << cols << " m " << m << " threads " << threads;
        }
      }
    }
  }
  SetComputeThreads(0);
}

INSTANTIATE_TEST_SUITE_P(Formats, Fp4SplitTest,
                         ::testing::Values(Fp4Format::kNvFp4, Fp4Format::kMxFp4),
                         [](const auto& info) { return std::string(Fp4FormatName(info.param)); });

}  // namespace
}  // namespace switchyard::cpu
