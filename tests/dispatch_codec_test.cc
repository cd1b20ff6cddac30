// Row codecs and checksum of dispatch (transport/dispatch_codec.h) against their scalar
// definitions: FP8 rows (E4M3 of x / scale, scale = block amax / 448) bitwise equal to
// fp4::F32ToE4m3 for millions of values (every magnitude class, both signs), partial blocks,
// zeros, Inf/NaN blocks;
// the documented error bound; BF16 round trips; combine's one-pass BF16 row sum; the checksum
// changes with any single byte.
#include "transport/dispatch_codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "common/dtype.h"
#include "kernels/fp4_format.h"

namespace switchyard::dispatch_codec {
namespace {

// The FP8 format restated from its definition, element by element.
std::vector<float> ScalarFp8(const std::vector<float>& x) {
  std::vector<float> out(x.size());
  const int64_t h = static_cast<int64_t>(x.size());
  for (int64_t first = 0; first < h; first += kFp8Block) {
    const int64_t last = std::min<int64_t>(h, first + kFp8Block);
    float amax = 0.0f;
    bool finite = true;
    for (int64_t i = first; i < last; ++i) {
      finite &= std::isfinite(x[i]);
      amax = std::max(amax, std::fabs(x[i]));
    }
    const float scale = !finite ? NAN : (amax == 0.0f ? 1.0f : amax / 448.0f);
    for (int64_t i = first; i < last; ++i) {
      out[i] = fp4::E4m3ToF32(fp4::F32ToE4m3(x[i] / scale)) * scale;
    }
  }
  return out;
}

bool SameBits(float a, float b) {
  uint32_t ua, ub;
  std::memcpy(&ua, &a, 4);
  std::memcpy(&ub, &b, 4);
  return ua == ub || (std::isnan(a) && std::isnan(b));
}

// Encode + decode, and RoundTripRow, both equal the scalar definition.
void CheckFp8Row(const std::vector<float>& x) {
  const int64_t h = static_cast<int64_t>(x.size());
  std::vector<std::byte> wire(RowBytes(Codec::kFP8, h));
  EncodeRow(x.data(), h, Codec::kFP8, wire.data());
  std::vector<float> decoded(h), round_trip(h);
  DecodeRow(wire.data(), h, Codec::kFP8, decoded.data(), false);
  RoundTripRow(x.data(), h, Codec::kFP8, round_trip.data(), false);
  const std::vector<float> want = ScalarFp8(x);
  int64_t bad = 0;
  for (int64_t i = 0; i < h; ++i) {
    if ((!SameBits(decoded[i], want[i]) || !SameBits(round_trip[i], want[i])) && bad++ < 3) {
      ADD_FAILURE() << "element " << i << " of " << h << ": x " << x[i] << " decoded " << decoded[i]
                    << " round trip " << round_trip[i] << " want " << want[i];
    }
  }
}

TEST(DispatchCodec, Fp8MatchesScalarAcrossTheFloatRange) {
  // Blocks whose first element is 448 have scale 1 exactly, so the other 127 elements meet the
  // E4M3 rounding as they are: every 257th bit pattern of magnitude <= 448, both signs (about
  // 8 million values: subnormals, normals, ties), plus every 4099th pattern of the whole float
  // range in plain blocks (scales of every binade, Inf/NaN blocks).
  std::vector<float> row;
  auto flush_at = [&row](size_t n) {
    if (row.size() >= n) {
      CheckFp8Row(row);
      row.clear();
    }
  };
  for (uint32_t sign : {0u, 0x80000000u}) {
    for (uint32_t u = 0; u <= 0x43e00000u; u += 257) {
      if (row.size() % 128 == 0) row.push_back(448.0f);
      float f;
      const uint32_t bits = u | sign;
      std::memcpy(&f, &bits, 4);
      row.push_back(f);
      flush_at(128 * 64);
    }
  }
  for (uint64_t u = 0; u < (uint64_t{1} << 32); u += 4099) {
    float f;
    const uint32_t bits = static_cast<uint32_t>(u);
    std::memcpy(&f, &bits, 4);
    row.push_back(f);
    flush_at(7168);
  }
  flush_at(1);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t h : {1, 7, 127, 128, 129, 300, 2048}) {
    std::vector<float> x(h);
    for (float& v : x) v = normal(rng) * std::ldexp(1.0f, static_cast<int>(rng() % 40) - 20);
    CheckFp8Row(x);
    std::fill(x.begin(), x.end(), 0.0f);
    CheckFp8Row(x);
  }
}

TEST(DispatchCodec, Fp8ErrorBoundAndNonFinite) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  std::vector<float> x(1000), y(1000);
  for (float& v : x) v = u(rng) * (rng() % 7 == 0 ? 1e-4f : 1.0f);
  RoundTripRow(x.data(), 1000, Codec::kFP8, y.data(), false);
  for (int64_t i = 0; i < 1000; ++i) {
    float amax = 0.0f;
    for (int64_t j = i / 128 * 128; j < std::min<int64_t>(1000, i / 128 * 128 + 128); ++j) {
      amax = std::max(amax, std::fabs(x[j]));
    }
    EXPECT_LE(std::fabs(y[i] - x[i]), std::ldexp(std::fabs(x[i]), -4) + std::ldexp(amax, -18)) << i;
  }
  x[130] = INFINITY;
  RoundTripRow(x.data(), 1000, Codec::kFP8, y.data(), false);
  for (int64_t i = 128; i < 256; ++i) EXPECT_TRUE(std::isnan(y[i])) << i;
  EXPECT_FALSE(std::isnan(y[127]));
  EXPECT_FALSE(std::isnan(y[256]));
}

TEST(DispatchCodec, Bf16RoundTripAndAccumulate) {
  std::vector<float> x(37), y(37, 1.0f), z(37, 1.0f);
  for (int i = 0; i < 37; ++i) x[i] = 0.1f * static_cast<float>(i) - 1.7f;
  std::vector<std::byte> wire(RowBytes(Codec::kBF16, 37));
  EncodeRow(x.data(), 37, Codec::kBF16, wire.data());
  DecodeRow(wire.data(), 37, Codec::kBF16, y.data(), true);
  RoundTripRow(x.data(), 37, Codec::kBF16, z.data(), true);
  for (int i = 0; i < 37; ++i) {
    const float want = 1.0f + Bf16ToF32(F32ToBf16(x[i]));
    EXPECT_TRUE(SameBits(y[i], want) && SameBits(z[i], want)) << i;
  }
}

// Combine's one-pass sum against its definition: +0 then each row widened and added in order,
// FP32 or rounded to BF16; lengths with an AVX2 tail, 0-4 rows, signed zeros, NaN and Inf rows.
TEST(DispatchCodec, SumBf16RowsMatchesScalarSum) {
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> uniform(-3.0f, 3.0f);
  for (int64_t h : {1, 7, 8, 33, 130, 1031}) {
    for (int count = 0; count <= 4; ++count) {
      std::vector<std::vector<uint16_t>> rows(count, std::vector<uint16_t>(h));
      std::vector<const uint16_t*> ptrs;
      for (int r = 0; r < count; ++r) {
        for (int64_t i = 0; i < h; ++i) rows[r][i] = F32ToBf16(uniform(rng) * (1 << (i % 9)));
        rows[r][0] = 0x8000;  // -0: +0 + -0 is +0, a row of only -0 sums to +0
        if (h > 3) rows[r][3] = r == 1 ? 0x7fc1 : rows[r][3];  // NaN payload stays NaN
        if (h > 5) rows[r][5] = r % 2 ? 0x7f80 : 0xff80;       // +Inf + -Inf = NaN
        ptrs.push_back(rows[r].data());
      }
      std::vector<float> got_f32(h, 42.0f);
      std::vector<uint16_t> got_bf16(h, 0x1234);
      SumBf16Rows(ptrs.data(), count, h, got_f32.data(), nullptr);
      SumBf16Rows(ptrs.data(), count, h, nullptr, got_bf16.data());
      for (int64_t i = 0; i < h; ++i) {
        float want = 0.0f;
        for (int r = 0; r < count; ++r) want += Bf16ToF32(rows[r][i]);
        uint32_t a, b;
        std::memcpy(&a, &want, 4);
        std::memcpy(&b, &got_f32[i], 4);
        if (std::isnan(want)) {
          EXPECT_TRUE(std::isnan(got_f32[i])) << "h " << h << " rows " << count << " i " << i;
        } else {
          EXPECT_EQ(a, b) << "h " << h << " rows " << count << " i " << i;
        }
        EXPECT_EQ(got_bf16[i], F32ToBf16(got_f32[i])) << "h " << h << " rows " << count;
      }
      // Non-temporal stores (aligned outputs, and a BF16 output aligned to 16 bytes only): the
      // same bits.
      float* nt_f32 = static_cast<float*>(std::aligned_alloc(64, 4 * (h + 64)));
      uint16_t* nt_bf16 = static_cast<uint16_t*>(std::aligned_alloc(64, 2 * (h + 64)));
      for (uint16_t* out : {nt_bf16, nt_bf16 + 8}) {
        SumBf16Rows(ptrs.data(), count, h, nt_f32, nullptr, /*stream=*/true);
        SumBf16Rows(ptrs.data(), count, h, nullptr, out, /*stream=*/true);
        StreamFence();
        EXPECT_EQ(0, std::memcmp(nt_f32, got_f32.data(), 4 * h)) << "h " << h << " rows " << count;
        EXPECT_EQ(0, std::memcmp(out, got_bf16.data(), 2 * h)) << "h " << h << " rows " << count;
      }
      std::free(nt_f32);
      std::free(nt_bf16);
    }
  }
}

TEST(DispatchCodec, StreamCopyCopies) {
  std::vector<uint8_t> src(5000), dst(5100, 0xee);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint8_t>(i * 13 + 1);
  for (int64_t offset : {0, 1, 31}) {
    for (int64_t n : {0, 100, 256, 257, 4999}) {
      std::fill(dst.begin(), dst.end(), 0xee);
      StreamCopy(dst.data() + offset, src.data(), n);
      StreamFence();
      EXPECT_EQ(0, std::memcmp(dst.data() + offset, src.data(), n)) << offset << " " << n;
      EXPECT_EQ(dst[offset + n], 0xee) << "wrote past the end: " << offset << " " << n;
    }
  }
}

TEST(DispatchCodec, ChecksumSeesEverySingleByteChange) {
  std::vector<uint8_t> data(301);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 31 + 7);
  for (int64_t n : {0, 1, 3, 4, 8, 31, 32, 33, 64, 301}) {
    const uint64_t base = Checksum64(data.data(), n, 42);
    EXPECT_NE(base, Checksum64(data.data(), n, 43)) << n;  // the seed chains
    for (int64_t i = 0; i < n; ++i) {
      for (uint8_t mask : {0x01, 0x40, 0x80, 0xff}) {
        data[i] ^= mask;
        EXPECT_NE(base, Checksum64(data.data(), n, 42)) << "n " << n << " byte " << i;
        data[i] ^= mask;
      }
    }
  }
}

}  // namespace
}  // namespace switchyard::dispatch_codec
