#include "transport/ucx/ucx_transport.h"

#include <ucp/api/ucp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "transport/ucx/ucx_requests.h"
#include "transport/ucx/ucx_status.h"

namespace switchyard {
namespace {

using ucx_internal::PeerFailures;
using ucx_internal::RequestSet;

constexpr uint64_t kP2pBit = uint64_t{1} << 63;
constexpr int kRankShift = 40;
constexpr uint64_t kLowMask = (uint64_t{1} << kRankShift) - 1;
constexpr uint64_t kFullMask = ~uint64_t{0};
constexpr int kMaxRanks = 1 << 23;
// Abandoned collectives whose late messages are still looked for.
constexpr size_t kMaxAbandoned = 16;
// Zero-byte messages still need a valid pointer.
std::byte g_empty[1];

class UcxTransport final : public transport_internal::PairwiseExchangeTransport {
 public:
  UcxTransport(int rank, int world_size, bool peer_errors)
      : rank_(rank), size_(world_size), peer_errors_(peer_errors) {}
  ~UcxTransport() override;

  Status Init(const BlobAllGather& allgather, Deadline deadline);

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }
  std::string_view name() const override { return "ucx"; }
  TransportCapabilities capabilities() const override {
    return TransportCapabilities{.host_memory = true, .device_memory = false};
  }

  Status Send(int peer, int tag, std::span<const std::byte> data, Deadline deadline) override {
    RETURN_IF_ERROR(transport_internal::ValidatePeerTag("Send", rank_, size_, peer, tag));
    const std::string op = "Send(tag " + std::to_string(tag) + ")";
    const auto started = TransportClock::now();
    RETURN_IF_ERROR(CheckAlive(op, {peer}));
    RequestSet requests(worker_, &failures_, op + " on rank " + std::to_string(rank_));
    PostSend(requests, peer, P2pTag(rank_, tag), data);
    return requests.Wait(op, rank_, deadline, started);
  }

  StatusOr<int64_t> Recv(int peer, int tag, std::span<std::byte> data, Deadline deadline) override {
    RETURN_IF_ERROR(transport_internal::ValidatePeerTag("Recv", rank_, size_, peer, tag));
    const std::string op = "Recv(tag " + std::to_string(tag) + ")";
    const auto started = TransportClock::now();
    RETURN_IF_ERROR(CheckAlive(op, {peer}));
    RequestSet requests(worker_, &failures_, op + " on rank " + std::to_string(rank_));
    PostRecv(requests, peer, P2pTag(peer, tag), data, -1);
    int64_t received = 0;
    RETURN_IF_ERROR(requests.Wait(op, rank_, deadline, started, &received));
    return received;
  }

 private:
  struct ErrorArg {
    UcxTransport* self;
    int peer;
  };

  static uint64_t P2pTag(int source, int tag) {
    return kP2pBit | (static_cast<uint64_t>(source) << kRankShift) | static_cast<uint64_t>(tag);
  }
  static uint64_t CollectiveTag(int source, uint64_t seq) {
    return (static_cast<uint64_t>(source) << kRankShift) | (seq & kLowMask);
  }

  // UCX calls this from ucp_worker_progress when an endpoint fails (PEER error mode).
  static void OnEndpointError(void* arg, ucp_ep_h, ucs_status_t status) {
    auto* a = static_cast<ErrorArg*>(arg);
    if (a->self->failures_[a->peer] == UCS_OK) {
      LOG_WARN("transport", "UCX endpoint to rank %d failed: %s", a->peer,
               ucs_status_string(status));
      a->self->failures_[a->peer] = status;
    }
  }

  Status CheckAlive(const std::string& op, const std::vector<int>& peers) const {
    std::vector<int> dead;
    for (int p : peers) {
      if (failures_[p] != UCS_OK) dead.push_back(p);
    }
    if (dead.empty()) return OkStatus();
    return transport_internal::PeerUnavailableError(
        op, rank_, dead,
        "UCX endpoint failed earlier: " +
            UcsCodeToStatus(failures_[dead[0]], "peer error").message());
  }

  void PostSend(RequestSet& requests, int peer, uint64_t tag, std::span<const std::byte> data) {
    requests.PostSend(eps_[peer], peer, tag, data.empty() ? g_empty : data.data(), data.size());
  }
  void PostRecv(RequestSet& requests, int peer, uint64_t tag, std::span<std::byte> data,
                int64_t expected, int64_t* size_out = nullptr) {
    requests.PostRecv(peer, tag, data.empty() ? g_empty : data.data(), data.size(), expected,
                      size_out);
  }

  // Posts every receive, then every send (empty messages included, so each call also shows that
  // every peer reached it), then progresses them all until the deadline.
  Status Exchange(const char* what, std::span<const std::byte> send,
                  std::span<const int64_t> send_counts, std::span<const int64_t> send_offsets,
                  std::span<std::byte> recv, std::span<const int64_t> recv_counts,
                  std::span<const int64_t> recv_offsets, std::span<int64_t> recv_sizes,
                  Deadline deadline) override {
    const uint64_t seq = next_seq_++;
    const bool bounded = !recv_sizes.empty();  // recv_counts are capacities
    const std::string op = std::string(what) + " #" + std::to_string(seq);
    const std::string where = op + " on rank " + std::to_string(rank_);
    const auto started = TransportClock::now();
    std::vector<int> peers;
    for (int p = 0; p < size_; ++p) {
      if (p != rank_) peers.push_back(p);
    }
    RETURN_IF_ERROR(CheckAlive(op, peers));
    DiscardLateMessages();
    Status mismatch;
    if (!CopyOwnMessage(rank_, send, send_counts, send_offsets, recv, recv_counts, recv_offsets,
                        recv_sizes)) {
      mismatch = InvalidArgumentError(where + ": sends " + std::to_string(send_counts[rank_]) +
                                      " bytes to itself but expects " +
                                      std::to_string(recv_counts[rank_]));
    }
    RequestSet requests(worker_, &failures_, where);
    for (int i = 1; i < size_; ++i) {
      const int p = (rank_ - i + size_) % size_;
      PostRecv(requests, p, CollectiveTag(p, seq), recv.subspan(recv_offsets[p], recv_counts[p]),
               bounded ? -1 : recv_counts[p], bounded ? &recv_sizes[p] : nullptr);
    }
    for (int i = 1; i < size_; ++i) {
      // Staggered order spreads the load instead of every rank talking to rank 0 first.
      const int p = (rank_ + i) % size_;
      PostSend(requests, p, CollectiveTag(rank_, seq),
               send.subspan(send_offsets[p], send_counts[p]));
    }
    Status waited = requests.Wait(op, rank_, deadline, started);
    if (!waited.ok()) {
      // Peers may still send their part of this call: drop it when it comes (bounded list).
      abandoned_seqs_.push_back(seq);
      if (abandoned_seqs_.size() > kMaxAbandoned) abandoned_seqs_.erase(abandoned_seqs_.begin());
      return waited;
    }
    return mismatch;
  }

  // Takes the late messages of abandoned collectives off UCX's unexpected queue, so they neither
  // pile up nor get reported at shutdown. Each takes at most a few ms (data sent eagerly is local;
  // a rendezvous one whose sender is gone is given up after 20 ms).
  void DiscardLateMessages() {
    for (uint64_t seq : abandoned_seqs_) {
      while (true) {
        ucp_tag_recv_info_t info{};
        ucp_tag_message_h message =
            ucp_tag_probe_nb(worker_, seq & kLowMask, kP2pBit | kLowMask, 1, &info);
        if (message == nullptr) break;
        const int peer = static_cast<int>((info.sender_tag & ~kP2pBit) >> kRankShift);
        discard_.resize(std::max(discard_.size(), info.length));
        RequestSet requests(worker_, &failures_,
                            "discarding a late message of collective #" + std::to_string(seq));
        requests.PostMessageRecv(message, peer < size_ ? peer : 0, discard_.data(), info.length);
        Status dropped =
            requests.Wait("discard", rank_, Deadline::After(std::chrono::milliseconds(20)),
                          TransportClock::now());
        LOG_DEBUG(
            "transport", "dropped a late %zu-byte message of collective #%llu from rank %d: %s",
            info.length, static_cast<unsigned long long>(seq), peer, dropped.ToString().c_str());
      }
    }
  }

  // Progresses until `request` (from a *_nbx call) completes or `until`; frees it.
  ucs_status_t WaitRequest(ucs_status_ptr_t request, TransportClock::time_point until) {
    if (request == nullptr) return UCS_OK;
    if (UCS_PTR_IS_ERR(request)) return UCS_PTR_STATUS(request);
    ucs_status_t status;
    while ((status = ucp_request_check_status(request)) == UCS_INPROGRESS &&
           TransportClock::now() < until) {
      if (ucp_worker_progress(worker_) == 0) std::this_thread::yield();
    }
    ucp_request_free(request);
    return status;
  }

  const int rank_;
  const int size_;
  const bool peer_errors_;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::vector<ucp_ep_h> eps_;
  std::vector<ErrorArg> error_args_;
  PeerFailures failures_;
  uint64_t next_seq_ = 0;
  std::vector<uint64_t> abandoned_seqs_;  // collectives that failed here, newest last
  std::vector<std::byte> discard_;        // where late messages are received to be dropped
};

Status UcxTransport::Init(const BlobAllGather& allgather, Deadline deadline) {
  const std::string where =
      "UCX transport (rank " + std::to_string(rank_) + " of " + std::to_string(size_) + ")";
  ucp_config_t* config = nullptr;
  RETURN_IF_ERROR(
      UcsCodeToStatus(ucp_config_read(nullptr, nullptr, &config), where + ": ucp_config_read"));
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_ESTIMATED_NUM_EPS;
  params.features = UCP_FEATURE_TAG;
  params.estimated_num_eps = static_cast<size_t>(size_);
  Status init = UcsCodeToStatus(ucp_init(&params, config, &context_), where + ": ucp_init");
  ucp_config_release(config);
  RETURN_IF_ERROR(init);

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SERIALIZED;
  RETURN_IF_ERROR(UcsCodeToStatus(ucp_worker_create(context_, &worker_params, &worker_),
                                  where + ": ucp_worker_create"));
  ucp_address_t* address = nullptr;
  size_t address_length = 0;
  RETURN_IF_ERROR(UcsCodeToStatus(ucp_worker_get_address(worker_, &address, &address_length),
                                  where + ": ucp_worker_get_address"));
  std::string blob(reinterpret_cast<const char*>(address), address_length);
  ucp_worker_release_address(worker_, address);

  auto gathered = allgather(blob, deadline);
  if (!gathered.ok()) return gathered.status().WithContext(where + ": exchanging worker addresses");
  const std::vector<std::string>& blobs = *gathered;
  if (blobs.size() != static_cast<size_t>(size_)) {
    return InvalidArgumentError(where + ": the bootstrap returned " + std::to_string(blobs.size()) +
                                " addresses for a world of " + std::to_string(size_));
  }
  failures_.assign(size_, UCS_OK);
  eps_.assign(size_, nullptr);
  error_args_.resize(size_);
  for (int p = 0; p < size_; ++p) {
    if (p == rank_) continue;
    if (blobs[p].empty()) {
      return InvalidArgumentError(where + ": rank " + std::to_string(p) +
                                  " sent an empty worker address");
    }
    error_args_[p] = ErrorArg{this, p};
    ucp_ep_params_t ep_params{};
    ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
    ep_params.address = reinterpret_cast<const ucp_address_t*>(blobs[p].data());
    if (peer_errors_) {
      ep_params.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
      ep_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
      ep_params.err_handler.cb = &UcxTransport::OnEndpointError;
      ep_params.err_handler.arg = &error_args_[p];
    }
    RETURN_IF_ERROR(UcsCodeToStatus(ucp_ep_create(worker_, &ep_params, &eps_[p]),
                                    where + ": ucp_ep_create to rank " + std::to_string(p)));
  }
  SetLogRank(rank_);
  // Every endpoint carries a message once before the transport is handed out.
  return Barrier(deadline).WithContext(where + ": connecting");
}

UcxTransport::~UcxTransport() {
  if (worker_ != nullptr) {
    // Let sends that completed locally reach their peers, then drop the endpoints without asking
    // peers that may be gone (bounded: 1 s for the flush, 1 s for the closes).
    const auto flush_until = TransportClock::now() + std::chrono::seconds(1);
    ucp_request_param_t flush_param{};
    ucs_status_t flushed = WaitRequest(ucp_worker_flush_nbx(worker_, &flush_param), flush_until);
    if (flushed != UCS_OK) {
      LOG_DEBUG("transport", "UCX worker flush at shutdown: %s", ucs_status_string(flushed));
    }
    const auto close_until = TransportClock::now() + std::chrono::seconds(1);
    for (ucp_ep_h ep : eps_) {
      if (ep == nullptr) continue;
      ucp_request_param_t close_param{};
      // FORCE requires PEER error handling on both sides; without it, a flushing close.
      close_param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
      close_param.flags = peer_errors_ ? UCP_EP_CLOSE_FLAG_FORCE : 0;
      WaitRequest(ucp_ep_close_nbx(ep, &close_param), close_until);
    }
    ucp_worker_destroy(worker_);
  }
  if (context_ != nullptr) ucp_cleanup(context_);
}

}  // namespace

StatusOr<std::unique_ptr<Transport>> CreateUcxTransport(int rank, int world_size,
                                                        const BlobAllGather& allgather,
                                                        Deadline deadline,
                                                        UcxErrorMode error_mode) {
  if (error_mode == UcxErrorMode::kFromEnv) {
    const char* env = std::getenv("SWITCHYARD_UCX_ERROR_MODE");
    const std::string_view mode = env ? env : "peer";
    if (mode != "peer" && mode != "none") {
      return InvalidArgumentError("environment variable SWITCHYARD_UCX_ERROR_MODE='" +
                                  std::string(mode) + "' (expected peer or none)");
    }
    error_mode = mode == "peer" ? UcxErrorMode::kPeer : UcxErrorMode::kNone;
  }
  if (world_size < 1 || world_size > kMaxRanks || rank < 0 || rank >= world_size) {
    return InvalidArgumentError("UCX transport: rank " + std::to_string(rank) + " / world size " +
                                std::to_string(world_size) +
                                " invalid (need 0 <= rank < world size <= 2^23)");
  }
  auto transport =
      std::make_unique<UcxTransport>(rank, world_size, error_mode == UcxErrorMode::kPeer);
  RETURN_IF_ERROR(transport->Init(allgather, deadline));
  return std::unique_ptr<Transport>(std::move(transport));
}

}  // namespace switchyard
