#include "model/tokenizer_pipeline.h"

#include <nlohmann/json.hpp>

#include "model/tokenizer_regex.h"
#include "model/tokenizer_text.h"

namespace switchyard::tok {

using json = nlohmann::json;

StatusOr<std::string> JsonString(const json& j, const std::string& key, const std::string& path,
                                 const char* fallback) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback != nullptr) return std::string(fallback);
    return InvalidArgumentError(path + "." + key + ": missing");
  }
  if (!j[key].is_string()) return InvalidArgumentError(path + "." + key + ": not a string");
  return j[key].get<std::string>();
}

StatusOr<bool> JsonBool(const json& j, const std::string& key, const std::string& path,
                        std::optional<bool> fallback) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback) return *fallback;
    return InvalidArgumentError(path + "." + key + ": missing");
  }
  if (!j[key].is_boolean()) return InvalidArgumentError(path + "." + key + ": not true/false");
  return j[key].get<bool>();
}

// {"String": s} or {"Regex": r} -> compiled pattern.
StatusOr<std::shared_ptr<const Regex>> ParsePattern(const json& j, const std::string& path) {
  if (j.is_object() && j.size() == 1 && j.contains("String") && j["String"].is_string()) {
    return Regex::Compile(j["String"].get<std::string>(), /*literal=*/true, path);
  }
  if (j.is_object() && j.size() == 1 && j.contains("Regex") && j["Regex"].is_string()) {
    return Regex::Compile(j["Regex"].get<std::string>(), /*literal=*/false, path);
  }
  return InvalidArgumentError(path + ": expected {\"String\": ...} or {\"Regex\": ...}");
}

StatusOr<std::string> TypeOf(const json& j, const std::string& path) {
  if (!j.is_object()) return InvalidArgumentError(path + ": not a JSON object");
  return JsonString(j, "type", path);
}

StatusOr<json> ArrayMember(const json& j, const std::string& key, const std::string& path) {
  if (!j.contains(key) || !j[key].is_array()) {
    return InvalidArgumentError(path + "." + key + ": missing or not a list");
  }
  return j[key];
}

namespace {

// ---- pre-tokenizers ----

enum class Behavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Splits every piece at the pattern's matches, as tokenizers' NormalizedString::split does.
Status SplitPieces(const Regex& regex, Behavior behavior, bool invert, std::vector<Piece>* pieces) {
  std::vector<Piece> out;
  std::vector<std::pair<size_t, size_t>> found;
  struct Range {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Range> ranges, merged;
  for (Piece& piece : *pieces) {
    found.clear();
    RETURN_IF_ERROR(regex.FindAll(piece.text, &found));
    ranges.clear();
    size_t prev = 0;
    for (const auto& [b, e] : found) {
      if (b > prev) ranges.push_back({prev, b, invert});
      ranges.push_back({b, e, !invert});
      prev = e;
    }
    if (prev < piece.text.size()) ranges.push_back({prev, piece.text.size(), invert});
    merged.clear();
    switch (behavior) {
      case Behavior::kRemoved:
        for (const Range& r : ranges) {
          if (!r.is_match) merged.push_back(r);
        }
        break;
      case Behavior::kIsolated:
        merged = ranges;
        break;
      case Behavior::kContiguous:
        for (size_t i = 0; i < ranges.size(); ++i) {
          if (i > 0 && ranges[i].is_match == ranges[i - 1].is_match) {
            merged.back().end = ranges[i].end;
          } else {
            merged.push_back(ranges[i]);
          }
        }
        break;
      case Behavior::kMergedWithPrevious: {
        bool previous_match = false;
        for (const Range& r : ranges) {
          if (r.is_match && !previous_match && !merged.empty()) {
            merged.back().end = r.end;
          } else {
            merged.push_back(r);
          }
          previous_match = r.is_match;
        }
        break;
      }
      case Behavior::kMergedWithNext: {
        bool previous_match = false;
        for (size_t k = ranges.size(); k-- > 0;) {
          const Range& r = ranges[k];
          if (r.is_match && !previous_match && !merged.empty()) {
            merged.back().begin = r.begin;
          } else {
            merged.push_back(r);
          }
          previous_match = r.is_match;
        }
        std::reverse(merged.begin(), merged.end());
        break;
      }
    }
    for (const Range& r : merged) {
      if (r.end > r.begin) {
        out.push_back(
            {piece.text.substr(r.begin, r.end - r.begin), piece.at_start && r.begin == 0});
      }
    }
  }
  *pieces = std::move(out);
  return OkStatus();
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::shared_ptr<const Regex> regex, Behavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  Status Split(std::vector<Piece>* pieces) const override {
    return SplitPieces(*regex_, behavior_, invert_, pieces);
  }

 private:
  std::shared_ptr<const Regex> regex_;
  Behavior behavior_;
  bool invert_;
};

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::shared_ptr<const Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  Status Split(std::vector<Piece>* pieces) const override {
    if (add_prefix_space_) {
      for (Piece& p : *pieces) {
        if (p.text.empty() || p.text[0] != ' ') p.text.insert(0, " ");
      }
    }
    if (regex_) RETURN_IF_ERROR(SplitPieces(*regex_, Behavior::kIsolated, false, pieces));
    for (Piece& p : *pieces) {
      std::string mapped;
      mapped.reserve(p.text.size() * 2);
      for (unsigned char b : p.text) mapped += ByteToUnicode(b);
      p.text = std::move(mapped);
    }
    return OkStatus();
  }

 private:
  bool add_prefix_space_;
  std::shared_ptr<const Regex> regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme,
                        std::shared_ptr<const Regex> split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(std::move(split)) {}
  Status Split(std::vector<Piece>* pieces) const override {
    for (Piece& p : *pieces) {
      std::string out;
      for (char c : p.text) {
        if (c == ' ') {
          out += replacement_;
        } else {
          out += c;
        }
      }
      const bool starts = out.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts &&
          (scheme_ == PrependScheme::kAlways || (scheme_ == PrependScheme::kFirst && p.at_start))) {
        out.insert(0, replacement_);
      }
      p.text = std::move(out);
    }
    if (split_) return SplitPieces(*split_, Behavior::kMergedWithNext, false, pieces);
    return OkStatus();
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  std::shared_ptr<const Regex> split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  Status Split(std::vector<Piece>* pieces) const override {
    for (const auto& part : parts_) RETURN_IF_ERROR(part->Split(pieces));
    return OkStatus();
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const json& j, const std::string& path) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  ASSIGN_OR_RETURN(std::string type, TypeOf(j, path));
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(json list, ArrayMember(j, "pretokenizers", path));
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      ASSIGN_OR_RETURN(auto part, ParsePreTokenizer(
                                      list[i], path + ".pretokenizers[" + std::to_string(i) + "]"));
      if (part) parts.push_back(std::move(part));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePreTokenizer(std::move(parts)));
  }
  if (type == "Split") {
    if (!j.contains("pattern")) return InvalidArgumentError(path + ".pattern: missing");
    ASSIGN_OR_RETURN(auto regex, ParsePattern(j["pattern"], path + ".pattern"));
    ASSIGN_OR_RETURN(std::string name, JsonString(j, "behavior", path));
    ASSIGN_OR_RETURN(bool invert, JsonBool(j, "invert", path, false));
    Behavior behavior;
    if (name == "Removed") {
      behavior = Behavior::kRemoved;
    } else if (name == "Isolated") {
      behavior = Behavior::kIsolated;
    } else if (name == "MergedWithPrevious") {
      behavior = Behavior::kMergedWithPrevious;
    } else if (name == "MergedWithNext") {
      behavior = Behavior::kMergedWithNext;
    } else if (name == "Contiguous") {
      behavior = Behavior::kContiguous;
    } else {
      return InvalidArgumentError(path + ".behavior: unknown split behavior '" + name + "'");
    }
    return std::unique_ptr<PreTokenizer>(new SplitPreTokenizer(regex, behavior, invert));
  }
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(bool prefix, JsonBool(j, "add_prefix_space", path, true));
    ASSIGN_OR_RETURN(bool use_regex, JsonBool(j, "use_regex", path, true));
    std::shared_ptr<const Regex> regex;
    if (use_regex) {
      ASSIGN_OR_RETURN(regex, Regex::Compile(kGpt2Pattern, false, path + ".use_regex"));
    }
    return std::unique_ptr<PreTokenizer>(new ByteLevelPreTokenizer(prefix, regex));
  }
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement, JsonString(j, "replacement", path));
    // Files older than prepend_scheme say add_prefix_space (true = "always").
    ASSIGN_OR_RETURN(bool legacy_prefix, JsonBool(j, "add_prefix_space", path, true));
    ASSIGN_OR_RETURN(std::string scheme_name,
                     JsonString(j, "prepend_scheme", path, legacy_prefix ? "always" : "never"));
    ASSIGN_OR_RETURN(bool split, JsonBool(j, "split", path, true));
    PrependScheme scheme;
    if (scheme_name == "always") {
      scheme = PrependScheme::kAlways;
    } else if (scheme_name == "first") {
      scheme = PrependScheme::kFirst;
    } else if (scheme_name == "never") {
      scheme = PrependScheme::kNever;
    } else {
      return InvalidArgumentError(path + ".prepend_scheme: unknown '" + scheme_name + "'");
    }
    if (replacement.empty() ||
        static_cast<size_t>(Utf8Length(replacement[0])) != replacement.size()) {
      return InvalidArgumentError(path + ".replacement: must be one character");
    }
    std::shared_ptr<const Regex> split_regex;
    if (split) {
      ASSIGN_OR_RETURN(split_regex, Regex::Compile(replacement, true, path + ".replacement"));
    }
    return std::unique_ptr<PreTokenizer>(
        new MetaspacePreTokenizer(replacement, scheme, split_regex));
  }
  return UnimplementedError(path + ".type: pre-tokenizer '" + type + "' is not supported");
}

}  // namespace switchyard::tok
