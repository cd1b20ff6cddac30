// Normalizers of tokenizer.json (declared in model/tokenizer_pipeline.h).
#include <nlohmann/json.hpp>

#include "model/tokenizer_pipeline.h"
#include "model/tokenizer_regex.h"
#include "model/tokenizer_text.h"

namespace switchyard::tok {

using json = nlohmann::json;

namespace {

// ---- normalizers ----

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(NormalForm form) : form_(form) {}
  std::string Apply(std::string text) const override { return Normalize(text, form_); }

 private:
  NormalForm form_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  std::string Apply(std::string text) const override {
    for (const auto& part : parts_) text = part->Apply(std::move(text));
    return text;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  std::string Apply(std::string text) const override {
    return text.empty() ? text : prefix_ + text;
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::shared_ptr<const Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  std::string Apply(std::string text) const override {
    std::vector<std::pair<size_t, size_t>> matches;
    // A failing match (JIT stack) leaves the text unchanged; literal patterns cannot fail.
    if (!pattern_->FindAll(text, &matches).ok() || matches.empty()) return text;
    std::string out;
    size_t prev = 0;
    for (const auto& [begin, end] : matches) {
      out.append(text, prev, begin - prev);
      out += content_;
      prev = end;
    }
    out.append(text, prev, std::string::npos);
    return out;
  }

 private:
  std::shared_ptr<const Regex> pattern_;
  std::string content_;
};

}  // namespace

StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const json& j, const std::string& path) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  ASSIGN_OR_RETURN(std::string type, TypeOf(j, path));
  if (type == "NFC") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(NormalForm::kNFC));
  if (type == "NFD") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(NormalForm::kNFD));
  if (type == "NFKC") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(NormalForm::kNFKC));
  if (type == "NFKD") return std::unique_ptr<Normalizer>(new UnicodeNormalizer(NormalForm::kNFKD));
  if (type == "Sequence") {
    ASSIGN_OR_RETURN(json list, ArrayMember(j, "normalizers", path));
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < list.size(); ++i) {
      ASSIGN_OR_RETURN(auto part,
                       ParseNormalizer(list[i], path + ".normalizers[" + std::to_string(i) + "]"));
      if (part) parts.push_back(std::move(part));
    }
    return std::unique_ptr<Normalizer>(new SequenceNormalizer(std::move(parts)));
  }
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prefix, JsonString(j, "prepend", path));
    return std::unique_ptr<Normalizer>(new PrependNormalizer(prefix));
  }
  if (type == "Replace") {
    if (!j.contains("pattern")) return InvalidArgumentError(path + ".pattern: missing");
    ASSIGN_OR_RETURN(auto pattern, ParsePattern(j["pattern"], path + ".pattern"));
    ASSIGN_OR_RETURN(std::string content, JsonString(j, "content", path));
    return std::unique_ptr<Normalizer>(new ReplaceNormalizer(pattern, content));
  }
  return UnimplementedError(path + ".type: normalizer '" + type + "' is not supported");
}

}  // namespace switchyard::tok
