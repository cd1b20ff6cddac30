// Runs the built `switchyard` binary (SWITCHYARD_CLI, set by CMake) through the shell: help,
// generate against the mixtral oracle fixture (tokens and --dump-logits), error reporting,
// make-default-model + info, and the runtime configuration precedence shown by --print-config.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "model/safetensors.h"
#include "test_util.h"

#ifndef SWITCHYARD_CLI
#error "SWITCHYARD_CLI (the switchyard binary's path) must be defined"
#endif

namespace switchyard {
namespace {

// Runtime settings the test does not choose are cleared from the child's environment.
constexpr const char* kCleanEnv =
    "env -u SWITCHYARD_LOG_LEVEL -u SWITCHYARD_NUM_THREADS -u SWITCHYARD_MAX_SEQ_LEN "
    "-u SWITCHYARD_MAX_BATCH_TOKENS -u SWITCHYARD_OMP_SPIN -u SWITCHYARD_HUGEPAGES -u "
    "GOMP_SPINCOUNT ";

struct Result {
  int rc = -1;
  std::string out, err;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class CliTest : public ::testing::Test {
 protected:
  // Runs `switchyard <args>` with `env` assignments (e.g. "A=1 B=2").
  Result Run(const std::string& args, const std::string& env = "") {
    const std::string out = tmp_.path() + "/stdout", err = tmp_.path() + "/stderr";
    const std::string cmd = std::string(kCleanEnv) + env + " '" + SWITCHYARD_CLI + "' " + args +
                            " >'" + out + "' 2>'" + err + "'";
    const int status = std::system(cmd.c_str());
    Result r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = ReadFile(out);
    r.err = ReadFile(err);
    return r;
  }
  std::string Fixture() const { return "'" + testing::FixtureDir("mixtral") + "'"; }
  testing::TempDir tmp_;
};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Non-zero exit and exactly one "switchyard: error:" line on stderr, holding `fragment`.
void ExpectCliError(const Result& r, const std::string& fragment) {
  EXPECT_NE(r.rc, 0) << r.err;
  int error_lines = 0;
  for (const auto& line : Lines(r.err)) {
    if (line.rfind("switchyard: error:", 0) == 0) {
      ++error_lines;
      EXPECT_NE(line.find(fragment), std::string::npos) << line;
    }
  }
  EXPECT_EQ(error_lines, 1) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

template <typename T>
std::vector<T> ReadReference(const std::string& name) {
  auto file = SafetensorsFile::Open(testing::FixtureDir("mixtral") + "/reference.safetensors");
  EXPECT_TRUE(file.ok()) << file.status().ToString();
  if (!file.ok()) return {};
  const TensorInfo* info = (*file)->Find(name);
  EXPECT_NE(info, nullptr) << name;
  if (info == nullptr) return {};
  std::vector<T> out(info->NumElements());
  std::memcpy(out.data(), (*file)->Data(*info), out.size() * sizeof(T));
  return out;
}

std::string Join(const std::vector<int32_t>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
  return s;
}

struct Npy {
  std::string header;
  std::vector<float> data;
};

Npy ReadNpy(const std::string& path) {
  const std::string bytes = ReadFile(path);
  Npy npy;
  EXPECT_GE(bytes.size(), 10u);
  if (bytes.size() < 10) return npy;
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t len = static_cast<uint8_t>(bytes[8]) | static_cast<uint8_t>(bytes[9]) << 8;
  EXPECT_EQ((10 + len) % 64, 0u);
  npy.header = bytes.substr(10, len);
  EXPECT_EQ(npy.header.back(), '\n');
  npy.data.resize((bytes.size() - 10 - len) / sizeof(float));
  std::memcpy(npy.data.data(), bytes.data() + 10 + len, npy.data.size() * sizeof(float));
  return npy;
}

TEST_F(CliTest, HelpListsCommands) {
  Result r = Run("--help");
  EXPECT_EQ(r.rc, 0) << r.err;
  for (const char* command : {"generate", "make-default-model", "info"}) {
    EXPECT_NE(r.out.find(command), std::string::npos) << r.out;
  }
  r = Run("generate --help");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("--prompt-ids"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--dump-logits"), std::string::npos) << r.out;
}

TEST_F(CliTest, GenerateMatchesReferenceAndDumpsLogits) {
  const auto input = ReadReference<int32_t>("prompt_0.input_ids");
  const auto output = ReadReference<int32_t>("prompt_0.output_ids");
  const auto logits = ReadReference<float>("prompt_0.logits");
  ASSERT_EQ(output.size(), 8u);
  ASSERT_EQ(logits.size(), 8u * 256);
  const std::string npy_path = tmp_.path() + "/logits.npy";
  Result r = Run("generate --model " + Fixture() + " --prompt-ids " + Join(input) +
                 " --max-new-tokens 8 --ignore-eos --dump-logits '" + npy_path + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, Join(output) + "\n");
  Npy npy = ReadNpy(npy_path);
  EXPECT_NE(npy.header.find("'descr': '<f4'"), std::string::npos) << npy.header;
  EXPECT_NE(npy.header.find("'fortran_order': False"), std::string::npos) << npy.header;
  EXPECT_NE(npy.header.find("'shape': (8, 256)"), std::string::npos) << npy.header;
  ASSERT_EQ(npy.data.size(), logits.size());
  for (size_t s = 0; s < 8; ++s) {
    double max_ref = 0, max_diff = 0;
    for (size_t v = 0; v < 256; ++v) {
      max_ref = std::max(max_ref, std::fabs(double{logits[s * 256 + v]}));
      max_diff = std::max(max_diff, std::fabs(double{npy.data[s * 256 + v]} - logits[s * 256 + v]));
    }
    EXPECT_LE(max_diff / max_ref, 1e-4) << "step " << s;
  }
}

TEST_F(CliTest, BatchRunWritesOneJsonLinePerRequest) {
  const auto input0 = ReadReference<int32_t>("prompt_0.input_ids");
  const auto output0 = ReadReference<int32_t>("prompt_0.output_ids");
  const auto input1 = ReadReference<int32_t>("prompt_1.input_ids");
  const auto output1 = ReadReference<int32_t>("prompt_1.output_ids");
  const std::string requests = tmp_.path() + "/requests.jsonl";
  const std::string results = tmp_.path() + "/results.jsonl";
  std::ofstream(requests) << "{\"id\": \"first\", \"prompt_ids\": [" << Join(input0)
                          << "], \"max_tokens\": 8, \"ignore_eos\": true}\n\n"
                          << "{\"prompt_ids\": [" << Join(input1)
                          << "], \"max_tokens\": 8, \"ignore_eos\": true}\n";
  Result r =
      Run("run --model " + Fixture() + " --requests '" + requests + "' --out '" + results + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("2 requests"), std::string::npos) << r.err;
  std::ifstream in(results);
  std::string line0, line1;
  ASSERT_TRUE(std::getline(in, line0) && std::getline(in, line1));
  EXPECT_NE(line0.find("\"id\":\"first\""), std::string::npos) << line0;
  EXPECT_NE(line0.find("\"tokens\":[" + Join(output0) + "]"), std::string::npos) << line0;
  EXPECT_NE(line1.find("\"id\":\"3\""), std::string::npos) << line1;  // default: line number
  EXPECT_NE(line1.find("\"tokens\":[" + Join(output1) + "]"), std::string::npos) << line1;
  std::ofstream(requests) << "{\"prompt_ids\": [1]}\n{\"prompt_ids\": [1], \"top_p\": 7}\n";
  ExpectCliError(Run("run --model " + Fixture() + " --requests '" + requests + "'"), "line 2");
}

TEST_F(CliTest, SeveralPromptsPrintOneLineEachAndDumpThreeDimensions) {
  const std::string npy_path = tmp_.path() + "/batch.npy";
  Result r = Run("generate --model " + Fixture() +
                 " --prompt-ids 3,4,5 --prompt-ids 7 --max-new-tokens 3 --ignore-eos"
                 " --dump-logits '" +
                 npy_path + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  auto lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 2u) << r.out;
  for (const auto& line : lines) EXPECT_EQ(std::count(line.begin(), line.end(), ','), 2) << line;
  Npy npy = ReadNpy(npy_path);
  EXPECT_NE(npy.header.find("'shape': (2, 3, 256)"), std::string::npos) << npy.header;
  EXPECT_EQ(npy.data.size(), 2u * 3 * 256);
}

TEST_F(CliTest, ErrorsAreOneLineAndNonZero) {
  ExpectCliError(Run("generate --model " + Fixture() + " --prompt-ids 1,x,3"), "'x'");
  ExpectCliError(Run("generate --model " + Fixture() + " --prompt-ids 1,-2"), "'-2'");
  ExpectCliError(Run("generate --model /nonexistent/switchyard --prompt-ids 1,2"),
                 "/nonexistent/switchyard");
  ExpectCliError(Run("generate --model " + Fixture() + " --prompt-ids 1 --bogus"), "--bogus");
  ExpectCliError(Run("generate --model " + Fixture() + " --prompt-ids 1,999"), "999");
  ExpectCliError(Run("generate --model " + Fixture() + " --prompt-ids 1 --top-p 2"), "top_p");
  ExpectCliError(Run("generate --prompt-ids 1"), "--model");
  ExpectCliError(Run("frobnicate"), "unknown command 'frobnicate'");
  ExpectCliError(Run("info --model /nonexistent/switchyard"), "/nonexistent/switchyard");
  ExpectCliError(
      Run("generate --model " + Fixture() + " --prompt-ids 1", "SWITCHYARD_MAX_SEQ_LEN=x"),
      "SWITCHYARD_MAX_SEQ_LEN");
  ExpectCliError(
      Run("generate --model " + Fixture() + " --prompt-ids 1", "SWITCHYARD_OMP_SPIN=lots"),
      "SWITCHYARD_OMP_SPIN='lots'");
  ExpectCliError(
      Run("generate --model " + Fixture() + " --prompt-ids 1", "SWITCHYARD_HUGEPAGES=maybe"),
      "SWITCHYARD_HUGEPAGES='maybe'");
}

// Smoke test: the OpenMP spin (a re-exec that sets GOMP_SPINCOUNT; ctest's OMP_WAIT_POLICY is
// dropped so that it happens) and where weights live change speed only, never the tokens.
TEST_F(CliTest, SpinAndHugePagesKeepTheTokens) {
  const std::string args =
      "generate --model " + Fixture() +
      " --prompt-ids 1,2,3 --max-new-tokens 6 --ignore-eos --expert-format nvfp4";
  const Result base = Run(args);
  ASSERT_EQ(base.rc, 0) << base.err;
  for (const char* env : {"-u OMP_WAIT_POLICY SWITCHYARD_OMP_SPIN=on",
                          "-u OMP_WAIT_POLICY SWITCHYARD_OMP_SPIN=2000 SWITCHYARD_HUGEPAGES=off",
                          "SWITCHYARD_HUGEPAGES=on SWITCHYARD_OMP_SPIN=off"}) {
    const Result r = Run(args, env);
    ASSERT_EQ(r.rc, 0) << env << ": " << r.err;
    EXPECT_EQ(r.out, base.out) << env;
  }
}

TEST_F(CliTest, MakeDefaultModelThenInfo) {
  const std::string dir = tmp_.path() + "/default";
  Result r = Run("make-default-model --out '" + dir + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find(dir), std::string::npos) << r.out;
  r = Run("info --model '" + dir + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("deepseek_v3: 4 layers (3 MoE)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("32 experts top-4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checkpoint: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("parameters: "), std::string::npos) << r.out;
  r = Run("generate --model '" + dir + "' --prompt-ids 5,6,7 --max-new-tokens 2 --ignore-eos");
  ASSERT_EQ(r.rc, 0) << r.err;
  ASSERT_EQ(Lines(r.out).size(), 1u) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ','), 1) << r.out;
}

TEST_F(CliTest, PlaceWritesAPlanThatValidatesBack) {
  // deepseek_v3_qlora: 16 experts in 4 groups, MoE layers 1 and 2; 2 nodes x 2 GPUs.
  const std::string plan = tmp_.path() + "/plan.json", load = tmp_.path() + "/load.json";
  std::ofstream(load) << R"({"layers": [[9,1,1,1,8,1,1,1,7,1,1,1,6,1,1,1],
                                       [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,30]]})";
  const std::string topo = " --nodes-per-rack 2 --gpus-per-node 2 --load '" + load + "'";
  Result r = Run("place --model " + testing::FixtureDir("deepseek_v3_qlora") + topo +
                 " --redundant-per-gpu 1 --out '" + plan + "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find("5 slots per GPU (1 redundant)"), std::string::npos) << r.out;
  r = Run("place --model " + testing::FixtureDir("deepseek_v3_qlora") + topo + " --plan '" + plan +
          "'");
  ASSERT_EQ(r.rc, 0) << r.err;
  std::ofstream(plan) << "{\"topology\": {}}";
  ExpectCliError(
      Run("place --model " + testing::FixtureDir("deepseek_v3_qlora") + " --plan '" + plan + "'"),
      "topology.'racks'");
  ExpectCliError(
      Run("place --model " + testing::FixtureDir("deepseek_v3_qlora") + " --gpus-per-node 3"),
      "must divide over 3 GPUs");
}

TEST_F(CliTest, PrintConfigShowsPrecedence) {
  const std::string yaml = tmp_.path() + "/runtime.yaml";
  std::ofstream(yaml) << "log_level: warn\nmax_seq_len: 100\nmax_batch_tokens: 50\n";
  // log_level: yaml; num_threads: default; max_batch_tokens: env over yaml; max_seq_len: flag.
  Result r = Run("generate --model " + Fixture() +
                     " --prompt-ids 1,2,3 --max-new-tokens 2 --print-config --max-seq-len 80"
                     " --config '" +
                     yaml + "'",
                 "SWITCHYARD_MAX_SEQ_LEN=90 SWITCHYARD_MAX_BATCH_TOKENS=40");
  ASSERT_EQ(r.rc, 0) << r.err;
  for (const char* line :
       {"log_level: warn", "num_threads: 0", "max_seq_len: 80", "max_batch_tokens: 40"}) {
    const auto lines = Lines(r.err);
    EXPECT_NE(std::find(lines.begin(), lines.end(), line), lines.end()) << line << "\n" << r.err;
  }
  // Without the flag the environment wins over the file.
  r = Run("generate --model " + Fixture() + " --prompt-ids 1 --max-new-tokens 1 --print-config" +
              " --config '" + yaml + "'",
          "SWITCHYARD_MAX_SEQ_LEN=90");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.err.find("max_seq_len: 90\n"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("max_batch_tokens: 50\n"), std::string::npos) << r.err;
  // A bad file is one error naming it.
  std::ofstream(yaml) << "max_seq_len: lots\n";
  ExpectCliError(Run("generate --model " + Fixture() + " --prompt-ids 1 --config '" + yaml + "'"),
                 "max_seq_len");
}

}  // namespace
}  // namespace switchyard
