// NCCL and CUDA error codes -> Status (transport/nccl/nccl_status.h). Runs without a GPU (unit),
// separately from transport_nccl_test, whose skips would hide a failure here.
#include <gtest/gtest.h>

#include "transport/nccl/nccl_status.h"

namespace switchyard {
namespace {

TEST(NcclStatus, ConvertsByClass) {
  // Values from nccl.h / driver_types.h; conversions need no GPU.
  EXPECT_TRUE(NcclResultToStatus(0, "ctx").ok());
  EXPECT_EQ(NcclResultToStatus(4, "ctx").code(), StatusCode::kInvalidArgument);  // invalid arg
  EXPECT_EQ(NcclResultToStatus(5, "ctx").code(), StatusCode::kInvalidArgument);  // invalid usage
  EXPECT_EQ(NcclResultToStatus(6, "ctx").code(), StatusCode::kUnavailable);      // remote error
  EXPECT_EQ(NcclResultToStatus(2, "ctx").code(), StatusCode::kUnavailable);      // system error
  Status internal = NcclResultToStatus(3, "AllToAllV on rank 1", "last words");
  EXPECT_EQ(internal.code(), StatusCode::kInternal);
  EXPECT_NE(internal.message().find("AllToAllV on rank 1: "), std::string::npos);
  EXPECT_NE(internal.message().find("last words"), std::string::npos);
  EXPECT_TRUE(CudaErrorToStatus(0, "ctx").ok());
  EXPECT_EQ(CudaErrorToStatus(2, "cudaMalloc").code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(CudaErrorToStatus(100, "probe").code(), StatusCode::kUnavailable);  // no device
}

}  // namespace
}  // namespace switchyard
