// A worker: one rank of a distributed deployment, driven by the coordinator over a
// ControlChannel (protocol in coordinator/control/protocol.h).
//
// RunWorker registers, receives its assignment (rank, world, model, placement), loads only its
// share of the checkpoint (attention and norms of every layer, the experts placed on it), logs how
// much it loaded, reports ready, then runs one forward step per `step` message in lockstep with
// the other workers, over the data-plane transport, until `shutdown` (OK) or `abort` / a failure
// (error). A heartbeat thread sends `heartbeat` every interval meanwhile.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "common/status.h"
#include "coordinator/control/control_channel.h"
#include "coordinator/control/protocol.h"
#include "transport/transport.h"

namespace switchyard {

// Returns the data-plane transport for the assigned rank and world (MPI: created before
// registering; local threads: the world's rank object; UCX: created now). The transport must
// outlive RunWorker; its rank and world size must match the assignment. Not called for transport
// nccl: the worker creates that one itself, on the GPU it chose, through the coordinator's
// rendezvous.
using TransportProvider = std::function<StatusOr<Transport*>(const AssignMsg& assign)>;

struct WorkerOptions {
  int known_rank = -1;  // sent in `register` (MPI launches know it; else the coordinator decides)
  // Longest wait for the assignment and for each next message (the coordinator may wait for slow
  // workers to load); a coordinator that dies is noticed at once (the channel closes).
  std::chrono::milliseconds idle_timeout{600000};
  // The worker owns its process (not a thread of the coordinator): apply the assignment's
  // num_threads and put its rank into the log prefix.
  bool own_process = false;
  // Bootstrap of a data plane the worker creates itself (nccl): every worker joined, bounded.
  std::chrono::milliseconds connect_timeout{120000};
};

// GPU choice (worker/worker_gpu.h), after the assignment and before loading: a worker process
// (own_process) uses the GPU of its node-local rank (worker/rank_env.h: MPI, else the launcher's
// variables) when CUDA is built and a GPU is visible, else runs on CPU; a thread worker picks one
// only for transport nccl (local rank = its worker rank). Transport nccl without a usable GPU
// fails the worker at once (FailedPrecondition naming the rank and why, reported to the
// coordinator as `error`).

// Blocking; returns OK after `shutdown`. Errors: the coordinator aborted (Unavailable with its
// reason), the channel failed (Unavailable / DeadlineExceeded), loading or a step failed (the
// error is also reported to the coordinator before returning). Thread-compatible: each call uses
// its own channel and transport.
Status RunWorker(ControlChannel* channel, const TransportProvider& transport,
                 const WorkerOptions& options = {});

}  // namespace switchyard
