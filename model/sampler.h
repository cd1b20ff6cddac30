// Next-token sampling: greedy, temperature, top-k, top-p, reproducible from a seed.
//
// temperature == 0 is greedy (argmax; ties to the lowest id, as torch.argmax). Otherwise logits are
// divided by the temperature, top-k keeps the k most likely (0 = all), top-p keeps the smallest
// set of most likely tokens whose probability reaches top_p (always at least one), and a token is
// drawn from the renormalised distribution with a per-request xoshiro256** generator.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace switchyard {

struct SamplingParams {
  float temperature = 0.0f;
  int64_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
};

Status ValidateSamplingParams(const SamplingParams& params);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  int32_t Sample(const float* logits, int64_t vocab);

 private:
  double Uniform();  // [0, 1)
  SamplingParams params_;
  uint64_t state_[4];
  std::vector<std::pair<float, int32_t>> candidates_;
};

}  // namespace switchyard
