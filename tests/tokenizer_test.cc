// Tokenizer (model/tokenizer.h) against the `tokenizers` package: fixtures trained by
// tests/tokenizer/make_tokenizers.py in the tokenizer.json layouts of Qwen3, DeepSeek-V3 and
// Mixtral (two forms), with the ids and decoded texts `tokenizers` produced for edge cases.
#include "model/tokenizer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "common/file_util.h"
#include "model/batch_requests.h"
#include "model/model_config.h"
#include "model/random_checkpoint.h"
#include "model/tokenizer_text.h"
#include "test_util.h"

namespace switchyard {
namespace {

using json = nlohmann::json;

std::string FixturePath(const std::string& name) {
  return testing::SourceDir() + "/tests/tokenizer/fixtures/" + name;
}

std::unique_ptr<Tokenizer> Load(const std::string& family) {
  auto tokenizer = Tokenizer::FromFile(FixturePath(family + ".json"));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  return tokenizer.ok() ? std::move(tokenizer).value() : nullptr;
}

json Expected(const std::string& family) {
  auto text = ReadFileToString(FixturePath(family + ".expected.json"));
  EXPECT_TRUE(text.ok()) << text.status().ToString();
  return json::parse(text.ok() ? *text : "{\"cases\": []}");
}

// Streams `ids` one at a time: every chunk must be valid UTF-8 and the chunks must add up to
// the whole decode.
void ExpectStreamingMatches(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                            bool skip_special, const std::string& whole, const std::string& what) {
  StreamingDecoder stream(tokenizer, skip_special);
  std::string joined;
  for (int32_t id : ids) {
    auto chunk = stream.Push(id);
    ASSERT_TRUE(chunk.ok()) << chunk.status().ToString();
    ASSERT_TRUE(tok::ValidateUtf8(*chunk, "chunk").ok()) << what << " id " << id;
    joined += *chunk;
  }
  const std::string rest = stream.Flush();
  ASSERT_TRUE(tok::ValidateUtf8(rest, "flush").ok()) << what;
  joined += rest;
  EXPECT_EQ(joined, whole) << what;
}

// Every case of `expected` (a *.expected.json): ids with and without special tokens, both decodes,
// and streaming decodes equal to them.
void ExpectMatchesPackage(const Tokenizer& tokenizer, const json& expected,
                          const std::string& name) {
  ASSERT_GT(expected["cases"].size(), 50u);
  int failures = 0;
  for (const json& c : expected["cases"]) {
    const std::string text = c["text"].get<std::string>();
    const std::string what = name + " text " + json(text).dump();
    auto ids = tokenizer.Encode(text, true);
    ASSERT_TRUE(ids.ok()) << ids.status().ToString();
    auto plain = tokenizer.Encode(text, false);
    ASSERT_TRUE(plain.ok()) << plain.status().ToString();
    failures += *ids != c["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(*ids, c["ids"].get<std::vector<int32_t>>()) << what;
    EXPECT_EQ(*plain, c["ids_plain"].get<std::vector<int32_t>>()) << what;
    auto decoded = tokenizer.Decode(*ids, false);
    auto decoded_skip = tokenizer.Decode(*ids, true);
    ASSERT_TRUE(decoded.ok() && decoded_skip.ok());
    EXPECT_EQ(*decoded, c["decoded"].get<std::string>()) << what;
    EXPECT_EQ(*decoded_skip, c["decoded_skip"].get<std::string>()) << what;
    ExpectStreamingMatches(tokenizer, *ids, false, *decoded, what);
    ExpectStreamingMatches(tokenizer, *ids, true, *decoded_skip, what);
    if (failures > 5) break;  // enough to diagnose
  }
}

class FamilyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FamilyTest, IdsAndTextsEqualTokenizersPackage) {
  auto tokenizer = Load(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  ExpectMatchesPackage(*tokenizer, Expected(GetParam()), GetParam());
}

TEST_P(FamilyTest, RoundTripsTextOfNoSpecialTokens) {
  auto tokenizer = Load(GetParam());
  ASSERT_NE(tokenizer, nullptr);
  // Byte-level files reproduce any text; the SentencePiece-style ones lose only what their
  // normalizer changes (a leading space is stripped by the decoder), so compare on plain text.
  const std::vector<std::string> texts = {"Hello world", "中文和日本語のテキスト",
                                          "emoji 👨‍👩‍👧‍👦 and 🇺🇸 flags",
                                          "tabs\tand\n\nnewlines", "Привет, мир! 123456"};
  for (const std::string& text : texts) {
    auto ids = tokenizer->Encode(text, false);
    ASSERT_TRUE(ids.ok());
    auto back = tokenizer->Decode(*ids, false);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, text) << GetParam();
  }
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyTest,
                         ::testing::Values("qwen3", "deepseek", "mixtral", "mixtral_metaspace"));

TEST(TokenizerTest, SpecialTokensAndBos) {
  auto qwen = Load("qwen3");
  auto deepseek = Load("deepseek");
  ASSERT_TRUE(qwen && deepseek);
  const int32_t im_start = *qwen->TokenToId("<|im_start|>");
  const int32_t im_end = *qwen->TokenToId("<|im_end|>");
  auto ids = qwen->Encode("<|im_start|>user\nhi<|im_end|>", true);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->front(), im_start);
  EXPECT_EQ(ids->back(), im_end);
  EXPECT_TRUE(qwen->IsSpecial(im_end));
  EXPECT_FALSE(qwen->IsSpecial(*qwen->TokenToId("<think>")));  // added but not special
  EXPECT_EQ(*qwen->Decode(*ids, true), "user\nhi");
  // DeepSeek-V3 prepends BOS (id 0) through its TemplateProcessing post-processor.
  auto with_bos = deepseek->Encode("hi", true);
  auto without = deepseek->Encode("hi", false);
  ASSERT_TRUE(with_bos.ok() && without.ok());
  EXPECT_EQ(with_bos->front(), *deepseek->TokenToId("<｜begin▁of▁sentence｜>"));
  EXPECT_EQ(with_bos->size(), without->size() + 1);
}

TEST(TokenizerTest, StreamingHoldsBackPartialCharacters) {
  auto qwen = Load("qwen3");
  ASSERT_NE(qwen, nullptr);
  // Byte tokens of one 4-byte emoji: nothing may come out before the last byte.
  std::vector<int32_t> ids;
  for (unsigned char b : std::string("🚀")) {
    auto id = qwen->TokenToId(tok::ByteToUnicode(b));
    ASSERT_TRUE(id.has_value());
    ids.push_back(*id);
  }
  StreamingDecoder stream(*qwen, false);
  for (size_t i = 0; i + 1 < ids.size(); ++i) EXPECT_EQ(*stream.Push(ids[i]), "");
  EXPECT_EQ(*stream.Push(ids.back()), "🚀");
  // A cut character is completed by U+FFFD at the end, as the full decode does.
  EXPECT_EQ(*stream.Push(ids[0]), "");
  EXPECT_EQ(stream.Flush(), "\xEF\xBF\xBD");
  EXPECT_EQ(*qwen->Decode({ids[0]}, false), "\xEF\xBF\xBD");
  EXPECT_EQ(stream.Push(1 << 30).status().code(), StatusCode::kOutOfRange);
  EXPECT_EQ(qwen->Decode({1 << 30}, false).status().code(), StatusCode::kOutOfRange);
}

TEST(TokenizerTest, RandomIdsStreamLikeWholeDecode) {
  for (const char* family : {"qwen3", "deepseek", "mixtral"}) {
    auto tokenizer = Load(family);
    ASSERT_NE(tokenizer, nullptr);
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> pick(0,
                                                static_cast<int32_t>(tokenizer->vocab_size() - 1));
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<int32_t> ids;
      for (int k = 0; k < 20; ++k) ids.push_back(pick(rng));
      auto whole = tokenizer->Decode(ids, trial % 2 == 1);
      ASSERT_TRUE(whole.ok());
      ASSERT_TRUE(tok::ValidateUtf8(*whole, "decode").ok());
      ExpectStreamingMatches(*tokenizer, ids, trial % 2 == 1, *whole, family);
    }
  }
}

// Encode is const and shares the BPE cache: threads encoding at once get the serial results.
TEST(TokenizerTest, ConcurrentEncodesAgree) {
  auto tokenizer = Load("qwen3");
  ASSERT_NE(tokenizer, nullptr);
  const json expected = Expected("qwen3");
  std::vector<std::string> texts;
  std::vector<std::vector<int32_t>> want;
  for (const json& c : expected["cases"]) {
    texts.push_back(c["text"]);
    want.push_back(c["ids"]);
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          const size_t k = (i * 7 + t) % texts.size();
          auto ids = tokenizer->Encode(texts[k], true);
          if (!ids.ok() || *ids != want[k]) ++mismatches;
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(TokenizerTest, RejectsInvalidUtf8Input) {
  auto qwen = Load("qwen3");
  ASSERT_NE(qwen, nullptr);
  auto ids = qwen->Encode(std::string("ok\xC3", 3), false);
  ASSERT_FALSE(ids.ok());
  EXPECT_NE(ids.status().message().find("byte 2"), std::string::npos) << ids.status().ToString();
}

// The built-in default model ships a tokenizer with exactly its vocab (DeepSeek-V3 layout).
TEST(TokenizerTest, DefaultModelTokenizerMatchesTheModel) {
  auto tokenizer = Tokenizer::FromJson(DefaultModelTokenizerJson(), "default tokenizer.json");
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status().ToString();
  auto config = ParseModelConfig(DefaultModelConfigJson(), "default config.json");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ((*tokenizer)->vocab_size(), config->vocab_size);
  EXPECT_EQ((*tokenizer)->TokenToId("<｜begin▁of▁sentence｜>"), 0);
  EXPECT_EQ((*tokenizer)->TokenToId("<｜end▁of▁sentence｜>"), 1);
  EXPECT_EQ((*(*tokenizer)->Encode("Hello", true))[0], 0);  // BOS
  ExpectMatchesPackage(**tokenizer, Expected("default_model"), "default_model");
}

TEST(BatchRequestsTest, PromptTextIsEncodedWhenATokenizerIsPresent) {
  auto tokenizer = Load("deepseek");
  ASSERT_NE(tokenizer, nullptr);
  const std::string jsonl =
      "{\"id\": \"t\", \"prompt\": \"Hello 世界\", \"max_tokens\": 2}\n"
      "{\"prompt_ids\": [5, 6]}\n";
  auto batch = ParseBatchRequests(jsonl, "req.jsonl", tokenizer.get());
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  ASSERT_EQ(batch->size(), 2u);
  EXPECT_EQ((*batch)[0].request.prompt, *tokenizer->Encode("Hello 世界", true));
  EXPECT_EQ((*batch)[1].request.prompt, (std::vector<int32_t>{5, 6}));
  auto no_tokenizer = ParseBatchRequests(jsonl, "req.jsonl", nullptr);
  ASSERT_FALSE(no_tokenizer.ok());
  EXPECT_NE(no_tokenizer.status().message().find("req.jsonl line 1: 'prompt' needs a tokenizer"),
            std::string::npos)
      << no_tokenizer.status().ToString();
  auto both = ParseBatchRequests("{\"prompt\": \"a\", \"prompt_ids\": [1]}", "r", tokenizer.get());
  EXPECT_NE(both.status().message().find("exactly one of"), std::string::npos);
  auto neither = ParseBatchRequests("{\"max_tokens\": 1}", "r", tokenizer.get());
  EXPECT_NE(neither.status().message().find("exactly one of"), std::string::npos);
  GenerationResult result;
  result.tokens = *tokenizer->Encode("Привет", false);
  result.finish_reason = "length";
  const json line = json::parse(FormatBatchResult((*batch)[0], result, tokenizer.get()));
  EXPECT_EQ(line["text"], "Привет");
  EXPECT_FALSE(json::parse(FormatBatchResult((*batch)[0], result)).contains("text"));
}

// Bad tokenizer.json files: each error names the JSON path of what is wrong.
TEST(TokenizerTest, BadFilesNameTheJsonPath) {
  auto text = ReadFileToString(FixturePath("qwen3.json"));
  ASSERT_TRUE(text.ok());
  const json good = json::parse(*text);
  auto error_of = [](const std::string& s) {
    auto t = Tokenizer::FromJson(s, "bad.json");
    return t.ok() ? std::string("OK") : t.status().ToString();
  };
  auto expect_error = [&](const std::string& s, const std::string& part) {
    const std::string message = error_of(s);
    EXPECT_NE(message.find(part), std::string::npos) << message;
    EXPECT_NE(message.find("bad.json"), std::string::npos) << message;
  };
  expect_error(text->substr(0, text->size() / 2), "bad JSON at byte");
  json j = good;
  j["model"].erase("vocab");
  expect_error(j.dump(), "model.vocab: missing");
  j = good;
  j["model"]["merges"][3] = json::array({"Ġ", "no-such-token"});
  expect_error(j.dump(), "model.merges[3]: token 'no-such-token' is not in the vocab");
  j = good;
  j["model"]["merges"][0] = "abc";
  expect_error(j.dump(), "model.merges[0]");
  j = good;
  j["model"]["type"] = "Unigram";
  expect_error(j.dump(), "model.type: model 'Unigram' is not supported");
  j = good;
  j["pre_tokenizer"]["pretokenizers"][0]["type"] = "Whitespace";
  expect_error(j.dump(), "pre_tokenizer.pretokenizers[0].type: pre-tokenizer 'Whitespace'");
  j = good;
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  expect_error(j.dump(), "pre_tokenizer.pretokenizers[0].pattern: bad regex");
  j = good;
  j["normalizer"] = {{"type", "Lowercase"}};
  expect_error(j.dump(), "normalizer.type: normalizer 'Lowercase'");
  j = good;
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j.dump(), "decoder.type: decoder 'WordPiece'");
  j = good;
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  expect_error(j.dump(), "post_processor.type");
  j = good;
  j["added_tokens"][0].erase("content");
  expect_error(j.dump(), "added_tokens[0].content: missing");
  j = good;
  j["model"]["unk_token"] = "<nope>";
  expect_error(j.dump(), "model.unk_token: '<nope>' is not in the vocab");
  EXPECT_EQ(error_of(good.dump()), "OK");
  auto missing = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
}

// Throughput on ~1 MB of the multilingual corpus (printed; the bound only catches pathologies).
TEST(TokenizerTest, EncodesOneMegabyteQuickly) {
  auto corpus = ReadFileToString(testing::SourceDir() + "/tests/tokenizer/corpus.txt");
  ASSERT_TRUE(corpus.ok());
  std::string text;
  for (int copy = 0; text.size() < (1 << 20); ++copy) text += std::to_string(copy) + " " + *corpus;
  for (const char* family : {"qwen3", "deepseek", "mixtral"}) {
    auto tokenizer = Load(family);
    ASSERT_NE(tokenizer, nullptr);
    const auto start = std::chrono::steady_clock::now();
    auto ids = tokenizer->Encode(text, false);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ASSERT_TRUE(ids.ok());
    std::printf("%s: %zu bytes -> %zu tokens in %.3f s (%.0f tokens/s, %.2f MB/s)\n", family,
                text.size(), ids->size(), seconds, ids->size() / seconds,
                text.size() / seconds / 1e6);
    EXPECT_LT(seconds, 20.0);
    auto back = tokenizer->Decode(*ids, false);
    ASSERT_TRUE(back.ok());
    if (std::string(family) != "mixtral") {
      EXPECT_EQ(*back, text);
    }
  }
}

}  // namespace
}  // namespace switchyard
