// The NCCL backend: grouped ncclSend/ncclRecv all-to-all-v on a CUDA stream of the rank's GPU.
// Built only when SWITCHYARD_HAVE_NCCL; this header includes no CUDA/NCCL headers.
//
// Bootstrap: rank 0 creates the ncclUniqueId and every rank gets it through a BlobAllGather (the
// TCP rendezvous, or MPI under mpirun, chosen by the factory); the communicator is non-blocking
// (config.blocking = 0). Deadlines: every call enqueues its NCCL work and polls
// ncclCommGetAsyncError + cudaStreamQuery until done; on expiry (or an asynchronous NCCL error)
// the communicator is aborted (ncclCommAbort) and this call and every later one fail (recreate the
// transport). NCCL cannot say which peer is missing, so DeadlineExceeded names every peer the call
// was waiting on.
//
// Memory: buffers may be device memory (used in place) or host memory (staged through device
// buffers owned by the transport). A collective first exchanges its byte counts (a small grouped
// send/recv) so that a count mismatch is InvalidArgument naming the peer instead of a hang.
// Send/Recv carry a 16-byte header (tag, size); Send blocks until the peer's Recv takes it (NCCL
// point-to-point is synchronous), messages of other tags that arrive first are kept on the host
// until asked for.
#pragma once

#include <memory>

#include "common/status.h"
#include "transport/bootstrap/bootstrap.h"
#include "transport/transport.h"

namespace switchyard {

// Number of CUDA devices this process can use; 0 when there is no GPU or no usable driver (any
// CUDA error at probe time means "no GPU"). Thread-safe.
int NcclVisibleDevices();

// Creates rank `rank` of a `world_size`-rank NCCL world on GPU `device` (-1: rank % visible
// devices), made current on the calling thread. Collective; blocking until the communicator is
// ready or `deadline`. The object may be used from any one thread at a time (each call makes its
// device current). Errors: Unavailable (no GPU), InvalidArgument (rank/world/device, a malformed
// unique id), the allgather's errors, NCCL/CUDA errors via nccl_status.h, DeadlineExceeded
// (communicator not ready in time; it is aborted).
StatusOr<std::unique_ptr<Transport>> CreateNcclTransport(int rank, int world_size,
                                                         const BlobAllGather& allgather,
                                                         Deadline deadline, int device = -1);

}  // namespace switchyard
