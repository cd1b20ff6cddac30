#include "model/kv_cache.h"

#include <algorithm>

namespace switchyard {

KvCache::KvCache(const ModelConfig& config, int64_t max_seq_len)
    : num_layers_(config.num_layers), max_seq_len_(max_seq_len) {
  if (config.mla) {
    key_width_ = config.kv_lora_rank + config.qk_rope_head_dim;
    value_width_ = 0;
  } else {
    key_width_ = value_width_ = config.num_kv_heads * config.head_dim;
  }
}

int64_t KvCache::Allocate() {
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (!slots_[i].used) {
      slots_[i] = Slot();
      slots_[i].used = true;
      slots_[i].layers.resize(num_layers_);
      return static_cast<int64_t>(i);
    }
  }
  slots_.emplace_back();
  slots_.back().used = true;
  slots_.back().layers.resize(num_layers_);
  return static_cast<int64_t>(slots_.size() - 1);
}

void KvCache::Free(int64_t slot) { slots_[slot] = Slot(); }

Status KvCache::Reserve(int64_t slot, int64_t length) {
  Slot& s = slots_[slot];
  if (length > max_seq_len_) {
    return ResourceExhaustedError("sequence needs " + std::to_string(length) +
                                  " KV-cache positions but max_seq_len is " +
                                  std::to_string(max_seq_len_));
  }
  if (length <= s.capacity) return OkStatus();
  int64_t capacity = std::min(max_seq_len_, std::max<int64_t>(length, 2 * s.capacity));
  for (Layer& layer : s.layers) {
    layer.k.resize(capacity * key_width_);
    layer.v.resize(capacity * value_width_);
  }
  s.capacity = capacity;
  return OkStatus();
}

int64_t KvCache::BytesInUse() const {
  int64_t total = 0;
  for (const Slot& s : slots_) total += s.capacity * (key_width_ + value_width_) * num_layers_;
  return total * static_cast<int64_t>(sizeof(float));
}

int64_t KvCache::ActiveSlots() const {
  return std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.used; });
}

int64_t KvCache::PositionsInUse() const {
  int64_t total = 0;
  for (const Slot& s : slots_) total += s.used ? s.length : 0;
  return total;
}

}  // namespace switchyard
