// FP4 GEMM (int8 and FP32 activations) against the FP32 GEMM of the dequantized weights (and
// the emulated int8 activations).
#include "kernels/cpu/fp4_gemm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "common/parallel.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/fp4_grouped.h"
#include "test_util.h"

namespace switchyard::cpu {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  return switchyard::testing::RandomNormal(n, seed, scale);
}

class Fp4GemmTest : public ::testing::TestWithParam<Fp4Format> {};

// y within 1e-5 of the reference, relative to Σ|x'·w| (x' = the activations the mode multiplies).
void ExpectClose(const std::vector<float>& y, const std::vector<float>& ref,
                 const std::vector<float>& xe, const std::vector<float>& deq, int64_t m,
                 int64_t rows, int64_t cols, const std::string& what) {
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      double magnitude = 0;
      for (int64_t c = 0; c < cols; ++c) {
        magnitude += std::fabs(double{xe[i * cols + c]} * deq[r * cols + c]);
      }
      ASSERT_NEAR(y[i * rows + r], ref[i * rows + r], 1e-5 * magnitude + 1e-30)
          << what << " token " << i << " row " << r;
    }
  }
}

void CheckShapes(Fp4Format format, Fp4Activations act, const std::vector<int64_t>& col_list,
                 const std::vector<int64_t>& row_list, const std::vector<int64_t>& m_list) {
  SetComputeThreads(2);
  for (int64_t cols : col_list) {
    for (int64_t rows : row_list) {
      const auto w = Random(rows * cols, static_cast<uint32_t>(rows * 1000 + cols), 0.05f);
      auto q = QuantizeFp4(w.data(), rows, cols, format, "w");
      ASSERT_TRUE(q.ok()) << q.status().ToString();
      EXPECT_EQ(q->padded_cols % Fp4BlockSize(format), 0);
      const std::vector<float> deq = DequantizeFp4(*q);
      for (int64_t m : m_list) {
        // Outliers in some blocks exercise the per-block activation scales.
        auto x = Random(m * cols, static_cast<uint32_t>(m + 7));
        for (int64_t i = 0; i < m * cols; i += 37) x[i] *= 20.0f;
        std::vector<float> xe(x);
        if (act == Fp4Activations::kInt8)
          EmulateInt8Activations(x.data(), m, cols, format, xe.data());
        std::vector<float> y(m * rows, -1), ys(m * rows, -2), ref(m * rows, -3);
        Fp4MatMulTransB(x.data(), m, *q, y.data(), act);
        Fp4MatMulTransBSerial(x.data(), m, *q, ys.data(), act);
        Fp4MatMulTransBReference(x.data(), m, *q, ref.data(), act);
        const std::string what = std::string(Fp4FormatName(format)) + "/" +
                                 Fp4ActivationsName(act) + " rows " + std::to_string(rows) +
                                 " cols " + std::to_string(cols) + " m " + std::to_string(m);
        EXPECT_EQ(y, ys) << "parallel and serial differ: " << what;
        ExpectClose(y, ref, xe, deq, m, rows, cols, what);
      }
    }
  }
}

// Odd shapes: k not a multiple of the block (or of the 32-element group), 0/1/few tokens
// (register paths) and >= 32 tokens (panel path, more than one 256-token block), rows not a
// multiple of the tiles.
TEST_P(Fp4GemmTest, Int8MatchesFp32GemmOfDequantizedWeightsAndEmulatedActivations) {
  CheckShapes(GetParam(), Fp4Activations::kInt8, {7, 16, 32, 40, 48, 100, 257, 600}, {1, 5, 33, 70},
              {0, 1, 3, 4, 5, 17, 31, 32, 33, 50, 270});
}

TEST_P(Fp4GemmTest, F32MatchesFp32GemmOfDequantizedWeights) {
  CheckShapes(GetParam(), Fp4Activations::kF32, {7, 16, 48, 257, 600}, {1, 5, 70},
              {0, 1, 4, 5, 31, 33, 270});
}

// Long rows: several 8-group chunks plus a tail, more than one k-block of the int8 kernel
// (8192 elements) and of the panel kernel (256).
TEST_P(Fp4GemmTest, LongRowsMatch) {
  CheckShapes(GetParam(), Fp4Activations::kInt8, {1040, 8240}, {9}, {1, 2, 7, 40});
}

// The emulation itself: per block, q = round(x · 127 / amax) and x' = q · amax / 127.
TEST_P(Fp4GemmTest, EmulatedActivationsArePerBlockInt8) {
  const Fp4Format format = GetParam();
  const int block = Fp4BlockSize(format);
  const int64_t cols = 3 * block + 5;
  auto x = Random(cols, 11);
  x[block + 2] = 50.0f;  // an outlier affects its own block only
  std::vector<float> xe(cols);
  EmulateInt8Activations(x.data(), 1, cols, format, xe.data());
  for (int64_t b = 0; b * block < cols; ++b) {
    float amax = 0;
    const int64_t end = std::min<int64_t>(cols, (b + 1) * block);
    for (int64_t c = b * block; c < end; ++c) amax = std::max(amax, std::fabs(x[c]));
    for (int64_t c = b * block; c < end; ++c) {
      const float q = std::nearbyint(x[c] * (127.0f / amax));
      EXPECT_EQ(xe[c], q * (amax / 127.0f)) << "column " << c;
      EXPECT_LE(std::fabs(xe[c] - x[c]), 0.5f * amax / 127.0f * 1.0001f) << "column " << c;
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
  for (auto act : {Fp4Activations::kInt8, Fp4Activations::kF32}) {
    Fp4MatMulTransB(x.data(), 1, *q, y.data(), act);
    EXPECT_EQ(y, std::vector<float>(4, 0.0f));
  }
}

// Grouped MLP: every expert's gate/up -> SwiGLU -> down in one call equals the same products run
// one by one (bit for bit: same kernels per element), independent of the thread count; experts
// with zero tokens are skipped; bad shapes/offsets are errors naming the expert.
struct GroupedFixture {
  std::vector<Fp4Weight> weights;  // 3 per expert
  std::vector<Fp4ExpertMlp> experts;
};

GroupedFixture MakeExperts(Fp4Format format, int64_t count, int64_t hidden, int64_t inter) {
  GroupedFixture f;
  for (int64_t e = 0; e < count; ++e) {
    for (int j = 0; j < 3; ++j) {
      const int64_t rows = j < 2 ? inter : hidden, cols = j < 2 ? hidden : inter;
      const auto w = Random(rows * cols, static_cast<uint32_t>(e * 3 + j + 100), 0.05f);
      f.weights.push_back(*QuantizeFp4(w.data(), rows, cols, format, "w"));
    }
  }
  for (int64_t e = 0; e < count; ++e) {
    f.experts.push_back({&f.weights[e * 3], &f.weights[e * 3 + 1], &f.weights[e * 3 + 2]});
  }
  return f;
}

TEST_P(Fp4GemmTest, GroupedMlpEqualsPerExpertProducts) {
  const Fp4Format format = GetParam();
  const int64_t hidden = 72, inter = 40;  // not multiples of the blocks or tiles
  GroupedFixture f = MakeExperts(format, 5, hidden, inter);
  const std::vector<int64_t> counts = {3, 0, 1, 140, 8};  // zero, one, panel (> 128), decode
  std::vector<int64_t> offsets = {0};
  for (int64_t c : counts) offsets.push_back(offsets.back() + c);
  f.experts[1] = {};  // an expert without tokens needs no weights
  const auto x = Random(offsets.back() * hidden, 9);
  for (auto act : {Fp4Activations::kInt8, Fp4Activations::kF32}) {
    std::vector<float> want(offsets.back() * hidden, 0.0f);
    for (size_t e = 0; e < counts.size(); ++e) {
      const int64_t m = counts[e];
      if (m == 0) continue;
      std::vector<float> g(m * inter), u(m * inter);
      Fp4MatMulTransB(&x[offsets[e] * hidden], m, *f.experts[e].gate, g.data(), act);
      Fp4MatMulTransB(&x[offsets[e] * hidden], m, *f.experts[e].up, u.data(), act);
      SiluMul(g.data(), u.data(), m * inter, g.data());
      Fp4MatMulTransB(g.data(), m, *f.experts[e].down, &want[offsets[e] * hidden], act);
    }
    for (int threads : {1, 2}) {
      SetComputeThreads(threads);
      Fp4GroupedWorkspace ws;
      std::vector<float> got(want.size(), -1.0f);
      for (int rep = 0; rep < 2; ++rep) {  // the reused workspace gives the same result
        const Status s = Fp4GroupedMlp(f.experts, offsets, x.data(), hidden, got.data(), act, &ws);
        ASSERT_TRUE(s.ok()) << s.ToString();
        EXPECT_EQ(got, want) << Fp4ActivationsName(act) << " threads " << threads;
      }
    }
  }
  SetComputeThreads(2);
}

TEST(Fp4GroupedErrorsTest, BadShapesAndOffsetsNameTheExpert) {
  GroupedFixture f = MakeExperts(Fp4Format::kNvFp4, 2, 32, 16);
  std::vector<float> x(4 * 32), out(4 * 32);
  Fp4GroupedWorkspace ws;
  auto s =
      Fp4GroupedMlp(f.experts, {0, 2, 4}, x.data(), 48, out.data(), Fp4Activations::kInt8, &ws);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("expert 0"), std::string::npos) << s.ToString();
  auto missing = f.experts;
  missing[1].down = nullptr;
  s = Fp4GroupedMlp(missing, {0, 2, 4}, x.data(), 32, out.data(), Fp4Activations::kInt8, &ws);
  EXPECT_NE(s.message().find("expert 1"), std::string::npos) << s.ToString();
  s = Fp4GroupedMlp(f.experts, {0, 3, 2}, x.data(), 32, out.data(), Fp4Activations::kInt8, &ws);
  EXPECT_NE(s.message().find("offsets decrease"), std::string::npos) << s.ToString();
  s = Fp4GroupedMlp(f.experts, {0, 4}, x.data(), 32, out.data(), Fp4Activations::kInt8, &ws);
  EXPECT_FALSE(s.ok());
}

TEST(Fp4ActivationsTest, ParseNamesTheBadValue) {
  EXPECT_EQ(*ParseFp4Activations("int8"), Fp4Activations::kInt8);
  EXPECT_EQ(*ParseFp4Activations("f32"), Fp4Activations::kF32);
  auto bad = ParseFp4Activations("fp16");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("fp16"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Formats, Fp4GemmTest,
                         ::testing::Values(Fp4Format::kNvFp4, Fp4Format::kMxFp4),
                         [](const auto& info) { return std::string(Fp4FormatName(info.param)); });

}  // namespace
}  // namespace switchyard::cpu
