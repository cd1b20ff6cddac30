// UCX status codes -> Status (transport/ucx/ucx_status.h): the code classes the transport relies on
// (a dead peer is Unavailable, truncation is OutOfRange) and the message naming the context.
#include <gtest/gtest.h>

#include "transport/ucx/ucx_status.h"

namespace switchyard {
namespace {

TEST(UcxStatus, ConvertsByClass) {
  EXPECT_TRUE(UcsCodeToStatus(0, "ctx").ok());
  struct Expect {
    int ucs;
    StatusCode code;
  };
  // Values from ucs/type/status.h (UCX 1.13).
  for (Expect e : {Expect{-9, StatusCode::kOutOfRange}, Expect{-4, StatusCode::kResourceExhausted},
                   Expect{-5, StatusCode::kInvalidArgument}, Expect{-6, StatusCode::kUnavailable},
                   Expect{-25, StatusCode::kUnavailable}, Expect{-3, StatusCode::kUnavailable},
                   Expect{-80, StatusCode::kUnavailable}, Expect{-45, StatusCode::kUnavailable},
                   Expect{-20, StatusCode::kDeadlineExceeded}, Expect{-16, StatusCode::kCancelled},
                   Expect{-8, StatusCode::kInternal}}) {
    Status s = UcsCodeToStatus(e.ucs, "send to rank 3");
    EXPECT_EQ(s.code(), e.code) << e.ucs << ": " << s.ToString();
    EXPECT_NE(s.message().find("send to rank 3: "), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("(UCS status " + std::to_string(e.ucs) + ")"), std::string::npos)
        << s.ToString();
  }
}

}  // namespace
}  // namespace switchyard
