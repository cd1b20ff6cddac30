// kDequantBf16 path of the grouped FP4 expert GEMM, for every GPU from sm_89 (Hopper included: no
// FP4 MMA there). One tensor-core kernel, Fp4MmaKernel, in three shapes: decode (1..8 and 9..16
// tokens per expert: 64 weight rows x 8/16 tokens per block, two warps per row tile each taking
// one of a stage's two windows, sums added at the end; 4 blocks = 32 warps per SM) and prefill
// (more tokens: 128 x 128 tiles, 8 warps of 32 x 64). Weights are the MMA's M operand (rows),
// tokens its N.
//  - Per pipeline stage (3 stages, 4 for 1..8 tokens; cp.async, one commit group each) the block's
//    activations, FP4 code bytes and scale bytes of the next windows land in shared memory
//    (zero-filled past K / Kp, past the expert's tokens and past the last row; plain loads where
//    rows are not aligned for cp.async). Code and activation rows are XOR-swizzled against bank
//    conflicts.
//  - Codes are decoded in registers: e2m1 -> BF16 bit patterns (one multiply places sign and
//    exponent/mantissa bits, fp4_mma.cuh) times block_scale * 2^118 in BF16, i.e. e2m1 *
//    block_scale * 2^-8 exactly. Each product with a BF16 activation is exact; mma.sync
//    m16n8k16 accumulates in FP32; the epilogue multiplies by 2^8 (exact), then by the FP32
//    global scale.
//  - K is permuted inside each 128-wide window: thread (g, t) of a warp holds codes 32t..32t+31
//    of its rows, and word j of them (codes 32t+8j..+7) feeds two k16 steps as the pairs (code i,
//    code i+4). The activations of token g at the same 8 columns are one 16-byte shared-memory
//    load, re-paired with byte permutes. Any permutation of K gives the same dot product.
//  - Weights in the kMmaPairs layout (fp4_code_layout.h; kPairs) decode word j straight into the
//    pairs (code 2i, code 2i + 1) with fewer instructions, and the activations need no re-pairing.
// Exact for NVFP4, and for MXFP4 block scales in [2^-117, 2^8] (E8M0 bytes 10..135; real weights
// are far inside; outside, products leave the BF16 range and a NaN scale byte is not propagated).
#include <cuda_runtime.h>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/fp4_device.cuh"
#include "kernels/cuda/fp4_gemm_internal.h"
#include "kernels/cuda/fp4_mma.cuh"

namespace switchyard::cuda::internal {
namespace {

__device__ __forceinline__ void StoreOut(float* y, float v) { *y = v; }
__device__ __forceinline__ void StoreOut(uint16_t* y, float v) { *y = FloatToBf16(v); }

struct Operands {
  const uint16_t* x;      // first row of the chunk
  const uint8_t* packed;  // first expert of the chunk
  const uint8_t* scales;
  const float* gscales;
  int N, K, Kp;
};

constexpr int kWin = 128;  // K columns per window (64 code bytes per row)
constexpr int kPad = 32;   // bytes after each token row of a stage (bank spread)

// Block scale byte(s) of one row and window -> BF16 pairs of block_scale * 2^118 for code words
// 0,1 (first) and 2,3 (second). NVFP4: two E4M3 bytes; MXFP4: one E8M0 byte, 2^(s-127+118) =
// 2^(s-9), exact for s <= 136 (bits (s + 118) << 7).
template <int kBlock>
__device__ __forceinline__ void ScalePairs(uint32_t bytes, uint32_t* first, uint32_t* second) {
  if constexpr (kBlock == fp4::kNvFp4Block) {
    E4m3PairToBf16Scaled(bytes, first, second);
  } else {
    const uint32_t b = (bytes + 118u) << 7;
    *first = *second = b | (b << 16);
  }
}

// Tile shape: kWM x kWN x kWK warps, each kMT x 16 weight rows by kNT x 8 tokens; the kWK warps
// of a (row, token) tile split each stage's kPf windows between them and add their sums at the end
// (more warps per SM for decode, where registers and shared memory are few); kStages stages.
// Experts with kMinT..kMaxT tokens; registers capped for kMinBlocks blocks per SM. A stage holds
// the block's activations [kBN][kXPitch], code bytes [kBM][kCPitch] and scale bytes [kBM][kSPitch]
// of kPf windows.
template <int kWM, int kWN, int kWK, int kMT, int kNT, int kPf, int kStages, int kMinT, int kMaxT,
          int kMinBlocks>
struct Shape {
  static_assert(kPf % kWK == 0 && (kPf == 1 || kPf % 2 == 0), "windows split evenly");
  static constexpr int kWM_ = kWM, kWN_ = kWN, kWK_ = kWK, kMT_ = kMT, kNT_ = kNT, kPf_ = kPf;
  static constexpr int kStages_ = kStages;
  static constexpr int kMinT_ = kMinT, kMaxT_ = kMaxT, kMinBlocks_ = kMinBlocks;
  static constexpr int kThreads = kWM * kWN * kWK * 32;
  static constexpr int kBM = kWM * kMT * 16, kBN = kWN * kNT * 8;
  static constexpr int kXPitch = kPf * kWin * 2 + kPad;
  static constexpr int kCPitch = kPf * kWin / 2;
  static constexpr int kSPitch = kPf * kWin / 16;
  static constexpr int kXBytes = kBN * kXPitch, kCBytes = kBM * kCPitch;
  static constexpr int kStageBytes = kXBytes + kCBytes + kBM * kSPitch;
  static constexpr int kSmem = kStages * kStageBytes;
};

// Byte offset of 16-byte chunk c (0..15) of a window inside a token row: XOR with bit 3 of c so
// that the 8 lanes of a quarter warp (2 rows x 4 chunks 4t + j) hit 8 distinct bank groups.
__device__ __forceinline__ int ChunkOffset(int c) { return (c ^ ((c >> 3) & 1)) * 16; }

// Byte offset of 16-byte code chunk c of row r inside its stage row: with two or more windows a
// row is 128 bytes or more, and odd rows swap their 64-byte halves (XOR 4 on c) so that the 8
// lanes of a quarter warp (rows g, g + 1 x chunks t) hit 8 distinct bank groups; one window (64
// bytes per row) needs no swizzle.
template <int kPf>
__device__ __forceinline__ int CodeOffset(int r, int c) {
  return (kPf >= 2 ? c ^ ((r & 1) << 2) : c) * 16;
}

template <int kBlock, bool kPairs, typename S, typename Out>
__global__ void __launch_bounds__(S::kThreads, S::kMinBlocks_)
    Fp4MmaKernel(ExpertLayout layout, Operands op, Out* __restrict__ y) {
  extern __shared__ __align__(16) unsigned char smem[];
  constexpr int kMT = S::kMT_, kNT = S::kNT_, kPf = S::kPf_, kStages = S::kStages_;
  constexpr int kScaleBytes = kWin / kBlock;  // per row and window: 8 (NVFP4) or 4 (MXFP4)
  const int e = blockIdx.z;
  const int t0 = layout.offsets[e];
  const int T = layout.offsets[e + 1] - t0;
  const int m0 = blockIdx.x * S::kBM, n0 = blockIdx.y * S::kBN;
  if (T < S::kMinT_ || T > S::kMaxT_ || n0 >= T) return;  // uniform over the block
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int wm = warp % S::kWM_, wn = (warp / S::kWM_) % S::kWN_, wk = warp / (S::kWM_ * S::kWN_);
  const int row_bytes = op.Kp / 2, sstride = op.Kp / kBlock;
  const bool codes16 = (row_bytes % 16) == 0, scales4 = (sstride % 4) == 0;
  const int num_batches = (op.Kp + kPf * kWin - 1) / (kPf * kWin);
  const int rows = min(op.N - m0, S::kBM);
  const uint8_t* wbase = op.packed + (static_cast<int64_t>(e) * op.N + m0) * row_bytes;
  const uint8_t* sbase = op.scales + (static_cast<int64_t>(e) * op.N + m0) * sstride;
  const uint16_t* xe = op.x + static_cast<int64_t>(t0 + n0) * op.K;
  const int tokens = min(T - n0, S::kBN);
  const bool xvec = (op.K % 8) == 0;

  // Batch b (kPf windows) of activations, codes and scales into stage b % kStages: one cp.async
  // group per batch (empty past the end, so that group counting stays uniform). Zero-filled past
  // K / Kp, past the expert's tokens and past the last weight row. Shapes whose rows are not
  // 16-byte (codes, activations) or 4-byte (scales) aligned take plain loads for that part.
  auto load_stage = [&](int b) {
    if (b < num_batches) {
      unsigned char* st = smem + (b % kStages) * S::kStageBytes;
      unsigned char* cs = st + S::kXBytes;
      unsigned char* ss = cs + S::kCBytes;
      constexpr int kXChunks = S::kBN * kPf * (kWin / 8);
#pragma unroll
      for (int i = 0; i < (kXChunks + S::kThreads - 1) / S::kThreads; ++i) {
        const int q = tid + i * S::kThreads;
        if (kXChunks % S::kThreads != 0 && q >= kXChunks) break;
        const int c = q % (kWin / 8), w = (q / (kWin / 8)) % kPf, n = q / (kPf * (kWin / 8));
        const int k = (b * kPf + w) * kWin + 8 * c;
        unsigned char* dst = st + n * S::kXPitch + w * kWin * 2 + ChunkOffset(c);
        const uint16_t* src = xe + static_cast<int64_t>(n) * op.K + k;
        if (xvec) {
          const bool ok = n < tokens && k < op.K;
          CpAsync16(dst, ok ? static_cast<const void*>(src) : op.x, ok ? 16 : 0);
        } else {
          uint16_t v[8];
#pragma unroll
          for (int i = 0; i < 8; ++i) v[i] = n < tokens && k + i < op.K ? src[i] : uint16_t{0};
          *reinterpret_cast<uint4*>(dst) =
              make_uint4(v[0] | (uint32_t{v[1]} << 16), v[2] | (uint32_t{v[3]} << 16),
                         v[4] | (uint32_t{v[5]} << 16), v[6] | (uint32_t{v[7]} << 16));
        }
      }
      constexpr int kCChunks = S::kBM * kPf * (kWin / 32);  // 16-byte chunks of codes
#pragma unroll
      for (int i = 0; i < (kCChunks + S::kThreads - 1) / S::kThreads; ++i) {
        const int q = tid + i * S::kThreads;
        if (kCChunks % S::kThreads != 0 && q >= kCChunks) break;
        const int c = q % (kPf * kWin / 32), r = q / (kPf * kWin / 32);
        const int ob = b * kPf * (kWin / 2) + 16 * c;
        unsigned char* dst = cs + r * S::kCPitch + CodeOffset<kPf>(r, c);
        const uint8_t* src = wbase + static_cast<int64_t>(r) * row_bytes + ob;
        const bool ok = r < rows && ob < row_bytes;
        if (codes16) {
          CpAsync16(dst, ok ? static_cast<const void*>(src) : op.packed, ok ? 16 : 0);
        } else {  // rows 8-byte aligned: ob + 8 <= row_bytes whenever ob < row_bytes
          CpAsync8(dst, ok ? static_cast<const void*>(src) : op.packed, ok ? 8 : 0);
          const bool ok2 = ok && ob + 16 <= row_bytes;
          CpAsync8(dst + 8, ok2 ? static_cast<const void*>(src + 8) : op.packed, ok2 ? 8 : 0);
        }
      }
      constexpr int kSChunks = S::kBM * kPf * kScaleBytes / 4;  // 4-byte chunks of scales
#pragma unroll
      for (int i = 0; i < (kSChunks + S::kThreads - 1) / S::kThreads; ++i) {
        const int q = tid + i * S::kThreads;
        if (kSChunks % S::kThreads != 0 && q >= kSChunks) break;
        const int c = q % (kPf * kScaleBytes / 4), r = q / (kPf * kScaleBytes / 4);
        const int so = b * kPf * kScaleBytes + 4 * c;
        unsigned char* dst = ss + r * S::kSPitch + 4 * c;
        const uint8_t* src = sbase + static_cast<int64_t>(r) * sstride + so;
        const int n = r < rows && so < sstride ? min(4, sstride - so) : 0;
        if (scales4) {
          CpAsync4(dst, n > 0 ? static_cast<const void*>(src) : op.scales, n);
        } else {
#pragma unroll
          for (int i = 0; i < 4; ++i) dst[i] = i < n ? src[i] : uint8_t{0};
        }
      }
    }
    CpAsyncCommit();
  };

  float acc[kMT][kNT][4];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nt][i] = 0.0f;
    }
  }

#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) load_stage(s);
  for (int b = 0; b < num_batches; ++b) {
    CpAsyncWait<kStages - 2>();
    __syncthreads();  // stage b landed for all; stage b - 1 is free for batch b + kStages - 1
    load_stage(b + kStages - 1);
    const unsigned char* st = smem + (b % kStages) * S::kStageBytes;
    const unsigned char* cs = st + S::kXBytes;
    const unsigned char* ss = cs + S::kCBytes;
#pragma unroll
    for (int pp = 0; pp < kPf / S::kWK_; ++pp) {
      const int p = pp * S::kWK_ + wk;
      uint4 codes[kMT][2];
      uint32_t scale2[kMT][2][2];
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = (wm * kMT + mt) * 16 + g + 8 * h;
          codes[mt][h] = Lds16(cs + r * S::kCPitch + CodeOffset<kPf>(r, 4 * p + t));
          const unsigned char* sp = ss + r * S::kSPitch + p * kScaleBytes;
          const uint32_t sb = kBlock == fp4::kNvFp4Block ? Lds16Bits(sp + 2 * t) : Lds8Bits(sp + t);
          ScalePairs<kBlock>(sb, &scale2[mt][h][0], &scale2[mt][h][1]);
        }
      }
#pragma unroll
      for (int j = 0; j < 4; ++j) {  // code word j: columns 32t + 8j .. + 7 of the window
        uint32_t bx[kNT][4];
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
          const int n = (wn * kNT + nt) * 8 + g;
          const uint4 xv = Lds16(st + n * S::kXPitch + p * kWin * 2 + ChunkOffset(4 * t + j));
          if constexpr (kPairs) {  // pairs of consecutive columns, as the codes
            bx[nt][0] = xv.x, bx[nt][1] = xv.y, bx[nt][2] = xv.z, bx[nt][3] = xv.w;
          } else {
            PairActs(xv, bx[nt]);
          }
        }
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          uint32_t a[2][4];  // [row g / g + 8][pair]
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const uint4 v = codes[mt][h];
            const uint32_t word = j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
            if constexpr (kPairs) {
              DecodePairsWord(word, scale2[mt][h][j >> 1], a[h]);
            } else {
              DecodeWord(word, scale2[mt][h][j >> 1], a[h]);
            }
          }
#pragma unroll
          for (int nt = 0; nt < kNT; ++nt) {
            MmaBf16(acc[mt][nt], a[0][0], a[1][0], a[0][1], a[1][1], bx[nt][0], bx[nt][1]);
            MmaBf16(acc[mt][nt], a[0][2], a[1][2], a[0][3], a[1][3], bx[nt][2], bx[nt][3]);
          }
        }
      }
    }
  }
  CpAsyncWait<0>();             // no cp.async outstanding at exit
  if constexpr (S::kWK_ > 1) {  // warps wk > 0 hand their sums to warp wk = 0 of their tile
    constexpr int kAcc = kMT * kNT * 4, kTileWarps = S::kWM_ * S::kWN_;
    static_assert((S::kWK_ - 1) * kTileWarps * 32 * kAcc * 4 <= S::kSmem, "sums fit the stages");
    float* red = reinterpret_cast<float*>(smem);
    __syncthreads();  // every warp is past its last read of the stages
    if (wk > 0) {
      float* dst = red + (((wk - 1) * kTileWarps + warp % kTileWarps) * 32 + lane) * kAcc;
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
          for (int i = 0; i < 4; ++i) dst[(mt * kNT + nt) * 4 + i] = acc[mt][nt][i];
        }
      }
    }
    __syncthreads();
    if (wk > 0) return;
#pragma unroll
    for (int k2 = 1; k2 < S::kWK_; ++k2) {
      const float* src = red + (((k2 - 1) * kTileWarps + warp) * 32 + lane) * kAcc;
#pragma unroll
      for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
        for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[mt][nt][i] += src[(mt * kNT + nt) * 4 + i];
        }
      }
    }
  }

  const float gs = op.gscales[e];
#pragma unroll
  for (int mt = 0; mt < kMT; ++mt) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = m0 + (wm * kMT + mt) * 16 + g + 8 * h;
      if (r >= op.N) continue;
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt) {
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          const int tok = n0 + (wn * kNT + nt) * 8 + 2 * t + i;
          if (tok < T) {
            // (acc * 2^8) is exact; then one rounding by the global scale.
            const float v = acc[mt][nt][2 * h + i] * kDecodeUnscale * gs;
            StoreOut(y + static_cast<int64_t>(t0 + tok) * op.N + r, v);
          }
        }
      }
    }
  }
}

using Decode8 = Shape<4, 1, 2, 1, 1, 2, 4, 1, 8, 4>;  // 4 x 54 KB shared: 4 blocks per SM
using Decode16 = Shape<4, 1, 2, 1, 2, 2, 3, 9, kGemvMaxTokens, 4>;
using Prefill = Shape<4, 2, 1, 2, 8, 1, 3, kGemvMaxTokens + 1, INT32_MAX, 1>;
static_assert(kGemvMaxTokens == 16, "decode shapes cover 1..8 and 9..16 tokens");

template <int kBlock, bool kPairs, typename S, typename Out>
Status LaunchShape(const GemmChunk& c, const Operands& op, Out* y, int max_tokens, cudaStream_t s) {
  auto kernel = Fp4MmaKernel<kBlock, kPairs, S, Out>;
  if (S::kSmem > 48 * 1024) {
    const cudaError_t err =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, S::kSmem);
    if (err != cudaSuccess) return CudaStatus(err, "FP4 MMA kernel shared-memory attribute");
  }
  const dim3 grid((op.N + S::kBM - 1) / S::kBM, (max_tokens + S::kBN - 1) / S::kBN,
                  static_cast<unsigned>(c.layout.num_experts));
  kernel<<<grid, S::kThreads, S::kSmem, s>>>(c.layout, op, y);
  return LaunchStatus("FP4 grouped MMA kernel launch");
}

template <int kBlock, bool kPairs, typename Out>
Status Launch(const GemmChunk& c, const Operands& op, Out* y, cudaStream_t s) {
  if (c.small_groups > 0 && c.min_tokens <= Decode8::kMaxT_) {
    RETURN_IF_ERROR((LaunchShape<kBlock, kPairs, Decode8>(c, op, y, Decode8::kBN, s)));
  }
  if (c.small_groups > 0 && c.max_small_tokens >= Decode16::kMinT_) {
    RETURN_IF_ERROR((LaunchShape<kBlock, kPairs, Decode16>(c, op, y, Decode16::kBN, s)));
  }
  if (c.large_groups > 0) {
    RETURN_IF_ERROR((LaunchShape<kBlock, kPairs, Prefill>(c, op, y, c.max_tokens, s)));
  }
  return OkStatus();
}

template <typename Out>
Status LaunchFor(bool nv, bool pairs, const GemmChunk& c, const Operands& op, Out* y,
                 cudaStream_t s) {
  if (nv) return pairs ? Launch<16, true>(c, op, y, s) : Launch<16, false>(c, op, y, s);
  return pairs ? Launch<32, true>(c, op, y, s) : Launch<32, false>(c, op, y, s);
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
  const bool pairs = w.layout == Fp4CodeLayout::kMmaPairs;
  if (args.y_type == ElemType::kF32) {
    float* y = static_cast<float*>(args.y_dev) + y_off;
    return LaunchFor(nv, pairs, chunk, op, y, s);
  }
  uint16_t* y = static_cast<uint16_t*>(args.y_dev) + y_off;
  return LaunchFor(nv, pairs, chunk, op, y, s);
}

}  // namespace switchyard::cuda::internal
