// Internal to the FP4 panel path (fp4_panel.cc): the AVX2/FMA packing of dequantized weight panels
// and the register-tile microkernel (fp4_panel_kernel.cc), the transposition of results
// (fp4_panel_acts.cc). Not an interface for other layers; the callers check HasAvx2() first.
//
// Roles (BLIS terms): the dequantized weight panel is the packed "A" (kPanelMr rows broadcast per
// k), the activations packed k-major per kTokenBlock tokens (PreparedActs::xf) are "B" (two
// 8-token vectors per k), and the partial yᵀ of the panel is "C".
#pragma once

#include <cstdint>

#include "kernels/cpu/fp4_gemm.h"

namespace switchyard::cpu::fp4_internal {

inline constexpr int64_t kPanelMr = 6;    // weight rows per register tile (6 x 16 tokens)
inline constexpr int64_t kPanelKc = 256;  // k-block (B micro-panel: 16 tokens x 256 = 16 KB in L1)

// Register tiles covering `rows` weight rows (the last one padded with zero rows).
inline int64_t PanelTiles(int64_t rows) { return (rows + kPanelMr - 1) / kPanelMr; }

// factors[s] = BlockFactor(w, s) for every scale byte s (256 floats), built once per weight.
void BlockFactors(const Fp4Weight& w, float* factors);

// Dequantizes rows [r0, r1), columns [k0, k0 + kl) of w (kl a multiple of 16, whole scale blocks)
// into the microkernel's order: tile i of kPanelMr rows at dst + i * kPanelMr * kl, within it
// [kl / 8][kPanelMr][8] (8 consecutive k of one row contiguous), rows past r1 zero. dst holds
// PanelTiles(r1 - r0) * kPanelMr * kl floats, 32-byte aligned; factors from BlockFactors(w).
// Thread-safe (writes only dst).
void PackPanelAvx2(const Fp4Weight& w, const float* factors, int64_t r0, int64_t r1, int64_t k0,
                   int64_t kl, float* dst);

// C for one block of 16 tokens and every tile of a packed panel:
//   ct[j * ldc + lane] (+)= Σ_p A[j][p] · xs[p * 16 + lane],  j < tiles · kPanelMr, lane < 8 · nv
// xs: the block's activations at its k-block (kl · 16 floats, 32-byte aligned); nv (1 or 2)
// 8-token vectors are computed (the padding tokens of a partial block are zero, so nv = 2 is
// always correct; nv = 1 saves work when <= 8 tokens are real). accumulate: add to ct (later
// k-blocks) instead of overwriting. ct is 32-byte aligned with ldc a multiple of 8. Every output
// sums its kl products in k order in one FMA chain, so results do not depend on the tiling of
// rows or tokens. next_xs (or null): the next block's activations (kl · 16 floats), prefetched
// into L2 meanwhile. Thread-safe for disjoint ct.
void PanelTokenBlockAvx2(const float* xs, const float* pack, int64_t tiles, int64_t kl, int nv,
                         bool accumulate, float* ct, int64_t ldc, const float* next_xs);

// dst[t * ldd + j] = ct[j * ldc + t0 + t] for t < nt (<= 8), j < rows: C back to token-major
// (8x8 register transposes when nt == 8). Thread-safe for disjoint dst.
void TransposeAvx2(const float* ct, int64_t ldc, int64_t rows, int64_t t0, int64_t nt, float* dst,
                   int64_t ldd);

// C rows straight into the packed activation layout (PreparedActs::xf) of a weight whose k runs
// along C's rows: dst[(t / 16) * 16 * ldd + j * 16 + t % 16] = ct[j * ldc + t] for j < rows (a
// multiple of `block`), t < nt rounded up to 8 (lanes of the last 16-token block past that are
// left alone: ResizeActs zeroed them), int8-emulated per block and token when `emulate` (the
// values PreparePanelTokens gives). ct and dst 32-byte aligned, ldc and ldd multiples of 8.
// Thread-safe for disjoint dst.
void PackRowsAvx2(const float* ct, int64_t ldc, int64_t rows, int64_t nt, int block, bool emulate,
                  float* dst, int64_t ldd);

}  // namespace switchyard::cpu::fp4_internal
