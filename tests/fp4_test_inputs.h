// The float inputs on which the FP4 codec (kernels/fp4_format.h) is compared with its independent
// implementations: the CUDA toolkit's host converters (fp4_format_test.cc) and ml_dtypes
// (fp4_dump.cc + fp4_ml_dtypes_check.py). Deterministic: the same list every run.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/fp4_format.h"

namespace switchyard::fp4_test {

inline float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Every value of a format's positive grid, the exact midpoints between neighbours (all
// representable in FP32), the FP32 neighbours of both, and everything with either sign.
inline void AddGrid(const std::vector<float>& grid, std::vector<float>* out) {
  const float inf = std::numeric_limits<float>::infinity();
  auto add = [&](float v) {
    for (float w : {v, std::nextafter(v, inf), std::nextafter(v, -inf)}) {
      out->push_back(w);
      out->push_back(-w);
    }
  };
  for (size_t i = 0; i < grid.size(); ++i) {
    add(grid[i]);
    if (i + 1 < grid.size()) add(static_cast<float>((double{grid[i]} + grid[i + 1]) / 2));
  }
}

// The special values: zeros, FP32 subnormals, every rounding boundary and tie of E2M1, E4M3 and
// E8M0, the values past their maxima, inf and NaNs (several payloads, both signs).
inline std::vector<float> SpecialInputs() {
  std::vector<float> v;
  std::vector<float> e2m1, e4m3, e8m0;
  for (int c = 0; c < 8; ++c) e2m1.push_back(fp4::E2m1ToF32(static_cast<uint8_t>(c)));
  e2m1.push_back(8.0f);  // the tie past 6 that a 7th binade would have: checks saturation
  for (int c = 0; c < 0x7F; ++c) e4m3.push_back(fp4::E4m3ToF32(static_cast<uint8_t>(c)));
  e4m3.push_back(480.0f);  // 464 = midpoint(448, 480) is the overflow tie
  for (int c = 0; c < 0xFF; ++c) e8m0.push_back(fp4::E8m0ToF32(static_cast<uint8_t>(c)));
  AddGrid(e2m1, &v);
  AddGrid(e4m3, &v);
  AddGrid(e8m0, &v);
  for (uint32_t u : {0x00000000u, 0x00000001u, 0x00000002u, 0x003FFFFFu, 0x00400000u, 0x00400001u,
                     0x007FFFFFu, 0x00800000u, 0x00800001u, 0x7F7FFFFFu, 0x7F000000u, 0x7F400000u,
                     0x7F800000u, 0x7F800001u, 0x7FC00000u, 0x7FFFFFFFu, 0x7FA00000u}) {
    v.push_back(FromBits(u));
    v.push_back(FromBits(u | 0x80000000u));
  }
  for (float f : {0.1f, 0.26f, 0.3f,  1.2f,          2.9f,    5.0f,   5.5f,
                  6.0f, 6.5f,  7.0f,  100.0f,        464.0f,  500.0f, 1000.0f,
                  1e6f, 1e30f, 3e38f, 0.0009765625f, 0.0013f, 240.0f, 0.08333333f}) {
    v.push_back(f);
    v.push_back(-f);
  }
  return v;
}

// SpecialInputs, then a sweep of every upper 16-bit pattern with low halves {0, 1, 0x7FFF, 0x8000,
// 0x8001, 0xFFFF} (all exponents, all leading mantissas, sticky bits on and off), then random
// bit patterns, random values uniform in [-8, 8] (E2M1 range) and [-500, 500] (E4M3 range), and
// random values log-uniform in magnitude over [2^-12, 2^10) with random sign.
inline std::vector<float> AllInputs(size_t random_each = 2500000) {
  std::vector<float> v = SpecialInputs();
  for (uint32_t hi = 0; hi < 0x10000u; ++hi) {
    for (uint32_t lo : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu}) {
      v.push_back(FromBits(hi << 16 | lo));
    }
  }
  std::mt19937_64 rng(20240611);
  std::uniform_real_distribution<float> e2m1_range(-8.0f, 8.0f), e4m3_range(-500.0f, 500.0f);
  std::uniform_real_distribution<float> log_mag(-12.0f, 10.0f);
  for (size_t i = 0; i < random_each; ++i) v.push_back(FromBits(static_cast<uint32_t>(rng())));
  for (size_t i = 0; i < random_each; ++i) v.push_back(e2m1_range(rng));
  for (size_t i = 0; i < random_each; ++i) v.push_back(e4m3_range(rng));
  for (size_t i = 0; i < random_each; ++i) {
    const float m = std::exp2(log_mag(rng));
    v.push_back((rng() & 1) ? -m : m);
  }
  return v;
}

}  // namespace switchyard::fp4_test
