// How close two models' next-token distributions are, over the fixtures' reference sequences
// (prompt + greedy continuation, teacher-forced): used to bound quantized weights (FP4, FP8)
// against the FP32 engine.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "model/model.h"
#include "model/safetensors.h"

namespace switchyard::testing {

struct LogitQuality {
  double top1 = 0;         // fraction of positions whose argmax agrees
  double mean_kl = 0;      // KL(p_a || p_b), nats, mean over positions
  double max_rel_err = 0;  // max |Δlogit| / RMS(a's logits), over positions
};

// Each prompt of `<dir>/reference.safetensors` followed by its reference greedy continuation.
inline std::vector<std::vector<int32_t>> ReferenceSequences(const std::string& dir) {
  auto file = SafetensorsFile::Open(dir + "/reference.safetensors");
  EXPECT_TRUE(file.ok());
  std::vector<std::vector<int32_t>> out;
  for (int p = 0; file.ok(); ++p) {
    const std::string prefix = "prompt_" + std::to_string(p) + ".";
    const TensorInfo* in = (*file)->Find(prefix + "input_ids");
    const TensorInfo* gen = (*file)->Find(prefix + "output_ids");
    if (in == nullptr || gen == nullptr) break;
    std::vector<int32_t> seq(in->NumElements() + gen->NumElements());
    std::memcpy(seq.data(), (*file)->Data(*in), in->NumElements() * 4);
    std::memcpy(seq.data() + in->NumElements(), (*file)->Data(*gen), gen->NumElements() * 4);
    out.push_back(std::move(seq));
  }
  return out;
}

// Logits at every position of `seq` ([len, vocab]), one prefill with in-process experts.
inline std::vector<float> AllLogits(const Model& model, const std::vector<int32_t>& seq) {
  LocalExpertRunner experts(model.config(), model.weights());
  KvCache cache(model.config(), 64);
  ForwardBatch batch;
  batch.tokens = seq;
  batch.chunks.push_back({cache.Allocate(), static_cast<int64_t>(seq.size()), true, true});
  Tensor logits;
  EXPECT_TRUE(model.Forward(batch, &cache, &experts, &logits).ok());
  return std::vector<float>(logits.data(), logits.data() + logits.size());
}

inline LogitQuality CompareLogits(const Model& a, const Model& b,
                                  const std::vector<std::vector<int32_t>>& sequences) {
  const int64_t vocab = a.config().vocab_size;
  LogitQuality q;
  int64_t positions = 0;
  for (const auto& seq : sequences) {
    const auto la_all = AllLogits(a, seq), lb_all = AllLogits(b, seq);
    for (size_t t = 0; t < seq.size(); ++t) {
      const float* la = &la_all[t * vocab];
      const float* lb = &lb_all[t * vocab];
      q.top1 += std::max_element(la, la + vocab) - la == std::max_element(lb, lb + vocab) - lb;
      double max_a = la[0], max_b = lb[0], rms = 0, diff = 0;
      for (int64_t i = 0; i < vocab; ++i) {
        max_a = std::max(max_a, double{la[i]});
        max_b = std::max(max_b, double{lb[i]});
        rms += double{la[i]} * la[i];
        diff = std::max(diff, std::fabs(double{la[i]} - lb[i]));
      }
      q.max_rel_err = std::max(q.max_rel_err, diff / std::sqrt(rms / vocab));
      double za = 0, zb = 0;
      for (int64_t i = 0; i < vocab; ++i) {
        za += std::exp(la[i] - max_a);
        zb += std::exp(lb[i] - max_b);
      }
      for (int64_t i = 0; i < vocab; ++i) {
        const double lpa = la[i] - max_a - std::log(za), lpb = lb[i] - max_b - std::log(zb);
        q.mean_kl += std::exp(lpa) * (lpa - lpb);
      }
      ++positions;
    }
  }
  q.top1 /= positions;
  q.mean_kl /= positions;
  return q;
}

}  // namespace switchyard::testing
