// CUDA device discovery. Compiles without CUDA headers for its callers.
#pragma once

#include <string>

namespace switchyard::cuda {

// Number of usable CUDA devices; 0 when the driver, runtime or a device is missing (any CUDA
// error at probe time means "no GPU"). `why` receives the reason when 0.
int DeviceCount(std::string* why = nullptr);

}  // namespace switchyard::cuda
