#include "transport/nccl/nccl_status.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

namespace switchyard {

Status NcclResultToStatus(int result, std::string_view context, std::string_view last_error) {
  const auto code = static_cast<ncclResult_t>(result);
  if (code == ncclSuccess) return OkStatus();
  std::string msg = std::string(context) + ": " + ncclGetErrorString(code) + " (NCCL result " +
                    std::to_string(result) + ")";
  if (!last_error.empty()) msg += ": " + std::string(last_error);
  switch (code) {
    case ncclInvalidArgument:
    case ncclInvalidUsage:
      return InvalidArgumentError(std::move(msg));
    case ncclRemoteError:
    case ncclSystemError:
      return UnavailableError(std::move(msg));
    default:
      return InternalError(std::move(msg));
  }
}

Status CudaErrorToStatus(int error, std::string_view context) {
  const auto code = static_cast<cudaError_t>(error);
  if (code == cudaSuccess) return OkStatus();
  std::string msg = std::string(context) + ": " + cudaGetErrorString(code) + " (CUDA error " +
                    std::to_string(error) + ")";
  switch (code) {
    case cudaErrorMemoryAllocation:
      return ResourceExhaustedError(std::move(msg));
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
      return UnavailableError(std::move(msg));
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevice:
    case cudaErrorInvalidDevicePointer:
      return InvalidArgumentError(std::move(msg));
    default:
      return InternalError(std::move(msg));
  }
}

}  // namespace switchyard
