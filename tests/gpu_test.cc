// GPU tests: compiled whenever CUDA is built; SKIPPED (with the reason) where no GPU answers.
#include <gtest/gtest.h>

#include <string>

#include "kernels/cuda/device.h"

namespace switchyard {
namespace {

TEST(GpuTest, DeviceProbe) {
  std::string why;
  const int count = cuda::DeviceCount(&why);
  if (count == 0) GTEST_SKIP() << "no GPU: " << why;
  EXPECT_GT(count, 0);
}

}  // namespace
}  // namespace switchyard
