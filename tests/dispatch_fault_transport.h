// Test-only Transport decorator: forwards every call to an inner transport, counts the bytes handed
// to AllToAllV for other ranks, and can corrupt one byte of one message in flight (the sender's
// bytes are copied, one byte of the chosen peer's region is flipped, and the copy is sent), or run
// an action (stall, self-kill) at a chosen call.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "transport/transport.h"

namespace switchyard::testing {

class FaultyTransport final : public Transport {
 public:
  explicit FaultyTransport(Transport& inner) : inner_(inner) {}

  // Flips `mask` into byte `offset` of the message this rank sends to `peer` in its AllToAllV or
  // AllToAllVBounded call number `call` (0-based, both counted together on this object). A region
  // too short is left alone.
  void CorruptOnce(int call, int peer, int64_t offset, uint8_t mask) {
    corrupt_call_ = call;
    corrupt_peer_ = peer;
    corrupt_offset_ = offset;
    corrupt_mask_ = mask;
  }
  bool corrupted() const { return corrupted_; }
  // Runs `action` (e.g. a stall or a self-kill) just before AllToAllV call number `call` is
  // forwarded; the call proceeds afterwards if the action returns.
  void OnCall(int call, std::function<void()> action) {
    action_call_ = call;
    action_ = std::move(action);
  }
  // Bytes given to AllToAllV for ranks other than this one, since construction / the last reset.
  int64_t bytes_to_others() const { return bytes_to_others_; }
  void ResetCount() { bytes_to_others_ = 0; }

  int rank() const override { return inner_.rank(); }
  int world_size() const override { return inner_.world_size(); }
  std::string_view name() const override { return inner_.name(); }
  TransportCapabilities capabilities() const override { return inner_.capabilities(); }
  bool KnownDead(int peer) const override { return inner_.KnownDead(peer); }

  Status AllToAllV(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                   std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                   std::span<const int64_t> recv_counts, std::span<const int64_t> recv_offsets,
                   Deadline deadline) override {
    return inner_.AllToAllV(Outgoing(send, send_counts, send_offsets), send_counts, send_offsets,
                            recv, recv_counts, recv_offsets, deadline);
  }
  // Counted, corrupted and acted on like AllToAllV (the same call numbering).
  Status AllToAllVBounded(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                          std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                          std::span<const int64_t> recv_capacity,
                          std::span<const int64_t> recv_offsets, std::span<int64_t> recv_sizes,
                          Deadline deadline) override {
    return inner_.AllToAllVBounded(Outgoing(send, send_counts, send_offsets), send_counts,
                                   send_offsets, recv, recv_capacity, recv_offsets, recv_sizes,
                                   deadline);
  }
  Status Send(int peer, int tag, std::span<const std::byte> data, Deadline deadline) override {
    return inner_.Send(peer, tag, data, deadline);
  }
  StatusOr<int64_t> Recv(int peer, int tag, std::span<std::byte> data, Deadline deadline) override {
    return inner_.Recv(peer, tag, data, deadline);
  }
  Status Barrier(Deadline deadline) override { return inner_.Barrier(deadline); }

 private:
  // One all-to-all call: runs the action, counts, and returns what to send (a corrupted copy of
  // `send` at the chosen call, else `send` itself).
  std::span<const std::byte> Outgoing(std::span<const std::byte> send,
                                      std::span<const int64_t> send_counts,
                                      std::span<const int64_t> send_offsets) {
    const int call = calls_++;
    if (call == action_call_ && action_) action_();
    for (size_t p = 0; p < send_counts.size(); ++p) {
      if (static_cast<int>(p) != rank()) bytes_to_others_ += send_counts[p];
    }
    if (call == corrupt_call_ && corrupt_peer_ >= 0 &&
        corrupt_peer_ < static_cast<int>(send_counts.size()) &&
        corrupt_offset_ < send_counts[corrupt_peer_]) {
      copy_.assign(send.begin(), send.end());
      copy_[send_offsets[corrupt_peer_] + corrupt_offset_] ^= std::byte{corrupt_mask_};
      corrupted_ = true;
      return copy_;
    }
    return send;
  }

  Transport& inner_;
  int calls_ = 0;
  int action_call_ = -1;
  std::function<void()> action_;
  int corrupt_call_ = -1, corrupt_peer_ = -1;
  int64_t corrupt_offset_ = 0;
  uint8_t corrupt_mask_ = 0;
  bool corrupted_ = false;
  int64_t bytes_to_others_ = 0;
  std::vector<std::byte> copy_;
};

}  // namespace switchyard::testing
