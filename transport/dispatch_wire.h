// Wire format details shared by transport/dispatch.cc and transport/dispatch_combine.cc (internal;
// the format itself is described in transport/dispatch.h). Pure functions, thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "transport/dispatch.h"
#include "transport/dispatch_codec.h"

namespace switchyard::dispatch_wire {

inline constexpr int kHeaderWords = 8;
inline constexpr int64_t kHeaderBytes = kHeaderWords * 8;
// Header words.
enum : int {
  kRows = 0,
  kEntries = 1,
  kHidden = 2,
  kDtypeWord = 3,  // dtype | integrity << 8
  kBody = 4,
  kMaxBody = 5,  // the sender's largest body to any peer in this call
  kLayer = 6,
  kCheck = 7,  // integrity: checksum of words 0..6, else 0
};
// The bound E of the first exchange: receive slots of E bytes per peer are allocated, messages are
// sent at their actual size. At most 64 MiB per peer (<= Transport::kMaxBoundedMessageBytes).
inline constexpr int64_t kMaxEagerBytes = int64_t{64} << 20;
static_assert(kMaxEagerBytes <= Transport::kMaxBoundedMessageBytes);
inline constexpr int64_t kEagerGranule = 1024;

inline int64_t Pad8(int64_t n) { return (n + 7) & ~int64_t{7}; }

// Outputs and shared-memory messages at least this large are written with non-temporal stores
// (dispatch_codec::StreamCopy / SumBf16Rows(stream)): well past this machine class's L2.
inline constexpr int64_t kStreamBytes = int64_t{2} << 20;

inline dispatch_codec::Codec ToCodec(PayloadDtype d) {
  return static_cast<dispatch_codec::Codec>(static_cast<int32_t>(d));
}

// Sections of one dispatch body, offsets from the body's start (after the header).
struct Body {
  int64_t meta = 0;     // per row: int32 token index, int32 entry count
  int64_t experts = 0;  // per entry: int32 local expert
  int64_t weights = 0;  // per entry: float weight
  int64_t checks = 0;   // integrity: per row uint64 checksum
  int64_t total = 0;
};
inline Body BodyLayout(int64_t rows, int64_t entries, int64_t row_bytes, bool integrity) {
  Body b;
  b.meta = Pad8(rows * row_bytes);
  b.experts = b.meta + 8 * rows;
  b.weights = b.experts + 4 * entries;
  b.checks = b.weights + 4 * entries;
  b.total = b.checks + (integrity ? 8 * rows : 0);
  return b;
}

// Most receive memory the first exchange may hold over all peers: E x (world - 1) stays within
// it, so a skewed burst cannot make every rank of a large world keep world x 64 MiB.
inline constexpr int64_t kMaxEagerTotalBytes = int64_t{256} << 20;

// The cap on E from DispatcherOptions::max_first_exchange_bytes and the world size (the same on
// every rank).
inline int64_t EagerCap(int64_t option, int world_size) {
  int64_t cap = option > kMaxEagerBytes ? kMaxEagerBytes : option;
  if (world_size > 1) cap = std::min(cap, kMaxEagerTotalBytes / (world_size - 1));
  return cap < kEagerGranule ? kEagerGranule : cap;
}

// Eager size for the next call, from the largest body M any rank sent in this one; at most `cap`
// (an EagerCap value).
inline int64_t NextEagerBytes(int64_t max_body, int64_t cap) {
  const int64_t need = kHeaderBytes + max_body;
  const int64_t with_headroom = need + need / 4;
  const int64_t rounded = (with_headroom + kEagerGranule - 1) / kEagerGranule * kEagerGranule;
  return rounded < kEagerGranule ? kEagerGranule : (rounded > cap ? cap : rounded);
}

// Integrity checksums (dispatch_codec::Checksum64 chained with distinct salts per use).
uint64_t HeaderChecksum(const int64_t* words);
uint64_t DispatchRowChecksum(int64_t layer, int32_t token, int32_t count, const std::byte* experts,
                             const std::byte* weights, const std::byte* row, int64_t row_bytes);
uint64_t CombineRowChecksum(int64_t layer, int64_t token, const std::byte* row, int64_t row_bytes);

// Keeps `buffer`'s memory alive until the process exits. After an AllToAllV fails, a backend may
// still read the send buffer (MPI cannot cancel a started send) or write the receive buffer (a
// receive that could not be cancelled); the dispatcher hands both here instead of reusing or
// freeing them. A bounded leak per failed call, and failures are rare (fail-stop).
void Quarantine(std::vector<std::byte>&& buffer);

// "rank 2" / "ranks 1, 3".
std::string RankList(const std::vector<int>& ranks);

}  // namespace switchyard::dispatch_wire
