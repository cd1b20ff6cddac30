// The int8-activation FP4 kernel (kernels/cpu/fp4_int8.cc) at the edges its fast path special-
// cases: k-blocks of 8192 elements with an odd or partial last pair of groups, every token-block
// remainder, global scales outside the range where 2^120 · factor is folded into one multiply, and
// NaN propagation from a weight block scale (in every block position) or a non-finite activation.
// Run with AVX2 and, as fp4_int8_test_portable, with SWITCHYARD_FP4_PORTABLE=1.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "common/parallel.h"
#include "kernels/cpu/fp4_gemm.h"
#include "test_util.h"

namespace switchyard::cpu {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  return switchyard::testing::RandomNormal(n, seed, scale);
}

// Int8 path against the double-precision reference on the same (emulated) activations: within
// 1e-5 of Σ|x'·w| per output; parallel and serial forms bit-identical.
void ExpectMatchesReference(Fp4Format format, int64_t rows, int64_t cols, int64_t m,
                            float weight_scale) {
  SetComputeThreads(2);
  const std::string what = std::string(Fp4FormatName(format)) + " rows " + std::to_string(rows) +
                           " cols " + std::to_string(cols) + " m " + std::to_string(m) +
                           " weight scale " + std::to_string(weight_scale);
  const auto w = Random(rows * cols, static_cast<uint32_t>(rows + 31 * cols), weight_scale);
  auto q = QuantizeFp4(w.data(), rows, cols, format, "w");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  auto x = Random(m * cols, static_cast<uint32_t>(m + 5), 1.0f);
  for (int64_t i = 0; i < m * cols; i += 29) x[i] *= 30.0f;  // outliers: per-block scales
  std::vector<float> xe(x.size()), y(m * rows), ys(m * rows), ref(m * rows);
  EmulateInt8Activations(x.data(), m, cols, format, xe.data());
  Fp4MatMulTransB(x.data(), m, *q, y.data(), Fp4Activations::kInt8);
  Fp4MatMulTransBSerial(x.data(), m, *q, ys.data(), Fp4Activations::kInt8);
  Fp4MatMulTransBReference(x.data(), m, *q, ref.data(), Fp4Activations::kInt8);
  EXPECT_EQ(y, ys) << "parallel and serial differ: " << what;
  const std::vector<float> deq = DequantizeFp4(*q);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      double magnitude = 0;
      for (int64_t c = 0; c < cols; ++c) {
        magnitude += std::fabs(double{xe[i * cols + c]} * deq[r * cols + c]);
      }
      ASSERT_NEAR(y[i * rows + r], ref[i * rows + r], 1e-5 * magnitude + 1e-44)
          << what << " token " << i << " row " << r;
    }
  }
}

class Fp4Int8Test : public ::testing::TestWithParam<Fp4Format> {};

TEST_P(Fp4Int8Test, PairsAndKBlocksAtEveryRemainder) {
  // 128 = one pair; 192 = a pair and a half; 320 = an odd pair count; 8192 = one whole k-block;
  // 8192 + 144 and 16384 + 64 + 16 = a second / third k-block ending in a partial pair.
  for (int64_t cols : {128, 192, 320, 8192, 8336, 16464}) {
    for (int64_t m : {1, 2, 3, 4, 6, 9}) ExpectMatchesReference(GetParam(), 9, cols, m, 0.05f);
  }
}

TEST_P(Fp4Int8Test, LargeAndTinyGlobalScales) {
  // NVFP4 folds 2^120 into the global factor only where that product is exact; weights of 1e6
  // (factor >= 2^7) and 1e-36 (a subnormal global scale) take the two-multiply path.
  for (float scale : {1e6f, 1e-36f}) {
    for (int64_t m : {1, 5}) ExpectMatchesReference(GetParam(), 5, 300, m, scale);
  }
}

TEST_P(Fp4Int8Test, NanBlockScalePoisonsOnlyItsRow) {
  const int64_t rows = 6, cols = 1000;
  const auto w = Random(rows * cols, 3, 0.05f);
  auto q = QuantizeFp4(w.data(), rows, cols, GetParam(), "w");
  ASSERT_TRUE(q.ok());
  const int64_t nblocks = q->padded_cols / Fp4BlockSize(GetParam());
  // A NaN scale code (E4M3 0x7F, E8M0 0xFF) in row 2, block 5 and in row 4's last block.
  const uint8_t nan_code = GetParam() == Fp4Format::kNvFp4 ? 0x7F : 0xFF;
  q->scales[2 * nblocks + 5] = nan_code;
  q->scales[4 * nblocks + nblocks - 1] = nan_code;
  for (int64_t m : {1, 4, 5}) {
    const auto x = Random(m * cols, 9, 1.0f);
    std::vector<float> y(m * rows);
    Fp4MatMulTransB(x.data(), m, *q, y.data(), Fp4Activations::kInt8);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(std::isnan(y[i * rows + r]), r == 2 || r == 4) << "token " << i << " row " << r;
      }
    }
  }
}

// The AVX2 kernel looks for NaN scale codes 16 at a time and patches only where one is: a NaN
// code in any block position (either half of a two-pair chunk, the partial last pair, E4M3 with
// either sign) must poison its row and no other, for one token and for a 4-token pass.
TEST_P(Fp4Int8Test, NanScaleInEveryBlockPosition) {
  const int64_t rows = 3, cols = 1000;
  const auto w = Random(rows * cols, 5, 0.05f);
  auto q = QuantizeFp4(w.data(), rows, cols, GetParam(), "w");
  ASSERT_TRUE(q.ok());
  const int64_t nblocks = q->padded_cols / Fp4BlockSize(GetParam());
  const bool nv = GetParam() == Fp4Format::kNvFp4;
  for (int64_t m : {1, 4}) {
    const auto x = Random(m * cols, 11, 1.0f);
    std::vector<float> y(m * rows);
    for (int64_t b = 0; b < nblocks; ++b) {
      uint8_t& scale = q->scales[1 * nblocks + b];
      const uint8_t saved = scale;
      scale = nv ? (b % 2 == 0 ? 0x7F : 0xFF) : 0xFF;
      Fp4MatMulTransB(x.data(), m, *q, y.data(), Fp4Activations::kInt8);
      scale = saved;
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t r = 0; r < rows; ++r) {
          EXPECT_EQ(std::isnan(y[i * rows + r]), r == 1)
              << "block " << b << " token " << i << " row " << r;
        }
      }
    }
  }
}

TEST_P(Fp4Int8Test, NonFiniteActivationPoisonsOnlyItsToken) {
  const int64_t rows = 7, cols = 700, m = 5;
  const auto w = Random(rows * cols, 4, 0.05f);
  auto q = QuantizeFp4(w.data(), rows, cols, GetParam(), "w");
  ASSERT_TRUE(q.ok());
  auto x = Random(m * cols, 10, 1.0f);
  x[1 * cols + 650] = INFINITY;
  x[3 * cols + 17] = std::nanf("");
  std::vector<float> y(m * rows);
  Fp4MatMulTransB(x.data(), m, *q, y.data(), Fp4Activations::kInt8);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_EQ(std::isnan(y[i * rows + r]), i == 1 || i == 3) << "token " << i << " row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, Fp4Int8Test,
                         ::testing::Values(Fp4Format::kNvFp4, Fp4Format::kMxFp4),
                         [](const auto& info) { return std::string(Fp4FormatName(info.param)); });

}  // namespace
}  // namespace switchyard::cpu
