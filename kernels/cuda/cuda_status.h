// CUDA / cuBLAS error codes -> Status, in one place. Internal to kernels/cuda (includes CUDA
// headers).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "common/status.h"

namespace switchyard::cuda {

// OK for cudaSuccess; otherwise ResourceExhausted (out of memory), Unavailable (no device/driver)
// or Internal, with "what: cudaErrorName: description". Clears a non-sticky error.
Status CudaStatus(cudaError_t err, const char* what);

// Status of the last kernel launch (launch-configuration errors), naming `kernel`.
inline Status LaunchStatus(const char* kernel) { return CudaStatus(cudaGetLastError(), kernel); }

}  // namespace switchyard::cuda

#define SY_CUDA_RETURN_IF_ERROR(expr, what) \
  RETURN_IF_ERROR(::switchyard::cuda::CudaStatus((expr), (what)))
