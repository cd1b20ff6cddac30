// KV cache: per sequence slot and layer, the keys/values of every position seen so far.
//
// GQA layers store K and V rows of num_kv_heads * head_dim floats; MLA layers store one row per
// position of kv_lora_rank + qk_rope_head_dim floats (normalised latent, then RoPE'd k_pe), the
// compressed form DeepSeek caches. Storage grows with the sequence up to max_seq_len.
// Not thread-safe; one engine owns it.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "model/model_config.h"

namespace switchyard {

class KvCache {
 public:
  KvCache(const ModelConfig& config, int64_t max_seq_len);

  // A free slot for a new sequence (length 0).
  int64_t Allocate();
  // Frees the slot's memory; the id may be reused.
  void Free(int64_t slot);
  // Makes room for `length` positions; ResourceExhausted beyond max_seq_len.
  Status Reserve(int64_t slot, int64_t length);
  int64_t Length(int64_t slot) const { return slots_[slot].length; }
  void SetLength(int64_t slot, int64_t length) { slots_[slot].length = length; }

  // Row-major [capacity, RowWidth()] for the slot's layer; valid until the next Reserve.
  float* Keys(int64_t slot, int64_t layer) { return slots_[slot].layers[layer].k.data(); }
  float* Values(int64_t slot, int64_t layer) { return slots_[slot].layers[layer].v.data(); }
  int64_t KeyWidth() const { return key_width_; }
  int64_t ValueWidth() const { return value_width_; }  // 0 for MLA
  int64_t max_seq_len() const { return max_seq_len_; }
  int64_t BytesInUse() const;
  int64_t ActiveSlots() const;
  // Positions cached over all used slots (sum of Length): what a KV budget counts.
  int64_t PositionsInUse() const;

 private:
  struct Layer {
    std::vector<float> k, v;
  };
  struct Slot {
    bool used = false;
    int64_t length = 0;
    int64_t capacity = 0;
    std::vector<Layer> layers;
  };
  int64_t num_layers_;
  int64_t key_width_;
  int64_t value_width_;
  int64_t max_seq_len_;
  std::vector<Slot> slots_;
};

}  // namespace switchyard
