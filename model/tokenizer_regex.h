// PCRE2 regular expressions for the tokenizer's Split pre-tokenizer and Replace normalizer.
// Patterns are Hugging Face (Oniguruma) syntax; compiled in UTF + UCP mode with JIT. `\s`/`\S`
// are rewritten to Unicode White_Space (Oniguruma's meaning; PCRE2's differs on U+180E).
// Thread-safety: a compiled Regex is immutable and may be used from any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace switchyard::tok {

class Regex {
 public:
  // Compiles `pattern` (a literal string when `literal`). Errors: InvalidArgument naming `where`
  // (the JSON path) and PCRE2's message with its offset.
  static StatusOr<std::shared_ptr<const Regex>> Compile(const std::string& pattern, bool literal,
                                                        const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends [begin, end) of every non-overlapping match in `text` (valid UTF-8), left to right.
  // Errors: Internal when PCRE2 fails at match time (e.g. JIT stack exhausted).
  Status FindAll(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const;

 private:
  Regex() = default;
  void* code_ = nullptr;  // pcre2_code_8*
  std::string where_;
};

}  // namespace switchyard::tok
