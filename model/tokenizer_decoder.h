// Decoders of a tokenizer.json ("decoder"): ByteLevel; Metaspace; a Sequence of Replace (String),
// ByteFallback, Fuse, Strip (leading only, after Fuse) as SentencePiece-style BPE files use; null
// (tokens joined by spaces). Compiled into a DecodePlan that decodes a whole token list (as
// tokenizers does) or a stream of tokens that emits only complete UTF-8.
// Thread-safety: a DecodePlan is immutable; a DecodeStream belongs to one thread.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace switchyard::tok {

struct DecodePlan {
  bool join_with_space = false;  // no decoder
  bool byte_level = false;       // tokens are GPT-2 byte-mapped; output repaired as lossy UTF-8
  std::vector<std::pair<std::string, std::string>> replacements;  // per token, in order
  bool byte_fallback = false;  // "<0xAB>" tokens are bytes; an invalid run becomes U+FFFD each
  std::string strip;           // leading characters to strip from the whole output ...
  int strip_count = 0;         // ... at most this many

  // Decodes a whole token list.
  std::string Decode(const std::vector<std::string_view>& tokens) const;
};

// Errors: Unimplemented naming the JSON path of an unsupported decoder or arrangement.
StatusOr<DecodePlan> ParseDecoder(const nlohmann::json& j, const std::string& path);

// Incremental decoding with the same result as DecodePlan::Decode over all pushed tokens: Push
// returns the text that is final (complete UTF-8, never revised), Finish the rest.
class DecodeStream {
 public:
  explicit DecodeStream(const DecodePlan* plan) : plan_(plan), strip_left_(plan->strip_count) {}
  std::string Push(std::string_view token);
  std::string Finish();

 private:
  std::string Strip(std::string text);

  const DecodePlan* plan_;
  std::string pending_;  // incomplete UTF-8 (byte_level) or a byte-fallback run
  int strip_left_;
  bool first_ = true;
};

}  // namespace switchyard::tok
