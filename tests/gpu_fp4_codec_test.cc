// GPU FP4 codec (kernels/cuda/fp4_cuda.h) against the CPU codec (kernels/fp4_format.h): bytes and
// dequantized values bit-exact over special values and millions of random inputs, every format.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "kernels/cuda/fp4_cuda.h"
#include "kernels/fp4_format.h"
#include "tests/gpu_fp4_util.h"

namespace switchyard {
namespace {

using testing::SameFloat;
using testing::ToDevice;
using testing::ToHost;

// Specials in every position of a block, then random values of several kinds: random bit
// patterns (NaN, inf, subnormals included), normal values over wide exponent ranges, values at
// E2M1 rounding ties of a unit scale, and whole-zero blocks.
std::vector<float> CodecInputs(int64_t n, uint32_t seed) {
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> specials = {0.0f,      -0.0f,
                                       0.25f,     -0.25f,
                                       0.75f,     1.25f,
                                       1.75f,     2.5f,
                                       3.5f,      5.0f,
                                       -5.0f,     6.0f,
                                       7.0f,      448.0f,
                                       449.0f,    1e-40f,
                                       -1e-45f,   1e30f,
                                       -1e38f,    inf,
                                       -inf,      std::numeric_limits<float>::quiet_NaN(),
                                       0x1p-126f, 0x1p-10f,
                                       0x1p-9f,   3.4e38f};
  std::vector<float> x;
  x.reserve(n);
  for (float s : specials) {
    for (int i = 0; i < 32; ++i) x.push_back(i % 5 == 0 ? s : 0.1f * static_cast<float>(i));
  }
  std::mt19937 rng(seed);
  std::uniform_int_distribution<uint32_t> bits;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exp(-40, 40);
  while (static_cast<int64_t>(x.size()) < n) {
    const int kind = static_cast<int>(x.size() / 32 % 4);
    for (int i = 0; i < 32; ++i) {
      float v = 0.0f;
      if (kind == 0) {
        const uint32_t u = bits(rng);
        std::memcpy(&v, &u, sizeof v);
      } else if (kind == 1) {
        v = std::ldexp(normal(rng), exp(rng));
      } else if (kind == 2) {
        v = 0.25f * static_cast<float>(static_cast<int>(bits(rng) % 49) - 24);  // ties of E2M1
      }
      x.push_back(v);
    }
  }
  x.resize(n);
  return x;
}

struct CodecCase {
  cpu::Fp4Format format;
  fp4::MxScaleRule rule;
  float global_scale;
  cuda::ElemType type;
};

void CheckCodec(const CodecCase& c, int64_t rows, int64_t cols, uint32_t seed) {
  std::vector<float> x = CodecInputs(rows * cols, seed);
  std::vector<uint16_t> x_bf16;
  if (c.type == cuda::ElemType::kBf16) {
    for (float& v : x) {
      x_bf16.push_back(F32ToBf16(v));
      v = Bf16ToF32(x_bf16.back());  // the CPU sees exactly the BF16 values
    }
  }
  const int block = cpu::Fp4BlockSize(c.format);
  const bool nv = c.format == cpu::Fp4Format::kNvFp4;
  std::vector<uint8_t> packed(rows * cols / 2), scales(rows * cols / block);
  std::vector<float> deq(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data() + r * cols;
    uint8_t* p = packed.data() + r * cols / 2;
    uint8_t* s = scales.data() + r * cols / block;
    if (nv) {
      fp4::NvFp4QuantizeRow(xr, cols, c.global_scale, p, s);
      fp4::NvFp4DequantizeRow(p, s, cols, c.global_scale, deq.data() + r * cols);
    } else {
      fp4::MxFp4QuantizeRow(xr, cols, p, s, c.rule);
      fp4::MxFp4DequantizeRow(p, s, cols, deq.data() + r * cols);
    }
  }
  cuda::DeviceBuffer x_dev = c.type == cuda::ElemType::kF32 ? ToDevice(x) : ToDevice(x_bf16);
  auto p_dev = cuda::DeviceBuffer::Alloc(packed.size(), "packed");
  auto s_dev = cuda::DeviceBuffer::Alloc(scales.size(), "scales");
  auto d_dev = cuda::DeviceBuffer::Alloc(deq.size() * sizeof(float), "dequantized");
  ASSERT_TRUE(p_dev.ok() && s_dev.ok() && d_dev.ok());
  ASSERT_TRUE(cuda::Fp4QuantizeRows(x_dev.data(), c.type, rows, cols, c.format, c.global_scale,
                                    c.rule, p_dev->as<uint8_t>(), s_dev->as<uint8_t>(), nullptr)
                  .ok());
  ASSERT_TRUE(cuda::Fp4DequantizeRows(p_dev->as<uint8_t>(), s_dev->as<uint8_t>(), rows, cols,
                                      c.format, c.global_scale, d_dev->as<float>(), nullptr)
                  .ok());
  ASSERT_TRUE(cuda::SynchronizeStream(nullptr, "codec test").ok());
  const auto gp = ToHost<uint8_t>(*p_dev, packed.size());
  const auto gs = ToHost<uint8_t>(*s_dev, scales.size());
  const auto gd = ToHost<float>(*d_dev, deq.size());
  int64_t bad = 0;
  for (size_t i = 0; i < packed.size() && bad < 10; ++i) {
    if (gp[i] != packed[i]) {
      ADD_FAILURE() << "packed byte " << i << ": gpu " << int{gp[i]} << " cpu " << int{packed[i]};
      ++bad;
    }
  }
  for (size_t i = 0; i < scales.size() && bad < 10; ++i) {
    if (gs[i] != scales[i]) {
      ADD_FAILURE() << "scale " << i << ": gpu " << int{gs[i]} << " cpu " << int{scales[i]};
      ++bad;
    }
  }
  for (size_t i = 0; i < deq.size() && bad < 10; ++i) {
    if (!SameFloat(gd[i], deq[i])) {
      ADD_FAILURE() << "dequantized " << i << ": gpu " << gd[i] << " cpu " << deq[i];
      ++bad;
    }
  }
}

constexpr int64_t kRows = 1024, kCols = 2048;  // 2M values per case

TEST(GpuFp4CodecTest, NvFp4FromF32) {
  SY_SKIP_WITHOUT_GPU();
  for (float gs : {1.0f, fp4::NvFp4GlobalScale(6.0f), 3.0e-7f, 1.0e30f}) {
    CheckCodec({cpu::Fp4Format::kNvFp4, fp4::MxScaleRule::kFloor, gs, cuda::ElemType::kF32}, kRows,
               kCols, 1);
  }
}

TEST(GpuFp4CodecTest, NvFp4FromBf16) {
  SY_SKIP_WITHOUT_GPU();
  CheckCodec({cpu::Fp4Format::kNvFp4, fp4::MxScaleRule::kFloor, 0.01f, cuda::ElemType::kBf16},
             kRows, kCols, 2);
}

TEST(GpuFp4CodecTest, MxFp4BothRules) {
  SY_SKIP_WITHOUT_GPU();
  for (auto rule : {fp4::MxScaleRule::kFloor, fp4::MxScaleRule::kRceil}) {
    CheckCodec({cpu::Fp4Format::kMxFp4, rule, 1.0f, cuda::ElemType::kF32}, kRows, kCols, 3);
    CheckCodec({cpu::Fp4Format::kMxFp4, rule, 1.0f, cuda::ElemType::kBf16}, kRows / 4, kCols, 4);
  }
}

TEST(GpuFp4CodecTest, RejectsBadShapes) {
  SY_SKIP_WITHOUT_GPU();
  const Status s =
      cuda::Fp4QuantizeRows(nullptr, cuda::ElemType::kF32, 2, 24, cpu::Fp4Format::kNvFp4, 1.0f,
                            fp4::MxScaleRule::kFloor, nullptr, nullptr, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("multiple of 16"), std::string::npos) << s.message();
  const Status g =
      cuda::Fp4QuantizeRows(nullptr, cuda::ElemType::kF32, 2, 32, cpu::Fp4Format::kNvFp4, 0.0f,
                            fp4::MxScaleRule::kFloor, nullptr, nullptr, nullptr);
  EXPECT_EQ(g.code(), StatusCode::kInvalidArgument) << g.ToString();
}

}  // namespace
}  // namespace switchyard
