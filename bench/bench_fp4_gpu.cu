// bench_fp4_gpu: the grouped FP4 expert GEMM (kernels/cuda/fp4_cuda.h) against baselines measured
// in the same run on the same GPU:
//   decode  (1, 4, 16 tokens per expert): FP4 weight bytes (codes + block scales) read per second
//           as a ratio of HBM READ bandwidth (a kernel sum-reducing a 2 GiB buffer with 16-byte
//           loads, the fair ceiling of a weight-streaming kernel); also printed: the ratio to
//           device-to-device copy bandwidth, counted as bytes READ + WRITTEN per second by
//           cudaMemcpyAsync (the HBM traffic of a copy);
//   prefill (128, 512 tokens per expert): TFLOP/s (2*T*N*K per expert) as a ratio of cuBLAS BF16
//           (cublasGemmStridedBatchedEx, BF16 in/out, FP32 compute) on the same shapes.
// Expert shapes [N, K] = [2048, 7168] and [7168, 2048], 32 and 256 experts, NVFP4 weights, BF16
// activations and output, path kAuto (cuBLASLt NVFP4 on CC >= 10.0, else dequant-BF16; there
// each case runs with the weights in both code layouts, packed and mma-pairs, JSON field layout).
// Weights and activations are random device data (valid codes and scales, finite values).
//
//   bench_fp4_gpu [--json] [--quick]
// --json: one JSON line per case; --quick: 32 experts only.
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"
#include "kernels/cuda/fp4_cuda.h"

namespace switchyard {
namespace {

#define BENCH_CHECK(expr)                                                                        \
  do {                                                                                           \
    const cudaError_t e_ = (expr);                                                               \
    if (e_ != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

void CheckStatus(const Status& s, const char* what) {
  if (!s.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, s.ToString().c_str());
    std::exit(1);
  }
}

// Random bytes (a hash of the index), optionally mapped into [lo, lo + span).
__global__ void FillBytes(uint8_t* p, int64_t n, uint32_t seed, int lo, int span) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = static_cast<uint8_t>(span > 0 ? lo + static_cast<int>(h % span) : h);
  }
}

// BF16 values in about [-1, 1): random mantissa, exponent 126 or 125 (sign random).
__global__ void FillBf16(uint16_t* p, int64_t n, uint32_t seed) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    h ^= h >> 16;
    h *= 2246822519u;
    p[i] = static_cast<uint16_t>((h & 0x807Fu) | (h & 0x100u ? 0x3F00u : 0x3E80u));
  }
}

void Fill(void* p, int64_t n, uint32_t seed, int lo = 0, int span = 0) {
  FillBytes<<<1024, 256>>>(static_cast<uint8_t*>(p), n, seed, lo, span);
  BENCH_CHECK(cudaGetLastError());
}

float TimeMs(cudaStream_t s, int iters, const std::function<void()>& fn) {
  cudaEvent_t a, b;
  BENCH_CHECK(cudaEventCreate(&a));
  BENCH_CHECK(cudaEventCreate(&b));
  fn();  // warm-up
  BENCH_CHECK(cudaEventRecord(a, s));
  for (int i = 0; i < iters; ++i) fn();
  BENCH_CHECK(cudaEventRecord(b, s));
  BENCH_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  BENCH_CHECK(cudaEventElapsedTime(&ms, a, b));
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return ms / iters;
}

// Copy bandwidth, bytes read + written per second (GB/s), 1 GiB, best of 3 averages.
double CopyGBs(cudaStream_t s) {
  const int64_t bytes = int64_t{1} << 30;
  void *src, *dst;
  BENCH_CHECK(cudaMalloc(&src, bytes));
  BENCH_CHECK(cudaMalloc(&dst, bytes));
  Fill(src, bytes, 1);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const float ms = TimeMs(
        s, 5, [&] { BENCH_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s)); });
    best = std::max(best, 2.0 * bytes / (ms * 1e-3) / 1e9);
  }
  cudaFree(src);
  cudaFree(dst);
  return best;
}

// Read-only streaming: each thread sums 16-byte words (4 independent loads in flight per
// iteration), one partial sum per block written so that the loads cannot be dropped.
__global__ void ReadSum(const uint4* __restrict__ p, int64_t n, uint32_t* out) {
  uint32_t acc = 0;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    uint4 v[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) v[u] = __ldg(p + i + u * stride);
#pragma unroll
    for (int u = 0; u < 4; ++u) acc += v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
  }
  for (; i < n; i += stride) {
    const uint4 v = __ldg(p + i);
    acc += v.x ^ v.y ^ v.z ^ v.w;
  }
  __shared__ uint32_t red[32];
  for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xFFFFFFFFu, acc, off);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint32_t s = 0;
    for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) s += red[w];
    out[blockIdx.x] = s;
  }
}

// HBM read bandwidth (GB/s): ReadSum over 2 GiB, best of 3 averages of 5 runs.
double ReadGBs(cudaStream_t s) {
  const int64_t bytes = int64_t{2} << 30;
  int sms = 0;
  BENCH_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  const int blocks = sms * 8;
  void* src;
  uint32_t* out;
  BENCH_CHECK(cudaMalloc(&src, bytes));
  BENCH_CHECK(cudaMalloc(&out, blocks * sizeof(uint32_t)));
  Fill(src, bytes, 7);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    const float ms = TimeMs(s, 5, [&] {
      ReadSum<<<blocks, 256, 0, s>>>(static_cast<const uint4*>(src), bytes / 16, out);
      BENCH_CHECK(cudaGetLastError());
    });
    best = std::max(best, bytes / (ms * 1e-3) / 1e9);
  }
  cudaFree(src);
  cudaFree(out);
  return best;
}

struct Ctx {
  bool json = false;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cuda::Fp4GemmContext* fp4 = nullptr;
  double copy_gbs = 0, read_gbs = 0;
  std::string device;
};

void RunConfig(Ctx& c, int64_t n, int64_t k, int64_t experts) {
  // FP4 weights: random codes, E4M3 scales in [0x30, 0x40) (0.5 .. ~0.94), global scale 1.
  cuda::Fp4ExpertWeights w;
  w.format = cpu::Fp4Format::kNvFp4;
  w.num_experts = experts;
  w.rows = n;
  w.cols = k;
  w.padded_cols = k;
  const int64_t packed_bytes = experts * n * k / 2, scale_bytes = experts * n * k / 16;
  auto alloc = [](int64_t bytes, const char* what) {
    auto b = cuda::DeviceBuffer::Alloc(bytes, what);
    CheckStatus(b.status(), what);
    return std::move(b).value();
  };
  w.packed = alloc(packed_bytes, "packed");
  w.scales = alloc(scale_bytes, "scales");
  Fill(w.packed.data(), packed_bytes, 2);
  Fill(w.scales.data(), scale_bytes, 3, 0x30, 16);
  w.host_global_scales.assign(experts, 1.0f);
  auto gs = cuda::DeviceBuffer::FromHost(w.host_global_scales.data(), experts * 4, "global scales");
  CheckStatus(gs.status(), "global scales");
  w.global_scales = std::move(gs).value();
  if (c.fp4->compute_capability() >= 100) {  // Blackwell: the scale layout cuBLASLt reads
    const int64_t sw = experts * ((n + 127) / 128 * 128) * ((k / 16 + 3) / 4 * 4);
    w.swizzled_scales = alloc(sw, "swizzled scales");
    Fill(w.swizzled_scales.data(), sw, 4, 0x30, 16);
    w.swizzled = true;
  }
  const int64_t max_tokens = 512;
  cuda::DeviceBuffer x = alloc(experts * max_tokens * k * 2, "x");
  cuda::DeviceBuffer y = alloc(experts * max_tokens * n * 2, "y");
  FillBf16<<<1024, 256>>>(x.as<uint16_t>(), experts * max_tokens * k, 5);
  BENCH_CHECK(cudaGetLastError());
  cuda::DeviceBuffer wb;  // BF16 weights for the cuBLAS baseline (prefill only)
  wb = alloc(experts * n * k * 2, "bf16 weights");
  FillBf16<<<1024, 256>>>(wb.as<uint16_t>(), experts * n * k, 6);
  BENCH_CHECK(cudaDeviceSynchronize());

  // Random codes are valid words in either code layout. Hopper (no cuBLASLt path) runs both.
  std::vector<cuda::Fp4CodeLayout> layouts = {cuda::Fp4CodeLayout::kPacked};
  if (c.fp4->compute_capability() < 100) layouts.push_back(cuda::Fp4CodeLayout::kMmaPairs);
  // Layouts alternate per token count, so that both see the same clocks and temperature.
  for (int64_t t : {1, 4, 16, 128, 512}) {
    for (const cuda::Fp4CodeLayout layout : layouts) {
      w.layout = layout;
      const char* layout_name = layout == cuda::Fp4CodeLayout::kPacked ? "packed" : "mma-pairs";
      std::vector<int64_t> offsets(experts + 1);
      for (int64_t e = 0; e <= experts; ++e) offsets[e] = e * t;
      cuda::Fp4GroupedGemmArgs args;
      args.x_dev = x.as<uint16_t>();
      args.total_tokens = experts * t;
      args.expert_offsets = offsets.data();
      args.weights = &w;
      args.y_dev = y.data();
      args.y_type = cuda::ElemType::kBf16;
      args.stream = c.stream;
      cuda::Fp4GemmPath used = cuda::Fp4GemmPath::kAuto;
      const bool decode = t <= 16;
      const int iters = decode ? 20 : 5;
      const float ms = TimeMs(c.stream, iters, [&] {
        CheckStatus(cuda::Fp4GroupedGemm(*c.fp4, args, &used), "Fp4GroupedGemm");
      });
      CheckStatus(cuda::SynchronizeStream(c.stream, "bench"), "bench");
      const double flops = 2.0 * experts * t * n * k;
      const double tflops = flops / (ms * 1e-3) / 1e12;
      const double weight_gbs = (packed_bytes + scale_bytes) / (ms * 1e-3) / 1e9;
      double base = 0, ratio = 0;
      if (decode) {
        base = c.read_gbs;
        ratio = weight_gbs / c.read_gbs;
      } else {
        const float alpha = 1.0f, beta = 0.0f;
        const float bms = TimeMs(c.stream, iters, [&] {
          const cublasStatus_t st = cublasGemmStridedBatchedEx(
              c.blas, CUBLAS_OP_T, CUBLAS_OP_N, n, t, k, &alpha, wb.data(), CUDA_R_16BF, k, n * k,
              x.data(), CUDA_R_16BF, k, t * k, &beta, y.data(), CUDA_R_16BF, n, t * n, experts,
              CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
          if (st != CUBLAS_STATUS_SUCCESS) {
            std::fprintf(stderr, "cublasGemmStridedBatchedEx: status %d\n", static_cast<int>(st));
            std::exit(1);
          }
        });
        base = flops / (bms * 1e-3) / 1e12;
        ratio = tflops / base;
      }
      const char* kind = decode ? "decode" : "prefill";
      if (c.json) {
        std::printf(
            "{\"bench\":\"fp4_gpu\",\"device\":\"%s\",\"case\":\"%s\",\"n\":%lld,\"k\":%lld,"
            "\"experts\":%lld,\"tokens_per_expert\":%lld,\"path\":\"%s\",\"layout\":\"%s\","
            "\"ms\":%.4f,"
            "\"tflops\":%.2f,\"weight_gbs\":%.1f,\"baseline\":\"%s\",\"baseline_value\":%.2f,"
            "\"ratio\":%.3f,\"copy_gbs\":%.1f,\"ratio_copy\":%.3f}\n",
            c.device.c_str(), kind, static_cast<long long>(n), static_cast<long long>(k),
            static_cast<long long>(experts), static_cast<long long>(t), cuda::Fp4GemmPathName(used),
            layout_name, ms, tflops, weight_gbs, decode ? "read_gbs" : "cublas_bf16_tflops", base,
            ratio, c.copy_gbs, weight_gbs / c.copy_gbs);
      } else {
        std::printf("%-7s [%5lld x %5lld] x %3lld experts, %3lld tok/expert  %-14s %-9s %8.3f ms  ",
                    kind, static_cast<long long>(n), static_cast<long long>(k),
                    static_cast<long long>(experts), static_cast<long long>(t),
                    cuda::Fp4GemmPathName(used), layout_name, ms);
        if (decode) {
          std::printf("%7.1f GB/s weights = %.2fx read (%.0f GB/s), %.2fx copy r+w\n", weight_gbs,
                      ratio, base, weight_gbs / c.copy_gbs);
        } else {
          std::printf("%7.1f TFLOP/s = %.2fx cuBLAS BF16 (%.1f TFLOP/s)\n", tflops, ratio, base);
        }
      }
      std::fflush(stdout);
    }
  }
}

int Main(int argc, char** argv) {
  Ctx c;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0) {
      c.json = true;
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: bench_fp4_gpu [--json] [--quick]\n");
      return 2;
    }
  }
  std::string why;
  if (cuda::DeviceCount(&why) == 0) {
    std::fprintf(stderr, "bench_fp4_gpu: no GPU: %s\n", why.c_str());
    return 1;
  }
  cudaDeviceProp prop;
  BENCH_CHECK(cudaGetDeviceProperties(&prop, 0));
  c.device = prop.name;
  BENCH_CHECK(cudaStreamCreate(&c.stream));
  if (cublasCreate(&c.blas) != CUBLAS_STATUS_SUCCESS) {
    std::fprintf(stderr, "cublasCreate failed\n");
    return 1;
  }
  cublasSetStream(c.blas, c.stream);
  auto fp4 = cuda::CreateFp4GemmContext();
  CheckStatus(fp4.status(), "CreateFp4GemmContext");
  c.fp4 = fp4->get();
  c.copy_gbs = CopyGBs(c.stream);
  c.read_gbs = ReadGBs(c.stream);
  if (!c.json) {
    std::printf(
        "bench_fp4_gpu on %s (CC %d.%d): HBM read %.0f GB/s, device copy %.0f GB/s (read + "
        "written)\n",
        prop.name, prop.major, prop.minor, c.read_gbs, c.copy_gbs);
  }
  for (int64_t experts : {32, 256}) {
    if (quick && experts > 32) continue;
    RunConfig(c, 2048, 7168, experts);
    RunConfig(c, 7168, 2048, experts);
  }
  cublasDestroy(c.blas);
  return 0;
}

}  // namespace
}  // namespace switchyard

int main(int argc, char** argv) { return switchyard::Main(argc, argv); }
