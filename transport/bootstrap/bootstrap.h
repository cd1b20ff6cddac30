// Bootstrap: how a rank learns who it is (rank, world size) and exchanges a small blob with every
// other rank before its transport exists (UCX worker addresses, the NCCL unique id).
//
// Rank and world size, first match wins (documented in transport/README.md):
//   explicit options > SWITCHYARD_RANK / SWITCHYARD_WORLD_SIZE > OMPI_COMM_WORLD_RANK / _SIZE
//   > PMIX_RANK (rank only) > SLURM_PROCID / SLURM_NTASKS > a single rank (0 of 1).
// Rendezvous endpoint: explicit options > SWITCHYARD_BOOTSTRAP ("host:port"); rank 0 hosts the
// server on that port unless SWITCHYARD_BOOTSTRAP_SERVER=external (then someone else, e.g. the
// coordinator, runs a RendezvousServer there).
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "transport/transport.h"

namespace switchyard {

struct BootstrapOptions {
  int rank = -1;                   // -1: from the environment
  int world_size = -1;             // -1: from the environment
  std::string endpoint;            // rendezvous "host:port"; empty: SWITCHYARD_BOOTSTRAP
  bool rank0_serves = true;        // rank 0 runs the rendezvous server on the endpoint's port
  bool endpoint_from_env = false;  // set by ResolveBootstrapOptions (for messages)
};

// Fills what `options` leaves unset from the environment (precedence above) and validates it.
// Pure apart from reading the environment; thread-safe. Errors: InvalidArgument naming the
// variable or option that is malformed, or a rank outside [0, world_size).
StatusOr<BootstrapOptions> ResolveBootstrapOptions(BootstrapOptions options);

// Whether an MPI launcher started this process (OMPI_COMM_WORLD_SIZE or PMIX_RANK is set).
bool LaunchedByMpiLauncher();

// An allgather of byte strings: returns every rank's blob in rank order. Blocking until done or
// `deadline`; errors name the ranks that did not take part.
using BlobAllGather =
    std::function<StatusOr<std::vector<std::string>>(std::string_view blob, Deadline deadline)>;

// A BlobAllGather over the TCP rendezvous of `options` (resolved; endpoint required unless the
// world has one rank). On rank 0 with rank0_serves, each call starts a RendezvousServer on the
// endpoint's port (all interfaces) for the call's duration. Errors: those of RendezvousServer and
// RendezvousAllGather, plus InvalidArgument for a missing or malformed endpoint.
BlobAllGather TcpBlobAllGather(const BootstrapOptions& options);

}  // namespace switchyard
