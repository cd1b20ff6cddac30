#include "apps/cluster_start.h"

#include <unistd.h>

#include <cstdlib>
#include <vector>

#include "apps/process_signals.h"
#include "common/logging.h"
#include "coordinator/control/tcp_channel.h"
#include "transport/bootstrap/bootstrap.h"
#include "transport/transport_factory.h"
#include "worker/rank_env.h"

namespace switchyard {
namespace {

// Accepts cluster.workers TCP connections (worker processes) and starts the coordinator on them.
Status AcceptAndStart(TcpListener* listener, const RuntimeConfig& runtime, Coordinator* coord) {
  const Deadline deadline =
      Deadline::After(std::chrono::milliseconds(runtime.cluster.register_timeout_ms));
  std::vector<std::unique_ptr<ControlChannel>> channels;
  while (static_cast<int>(channels.size()) < runtime.cluster.workers) {
    auto ch = listener->Accept(deadline);
    if (!ch.ok()) {
      return DeadlineExceededError(
          std::to_string(channels.size()) + " of " + std::to_string(runtime.cluster.workers) +
          " workers connected within cluster.register_timeout_ms: " + ch.status().message());
    }
    LOG_INFO("coordinator", "worker connected from %s", (*ch)->peer().c_str());
    channels.push_back(std::move(*ch));
  }
  return coord->Start(std::move(channels));
}

// Under mpirun/srun: checks the world against the config, tells every worker where the control
// plane listens, and takes part in the workers' communicator split (transport mpi).
Status AnnounceOverMpi(const RuntimeConfig& runtime, const RankEnv& launch,
                       const std::string& command, const std::string& endpoint) {
  const ClusterConfig& cluster = runtime.cluster;
  const int world = launch.world_size;
  if (world > 0 && world != cluster.workers + 1) {
    return InvalidArgumentError(
        "the launch has " + std::to_string(world) + " processes but cluster.workers is " +
        std::to_string(cluster.workers) + " (+1 " + command + "): use -np 1 " + command +
        " : -np " + std::to_string(cluster.workers) + " worker");
  }
  ASSIGN_OR_RETURN(int world_rank, MpiWorldRankOfProcess());
  if (world_rank != 0) {
    return InvalidArgumentError("the " + command +
                                " process must be MPI world rank 0 (first in the mpirun/srun "
                                "command), it is rank " +
                                std::to_string(world_rank));
  }
  std::string text = endpoint;
  RETURN_IF_ERROR(MpiBroadcastText(&text, 0, Deadline::After(std::chrono::seconds(60))));
  if (cluster.transport == "mpi") {
    // Collective: this process takes part in the workers' split and gets no transport.
    RETURN_IF_ERROR(CreateMpiWorkersTransport(false).status());
  }
  SetLogRank(-1);  // the coordinator is no worker rank ("rank -" in the log prefix)
  return OkStatus();
}

}  // namespace

StatusOr<std::unique_ptr<StartedCluster>> StartedCluster::Start(const RuntimeConfig& runtime,
                                                                const std::string& command) {
  if (!runtime.has_cluster) {
    return InvalidArgumentError("--config: no 'cluster:' section (see configs/README.md)");
  }
  const ClusterConfig& cluster = runtime.cluster;
  // Started by mpirun (Open MPI) or srun --mpi=pmix: MPI is not up yet, so the launcher's
  // environment tells.
  const bool mpi_launch = LaunchedByMpiLauncher();
  ASSIGN_OR_RETURN(RankEnv launch,
                   RankEnvFromVariables([](const char* name) { return std::getenv(name); }));
  std::unique_ptr<StartedCluster> started(new StartedCluster());
  if (cluster.transport == "local") {
    if (mpi_launch && launch.world_size > 1) {
      return InvalidArgumentError(
          "cluster.transport local runs the workers as threads of this process; launch one "
          "process (or use transport mpi / ucx for worker processes)");
    }
    ASSIGN_OR_RETURN(started->local_, LocalCluster::Start(runtime));
    started->coordinator_ = &started->local_->coordinator();
    return started;
  }
  if (!mpi_launch && cluster.control_port == 0) {
    return InvalidArgumentError(
        "cluster.control_port must be set when the workers are not started by mpirun/srun "
        "(they need to know where to connect)");
  }
  auto listener = TcpListener::Listen(cluster.bind_address, cluster.control_port);
  if (!listener.ok()) return listener.status().WithContext("cluster.bind_address");
  const std::string endpoint =
      cluster.coordinator_address + ":" + std::to_string((*listener)->port());
  LOG_INFO("coordinator", "control plane on %s (pid %d)", endpoint.c_str(), getpid());
  if (mpi_launch) RETURN_IF_ERROR(AnnounceOverMpi(runtime, launch, command, endpoint));
  started->own_ = std::make_unique<Coordinator>(runtime);
  started->coordinator_ = started->own_.get();
  RETURN_IF_ERROR(AcceptAndStart(listener->get(), runtime, started->own_.get()));
  return started;
}

StartedCluster::~StartedCluster() = default;

Status StartedCluster::Shutdown(std::chrono::milliseconds limit) {
  ExitWatchdog watchdog(limit, "shutting down the workers and the transports");
  coordinator_->Shutdown();
  coordinator_ = nullptr;
  local_.reset();
  own_.reset();
  return ShutdownTransports();
}

}  // namespace switchyard
