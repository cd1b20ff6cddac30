// The FP4 panel path (kernels/cpu/fp4_panel*.cc, >= kPanelMinTokens tokens) at shapes the generic
// GEMM tests do not reach: the register-transposed activation packing against the per-token one
// (bit-identical, including all-zero, Inf and NaN blocks), more than one 512-token pass, ragged
// row tiles, the fused SwiGLU against the unfused pair, and the grouped MLP with whole blocks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "common/parallel.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/fp4_gemm.h"
#include "kernels/cpu/fp4_grouped.h"
#include "kernels/cpu/fp4_internal.h"
#include "test_util.h"

namespace switchyard::cpu {
namespace {

using fp4_internal::PreparedActs;

std::vector<float> Random(int64_t n, uint32_t seed, float scale = 1.0f) {
  return switchyard::testing::RandomNormal(n, seed, scale);
}

Fp4Weight Quantized(int64_t rows, int64_t cols, Fp4Format format, uint32_t seed) {
  const auto w = Random(rows * cols, seed, 0.05f);
  auto q = QuantizeFp4(w.data(), rows, cols, format, "w");
  EXPECT_TRUE(q.ok()) << q.status().ToString();
  return *q;
}

// Bitwise equality (NaN included); a difference is reported with its position.
::testing::AssertionResult SameBits(
    const std::vector<float, fp4_internal::CacheLineAllocator<float>>& a,
    const std::vector<float, fp4_internal::CacheLineAllocator<float>>& b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i];
    }
  }
  return ::testing::AssertionSuccess();
}

class Fp4PanelTest : public ::testing::TestWithParam<Fp4Format> {};

TEST_P(Fp4PanelTest, PackedActivationsEqualPerTokenPreparation) {
  const Fp4Format format = GetParam();
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t cols : {64, 96, 48, 72}) {  // whole blocks; 48 and 72 pad (MXFP4) or fall back
    for (int64_t m : {32, 40, 77}) {
      auto x = Random(m * cols, static_cast<uint32_t>(m * 100 + cols));
      for (int64_t i = 0; i < m * cols; i += 37) x[i] *= 30.0f;  // outliers set block scales
      for (int64_t c = 0; c < 32; ++c) x[3 * cols + c] = 0.0f;   // token 3: an all-zero block
      x[5 * cols + 1] = inf;                                     // non-finite blocks
      x[9 * cols + 17] = -inf;
      x[12 * cols + 2] = nan;
      const Fp4Weight w = Quantized(8, cols, format, 7);
      for (auto act : {Fp4Activations::kInt8, Fp4Activations::kF32}) {
        PreparedActs want, got;
        fp4_internal::ResizeActs(m, w, act, &want);
        fp4_internal::ResizeActs(m, w, act, &got);
        ASSERT_TRUE(got.panel);
        fp4_internal::PrepareTokens(x.data(), cols, 0, m, w, &want);
        // Ranges that start and end inside 8-token groups as well as on them.
        for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, 16}, {16, 19}, {19, 32}, {32, m}}) {
          fp4_internal::PreparePanelTokens(x.data(), cols, t0, t1, w, &got);
        }
        EXPECT_TRUE(SameBits(got.xf, want.xf))
            << Fp4FormatName(format) << "/" << Fp4ActivationsName(act) << " cols " << cols << " m "
            << m;
      }
    }
  }
}

// Two 512-token passes (600 tokens), k-blocks with a partial last one, ragged row tiles, an item
// boundary inside the rows: PanelRows against the double-precision reference; the fused SwiGLU
// equals PanelRowsPair followed by SiluMul bit for bit.
TEST_P(Fp4PanelTest, LongTokenRangesAndFusedSwiGlu) {
  const Fp4Format format = GetParam();
  const int64_t m = 600, rows = 133, cols = 1056;
  const Fp4Weight w0 = Quantized(rows, cols, format, 11), w1 = Quantized(rows, cols, format, 12);
  const auto x = Random(m * cols, 13);
  PreparedActs a;
  fp4_internal::ResizeActs(m, w0, Fp4Activations::kInt8, &a);
  fp4_internal::PreparePanelTokens(x.data(), cols, 0, m, w0, &a);
  std::vector<float> y0(m * rows), y1(m * rows), h(m * rows), ref(m * rows), scratch;
  const int64_t split = fp4_internal::kPanelRows;
  for (int64_t r0 : {int64_t{0}, split}) {
    const int64_t r1 = r0 == 0 ? split : rows;
    fp4_internal::PanelRowsPair(a.xf.data(), m, w0, w1, r0, r1, y0.data(), y1.data(), rows,
                                &scratch);
    fp4_internal::PanelRowsSwiGlu(a.xf.data(), m, w0, w1, r0, r1, h.data(), rows, &scratch);
  }
  Fp4MatMulTransBReference(x.data(), m, w0, ref.data(), Fp4Activations::kInt8);
  std::vector<float> xe(m * cols);
  EmulateInt8Activations(x.data(), m, cols, format, xe.data());
  const std::vector<float> deq = DequantizeFp4(w0);
  int64_t bad = 0;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t r = 0; r < rows; ++r) {
      double mag = 0;
      for (int64_t c = 0; c < cols; ++c) mag += std::fabs(xe[i * cols + c] * deq[r * cols + c]);
      if (std::fabs(y0[i * rows + r] - ref[i * rows + r]) > 1e-5 * mag + 1e-30) ++bad;
    }
  }
  EXPECT_EQ(bad, 0) << "outputs off the reference by more than 1e-5 relative";
  std::vector<float> want(m * rows);
  SiluMul(y0.data(), y1.data(), m * rows, want.data());
  EXPECT_EQ(h, want);
}

// SwiGLU written straight into the down projection's packed activations (two row items, 32-row
// aligned; two 512-token passes with a half-filled last token block, and a ragged short run; an
// Inf activation) equals the token-major SwiGLU followed by PreparePanelTokens, bit for bit.
TEST_P(Fp4PanelTest, SwiGluPackedIntoDownActivationsEqualsTokenMajorPath) {
  const Fp4Format format = GetParam();
  const int64_t hidden = 160, inter = 224;
  const Fp4Weight gate = Quantized(inter, hidden, format, 31),
                  up = Quantized(inter, hidden, format, 32);
  const Fp4Weight down = Quantized(hidden, inter, format, 33);
  for (auto act : {Fp4Activations::kInt8, Fp4Activations::kF32}) {
    for (int64_t m : {600, 41}) {
      auto x = Random(m * hidden, static_cast<uint32_t>(m + 7), 3.0f);
      x[5 * hidden + 17] = std::numeric_limits<float>::infinity();
      PreparedActs in, mid, want;
      fp4_internal::ResizeActs(m, gate, act, &in);
      fp4_internal::PreparePanelTokens(x.data(), hidden, 0, m, gate, &in);
      if (!fp4_internal::PanelSwiGluPackable(in, down)) GTEST_SKIP() << "no AVX2/FMA";
      fp4_internal::ResizeActs(m, down, act, &mid);
      fp4_internal::ResizeActs(m, down, act, &want);
      std::vector<float> h(m * inter), scratch;
      for (auto [r0, r1] : {std::pair<int64_t, int64_t>{0, 96}, {96, inter}}) {
        fp4_internal::PanelRowsSwiGlu(in.xf.data(), m, gate, up, r0, r1, h.data(), inter, &scratch);
        fp4_internal::PanelRowsSwiGluPacked(in.xf.data(), m, gate, up, r0, r1, down, &mid,
                                            &scratch);
      }
      fp4_internal::PreparePanelTokens(h.data(), inter, 0, m, down, &want);
      EXPECT_TRUE(SameBits(mid.xf, want.xf)) << Fp4ActivationsName(act) << " m " << m;
    }
  }
}

// The grouped MLP with whole blocks (the register-transposed packing) and ragged token counts
// equals per-expert products, for 1 and 2 threads.
TEST_P(Fp4PanelTest, GroupedMlpWithWholeBlocksEqualsPerExpertProducts) {
  const Fp4Format format = GetParam();
  const int64_t hidden = 128, inter = 96;
  const std::vector<int64_t> counts = {40, 33, 64};
  std::vector<Fp4Weight> w;
  std::vector<Fp4ExpertMlp> experts;
  std::vector<int64_t> offsets = {0};
  for (size_t e = 0; e < counts.size(); ++e) {
    for (int j = 0; j < 3; ++j) {
      w.push_back(Quantized(j < 2 ? inter : hidden, j < 2 ? hidden : inter, format,
                            static_cast<uint32_t>(e * 3 + j + 50)));
    }
    offsets.push_back(offsets.back() + counts[e]);
  }
  for (size_t e = 0; e < counts.size(); ++e)
    experts.push_back({&w[3 * e], &w[3 * e + 1], &w[3 * e + 2]});
  const auto x = Random(offsets.back() * hidden, 21);
  for (auto act : {Fp4Activations::kInt8, Fp4Activations::kF32}) {
    std::vector<float> want(offsets.back() * hidden);
    for (size_t e = 0; e < counts.size(); ++e) {
      const int64_t m = counts[e];
      std::vector<float> g(m * inter), u(m * inter);
      Fp4MatMulTransB(&x[offsets[e] * hidden], m, *experts[e].gate, g.data(), act);
      Fp4MatMulTransB(&x[offsets[e] * hidden], m, *experts[e].up, u.data(), act);
      SiluMul(g.data(), u.data(), m * inter, g.data());
      Fp4MatMulTransB(g.data(), m, *experts[e].down, &want[offsets[e] * hidden], act);
    }
    for (int threads : {1, 2}) {
      SetComputeThreads(threads);
      Fp4GroupedWorkspace ws;
      std::vector<float> got(want.size(), -1.0f);
      ASSERT_TRUE(Fp4GroupedMlp(experts, offsets, x.data(), hidden, got.data(), act, &ws).ok());
      EXPECT_EQ(got, want) << Fp4ActivationsName(act) << " threads " << threads;
    }
  }
  SetComputeThreads(2);
}

INSTANTIATE_TEST_SUITE_P(Formats, Fp4PanelTest,
                         ::testing::Values(Fp4Format::kNvFp4, Fp4Format::kMxFp4),
                         [](const auto& info) { return std::string(Fp4FormatName(info.param)); });

}  // namespace
}  // namespace switchyard::cpu
