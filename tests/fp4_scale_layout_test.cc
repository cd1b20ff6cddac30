// The cuBLASLt 128x4 swizzled scale layout (kernels/fp4_scale_layout.h) against the spec's sample
// offsets and an independent construction: PyTorch's to_blocked (pad to (128, 4), view
// (row_tiles, 128, col_tiles, 4), permute (0, 2, 1, 3), reshape (-1, 4, 32, 4), transpose (1, 2),
// flatten), written here as nested loops in the flattened order (shared/reference/specs.md §2.4).
#include "kernels/fp4_scale_layout.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace switchyard::fp4 {
namespace {

TEST(Fp4ScaleLayoutTest, SpecSampleOffsets) {
  const int64_t c = 8;  // scale columns in the spec's examples
  const std::pair<std::pair<int64_t, int64_t>, int64_t> samples[] = {
      {{0, 0}, 0},  {{0, 1}, 1},   {{0, 3}, 3},     {{1, 0}, 16},  {{31, 0}, 496},  {{32, 0}, 4},
      {{64, 0}, 8}, {{96, 0}, 12}, {{127, 3}, 511}, {{0, 4}, 512}, {{128, 0}, 1024}};
  for (const auto& [rc, offset] : samples) {
    EXPECT_EQ(SwizzledScaleOffset(rc.first, rc.second, c), offset)
        << "row " << rc.first << " col " << rc.second;
  }
}

TEST(Fp4ScaleLayoutTest, PaddedSizes) {
  EXPECT_EQ(SwizzledScaleBytes(1, 1), 512);
  EXPECT_EQ(SwizzledScaleBytes(128, 4), 512);
  EXPECT_EQ(SwizzledScaleBytes(129, 5), 256 * 8);
  EXPECT_EQ(SwizzledScaleBytes(300, 9), 384 * 12);
  EXPECT_EQ(SwizzledScaleBytes(0, 4), 0);
}

// to_blocked, element by element: out[i] = (row, col) of the padded matrix, or (-1, -1) for the
// padding; then the formula must put each real (row, col) exactly where to_blocked put it.
TEST(Fp4ScaleLayoutTest, MatchesToBlocked) {
  const std::pair<int64_t, int64_t> shapes[] = {{300, 9}, {128, 4}, {1, 1}, {257, 13}, {7168, 448}};
  for (const auto& [rows, cols] : shapes) {
    const int64_t row_tiles = SwizzledScaleRows(rows) / 128,
                  col_tiles = SwizzledScaleCols(cols) / 4;
    std::vector<std::pair<int64_t, int64_t>> blocked;
    for (int64_t rt = 0; rt < row_tiles; ++rt) {
      for (int64_t ct = 0; ct < col_tiles; ++ct) {
        for (int64_t b = 0; b < 32; ++b) {     // after transpose(1, 2): 32 outer
          for (int64_t a = 0; a < 4; ++a) {    // then the 4 row groups of 32
            for (int64_t k = 0; k < 4; ++k) {  // then the 4 columns
              const int64_t r = rt * 128 + a * 32 + b, c = ct * 4 + k;
              blocked.push_back(r < rows && c < cols ? std::make_pair(r, c)
                                                     : std::make_pair(int64_t{-1}, int64_t{-1}));
            }
          }
        }
      }
    }
    ASSERT_EQ(static_cast<int64_t>(blocked.size()), SwizzledScaleBytes(rows, cols));
    std::vector<int> hits(blocked.size(), 0);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        const int64_t off = SwizzledScaleOffset(r, c, cols);
        ASSERT_GE(off, 0);
        ASSERT_LT(off, static_cast<int64_t>(blocked.size()));
        ASSERT_EQ(blocked[off], std::make_pair(r, c)) << "shape " << rows << "x" << cols;
        ++hits[off];
      }
    }
    int64_t real = 0;
    for (int h : hits) real += h;
    EXPECT_EQ(real, rows * cols);  // injective: every element landed on its own byte
  }
}

}  // namespace
}  // namespace switchyard::fp4
