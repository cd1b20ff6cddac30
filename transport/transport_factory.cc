#include "transport/transport_factory.h"

#ifdef SWITCHYARD_HAVE_MPI
#include "transport/mpi/mpi_transport.h"
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
    case TransportKind::kNccl:
      return false;
  }
  return false;
}

StatusOr<std::unique_ptr<Transport>> CreateTransport(TransportKind kind) {
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
    case TransportKind::kUcx:
    case TransportKind::kNccl:
      break;
  }
  return UnimplementedError(std::string("transport '") + TransportKindName(kind) +
                            "' is not implemented yet");
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
