// Bit-exact tests of the FP4 codec (kernels/fp4_format.h): the values specs.md §1 gives
// (normative), the CUDA toolkit's host-callable converters from cuda_fp4.h / cuda_fp8.h over ~10.4
// million inputs per format (when the headers are found; SWITCHYARD_HAVE_CUDA_FP_HEADERS), and
// NVFP4 / MXFP4 block round trips. The second independent implementation, ml_dtypes, is checked by
// fp4_ml_dtypes_check.py on the same inputs.
#include "kernels/fp4_format.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "tests/fp4_test_inputs.h"

#if SWITCHYARD_HAVE_CUDA_FP_HEADERS
#include <cuda_fp4.h>
#include <cuda_fp8.h>
#endif

namespace switchyard::fp4 {
namespace {

using fp4_test::FromBits;

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

const std::vector<float>& Inputs() {
  static const std::vector<float> inputs = fp4_test::AllInputs();
  return inputs;
}

// Counts inputs where ours(x) != theirs(x); prints the first few; returns the number checked.
template <typename Ours, typename Theirs>
size_t ExpectSameCodes(const char* what, Ours ours, Theirs theirs) {
  size_t bad = 0;
  for (float x : Inputs()) {
    const unsigned a = ours(x), b = theirs(x);
    if (a != b && ++bad <= 10) {
      ADD_FAILURE() << what << ": x=" << x << " (bits 0x" << std::hex << Bits(x) << ") ours 0x" << a
                    << " reference 0x" << b << std::dec;
    }
  }
  EXPECT_EQ(bad, 0u) << what;
  std::printf("%s: %zu inputs compared, %zu differ\n", what, Inputs().size(), bad);
  return Inputs().size();
}

// ---- Normative values from specs.md §1
// -----------------------------------------------------------

TEST(Fp4Spec, E2m1CodeTable) {  // §1.1
  const float values[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0f, -0.5, -1, -1.5, -2, -3, -4, -6};
  for (int c = 0; c < 16; ++c) {
    EXPECT_EQ(Bits(E2m1ToF32(static_cast<uint8_t>(c))), Bits(values[c])) << c;
    EXPECT_EQ(F32ToE2m1(values[c]), c);
  }
}

TEST(Fp4Spec, E2m1RoundingTable) {  // §1.2 (RN column)
  const std::pair<float, int> cases[] = {{0, 0x0},     {-0.0f, 0x8}, {0.1f, 0x0},  {0.25f, 0x0},
                                         {0.26f, 0x1}, {0.5f, 0x1},  {0.75f, 0x2}, {1.25f, 0x2},
                                         {1.75f, 0x4}, {2.5f, 0x4},  {3.5f, 0x6},  {5, 0x6},
                                         {5.5f, 0x7},  {6, 0x7},     {7, 0x7},     {100, 0x7},
                                         {-100, 0xF},  {-0.3f, 0x9}, {-2.9f, 0xD}, {-0.1f, 0x8}};
  for (auto [x, code] : cases) EXPECT_EQ(F32ToE2m1(x), code) << x;
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(F32ToE2m1(inf), 0x7);
  EXPECT_EQ(F32ToE2m1(-inf), 0xF);
  EXPECT_EQ(F32ToE2m1(std::numeric_limits<float>::quiet_NaN()), 0x7);  // NaN -> +6, any sign
  EXPECT_EQ(F32ToE2m1(FromBits(0xFFC00000u)), 0x7);
}

TEST(Fp4Spec, E4m3Values) {  // §1.4
  const std::pair<float, int> cases[] = {
      {448, 0x7E},      {464, 0x7E},       {500, 0x7E}, {-1000, 0xFE}, {0x1p-9f, 0x01},
      {0x1p-10f, 0x00}, {0.0013f, 0x01},   {240, 0x77}, {1, 0x38},     {0.5f, 0x30},
      {0.3f, 0x2A},     {-0x1p-11f, 0x80}, {0.0f, 0x00}};
  for (auto [x, code] : cases) EXPECT_EQ(F32ToE4m3(x), code) << x;
  EXPECT_EQ(F32ToE4m3(std::numeric_limits<float>::infinity()), 0x7E);
  EXPECT_EQ(F32ToE4m3(-std::numeric_limits<float>::infinity()), 0xFE);
  EXPECT_EQ(F32ToE4m3(std::numeric_limits<float>::quiet_NaN()), 0x7F);
  EXPECT_EQ(F32ToE4m3(FromBits(0xFFC00000u)), 0x7F);
  EXPECT_EQ(E4m3ToF32(0x7E), 448.0f);
  EXPECT_EQ(E4m3ToF32(0x01), 0x1p-9f);
  EXPECT_EQ(E4m3ToF32(0x2A), 0.3125f);
  EXPECT_TRUE(std::isnan(E4m3ToF32(0x7F)) && std::isnan(E4m3ToF32(0xFF)));
}

TEST(Fp4Spec, E8m0Values) {  // §1.5
  const auto kF = E8m0Rounding::kFloor, kC = E8m0Rounding::kCeil;
  EXPECT_EQ(F32ToE8m0(1.0f, kF), 0x7F);
  EXPECT_EQ(F32ToE8m0(1.5f, kF), 0x7F);
  EXPECT_EQ(F32ToE8m0(1.5f, kC), 0x80);
  EXPECT_EQ(F32ToE8m0(0.75f, kF), 0x7E);
  EXPECT_EQ(F32ToE8m0(0.75f, kC), 0x7F);
  EXPECT_EQ(F32ToE8m0(3.0f, kF), 0x80);
  EXPECT_EQ(F32ToE8m0(3.0f, kC), 0x81);
  EXPECT_EQ(F32ToE8m0(-4.0f, kC), 0x81);
  EXPECT_EQ(F32ToE8m0(0.0f, kC), 0x00);
  EXPECT_EQ(F32ToE8m0(1e-40f, kC), 0x00);
  EXPECT_EQ(F32ToE8m0(3e38f, kC), 0xFE);
  EXPECT_EQ(F32ToE8m0(std::numeric_limits<float>::infinity(), kF), 0xFE);
  EXPECT_EQ(F32ToE8m0(std::numeric_limits<float>::quiet_NaN(), kF), 0xFF);
  EXPECT_EQ(F32ToE8m0(0.5f / 6, kF), 0x7B);
  EXPECT_EQ(F32ToE8m0(0.5f / 6, kC), 0x7C);
  EXPECT_EQ(Bits(E8m0ToF32(0x00)), 0x00400000u);  // 2^-127
  EXPECT_EQ(E8m0ToF32(0x7F), 1.0f);
  EXPECT_EQ(E8m0ToF32(0xFE), 0x1p127f);
  EXPECT_TRUE(std::isnan(E8m0ToF32(0xFF)));
}

TEST(Fp4Spec, DecodeEncodeRoundTripsEveryCode) {
  for (int c = 0; c < 16; ++c) EXPECT_EQ(F32ToE2m1(E2m1ToF32(static_cast<uint8_t>(c))), c);
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7F) != 0x7F) {
      EXPECT_EQ(F32ToE4m3(E4m3ToF32(static_cast<uint8_t>(c))), c);
    }
    for (auto r : {E8m0Rounding::kFloor, E8m0Rounding::kCeil}) {
      EXPECT_EQ(F32ToE8m0(E8m0ToF32(static_cast<uint8_t>(c)), r), c);
    }
  }
}

TEST(Fp4Spec, PackingLowNibbleIsEvenElement) {  // §1.3
  EXPECT_EQ(PackE2m1x2(F32ToE2m1(1.0f), F32ToE2m1(-6.0f)), 0xF2);
  const uint8_t packed[2] = {0xF2, 0x51};
  EXPECT_EQ(UnpackE2m1(packed, 0), 0x2);
  EXPECT_EQ(UnpackE2m1(packed, 1), 0xF);
  EXPECT_EQ(UnpackE2m1(packed, 2), 0x1);
  EXPECT_EQ(UnpackE2m1(packed, 3), 0x5);
  // Through a row: element i of the input lands in byte i/2, nibble i%2.
  float row[16];
  for (int i = 0; i < 16; ++i) row[i] = (i % 8) * 0.75f;  // 0, .75, 1.5, ..., 5.25
  uint8_t q[8], scale;
  NvFp4QuantizeRow(row, 16, 1.0f, q, &scale);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(UnpackE2m1(q, i), F32ToE2m1(row[i] / (E4m3ToF32(scale) * 1.0f))) << i;
  }
}

// ---- NVFP4 (§1.6)
// --------------------------------------------------------------------------------

const float kWorkedX[32] = {0,     0.1f,  -0.2f, 0.3f,  0.45f, -0.6f, 0.75f, 1,
                            -1.2f, 1.5f,  2,     -2.5f, 3,     4,     -5,    6,
                            0.05f, -0.1f, 0.15f, -0.2f, 0.25f, -0.3f, 0.35f, -0.4f,
                            0.45f, -0.5f, 0.55f, -0.6f, 0.65f, -0.7f, 0.8f,  -0.9f};

TEST(NvFp4, WorkedExampleFromSpecs) {
  uint8_t packed[16], scales[2];
  float gs = 0;
  ASSERT_EQ(NvFp4QuantizeMatrix(kWorkedX, 1, 32, packed, scales, &gs), Fp4Result::kOk);
  EXPECT_EQ(Bits(gs), 0x3b124925u);
  EXPECT_EQ(scales[0], 0x7E);
  EXPECT_EQ(scales[1], 0x68);
  const uint8_t want_codes[32] = {0, 0, 8, 1,   1, 9,   2, 2,   0xA, 3,   4, 0xC, 5, 6,   0xE, 7,
                                  1, 9, 2, 0xB, 3, 0xC, 4, 0xD, 5,   0xD, 6, 0xE, 6, 0xE, 7,   0xF};
  for (int i = 0; i < 32; ++i) EXPECT_EQ(UnpackE2m1(packed, i), want_codes[i]) << i;
  const uint8_t want_packed[16] = {0x00, 0x18, 0x91, 0x22, 0x3A, 0xC4, 0x65, 0x7E,
                                   0x91, 0xB2, 0xC3, 0xD4, 0xD5, 0xE6, 0xE6, 0xF7};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(packed[i], want_packed[i]) << i;
  float out[32];
  ASSERT_EQ(NvFp4DequantizeMatrix(packed, scales, 1, 32, gs, out), Fp4Result::kOk);
  const float want_deq[32] = {
      0,         0,          -0.0f,    0.5,       0.5,      -0.5,      1,        1,
      -1,        1.5,        2,        -2,        3,        4,         -4,       6,
      0.0714286, -0.0714286, 0.142857, -0.214286, 0.214286, -0.285714, 0.285714, -0.428571,
      0.428571,  -0.428571,  0.571429, -0.571429, 0.571429, -0.571429, 0.857143, -0.857143};
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(out[i], want_deq[i], 1e-6 * 6) << i;
  // Block 0's scale decodes to 448 and 448 * gs rounds to 1.0000000447: exact values are not 1.
  EXPECT_EQ(out[15], 6.0f * (448.0f * gs));
}

// The ModelOpt recipe written out with the CUDA converters, as an oracle for the block logic.
#if SWITCHYARD_HAVE_CUDA_FP_HEADERS
float CudaE4m3ToF32(uint8_t c) { return F16ToF32(__nv_cvt_fp8_to_halfraw(c, __NV_E4M3).x); }

void CudaNvFp4Reference(const float* x, int n, float gs, uint8_t* codes, uint8_t* scales) {
  for (int b = 0; b < n / 16; ++b) {
    float amax = 0;
    for (int i = 0; i < 16; ++i) amax = std::fmax(amax, std::fabs(x[b * 16 + i]));
    float s = amax / (6.0f * gs);
    if (s == 0) s = 1;
    scales[b] = __nv_cvt_float_to_fp8(s, __NV_SATFINITE, __NV_E4M3);
    const float d = CudaE4m3ToF32(scales[b]) * gs;
    for (int i = 0; i < 16; ++i) {
      const float v = x[b * 16 + i];
      codes[b * 16 + i] = d == 0 ? (std::signbit(v) ? 8 : 0)
                                 : __nv_cvt_float_to_fp4(v / d, __NV_E2M1, cudaRoundNearest);
    }
  }
}
#endif

// Random rows whose blocks span many magnitudes (block scales from E4M3 subnormals to 448).
std::vector<float> RandomBlocks(int rows, int cols, uint64_t seed, int block) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exp(-14, 4);
  std::vector<float> x(static_cast<size_t>(rows) * cols);
  float mag = 1;
  for (size_t i = 0; i < x.size(); ++i) {
    if (i % block == 0) mag = std::ldexp(1.0f, exp(rng));
    x[i] = normal(rng) * mag;
  }
  return x;
}

// Half the gap of the E2M1 grid interval containing t in [0, 6].
float HalfStep(float t) { return t < 2 ? 0.25f : t < 4 ? 0.5f : 1.0f; }

TEST(NvFp4, RandomMatricesMatchCudaReferenceAndErrorBounds) {
  const int rows = 64, cols = 512;
  const std::vector<float> x = RandomBlocks(rows, cols, 7, 16);
  std::vector<uint8_t> packed(rows * cols / 2), scales(rows * cols / 16);
  float gs = 0;
  ASSERT_EQ(NvFp4QuantizeMatrix(x.data(), rows, cols, packed.data(), scales.data(), &gs),
            Fp4Result::kOk);
  float amax = 0;
  for (float v : x) amax = std::fmax(amax, std::fabs(v));
  EXPECT_EQ(Bits(gs), Bits(amax / 2688.0f));
#if SWITCHYARD_HAVE_CUDA_FP_HEADERS
  std::vector<uint8_t> ref_codes(rows * cols), ref_scales(rows * cols / 16);
  CudaNvFp4Reference(x.data(), rows * cols, gs, ref_codes.data(), ref_scales.data());
  EXPECT_EQ(scales, ref_scales);
  for (int i = 0; i < rows * cols; ++i) ASSERT_EQ(UnpackE2m1(packed.data(), i), ref_codes[i]) << i;
#endif
  std::vector<float> deq(rows * cols);
  ASSERT_EQ(NvFp4DequantizeMatrix(packed.data(), scales.data(), rows, cols, gs, deq.data()),
            Fp4Result::kOk);
  int normal_scale_blocks = 0;
  for (int b = 0; b < rows * cols / 16; ++b) {
    float bmax = 0;
    for (int i = 0; i < 16; ++i) bmax = std::fmax(bmax, std::fabs(x[b * 16 + i]));
    const float d = E4m3ToF32(scales[b]) * gs;
    const float s = bmax / (6.0f * gs);  // the unrounded block scale
    const bool normal_scale = s >= 0x1p-6f;
    normal_scale_blocks += normal_scale;
    if (normal_scale) {  // E4M3 rounding is within 2^-4 relative, so |x| / d <= 6.4
      EXPECT_LE(std::fabs(E4m3ToF32(scales[b]) - s), 0x1p-4f * s) << b;
    }
    for (int i = 0; i < 16; ++i) {
      const float v = x[b * 16 + i], t = std::fabs(v) / d, err = std::fabs(v - deq[b * 16 + i]);
      // Nearest grid point (up to FP32 rounding of x / d), or saturated at 6 * d.
      const float bound = t <= 6 ? d * HalfStep(t) : std::fabs(v) - 6 * d;
      ASSERT_LE(err, bound * (1 + 1e-6f) + 1e-30f) << "block " << b << " i " << i;
      if (normal_scale) {
        ASSERT_LE(err, bmax / 6 / (1 - 0x1p-4f) * (1 + 1e-6f)) << b;
      }
    }
  }
  EXPECT_GT(normal_scale_blocks, rows * cols / 16 / 2);
}

#if SWITCHYARD_HAVE_CUDA_FP_HEADERS
// Elements within an ulp of every E2M1 tie after scaling: the codes then depend on computing
// x / (scale * global_scale) exactly as the recipe says (not x * reciprocal, not x / scale / gs).
TEST(NvFp4, TiesPinTheOperationOrder) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<float> amax_dist(0.01f, 100.0f);
  const float ties[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  size_t checked = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    const float gs = NvFp4GlobalScale(amax_dist(rng));
    float x[16];
    x[0] = amax_dist(rng) * 0.01f;
    x[0] = std::fmin(x[0], 6.0f * 448.0f * gs);  // block amax, sets the scale
    const float d = E4m3ToF32(F32ToE4m3(x[0] / (6.0f * gs))) * gs;
    for (int i = 1; i < 16; ++i) {
      const float t = ties[rng() % 7] * d;
      const int step = static_cast<int>(rng() % 3) - 1;
      x[i] = step == 0 ? t : std::nextafter(t, step * 1e30f);
      if (std::fabs(x[i]) > x[0]) x[i] = x[0];
    }
    uint8_t packed[8], ref_codes[16], ref_scale;
    const uint8_t scale = NvFp4QuantizeBlock(x, gs, packed);
    CudaNvFp4Reference(x, 16, gs, ref_codes, &ref_scale);
    ASSERT_EQ(scale, ref_scale);
    for (int i = 0; i < 16; ++i)
      ASSERT_EQ(UnpackE2m1(packed, i), ref_codes[i]) << trial << " " << i;
    checked += 16;
  }
  std::printf("NVFP4 near-tie elements compared with the CUDA-converter recipe: %zu\n", checked);
}
#endif

TEST(NvFp4, ZeroBlocksAndZeroTensor) {
  float x[32] = {};
  x[17] = -0.0f;
  x[20] = 3.0f;  // block 1 nonzero
  uint8_t packed[16], scales[2];
  float gs = 0;
  ASSERT_EQ(NvFp4QuantizeMatrix(x, 1, 32, packed, scales, &gs), Fp4Result::kOk);
  EXPECT_EQ(scales[0], 0x38);  // block amax 0 -> scale 1.0 (ModelOpt), codes 0
  for (int i = 0; i < 8; ++i) EXPECT_EQ(packed[i], 0);
  EXPECT_EQ(UnpackE2m1(packed, 17), 0x8);  // -0 keeps its sign
  float zeros[16] = {};
  ASSERT_EQ(NvFp4QuantizeMatrix(zeros, 1, 16, packed, scales, &gs), Fp4Result::kOk);
  EXPECT_EQ(gs, 1.0f);  // all-zero tensor: global scale 1, not 0 (no 0/0)
  EXPECT_EQ(scales[0], 0x38);
  float out[16];
  NvFp4DequantizeBlock(packed, scales[0], gs, out);
  for (float v : out) EXPECT_EQ(Bits(v), 0u);
}

TEST(NvFp4, ScaleUnderflowGivesSignedZeroCodes) {
  float x[16];
  for (int i = 0; i < 16; ++i) x[i] = (i % 2 ? -1e-6f : 1e-6f);
  uint8_t packed[8];
  const uint8_t scale = NvFp4QuantizeBlock(x, 6.0f / 2688, packed);  // tensor amax 6
  EXPECT_EQ(scale, 0x00);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(UnpackE2m1(packed, i), i % 2 ? 0x8 : 0x0);
}

TEST(NvFp4, NonFiniteBlockIsNaNAndMatrixRefuses) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    float x[32];
    for (int i = 0; i < 32; ++i) x[i] = 0.1f * i;
    x[21] = bad;
    uint8_t packed[8];
    EXPECT_EQ(NvFp4QuantizeBlock(x + 16, 0.01f, packed), kE4m3NaN);
    float out[16];
    NvFp4DequantizeBlock(packed, kE4m3NaN, 0.01f, out);
    for (float v : out) EXPECT_TRUE(std::isnan(v));
    uint8_t mp[16], ms[2] = {0xAB, 0xAB};
    float gs = -1;
    EXPECT_EQ(NvFp4QuantizeMatrix(x, 1, 32, mp, ms, &gs), Fp4Result::kNonFinite);
    EXPECT_EQ(ms[0], 0xAB);  // nothing written
    EXPECT_EQ(gs, -1);
  }
}

TEST(Fp4Matrix, BadShapes) {
  std::vector<float> x(96, 1.0f), out(96);
  std::vector<uint8_t> p(48), s(6);
  float gs = 0;
  EXPECT_EQ(NvFp4QuantizeMatrix(x.data(), 4, 24, p.data(), s.data(), &gs), Fp4Result::kBadShape);
  EXPECT_EQ(NvFp4QuantizeMatrix(x.data(), -1, 16, p.data(), s.data(), &gs), Fp4Result::kBadShape);
  EXPECT_EQ(NvFp4QuantizeMatrix(x.data(), 2, 48, p.data(), s.data(), &gs), Fp4Result::kOk);
  EXPECT_EQ(MxFp4QuantizeMatrix(x.data(), 2, 48, p.data(), s.data()), Fp4Result::kBadShape);
  EXPECT_EQ(MxFp4QuantizeMatrix(x.data(), 3, 32, p.data(), s.data()), Fp4Result::kOk);
  EXPECT_EQ(NvFp4DequantizeMatrix(p.data(), s.data(), 3, 20, 1.0f, out.data()),
            Fp4Result::kBadShape);
  EXPECT_EQ(MxFp4DequantizeMatrix(p.data(), s.data(), 3, 16, out.data()), Fp4Result::kBadShape);
  EXPECT_EQ(NvFp4QuantizeMatrix(x.data(), 0, 0, p.data(), s.data(), &gs), Fp4Result::kOk);
  EXPECT_STREQ(Fp4ResultName(Fp4Result::kBadShape),
               "columns are not a multiple of the FP4 block size");
}

// ---- MXFP4 (§1.7)
// --------------------------------------------------------------------------------

TEST(MxFp4, WorkedExampleFromSpecs) {
  const float y[32] = {0.05f,  -0.1f,  0.15f,  -0.2f, 0.25f,  -0.3f,  0.35f,  -0.4f,
                       0.45f,  -0.5f,  0.55f,  -0.6f, 0.65f,  -0.7f,  0.8f,   -0.9f,
                       0.025f, -0.05f, 0.075f, -0.1f, 0.125f, -0.15f, 0.175f, -0.2f,
                       0.225f, -0.25f, 0.275f, -0.3f, 0.325f, -0.35f, 0.4f,   -0.45f};
  const uint8_t floor_codes[32] = {1, 0xA, 2, 0xB, 4, 0xC, 5, 0xD, 6, 0xE, 6, 0xE, 7, 0xF, 7, 0xF,
                                   0, 9,   1, 0xA, 2, 0xA, 3, 0xB, 4, 0xC, 4, 0xC, 5, 0xD, 5, 0xE};
  const uint8_t rceil_codes[32] = {0, 9, 1, 0xA, 2, 0xA, 3, 0xB, 4, 0xC, 4, 0xC, 5, 0xD, 5, 0xE,
                                   0, 8, 1, 9,   1, 9,   1, 0xA, 2, 0xA, 2, 0xA, 3, 0xB, 3, 0xC};
  uint8_t packed[16];
  EXPECT_EQ(MxFp4QuantizeBlock(y, packed, MxScaleRule::kFloor), 0x7C);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(UnpackE2m1(packed, i), floor_codes[i]) << i;
  float out[32];
  MxFp4DequantizeBlock(packed, 0x7C, out);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], E2m1ToF32(floor_codes[i]) * 0.125f);
  EXPECT_EQ(MxFp4QuantizeBlock(y, packed, MxScaleRule::kRceil), 0x7D);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(UnpackE2m1(packed, i), rceil_codes[i]) << i;
  // Second example: the 32 values of the NVFP4 example, amax 6 -> 0x7F with either rule.
  EXPECT_EQ(MxFp4QuantizeBlock(kWorkedX, packed, MxScaleRule::kFloor), 0x7F);
  EXPECT_EQ(MxFp4QuantizeBlock(kWorkedX, packed, MxScaleRule::kRceil), 0x7F);
}

TEST(MxFp4, RandomMatricesMatchReferenceAndErrorBounds) {
  const int rows = 64, cols = 512;
  std::vector<float> x = RandomBlocks(rows, cols, 11, 32);
  x[5] = 1e-41f;  // a few extremes: subnormal, tiny and huge blocks
  for (int i = 32; i < 64; ++i) x[i] = 1e-39f * (i - 40);
  for (int i = 64; i < 96; ++i) x[i] = 3e38f * std::sin(static_cast<float>(i));
  for (auto rule : {MxScaleRule::kFloor, MxScaleRule::kRceil}) {
    std::vector<uint8_t> packed(rows * cols / 2), scales(rows * cols / 32);
    ASSERT_EQ(MxFp4QuantizeMatrix(x.data(), rows, cols, packed.data(), scales.data(), rule),
              Fp4Result::kOk);
    std::vector<float> deq(rows * cols);
    ASSERT_EQ(MxFp4DequantizeMatrix(packed.data(), scales.data(), rows, cols, deq.data()),
              Fp4Result::kOk);
    for (int b = 0; b < rows * cols / 32; ++b) {
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::fmax(amax, std::fabs(x[b * 32 + i]));
      // Reference scale exponent from the formula, with libm.
      int e = 0;
      if (rule == MxScaleRule::kFloor) {
        e = amax == 0 ? -127 : std::max(-127, std::ilogb(amax) - 2);
      } else {
        e = amax == 0 ? -127
                      : std::max(-127, static_cast<int>(
                                           std::ceil(std::log2(static_cast<double>(amax / 6.0f)))));
      }
#if SWITCHYARD_HAVE_CUDA_FP_HEADERS
      const int cuda_byte =
          rule == MxScaleRule::kFloor
              ? std::max(0, __nv_cvt_float_to_e8m0(amax, __NV_SATFINITE, cudaRoundZero) - 2)
              : __nv_cvt_float_to_e8m0(amax / 6.0f, __NV_SATFINITE, cudaRoundPosInf);
      ASSERT_EQ(scales[b], cuda_byte) << b;
#endif
      ASSERT_EQ(scales[b], e + 127) << "block " << b << " amax " << amax;
      const double X = std::ldexp(1.0, e);
      for (int i = 0; i < 32; ++i) {
        const float v = x[b * 32 + i];
        const float scaled = static_cast<float>(v / X);  // exact unless below FP32 range
#if SWITCHYARD_HAVE_CUDA_FP_HEADERS
        ASSERT_EQ(UnpackE2m1(packed.data(), b * 32 + i),
                  __nv_cvt_float_to_fp4(scaled, __NV_E2M1, cudaRoundNearest))
            << b << " " << i;
#endif
        // Dequantized value, exact in double; in FP32 it overflows to inf only for kRceil's
        // 4 * 2^126 = 2^128 (|x| >= 3.5 * 2^126, the block of values near FLT_MAX).
        const double exact = E2m1ToF32(UnpackE2m1(packed.data(), b * 32 + i)) * X;
        if (std::fabs(exact) > std::numeric_limits<float>::max()) {
          ASSERT_TRUE(rule == MxScaleRule::kRceil && std::isinf(deq[b * 32 + i])) << b << " " << i;
        } else {
          ASSERT_EQ(deq[b * 32 + i], exact) << b << " " << i;
        }
        const double t = std::fabs(scaled);
        const double err = std::fabs(v - exact);
        const double bound = t <= 6 ? X * HalfStep(static_cast<float>(t)) : std::fabs(v) - 6 * X;
        ASSERT_LE(err, bound * (1 + 1e-7)) << b << " " << i;
        if (rule == MxScaleRule::kRceil) {
          ASSERT_LE(t, 6.0 * (1 + 1e-6));  // RCEIL never saturates
        }
        ASSERT_LT(t, 8.0);
      }
    }
  }
}

TEST(MxFp4, ZeroAndNonFiniteBlocks) {
  float x[32] = {};
  x[3] = -0.0f;
  uint8_t packed[16];
  for (auto rule : {MxScaleRule::kFloor, MxScaleRule::kRceil}) {
    EXPECT_EQ(MxFp4QuantizeBlock(x, packed, rule), 0x00);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(UnpackE2m1(packed, i), i == 3 ? 0x8 : 0x0);
    float out[32];
    MxFp4DequantizeBlock(packed, 0x00, out);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(Bits(out[i]), i == 3 ? 0x80000000u : 0u);
  }
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    float y[32];
    for (int i = 0; i < 32; ++i) y[i] = 0.25f * i;
    y[31] = bad;
    EXPECT_EQ(MxFp4QuantizeBlock(y, packed), kE8m0NaN);
    float out[32];
    MxFp4DequantizeBlock(packed, kE8m0NaN, out);
    for (float v : out) EXPECT_TRUE(std::isnan(v));
    uint8_t s = 0xAB;
    EXPECT_EQ(MxFp4QuantizeMatrix(y, 1, 32, packed, &s), Fp4Result::kNonFinite);
    EXPECT_EQ(s, 0xAB);
  }
}

// ---- Bit-exact against the CUDA toolkit's host converters (specs §1.8)
// -----------------------------

#if SWITCHYARD_HAVE_CUDA_FP_HEADERS

TEST(Fp4VsCuda, E2m1EncodeAllInputs) {
  ExpectSameCodes(
      "E2M1 vs __nv_cvt_float_to_fp4(RN)", [](float x) { return F32ToE2m1(x); },
      [](float x) { return __nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest); });
}

TEST(Fp4VsCuda, E4m3EncodeAllInputs) {
  ExpectSameCodes(
      "E4M3 vs __nv_cvt_float_to_fp8(SATFINITE)", [](float x) { return F32ToE4m3(x); },
      [](float x) { return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3); });
}

// Ours is the SATFINITE converter with cudaRoundZero (kFloor) or cudaRoundPosInf (kCeil), the two
// modes CUDA accepts (it asserts on others; there is no round-to-nearest E8M0 converter). With
// __NV_NOSAT CUDA would return 0xFF (NaN) above 2^127 and for inf; specs use only SATFINITE.
TEST(Fp4VsCuda, E8m0EncodeAllInputs) {
  ExpectSameCodes(
      "E8M0 floor vs __nv_cvt_float_to_e8m0(SATFINITE, RZ)",
      [](float x) { return F32ToE8m0(x, E8m0Rounding::kFloor); },
      [](float x) { return __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundZero); });
  ExpectSameCodes(
      "E8M0 ceil vs __nv_cvt_float_to_e8m0(SATFINITE, RP)",
      [](float x) { return F32ToE8m0(x, E8m0Rounding::kCeil); },
      [](float x) { return __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundPosInf); });
}

TEST(Fp4VsCuda, PackedPairs) {
  const std::vector<float>& in = Inputs();
  size_t bad = 0, n = 0;
  for (size_t i = 0; i + 1 < in.size(); i += 7, ++n) {
    const uint8_t ours = PackE2m1x2(F32ToE2m1(in[i]), F32ToE2m1(in[i + 1]));
    const float2 pair = {in[i], in[i + 1]};
    bad += ours != __nv_cvt_float2_to_fp4x2(pair, __NV_E2M1, cudaRoundNearest);
  }
  EXPECT_EQ(bad, 0u);
  std::printf("E2M1x2 packing vs __nv_cvt_float2_to_fp4x2: %zu pairs compared\n", n);
}

TEST(Fp4VsCuda, DecodeTables) {
  for (int c = 0; c < 16; ++c) {
    const float cuda = F16ToF32(__nv_cvt_fp4_to_halfraw(static_cast<uint8_t>(c), __NV_E2M1).x);
    EXPECT_EQ(Bits(E2m1ToF32(static_cast<uint8_t>(c))), Bits(cuda)) << c;
  }
  for (int c = 0; c < 256; ++c) {
    const float cuda = CudaE4m3ToF32(static_cast<uint8_t>(c));
    const float ours = E4m3ToF32(static_cast<uint8_t>(c));
    if (std::isnan(cuda)) {
      EXPECT_TRUE(std::isnan(ours)) << c;
    } else {
      EXPECT_EQ(Bits(ours), Bits(cuda)) << c;
    }
    const float cuda8 = Bf16ToF32(__nv_cvt_e8m0_to_bf16raw(static_cast<uint8_t>(c)).x);
    const float ours8 = E8m0ToF32(static_cast<uint8_t>(c));
    if (std::isnan(cuda8)) {
      EXPECT_TRUE(std::isnan(ours8)) << c;
    } else {
      EXPECT_EQ(Bits(ours8), Bits(cuda8)) << c;
    }
  }
}

#else

TEST(Fp4VsCuda, HeadersNotFound) {
  GTEST_SKIP() << "cuda_fp4.h / cuda_fp8.h not found at configure time: CUDA oracle not compiled";
}

#endif

}  // namespace
}  // namespace switchyard::fp4
