// Normalizers and pre-tokenizers of a Hugging Face tokenizer.json (model/tokenizer.h), built from
// the "normalizer" and "pre_tokenizer" JSON objects. Supported: normalizers NFC/NFD/NFKC/NFKD,
// Prepend, Replace (String or Regex), Sequence; pre-tokenizers Split (String or Regex pattern,
// every behavior, invert), ByteLevel (add_prefix_space, use_regex), Metaspace (replacement,
// prepend_scheme, split), Sequence. Anything else: Unimplemented naming the JSON path.
// Thread-safety: built objects are immutable; Apply/Split may run concurrently.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace switchyard::tok {

class Regex;

// A piece of text on its way to the model. `at_start`: it begins at byte 0 of the input text
// (what Metaspace's prepend_scheme "first" asks).
struct Piece {
  std::string text;
  bool at_start = false;
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // `text` (valid UTF-8) normalized.
  virtual std::string Apply(std::string text) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces *pieces by their splits (empty pieces dropped). Errors: Internal on regex failure.
  virtual Status Split(std::vector<Piece>* pieces) const = 0;
};

// nullptr for a JSON null. `path` names the object in errors ("normalizer.normalizers[1]").
StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const nlohmann::json& j,
                                                      const std::string& path);
StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const nlohmann::json& j,
                                                          const std::string& path);

// Helpers shared with the loader: the member `key` of object `j` as a string / bool, or an
// InvalidArgument naming `path`.key. A missing member gives `fallback` when one is passed.
StatusOr<std::string> JsonString(const nlohmann::json& j, const std::string& key,
                                 const std::string& path, const char* fallback = nullptr);
// A {"String": s} / {"Regex": r} pattern object compiled; InvalidArgument naming `path`.
StatusOr<std::shared_ptr<const Regex>> ParsePattern(const nlohmann::json& j,
                                                    const std::string& path);
// `j` must be an object with a string "type": that string, else InvalidArgument naming `path`.
StatusOr<std::string> TypeOf(const nlohmann::json& j, const std::string& path);
// The list member `key` of `j`, else InvalidArgument naming `path`.key.
StatusOr<nlohmann::json> ArrayMember(const nlohmann::json& j, const std::string& key,
                                     const std::string& path);
StatusOr<bool> JsonBool(const nlohmann::json& j, const std::string& key, const std::string& path,
                        std::optional<bool> fallback = std::nullopt);

}  // namespace switchyard::tok
