// Internal to the UCX backend: a set of outstanding UCP tag requests, each tied to a peer, driven
// by ucp_worker_progress until all complete, a peer fails, or a deadline passes.
#pragma once

#include <ucp/api/ucp.h>

#include <string>
#include <vector>

#include "common/status.h"
#include "transport/transport.h"

namespace switchyard::ucx_internal {

// Per-peer failure state, written by the endpoint error handler (same thread: UCX calls it from
// ucp_worker_progress) and read by the wait loop. UCS_OK = alive.
using PeerFailures = std::vector<ucs_status_t>;

class RequestSet {
 public:
  // `where` ("<op> on rank R") prefixes errors found while posting.
  RequestSet(ucp_worker_h worker, const PeerFailures* failures, std::string where)
      : worker_(worker), failures_(failures), where_(std::move(where)) {}
  // Releases whatever is still pending (see Abandon).
  ~RequestSet();

  // Posts a tag send of `data` to `ep` (peer `peer`) and tracks it. An immediate failure is kept
  // as that peer's error.
  void PostSend(ucp_ep_h ep, int peer, uint64_t tag, const void* data, size_t size);
  // Posts a tag receive (full tag mask) into `data` and tracks it. `expected`: bytes a collective
  // receive must get (-1: any, for point-to-point and upper-bound receives); `size_out` (optional)
  // gets the received length on success (a longer message is InvalidArgument naming the peer).
  void PostRecv(int peer, uint64_t tag, void* data, size_t size, int64_t expected,
                int64_t* size_out = nullptr);
  // Receives a message taken off the unexpected queue by ucp_tag_probe_nb(remove = 1) into `data`
  // (`size` = the probed length) and tracks it.
  void PostMessageRecv(ucp_tag_message_h message, int peer, void* data, size_t size);

  // Progresses until every request completes, a peer is reported failed, or `deadline`. `op` and
  // `rank` name the call in errors; *received gets the length of the last completed receive.
  // Errors: InvalidArgument (a collective receive of the wrong length, naming the peer),
  // OutOfRange (a point-to-point message longer than the buffer), Unavailable (failed peers,
  // named), DeadlineExceeded (pending peers, named), other UCX errors via UcsCodeToStatus.
  Status Wait(const std::string& op, int rank, Deadline deadline,
              TransportClock::time_point started, int64_t* received = nullptr);

 private:
  // Written by UCX's receive callback (from inside ucp_worker_progress or the post call). Heap
  // allocated so that a receive that could not be cancelled may keep it (leaked on purpose).
  struct RecvSlot {
    bool done = false;
    ucs_status_t status = UCS_INPROGRESS;
    size_t length = 0;
  };
  struct Entry {
    void* request;  // null once completed
    int peer;
    bool is_recv;
    int64_t expected;
    RecvSlot* slot;     // receives only
    int64_t* size_out;  // receives: where the received length goes (or null)
  };
  void PostAnyRecv(ucp_tag_message_h message, int peer, uint64_t tag, void* data, size_t size,
                   int64_t expected, int64_t* size_out);
  static void OnRecv(void* request, ucs_status_t status, const ucp_tag_recv_info_t* info,
                     void* user_data);
  // Polls entry e once; returns true when it completed (and records its result).
  bool Poll(Entry& e, int64_t* received);
  void Record(const Entry& e, ucs_status_t status, size_t length, int64_t* received);
  std::vector<int> PendingPeers() const;
  // Cancels pending receives (waiting up to 100 ms for the cancellation) and releases pending
  // sends to finish in the background.
  void Abandon();

  ucp_worker_h worker_;
  const PeerFailures* failures_;
  const std::string where_;
  std::vector<Entry> entries_;
  Status first_error_;
};

}  // namespace switchyard::ucx_internal
