// `switchyard generate --prompt TEXT` and `switchyard run` with "prompt": "text" on the built-in
// default model, whose tokenizer.json make-default-model writes; and their errors without one.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/random_checkpoint.h"
#include "model/tokenizer.h"
#include "test_util.h"

namespace switchyard {
namespace {

struct Result {
  int rc = -1;
  std::string out, err;
};

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class CliPromptTest : public ::testing::Test {
 protected:
  Result Run(const std::string& args) {
    const std::string out = tmp_.path() + "/stdout", err = tmp_.path() + "/stderr";
    const std::string cmd = std::string("env -u SWITCHYARD_CONFIG '") + SWITCHYARD_CLI + "' " +
                            args + " >'" + out + "' 2>'" + err + "'";
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadAll(out), ReadAll(err)};
  }
  std::vector<std::string> Lines(const std::string& text) {
    std::vector<std::string> lines;
    std::stringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
  testing::TempDir tmp_;
};

TEST_F(CliPromptTest, TextPromptsOnTheDefaultModel) {
  const std::string dir = tmp_.path() + "/model";
  ASSERT_EQ(Run("make-default-model --out '" + dir + "'").rc, 0);
  auto tokenizer = Tokenizer::FromFile(dir + "/tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  const std::vector<int32_t> prompt = *(*tokenizer)->Encode("Hello, 世界", true);
  std::string prompt_ids;
  for (int32_t id : prompt) prompt_ids += (prompt_ids.empty() ? "" : ",") + std::to_string(id);

  // --prompt TEXT generates what --prompt-ids of its encoding generates, plus the text line.
  Result text = Run("generate --model '" + dir + "' --prompt 'Hello, 世界' --max-new-tokens 4 " +
                    "--ignore-eos");
  ASSERT_EQ(text.rc, 0) << text.err;
  Result ids = Run("generate --model '" + dir + "' --prompt-ids " + prompt_ids +
                   " --max-new-tokens 4 --ignore-eos");
  ASSERT_EQ(ids.rc, 0) << ids.err;
  const auto lines = Lines(text.out);
  ASSERT_EQ(lines.size(), 2u) << text.out;
  EXPECT_EQ(lines[0] + "\n", ids.out);
  ASSERT_EQ(lines[1].rfind("text: ", 0), 0u) << lines[1];
  std::vector<int32_t> generated;
  std::stringstream in(lines[0]);
  for (std::string item; std::getline(in, item, ',');) generated.push_back(std::stoi(item));
  const auto shown = nlohmann::json::parse(lines[1].substr(6));
  EXPECT_EQ(shown.get<std::string>(), *(*tokenizer)->Decode(generated, true));

  // Batch mode: "prompt" texts next to "prompt_ids", results carry "text".
  const std::string requests = tmp_.path() + "/requests.jsonl";
  std::ofstream(requests)
      << "{\"prompt\": \"Hello, 世界\", \"max_tokens\": 4, \"ignore_eos\": true}\n"
      << "{\"prompt_ids\": [" << prompt_ids << "], \"max_tokens\": 4, \"ignore_eos\": true}\n";
  Result batch = Run("run --model '" + dir + "' --requests '" + requests + "'");
  ASSERT_EQ(batch.rc, 0) << batch.err;
  const auto results = Lines(batch.out);
  ASSERT_EQ(results.size(), 2u) << batch.out;
  const auto first = nlohmann::json::parse(results[0]), second = nlohmann::json::parse(results[1]);
  EXPECT_EQ(first["prompt_tokens"], prompt.size());
  EXPECT_EQ(first["tokens"], second["tokens"]);
  EXPECT_EQ(first["tokens"].get<std::vector<int32_t>>(), generated);
  EXPECT_EQ(first["text"], shown);

  // Without a tokenizer.json: a clear error naming the file.
  std::filesystem::remove(dir + "/tokenizer.json");
  Result missing = Run("generate --model '" + dir + "' --prompt hi");
  EXPECT_NE(missing.rc, 0);
  EXPECT_NE(missing.err.find("tokenizer.json"), std::string::npos) << missing.err;
  Result none = Run("generate --model '" + dir + "'");
  EXPECT_NE(none.rc, 0);
  EXPECT_NE(none.err.find("--prompt-ids IDS or --prompt TEXT"), std::string::npos) << none.err;
}

}  // namespace
}  // namespace switchyard
