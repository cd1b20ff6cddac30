// Writes NumPy .npy files (format 1.0, little-endian float32, C order), readable by numpy.load.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace switchyard {

Status WriteNpyFloat32(const std::string& path, const std::vector<int64_t>& shape,
                       const float* data);

}  // namespace switchyard
