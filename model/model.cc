#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/routing.h"

namespace switchyard {

// transformers keeps the default eps (1e-6) for DeepSeek's q_a/kv_a layernorms.
constexpr float kMlaNormEps = 1e-6f;

struct Model::Step {
  int64_t num_tokens = 0;
  std::vector<int64_t> position;     // per token
  std::vector<int64_t> chunk_start;  // per chunk: first token index in the batch
  std::vector<int64_t> chunk_pos;    // per chunk: first position
  std::vector<float> cos, sin;       // [num_tokens, rope.dim / 2], times attention_factor
  const ForwardBatch* batch = nullptr;
};

std::vector<float> RopeInverseFrequencies(const RopeConfig& rope) {
  const int64_t half = rope.dim / 2;
  std::vector<float> inv(half);
  const float base = static_cast<float>(rope.theta);
  for (int64_t i = 0; i < half; ++i) {
    float pos_freq = std::pow(base, static_cast<float>(2 * i) / static_cast<float>(rope.dim));
    inv[i] = 1.0f / pos_freq;
    if (rope.yarn) {
      const double dim = static_cast<double>(rope.dim);
      auto correction = [&](double rotations) {
        return dim * std::log(rope.original_max_position_embeddings / (rotations * 2 * M_PI)) /
               (2 * std::log(rope.theta));
      };
      double low = std::max(std::floor(correction(rope.beta_fast)), 0.0);
      double high = std::min(std::ceil(correction(rope.beta_slow)), dim - 1);
      if (low == high) high += 0.001;
      float ramp = static_cast<float>((static_cast<double>(i) - low) / (high - low));
      ramp = std::clamp(ramp, 0.0f, 1.0f);
      float extrapolation = 1.0f - ramp;
      float interpolated = 1.0f / (static_cast<float>(rope.factor) * pos_freq);
      inv[i] = interpolated * (1.0f - extrapolation) + inv[i] * extrapolation;
    }
  }
  return inv;
}

Model::Model(ModelConfig config, std::unique_ptr<ModelWeights> weights)
    : config_(std::move(config)), weights_(std::move(weights)) {
  inv_freq_ = RopeInverseFrequencies(config_.rope);
}

Status Model::Forward(const ForwardBatch& batch, KvCache* cache, ExpertRunner* experts,
                      Tensor* logits) const {
  const ModelConfig& c = config_;
  const int64_t h = c.hidden;
  Step step;
  step.batch = &batch;
  step.num_tokens = static_cast<int64_t>(batch.tokens.size());
  int64_t expected = 0;
  for (const auto& chunk : batch.chunks) {
    if (chunk.num_tokens <= 0) return InvalidArgumentError("empty sequence chunk in batch");
    expected += chunk.num_tokens;
  }
  if (expected != step.num_tokens) {
    return InvalidArgumentError("batch has " + std::to_string(step.num_tokens) +
                                " tokens but its chunks cover " + std::to_string(expected));
  }
  for (int64_t i = 0; i < step.num_tokens; ++i) {
    int32_t id = batch.tokens[i];
    if (id < 0 || id >= c.vocab_size) {
      return InvalidArgumentError("token id " + std::to_string(id) + " at batch index " +
                                  std::to_string(i) + " is outside the vocabulary [0, " +
                                  std::to_string(c.vocab_size) + ")");
    }
  }
  // Positions and cache capacity first, so an error leaves the cache as it was.
  int64_t t = 0;
  int64_t logit_rows = 0;
  for (const auto& chunk : batch.chunks) {
    const int64_t start = cache->Length(chunk.slot);
    RETURN_IF_ERROR(cache->Reserve(chunk.slot, start + chunk.num_tokens));
    step.chunk_start.push_back(t);
    step.chunk_pos.push_back(start);
    for (int64_t i = 0; i < chunk.num_tokens; ++i) step.position.push_back(start + i);
    t += chunk.num_tokens;
    logit_rows += !chunk.want_logits ? 0 : chunk.all_logits ? chunk.num_tokens : 1;
  }
  const int64_t half = c.rope.dim / 2;
  step.cos.resize(step.num_tokens * half);
  step.sin.resize(step.num_tokens * half);
  const float attention_factor = static_cast<float>(c.rope.attention_factor);
  for (int64_t i = 0; i < step.num_tokens; ++i) {
    for (int64_t j = 0; j < half; ++j) {
      float angle = static_cast<float>(step.position[i]) * inv_freq_[j];
      step.cos[i * half + j] =
          static_cast<float>(std::cos(static_cast<double>(angle))) * attention_factor;
      step.sin[i * half + j] =
          static_cast<float>(std::sin(static_cast<double>(angle))) * attention_factor;
    }
  }

  const ModelWeights& w = *weights_;
  const int64_t n = step.num_tokens;
  std::vector<float> x(n * h), normed(n * h), delta(n * h);
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(&x[i * h], w.embed.data() + static_cast<int64_t>(batch.tokens[i]) * h,
                h * sizeof(float));
  }
  const float eps = static_cast<float>(c.rms_norm_eps);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    cpu::RmsNorm(x.data(), lw.input_norm.data(), n, h, eps, normed.data());
    Attention(l, step, cache, normed.data(), delta.data());
    for (int64_t i = 0; i < n * h; ++i) x[i] += delta[i];
    cpu::RmsNorm(x.data(), lw.post_attention_norm.data(), n, h, eps, normed.data());
    if (lw.is_moe) {
      RETURN_IF_ERROR(Moe(l, n, normed.data(), experts, delta.data()));
    } else {
      std::vector<float> scratch(2 * n * c.intermediate_size);
      RunMlp(lw.dense, normed.data(), n, scratch.data(), delta.data());
    }
    for (int64_t i = 0; i < n * h; ++i) x[i] += delta[i];
  }
  for (size_t ci = 0; ci < batch.chunks.size(); ++ci) {
    cache->SetLength(batch.chunks[ci].slot, step.chunk_pos[ci] + batch.chunks[ci].num_tokens);
  }

  // Final norm and LM head on the rows that want logits.
  std::vector<float> rows;
  rows.reserve(logit_rows * h);
  for (size_t ci = 0; ci < batch.chunks.size(); ++ci) {
    const auto& chunk = batch.chunks[ci];
    if (!chunk.want_logits) continue;
    int64_t first = chunk.all_logits ? 0 : chunk.num_tokens - 1;
    for (int64_t i = first; i < chunk.num_tokens; ++i) {
      const float* src = &x[(step.chunk_start[ci] + i) * h];
      rows.insert(rows.end(), src, src + h);
    }
  }
  cpu::RmsNorm(rows.data(), w.norm.data(), logit_rows, h, eps, rows.data());
  *logits = Tensor({logit_rows, c.vocab_size});
  cpu::MatMulTransB(rows.data(), logit_rows, h, w.LmHead().data(), c.vocab_size, logits->data());
  return OkStatus();
}

void Model::Attention(int64_t layer, const Step& step, KvCache* cache, const float* x,
                      float* out) const {
  if (config_.mla) {
    AttentionMla(layer, step, cache, x, out);
  } else {
    AttentionGqa(layer, step, cache, x, out);
  }
}

void Model::AttentionGqa(int64_t layer, const Step& step, KvCache* cache, const float* x,
                         float* out) const {
  const ModelConfig& c = config_;
  const AttentionWeights& a = weights_->layers[layer].attn;
  const int64_t n = step.num_tokens, h = c.hidden, hd = c.head_dim;
  const int64_t q_width = c.num_heads * hd, kv_width = c.num_kv_heads * hd;
  const int64_t half = c.rope.dim / 2;
  std::vector<float> q(n * q_width), k(n * kv_width), v(n * kv_width), ctx(n * q_width);
  auto bias = [](const Linear& lin) { return lin.bias.empty() ? nullptr : lin.bias.data(); };
  cpu::MatMulTransB(x, n, h, a.q.weight.data(), q_width, q.data(), bias(a.q));
  cpu::MatMulTransB(x, n, h, a.k.weight.data(), kv_width, k.data(), bias(a.k));
  cpu::MatMulTransB(x, n, h, a.v.weight.data(), kv_width, v.data(), bias(a.v));
  const float eps = static_cast<float>(c.rms_norm_eps);
  if (!a.q_norm.empty()) {  // Qwen3: per-head RMSNorm before RoPE
    cpu::RmsNorm(q.data(), a.q_norm.data(), n * c.num_heads, hd, eps, q.data());
    cpu::RmsNorm(k.data(), a.k_norm.data(), n * c.num_kv_heads, hd, eps, k.data());
  }
  for (int64_t i = 0; i < n; ++i) {
    const float* cs = &step.cos[i * half];
    const float* sn = &step.sin[i * half];
    for (int64_t hh = 0; hh < c.num_heads; ++hh) {
      cpu::ApplyRope(&q[i * q_width + hh * hd], hd, cs, sn, c.rope.interleave);
    }
    for (int64_t hh = 0; hh < c.num_kv_heads; ++hh) {
      cpu::ApplyRope(&k[i * kv_width + hh * hd], hd, cs, sn, c.rope.interleave);
    }
  }
  const ForwardBatch& batch = *step.batch;
  for (size_t ci = 0; ci < batch.chunks.size(); ++ci) {
    const SequenceChunk& chunk = batch.chunks[ci];
    const int64_t t0 = step.chunk_start[ci], pos0 = step.chunk_pos[ci];
    float* kc = cache->Keys(chunk.slot, layer);
    float* vc = cache->Values(chunk.slot, layer);
    std::memcpy(kc + pos0 * kv_width, &k[t0 * kv_width], chunk.num_tokens * kv_width * 4);
    std::memcpy(vc + pos0 * kv_width, &v[t0 * kv_width], chunk.num_tokens * kv_width * 4);
    cpu::AttentionGqa(&q[t0 * q_width], chunk.num_tokens, pos0, kc, vc, pos0 + chunk.num_tokens,
                      c.num_heads, c.num_kv_heads, hd, static_cast<float>(c.attn_scale),
                      c.sliding_window, &ctx[t0 * q_width]);
  }
  cpu::MatMulTransB(ctx.data(), n, q_width, a.o.weight.data(), h, out, bias(a.o));
}

void Model::AttentionMla(int64_t layer, const Step& step, KvCache* cache, const float* x,
                         float* out) const {
  const ModelConfig& c = config_;
  const AttentionWeights& a = weights_->layers[layer].attn;
  const int64_t n = step.num_tokens, h = c.hidden, heads = c.num_heads;
  const int64_t nope = c.qk_nope_head_dim, rope = c.qk_rope_head_dim, vd = c.v_head_dim;
  const int64_t lat = c.kv_lora_rank, qk = nope + rope, row = lat + rope, kvb = nope + vd;
  const int64_t half = rope / 2;
  auto bias = [](const Linear& lin) { return lin.bias.empty() ? nullptr : lin.bias.data(); };

  std::vector<float> q(n * heads * qk);
  if (c.q_lora_rank == 0) {
    cpu::MatMulTransB(x, n, h, a.q.weight.data(), heads * qk, q.data());
  } else {
    std::vector<float> qa(n * c.q_lora_rank);
    cpu::MatMulTransB(x, n, h, a.q_a.weight.data(), c.q_lora_rank, qa.data(), bias(a.q_a));
    cpu::RmsNorm(qa.data(), a.q_a_norm.data(), n, c.q_lora_rank, kMlaNormEps, qa.data());
    cpu::MatMulTransB(qa.data(), n, c.q_lora_rank, a.q_b.weight.data(), heads * qk, q.data());
  }
  std::vector<float> kv(n * row);
  cpu::MatMulTransB(x, n, h, a.kv_a.weight.data(), row, kv.data(), bias(a.kv_a));
  // kv rows are [latent | k_pe]: only the latent is normalised; k_pe is RoPE'd raw.
  for (int64_t i = 0; i < n; ++i) {
    cpu::RmsNormSerial(&kv[i * row], a.kv_a_norm.data(), 1, lat, kMlaNormEps, &kv[i * row]);
  }
  // Absorbed queries: q_lat[t, hh] = W_UK(hh)ᵀ q_nope[t, hh]; q_pe roped in place.
  std::vector<float> q_lat(n * heads * lat), q_pe(n * heads * rope);
  const float* kv_b = a.kv_b.weight.data();  // [heads * (nope + vd), lat]
#pragma omp parallel for schedule(static) if (n * heads * nope * lat > 65536)
  for (int64_t item = 0; item < n * heads; ++item) {
    const int64_t i = item / heads, hh = item % heads;
    const float* qn = &q[(i * heads + hh) * qk];
    float* ql = &q_lat[item * lat];
    std::fill(ql, ql + lat, 0.0f);
    for (int64_t d = 0; d < nope; ++d) {
      const float* wr = kv_b + (hh * kvb + d) * lat;
      const float s = qn[d];
      for (int64_t cc = 0; cc < lat; ++cc) ql[cc] += s * wr[cc];
    }
    float* qp = &q_pe[item * rope];
    std::memcpy(qp, qn + nope, rope * sizeof(float));
    cpu::ApplyRope(qp, rope, &step.cos[i * half], &step.sin[i * half], c.rope.interleave);
  }
  std::vector<float> ctx_lat(n * heads * lat);
  const ForwardBatch& batch = *step.batch;
  for (size_t ci = 0; ci < batch.chunks.size(); ++ci) {
    const SequenceChunk& chunk = batch.chunks[ci];
    const int64_t t0 = step.chunk_start[ci], pos0 = step.chunk_pos[ci];
    float* cache_rows = cache->Keys(chunk.slot, layer);
    for (int64_t i = 0; i < chunk.num_tokens; ++i) {
      const float* src = &kv[(t0 + i) * row];
      float* dst = cache_rows + (pos0 + i) * row;
      std::memcpy(dst, src, row * sizeof(float));
      cpu::ApplyRope(dst + lat, rope, &step.cos[(t0 + i) * half], &step.sin[(t0 + i) * half],
                     c.rope.interleave);
    }
    cpu::AttentionMla(&q_lat[t0 * heads * lat], &q_pe[t0 * heads * rope], chunk.num_tokens, pos0,
                      cache_rows, pos0 + chunk.num_tokens, heads, lat, rope,
                      static_cast<float>(c.attn_scale), &ctx_lat[t0 * heads * lat]);
  }
  // Values: o[t, hh] = W_UV(hh) ctx_lat[t, hh].
  std::vector<float> o(n * heads * vd);
#pragma omp parallel for schedule(static) if (n * heads * vd * lat > 65536)
  for (int64_t item = 0; item < n * heads; ++item) {
    const int64_t hh = item % heads;
    cpu::MatMulTransBSerial(&ctx_lat[item * lat], 1, lat, kv_b + (hh * kvb + nope) * lat, vd,
                            &o[item * vd]);
  }
  cpu::MatMulTransB(o.data(), n, heads * vd, a.o.weight.data(), h, out, bias(a.o));
}

Status Model::Moe(int64_t layer, int64_t num_tokens, const float* x, ExpertRunner* experts,
                  float* out) const {
  const ModelConfig& c = config_;
  const LayerWeights& lw = weights_->layers[layer];
  const int64_t h = c.hidden, k = c.num_topk;
  std::vector<float> router_logits(num_tokens * c.num_experts);
  cpu::MatMulTransB(x, num_tokens, h, lw.router.weight.data(), c.num_experts, router_logits.data());
  cpu::RoutingParams params;
  params.num_experts = c.num_experts;
  params.num_topk = k;
  params.sigmoid_group = c.sigmoid_group_routing;
  params.n_group = c.n_group;
  params.topk_group = c.topk_group;
  params.norm_topk_prob = c.norm_topk_prob;
  params.routed_scaling_factor = static_cast<float>(c.routed_scaling_factor);
  params.bias = lw.router_bias.empty() ? nullptr : lw.router_bias.data();
  std::vector<int32_t> topk_idx(num_tokens * k);
  std::vector<float> topk_weights(num_tokens * k);
  cpu::RouteTopK(router_logits.data(), num_tokens, params, topk_idx.data(), topk_weights.data());
  RETURN_IF_ERROR(experts->Run(layer, x, num_tokens, topk_idx.data(), topk_weights.data(), out));
  if (c.shared_intermediate_size > 0) {
    if (!lw.shared.loaded()) {
      return FailedPreconditionError("layer " + std::to_string(layer) +
                                     ": shared experts are not loaded");
    }
    std::vector<float> shared(num_tokens * h), scratch(2 * num_tokens * c.shared_intermediate_size);
    RunMlp(lw.shared, x, num_tokens, scratch.data(), shared.data());
    for (int64_t i = 0; i < num_tokens * h; ++i) out[i] += shared[i];
  }
  return OkStatus();
}

}  // namespace switchyard
