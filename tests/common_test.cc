#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>

#include "common/dtype.h"
#include "common/logging.h"
#include "common/parallel.h"
#include "common/runtime_config.h"
#include "common/status.h"

namespace switchyard {
namespace {

StatusOr<int> Half(int x) {
  if (x % 2 != 0) return InvalidArgumentError("odd: " + std::to_string(x));
  return x / 2;
}

Status Quarter(int x, int* out) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(*out, Half(h));
  return OkStatus();
}

TEST(StatusTest, MacrosPropagateErrors) {
  int out = 0;
  EXPECT_TRUE(Quarter(8, &out).ok());
  EXPECT_EQ(out, 2);
  Status s = Quarter(6, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "odd: 3");
  EXPECT_EQ(s.WithContext("layer 2").ToString(), "INVALID_ARGUMENT: layer 2: odd: 3");
}

TEST(DTypeTest, Bf16RoundTripAndRounding) {
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.0f)), 1.0f);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1.0078125: ties to even -> 1.0.
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.0f + 1.0f / 256)), 1.0f);
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.0f + 3.0f / 256)), 1.015625f);
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(NAN))));
}

TEST(DTypeTest, F16ExhaustiveRoundTrip) {
  for (uint32_t h = 0; h < 65536; ++h) {
    float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(F32ToF16(f), h) << "half bits " << h;
  }
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(F16ToF32(0x7bff), 65504.0f);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7c00);               // rounds to inf
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even (zero)
  EXPECT_EQ(F32ToF16(std::ldexp(3.0f, -26)), 0x0001);
}

TEST(RuntimeConfigTest, YamlEnvPrecedenceAndErrors) {
  RuntimeConfig config;
  ASSERT_TRUE(ParseRuntimeConfigYaml("num_threads: 3\nmax_seq_len: 100\n", "t.yaml", &config).ok());
  EXPECT_EQ(config.num_threads, 3);
  EXPECT_EQ(config.max_seq_len, 100);
  EXPECT_EQ(config.max_batch_tokens, 8192);  // default kept

  setenv("SWITCHYARD_NUM_THREADS", "1", 1);
  ASSERT_TRUE(ApplyRuntimeConfigEnv(&config).ok());
  EXPECT_EQ(config.num_threads, 1);
  setenv("SWITCHYARD_NUM_THREADS", "x", 1);
  Status env = ApplyRuntimeConfigEnv(&config);
  EXPECT_NE(env.message().find("SWITCHYARD_NUM_THREADS"), std::string::npos);
  unsetenv("SWITCHYARD_NUM_THREADS");

  Status unknown = ParseRuntimeConfigYaml("num_thread: 3\n", "t.yaml", &config);
  EXPECT_NE(unknown.message().find("unknown key 'num_thread'"), std::string::npos);
  Status typed = ParseRuntimeConfigYaml("max_seq_len: lots\n", "t.yaml", &config);
  EXPECT_NE(typed.message().find("'max_seq_len' must be an integer"), std::string::npos);
  Status range = ParseRuntimeConfigYaml("max_seq_len: 0\n", "t.yaml", &config);
  EXPECT_NE(range.message().find("max_seq_len must be >= 1"), std::string::npos);
  Status level = ParseRuntimeConfigYaml("log_level: loud\n", "t.yaml", &config);
  EXPECT_NE(level.message().find("log_level 'loud'"), std::string::npos);
  Status syntax = ParseRuntimeConfigYaml("a: [1,\n", "t.yaml", &config);
  EXPECT_NE(syntax.message().find("t.yaml: invalid YAML"), std::string::npos);
}

TEST(ParallelTest, ParsesOmpSpin) {
  EXPECT_EQ(*ParseOmpSpin(""), 0);
  EXPECT_EQ(*ParseOmpSpin("off"), 0);
  EXPECT_EQ(*ParseOmpSpin("0"), 0);
  EXPECT_EQ(*ParseOmpSpin("on"), kOmpSpinOn);
  EXPECT_EQ(*ParseOmpSpin("2500"), 2500);
  EXPECT_EQ(*ParseOmpSpin("1000000000"), 1000000000);
  for (const char* bad : {"yes", "-1", "1e4", "1000000001", "99999999999999999999", " 10"}) {
    auto r = ParseOmpSpin(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find(std::string("'") + bad + "'"), std::string::npos)
        << r.status().message();
  }
}

TEST(LoggingTest, ParsesLevels) {
  LogLevel level;
  EXPECT_TRUE(ParseLogLevel("DEBUG", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_FALSE(ParseLogLevel("verbose", &level));
}

}  // namespace
}  // namespace switchyard
