// Tensor: an owned, 64-byte-aligned FP32 buffer with a row-major shape; TensorView: a borrowed one.
// Move-only (weights are resident once; copies are explicit with Clone()).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "common/huge_page_arena.h"

namespace switchyard {

// Frees a Tensor's buffer: from the huge-page arena (arena_bytes: the size asked for), or
// std::free.
struct TensorFree {
  size_t arena_bytes = 0;
  void operator()(float* p) const {
    if (arena_bytes > 0) {
      HugePageFree(p, arena_bytes);
    } else {
      std::free(p);
    }
  }
};

class Tensor {
 public:
  Tensor() = default;
  // Zero-filled. Throws std::bad_alloc when memory is exhausted (callers that size by input
  // catch it and return ResourceExhausted).
  explicit Tensor(std::vector<int64_t> shape) : Tensor(std::move(shape), /*zero=*/true) {}
  // Uninitialised contents (for buffers about to be overwritten, e.g. weights being loaded).
  static Tensor Uninitialized(std::vector<int64_t> shape) {
    return Tensor(std::move(shape), false);
  }
  // Uninitialised, in the huge-page arena (common/huge_page_arena.h): for weights that stay
  // resident and are streamed every decode step. Not for short-lived buffers: the arena hands
  // freed space out again only once it reaches the end of its chunk's used part.
  static Tensor UninitializedWeights(std::vector<int64_t> shape) {
    return Tensor(std::move(shape), false, /*arena=*/true);
  }
  Tensor(Tensor&&) = default;
  Tensor& operator=(Tensor&&) = default;

 private:
  Tensor(std::vector<int64_t> shape, bool zero, bool arena = false) : shape_(std::move(shape)) {
    size_ = 1;
    for (int64_t d : shape_) size_ *= d;
    if (size_ > 0) {
      size_t bytes = (static_cast<size_t>(size_) * sizeof(float) + 63) / 64 * 64;
      float* p = static_cast<float*>(arena ? HugePageAlloc(bytes) : std::aligned_alloc(64, bytes));
      if (p == nullptr) throw std::bad_alloc();
      if (zero) std::memset(p, 0, bytes);
      data_ = std::unique_ptr<float, TensorFree>(p, TensorFree{arena ? bytes : 0});
    }
  }

 public:
  float* data() { return data_.get(); }
  const float* data() const { return data_.get(); }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t bytes() const { return size_ * static_cast<int64_t>(sizeof(float)); }
  float& operator[](int64_t i) { return data_.get()[i]; }
  float operator[](int64_t i) const { return data_.get()[i]; }
  Tensor Clone() const {
    Tensor t(shape_);
    if (size_ > 0) std::memcpy(t.data(), data(), bytes());
    return t;
  }

 private:
  std::vector<int64_t> shape_;
  int64_t size_ = 0;
  std::unique_ptr<float, TensorFree> data_;
};

}  // namespace switchyard
