// A running Coordinator for a runtime configuration, shared by `switchyard coordinator` (and
// `run` with a cluster) and `switchyard serve`: the workers as threads of this process
// (cluster.transport local), or worker processes (mpi, ucx, nccl) that this process accepts on
// its control port, launched with it under mpirun/srun (MPMD, this process first) or by hand.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/runtime_config.h"
#include "common/status.h"
#include "coordinator/coordinator.h"
#include "worker/local_cluster.h"

namespace switchyard {

class StartedCluster {
 public:
  // Starts the cluster of `runtime` (runtime.has_cluster must hold) and returns it with every
  // worker registered and loaded. `command` is this subcommand's name, used in messages about
  // the launch line ("coordinator", "serve").
  //   local: LocalCluster (threads); refused inside an mpirun/srun world of several processes.
  //   mpi/ucx/nccl: listens on cluster.bind_address:control_port. Under mpirun/srun the world
  //   must be cluster.workers + 1 processes with this one at world rank 0; the endpoint
  //   cluster.coordinator_address:port is broadcast over MPI (port 0 = any free port), and for
  //   transport mpi this process joins the workers' communicator split. Without a launcher,
  //   cluster.control_port must be set and workers connect by hand.
  // Blocking: bounded by twice cluster.register_timeout_ms (the workers connecting, then
  // registering and loading: each phase has its own deadline) plus 60 s for the MPI broadcast.
  // Errors: InvalidArgument for a launch that does not match the config (naming key or rank);
  // Unavailable/DeadlineExceeded for workers that did not connect (how many did); the
  // coordinator's Start errors (bad model or plan, a worker failing to load, named).
  static StatusOr<std::unique_ptr<StartedCluster>> Start(const RuntimeConfig& runtime,
                                                         const std::string& command);
  // Aborts the workers if Shutdown was not called (Coordinator's destructor) and joins threads.
  ~StartedCluster();
  StartedCluster(const StartedCluster&) = delete;
  StartedCluster& operator=(const StartedCluster&) = delete;

  // The coordinator; valid until Shutdown. Thread-safety: Coordinator's.
  Coordinator& coordinator() { return *coordinator_; }
  // True when the workers are separate processes (transport other than local).
  bool worker_processes() const { return local_ == nullptr; }

  // Clean end: sends `shutdown` to every worker, joins the worker threads, destroys the
  // coordinator and releases process-wide transport state (MPI_Finalize, which waits for the
  // worker processes to finalize too). Blocking, bounded by `limit`: past it the process logs
  // what was stuck and exits with status 1. Call once, from the main thread, after the last
  // use of coordinator(). Errors: ShutdownTransports' (e.g. MPI_Finalize failing).
  Status Shutdown(std::chrono::milliseconds limit);

 private:
  StartedCluster() = default;
  std::unique_ptr<LocalCluster> local_;  // transport local
  std::unique_ptr<Coordinator> own_;     // worker processes
  Coordinator* coordinator_ = nullptr;   // local_'s or own_
};

}  // namespace switchyard
