// kDequantBf16 path of the grouped FP4 expert GEMM, for every GPU (Hopper included: no FP4 MMA
// there). FP4 codes are decoded in registers to e2m1 * block_scale, a value with at most 6
// significant bits that BF16 and FP32 hold exactly, so each product with a BF16 activation is
// exact and only the FP32 accumulation rounds; the FP32 global scale multiplies the sum.
//  - GemvKernel, experts with 1..16 tokens (decode): one warp per 1-2 weight rows streams 8-byte
//    code chunks (coalesced 256 B per warp and row, next tile prefetched), activations staged in
//    shared memory per 512-column tile and reused by the block's 8-16 rows; instantiated for 1..4
//    and 5..16 tokens so that small groups keep few accumulators (more blocks per SM).
//  - MmaKernel, larger groups (prefill): 128x64 (tokens x rows) output tiles, weights dequantized
//    to BF16 in shared memory once per 128 tokens, WMMA 16x16x16 BF16 tensor-core MMA with FP32
//    accumulation. Single-buffered: simple, not yet tuned (no cp.async pipeline, no ldmatrix).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/fp4_device.cuh"
#include "kernels/cuda/fp4_gemm_internal.h"

namespace switchyard::cuda::internal {
namespace {

__device__ __forceinline__ void StoreOut(float* y, float v) { *y = v; }
__device__ __forceinline__ void StoreOut(uint16_t* y, float v) { *y = FloatToBf16(v); }

// Scale of the 16-element chunk `chunk` of a weight row (NVFP4: its own E4M3 scale; MXFP4: the
// E8M0 scale of the 32-element block holding it).
template <int kBlock>
__device__ __forceinline__ float ChunkScale(const uint8_t* srow, int64_t chunk) {
  if constexpr (kBlock == fp4::kNvFp4Block) {
    return fp4::E4m3ToF32(srow[chunk]);
  } else {
    return fp4::E8m0ToF32(srow[chunk >> 1]);
  }
}

// w[i] = e2m1(code i of the 8 bytes) * scale, i < 16 (exact).
__device__ __forceinline__ void Decode16(uint2 codes, float scale, float* w) {
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const uint32_t byte = ((i < 4 ? codes.x : codes.y) >> (8 * (i & 3))) & 0xFFu;
    w[2 * i] = fp4::E2m1ToF32(static_cast<uint8_t>(byte & 0xFu)) * scale;
    w[2 * i + 1] = fp4::E2m1ToF32(static_cast<uint8_t>(byte >> 4)) * scale;
  }
}

// 8 BF16 activations from row `xr` at column gk (zeros at and beyond K).
__device__ __forceinline__ uint4 LoadX8(const uint16_t* xr, int64_t gk, int K, bool vec) {
  if (vec && gk + 8 <= K) return *reinterpret_cast<const uint4*>(xr + gk);
  uint16_t t[8];
#pragma unroll
  for (int j = 0; j < 8; ++j) t[j] = gk + j < K ? xr[gk + j] : uint16_t{0};
  uint4 v;
  v.x = t[0] | (uint32_t{t[1]} << 16);
  v.y = t[2] | (uint32_t{t[3]} << 16);
  v.z = t[4] | (uint32_t{t[5]} << 16);
  v.w = t[6] | (uint32_t{t[7]} << 16);
  return v;
}

__device__ __forceinline__ void Unpack8(uint4 v, float* f) {
  const uint32_t u[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    f[2 * j] = __uint_as_float(u[j] << 16);
    f[2 * j + 1] = __uint_as_float(u[j] & 0xFFFF0000u);
  }
}

struct Operands {
  const uint16_t* x;      // first row of the chunk
  const uint8_t* packed;  // first expert of the chunk
  const uint8_t* scales;
  const float* gscales;
  int N, K, Kp;
};

constexpr int kGemvWarps = 8, kGemvTileK = 512;
// Weight rows per warp: 2 for up to 4 tokens (the 8 code bytes of each row serve more FMAs), 1
// above (the 16 accumulators per row would otherwise cost occupancy).
__host__ __device__ constexpr int GemvRowsPerWarp(int max_tokens) { return max_tokens > 4 ? 1 : 2; }
constexpr int kGemvSmallT = 4;  // GemvKernel<.., 4, ..> takes 1..4 tokens, <.., 16, ..> 5..16

// Experts with kMinT..kMaxT tokens (kMinT = 1 or kGemvSmallT + 1). Each warp owns R weight rows;
// in each 512-column tile lane i owns the 16-element chunk i (8 code bytes per row, the next
// tile's bytes prefetched while the activations are staged).
template <int kBlock, int kMaxT, typename Out>
__global__ void __launch_bounds__(kGemvWarps * 32)
    GemvKernel(ExpertLayout layout, Operands op, Out* __restrict__ y) {
  constexpr int kMinT = kMaxT > kGemvSmallT ? kGemvSmallT + 1 : 1;
  constexpr int R = GemvRowsPerWarp(kMaxT);
  __shared__ __align__(16) uint16_t xs[kMaxT * kGemvTileK];
  const int e = blockIdx.y;
  const int t0 = layout.offsets[e];
  const int T = layout.offsets[e + 1] - t0;
  if (T < kMinT || T > kMaxT) return;  // uniform over the block
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int n0 = (blockIdx.x * kGemvWarps + warp) * R;
  const int64_t wstride = op.Kp / 2, sstride = op.Kp / kBlock;
  const uint16_t* xe = op.x + static_cast<int64_t>(t0) * op.K;
  const bool vec = (op.K % 8) == 0;

  uint2 codes[R];
  uint8_t sc[R];
  auto fetch = [&](int k0) {
    const int64_t kk = k0 + lane * 16;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      codes[r] = make_uint2(0, 0);
      sc[r] = 0;
      if (n0 + r < op.N && kk < op.Kp) {
        const int64_t row = static_cast<int64_t>(e) * op.N + n0 + r;
        codes[r] = __ldg(reinterpret_cast<const uint2*>(op.packed + row * wstride + kk / 2));
        sc[r] = __ldg(op.scales + row * sstride + kk / kBlock);
      }
    }
  };
  float acc[R][kMaxT] = {};
  fetch(0);
  for (int k0 = 0; k0 < op.Kp; k0 += kGemvTileK) {
    uint2 cur[R];
    uint8_t cur_sc[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      cur[r] = codes[r];
      cur_sc[r] = sc[r];
    }
    if (k0 + kGemvTileK < op.Kp) fetch(k0 + kGemvTileK);
    __syncthreads();  // the previous tile is consumed
    for (int i = threadIdx.x * 8; i < T * kGemvTileK; i += blockDim.x * 8) {
      const int t = i / kGemvTileK, k = i % kGemvTileK;
      *reinterpret_cast<uint4*>(xs + i) =
          LoadX8(xe + static_cast<int64_t>(t) * op.K, k0 + k, op.K, vec);
    }
    __syncthreads();
    if (k0 + lane * 16 >= op.Kp) continue;
#pragma unroll
    for (int r = 0; r < R; ++r) {
      float w[16];
      const float scale =
          kBlock == fp4::kNvFp4Block ? fp4::E4m3ToF32(cur_sc[r]) : fp4::E8m0ToF32(cur_sc[r]);
      Decode16(cur[r], scale, w);
#pragma unroll
      for (int t = 0; t < kMaxT; ++t) {
        if (t < T) {
          const uint16_t* xr = xs + t * kGemvTileK + lane * 16;
          float xv[16];
          Unpack8(*reinterpret_cast<const uint4*>(xr), xv);
          Unpack8(*reinterpret_cast<const uint4*>(xr + 8), xv + 8);
#pragma unroll
          for (int i = 0; i < 16; ++i) acc[r][t] = fmaf(w[i], xv[i], acc[r][t]);
        }
      }
    }
  }
  const float gs = op.gscales[e];
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int t = 0; t < kMaxT; ++t) {
      if (t < T) {
        float v = acc[r][t];
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, off);
        const int n = n0 + r;
        if (lane == 0 && n < op.N) StoreOut(y + static_cast<int64_t>(t0 + t) * op.N + n, v * gs);
      }
    }
  }
}

constexpr int kBM = 128, kBN = 64, kBK = 32, kLd = kBK + 8, kCLd = kBN + 4;
constexpr int kMmaThreads = 256;  // 8 warps: 4 (tokens) x 2 (outputs), 32 x 32 outputs each
// Shared memory: the A/B tiles during the K loop, then (reused) the FP32 output tile.
constexpr int kTileBytes = (kBM + kBN) * kLd * 2, kOutBytes = kBM * kCLd * 4;
constexpr int kMmaSmem = kTileBytes > kOutBytes ? kTileBytes : kOutBytes;

// Experts with more than kGemvMaxTokens tokens: output tile [128 tokens, 64 rows] per block.
template <int kBlock, typename Out>
__global__ void __launch_bounds__(kMmaThreads)
    MmaKernel(ExpertLayout layout, Operands op, Out* __restrict__ y) {
  namespace wmma = nvcuda::wmma;
  __shared__ __align__(128) unsigned char smem[kMmaSmem];
  __nv_bfloat16* as = reinterpret_cast<__nv_bfloat16*>(smem);  // [kBM][kLd]
  __nv_bfloat16* bs = as + kBM * kLd;                          // [kBN][kLd]
  float* cs = reinterpret_cast<float*>(smem);                  // [kBM][kCLd], after the K loop
  const int e = blockIdx.z;
  const int t0 = layout.offsets[e];
  const int T = layout.offsets[e + 1] - t0;
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  if (T <= kGemvMaxTokens || m0 >= T) return;  // uniform over the block
  const int tid = threadIdx.x, warp = tid >> 5, wm = warp >> 1, wn = warp & 1;
  const int row = tid >> 1, half = tid & 1;  // loader: A rows 0..127, B rows 0..63 (tid < 128)
  const bool vec = (op.K % 8) == 0;
  const uint16_t* xr = op.x + static_cast<int64_t>(t0 + m0 + row) * op.K;
  const bool a_row = m0 + row < T, b_loader = row < kBN, b_row = b_loader && n0 + row < op.N;
  const int64_t wrow = static_cast<int64_t>(e) * op.N + n0 + row;
  const uint8_t* wp = op.packed + wrow * (op.Kp / 2);
  const uint8_t* sp = op.scales + wrow * (op.Kp / kBlock);

  wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
  }
  for (int k0 = 0; k0 < op.Kp; k0 += kBK) {
    const int64_t gk = k0 + half * 16;
    uint4 a0 = make_uint4(0, 0, 0, 0), a1 = a0;
    if (a_row) {
      a0 = LoadX8(xr, gk, op.K, vec);
      a1 = LoadX8(xr, gk + 8, op.K, vec);
    }
    uint4* adst = reinterpret_cast<uint4*>(as + row * kLd + half * 16);
    adst[0] = a0;
    adst[1] = a1;
    if (b_loader) {
      float w[16];
      if (b_row && gk < op.Kp) {
        Decode16(*reinterpret_cast<const uint2*>(wp + gk / 2), ChunkScale<kBlock>(sp, gk / 16), w);
      } else {
#pragma unroll
        for (int i = 0; i < 16; ++i) w[i] = 0.0f;
      }
      __nv_bfloat16* bdst = bs + row * kLd + half * 16;
#pragma unroll
      for (int i = 0; i < 16; ++i) bdst[i] = __float2bfloat16_rn(w[i]);  // exact
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa[2];
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(fa[i], as + (wm * 32 + i * 16) * kLd + kk, kLd);
        wmma::load_matrix_sync(fb[i], bs + (wn * 32 + i * 16) * kLd + kk, kLd);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i) {
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
    }
    __syncthreads();  // also ends every use of as/bs before cs overwrites them
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::store_matrix_sync(cs + (wm * 32 + i * 16) * kCLd + wn * 32 + j * 16, acc[i][j], kCLd,
                              wmma::mem_row_major);
    }
  }
  __syncthreads();
  const float gs = op.gscales[e];
  for (int i = tid; i < kBM * kBN; i += blockDim.x) {
    const int r = i / kBN, c = i % kBN;
    if (m0 + r < T && n0 + c < op.N) {
      StoreOut(y + static_cast<int64_t>(t0 + m0 + r) * op.N + n0 + c, cs[r * kCLd + c] * gs);
    }
  }
}

template <int kBlock, typename Out>
Status Launch(const GemmChunk& c, const Operands& op, Out* y, cudaStream_t s) {
  const unsigned experts = static_cast<unsigned>(c.layout.num_experts);
  if (c.small_groups > 0 && c.min_tokens <= kGemvSmallT) {
    constexpr int rows = kGemvWarps * GemvRowsPerWarp(kGemvSmallT);
    const dim3 grid((op.N + rows - 1) / rows, experts);
    GemvKernel<kBlock, kGemvSmallT, Out><<<grid, kGemvWarps * 32, 0, s>>>(c.layout, op, y);
    RETURN_IF_ERROR(LaunchStatus("FP4 grouped GEMV kernel launch"));
  }
  if (c.small_groups > 0 && c.max_small_tokens > kGemvSmallT) {
    constexpr int rows = kGemvWarps * GemvRowsPerWarp(kGemvMaxTokens);
    const dim3 grid((op.N + rows - 1) / rows, experts);
    GemvKernel<kBlock, kGemvMaxTokens, Out><<<grid, kGemvWarps * 32, 0, s>>>(c.layout, op, y);
    RETURN_IF_ERROR(LaunchStatus("FP4 grouped GEMV kernel launch"));
  }
  if (c.large_groups > 0) {
    const dim3 grid((op.N + kBN - 1) / kBN, (c.max_tokens + kBM - 1) / kBM, experts);
    MmaKernel<kBlock, Out><<<grid, kMmaThreads, 0, s>>>(c.layout, op, y);
    RETURN_IF_ERROR(LaunchStatus("FP4 grouped MMA kernel launch"));
  }
  return OkStatus();
}

}  // namespace

Status LaunchDequantGemm(const Fp4GroupedGemmArgs& args, const GemmChunk& chunk, cudaStream_t s) {
  const Fp4ExpertWeights& w = *args.weights;
  const int block = Fp4Block(w.format);
  Operands op;
  op.N = static_cast<int>(w.rows);
  op.K = static_cast<int>(w.cols);
  op.Kp = static_cast<int>(w.padded_cols);
  op.x = args.x_dev + chunk.first_row * w.cols;
  op.packed = w.packed.as<uint8_t>() + chunk.first_expert * w.rows * (w.padded_cols / 2);
  op.scales = w.scales.as<uint8_t>() + chunk.first_expert * w.rows * (w.padded_cols / block);
  op.gscales = w.global_scales.as<float>() + chunk.first_expert;
  const int64_t y_off = chunk.first_row * w.rows;
  const bool nv = w.format == cpu::Fp4Format::kNvFp4;
  if (args.y_type == ElemType::kF32) {
    float* y = static_cast<float*>(args.y_dev) + y_off;
    return nv ? Launch<16>(chunk, op, y, s) : Launch<32>(chunk, op, y, s);
  }
  uint16_t* y = static_cast<uint16_t*>(args.y_dev) + y_off;
  return nv ? Launch<16>(chunk, op, y, s) : Launch<32>(chunk, op, y, s);
}

}  // namespace switchyard::cuda::internal
