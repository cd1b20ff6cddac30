// FP32 CPU kernels: the engine's compute path and the oracle for the CUDA kernels.
//
// All pointers are caller-owned, row-major and dense. Functions without "Serial" in their name
// parallelise internally with OpenMP (common/parallel.h sets the thread count); "Serial" variants
// run on the calling thread so callers can parallelise an outer loop (e.g. over experts).
// Results do not depend on the thread count. None of them allocate on the heap except attention
// (one score row per thread). In-place use is allowed only where stated.
#pragma once

#include <cstdint>

namespace switchyard::cpu {

// y[m, n] = x[m, k] · w[n, k]ᵀ (+ bias[n] when non-null). AVX2/FMA when the CPU has it.
void MatMulTransB(const float* x, int64_t m, int64_t k, const float* w, int64_t n, float* y,
                  const float* bias = nullptr);
void MatMulTransBSerial(const float* x, int64_t m, int64_t k, const float* w, int64_t n, float* y,
                        const float* bias = nullptr);
// Portable scalar reference of the same (tests compare the fast path against it).
void MatMulTransBReference(const float* x, int64_t m, int64_t k, const float* w, int64_t n,
                           float* y, const float* bias = nullptr);
// True when the AVX2/FMA path is in use.
bool MatMulUsesAvx2();

// y[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) * weight. In-place (y == x) allowed.
void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y);
void RmsNormSerial(const float* x, const float* weight, int64_t rows, int64_t n, float eps,
                   float* y);

// out[i] = silu(gate[i]) * up[i] (SwiGLU). out may alias gate or up.
void SiluMul(const float* gate, const float* up, int64_t n, float* out);

// Numerically stable softmax over n values, in place.
void SoftmaxInPlace(float* x, int64_t n);

// Rotates one head vector x[dim] by the angles whose cos/sin are given (dim/2 each).
// interleave: pairs (x[2i], x[2i+1]) rotate by angle i (DeepSeek); else (x[i], x[i+dim/2]) (Llama).
void ApplyRope(float* x, int64_t dim, const float* cos, const float* sin, bool interleave);

// Causal grouped-query attention for one sequence. q: [num_q, num_heads, head_dim] for the
// positions start_pos .. start_pos+num_q-1; k/v: [ctx_len, num_kv_heads, head_dim] holding every
// position 0 .. ctx_len-1 (ctx_len >= start_pos + num_q). Query head h reads KV head
// h / (num_heads / num_kv_heads). window > 0 limits keys to the last `window` positions
// (q_pos - window < k_pos <= q_pos). out: [num_q, num_heads, head_dim].
void AttentionGqa(const float* q, int64_t num_q, int64_t start_pos, const float* k, const float* v,
                  int64_t ctx_len, int64_t num_heads, int64_t num_kv_heads, int64_t head_dim,
                  float scale, int64_t window, float* out);

// Causal MLA attention in the absorbed form for one sequence. q_lat: [num_q, num_heads, lat]
// (q_nope already multiplied into the latent space), q_pe: [num_q, num_heads, rope];
// cache: [ctx_len, lat + rope] holding normalised latents then RoPE'd k_pe per position.
// out: [num_q, num_heads, lat] = Σ_t softmax_t(scale·(q_lat·c_t + q_pe·pe_t)) · c_t.
void AttentionMla(const float* q_lat, const float* q_pe, int64_t num_q, int64_t start_pos,
                  const float* cache, int64_t ctx_len, int64_t num_heads, int64_t lat, int64_t rope,
                  float scale, float* out);

}  // namespace switchyard::cpu
