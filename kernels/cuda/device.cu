#include <cuda_runtime.h>

#include <cstdlib>

#include "common/logging.h"
#include "kernels/cuda/device.h"

namespace switchyard::cuda {

int DeviceCount(std::string* why) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    if (why) *why = cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky error
    return 0;
  }
  if (count == 0 && why) *why = "no CUDA device";
  return count;
}

StatusOr<int> DeviceForLocalRank(int local_rank, int visible, int gpus_per_node,
                                 std::string* warning) {
  if (local_rank < 0) {
    return InvalidArgumentError("GPU choice: local rank " + std::to_string(local_rank) + " < 0");
  }
  if (visible <= 0) {
    return InvalidArgumentError("GPU choice: " + std::to_string(visible) + " visible devices");
  }
  if (warning) {
    warning->clear();
    if (gpus_per_node > visible && visible > 1) {
      *warning = "cluster.gpus_per_node is " + std::to_string(gpus_per_node) + " but only " +
                 std::to_string(visible) + " GPUs are visible: workers share GPUs";
    } else if (local_rank >= visible && visible > 1) {
      *warning = "local rank " + std::to_string(local_rank) + " >= " + std::to_string(visible) +
                 " visible GPUs: GPU shared with local rank " +
                 std::to_string(local_rank - visible) +
                 " (fine if that process is the coordinator, which counts under MPI)";
    }
  }
  return local_rank % visible;
}

StatusOr<DeviceChoice> SelectDevice(int rank, int local_rank, int gpus_per_node) {
  std::string why;
  DeviceChoice choice;
  choice.visible = DeviceCount(&why);
  if (choice.visible == 0) return UnavailableError("no usable GPU: " + why);
  std::string warning;
  ASSIGN_OR_RETURN(choice.device,
                   DeviceForLocalRank(local_rank, choice.visible, gpus_per_node, &warning));
  if (!warning.empty()) LOG_WARN("gpu", "rank %d: %s", rank, warning.c_str());
  cudaError_t err = cudaSetDevice(choice.device);
  cudaDeviceProp prop;
  if (err == cudaSuccess) err = cudaGetDeviceProperties(&prop, choice.device);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return InternalError("GPU choice: device " + std::to_string(choice.device) + ": " +
                         cudaGetErrorString(err));
  }
  choice.name = prop.name;
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  LOG_INFO("gpu", "rank %d local %d -> GPU %d (%s; %d visible, CUDA_VISIBLE_DEVICES=%s)", rank,
           local_rank, choice.device, choice.name.c_str(), choice.visible,
           visible ? visible : "unset");
  return choice;
}

}  // namespace switchyard::cuda
