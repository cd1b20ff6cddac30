// Upload of per-expert FP4 weights (cpu::Fp4Weight) into one stacked device allocation, plus the
// cuBLASLt 128x4 swizzled copy of NVFP4 block scales for the Blackwell path.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cuda/fp4_code_layout.h"
#include "kernels/cuda/fp4_cuda.h"
#include "kernels/fp4_scale_layout.h"

namespace switchyard::cuda {
namespace {

Status CheckExpert(const cpu::Fp4Weight& w, const cpu::Fp4Weight& first, size_t e) {
  const std::string where = "UploadFp4ExpertWeights: expert " + std::to_string(e);
  if (w.format != first.format || w.rows != first.rows || w.cols != first.cols ||
      w.padded_cols != first.padded_cols) {
    return InvalidArgumentError(where + ": " + Fp4Name(w.format) + " [" + std::to_string(w.rows) +
                                ", " + std::to_string(w.cols) + "] differs from expert 0 (" +
                                Fp4Name(first.format) + " [" + std::to_string(first.rows) + ", " +
                                std::to_string(first.cols) + "])");
  }
  const int block = Fp4Block(w.format);
  if (w.rows < 0 || w.padded_cols < w.cols || w.padded_cols % block != 0 ||
      static_cast<int64_t>(w.packed.size()) != w.rows * w.padded_cols / 2 ||
      static_cast<int64_t>(w.scales.size()) != w.rows * w.padded_cols / block) {
    return InvalidArgumentError(where + ": packed/scales sizes do not match [" +
                                std::to_string(w.rows) + ", " + std::to_string(w.padded_cols) +
                                "] in the Fp4Weight layout");
  }
  return OkStatus();
}

}  // namespace

StatusOr<Fp4ExpertWeights> UploadFp4ExpertWeights(const std::vector<const cpu::Fp4Weight*>& experts,
                                                  bool with_swizzled_scales, Fp4CodeLayout layout) {
  if (experts.empty()) return InvalidArgumentError("UploadFp4ExpertWeights: no experts");
  for (size_t e = 0; e < experts.size(); ++e) {
    if (experts[e] == nullptr) {
      return InvalidArgumentError("UploadFp4ExpertWeights: expert " + std::to_string(e) +
                                  " is null");
    }
    RETURN_IF_ERROR(CheckExpert(*experts[e], *experts[0], e));
  }
  const cpu::Fp4Weight& first = *experts[0];
  Fp4ExpertWeights out;
  out.format = first.format;
  out.num_experts = static_cast<int64_t>(experts.size());
  out.rows = first.rows;
  out.cols = first.cols;
  out.padded_cols = first.padded_cols;
  out.layout = layout;
  const int64_t packed_bytes = static_cast<int64_t>(first.packed.size());
  const int64_t scale_bytes = static_cast<int64_t>(first.scales.size());

  // Stage on the host and copy once per buffer: one cudaMemcpy instead of 3 per expert.
  std::vector<uint8_t> staging(static_cast<size_t>(packed_bytes * out.num_experts));
  for (int64_t e = 0; e < out.num_experts; ++e) {
    std::copy(experts[e]->packed.begin(), experts[e]->packed.end(),
              staging.begin() + e * packed_bytes);
  }
  if (layout == Fp4CodeLayout::kMmaPairs) {
    // Rows are padded_cols / 2 bytes, a multiple of 8: words never straddle rows.
    for (size_t i = 0; i + 4 <= staging.size(); i += 4) {
      uint32_t word;
      std::memcpy(&word, staging.data() + i, 4);
      word = pairs::PermuteWord(word);
      std::memcpy(staging.data() + i, &word, 4);
    }
  }
  ASSIGN_OR_RETURN(out.packed,
                   DeviceBuffer::FromHost(staging.data(), packed_bytes * out.num_experts,
                                          "FP4 expert packed weights"));
  staging.assign(static_cast<size_t>(scale_bytes * out.num_experts), 0);
  for (int64_t e = 0; e < out.num_experts; ++e) {
    std::copy(experts[e]->scales.begin(), experts[e]->scales.end(),
              staging.begin() + e * scale_bytes);
  }
  ASSIGN_OR_RETURN(out.scales, DeviceBuffer::FromHost(staging.data(), scale_bytes * out.num_experts,
                                                      "FP4 expert block scales"));
  for (const cpu::Fp4Weight* w : experts) {
    out.host_global_scales.push_back(w->format == cpu::Fp4Format::kNvFp4 ? w->global_scale : 1.0f);
  }
  ASSIGN_OR_RETURN(out.global_scales,
                   DeviceBuffer::FromHost(out.host_global_scales.data(),
                                          out.num_experts * static_cast<int64_t>(sizeof(float)),
                                          "FP4 expert global scales"));

  if (with_swizzled_scales && out.format == cpu::Fp4Format::kNvFp4) {
    const int64_t scale_cols = out.padded_cols / fp4::kNvFp4Block;
    const int64_t per_expert = fp4::SwizzledScaleBytes(out.rows, scale_cols);
    staging.assign(static_cast<size_t>(per_expert * out.num_experts), 0);  // padding stays 0
    for (int64_t e = 0; e < out.num_experts; ++e) {
      const uint8_t* src = experts[e]->scales.data();
      uint8_t* dst = staging.data() + e * per_expert;
      for (int64_t r = 0; r < out.rows; ++r) {
        for (int64_t c = 0; c < scale_cols; ++c) {
          dst[fp4::SwizzledScaleOffset(r, c, scale_cols)] = src[r * scale_cols + c];
        }
      }
    }
    ASSIGN_OR_RETURN(out.swizzled_scales,
                     DeviceBuffer::FromHost(staging.data(), per_expert * out.num_experts,
                                            "FP4 expert swizzled block scales"));
    out.swizzled = true;
  }
  return out;
}

}  // namespace switchyard::cuda
