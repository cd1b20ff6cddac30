// Creating transports by backend kind. The only place that knows which backends were built.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "transport/local/local_transport.h"
#include "transport/transport.h"

namespace switchyard {

enum class TransportKind { kLocal, kMpi, kUcx, kNccl };

// "local", "mpi", "ucx", "nccl".
const char* TransportKindName(TransportKind kind);
// Parses a TransportKindName (case-sensitive). Errors: InvalidArgument listing the valid names.
StatusOr<TransportKind> ParseTransportKind(std::string_view text);
// Whether this build contains the backend (local: always).
bool TransportBuilt(TransportKind kind);

// This process's transport of `kind`:
//   kLocal: a one-rank world (the single-process default; use MakeLocalWorld for N ranks);
//   kMpi:   all ranks of MPI_COMM_WORLD (initializes MPI once per process; collective);
//   kUcx, kNccl: rank and world size from the environment (see transport/bootstrap/bootstrap.h:
//           SWITCHYARD_RANK/_WORLD_SIZE, then OMPI_COMM_WORLD_*, PMIX_RANK, SLURM_PROCID/NTASKS);
//           peers meet through SWITCHYARD_BOOTSTRAP=host:port, or, with none set and an MPI
//           launcher detected in an MPI build, through an MPI allgather (so plain `mpirun` works;
//           the backends themselves never call MPI). Same as CreateTransport(kind, {}).
// Errors: Unimplemented for a backend that is not built (the message names the CMake option) or not
// written yet; the backend's own errors otherwise. Blocking (MPI, UCX, NCCL: until every rank calls
// it, bounded by TransportOptions::connect_timeout for UCX and NCCL).
StatusOr<std::unique_ptr<Transport>> CreateTransport(TransportKind kind);

// Explicit identity and rendezvous for the backends that bootstrap themselves (ucx, nccl), e.g.
// ranks started by the coordinator without MPI. Unset fields fall back to the environment.
struct TransportOptions {
  int rank = -1;             // -1: from the environment
  int world_size = -1;       // -1: from the environment
  std::string rendezvous;    // "host:port" of the rendezvous server; empty: SWITCHYARD_BOOTSTRAP
  bool rank0_serves = true;  // rank 0 runs the rendezvous server (false: someone else does)
  std::chrono::milliseconds connect_timeout{60000};  // bootstrap + first connection, all ranks
  int device = -1;  // nccl: the GPU to use (-1: rank % visible devices)
};

// As CreateTransport(kind), with `options` for ucx and nccl (ignored by local and mpi).
// Errors: InvalidArgument for malformed options or environment (naming the field or variable).
StatusOr<std::unique_ptr<Transport>> CreateTransport(TransportKind kind,
                                                     const TransportOptions& options);

// MPMD launches with a coordinator at MPI world rank 0 (`mpirun -np 1 switchyard coordinator :
// -np N switchyard worker`): the data plane of the workers only, world ranks 1..N renumbered
// 0..N-1. Collective over MPI_COMM_WORLD: the coordinator calls it with is_worker = false and gets
// null. Errors: Unimplemented when MPI is not built; MPI errors.
StatusOr<std::unique_ptr<Transport>> CreateMpiWorkersTransport(bool is_worker);
// Broadcasts a short text (< 4096 bytes) from MPI world rank `root` to every world rank
// (collective, bounded by `deadline`). Errors: Unimplemented without MPI; DeadlineExceeded.
Status MpiBroadcastText(std::string* text, int root, Deadline deadline);
// This process's MPI world rank (initializes MPI). Errors: Unimplemented without MPI.
StatusOr<int> MpiWorldRankOfProcess();

// This process's place in MPI_COMM_WORLD and on its node (MPI_Comm_split_type SHARED), as
// computed when MpiInitOnce initialized MPI. Never initializes MPI, never communicates.
// Errors: Unimplemented without MPI; FailedPrecondition when MPI was not initialized here.
struct MpiNodeRanks {
  int rank = 0, world_size = 1, local_rank = 0, local_size = 1;
};
StatusOr<MpiNodeRanks> MpiNodeRanksOfProcess();

// N ranks as threads of this process (see transport/local/local_transport.h).
StatusOr<std::unique_ptr<LocalWorld>> MakeLocalWorld(int world_size);

// Releases process-wide backend state (finalizes MPI if CreateTransport initialized it). Destroy
// every transport first. Idempotent; call from the main thread before exit.
Status ShutdownTransports();

}  // namespace switchyard
