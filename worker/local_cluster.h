// A whole cluster in one process: the coordinator plus cluster.workers workers as threads, over
// a LocalWorld (data plane) and in-memory control channels. What `switchyard run` uses for
// transport `local`, and what tests use to check the distributed runtime without processes.
#pragma once

#include <memory>
#include <thread>
#include <vector>

#include "coordinator/coordinator.h"
#include "transport/local/local_transport.h"

namespace switchyard {

class LocalCluster {
 public:
  // Starts the workers and the coordinator (registration, placement, loading). Blocking.
  // Errors: the coordinator's Start errors; everything started is stopped again.
  static StatusOr<std::unique_ptr<LocalCluster>> Start(const RuntimeConfig& runtime,
                                                       Clock* clock = SteadyClock());
  // Shuts the coordinator down and joins the worker threads.
  ~LocalCluster();

  Coordinator& coordinator() { return *coordinator_; }

  // Fault injection: worker `rank` dies (its control channel closes, its data-plane rank is
  // killed). Thread-safe.
  void KillWorker(int rank);
  // Fault injection: worker `rank` stops reading and sending on its control channel but stays
  // connected (a hung process). Thread-safe.
  void HangWorker(int rank);

 private:
  LocalCluster() = default;
  std::unique_ptr<LocalWorld> world_;
  std::vector<std::unique_ptr<ControlChannel>> worker_channels_;  // by rank
  std::vector<std::thread> threads_;
  std::unique_ptr<Coordinator> coordinator_;
};

}  // namespace switchyard
