#include <cuda_runtime.h>

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

}  // namespace switchyard::cuda
