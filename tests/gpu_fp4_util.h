// Helpers of the GPU FP4 tests: skip without a GPU, device round trips, random data.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/device.h"
#include "kernels/cuda/device_buffer.h"

// Skips the current test (with the reason) where no GPU answers.
#define SY_SKIP_WITHOUT_GPU()                             \
  do {                                                    \
    std::string sy_why_;                                  \
    if (::switchyard::cuda::DeviceCount(&sy_why_) == 0) { \
      GTEST_SKIP() << "no GPU: " << sy_why_;              \
    }                                                     \
  } while (0)

namespace switchyard::testing {

template <typename T>
cuda::DeviceBuffer ToDevice(const std::vector<T>& v) {
  auto buf = cuda::DeviceBuffer::FromHost(v.data(), static_cast<int64_t>(v.size() * sizeof(T)),
                                          "test input");
  EXPECT_TRUE(buf.ok()) << buf.status().ToString();
  return std::move(buf).value();
}

template <typename T>
std::vector<T> ToHost(const cuda::DeviceBuffer& buf, size_t n) {
  std::vector<T> v(n);
  const Status s = buf.CopyToHost(v.data(), static_cast<int64_t>(n * sizeof(T)));
  EXPECT_TRUE(s.ok()) << s.ToString();
  return v;
}

inline uint32_t FloatBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// Equal bit patterns, or both NaN (the GPU's NaN payload may differ from the host's).
inline bool SameFloat(float a, float b) {
  return FloatBits(a) == FloatBits(b) || (a != a && b != b);
}

}  // namespace switchyard::testing
