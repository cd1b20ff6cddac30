#include "model/tokenizer_bpe.h"

#include <cstdio>
#include <nlohmann/json.hpp>
#include <queue>

#include "model/tokenizer_pipeline.h"
#include "model/tokenizer_text.h"

namespace switchyard::tok {

using json = nlohmann::json;

namespace {

constexpr size_t kMaxCachedWordBytes = 128;
constexpr size_t kMaxCacheEntries = 1 << 18;

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

StatusOr<std::string> OptionalString(const json& j, const std::string& key,
                                     const std::string& path) {
  return JsonString(j, key, path, "");
}

}  // namespace

StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const json& j, const std::string& path) {
  auto model = std::unique_ptr<BpeModel>(new BpeModel());
  if (!j.is_object()) return InvalidArgumentError(path + ": not a JSON object");
  if (j.contains("dropout") && !j["dropout"].is_null() &&
      (!j["dropout"].is_number() || j["dropout"].get<double>() != 0.0)) {
    return UnimplementedError(path + ".dropout: BPE dropout is not supported");
  }
  if (!j.contains("vocab") || !j["vocab"].is_object()) {
    return InvalidArgumentError(path + ".vocab: missing or not an object");
  }
  const json& vocab = j["vocab"];
  int64_t max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > INT32_MAX) {
      return InvalidArgumentError(path + ".vocab[\"" + it.key() + "\"]: not a token id");
    }
    max_id = std::max(max_id, it.value().get<int64_t>());
  }
  if (max_id < 0) return InvalidArgumentError(path + ".vocab: empty");
  model->id_to_token_.resize(max_id + 1);
  model->has_id_.assign(max_id + 1, false);
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const auto id = it.value().get<int32_t>();
    if (model->has_id_[id]) {
      return InvalidArgumentError(path + ".vocab[\"" + it.key() + "\"]: id " + std::to_string(id) +
                                  " used twice");
    }
    model->has_id_[id] = true;
    model->id_to_token_[id] = it.key();
    model->vocab_.emplace(it.key(), id);
  }
  ASSIGN_OR_RETURN(model->continuing_subword_prefix_,
                   OptionalString(j, "continuing_subword_prefix", path));
  ASSIGN_OR_RETURN(model->end_of_word_suffix_, OptionalString(j, "end_of_word_suffix", path));
  ASSIGN_OR_RETURN(model->fuse_unk_, JsonBool(j, "fuse_unk", path, false));
  ASSIGN_OR_RETURN(model->byte_fallback_, JsonBool(j, "byte_fallback", path, false));
  ASSIGN_OR_RETURN(model->ignore_merges_, JsonBool(j, "ignore_merges", path, false));
  ASSIGN_OR_RETURN(std::string unk, OptionalString(j, "unk_token", path));
  if (!unk.empty()) {
    auto it = model->vocab_.find(unk);
    if (it == model->vocab_.end()) {
      return InvalidArgumentError(path + ".unk_token: '" + unk + "' is not in the vocab");
    }
    model->unk_id_ = it->second;
  }
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = model->vocab_.find(name);
    model->byte_ids_[b] = model->byte_fallback_ && it != model->vocab_.end() ? it->second : -1;
  }

  if (!j.contains("merges") || !j["merges"].is_array()) {
    return InvalidArgumentError(path + ".merges: missing or not a list");
  }
  const json& merges = j["merges"];
  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string where = path + ".merges[" + std::to_string(rank) + "]";
    const json& m = merges[rank];
    std::string a, b;
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        return InvalidArgumentError(where + ": '" + s + "' is not two tokens separated by a space");
      }
      a = s.substr(0, space);
      b = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      a = m[0].get<std::string>();
      b = m[1].get<std::string>();
    } else {
      return InvalidArgumentError(where + ": expected \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = model->vocab_.find(a), ib = model->vocab_.find(b);
    if (ia == model->vocab_.end() || ib == model->vocab_.end()) {
      return InvalidArgumentError(where + ": token '" + (ia == model->vocab_.end() ? a : b) +
                                  "' is not in the vocab");
    }
    std::string merged = a;
    const std::string& prefix = model->continuing_subword_prefix_;
    merged +=
        (!prefix.empty() && b.compare(0, prefix.size(), prefix) == 0) ? b.substr(prefix.size()) : b;
    auto im = model->vocab_.find(merged);
    if (im == model->vocab_.end()) {
      return InvalidArgumentError(where + ": merged token '" + merged + "' is not in the vocab");
    }
    // A repeated pair takes its last rank: tokenizers collects the list into a hash map.
    model->merges_.insert_or_assign(PairKey(ia->second, ib->second),
                                    std::make_pair(static_cast<int32_t>(rank), im->second));
  }
  return model;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= static_cast<int64_t>(id_to_token_.size()) || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(std::string(word));
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids->size();
  Merge(word, ids);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() < kMaxCacheEntries) {
      cache_.emplace(std::string(word), std::vector<int32_t>(ids->begin() + first, ids->end()));
    }
  }
}

void BpeModel::Merge(std::string_view word, std::vector<int32_t>* ids) const {
  // Initial symbols, one per character (tokenizers' BPE::merge_word).
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&](int32_t id) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, true});
  };
  int32_t pending_unk = -1;  // an unk symbol not yet added (fuse_unk grows it)
  std::string piece;
  for (size_t i = 0; i < word.size();) {
    const size_t begin = i;
    NextCodePoint(word, &i);
    piece.assign(word.substr(begin, i - begin));
    if (begin > 0 && !continuing_subword_prefix_.empty())
      piece.insert(0, continuing_subword_prefix_);
    if (i == word.size() && !end_of_word_suffix_.empty()) piece += end_of_word_suffix_;
    auto it = vocab_.find(piece);
    if (it != vocab_.end()) {
      if (pending_unk >= 0) add(pending_unk);
      pending_unk = -1;
      add(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : piece) all &= byte_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : piece) add(byte_ids_[b]);
        continue;
      }
    }
    if (unk_id_) {
      if (pending_unk >= 0 && !fuse_unk_) add(pending_unk);
      pending_unk = *unk_id_;
    }
  }
  if (pending_unk >= 0) add(pending_unk);
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank, pos, new_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(symbols[pos].id, symbols[next].id));
    if (it != merges_.end()) queue.push({it->second.first, pos, it->second.second});
  };
  for (int32_t pos = 0; pos + 1 < static_cast<int32_t>(symbols.size()); ++pos) push(pos);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.second != top.new_id) continue;
    left.id = top.new_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) push(left.prev);
    push(top.pos);
  }
  for (int32_t pos = 0; pos >= 0; pos = symbols[pos].next) ids->push_back(symbols[pos].id);
}

}  // namespace switchyard::tok
