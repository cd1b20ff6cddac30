// The BPE model of a Hugging Face tokenizer.json ("model": {"type": "BPE", ...}): vocab, ranked
// merges (both the "a b" and the ["a", "b"] forms), unk_token/fuse_unk, byte_fallback ("<0xAB>"
// tokens), continuing_subword_prefix / end_of_word_suffix, ignore_merges. Words are merged by rank
// (lowest first, leftmost among equals) with a heap, so long words stay O(n log n); results for
// short words are cached.
// Thread-safety: Tokenize may run concurrently (the cache has its own lock).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace switchyard::tok {

class BpeModel {
 public:
  // Builds the model from the "model" object; `path` ("model") names members in errors:
  // missing vocab, an id out of range or used twice, a merge naming an unknown token or whose
  // result is not in the vocab, an unk_token outside the vocab, dropout > 0 (Unimplemented).
  static StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& j,
                                                      const std::string& path);

  // Appends the ids of one pre-tokenized word. Characters outside the vocab become byte-fallback
  // tokens, the unk token, or are dropped (no unk_token), as in tokenizers.
  void Tokenize(std::string_view word, std::vector<int32_t>* ids) const;

  // Number of ids (max id + 1) of the model's own vocab.
  int64_t vocab_size() const { return static_cast<int64_t>(id_to_token_.size()); }
  // The token string of `id`, or nullptr when the vocab has no such id.
  const std::string* IdToToken(int32_t id) const;
  std::optional<int32_t> TokenToId(std::string_view token) const;

 private:
  void Merge(std::string_view word, std::vector<int32_t>* ids) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  // (left id << 32 | right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_, end_of_word_suffix_;
  int32_t byte_ids_[256];  // "<0xAB>" ids when byte_fallback, else -1

  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace switchyard::tok
