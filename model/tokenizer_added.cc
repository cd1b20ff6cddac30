#include "model/tokenizer_added.h"

#include <algorithm>

#include "model/tokenizer_text.h"

namespace switchyard::tok {

AddedTokenMatcher::AddedTokenMatcher(std::vector<std::string> patterns,
                                     std::vector<AddedToken> tokens)
    : tokens_(std::move(tokens)) {
  nodes_.emplace_back();
  for (size_t t = 0; t < patterns.size(); ++t) {
    if (patterns[t].empty()) continue;
    first_byte_[static_cast<unsigned char>(patterns[t][0])] = true;
    int32_t node = 0;
    for (unsigned char b : patterns[t]) {
      auto& next = nodes_[node].next;
      auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(b, int32_t{-1}));
      if (it != next.end() && it->first == b) {
        node = it->second;
      } else {
        const auto child = static_cast<int32_t>(nodes_.size());
        next.insert(it, {b, child});
        nodes_.emplace_back();
        node = child;
      }
    }
    if (nodes_[node].token < 0) nodes_[node].token = static_cast<int32_t>(t);
  }
}

int32_t AddedTokenMatcher::LongestAt(std::string_view text, size_t pos, size_t* end) const {
  int32_t node = 0, found = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto b = static_cast<unsigned char>(text[i]);
    const auto& next = nodes_[node].next;
    auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(b, int32_t{-1}));
    if (it == next.end() || it->first != b) break;
    node = it->second;
    if (nodes_[node].token >= 0) {
      found = nodes_[node].token;
      *end = i + 1;
    }
  }
  return found;
}

namespace {

// The code point that ends just before byte `pos` of valid UTF-8.
char32_t CodePointBefore(std::string_view s, size_t pos) {
  size_t begin = pos - 1;
  while (begin > 0 && (static_cast<unsigned char>(s[begin]) & 0xC0) == 0x80) --begin;
  return NextCodePoint(s, &begin);
}

}  // namespace

void AddedTokenMatcher::Split(std::string_view text, bool at_start,
                              std::vector<Segment>* out) const {
  size_t done = 0;  // text before this has been emitted
  for (size_t pos = 0; pos < text.size();) {
    size_t end = 0;
    const int32_t t =
        first_byte_[static_cast<unsigned char>(text[pos])] ? LongestAt(text, pos, &end) : -1;
    if (t < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[t];
    size_t start = pos, stop = end;
    if (token.single_word) {
      size_t after = stop;
      const bool word_before = start > 0 && IsWordChar(CodePointBefore(text, start));
      const bool word_after = stop < text.size() && IsWordChar(NextCodePoint(text, &after));
      if (word_before || word_after) {
        ++pos;
        continue;
      }
    }
    if (token.lstrip) {
      while (start > done) {
        const char32_t cp = CodePointBefore(text, start);
        if (!IsWhitespace(cp)) break;
        size_t len = 1;
        while ((static_cast<unsigned char>(text[start - len]) & 0xC0) == 0x80) ++len;
        start -= len;
      }
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        size_t next = stop;
        if (!IsWhitespace(NextCodePoint(text, &next))) break;
        stop = next;
      }
    }
    if (start > done) {
      out->push_back({-1, std::string(text.substr(done, start - done)), at_start && done == 0});
    }
    out->push_back({token.id, std::string(), false});
    done = stop;
    pos = stop;
  }
  if (done < text.size()) {
    out->push_back({-1, std::string(text.substr(done)), at_start && done == 0});
  }
}

}  // namespace switchyard::tok
