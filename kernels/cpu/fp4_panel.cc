// FP4 weights, many tokens (BLIS-style): per k-block of kPanelKc, the work item's weight rows are
// dequantized once into a packed FP32 panel (L2-resident; fp4_panel_kernel.h), then a 6-row x
// 16-token register tile walks it for every block of 16 tokens of up to kMc tokens, the
// activations (packed k-major per 16 tokens, PreparedActs::xf) staying in L1 across the tiles.
// The panel's yᵀ accumulates over k-blocks in scratch and is transposed into y at the end (for gate
// and up, SwiGLU is applied on yᵀ first; in the grouped MLP its rows go instead straight into the
// down projection's packed activations, which are k-major like yᵀ: no transposes there).
// Dequantization (~1 instruction per weight) is amortised over all tokens of the pass: ~3% of the
// time at 512 tokens (perf, this machine).
#include <algorithm>
#include <cstdint>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/fp4_internal.h"
#include "kernels/cpu/fp4_panel_kernel.h"
#include "kernels/fp4_format.h"

namespace switchyard::cpu::fp4_internal {
namespace {

// Tokens per pass: each weight panel is dequantized once per pass; C of one pass for two weights
// of kPanelRows rows is 2 x 126 x 528 x 4 B = 0.5 MB of scratch (streamed once per k-block).
constexpr int64_t kMc = 512;

// 64-byte aligned view of `n` floats of *v (grown as needed).
float* Aligned(std::vector<float>* v, int64_t n) {
  if (static_cast<int64_t>(v->size()) < n + 16) v->resize(n + 16);
  const uintptr_t p = reinterpret_cast<uintptr_t>(v->data());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t{63});
}

// ct[c][j * ldc + t] = Σ_k w_c[r0 + j][k] · x[m0 + t][k] for t < mb (m0 a multiple of 16).
// factors: BlockFactors of each weight, 256 floats apart.
void ProductsAvx2(const float* xp, int64_t m0, int64_t mb, const Fp4Weight* const* w, int count,
                  const float* factors, int64_t r0, int64_t r1, float* pack, float* const* ct,
                  int64_t ldc) {
  const int64_t k = w[0]->padded_cols, tiles = PanelTiles(r1 - r0);
  const int64_t token_blocks = (mb + kTokenBlock - 1) / kTokenBlock;
  for (int64_t k0 = 0; k0 < k; k0 += kPanelKc) {
    const int64_t kl = std::min(kPanelKc, k - k0);  // a multiple of 16 (whole blocks)
    for (int c = 0; c < count; ++c) {
      PackPanelAvx2(*w[c], factors + 256 * c, r0, r1, k0, kl,
                    pack + c * tiles * kPanelMr * kPanelKc);
    }
    for (int64_t tb = 0; tb < token_blocks; ++tb) {
      const int nv = mb - tb * kTokenBlock > 8 ? 2 : 1;
      const float* xs = xp + (m0 + tb * kTokenBlock) * k + k0 * kTokenBlock;
      const float* next = tb + 1 < token_blocks ? xs + kTokenBlock * k : nullptr;
      for (int c = 0; c < count; ++c) {
        PanelTokenBlockAvx2(xs, pack + c * tiles * kPanelMr * kPanelKc, tiles, kl, nv, k0 > 0,
                            ct[c] + tb * kTokenBlock, ldc, c == 0 ? next : nullptr);
      }
    }
  }
}

// What PanelRowsAvx2 writes: plain products, SwiGLU rows (token-major) or SwiGLU straight into the
// down projection's prepared activations.
enum class Output { kPlain, kSwiGlu, kSwiGluPacked };

// The AVX2 path for rows [r0, r1) of `count` weights. kSwiGlu (count 2): y0 = silu(w0·x) * (w1·x),
// applied elementwise on C before the transposition (the same SiluMul values as unfused).
// kSwiGluPacked: the same values go into mid->xf (rows = down's k) instead of y0, int8-emulated
// per block like PreparePanelTokens; r0 and r1 are whole blocks of mid's weight.
void PanelRowsAvx2(const float* xp, int64_t m, const Fp4Weight* const* w, int count, Output output,
                   int64_t r0, int64_t r1, float* const* y, int64_t ldy, PreparedActs* mid,
                   int block, std::vector<float>* scratch) {
  const int64_t nr = r1 - r0, rows = PanelTiles(nr) * kPanelMr;
  const int64_t mc = std::min(kMc, (m + kTokenBlock - 1) / kTokenBlock * kTokenBlock);
  const int64_t ldc = mc + kTokenBlock;  // not a power of two: C rows spread over cache sets
  const int64_t pack_size = count * rows * kPanelKc, c_size = rows * ldc;
  float* base = Aligned(scratch, pack_size + count * c_size + 512);
  float* ct[2] = {base + pack_size, base + pack_size + c_size};
  float* factors = base + pack_size + count * c_size;
  for (int c = 0; c < count; ++c) BlockFactors(*w[c], factors + 256 * c);
  for (int64_t m0 = 0; m0 < m; m0 += mc) {
    const int64_t mb = std::min(mc, m - m0);
    ProductsAvx2(xp, m0, mb, w, count, factors, r0, r1, base, ct, ldc);
    if (output != Output::kPlain) {  // every lane the tiles wrote (whole 8-token vectors)
      for (int64_t j = 0; j < nr; ++j) {
        SiluMul(ct[0] + j * ldc, ct[1] + j * ldc, (mb + 7) / 8 * 8, ct[0] + j * ldc);
      }
    }
    if (output == Output::kSwiGluPacked) {
      const int64_t padded = mid->padded_cols;
      PackRowsAvx2(ct[0], ldc, nr, mb, block, mid->act == Fp4Activations::kInt8,
                   mid->xf.data() + m0 * padded + r0 * kTokenBlock, padded);
      continue;
    }
    const int outputs = output == Output::kPlain ? count : 1;
    for (int64_t t = 0; t < mb; t += 8) {
      const int64_t nt = std::min<int64_t>(8, mb - t);
      for (int c = 0; c < outputs; ++c) {
        TransposeAvx2(ct[c], ldc, nr, t, nt, y[c] + (m0 + t) * ldy + r0, ldy);
      }
    }
  }
}

// Portable path: y[i * ldy + (r - r0)] for rows [r0, r1).
void PanelRowsScalar(const float* xp, int64_t m, const Fp4Weight& w, int64_t r0, int64_t r1,
                     float* y, int64_t ldy, std::vector<float>* scratch) {
  const int64_t k = w.padded_cols;
  scratch->resize(k);
  const int block = Fp4BlockSize(w.format);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* p = w.packed.data() + r * k / 2;
    for (int64_t c = 0; c < k; ++c) {
      (*scratch)[c] =
          kTwiceE2m1[fp4::UnpackE2m1(p, c)] * BlockFactor(w, w.scales[r * (k / block) + c / block]);
    }
    for (int64_t i = 0; i < m; ++i) {
      float acc = 0.0f;
      const float* xi = xp + i / kTokenBlock * kTokenBlock * k + i % kTokenBlock;
      for (int64_t c = 0; c < k; ++c) acc += xi[c * kTokenBlock] * (*scratch)[c];
      y[i * ldy + r - r0] = acc;
    }
  }
}

}  // namespace

void PanelRows(const float* xp, int64_t m, const Fp4Weight& w, int64_t r0, int64_t r1, float* y,
               int64_t ldy, std::vector<float>* scratch) {
  if (HasAvx2()) {
    const Fp4Weight* ws[1] = {&w};
    float* ys[1] = {y};
    PanelRowsAvx2(xp, m, ws, 1, Output::kPlain, r0, r1, ys, ldy, nullptr, 0, scratch);
  } else {
    PanelRowsScalar(xp, m, w, r0, r1, y + r0, ldy, scratch);
  }
}

void PanelRowsPair(const float* xp, int64_t m, const Fp4Weight& w0, const Fp4Weight& w1, int64_t r0,
                   int64_t r1, float* y0, float* y1, int64_t ldy, std::vector<float>* scratch) {
  if (HasAvx2()) {
    const Fp4Weight* ws[2] = {&w0, &w1};
    float* ys[2] = {y0, y1};
    PanelRowsAvx2(xp, m, ws, 2, Output::kPlain, r0, r1, ys, ldy, nullptr, 0, scratch);
  } else {
    PanelRowsScalar(xp, m, w0, r0, r1, y0 + r0, ldy, scratch);
    PanelRowsScalar(xp, m, w1, r0, r1, y1 + r0, ldy, scratch);
  }
}

void PanelRowsSwiGlu(const float* xp, int64_t m, const Fp4Weight& gate, const Fp4Weight& up,
                     int64_t r0, int64_t r1, float* h, int64_t ldh, std::vector<float>* scratch) {
  if (HasAvx2()) {
    const Fp4Weight* ws[2] = {&gate, &up};
    float* ys[2] = {h, nullptr};
    PanelRowsAvx2(xp, m, ws, 2, Output::kSwiGlu, r0, r1, ys, ldh, nullptr, 0, scratch);
    return;
  }
  const int64_t nr = r1 - r0;
  std::vector<float> g(m * nr), u(m * nr);
  PanelRowsScalar(xp, m, gate, r0, r1, g.data(), nr, scratch);
  PanelRowsScalar(xp, m, up, r0, r1, u.data(), nr, scratch);
  for (int64_t t = 0; t < m; ++t) SiluMul(&g[t * nr], &u[t * nr], nr, h + t * ldh + r0);
}

bool PanelSwiGluPackable(const PreparedActs& in, const Fp4Weight& down) {
  return HasAvx2() && in.panel && down.cols == down.padded_cols;
}

void PanelRowsSwiGluPacked(const float* xp, int64_t m, const Fp4Weight& gate, const Fp4Weight& up,
                           int64_t r0, int64_t r1, const Fp4Weight& down, PreparedActs* mid,
                           std::vector<float>* scratch) {
  const Fp4Weight* ws[2] = {&gate, &up};
  float* ys[2] = {nullptr, nullptr};
  PanelRowsAvx2(xp, m, ws, 2, Output::kSwiGluPacked, r0, r1, ys, 0, mid, Fp4BlockSize(down.format),
                scratch);
}

}  // namespace switchyard::cpu::fp4_internal
