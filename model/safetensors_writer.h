// Writes safetensors files the way the reference writer does: tensors ordered by dtype alignment
// (largest first) then name, header padded with spaces to a multiple of 8, no holes.
// Used by the built-in default model generator, tests and benchmarks.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/safetensors.h"

namespace switchyard {

struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  // Fills `out` (exactly the tensor's byte size) with the tensor's bytes. Called once, in file
  // order, so a large checkpoint is generated piecewise without holding it in memory.
  std::function<void(uint8_t* out, uint64_t bytes)> fill;
};

// Writes `path` atomically (to path + ".tmp", then rename). Duplicate names are an error.
Status WriteSafetensors(const std::string& path, std::vector<TensorToWrite> tensors,
                        const std::map<std::string, std::string>& metadata = {});

// Writes model.safetensors.index.json for shards: weight_map name -> shard file name.
Status WriteSafetensorsIndex(const std::string& path,
                             const std::map<std::string, std::string>& weight_map,
                             uint64_t total_size);

// Convenience fill: converts FP32 values to the tensor's dtype (F32, BF16, F16).
std::function<void(uint8_t*, uint64_t)> FillFromFloats(std::vector<float> values, DType dtype);

}  // namespace switchyard
