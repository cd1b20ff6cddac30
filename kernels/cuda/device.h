// CUDA device discovery and per-process GPU choice. Compiles without CUDA headers for its callers.
#pragma once

#include <string>

#include "common/status.h"

namespace switchyard::cuda {

// Number of usable CUDA devices; 0 when the driver, runtime or a device is missing (any CUDA
// error at probe time means "no GPU"). `why` receives the reason when 0.
int DeviceCount(std::string* why = nullptr);

struct DeviceChoice {
  int device = -1;   // index among the visible devices (CUDA_VISIBLE_DEVICES applies)
  int visible = 0;   // visible devices
  std::string name;  // e.g. "NVIDIA H200"
};

// Which visible device a process with node-local rank `local_rank` uses: local_rank % visible.
// With one device visible (e.g. Slurm --gpus-per-task=1 sets CUDA_VISIBLE_DEVICES per task) that
// is device 0 for every rank. `gpus_per_node` (> 0: the cluster config's cluster.gpus_per_node)
// only checks: more visible devices than that is fine, fewer means ranks share a GPU (a warning).
// Pure. Errors: InvalidArgument (local_rank < 0, visible <= 0).
StatusOr<int> DeviceForLocalRank(int local_rank, int visible, int gpus_per_node,
                                 std::string* warning = nullptr);

// Picks the device for `local_rank` (DeviceForLocalRank over DeviceCount()) and makes it current
// on the calling thread (cudaSetDevice; other threads pick their own). Logs
// "rank R local L -> GPU G (name)" (`rank` only for the log). Blocking for the CUDA context
// set-up only. Thread-safe. Errors: Unavailable when there is no usable GPU (with the reason);
// InvalidArgument (local_rank); Internal for CUDA errors.
StatusOr<DeviceChoice> SelectDevice(int rank, int local_rank, int gpus_per_node = 0);

}  // namespace switchyard::cuda
