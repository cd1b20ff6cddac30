// The cuBLASLt "128x4" swizzled layout of block-scale factors (cuBLAS "1D Block Scaling Factors
// Layout"; shared/reference/specs.md §2.4), used by the Blackwell block-scaled FP4 matmul.
//
// An operand with R rows (M for activations, N for weights) and C scale columns (K/16 for NVFP4,
// K/32 for MXFP4) is padded to ceil(R/128)*128 rows and ceil(C/4)*4 columns (padding bytes 0) and
// stored as 512-byte tiles of 128 rows x 4 columns, tiles row-major over (row tile, column tile).
// Inside a tile, row r and column c sit at (r % 32) * 16 + ((r % 128) / 32) * 4 + c % 4.
//
// Header-only, no CUDA headers; every function is usable from host C++ and CUDA device code.
// Pure functions: no allocation, no errors (callers check shapes).
#pragma once

#include <cstdint>

#include "kernels/fp4_format.h"  // SY_HOST_DEVICE

namespace switchyard::fp4 {

inline constexpr int64_t kScaleTileRows = 128;
inline constexpr int64_t kScaleTileCols = 4;
inline constexpr int64_t kScaleTileBytes = kScaleTileRows * kScaleTileCols;  // 512

SY_HOST_DEVICE inline int64_t SwizzledScaleRows(int64_t rows) {
  return (rows + kScaleTileRows - 1) / kScaleTileRows * kScaleTileRows;
}
SY_HOST_DEVICE inline int64_t SwizzledScaleCols(int64_t scale_cols) {
  return (scale_cols + kScaleTileCols - 1) / kScaleTileCols * kScaleTileCols;
}
// Bytes of the padded swizzled tensor for `rows` x `scale_cols` scales.
SY_HOST_DEVICE inline int64_t SwizzledScaleBytes(int64_t rows, int64_t scale_cols) {
  return SwizzledScaleRows(rows) * SwizzledScaleCols(scale_cols);
}

// Byte offset of scale (row, col) in the swizzled tensor of an operand with `scale_cols` scale
// columns. row >= 0, 0 <= col < scale_cols (precondition).
SY_HOST_DEVICE inline int64_t SwizzledScaleOffset(int64_t row, int64_t col, int64_t scale_cols) {
  const int64_t col_tiles = SwizzledScaleCols(scale_cols) / kScaleTileCols;
  return (row / kScaleTileRows) * (col_tiles * kScaleTileBytes) +
         (col / kScaleTileCols) * kScaleTileBytes + (row % 32) * 16 + ((row % 128) / 32) * 4 +
         col % kScaleTileCols;
}

}  // namespace switchyard::fp4
