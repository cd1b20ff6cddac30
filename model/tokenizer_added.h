// Added tokens of a tokenizer.json ("added_tokens"): matched in the text before pre-tokenization,
// leftmost-longest, with the single_word / lstrip / rstrip flags of tokenizers' AddedVocabulary.
// Tokens with normalized=false are matched in the raw text, the others in the normalized text.
// Thread-safety: immutable after construction.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace switchyard::tok {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

// A stretch of text: an added token (id >= 0) or text to tokenize (id < 0).
struct Segment {
  int32_t id = -1;
  std::string text;
  bool at_start = false;  // begins at byte 0 of the input
};

class AddedTokenMatcher {
 public:
  // `patterns[i]` is what token `tokens[i]` matches (its content, or its normalized content).
  // Empty patterns never match.
  AddedTokenMatcher(std::vector<std::string> patterns, std::vector<AddedToken> tokens);

  // Appends the segments of `text` to *out. `at_start` says whether `text` begins at byte 0 of the
  // input. Text segments may be empty only when `text` is (then none is appended).
  void Split(std::string_view text, bool at_start, std::vector<Segment>* out) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
    int32_t token = -1;                                   // index of a token ending here
  };
  // Index into tokens_ of the longest pattern starting at text[pos], or -1; *end = its end.
  int32_t LongestAt(std::string_view text, size_t pos, size_t* end) const;

  std::vector<Node> nodes_;
  std::vector<AddedToken> tokens_;
  bool first_byte_[256] = {};
};

}  // namespace switchyard::tok
