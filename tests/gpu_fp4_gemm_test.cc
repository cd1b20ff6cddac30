// Grouped FP4 expert GEMM on the GPU (kernels/cuda/fp4_cuda.h) against the CPU reference: FP64 dots
// of the CPU-dequantized weights with the BF16-rounded activations.
//
// Tolerance, per output: |gpu - ref| <= (2K + 8) * 2^-24 * sum_k |w_k x_k| (+ 2^-8 |ref| for a
// BF16 output). Why: the GPU's products e2m1 * block_scale * x are exact (at most 6 + 8
// significant bits), so its only errors are K FP32 additions (<= 2^-24 relative each under round
// to nearest; tensor cores may truncate, hence 2 per addition) and the final global-scale multiply;
// the reference's dequantized weights carry one FP32 rounding of (scale * global) * e2m1 (<= 2
// units of 2^-24). A wrong index, scale or expert shifts results by O(|w x|), far above this.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/fp4_gemm.h"
#include "kernels/cuda/fp4_cuda.h"
#include "kernels/fp4_format.h"
#include "tests/gpu_fp4_util.h"

namespace switchyard {
namespace {

using testing::ToDevice;
using testing::ToHost;

struct Problem {
  cpu::Fp4Format format = cpu::Fp4Format::kNvFp4;
  int64_t n = 64, k = 128;
  std::vector<int64_t> tokens;  // per expert
  cuda::ElemType out = cuda::ElemType::kF32;
  cuda::Fp4GemmPath path = cuda::Fp4GemmPath::kDequantBf16;
};

std::unique_ptr<cuda::Fp4GemmContext> MakeContext() {
  auto ctx = cuda::CreateFp4GemmContext();
  EXPECT_TRUE(ctx.ok()) << ctx.status().ToString();
  return ctx.ok() ? std::move(ctx).value() : nullptr;
}

// Activations as the reference sees them: the BF16 values, or (cuBLASLt path) those values after
// NVFP4 quantization with the global scale from their amax, as the device does.
std::vector<float> ReferenceActivations(const std::vector<uint16_t>& x_bf16, int64_t k,
                                        bool nvfp4) {
  std::vector<float> x(x_bf16.size());
  for (size_t i = 0; i < x.size(); ++i) x[i] = Bf16ToF32(x_bf16[i]);
  if (!nvfp4) return x;
  float amax = 0.0f;
  for (float v : x) amax = std::max(amax, std::fabs(v));
  const float gs = fp4::NvFp4GlobalScale(amax);
  std::vector<uint8_t> packed(k / 2), scales(k / 16);
  for (size_t r = 0; r < x.size() / k; ++r) {
    fp4::NvFp4QuantizeRow(x.data() + r * k, k, gs, packed.data(), scales.data());
    fp4::NvFp4DequantizeRow(packed.data(), scales.data(), k, gs, x.data() + r * k);
  }
  return x;
}

void RunProblemIn(cuda::Fp4GemmContext& ctx, const Problem& p, uint32_t seed,
                  cuda::Fp4CodeLayout layout) {
  SCOPED_TRACE(std::string(cpu::Fp4FormatName(p.format)) + " N=" + std::to_string(p.n) +
               " K=" + std::to_string(p.k) + " experts=" + std::to_string(p.tokens.size()) +
               " path=" + cuda::Fp4GemmPathName(p.path) +
               " layout=" + (layout == cuda::Fp4CodeLayout::kMmaPairs ? "mma-pairs" : "packed"));
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t experts = static_cast<int64_t>(p.tokens.size());
  std::vector<cpu::Fp4Weight> weights;
  std::vector<const cpu::Fp4Weight*> ptrs;
  std::vector<std::vector<float>> deq;
  for (int64_t e = 0; e < experts; ++e) {
    std::vector<float> w(p.n * p.k);
    const float amp = std::ldexp(1.0f, static_cast<int>(e % 7) - 3);  // per-expert global scales
    for (float& v : w) v = amp * normal(rng);
    auto q = cpu::QuantizeFp4(w.data(), p.n, p.k, p.format, "expert");
    ASSERT_TRUE(q.ok()) << q.status().ToString();
    weights.push_back(std::move(q).value());
    deq.push_back(cpu::DequantizeFp4(weights.back()));
  }
  for (const auto& w : weights) ptrs.push_back(&w);
  std::vector<int64_t> offsets = {0};
  for (int64_t t : p.tokens) offsets.push_back(offsets.back() + t);
  const int64_t total = offsets.back();
  std::vector<uint16_t> x_bf16(total * p.k);
  for (auto& v : x_bf16) v = F32ToBf16(normal(rng));
  const bool maybe_lt = p.path != cuda::Fp4GemmPath::kDequantBf16;
  auto dw = cuda::UploadFp4ExpertWeights(ptrs, /*with_swizzled_scales=*/maybe_lt, layout);
  ASSERT_TRUE(dw.ok()) << dw.status().ToString();
  cuda::DeviceBuffer x_dev = ToDevice(x_bf16);
  const int64_t out_elem = p.out == cuda::ElemType::kF32 ? 4 : 2;
  auto y_dev = cuda::DeviceBuffer::Alloc(std::max<int64_t>(1, total * p.n * out_elem), "y");
  ASSERT_TRUE(y_dev.ok());
  ASSERT_TRUE(y_dev->Fill(0xFF).ok());  // NaN everywhere: an unwritten output cannot pass
  cuda::Fp4GroupedGemmArgs args;
  args.x_dev = x_dev.as<uint16_t>();
  args.total_tokens = total;
  args.expert_offsets = offsets.data();
  args.weights = &*dw;
  args.y_dev = y_dev->data();
  args.y_type = p.out;
  args.path = p.path;
  cuda::Fp4GemmPath used = cuda::Fp4GemmPath::kAuto;
  const Status s = cuda::Fp4GroupedGemm(ctx, args, &used);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(cuda::SynchronizeStream(nullptr, "grouped GEMM").ok());
  if (p.path == cuda::Fp4GemmPath::kAuto) {
    const bool lt_eligible = ctx.compute_capability() >= 100 &&
                             p.format == cpu::Fp4Format::kNvFp4 && p.k % 32 == 0 && p.n % 16 == 0;
    // kAuto may fall back from cuBLASLt (no algorithm), never the other way round.
    if (!lt_eligible) {
      EXPECT_EQ(used, cuda::Fp4GemmPath::kDequantBf16);
    }
    EXPECT_NE(used, cuda::Fp4GemmPath::kAuto);
  } else {
    EXPECT_EQ(used, p.path);
  }
  const std::vector<float> x =
      ReferenceActivations(x_bf16, p.k, used == cuda::Fp4GemmPath::kCublasLtNvFp4);
  std::vector<float> y(total * p.n);
  if (p.out == cuda::ElemType::kF32) {
    y = ToHost<float>(*y_dev, y.size());
  } else {
    const auto yb = ToHost<uint16_t>(*y_dev, y.size());
    for (size_t i = 0; i < y.size(); ++i) y[i] = Bf16ToF32(yb[i]);
  }
  int failures = 0;
  for (int64_t e = 0; e < experts; ++e) {
    for (int64_t t = offsets[e]; t < offsets[e + 1]; ++t) {
      for (int64_t n = 0; n < p.n; ++n) {
        double ref = 0.0, mag = 0.0;
        for (int64_t k = 0; k < p.k; ++k) {
          const double prod = static_cast<double>(deq[e][n * p.k + k]) * x[t * p.k + k];
          ref += prod;
          mag += std::fabs(prod);
        }
        double tol = (2.0 * p.k + 8.0) * 0x1p-24 * mag;
        if (p.out == cuda::ElemType::kBf16) tol += 0x1p-8 * std::fabs(ref);
        const double got = y[t * p.n + n];
        if (!(std::fabs(got - ref) <= tol) && failures++ < 8) {
          ADD_FAILURE() << "expert " << e << " token " << t << " row " << n << ": gpu " << got
                        << " ref " << ref << " tol " << tol;
        }
      }
    }
  }
  EXPECT_EQ(failures, 0);
}

// The dequant path runs in both code layouts; the others take the packed one only.
void RunProblem(cuda::Fp4GemmContext& ctx, const Problem& p, uint32_t seed) {
  RunProblemIn(ctx, p, seed, cuda::Fp4CodeLayout::kPacked);
  if (p.path == cuda::Fp4GemmPath::kDequantBf16) {
    RunProblemIn(ctx, p, seed, cuda::Fp4CodeLayout::kMmaPairs);
  }
}

const cpu::Fp4Format kFormats[] = {cpu::Fp4Format::kNvFp4, cpu::Fp4Format::kMxFp4};

TEST(GpuFp4GemmTest, DecodeGroups) {  // 1..16 tokens per expert: the decode tiles
  SY_SKIP_WITHOUT_GPU();
  auto ctx = MakeContext();
  ASSERT_TRUE(ctx);
  for (auto f : kFormats) {
    for (auto out : {cuda::ElemType::kF32, cuda::ElemType::kBf16}) {
      RunProblem(*ctx, {f, 96, 1024, {1, 4, 16, 0, 7, 16, 2}, out}, 11);
    }
  }
}

// 1..8 and 9..16 tokens (two kernel shapes), partial 64-row tiles, K past whole 256-column
// stages; K = 1000 leaves NVFP4 code rows only 8-byte aligned (504 bytes) and scale rows odd (63).
TEST(GpuFp4GemmTest, DecodeTileEdges) {
  SY_SKIP_WITHOUT_GPU();
  auto ctx = MakeContext();
  ASSERT_TRUE(ctx);
  for (auto f : kFormats) {
    RunProblem(*ctx, {f, 136, 2080, {8, 9, 5, 12, 1, 0, 15}, cuda::ElemType::kF32}, 21);
    RunProblem(*ctx, {f, 130, 1000, {3, 16, 10}, cuda::ElemType::kBf16}, 22);
  }
}

TEST(GpuFp4GemmTest, PrefillTileEdges) {  // several 128-token tiles, K not a multiple of 128
  SY_SKIP_WITHOUT_GPU();
  auto ctx = MakeContext();
  ASSERT_TRUE(ctx);
  for (auto f : kFormats) {
    RunProblem(*ctx, {f, 144, 352, {300, 0, 129, 17, 4}, cuda::ElemType::kF32}, 23);
    RunProblem(*ctx, {f, 72, 1056, {140}, cuda::ElemType::kBf16}, 24);
  }
}

TEST(GpuFp4GemmTest, PrefillGroups) {  // > 16 tokens: the tensor-core kernel, partial tiles
  SY_SKIP_WITHOUT_GPU();
  auto ctx = MakeContext();
  ASSERT_TRUE(ctx);
  for (auto f : kFormats) {
    RunProblem(*ctx, {f, 200, 512, {17, 0, 130, 64, 1}, cuda::ElemType::kF32}, 12);
    RunProblem(*ctx, {f, 64, 256, {200}, cuda::ElemType::kBf16}, 13);
  }
}

TEST(GpuFp4GemmTest, OddShapes) {  // K not a multiple of the block (zero-padded), N odd
  SY_SKIP_WITHOUT_GPU();
  auto ctx = MakeContext();
  ASSERT_TRUE(ctx);
  for (auto f : kFormats) {
    RunProblem(*ctx, {f, 37, 200, {0, 1, 3, 33, 0}, cuda::ElemType::kF32}, 14);
    RunProblem(*ctx, {f, 5, 7, {2, 20}, cuda::ElemType::kF32}, 15);
    RunProblem(*ctx, {f, 16, 1000, {0, 0, 0}, cuda::ElemType::kF32}, 16);  // no tokens at all
  }
}

TEST(GpuFp4GemmTest, ManyExperts) {  // more experts than one launch carries (256)
  SY_SKIP_WITHOUT_GPU();
  auto ctx = MakeContext();
  ASSERT_TRUE(ctx);
  std::vector<int64_t> tokens;
  for (int e = 0; e < 300; ++e) tokens.push_back(e % 5 == 0 ? 0 : (e % 23 == 0 ? 40 : e % 4 + 1));
  RunProblem(*ctx, {cpu::Fp4Format::kNvFp4, 32, 64, tokens, cuda::ElemType::kF32}, 17);
}

TEST(GpuFp4GemmTest, AutoPathMatchesCapability) {
  SY_SKIP_WITHOUT_GPU();
  auto ctx = MakeContext();
  ASSERT_TRUE(ctx);
  for (auto f : kFormats) {  // MXFP4 always takes the dequant path; NVFP4 cuBLASLt on CC >= 10
    RunProblem(*ctx, {f, 32, 64, {3, 20}, cuda::ElemType::kF32, cuda::Fp4GemmPath::kAuto}, 18);
  }
}

TEST(GpuFp4GemmTest, RejectsBadOffsets) {
  SY_SKIP_WITHOUT_GPU();
  auto ctx = MakeContext();
  ASSERT_TRUE(ctx);
  std::vector<float> w(32 * 32, 0.5f);
  auto q = cpu::QuantizeFp4(w.data(), 32, 32, cpu::Fp4Format::kNvFp4, "w");
  ASSERT_TRUE(q.ok());
  auto dw = cuda::UploadFp4ExpertWeights({&*q, &*q}, false);
  ASSERT_TRUE(dw.ok());
  const int64_t offsets[] = {0, 5, 3};
  cuda::Fp4GroupedGemmArgs args;
  args.total_tokens = 3;
  args.expert_offsets = offsets;
  args.weights = &*dw;
  const Status s = cuda::Fp4GroupedGemm(*ctx, args);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("decrease at expert 1"), std::string::npos) << s.message();
}

TEST(GpuFp4GemmTest, BlackwellCublasLt) {
  SY_SKIP_WITHOUT_GPU();
  auto ctx = MakeContext();
  ASSERT_TRUE(ctx);
  if (ctx->compute_capability() < 100) {
    GTEST_SKIP() << "compute capability " << ctx->compute_capability() / 10 << "."
                 << ctx->compute_capability() % 10 << " < 10.0: no cuBLASLt NVFP4 path";
  }
  for (auto out : {cuda::ElemType::kF32, cuda::ElemType::kBf16}) {
    RunProblem(*ctx,
               {cpu::Fp4Format::kNvFp4,
                256,
                512,
                {1, 0, 16, 130, 7},
                out,
                cuda::Fp4GemmPath::kCublasLtNvFp4},
               19);
  }
  RunProblem(*ctx,
             {cpu::Fp4Format::kNvFp4,
              128,
              2048,
              {300},
              cuda::ElemType::kF32,
              cuda::Fp4GemmPath::kCublasLtNvFp4},
             20);
}

}  // namespace
}  // namespace switchyard
