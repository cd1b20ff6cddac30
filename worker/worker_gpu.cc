// The one worker source that knows whether CUDA was built (SWITCHYARD_HAVE_CUDA is defined for
// this file only, by worker/CMakeLists.txt).
#include "worker/worker_gpu.h"

#include <string>

#include "common/logging.h"
#ifdef SWITCHYARD_HAVE_CUDA
#include "kernels/cuda/device.h"
#endif

namespace switchyard {

bool WorkerGpuSupportBuilt() {
#ifdef SWITCHYARD_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

StatusOr<int> ChooseWorkerGpu(int rank, int local_rank, int gpus_per_node, bool required) {
  if (local_rank < 0) {
    return InvalidArgumentError("worker rank " + std::to_string(rank) + ": local rank " +
                                std::to_string(local_rank) + " < 0");
  }
  std::string why;
#ifdef SWITCHYARD_HAVE_CUDA
  auto choice = cuda::SelectDevice(rank, local_rank, gpus_per_node);
  if (choice.ok()) return choice->device;
  if (choice.status().code() != StatusCode::kUnavailable) {
    return choice.status().WithContext("worker rank " + std::to_string(rank) + " choosing a GPU");
  }
  why = choice.status().message();
#else
  (void)gpus_per_node;
  why = "this build has no CUDA support (configure with -DSWITCHYARD_ENABLE_CUDA=ON)";
#endif
  if (required) {
    return FailedPreconditionError("worker rank " + std::to_string(rank) + " (local rank " +
                                   std::to_string(local_rank) +
                                   "): cluster.transport nccl needs a GPU: " + why);
  }
  LOG_INFO("gpu", "rank %d local %d: no GPU (%s), running on CPU", rank, local_rank, why.c_str());
  return -1;
}

}  // namespace switchyard
