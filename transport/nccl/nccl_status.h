// NCCL and CUDA runtime error codes -> Status (the only place that interprets them:
// nccl_status.cc). Codes are passed as int so that this header includes no CUDA/NCCL headers.
#pragma once

#include <string_view>

#include "common/status.h"

namespace switchyard {

// OK for ncclSuccess; otherwise "<context>: <ncclGetErrorString> (NCCL result N)[: last error]"
// with: invalid argument / invalid usage -> InvalidArgument, remote and system errors (a peer or
// the network failed) -> Unavailable, the rest -> Internal. `last_error` is ncclGetLastError's
// text when known. Thread-safe.
Status NcclResultToStatus(int result, std::string_view context, std::string_view last_error = {});

// OK for cudaSuccess; otherwise "<context>: <cudaGetErrorString> (CUDA error N)": out of memory ->
// ResourceExhausted, no device / insufficient driver -> Unavailable, invalid values ->
// InvalidArgument, the rest -> Internal. Thread-safe.
Status CudaErrorToStatus(int error, std::string_view context);

}  // namespace switchyard
