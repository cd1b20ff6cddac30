#include "transport/nccl/nccl_transport.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "transport/nccl/nccl_status.h"

namespace switchyard {
namespace {

using transport_internal::FormatRanks;

struct DeviceBuffer {
  void* ptr = nullptr;
  size_t size = 0;
};

// A point-to-point message header: tag and payload size.
struct Header {
  int64_t tag;
  int64_t size;
};
static_assert(sizeof(Header) == 16);

class NcclTransport final : public Transport {
 public:
  NcclTransport(int rank, int world_size, int device)
      : rank_(rank), size_(world_size), device_(device) {}
  ~NcclTransport() override;

  Status Init(const BlobAllGather& allgather, Deadline deadline);

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string_view name() const override { return "nccl"; }
  TransportCapabilities capabilities() const override {
    return TransportCapabilities{.host_memory = true, .device_memory = true};
  }

  Status AllToAllV(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                   std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                   std::span<const int64_t> recv_counts, std::span<const int64_t> recv_offsets,
                   Deadline deadline) override;
  Status AllToAllVBounded(std::span<const std::byte> send, std::span<const int64_t> send_counts,
                          std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                          std::span<const int64_t> recv_capacity,
                          std::span<const int64_t> recv_offsets, std::span<int64_t> recv_sizes,
                          Deadline deadline) override;
  Status Send(int peer, int tag, std::span<const std::byte> data, Deadline deadline) override;
  StatusOr<int64_t> Recv(int peer, int tag, std::span<std::byte> data, Deadline deadline) override;
  Status Barrier(Deadline deadline) override;

 private:
  std::string Where(const std::string& op) const {
    return op + " on rank " + std::to_string(rank_);
  }
  std::vector<int> Others() const {
    std::vector<int> peers;
    for (int p = 0; p < size_; ++p) {
      if (p != rank_) peers.push_back(p);
    }
    return peers;
  }
  // Makes the device current; fails once the communicator was aborted.
  Status Use(const std::string& op) {
    RETURN_IF_ERROR(CudaErrorToStatus(cudaSetDevice(device_), Where(op) + ": cudaSetDevice"));
    if (comm_ == nullptr) {
      return UnavailableError(Where(op) + ": the NCCL communicator was aborted after an earlier " +
                              "error or deadline; create a new transport");
    }
    return OkStatus();
  }
  void Abort() {
    if (comm_ != nullptr) ncclCommAbort(comm_);
    comm_ = nullptr;
  }
  // Polls until the communicator and the stream are idle, an asynchronous error, or `deadline`
  // (then aborts). `peers`: whom the call waits on (for the error).
  Status Complete(const std::string& op, const std::vector<int>& peers, Deadline deadline,
                  TransportClock::time_point started);
  // Ends a group started by the caller; `enqueued` is the first error of the calls inside it.
  Status EndGroup(const std::string& op, Status enqueued);
  Status Ensure(DeviceBuffer& buffer, size_t bytes, const std::string& op);
  bool OnDevice(const void* ptr) const;
  // The result of an NCCL call that enqueues work: ncclInProgress is fine (non-blocking comm).
  static Status Enqueued(ncclResult_t result, const std::string& context) {
    return result == ncclInProgress ? OkStatus() : NcclResultToStatus(result, context);
  }
  // Copies stream-ordered. Device-to-pageable-host copies block the host until the stream gets
  // there, so callers issue them only on an idle stream (after Complete).
  Status CopyAsync(void* dst, const void* src, size_t bytes, const std::string& op) {
    if (bytes == 0) return OkStatus();
    return CudaErrorToStatus(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_),
                             Where(op) + ": cudaMemcpyAsync");
  }
  // Both all-to-alls (spans validated): counts first, then the data. Empty `recv_sizes`: receives
  // must match recv_counts exactly; else recv_counts are capacities and recv_sizes gets the sizes.
  Status AllToAllVImpl(const std::string& op, std::span<const std::byte> send,
                       std::span<const int64_t> send_counts, std::span<const int64_t> send_offsets,
                       std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                       std::span<const int64_t> recv_offsets, std::span<int64_t> recv_sizes,
                       Deadline deadline);
  // Exchanges one int64 per peer (collective); `out[p]` = what rank p sent this rank.
  Status ExchangeCounts(const std::string& op, std::span<const int64_t> counts,
                        std::vector<int64_t>* out, Deadline deadline,
                        TransportClock::time_point started);
  // Receives the next message (header + payload) from `peer` into host memory.
  Status ReceiveMessage(const std::string& op, int peer, Deadline deadline,
                        TransportClock::time_point started, int64_t* tag, std::string* payload);

  const int rank_;
  const int size_;
  const int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer send_stage_, recv_stage_, scratch_, counts_;
  // Point-to-point messages that arrived before their Recv: per peer, per tag, in order.
  std::vector<std::map<int64_t, std::deque<std::string>>> queued_;
};

NcclTransport::~NcclTransport() {
  cudaSetDevice(device_);
  if (comm_ != nullptr) {
    // Finalize with a bound; a peer that never finalizes must not hang us (abort instead).
    ncclResult_t state = ncclCommFinalize(comm_);
    const auto until = TransportClock::now() + std::chrono::seconds(2);
    while (state == ncclSuccess || state == ncclInProgress) {
      if (ncclCommGetAsyncError(comm_, &state) != ncclSuccess || state != ncclInProgress) break;
      if (TransportClock::now() >= until) break;
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    if (state == ncclSuccess) {
      ncclCommDestroy(comm_);
    } else {
      ncclCommAbort(comm_);
    }
  }
  for (DeviceBuffer* b : {&send_stage_, &recv_stage_, &scratch_, &counts_}) {
    if (b->ptr) cudaFree(b->ptr);
  }
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

Status NcclTransport::Init(const BlobAllGather& allgather, Deadline deadline) {
  const std::string where = "NCCL transport (rank " + std::to_string(rank_) + " of " +
                            std::to_string(size_) + ", GPU " + std::to_string(device_) + ")";
  const auto started = TransportClock::now();
  RETURN_IF_ERROR(CudaErrorToStatus(cudaSetDevice(device_), where + ": cudaSetDevice"));
  ncclUniqueId id{};
  std::string blob;
  if (rank_ == 0) {
    RETURN_IF_ERROR(NcclResultToStatus(ncclGetUniqueId(&id), where + ": ncclGetUniqueId"));
    blob.assign(reinterpret_cast<const char*>(&id), sizeof(id));
  }
  auto gathered = allgather(blob, deadline);
  if (!gathered.ok()) return gathered.status().WithContext(where + ": exchanging the unique id");
  if (gathered->size() != static_cast<size_t>(size_) || (*gathered)[0].size() != sizeof(id)) {
    return InvalidArgumentError(where + ": the bootstrap did not return rank 0's " +
                                std::to_string(sizeof(id)) + "-byte ncclUniqueId");
  }
  std::memcpy(&id, (*gathered)[0].data(), sizeof(id));
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;  // every call returns at once; we poll, so deadlines hold
  ncclResult_t result = ncclCommInitRankConfig(&comm_, size_, id, rank_, &config);
  if (result != ncclSuccess && result != ncclInProgress) {
    Abort();
    return NcclResultToStatus(result, where + ": ncclCommInitRankConfig");
  }
  RETURN_IF_ERROR(CudaErrorToStatus(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
                                    where + ": cudaStreamCreateWithFlags"));
  queued_.resize(size_);
  RETURN_IF_ERROR(Complete("NCCL communicator init", Others(), deadline, started));
  SetLogRank(rank_);
  return OkStatus();
}

Status NcclTransport::Complete(const std::string& op, const std::vector<int>& peers,
                               Deadline deadline, TransportClock::time_point started) {
  int idle = 0;
  while (true) {
    ncclResult_t state = ncclSuccess;
    ncclResult_t rc = ncclCommGetAsyncError(comm_, &state);
    if (rc != ncclSuccess) state = rc;
    if (state != ncclSuccess && state != ncclInProgress) {
      Status error = NcclResultToStatus(state, Where(op) + " (peers " + FormatRanks(peers) + ")",
                                        ncclGetLastError(comm_));
      Abort();
      return error;
    }
    if (state == ncclSuccess) {
      cudaError_t query = cudaStreamQuery(stream_);
      if (query == cudaSuccess) return OkStatus();
      if (query != cudaErrorNotReady) {
        Abort();
        return CudaErrorToStatus(query, Where(op) + ": cudaStreamQuery");
      }
    }
    if (deadline.Expired()) {
      Abort();
      return transport_internal::PeerDeadlineError(
          op, rank_, peers, started,
          "NCCL does not say which of them is late; the communicator was aborted");
    }
    if (++idle > 64) std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

Status NcclTransport::EndGroup(const std::string& op, Status enqueued) {
  ncclResult_t result = ncclGroupEnd();
  if (!enqueued.ok()) {
    Abort();
    return enqueued;
  }
  if (result != ncclSuccess && result != ncclInProgress) {
    Status error =
        NcclResultToStatus(result, Where(op) + ": ncclGroupEnd", ncclGetLastError(comm_));
    Abort();
    return error;
  }
  return OkStatus();
}

Status NcclTransport::Ensure(DeviceBuffer& buffer, size_t bytes, const std::string& op) {
  if (buffer.size >= bytes) return OkStatus();
  if (buffer.ptr) cudaFree(buffer.ptr);
  buffer = {};
  const size_t grown = std::max(bytes, size_t{4096});
  RETURN_IF_ERROR(CudaErrorToStatus(cudaMalloc(&buffer.ptr, grown),
                                    Where(op) + ": cudaMalloc(" + std::to_string(grown) + ")"));
  buffer.size = grown;
  return OkStatus();
}

bool NcclTransport::OnDevice(const void* ptr) const {
  cudaPointerAttributes attributes{};
  if (ptr == nullptr || cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error of an unknown host pointer
    return false;
  }
  return attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
}

Status NcclTransport::ExchangeCounts(const std::string& op, std::span<const int64_t> counts,
                                     std::vector<int64_t>* out, Deadline deadline,
                                     TransportClock::time_point started) {
  const size_t bytes = sizeof(int64_t) * size_;
  RETURN_IF_ERROR(Ensure(counts_, 2 * bytes, op));
  auto* device = static_cast<int64_t*>(counts_.ptr);
  RETURN_IF_ERROR(CopyAsync(device, counts.data(), bytes, op));
  ncclGroupStart();
  Status enqueued;
  for (int p = 0; p < size_ && enqueued.ok(); ++p) {
    if (p == rank_) continue;
    enqueued = Enqueued(ncclSend(device + p, sizeof(int64_t), ncclUint8, p, comm_, stream_),
                        Where(op) + ": ncclSend(counts) to rank " + std::to_string(p));
    if (enqueued.ok()) {
      enqueued =
          Enqueued(ncclRecv(device + size_ + p, sizeof(int64_t), ncclUint8, p, comm_, stream_),
                   Where(op) + ": ncclRecv(counts) from rank " + std::to_string(p));
    }
  }
  RETURN_IF_ERROR(EndGroup(op, enqueued));
  RETURN_IF_ERROR(Complete(op, Others(), deadline, started));
  out->assign(size_, 0);
  RETURN_IF_ERROR(CopyAsync(out->data(), device + size_, bytes, op));
  RETURN_IF_ERROR(Complete(op, Others(), deadline, started));
  (*out)[rank_] = counts[rank_];
  return OkStatus();
}

Status NcclTransport::AllToAllV(std::span<const std::byte> send,
                                std::span<const int64_t> send_counts,
                                std::span<const int64_t> send_offsets, std::span<std::byte> recv,
                                std::span<const int64_t> recv_counts,
                                std::span<const int64_t> recv_offsets, Deadline deadline) {
  RETURN_IF_ERROR(transport_internal::ValidateAllToAllV("AllToAllV", rank_, size_, send.size(),
                                                        send_counts, send_offsets, recv.size(),
                                                        recv_counts, recv_offsets));
  return AllToAllVImpl("AllToAllV", send, send_counts, send_offsets, recv, recv_counts,
                       recv_offsets, {}, deadline);
}

Status NcclTransport::AllToAllVBounded(std::span<const std::byte> send,
                                       std::span<const int64_t> send_counts,
                                       std::span<const int64_t> send_offsets,
                                       std::span<std::byte> recv,
                                       std::span<const int64_t> recv_capacity,
                                       std::span<const int64_t> recv_offsets,
                                       std::span<int64_t> recv_sizes, Deadline deadline) {
  RETURN_IF_ERROR(transport_internal::ValidateAllToAllVBounded(
      "AllToAllVBounded", rank_, size_, send.size(), send_counts, send_offsets, recv.size(),
      recv_capacity, recv_offsets, recv_sizes.size()));
  return AllToAllVImpl("AllToAllVBounded", send, send_counts, send_offsets, recv, recv_capacity,
                       recv_offsets, recv_sizes, deadline);
}

Status NcclTransport::AllToAllVImpl(const std::string& op, std::span<const std::byte> send,
                                    std::span<const int64_t> send_counts,
                                    std::span<const int64_t> send_offsets,
                                    std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                                    std::span<const int64_t> recv_offsets,
                                    std::span<int64_t> recv_sizes, Deadline deadline) {
  const bool bounded = !recv_sizes.empty();
  const auto started = TransportClock::now();
  RETURN_IF_ERROR(Use(op));
  // What every peer is about to send: a mismatch is reported, and the peer's bytes are still
  // taken (into scratch), so that its call completes.
  std::vector<int64_t> announced;
  RETURN_IF_ERROR(ExchangeCounts(op, send_counts, &announced, deadline, started));
  // Whether rank p's bytes go into its region (announced[rank_] is this rank's own count).
  auto fits = [&](int p) {
    return bounded ? announced[p] <= recv_counts[p] : announced[p] == recv_counts[p];
  };
  Status mismatch;
  int64_t scratch_bytes = 0;
  for (int p = 0; p < size_; ++p) {
    if (fits(p) || (!bounded && p == rank_)) continue;  // exact: self reported below
    scratch_bytes = std::max(scratch_bytes, announced[p]);
    if (mismatch.ok()) {
      mismatch = InvalidArgumentError(
          Where(op) + ": rank " + std::to_string(p) + " sent " + std::to_string(announced[p]) +
          " bytes, " + (bounded ? "more than this rank's capacity of " : "expected ") +
          std::to_string(recv_counts[p]));
    }
  }
  RETURN_IF_ERROR(Ensure(scratch_, scratch_bytes, op));
  // Host buffers travel through device staging buffers.
  const bool send_on_device = send.empty() || OnDevice(send.data());
  const bool recv_on_device = recv.empty() || OnDevice(recv.data());
  const std::byte* send_base = send.data();
  std::byte* recv_base = recv.data();
  if (!send_on_device) {
    RETURN_IF_ERROR(Ensure(send_stage_, send.size(), op));
    RETURN_IF_ERROR(CopyAsync(send_stage_.ptr, send.data(), send.size(), op));
    send_base = static_cast<const std::byte*>(send_stage_.ptr);
  }
  if (!recv_on_device) {
    RETURN_IF_ERROR(Ensure(recv_stage_, recv.size(), op));
    recv_base = static_cast<std::byte*>(recv_stage_.ptr);
  }
  if (fits(rank_)) {
    RETURN_IF_ERROR(CopyAsync(recv_base + recv_offsets[rank_], send_base + send_offsets[rank_],
                              send_counts[rank_], op));
  }
  ncclGroupStart();
  Status enqueued;
  for (int i = 1; i < size_ && enqueued.ok(); ++i) {
    const int to = (rank_ + i) % size_;
    const int from = (rank_ - i + size_) % size_;
    if (send_counts[to] > 0) {
      enqueued = Enqueued(
          ncclSend(send_base + send_offsets[to], send_counts[to], ncclUint8, to, comm_, stream_),
          Where(op) + ": ncclSend to rank " + std::to_string(to));
    }
    if (enqueued.ok() && announced[from] > 0) {
      void* into = fits(from) ? static_cast<void*>(recv_base + recv_offsets[from]) : scratch_.ptr;
      enqueued = Enqueued(ncclRecv(into, announced[from], ncclUint8, from, comm_, stream_),
                          Where(op) + ": ncclRecv from rank " + std::to_string(from));
    }
  }
  RETURN_IF_ERROR(EndGroup(op, enqueued));
  RETURN_IF_ERROR(Complete(op, Others(), deadline, started));
  if (!recv_on_device) {
    // Back to the host: only the regions this call wrote (the staging buffer's other bytes are
    // stale; the caller's bytes between and around the regions must stay), adjacent ones merged.
    int64_t run_begin = 0, run_end = 0;
    for (int p = 0; p <= size_; ++p) {
      const bool wrote = p < size_ && announced[p] > 0 && fits(p);
      if (wrote && recv_offsets[p] == run_end && run_end > run_begin) {
        run_end += announced[p];
        continue;
      }
      RETURN_IF_ERROR(CopyAsync(recv.data() + run_begin, recv_base + run_begin,
                                static_cast<size_t>(run_end - run_begin), op));
      run_begin = wrote ? recv_offsets[p] : 0;
      run_end = wrote ? recv_offsets[p] + announced[p] : 0;
    }
    RETURN_IF_ERROR(Complete(op, Others(), deadline, started));
  }
  if (bounded && mismatch.ok()) {
    for (int p = 0; p < size_; ++p) recv_sizes[p] = announced[p];
  }
  if (!bounded && mismatch.ok() && send_counts[rank_] != recv_counts[rank_]) {
    mismatch =
        InvalidArgumentError(Where(op) + ": sends " + std::to_string(send_counts[rank_]) +
                             " bytes to itself but expects " + std::to_string(recv_counts[rank_]));
  }
  return mismatch;
}

Status NcclTransport::Barrier(Deadline deadline) {
  const std::string op = "Barrier";
  const auto started = TransportClock::now();
  RETURN_IF_ERROR(Use(op));
  RETURN_IF_ERROR(Ensure(scratch_, sizeof(float), op));
  ncclResult_t result =
      ncclAllReduce(scratch_.ptr, scratch_.ptr, 1, ncclFloat32, ncclSum, comm_, stream_);
  if (result != ncclSuccess && result != ncclInProgress) {
    Status error =
        NcclResultToStatus(result, Where(op) + ": ncclAllReduce", ncclGetLastError(comm_));
    Abort();
    return error;
  }
  return Complete(op, Others(), deadline, started);
}

Status NcclTransport::Send(int peer, int tag, std::span<const std::byte> data, Deadline deadline) {
  RETURN_IF_ERROR(transport_internal::ValidatePeerTag("Send", rank_, size_, peer, tag));
  const std::string op = "Send(tag " + std::to_string(tag) + ")";
  const auto started = TransportClock::now();
  RETURN_IF_ERROR(Use(op));
  const Header header{tag, static_cast<int64_t>(data.size())};
  RETURN_IF_ERROR(Ensure(counts_, sizeof(Header), op));
  RETURN_IF_ERROR(CopyAsync(counts_.ptr, &header, sizeof(header), op));
  const void* payload = data.data();
  if (!data.empty() && !OnDevice(data.data())) {
    RETURN_IF_ERROR(Ensure(send_stage_, data.size(), op));
    RETURN_IF_ERROR(CopyAsync(send_stage_.ptr, data.data(), data.size(), op));
    payload = send_stage_.ptr;
  }
  ncclGroupStart();
  Status enqueued =
      Enqueued(ncclSend(counts_.ptr, sizeof(Header), ncclUint8, peer, comm_, stream_), Where(op));
  if (enqueued.ok() && !data.empty()) {
    enqueued = Enqueued(ncclSend(payload, data.size(), ncclUint8, peer, comm_, stream_), Where(op));
  }
  RETURN_IF_ERROR(EndGroup(op, enqueued));
  return Complete(op, {peer}, deadline, started);
}

Status NcclTransport::ReceiveMessage(const std::string& op, int peer, Deadline deadline,
                                     TransportClock::time_point started, int64_t* tag,
                                     std::string* payload) {
  RETURN_IF_ERROR(Ensure(counts_, sizeof(Header), op));
  RETURN_IF_ERROR(
      Enqueued(ncclRecv(counts_.ptr, sizeof(Header), ncclUint8, peer, comm_, stream_), Where(op)));
  RETURN_IF_ERROR(Complete(op, {peer}, deadline, started));
  Header header{};
  RETURN_IF_ERROR(CopyAsync(&header, counts_.ptr, sizeof(header), op));
  RETURN_IF_ERROR(Complete(op, {peer}, deadline, started));
  if (header.size < 0 || header.tag < 0 || header.tag > kMaxTag) {
    Abort();  // the stream is out of step with the peer
    return InternalError(Where(op) + ": malformed message header from rank " +
                         std::to_string(peer));
  }
  *tag = header.tag;
  payload->assign(header.size, '\0');
  if (header.size == 0) return OkStatus();
  RETURN_IF_ERROR(Ensure(recv_stage_, header.size, op));
  RETURN_IF_ERROR(
      Enqueued(ncclRecv(recv_stage_.ptr, header.size, ncclUint8, peer, comm_, stream_), Where(op)));
  RETURN_IF_ERROR(Complete(op, {peer}, deadline, started));
  RETURN_IF_ERROR(CopyAsync(payload->data(), recv_stage_.ptr, header.size, op));
  return Complete(op, {peer}, deadline, started);
}

StatusOr<int64_t> NcclTransport::Recv(int peer, int tag, std::span<std::byte> data,
                                      Deadline deadline) {
  RETURN_IF_ERROR(transport_internal::ValidatePeerTag("Recv", rank_, size_, peer, tag));
  const std::string op = "Recv(tag " + std::to_string(tag) + ")";
  const auto started = TransportClock::now();
  RETURN_IF_ERROR(Use(op));
  std::string message;
  auto& queue = queued_[peer][tag];
  if (!queue.empty()) {
    message = std::move(queue.front());
    queue.pop_front();
  } else {
    while (true) {
      int64_t got_tag = -1;
      RETURN_IF_ERROR(ReceiveMessage(op, peer, deadline, started, &got_tag, &message));
      if (got_tag == tag) break;
      queued_[peer][got_tag].push_back(std::move(message));
    }
  }
  if (message.size() > data.size()) {
    return OutOfRangeError(Where(op) + ": message of " + std::to_string(message.size()) +
                           " bytes from rank " + std::to_string(peer) + " exceeds the " +
                           std::to_string(data.size()) + "-byte buffer");
  }
  RETURN_IF_ERROR(CopyAsync(data.data(), message.data(), message.size(), op));
  RETURN_IF_ERROR(Complete(op, {peer}, deadline, started));
  return static_cast<int64_t>(message.size());
}

}  // namespace

int NcclVisibleDevices() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

StatusOr<std::unique_ptr<Transport>> CreateNcclTransport(int rank, int world_size,
                                                         const BlobAllGather& allgather,
                                                         Deadline deadline, int device) {
  if (world_size < 1 || rank < 0 || rank >= world_size) {
    return InvalidArgumentError("NCCL transport: rank " + std::to_string(rank) + " outside [0, " +
                                std::to_string(world_size) + ")");
  }
  const int devices = NcclVisibleDevices();
  if (devices == 0) {
    return UnavailableError("NCCL transport (rank " + std::to_string(rank) +
                            "): no CUDA device is visible");
  }
  if (device < 0) device = rank % devices;
  if (device >= devices) {
    return InvalidArgumentError("NCCL transport (rank " + std::to_string(rank) + "): GPU " +
                                std::to_string(device) + " requested, " + std::to_string(devices) +
                                " visible");
  }
  auto transport = std::make_unique<NcclTransport>(rank, world_size, device);
  RETURN_IF_ERROR(transport->Init(allgather, deadline));
  return std::unique_ptr<Transport>(std::move(transport));
}

}  // namespace switchyard
