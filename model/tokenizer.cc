#include "model/tokenizer.h"

#include <nlohmann/json.hpp>
#include <unordered_map>

#include "common/file_util.h"
#include "model/tokenizer_added.h"
#include "model/tokenizer_bpe.h"
#include "model/tokenizer_decoder.h"
#include "model/tokenizer_pipeline.h"
#include "model/tokenizer_text.h"

namespace switchyard {

using json = nlohmann::json;

struct Tokenizer::Impl {
  std::unique_ptr<tok::Normalizer> normalizer;
  std::unique_ptr<tok::PreTokenizer> pre_tokenizer;
  std::unique_ptr<tok::BpeModel> model;
  tok::DecodePlan decoder;
  std::vector<tok::AddedToken> added;
  std::unordered_map<int32_t, size_t> added_by_id;
  std::unordered_map<std::string, int32_t> added_by_content;
  std::unique_ptr<tok::AddedTokenMatcher> raw_matcher, normalized_matcher;
  std::vector<int32_t> prefix_ids, suffix_ids;  // the post-processor's template around the text
  int64_t vocab_size = 0;

  const std::string* TokenString(int32_t id) const {
    auto it = added_by_id.find(id);
    if (it != added_by_id.end()) return &added[it->second].content;
    return model->IdToToken(id);
  }
};

namespace {

Status ParseAddedTokens(const json& root, Tokenizer::Impl* impl) {
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return OkStatus();
  const json& list = root["added_tokens"];
  if (!list.is_array()) return InvalidArgumentError("added_tokens: not a list");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = "added_tokens[" + std::to_string(i) + "]";
    const json& j = list[i];
    if (!j.is_object()) return InvalidArgumentError(path + ": not a JSON object");
    tok::AddedToken t;
    if (!j.contains("id") || !j["id"].is_number_integer() || j["id"].get<int64_t>() < 0 ||
        j["id"].get<int64_t>() > INT32_MAX) {
      return InvalidArgumentError(path + ".id: missing or not a token id");
    }
    t.id = j["id"].get<int32_t>();
    ASSIGN_OR_RETURN(t.content, tok::JsonString(j, "content", path));
    RETURN_IF_ERROR(tok::ValidateUtf8(t.content, path + ".content"));
    ASSIGN_OR_RETURN(t.single_word, tok::JsonBool(j, "single_word", path, false));
    ASSIGN_OR_RETURN(t.lstrip, tok::JsonBool(j, "lstrip", path, false));
    ASSIGN_OR_RETURN(t.rstrip, tok::JsonBool(j, "rstrip", path, false));
    ASSIGN_OR_RETURN(t.special, tok::JsonBool(j, "special", path, false));
    ASSIGN_OR_RETURN(t.normalized, tok::JsonBool(j, "normalized", path, !t.special));
    if (t.content.empty()) return InvalidArgumentError(path + ".content: empty");
    if (impl->added_by_id.count(t.id)) {
      return InvalidArgumentError(path + ".id: " + std::to_string(t.id) + " used twice");
    }
    impl->added_by_id[t.id] = impl->added.size();
    impl->added_by_content.emplace(t.content, t.id);
    impl->added.push_back(std::move(t));
  }
  std::vector<std::string> raw_patterns, normalized_patterns;
  for (const tok::AddedToken& t : impl->added) {
    raw_patterns.push_back(t.normalized ? "" : t.content);
    normalized_patterns.push_back(!t.normalized      ? ""
                                  : impl->normalizer ? impl->normalizer->Apply(t.content)
                                                     : t.content);
  }
  impl->raw_matcher = std::make_unique<tok::AddedTokenMatcher>(raw_patterns, impl->added);
  impl->normalized_matcher =
      std::make_unique<tok::AddedTokenMatcher>(normalized_patterns, impl->added);
  return OkStatus();
}

Status ParsePostProcessor(const json& j, const std::string& path, Tokenizer::Impl* impl) {
  if (j.is_null()) return OkStatus();
  if (!j.is_object()) return InvalidArgumentError(path + ": not a JSON object");
  ASSIGN_OR_RETURN(std::string type, tok::JsonString(j, "type", path));
  if (type == "ByteLevel") return OkStatus();  // offsets only
  if (type == "Sequence") {
    if (!j.contains("processors") || !j["processors"].is_array()) {
      return InvalidArgumentError(path + ".processors: missing or not a list");
    }
    for (size_t i = 0; i < j["processors"].size(); ++i) {
      RETURN_IF_ERROR(ParsePostProcessor(j["processors"][i],
                                         path + ".processors[" + std::to_string(i) + "]", impl));
    }
    return OkStatus();
  }
  if (type != "TemplateProcessing") {
    return UnimplementedError(path + ".type: post-processor '" + type + "' is not supported");
  }
  if (!impl->prefix_ids.empty() || !impl->suffix_ids.empty()) {
    return UnimplementedError(path + ": more than one TemplateProcessing");
  }
  if (!j.contains("single") || !j["single"].is_array()) {
    return InvalidArgumentError(path + ".single: missing or not a list");
  }
  const json& specials = j.value("special_tokens", json::object());
  bool seen_sequence = false;
  for (size_t i = 0; i < j["single"].size(); ++i) {
    const std::string where = path + ".single[" + std::to_string(i) + "]";
    const json& item = j["single"][i];
    if (item.is_object() && item.contains("Sequence")) {
      if (seen_sequence) return InvalidArgumentError(where + ": a second sequence");
      seen_sequence = true;
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken") || !item["SpecialToken"].is_object()) {
      return InvalidArgumentError(where +
                                  ": expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
    ASSIGN_OR_RETURN(std::string name, tok::JsonString(item["SpecialToken"], "id", where));
    if (!specials.is_object() || !specials.contains(name) || !specials[name].is_object() ||
        !specials[name].contains("ids") || !specials[name]["ids"].is_array()) {
      return InvalidArgumentError(path + ".special_tokens: no ids for '" + name + "'");
    }
    for (const json& id : specials[name]["ids"]) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX) {
        return InvalidArgumentError(path + ".special_tokens[\"" + name + "\"].ids: not token ids");
      }
      (seen_sequence ? impl->suffix_ids : impl->prefix_ids).push_back(id.get<int32_t>());
    }
  }
  if (!seen_sequence) return InvalidArgumentError(path + ".single: no {\"Sequence\": ...} item");
  return OkStatus();
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view json_text,
                                                         const std::string& origin) {
  json root;
  try {
    root = json::parse(json_text);
  } catch (const json::parse_error& e) {
    return InvalidArgumentError(origin + ": bad JSON at byte " + std::to_string(e.byte) + ": " +
                                e.what());
  }
  auto impl = std::make_unique<Impl>();
  auto build = [&]() -> Status {
    if (!root.is_object()) return InvalidArgumentError("(root): not a JSON object");
    if (root.contains("truncation") && !root["truncation"].is_null()) {
      return UnimplementedError("truncation: truncation is not supported");
    }
    if (!root.contains("model")) return InvalidArgumentError("model: missing");
    ASSIGN_OR_RETURN(std::string type, tok::JsonString(root["model"], "type", "model", "BPE"));
    if (type != "BPE") {
      return UnimplementedError("model.type: model '" + type + "' is not supported (only BPE)");
    }
    ASSIGN_OR_RETURN(impl->model, tok::BpeModel::FromJson(root["model"], "model"));
    ASSIGN_OR_RETURN(impl->normalizer,
                     tok::ParseNormalizer(root.value("normalizer", json()), "normalizer"));
    ASSIGN_OR_RETURN(impl->pre_tokenizer,
                     tok::ParsePreTokenizer(root.value("pre_tokenizer", json()), "pre_tokenizer"));
    ASSIGN_OR_RETURN(impl->decoder, tok::ParseDecoder(root.value("decoder", json()), "decoder"));
    RETURN_IF_ERROR(ParseAddedTokens(root, impl.get()));
    RETURN_IF_ERROR(
        ParsePostProcessor(root.value("post_processor", json()), "post_processor", impl.get()));
    impl->vocab_size = impl->model->vocab_size();
    for (const tok::AddedToken& t : impl->added) {
      impl->vocab_size = std::max<int64_t>(impl->vocab_size, int64_t{t.id} + 1);
    }
    for (int32_t id : impl->prefix_ids) {
      if (!impl->TokenString(id)) {
        return InvalidArgumentError("post_processor: id " + std::to_string(id) + " is no token");
      }
    }
    for (int32_t id : impl->suffix_ids) {
      if (!impl->TokenString(id)) {
        return InvalidArgumentError("post_processor: id " + std::to_string(id) + " is no token");
      }
    }
    return OkStatus();
  };
  try {
    RETURN_IF_ERROR(build().WithContext(origin));
  } catch (const json::exception& e) {  // a type nlohmann rejects that the checks above missed
    return InvalidArgumentError(origin + ": " + e.what());
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return FromJson(text, path);
}

StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                 bool add_special_tokens) const {
  RETURN_IF_ERROR(tok::ValidateUtf8(text, "text"));
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = impl_->prefix_ids;
  std::vector<tok::Segment> raw, segments;
  if (impl_->raw_matcher) {
    impl_->raw_matcher->Split(text, true, &raw);
  } else if (!text.empty()) {
    raw.push_back({-1, std::string(text), true});
  }
  for (tok::Segment& s : raw) {
    if (s.id >= 0) {
      segments.push_back(std::move(s));
      continue;
    }
    if (impl_->normalizer) s.text = impl_->normalizer->Apply(std::move(s.text));
    if (impl_->normalized_matcher) {
      impl_->normalized_matcher->Split(s.text, s.at_start, &segments);
    } else if (!s.text.empty()) {
      segments.push_back(std::move(s));
    }
  }
  std::vector<tok::Piece> pieces;
  for (tok::Segment& s : segments) {
    if (s.id >= 0) {
      ids.push_back(s.id);
      continue;
    }
    pieces.clear();
    pieces.push_back({std::move(s.text), s.at_start});
    if (impl_->pre_tokenizer) RETURN_IF_ERROR(impl_->pre_tokenizer->Split(&pieces));
    for (const tok::Piece& p : pieces) impl_->model->Tokenize(p.text, &ids);
  }
  if (add_special_tokens) ids.insert(ids.end(), impl_->suffix_ids.begin(), impl_->suffix_ids.end());
  return ids;
}

StatusOr<std::string> Tokenizer::Decode(const std::vector<int32_t>& ids,
                                        bool skip_special_tokens) const {
  std::vector<std::string_view> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string* token = impl_->TokenString(ids[i]);
    if (token == nullptr) {
      return OutOfRangeError("Decode: ids[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                             " is no token (vocab size " + std::to_string(impl_->vocab_size) + ")");
    }
    if (skip_special_tokens && IsSpecial(ids[i])) continue;
    tokens.push_back(*token);
  }
  return impl_->decoder.Decode(tokens);
}

int64_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  auto it = impl_->added_by_content.find(std::string(token));
  if (it != impl_->added_by_content.end()) return it->second;
  return impl_->model->TokenToId(token);
}

std::optional<std::string> Tokenizer::IdToToken(int32_t id) const {
  const std::string* token = impl_->TokenString(id);
  if (token == nullptr) return std::nullopt;
  return *token;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  auto it = impl_->added_by_id.find(id);
  return it != impl_->added_by_id.end() && impl_->added[it->second].special;
}

StreamingDecoder::StreamingDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
    : tokenizer_(&tokenizer),
      skip_special_tokens_(skip_special_tokens),
      stream_(std::make_unique<tok::DecodeStream>(&tokenizer.impl_->decoder)) {}

StreamingDecoder::~StreamingDecoder() = default;

StatusOr<std::string> StreamingDecoder::Push(int32_t id) {
  const std::string* token = tokenizer_->impl_->TokenString(id);
  if (token == nullptr) {
    return OutOfRangeError("StreamingDecoder: id " + std::to_string(id) + " is no token");
  }
  if (skip_special_tokens_ && tokenizer_->IsSpecial(id)) return std::string();
  return stream_->Push(*token);
}

std::string StreamingDecoder::Flush() {
  std::string rest = stream_->Finish();
  stream_ = std::make_unique<tok::DecodeStream>(&tokenizer_->impl_->decoder);
  return rest;
}

}  // namespace switchyard
