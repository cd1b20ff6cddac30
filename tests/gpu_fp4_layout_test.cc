// The kMmaPairs code layout (kernels/cuda/fp4_code_layout.h): the host permutation and the decode
// arithmetic the kernel runs, checked on the host against an independent statement of the target
// bits (runs without a GPU), then the upload on the GPU (the bytes on the device are the permuted
// words) and the cuBLASLt path's refusal of the layout.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "kernels/cpu/fp4_gemm.h"
#include "kernels/cuda/fp4_code_layout.h"
#include "kernels/cuda/fp4_cuda.h"
#include "tests/gpu_fp4_util.h"

namespace switchyard {
namespace {

// BF16 bits of e2m1(code) * 2^-126: sign -> bit 15, exponent/mantissa bits -> bits 8..6.
uint32_t Target(uint32_t code) { return ((code >> 3) << 15) | ((code & 7u) << 6); }

uint32_t Decoded(uint32_t permuted, int p) {
  switch (p) {
    case 0:
      return cuda::pairs::PairBits<0>(permuted);
    case 1:
      return cuda::pairs::PairBits<1>(permuted);
    case 2:
      return cuda::pairs::PairBits<2>(permuted);
    default:
      return cuda::pairs::PairBits<3>(permuted);
  }
}

void CheckWord(uint32_t w) {
  const uint32_t q = cuda::pairs::PermuteWord(w);
  for (int p = 0; p < 4; ++p) {
    const uint32_t lo = (w >> (8 * p)) & 0xFu, hi = (w >> (8 * p + 4)) & 0xFu;
    ASSERT_EQ(Decoded(q, p), Target(lo) | (Target(hi) << 16))
        << "word 0x" << std::hex << w << " pair " << p;
  }
}

TEST(Fp4CodeLayoutTest, TargetBitsAreE2m1TimesTwoToMinus126) {
  for (uint32_t c = 0; c < 16; ++c) {
    const float bf16 = Bf16ToF32(static_cast<uint16_t>(Target(c)));
    EXPECT_EQ(bf16, fp4::E2m1ToF32(static_cast<uint8_t>(c)) * 0x1p-126f) << "code " << c;
  }
}

TEST(Fp4CodeLayoutTest, EveryCodeInEveryPositionDecodes) {
  std::mt19937 rng(5);
  for (int pos = 0; pos < 8; ++pos) {
    for (uint32_t c = 0; c < 16; ++c) {
      for (uint32_t others : {0x00000000u, 0xFFFFFFFFu, 0x88888888u, 0x77777777u,
                              static_cast<uint32_t>(rng()), static_cast<uint32_t>(rng())}) {
        const uint32_t w = (others & ~(0xFu << (4 * pos))) | (c << (4 * pos));
        CheckWord(w);
      }
    }
  }
  for (int i = 0; i < (1 << 18); ++i) CheckWord(static_cast<uint32_t>(rng()));
}

TEST(Fp4CodeLayoutTest, PermutationIsABijectionOfBits) {
  uint32_t seen = 0;
  for (int b = 0; b < 32; ++b) {
    const uint32_t q = cuda::pairs::PermuteWord(1u << b);
    ASSERT_EQ(__builtin_popcount(q), 1) << "bit " << b;
    seen |= q;
  }
  EXPECT_EQ(seen, 0xFFFFFFFFu);
}

TEST(Fp4CodeLayoutTest, UploadStoresPermutedWords) {
  SY_SKIP_WITHOUT_GPU();
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(24 * 48);
  for (float& v : w) v = normal(rng);
  auto q = cpu::QuantizeFp4(w.data(), 24, 48, cpu::Fp4Format::kNvFp4, "w");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  auto dw = cuda::UploadFp4ExpertWeights({&*q, &*q}, false, cuda::Fp4CodeLayout::kMmaPairs);
  ASSERT_TRUE(dw.ok()) << dw.status().ToString();
  EXPECT_EQ(dw->layout, cuda::Fp4CodeLayout::kMmaPairs);
  const std::vector<uint8_t> got = testing::ToHost<uint8_t>(dw->packed, 2 * q->packed.size());
  for (size_t e = 0; e < 2; ++e) {
    for (size_t i = 0; i < q->packed.size(); i += 4) {
      uint32_t host, dev;
      std::memcpy(&host, q->packed.data() + i, 4);
      std::memcpy(&dev, got.data() + e * q->packed.size() + i, 4);
      ASSERT_EQ(dev, cuda::pairs::PermuteWord(host)) << "expert " << e << " byte " << i;
    }
  }
}

}  // namespace
}  // namespace switchyard
