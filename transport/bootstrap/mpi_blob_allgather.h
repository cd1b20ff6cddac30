// A BlobAllGather over MPI_COMM_WORLD, for backends that bootstrap inside an MPI job without using
// MPI themselves (UCX, NCCL under mpirun). Built only with SWITCHYARD_HAVE_MPI; this header does
// not include mpi.h.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "transport/transport.h"

namespace switchyard {

// Initializes MPI if needed (MpiInitOnce), then gathers every rank's blob with MPI_Iallgather /
// MPI_Iallgatherv polled until `deadline`. Collective over MPI_COMM_WORLD (every rank calls it, in
// the same order as other MPI_COMM_WORLD collectives). On a deadline the pending collective cannot
// be cancelled (MPI forbids it): its buffers are leaked on purpose and the error names the call.
// Errors: DeadlineExceeded, MPI errors via MpiCodeToStatus, InvalidArgument (blob >= 2 GiB).
// Thread-safety: as MPI_THREAD_SERIALIZED (one thread in MPI at a time).
StatusOr<std::vector<std::string>> MpiBlobAllGather(std::string_view blob, Deadline deadline);

}  // namespace switchyard
