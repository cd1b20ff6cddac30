// FP4 GEMM (FP32 activations) against the FP32 GEMM of the dequantized weights.
#include "kernels/cpu/fp4_gemm.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/parallel.h"

namespace switchyard::cpu {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

class Fp4GemmTest : public ::testing::TestWithParam<Fp4Format> {};

TEST_P(Fp4GemmTest, MatchesDequantizedFp32GemmOnOddShapes) {
  SetComputeThreads(2);
  const Fp4Format format = GetParam();
  for (int64_t cols : {7, 16, 32, 40, 48, 100, 257}) {
    for (int64_t rows : {1, 5, 33}) {
      const auto w = Random(rows * cols, static_cast<uint32_t>(rows * 1000 + cols), 0.05f);
      auto q = QuantizeFp4(w.data(), rows, cols, format, "w");
      ASSERT_TRUE(q.ok()) << q.status().ToString();
      EXPECT_EQ(q->padded_cols % Fp4BlockSize(format), 0);
      const std::vector<float> deq = DequantizeFp4(*q);
      for (int64_t m : {0, 1, 3, 4, 5, 17}) {
        const auto x = Random(m * cols, static_cast<uint32_t>(m + 7));
        std::vector<float> y(m * rows, -1), ys(m * rows, -2), ref(m * rows, -3);
        Fp4MatMulTransB(x.data(), m, *q, y.data());
        Fp4MatMulTransBSerial(x.data(), m, *q, ys.data());
        Fp4MatMulTransBReference(x.data(), m, *q, ref.data());
        EXPECT_EQ(y, ys) << "parallel and serial differ";
        for (int64_t i = 0; i < m; ++i) {
          for (int64_t r = 0; r < rows; ++r) {
            double magnitude = 0;
            for (int64_t c = 0; c < cols; ++c) {
              magnitude += std::fabs(double{x[i * cols + c]} * deq[r * cols + c]);
            }
            EXPECT_NEAR(y[i * rows + r], ref[i * rows + r], 1e-5 * magnitude + 1e-30)
                << Fp4FormatName(format) << " rows " << rows << " cols " << cols << " m " << m;
          }
        }
      }
    }
  }
}

TEST_P(Fp4GemmTest, QuantizationErrorIsBoundedByTheBlockScale) {
  const Fp4Format format = GetParam();
  const int64_t rows = 8, cols = 96;
  const auto w = Random(rows * cols, 3, 0.02f);
  auto q = QuantizeFp4(w.data(), rows, cols, format, "w");
  ASSERT_TRUE(q.ok());
  const auto deq = DequantizeFp4(*q);
  const int block = Fp4BlockSize(format);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < cols / block; ++b) {
      float amax = 0;
      for (int j = 0; j < block; ++j) amax = std::max(amax, std::fabs(w[r * cols + b * block + j]));
      for (int j = 0; j < block; ++j) {
        const int64_t i = r * cols + b * block + j;
        // Worst E2M1 step is 2 (between 4 and 6) at a scale of ~amax/6 (NVFP4) or up to amax/4
        // (MXFP4 floor rule); half a step of rounding plus the E4M3 scale rounding.
        EXPECT_LE(std::fabs(deq[i] - w[i]), 0.3f * amax + 1e-12f) << "row " << r << " block " << b;
      }
    }
  }
}

TEST_P(Fp4GemmTest, NonFiniteWeightNamesTensorAndPosition) {
  std::vector<float> w(2 * 16, 0.1f);
  w[16 + 3] = std::nanf("");
  auto q = QuantizeFp4(w.data(), 2, 16, GetParam(), "layers.3.mlp.experts.7.down_proj.weight");
  ASSERT_FALSE(q.ok());
  EXPECT_NE(q.status().message().find("layers.3.mlp.experts.7.down_proj.weight"),
            std::string::npos);
  EXPECT_NE(q.status().message().find("row 1, column 3"), std::string::npos);
}

TEST(Fp4GemmZeroTest, AllZeroWeightsGiveZero) {
  std::vector<float> w(4 * 32, 0.0f), x(32, 1.0f), y(4, 7.0f);
  auto q = QuantizeFp4(w.data(), 4, 32, Fp4Format::kNvFp4, "zero");
  ASSERT_TRUE(q.ok());
  Fp4MatMulTransB(x.data(), 1, *q, y.data());
  EXPECT_EQ(y, std::vector<float>(4, 0.0f));
}

INSTANTIATE_TEST_SUITE_P(Formats, Fp4GemmTest,
                         ::testing::Values(Fp4Format::kNvFp4, Fp4Format::kMxFp4),
                         [](const auto& info) { return std::string(Fp4FormatName(info.param)); });

}  // namespace
}  // namespace switchyard::cpu
