#include "transport/ucx/ucx_requests.h"

#include <algorithm>
#include <thread>

#include "common/logging.h"
#include "transport/ucx/ucx_status.h"

namespace switchyard::ucx_internal {

RequestSet::~RequestSet() { Abandon(); }

void RequestSet::PostSend(ucp_ep_h ep, int peer, uint64_t tag, const void* data, size_t size) {
  ucp_request_param_t param{};
  ucs_status_ptr_t request = ucp_tag_send_nbx(ep, data, size, tag, &param);
  if (request == nullptr) return;  // completed at once (buffered)
  if (UCS_PTR_IS_ERR(request)) {
    Record({nullptr, peer, false, 0, nullptr, nullptr}, UCS_PTR_STATUS(request), 0, nullptr);
    return;
  }
  entries_.push_back({request, peer, false, 0, nullptr, nullptr});
}

void RequestSet::OnRecv(void*, ucs_status_t status, const ucp_tag_recv_info_t* info,
                        void* user_data) {
  auto* slot = static_cast<RecvSlot*>(user_data);
  slot->status = status;
  slot->length = info ? info->length : 0;
  slot->done = true;
}

void RequestSet::PostRecv(int peer, uint64_t tag, void* data, size_t size, int64_t expected,
                          int64_t* size_out) {
  PostAnyRecv(nullptr, peer, tag, data, size, expected, size_out);
}

void RequestSet::PostMessageRecv(ucp_tag_message_h message, int peer, void* data, size_t size) {
  PostAnyRecv(message, peer, 0, data, size, -1, nullptr);
}

void RequestSet::PostAnyRecv(ucp_tag_message_h message, int peer, uint64_t tag, void* data,
                             size_t size, int64_t expected, int64_t* size_out) {
  // The length of a receive comes from its callback: UCX 1.13 does not fill recv_info for receives
  // that complete while being posted, nor the request's info when immediate completion is denied.
  // Immediate completion is denied so that the callback is the one place results arrive.
  auto* slot = new RecvSlot;
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  param.cb.recv = &RequestSet::OnRecv;
  param.user_data = slot;
  ucs_status_ptr_t request = message
                                 ? ucp_tag_msg_recv_nbx(worker_, data, size, message, &param)
                                 : ucp_tag_recv_nbx(worker_, data, size, tag, ~uint64_t{0}, &param);
  if (UCS_PTR_IS_ERR(request) || request == nullptr) {
    const ucs_status_t status = request ? UCS_PTR_STATUS(request) : slot->status;
    delete slot;
    Record({nullptr, peer, true, expected, nullptr, size_out}, status, 0, nullptr);
    return;
  }
  entries_.push_back({request, peer, true, expected, slot, size_out});
}

void RequestSet::Record(const Entry& e, ucs_status_t status, size_t length, int64_t* received) {
  if (status == UCS_OK) {
    if (!e.is_recv) return;
    if (received) *received = static_cast<int64_t>(length);
    if (e.size_out != nullptr) *e.size_out = static_cast<int64_t>(length);
    if (e.expected >= 0 && static_cast<int64_t>(length) != e.expected && first_error_.ok()) {
      first_error_ = InvalidArgumentError(where_ + ": rank " + std::to_string(e.peer) + " sent " +
                                          std::to_string(length) + " bytes, expected " +
                                          std::to_string(e.expected));
    }
    return;
  }
  if (!first_error_.ok()) return;
  if (e.is_recv && e.expected >= 0 && status == UCS_ERR_MESSAGE_TRUNCATED) {
    // A collective receive that overflowed: the peer's count disagrees with ours.
    first_error_ = InvalidArgumentError(where_ + ": rank " + std::to_string(e.peer) +
                                        " sent more than the expected " +
                                        std::to_string(e.expected) + " bytes");
    return;
  }
  if (e.is_recv && e.size_out != nullptr && status == UCS_ERR_MESSAGE_TRUNCATED) {
    first_error_ = InvalidArgumentError(where_ + ": rank " + std::to_string(e.peer) +
                                        " sent more than this rank's capacity for it");
    return;
  }
  first_error_ = UcsCodeToStatus(status, where_ + ": " + (e.is_recv ? "receive from" : "send to") +
                                             " rank " + std::to_string(e.peer));
}

bool RequestSet::Poll(Entry& e, int64_t* received) {
  ucs_status_t status;
  size_t length = 0;
  if (e.is_recv) {
    if (!e.slot->done) return false;
    status = e.slot->status;
    length = e.slot->length;
    delete e.slot;
    e.slot = nullptr;
  } else {
    status = ucp_request_check_status(e.request);
    if (status == UCS_INPROGRESS) return false;
  }
  ucp_request_free(e.request);
  e.request = nullptr;
  Record(e, status, length, received);
  return true;
}

std::vector<int> RequestSet::PendingPeers() const {
  std::vector<int> peers;
  for (const Entry& e : entries_) {
    if (e.request) peers.push_back(e.peer);
  }
  std::sort(peers.begin(), peers.end());
  peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
  return peers;
}

Status RequestSet::Wait(const std::string& op, int rank, Deadline deadline,
                        TransportClock::time_point started, int64_t* received) {
  size_t remaining = 0;
  for (Entry& e : entries_) {
    if (e.request && Poll(e, received)) continue;
    if (e.request) ++remaining;
  }
  int idle = 0;
  while (remaining > 0) {
    const unsigned events = ucp_worker_progress(worker_);
    bool completed_any = false;
    std::vector<int> failed;
    for (Entry& e : entries_) {
      if (!e.request) continue;
      if (Poll(e, received)) {
        --remaining;
        completed_any = true;
      } else if ((*failures_)[e.peer] != UCS_OK) {
        failed.push_back(e.peer);
      }
    }
    if (remaining == 0) break;
    if (!failed.empty()) {
      std::sort(failed.begin(), failed.end());
      failed.erase(std::unique(failed.begin(), failed.end()), failed.end());
      const ucs_status_t why = (*failures_)[failed.front()];
      Abandon();
      return transport_internal::PeerUnavailableError(
          op, rank, failed, "UCX endpoint failed: " + UcsCodeToStatus(why, "peer error").message());
    }
    if (TransportClock::now() >= deadline.when()) {
      std::vector<int> peers = PendingPeers();
      Abandon();
      return transport_internal::PeerDeadlineError(op, rank, peers, started);
    }
    if (events > 0 || completed_any) {
      idle = 0;
    } else if (++idle > 20000) {
      // Ranks may share cores: give the CPU away once nothing has moved for a while.
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    } else if (idle > 64) {
      std::this_thread::yield();
    }
  }
  return first_error_;
}

void RequestSet::Abandon() {
  for (Entry& e : entries_) {
    if (!e.request) continue;
    if (!e.is_recv) {
      ucp_request_free(e.request);  // completes (or fails) in the background, then is released
      e.request = nullptr;
      continue;
    }
    ucp_request_cancel(worker_, e.request);
    const auto grace = TransportClock::now() + std::chrono::milliseconds(100);
    while (!e.slot->done && TransportClock::now() < grace) ucp_worker_progress(worker_);
    if (e.slot->done) {
      delete e.slot;
    } else {
      // Still writing into the caller's buffer: nothing safe is left to do but say so. The slot
      // stays allocated for the callback that may still come.
      LOG_WARN("transport", "UCX receive from rank %d could not be cancelled; abandoned", e.peer);
    }
    e.slot = nullptr;
    ucp_request_free(e.request);
    e.request = nullptr;
  }
}

}  // namespace switchyard::ucx_internal
