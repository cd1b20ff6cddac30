// The `serving:` section of the runtime YAML (common/runtime_config.h): defaults, every key,
// errors naming `serving.<key>` and the file, and (through the built binary, SWITCHYARD_CLI) the
// precedence YAML < `serve` flags as `--print-config` shows it.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "../test_util.h"
#include "common/runtime_config.h"

#ifndef SWITCHYARD_CLI
#error "SWITCHYARD_CLI (the switchyard binary's path) must be defined"
#endif

namespace switchyard {
namespace {

constexpr const char* kCluster = "cluster:\n  model: /nonexistent/model\n  workers: 2\n";

TEST(ServingConfig, DefaultsWithoutSection) {
  RuntimeConfig config;
  ASSERT_TRUE(ParseRuntimeConfigYaml(kCluster, "t.yaml", &config).ok());
  EXPECT_FALSE(config.has_serving);
  EXPECT_EQ(config.serving.host, "127.0.0.1");
  EXPECT_EQ(config.serving.port, 8000);
  EXPECT_EQ(config.serving.max_queue, 256);
  EXPECT_TRUE(config.serving.exit_on_worker_failure);
  EXPECT_EQ(RuntimeConfigToYaml(config).find("serving:"), std::string::npos);
}

TEST(ServingConfig, EveryKey) {
  RuntimeConfig config;
  const std::string text = std::string(kCluster) +
                           "serving:\n  host: 0.0.0.0\n  port: 0\n  served_model_name: m1\n"
                           "  max_queue: 7\n  max_running: 3\n  request_timeout_s: 9\n"
                           "  exit_on_worker_failure: false\n  worker_failure_grace_ms: 11\n"
                           "  shutdown_timeout_ms: 12\n  stats_interval_s: 0\n";
  Status s = ParseRuntimeConfigYaml(text, "t.yaml", &config);
  ASSERT_TRUE(s.ok()) << s.message();
  const ServingConfig& c = config.serving;
  EXPECT_TRUE(config.has_serving);
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.port, 0);
  EXPECT_EQ(c.served_model_name, "m1");
  EXPECT_EQ(c.max_queue, 7);
  EXPECT_EQ(c.max_running, 3);
  EXPECT_EQ(c.request_timeout_s, 9);
  EXPECT_FALSE(c.exit_on_worker_failure);
  EXPECT_EQ(c.worker_failure_grace_ms, 11);
  EXPECT_EQ(c.shutdown_timeout_ms, 12);
  EXPECT_EQ(c.stats_interval_s, 0);
  // The printed configuration reads back to the same values.
  RuntimeConfig again;
  s = ParseRuntimeConfigYaml(RuntimeConfigToYaml(config), "printed", &again);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(again.serving.served_model_name, "m1");
  EXPECT_EQ(again.serving.max_running, 3);
  EXPECT_FALSE(again.serving.exit_on_worker_failure);
  EXPECT_EQ(again.serving.stats_interval_s, 0);
}

TEST(ServingConfig, ErrorsNameTheKeyAndFile) {
  struct Case {
    const char* yaml;
    const char* want;
  } cases[] = {
      {"serving:\n  prot: 1\n", "unknown key 'serving.prot'"},
      {"serving:\n  port: eighty\n", "key 'serving.port' must be an integer"},
      {"serving:\n  port: 70000\n", "serving.port must be in [0, 65535], got 70000"},
      {"serving:\n  max_queue: 0\n", "serving.max_queue must be >= 1, got 0"},
      {"serving:\n  max_running: -2\n", "serving.max_running must be >= 1"},
      {"serving:\n  host: ''\n", "serving.host must be an address"},
      {"serving:\n  exit_on_worker_failure: maybe\n", "'serving.exit_on_worker_failure' must be"},
      {"serving:\n  shutdown_timeout_ms: 0\n", "serving.shutdown_timeout_ms must be in [1, "},
      {"serving:\n  stats_interval_s: -1\n", "serving.stats_interval_s must be in [0, "},
      {"serving: 5\n", "key 'serving' must be a mapping"},
      // Durations beyond 30 days would overflow the clocks' nanosecond time points (a deadline
      // in the past: every request timing out at once, a watchdog firing at shutdown).
      {"serving:\n  request_timeout_s: 10000000000\n",
       "serving.request_timeout_s must be in [1, 2592000], got 10000000000"},
      {"serving:\n  stats_interval_s: 10000000000\n",
       "serving.stats_interval_s must be in [0, 2592000] (0: off), got 10000000000"},
      {"serving:\n  shutdown_timeout_ms: 9223372036854775807\n",
       "serving.shutdown_timeout_ms must be in [1, 2592000000]"},
      {"serving:\n  worker_failure_grace_ms: 99999999999999\n",
       "serving.worker_failure_grace_ms must be in [1, 2592000000]"},
  };
  for (const Case& c : cases) {
    RuntimeConfig config;
    Status s = ParseRuntimeConfigYaml(c.yaml, "bad.yaml", &config);
    ASSERT_FALSE(s.ok()) << c.yaml;
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_NE(s.message().find(c.want), std::string::npos) << c.yaml << " -> " << s.message();
    EXPECT_NE(s.message().find("bad.yaml"), std::string::npos) << s.message();
  }
}

// `serve --print-config` prints the effective configuration before starting; the checkpoint
// does not exist, so the command then fails on it (exit code 1 or 2), which ends the test.
std::string PrintConfig(const std::string& config_path, const std::string& flags, int* rc) {
  testing::TempDir tmp;
  const std::string err = tmp.path() + "/stderr";
  const std::string cmd = "env -u SWITCHYARD_LOG_LEVEL '" + std::string(SWITCHYARD_CLI) +
                          "' serve --config '" + config_path + "' --print-config " + flags +
                          " >/dev/null 2>'" + err + "'";
  const int status = std::system(cmd.c_str());
  *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ServingConfig, FlagsOverrideYaml) {
  testing::TempDir tmp;
  const std::string path = tmp.path() + "/c.yaml";
  std::ofstream(path) << kCluster << "serving:\n  host: 10.0.0.1\n  port: 9000\n"
                      << "  served_model_name: from-yaml\n  max_queue: 5\n";
  int rc = 0;
  std::string out = PrintConfig(path, "", &rc);
  EXPECT_NE(out.find("  port: 9000\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  served_model_name: 'from-yaml'\n"), std::string::npos) << out;
  EXPECT_NE(rc, 0);
  out = PrintConfig(path, "--port 0 --served-model-name cli --max-queue 6 --host 0.0.0.0", &rc);
  EXPECT_NE(out.find("  host: 0.0.0.0\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  port: 0\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  served_model_name: 'cli'\n"), std::string::npos) << out;
  EXPECT_NE(out.find("  max_queue: 6\n"), std::string::npos) << out;
  EXPECT_NE(out.find("/nonexistent/model"), std::string::npos) << out;  // then it fails on it
  EXPECT_NE(rc, 0);
  // A bad flag is refused naming the flag set and the key.
  out = PrintConfig(path, "--max-running 0", &rc);
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("--max-running"), std::string::npos) << out;
  EXPECT_NE(out.find("serving.max_running must be >= 1, got 0"), std::string::npos) << out;
}

}  // namespace
}  // namespace switchyard
