// Creating transports by backend kind. The only place that knows which backends were built.
#pragma once

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
//   kUcx, kNccl: not implemented yet.
// Errors: Unimplemented for a backend that is not built (the message names the CMake option) or not
// written yet; the backend's own errors otherwise. Blocking (MPI: until every rank calls it).
StatusOr<std::unique_ptr<Transport>> CreateTransport(TransportKind kind);

// N ranks as threads of this process (see transport/local/local_transport.h).
StatusOr<std::unique_ptr<LocalWorld>> MakeLocalWorld(int world_size);

// Releases process-wide backend state (finalizes MPI if CreateTransport initialized it). Destroy
// every transport first. Idempotent; call from the main thread before exit.
Status ShutdownTransports();

}  // namespace switchyard
