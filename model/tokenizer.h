// Hugging Face tokenizer.json in C++: byte-level BPE (Qwen2/3, DeepSeek-V3, GPT-2 style) and
// SentencePiece-style BPE with byte fallback (Llama/Mistral/Mixtral), with their normalizers,
// pre-tokenizer regexes, added/special tokens, BOS post-processing and decoders. Results equal the
// `tokenizers` package's (checked by tests/tokenizer_test.cc and
// tests/tokenizer/check_tokenizers.py).
//
//   ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::FromFile(dir + "/tokenizer.json"));
//   ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer->Encode(text, true));
//   StreamingDecoder stream(*tokenizer, /*skip_special_tokens=*/true);
//   for (int32_t id : generated) { ASSIGN_OR_RETURN(std::string chunk, stream.Push(id));
//   send(chunk); } send(stream.Flush());
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace switchyard {

namespace tok {
class DecodeStream;
}

class Tokenizer {
 public:
  // Parses tokenizer.json text. `origin` (a file name) prefixes errors, which name the JSON path:
  // bad JSON, a missing/ill-typed member ("model.vocab: missing"), a merge naming an unknown token
  // ("model.merges[12]: token 'x' is not in the vocab"), an unsupported component
  // (Unimplemented "pre_tokenizer.pretokenizers[0].type: pre-tokenizer 'Whitespace' ...").
  static StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json_text,
                                                       const std::string& origin);
  // Reads and parses a tokenizer.json file. NotFound when it cannot be read.
  static StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text` (UTF-8). With `add_special_tokens` the post-processor's template is
  // applied (e.g. a BOS token in front). Errors: InvalidArgument when `text` is not valid UTF-8
  // (naming the byte offset). Thread-safe; may run concurrently with any const method.
  StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;

  // Text of `ids`; special added tokens are left out with `skip_special_tokens`. Invalid UTF-8 that
  // the tokens spell (a cut multi-byte character) becomes U+FFFD as in `tokenizers`. Errors:
  // OutOfRange naming the first id that is no token. Thread-safe.
  StatusOr<std::string> Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;

  // One past the largest token id (model vocab and added tokens).
  int64_t vocab_size() const;
  // Id of a token string (added tokens first, then the model vocab), if any.
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The token string of `id` (not decoded text), or nullopt when `id` is no token.
  std::optional<std::string> IdToToken(int32_t id) const;
  // True for added tokens marked "special" (those Decode skips on request).
  bool IsSpecial(int32_t id) const;

  struct Impl;

 private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  friend class StreamingDecoder;
};

// Decodes generated ids one at a time for streaming (SSE chunks): every returned chunk is complete
// UTF-8 and the concatenation of all chunks plus Flush() equals Tokenizer::Decode of all ids.
// Partial multi-byte characters (and byte-fallback runs) are held back until they complete.
// Holds a pointer to `tokenizer`, which must outlive it. Not thread-safe; one per request.
class StreamingDecoder {
 public:
  StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens);
  ~StreamingDecoder();
  // Text that became final with `id` (possibly empty). OutOfRange for an id that is no token (the
  // decoder's state is unchanged then).
  StatusOr<std::string> Push(int32_t id);
  // Whatever is held back (an unfinished character becomes U+FFFD); the decoder may be reused
  // for a new sequence after Flush.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_tokens_;
  std::unique_ptr<tok::DecodeStream> stream_;
};

}  // namespace switchyard
