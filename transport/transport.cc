#include "transport/transport.h"

#include <algorithm>
#include <cstring>

namespace switchyard {

std::chrono::nanoseconds Deadline::Remaining() const {
  auto left = when_ - TransportClock::now();
  return left.count() > 0 ? std::chrono::duration_cast<std::chrono::nanoseconds>(left)
                          : std::chrono::nanoseconds(0);
}

Status Transport::AllToAllCounts(std::span<const int64_t> send_counts,
                                 std::span<int64_t> recv_counts, Deadline deadline) {
  const int n = world_size();
  if (send_counts.size() != static_cast<size_t>(n) ||
      recv_counts.size() != static_cast<size_t>(n)) {
    return InvalidArgumentError("AllToAllCounts on rank " + std::to_string(rank()) + ": got " +
                                std::to_string(send_counts.size()) + " send and " +
                                std::to_string(recv_counts.size()) +
                                " recv counts, world size is " + std::to_string(n));
  }
  std::vector<int64_t> sizes(n, sizeof(int64_t));
  std::vector<int64_t> offsets(n);
  for (int p = 0; p < n; ++p) offsets[p] = p * static_cast<int64_t>(sizeof(int64_t));
  return AllToAllV(std::as_bytes(send_counts), sizes, offsets, std::as_writable_bytes(recv_counts),
                   sizes, offsets, deadline)
      .WithContext("AllToAllCounts");
}

namespace transport_internal {

std::string FormatRanks(const std::vector<int>& ranks) {
  constexpr size_t kShown = 16;
  std::string out;
  for (size_t i = 0; i < ranks.size() && i < kShown; ++i) {
    if (i) out += ", ";
    out += std::to_string(ranks[i]);
  }
  if (ranks.size() > kShown) out += ", ... (+" + std::to_string(ranks.size() - kShown) + " more)";
  return out;
}

namespace {

Status CheckRegions(std::string_view op, int rank, const char* side, size_t buffer_size,
                    std::span<const int64_t> counts, std::span<const int64_t> offsets) {
  for (size_t p = 0; p < counts.size(); ++p) {
    const int64_t count = counts[p];
    const int64_t offset = offsets[p];
    if (count < 0 || offset < 0 || static_cast<uint64_t>(offset) > buffer_size ||
        static_cast<uint64_t>(count) > buffer_size - static_cast<uint64_t>(offset)) {
      return InvalidArgumentError(std::string(op) + " on rank " + std::to_string(rank) + ": " +
                                  side + " region for rank " + std::to_string(p) + " (offset " +
                                  std::to_string(offset) + ", count " + std::to_string(count) +
                                  ") does not fit the " + std::to_string(buffer_size) + "-byte " +
                                  side + " buffer");
    }
  }
  return OkStatus();
}

}  // namespace

Status ValidateAllToAllV(std::string_view op, int rank, int world_size, size_t send_size,
                         std::span<const int64_t> send_counts,
                         std::span<const int64_t> send_offsets, size_t recv_size,
                         std::span<const int64_t> recv_counts,
                         std::span<const int64_t> recv_offsets) {
  const size_t n = static_cast<size_t>(world_size);
  if (send_counts.size() != n || send_offsets.size() != n || recv_counts.size() != n ||
      recv_offsets.size() != n) {
    return InvalidArgumentError(
        std::string(op) + " on rank " + std::to_string(rank) + ": counts/offsets must have " +
        std::to_string(n) + " entries (world size), got send " +
        std::to_string(send_counts.size()) + "/" + std::to_string(send_offsets.size()) + ", recv " +
        std::to_string(recv_counts.size()) + "/" + std::to_string(recv_offsets.size()));
  }
  RETURN_IF_ERROR(CheckRegions(op, rank, "send", send_size, send_counts, send_offsets));
  return CheckRegions(op, rank, "recv", recv_size, recv_counts, recv_offsets);
}

Status ValidateAllToAllVBounded(std::string_view op, int rank, int world_size, size_t send_size,
                                std::span<const int64_t> send_counts,
                                std::span<const int64_t> send_offsets, size_t recv_size,
                                std::span<const int64_t> recv_capacity,
                                std::span<const int64_t> recv_offsets, size_t recv_sizes_size) {
  RETURN_IF_ERROR(ValidateAllToAllV(op, rank, world_size, send_size, send_counts, send_offsets,
                                    recv_size, recv_capacity, recv_offsets));
  // Built on error paths only: a valid call allocates nothing.
  auto where = [op, rank] { return std::string(op) + " on rank " + std::to_string(rank); };
  if (recv_sizes_size != static_cast<size_t>(world_size)) {
    return InvalidArgumentError(where() + ": recv_sizes must have " + std::to_string(world_size) +
                                " entries (world size), got " + std::to_string(recv_sizes_size));
  }
  for (int p = 0; p < world_size; ++p) {
    if (send_counts[p] > Transport::kMaxBoundedMessageBytes ||
        recv_capacity[p] > Transport::kMaxBoundedMessageBytes) {
      return InvalidArgumentError(where() + ": message or capacity for rank " + std::to_string(p) +
                                  " exceeds " + std::to_string(Transport::kMaxBoundedMessageBytes) +
                                  " bytes");
    }
  }
  if (send_counts[rank] > recv_capacity[rank]) {
    return InvalidArgumentError(where() + ": sends " + std::to_string(send_counts[rank]) +
                                " bytes to itself but its capacity is " +
                                std::to_string(recv_capacity[rank]));
  }
  return OkStatus();
}

Status ValidatePeerTag(std::string_view op, int rank, int world_size, int peer, int tag) {
  if (peer < 0 || peer >= world_size || peer == rank) {
    return InvalidArgumentError(std::string(op) + " on rank " + std::to_string(rank) + ": peer " +
                                std::to_string(peer) + " must be another rank in [0, " +
                                std::to_string(world_size) + ")");
  }
  if (tag < 0 || tag > Transport::kMaxTag) {
    return InvalidArgumentError(std::string(op) + " on rank " + std::to_string(rank) + ": tag " +
                                std::to_string(tag) + " outside [0, " +
                                std::to_string(Transport::kMaxTag) + "]");
  }
  return OkStatus();
}

Status PeerDeadlineError(std::string_view op, int rank, const std::vector<int>& peers,
                         TransportClock::time_point started, std::string_view detail) {
  auto waited =
      std::chrono::duration_cast<std::chrono::milliseconds>(TransportClock::now() - started);
  std::string msg = std::string(op) + " on rank " + std::to_string(rank) +
                    ": deadline exceeded after " + std::to_string(waited.count()) +
                    " ms waiting for rank" + (peers.size() == 1 ? " " : "s ") + FormatRanks(peers);
  if (!detail.empty()) msg += " (" + std::string(detail) + ")";
  return DeadlineExceededError(std::move(msg));
}

Status PeerUnavailableError(std::string_view op, int rank, const std::vector<int>& peers,
                            std::string_view why) {
  return UnavailableError(std::string(op) + " on rank " + std::to_string(rank) + ": rank" +
                          (peers.size() == 1 ? " " : "s ") + FormatRanks(peers) +
                          (peers.size() == 1 ? " is" : " are") + " unavailable (" +
                          std::string(why) + ")");
}

Status PairwiseExchangeTransport::AllToAllV(std::span<const std::byte> send,
                                            std::span<const int64_t> send_counts,
                                            std::span<const int64_t> send_offsets,
                                            std::span<std::byte> recv,
                                            std::span<const int64_t> recv_counts,
                                            std::span<const int64_t> recv_offsets,
                                            Deadline deadline) {
  RETURN_IF_ERROR(ValidateAllToAllV("AllToAllV", rank(), world_size(), send.size(), send_counts,
                                    send_offsets, recv.size(), recv_counts, recv_offsets));
  return Exchange("AllToAllV", send, send_counts, send_offsets, recv, recv_counts, recv_offsets, {},
                  deadline);
}

Status PairwiseExchangeTransport::AllToAllVBounded(
    std::span<const std::byte> send, std::span<const int64_t> send_counts,
    std::span<const int64_t> send_offsets, std::span<std::byte> recv,
    std::span<const int64_t> recv_capacity, std::span<const int64_t> recv_offsets,
    std::span<int64_t> recv_sizes, Deadline deadline) {
  RETURN_IF_ERROR(ValidateAllToAllVBounded("AllToAllVBounded", rank(), world_size(), send.size(),
                                           send_counts, send_offsets, recv.size(), recv_capacity,
                                           recv_offsets, recv_sizes.size()));
  return Exchange("AllToAllVBounded", send, send_counts, send_offsets, recv, recv_capacity,
                  recv_offsets, recv_sizes, deadline);
}

bool PairwiseExchangeTransport::CopyOwnMessage(int rank, std::span<const std::byte> send,
                                               std::span<const int64_t> send_counts,
                                               std::span<const int64_t> send_offsets,
                                               std::span<std::byte> recv,
                                               std::span<const int64_t> recv_counts,
                                               std::span<const int64_t> recv_offsets,
                                               std::span<int64_t> recv_sizes) {
  const bool bounded = !recv_sizes.empty();  // validated: send_counts[rank] <= its capacity
  if (!bounded && send_counts[rank] != recv_counts[rank]) return false;
  if (bounded) recv_sizes[rank] = send_counts[rank];
  if (send_counts[rank] > 0) {
    std::memmove(recv.data() + recv_offsets[rank], send.data() + send_offsets[rank],
                 send_counts[rank]);
  }
  return true;
}

Status PairwiseExchangeTransport::Barrier(Deadline deadline) {
  std::vector<int64_t> zeros(world_size(), 0);
  return Exchange("Barrier", {}, zeros, zeros, {}, zeros, zeros, {}, deadline);
}

}  // namespace transport_internal
}  // namespace switchyard
