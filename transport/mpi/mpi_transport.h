// The Open MPI backend (host memory). Built only when SWITCHYARD_HAVE_MPI; this header does not
// include mpi.h, so code that names these functions compiles the same either way.
//
// Every operation is non-blocking underneath (MPI_Irecv/MPI_Isend per peer) and polled with
// MPI_Testsome until done or the deadline passes; then pending receives are cancelled, pending
// sends abandoned (MPI cannot cancel them), and the call returns DeadlineExceeded naming the peers
// whose requests were still pending. Collectives run on a private duplicate of MPI_COMM_WORLD with
// a tag per call (its sequence number), so a late message of an abandoned call never matches a
// later one; point-to-point messages use a second duplicate. Both use MPI_ERRORS_RETURN.
#pragma once

#include <memory>
#include <string>

#include "common/status.h"
#include "transport/transport.h"

namespace switchyard {

// Initializes MPI (MPI_Init_thread, MPI_THREAD_SERIALIZED) unless it is already initialized, and
// sets MPI_ERRORS_RETURN on MPI_COMM_WORLD. Safe to call any number of times from any thread.
// Errors: FailedPrecondition (MPI already finalized, or the thread level is not provided),
// Internal (MPI_Init_thread failed).
Status MpiInitOnce();

// Finalizes MPI if MpiInitOnce initialized it and nobody finalized it yet; otherwise does nothing.
// Every MPI transport must be destroyed first. Idempotent; call from the main thread at exit.
Status MpiFinalizeOnce();

// A transport over all ranks of MPI_COMM_WORLD; calls MpiInitOnce. Collective over the world (every
// rank must call it). The object must be destroyed before MpiFinalizeOnce.
StatusOr<std::unique_ptr<Transport>> CreateMpiTransport();

// A transport over the MPI_COMM_WORLD ranks that pass `member` (e.g. every rank but a coordinator
// at world rank 0, under `mpirun -np 1 coordinator : -np N worker`), renumbered in world order.
// Collective over the whole world (MPI_Comm_split): non-members call it too and get null.
StatusOr<std::unique_ptr<Transport>> CreateMpiSubsetTransport(bool member);

// Sends `text` (at most 4095 bytes) from world rank `root` to every world rank (MPI_Ibcast polled
// against `deadline`; collective over the world). Errors: InvalidArgument (too long),
// DeadlineExceeded, Internal (MPI).
Status MpiBroadcastText(std::string* text, int root, Deadline deadline);

// This process's rank in MPI_COMM_WORLD (calls MpiInitOnce).
StatusOr<int> MpiWorldRank();

// World rank/size and the rank among the processes sharing this node (MPI_Comm_split_type
// MPI_COMM_TYPE_SHARED on MPI_COMM_WORLD). Computed by MpiInitOnce right after MPI_Init_thread,
// where every world rank is anyway (a collective there cannot be unpaired); read here without
// communicating. Errors: FailedPrecondition when MpiInitOnce did not initialize MPI.
struct MpiNodePlace {
  int rank = 0, world_size = 1, local_rank = 0, local_size = 1;
};
StatusOr<MpiNodePlace> MpiNodePlaceOfProcess();

}  // namespace switchyard
