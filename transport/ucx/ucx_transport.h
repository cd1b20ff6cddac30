// The UCX backend (UCP tag matching, host memory). Built only when SWITCHYARD_HAVE_UCX; this header
// does not include UCX headers. It never calls MPI: ranks exchange UCP worker addresses through a
// BlobAllGather (the TCP rendezvous, or an MPI allgather that the factory supplies under mpirun).
//
// Every operation posts non-blocking tag sends/receives (ucp_tag_send_nbx / ucp_tag_recv_nbx) and
// drives ucp_worker_progress in a loop that checks the deadline; on expiry pending receives are
// cancelled, pending sends released (they finish or fail in the background), and the call returns
// DeadlineExceeded naming the peers still pending. Endpoints use UCP_ERR_HANDLING_MODE_PEER with an
// error handler: once UCX reports a peer's endpoint as failed (connection reset, keepalive
// timeout), calls waiting on that peer return Unavailable naming it at once, and later calls too.
// Tags: bit 63 = point-to-point, bits 40..62 = source rank, bits 0..39 = the collective's sequence
// number or the user tag; so a late message of an abandoned collective never matches a later one
// (later collectives take such messages off UCX's unexpected queue and drop them).
//
// UCX settings come from the usual UCX_* environment variables (UCX_TLS, UCX_NET_DEVICES, ...);
// see transport/README.md for the defaults this backend applies when they are unset.
#pragma once

#include <memory>

#include "common/status.h"
#include "transport/bootstrap/bootstrap.h"
#include "transport/transport.h"

namespace switchyard {

// How endpoints handle a failing peer. kPeer (the default): UCP_ERR_HANDLING_MODE_PEER, so a dead
// peer becomes Unavailable as soon as UCX notices (connection reset, keepalive); UCX 1.13's shared
// memory transports do not support it, so on one machine traffic then goes over TCP loopback.
// kNone: UCX picks any transport (shared memory, CMA), a dead peer is found only by deadlines
// (DeadlineExceeded naming it). kFromEnv: SWITCHYARD_UCX_ERROR_MODE=peer|none (default peer).
enum class UcxErrorMode { kFromEnv, kPeer, kNone };

// Creates rank `rank` of a `world_size`-rank UCX world: UCP context and worker, one allgather of
// worker addresses through `allgather`, endpoints to every peer, then a barrier so that every
// endpoint is known to work. Collective (every rank must call it). Blocking until done or
// `deadline`. Errors: InvalidArgument (rank/world, malformed addresses), the allgather's errors,
// UCX errors via UcsCodeToStatus, DeadlineExceeded naming ranks that did not connect,
// InvalidArgument for a bad SWITCHYARD_UCX_ERROR_MODE. Every rank must use the same error mode.
StatusOr<std::unique_ptr<Transport>> CreateUcxTransport(
    int rank, int world_size, const BlobAllGather& allgather, Deadline deadline,
    UcxErrorMode error_mode = UcxErrorMode::kFromEnv);

}  // namespace switchyard
