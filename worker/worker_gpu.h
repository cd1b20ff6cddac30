// The GPU a worker runs on: chosen from its node-local rank (worker/rank_env.h) among the visible
// devices (kernels/cuda/device.h), when CUDA is built and a GPU exists.
#pragma once

#include "common/status.h"

namespace switchyard {

// Whether this build has the CUDA kernels (and so can pick a GPU at all).
bool WorkerGpuSupportBuilt();

// Picks and makes current (on the calling thread) the GPU of worker `rank` with node-local rank
// `local_rank` (local_rank % visible devices; `gpus_per_node` > 0 only checks, see
// cuda::DeviceForLocalRank), logging "rank R local L -> GPU G (name)". Returns the device index, or
// -1 when there is no usable GPU (or CUDA is not built) and `required` is false (logged; the
// worker runs on CPU). Blocking (CUDA context set-up). Thread-safe. Errors: FailedPrecondition
// naming the rank and the reason when `required` (transport nccl) and there is no GPU;
// InvalidArgument (local_rank < 0); Internal (CUDA errors).
StatusOr<int> ChooseWorkerGpu(int rank, int local_rank, int gpus_per_node, bool required);

}  // namespace switchyard
