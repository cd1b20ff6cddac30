// Internal to the CPU FP4 kernels (fp4_gemm.cc, fp4_int8.cc, fp4_panel.cc, fp4_grouped.cc): the
// prepared-activation layouts and the row kernels. Not an interface for other layers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

#include "kernels/cpu/fp4_gemm.h"

namespace switchyard::cpu::fp4_internal {

// 2·e2m1 for each code: exact small integers, so a block's dot is scaled by scale/2 once.
inline constexpr int8_t kTwiceE2m1[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

bool HasAvx2();  // AVX2 + FMA, detected once at run time (SWITCHYARD_FP4_PORTABLE=1: false)

// The per-block multiplier of 2·e2m1 (half the block's dequantization scale).
float BlockFactor(const Fp4Weight& w, uint8_t scale);

// Activations quantized per weight block to int8 (scale = amax/127, round to nearest even),
// laid out for the int8 kernel. A "group" is 64 elements = 32 packed weight bytes, whose low
// nibbles (the even elements) and high nibbles (the odd elements) the kernel separates with one
// shift and two masks: within group g, q[g*64 + i] holds element g*64 + 2i (i < 16),
// g*64 + 32 + 2(i-16) (16 <= i < 32), g*64 + 2(i-32) + 1 (32 <= i < 48) and
// g*64 + 32 + 2(i-48) + 1 (i >= 48). The AVX2 kernel takes groups in pairs (128 elements, 64
// packed bytes), so each token's q is padded to whole pairs. Elements past cols are 0; scale holds
// one FP32 scale per block (0 past cols).
struct Int8Acts {
  int64_t m = 0, groups = 0, pairs = 0, nblocks = 0;
  std::vector<int8_t> q;     // [m, pairs * 128]
  std::vector<float> scale;  // [m, nblocks]
  // AVX2 kernel only (filled when HasAvx2()): per pair of groups, per int32 lane of the kernel's
  // pair dot (lane -> block: Int8LaneBlock), the activation block scale (0 past nblocks) and
  // kInt8CodeOffset times the sum of the lane's 16 codes (Int8LaneOffsets).
  std::vector<float> lane_scale;     // [m, pairs * 8]
  std::vector<int32_t> lane_offset;  // [m, pairs * 8]
};

// The AVX2 int8 kernel multiplies unsigned codes 2·e2m1 + kInt8CodeOffset and subtracts
// kInt8CodeOffset · Σq per lane (exact int32).
inline constexpr int kInt8CodeOffset = 12;
// Block index of int32 lane `lane` (0..7) of pair `pair` in the AVX2 kernel's pair dot.
int64_t Int8LaneBlock(Fp4Format format, int64_t pair, int lane);
// lane_offset of one pair from its 128 codes q (AVX2 only).
void Int8LaneOffsets(const int8_t* q, int32_t* lane_offset);

// 64-byte aligned storage (the panel kernel's aligned loads of packed activations).
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) {
    return static_cast<T*>(::operator new (n * sizeof(T), std::align_val_t{64}));
  }
  void deallocate(T* p, size_t) { ::operator delete (p, std::align_val_t{64}); }
  bool operator==(const CacheLineAllocator&) const { return true; }
};

// Activations ready for one weight shape: int8 (small m), or FP32 rows padded to padded_cols with
// zeros (large m; emulated int8 values q·scale in int8 mode, x itself in FP32 mode).
struct PreparedActs {
  Fp4Activations act = Fp4Activations::kInt8;
  bool panel = false;  // large-m path
  int64_t m = 0, cols = 0, padded_cols = 0;
  Int8Acts q;
  // FP32 small path: [m, padded_cols]. Panel path: packed k-major per block of kTokenBlock tokens,
  // xf[(t / 16) * 16 * padded_cols + c * 16 + t % 16], tokens past m zero.
  std::vector<float, CacheLineAllocator<float>> xf;  // 64-byte aligned
};

// From this many tokens on, weight panels are dequantized to FP32 and multiplied by a
// register-blocked FP32 kernel (the dequantization amortises over the tokens).
inline constexpr int64_t kPanelMinTokens = 32;
// Weight rows per parallel work item, small-m and panel paths.
inline constexpr int64_t kSmallRowsPerItem = 64;
inline constexpr int64_t kPanelRows = 126;  // 21 register tiles of 6 rows (fp4_panel_kernel.h)
inline constexpr int64_t kTokenBlock = 16;  // tokens per packed activation block (panel path)

// Quantizes one block of n (<= 32) floats: q[i] (natural order), returns the scale.
float QuantizeBlockInt8(const float* x, int n, int8_t* q);

// Fills `out` for tokens [t0, t1) of x[m, cols] (row stride ldx); `out` must be sized first by
// ResizeActs. Thread-safe for disjoint token ranges.
void ResizeActs(int64_t m, const Fp4Weight& w, Fp4Activations act, PreparedActs* out);
void PrepareTokens(const float* x, int64_t ldx, int64_t t0, int64_t t1, const Fp4Weight& w,
                   PreparedActs* out);
// The int8 (small-m) part of PrepareTokens for token t and pairs [p0, p1) of its columns (128
// each): codes, block scales and the AVX2 lane terms of those pairs only, so one token can be
// quantized by several threads. `a` sized by ResizeActs; thread-safe for disjoint pair ranges.
void PrepareInt8Pairs(const float* x, int64_t ldx, int64_t t, int64_t p0, int64_t p1,
                      const Fp4Weight& w, Int8Acts* a);
// Same values as PrepareTokens, faster for the panel path (fp4_panel_acts.cc: whole 8-token
// groups of rows without padding columns are transposed and emulated in registers; the rest goes
// through PrepareTokens).
void PreparePanelTokens(const float* x, int64_t ldx, int64_t t0, int64_t t1, const Fp4Weight& w,
                        PreparedActs* out);

// y[i * ldy + r] for tokens i < a.m, rows r in [r0, r1). `scratch` is per-thread (panel path).
void ComputeRows(const PreparedActs& a, const Fp4Weight& w, int64_t r0, int64_t r1, float* y,
                 int64_t ldy, std::vector<float>* scratch);

// Same for two weights of the same shape and format (gate and up): identical results to two
// ComputeRows calls; the panel path reads the activations once for both.
void ComputeRowsPair(const PreparedActs& a, const Fp4Weight& w0, const Fp4Weight& w1, int64_t r0,
                     int64_t r1, float* y0, float* y1, int64_t ldy, std::vector<float>* scratch);

// Kernels behind ComputeRows.
void Int8Rows(const Int8Acts& a, const Fp4Weight& w, int64_t r0, int64_t r1, float* y, int64_t ldy);
void F32Rows(const float* x, int64_t ldx, int64_t m, const Fp4Weight& w, int64_t r0, int64_t r1,
             float* y, int64_t ldy);
void PanelRows(const float* xp, int64_t m, const Fp4Weight& w, int64_t r0, int64_t r1, float* y,
               int64_t ldy, std::vector<float>* scratch);
// Two weights of the same shape and format (gate and up) on the same activations, one pass.
void PanelRowsPair(const float* xp, int64_t m, const Fp4Weight& w0, const Fp4Weight& w1, int64_t r0,
                   int64_t r1, float* y0, float* y1, int64_t ldy, std::vector<float>* scratch);
// Gate and up with SwiGLU fused into the write of the result: h[i * ldh + r] =
// silu(gate·x_i)[r] · (up·x_i)[r] for rows [r0, r1), the same values as PanelRowsPair + SiluMul.
void PanelRowsSwiGlu(const float* xp, int64_t m, const Fp4Weight& gate, const Fp4Weight& up,
                     int64_t r0, int64_t r1, float* h, int64_t ldh, std::vector<float>* scratch);
// Whether PanelRowsSwiGluPacked can serve an expert: AVX2, panel path (in.panel) and a down
// weight without padding columns.
bool PanelSwiGluPackable(const PreparedActs& in, const Fp4Weight& down);
// The same values as PanelRowsSwiGlu followed by PreparePanelTokens(h, ..., down, mid), written
// straight into mid->xf (sized by ResizeActs(m, down, ...)) for its columns [r0, r1): no
// token-major h, no transposes. r0, r1 multiples of down's block size (or r1 = inter); only when
// PanelSwiGluPackable. Thread-safe for disjoint row ranges.
void PanelRowsSwiGluPacked(const float* xp, int64_t m, const Fp4Weight& gate, const Fp4Weight& up,
                           int64_t r0, int64_t r1, const Fp4Weight& down, PreparedActs* mid,
                           std::vector<float>* scratch);

}  // namespace switchyard::cpu::fp4_internal
