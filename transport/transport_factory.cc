#include "transport/transport_factory.h"

#include "transport/bootstrap/bootstrap.h"

#ifdef SWITCHYARD_HAVE_MPI
#include "transport/bootstrap/mpi_blob_allgather.h"
#include "transport/mpi/mpi_transport.h"
#endif
#ifdef SWITCHYARD_HAVE_UCX
#include "transport/ucx/ucx_transport.h"
#endif
#ifdef SWITCHYARD_HAVE_NCCL
#include "transport/nccl/nccl_transport.h"
#endif

namespace switchyard {

const char* TransportKindName(TransportKind kind) {
  switch (kind) {
    case TransportKind::kLocal:
      return "local";
    case TransportKind::kMpi:
      return "mpi";
    case TransportKind::kUcx:
      return "ucx";
    case TransportKind::kNccl:
      return "nccl";
  }
  return "unknown";
}

StatusOr<TransportKind> ParseTransportKind(std::string_view text) {
  for (TransportKind kind :
       {TransportKind::kLocal, TransportKind::kMpi, TransportKind::kUcx, TransportKind::kNccl}) {
    if (text == TransportKindName(kind)) return kind;
  }
  return InvalidArgumentError("unknown transport '" + std::string(text) +
                              "' (expected local, mpi, ucx or nccl)");
}

bool TransportBuilt(TransportKind kind) {
  switch (kind) {
    case TransportKind::kLocal:
      return true;
    case TransportKind::kMpi:
#ifdef SWITCHYARD_HAVE_MPI
      return true;
#else
      return false;
#endif
    case TransportKind::kUcx:
#ifdef SWITCHYARD_HAVE_UCX
      return true;
#else
      return false;
#endif
    case TransportKind::kNccl:
#ifdef SWITCHYARD_HAVE_NCCL
      return true;
#else
      return false;
#endif
  }
  return false;
}

#if defined(SWITCHYARD_HAVE_UCX) || defined(SWITCHYARD_HAVE_NCCL)
namespace {

// Identity and allgather for a self-bootstrapping backend (ucx, nccl).
struct Bootstrap {
  BootstrapOptions options;
  BlobAllGather allgather;
};

StatusOr<Bootstrap> ResolveBootstrap(const TransportOptions& options) {
  BootstrapOptions wanted;
  wanted.rank = options.rank;
  wanted.world_size = options.world_size;
  wanted.endpoint = options.rendezvous;
  wanted.rank0_serves = options.rank0_serves;
  Bootstrap out;
  ASSIGN_OR_RETURN(out.options, ResolveBootstrapOptions(wanted));
#ifdef SWITCHYARD_HAVE_MPI
  if (out.options.endpoint.empty() && out.options.world_size > 1 && LaunchedByMpiLauncher()) {
    out.allgather = MpiBlobAllGather;
    return out;
  }
#endif
  out.allgather = TcpBlobAllGather(out.options);
  return out;
}

}  // namespace
#endif

StatusOr<std::unique_ptr<Transport>> CreateTransport(TransportKind kind) {
  return CreateTransport(kind, TransportOptions{});
}

StatusOr<std::unique_ptr<Transport>> CreateTransport(TransportKind kind,
                                                     const TransportOptions& options) {
  switch (kind) {
    case TransportKind::kLocal:
      return CreateSingleRankLocalTransport();
    case TransportKind::kMpi:
#ifdef SWITCHYARD_HAVE_MPI
      return CreateMpiTransport();
#else
      return UnimplementedError(
          "transport 'mpi' is not built (configure with -DSWITCHYARD_ENABLE_MPI=ON and Open MPI "
          "installed)");
#endif
    case TransportKind::kUcx: {
#ifdef SWITCHYARD_HAVE_UCX
      ASSIGN_OR_RETURN(Bootstrap boot, ResolveBootstrap(options));
      return CreateUcxTransport(boot.options.rank, boot.options.world_size, boot.allgather,
                                Deadline::After(options.connect_timeout));
#else
      (void)options;
      return UnimplementedError(
          "transport 'ucx' is not built (configure with -DSWITCHYARD_ENABLE_UCX=ON and UCX "
          "(libucx-dev) installed)");
#endif
    }
    case TransportKind::kNccl: {
#ifdef SWITCHYARD_HAVE_NCCL
      ASSIGN_OR_RETURN(Bootstrap boot, ResolveBootstrap(options));
      return CreateNcclTransport(boot.options.rank, boot.options.world_size, boot.allgather,
                                 Deadline::After(options.connect_timeout), options.device);
#else
      (void)options;
      return UnimplementedError(
          "transport 'nccl' is not built (configure with -DSWITCHYARD_ENABLE_NCCL=ON, CUDA and "
          "NCCL >= 2.14 installed)");
#endif
    }
  }
  return UnimplementedError(std::string("transport '") + TransportKindName(kind) + "' is unknown");
}

StatusOr<std::unique_ptr<Transport>> CreateMpiWorkersTransport(bool is_worker) {
#ifdef SWITCHYARD_HAVE_MPI
  return CreateMpiSubsetTransport(is_worker);
#else
  (void)is_worker;
  return UnimplementedError(
      "transport 'mpi' is not built (configure with -DSWITCHYARD_ENABLE_MPI=ON)");
#endif
}

#ifndef SWITCHYARD_HAVE_MPI
Status MpiBroadcastText(std::string*, int, Deadline) {
  return UnimplementedError("MPI is not built (configure with -DSWITCHYARD_ENABLE_MPI=ON)");
}
#endif

StatusOr<int> MpiWorldRankOfProcess() {
#ifdef SWITCHYARD_HAVE_MPI
  return MpiWorldRank();
#else
  return UnimplementedError("MPI is not built (configure with -DSWITCHYARD_ENABLE_MPI=ON)");
#endif
}

StatusOr<MpiNodeRanks> MpiNodeRanksOfProcess() {
#ifdef SWITCHYARD_HAVE_MPI
  ASSIGN_OR_RETURN(MpiNodePlace place, MpiNodePlaceOfProcess());
  return MpiNodeRanks{place.rank, place.world_size, place.local_rank, place.local_size};
#else
  return UnimplementedError("MPI is not built (configure with -DSWITCHYARD_ENABLE_MPI=ON)");
#endif
}

StatusOr<std::unique_ptr<LocalWorld>> MakeLocalWorld(int world_size) {
  return LocalWorld::Create(world_size);
}

Status ShutdownTransports() {
#ifdef SWITCHYARD_HAVE_MPI
  return MpiFinalizeOnce();
#else
  return OkStatus();
#endif
}

}  // namespace switchyard
