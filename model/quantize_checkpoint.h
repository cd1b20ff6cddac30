// `switchyard quantize`: writes an FP4 copy of a BF16/F16/F32 checkpoint.
//
// Routed experts' projections become FP4 in the ModelOpt NVFP4 layout (`weight` U8 [out, in/2],
// `weight_scale` F8_E4M3 [out, in/16], `weight_scale_2` F32 scalar; quant_algo "W4A16_NVFP4":
// activations are not quantized, so no `input_scale`), or in Switchyard's MXFP4 layout (the same
// names, `weight_scale` F8_E8M0 [out, in/32], no `weight_scale_2`; quant_algo "MXFP4"). Every
// other tensor is copied unchanged. config.json gains a "quantization_config" (quant_method
// "modelopt") and hf_quant_config.json is written, listing the unquantized modules in
// exclude_modules. Shards mirror the input's; the values are exactly what the engine's load-time
// quantization (--expert-format) computes, so either path gives the same model bit for bit.
// Input features must be a multiple of the block (16 / 32). Memory: one input shard's experts
// quantized at a time.
#pragma once

#include <string>

#include "common/status.h"
#include "model/weights.h"

namespace switchyard {

struct QuantizeReport {
  int64_t tensors_quantized = 0;
  int64_t bytes_in = 0;
  int64_t bytes_out = 0;
};

Status QuantizeCheckpoint(const std::string& in_dir, const std::string& out_dir,
                          ExpertFormat format, QuantizeReport* report = nullptr);

}  // namespace switchyard
