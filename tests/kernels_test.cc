// FP32 CPU kernels (kernels/cpu) against plain references written here, mostly in double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "common/parallel.h"
#include "kernels/cpu/cpu_kernels.h"
#include "kernels/cpu/routing.h"

namespace switchyard::cpu {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> Random(size_t n, uint32_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void ExpectNear(const std::vector<float>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol) << "at " << i;
}

// MatMul
TEST(MatMulTest, FastAndSerialMatchReferenceAndEachOther) {
  SetComputeThreads(4);  // the parallel path must not depend on the thread count
  uint32_t seed = 1;
  for (int64_t m : {0, 1, 2, 3, 5, 17, 64}) {
    for (int64_t k : {1, 7, 8, 9, 31, 64, 257}) {
      for (int64_t n : {1, 3, 4, 5, 33, 100}) {
        for (bool with_bias : {false, true}) {
          SCOPED_TRACE(testing::Message()
                       << "m=" << m << " k=" << k << " n=" << n << " bias=" << with_bias);
          auto x = Random(m * k, ++seed), w = Random(n * k, ++seed), b = Random(n, ++seed);
          const float* bias = with_bias ? b.data() : nullptr;
          std::vector<float> ref(m * n, -7.0f), fast(m * n, -7.0f), serial(m * n, -7.0f);
          MatMulTransBReference(x.data(), m, k, w.data(), n, ref.data(), bias);
          MatMulTransB(x.data(), m, k, w.data(), n, fast.data(), bias);
          MatMulTransBSerial(x.data(), m, k, w.data(), n, serial.data(), bias);
          for (int64_t i = 0; i < m; ++i) {
            for (int64_t j = 0; j < n; ++j) {
              // Error relative to the magnitude of the terms (plain relative error is
              // meaningless where the dot product cancels to ~0).
              double want = with_bias ? b[j] : 0.0, mag = with_bias ? std::abs(b[j]) : 0.0;
              for (int64_t p = 0; p < k; ++p) {
                double t = static_cast<double>(x[i * k + p]) * w[j * k + p];
                want += t;
                mag += std::abs(t);
              }
              const int64_t o = i * n + j;
              ASSERT_EQ(ref[o], static_cast<float>(want)) << "reference at " << i << "," << j;
              ASSERT_LE(std::abs(fast[o] - want), 1e-5 * mag) << "at " << i << "," << j;
              // Same tile code computes each output in both variants: bitwise equal.
              ASSERT_EQ(fast[o], serial[o]) << "at " << i << "," << j;
            }
          }
        }
      }
    }
  }
}

// Element-wise kernels
std::vector<double> RmsNormRef(const std::vector<float>& x, const std::vector<float>& w,
                               int64_t rows, int64_t n, double eps) {
  std::vector<double> y(rows * n);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[r * n + i]) * x[r * n + i];
    double inv = 1.0 / std::sqrt(ss / n + eps);
    for (int64_t i = 0; i < n; ++i) y[r * n + i] = w[i] * (x[r * n + i] * inv);
  }
  return y;
}

TEST(ElementwiseTest, RmsNormInPlaceAndOutOfPlace) {
  SetComputeThreads(4);
  // 64 x 512 takes the parallel path (rows * n >= 16384).
  for (auto [rows, n] : {std::pair<int64_t, int64_t>{1, 1}, {3, 7}, {5, 64}, {64, 512}}) {
    SCOPED_TRACE(testing::Message() << "rows=" << rows << " n=" << n);
    auto x = Random(rows * n, 11, -3.0f, 3.0f), w = Random(n, 12, 0.5f, 1.5f);
    auto want = RmsNormRef(x, w, rows, n, 1e-6);
    std::vector<float> out(rows * n), serial(rows * n), inplace = x;
    RmsNorm(x.data(), w.data(), rows, n, 1e-6f, out.data());
    RmsNormSerial(x.data(), w.data(), rows, n, 1e-6f, serial.data());
    RmsNorm(inplace.data(), w.data(), rows, n, 1e-6f, inplace.data());
    for (size_t i = 0; i < out.size(); ++i) {
      ASSERT_NEAR(out[i], want[i], 1e-5 * std::max(1.0, std::abs(want[i]))) << i;
      ASSERT_EQ(out[i], serial[i]) << i;
      ASSERT_EQ(out[i], inplace[i]) << i;
    }
  }
  // eps dominates an all-zero row: output 0, not NaN.
  std::vector<float> zeros(8, 0.0f), ones(8, 1.0f), y(8, 5.0f);
  RmsNorm(zeros.data(), ones.data(), 1, 8, 1e-6f, y.data());
  for (float v : y) EXPECT_EQ(v, 0.0f);
}

TEST(ElementwiseTest, SiluMulIncludingAliasingAndExtremes) {
  auto gate = Random(300, 21, -8.0f, 8.0f), up = Random(300, 22, -2.0f, 2.0f);
  gate[0] = 1000.0f, gate[1] = -1000.0f, gate[2] = 0.0f, gate[3] = 88.0f, gate[4] = -88.0f;
  std::vector<double> want(gate.size());
  for (size_t i = 0; i < gate.size(); ++i) {
    want[i] = gate[i] / (1.0 + std::exp(-static_cast<double>(gate[i]))) * up[i];
  }
  std::vector<float> out(gate.size());
  SiluMul(gate.data(), up.data(), gate.size(), out.data());
  for (size_t i = 0; i < out.size(); ++i) {
    ASSERT_FALSE(std::isnan(out[i])) << i;
    ASSERT_NEAR(out[i], want[i], 1e-5 * std::max(1.0, std::abs(want[i]))) << i;
  }
  std::vector<float> g = gate, u = up;
  SiluMul(g.data(), up.data(), g.size(), g.data());    // out aliases gate
  SiluMul(gate.data(), u.data(), u.size(), u.data());  // out aliases up
  EXPECT_EQ(g, out);
  EXPECT_EQ(u, out);
}

// The vectorised and the scalar SiluMul (whole 8-lane groups vs the tail) give the same bits, so a
// call's results do not depend on how its callers split the rows (the FP4 kernels rely on it).
TEST(ElementwiseTest, SiluMulSameBitsWhateverTheSplit) {
  auto gate = Random(203, 23, -100.0f, 100.0f), up = Random(203, 24, -2.0f, 2.0f);
  gate[8] = 88.7f, gate[9] = -88.7f, gate[10] = -0.0f, gate[11] = 1e-30f;
  std::vector<float> whole(gate.size()), one(gate.size());
  SiluMul(gate.data(), up.data(), gate.size(), whole.data());
  for (size_t i = 0; i < gate.size(); ++i) SiluMul(&gate[i], &up[i], 1, &one[i]);
  for (size_t i = 0; i < gate.size(); ++i) {
    ASSERT_EQ(std::memcmp(&whole[i], &one[i], sizeof(float)), 0)
        << i << ": " << whole[i] << " vs " << one[i] << " (gate " << gate[i] << ")";
  }
}

void ExpectSoftmax(std::vector<float> x) {
  double max = -kInf, sum = 0.0;
  for (float v : x) max = std::max<double>(max, v);
  std::vector<double> want(x.size());
  for (size_t i = 0; i < x.size(); ++i) sum += want[i] = std::exp(x[i] - max);
  for (double& v : want) v /= sum;
  SoftmaxInPlace(x.data(), x.size());
  ExpectNear(x, want, 1e-6);
}

TEST(ElementwiseTest, SoftmaxStableWithLargeValuesAndMinusInf) {
  ExpectSoftmax({1000.0f, 999.0f, -kInf, 0.0f, 1000.0f});
  ExpectSoftmax({-1000.0f, -1001.0f, -kInf});
  ExpectSoftmax({3.5f});
  ExpectSoftmax(std::vector<float>(17, 2.0f));
  for (int64_t n : {2, 7, 100}) ExpectSoftmax(Random(n, 30 + n, -20.0f, 20.0f));
  std::vector<float> x = {1000.0f, -kInf, 1000.0f};
  SoftmaxInPlace(x.data(), 3);
  EXPECT_EQ(x, (std::vector<float>{0.5f, 0.0f, 0.5f}));
}

// RoPE (specs §4.3): inv_freq_i = base^(-2i/dim); angle = pos * inv_freq_i.
void RopeTables(int64_t dim, double pos, std::vector<float>* cos, std::vector<float>* sin) {
  cos->resize(dim / 2), sin->resize(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) {
    double angle = pos * std::pow(10000.0, -2.0 * i / dim);
    (*cos)[i] = static_cast<float>(std::cos(angle));
    (*sin)[i] = static_cast<float>(std::sin(angle));
  }
}

TEST(RopeTest, MatchesComplexRotationForBothPairings) {
  for (int64_t dim : {2, 8, 64}) {
    for (double pos : {0.0, 1.0, 7.0, 1000.0}) {
      for (bool interleave : {true, false}) {
        SCOPED_TRACE(testing::Message() << "dim=" << dim << " pos=" << pos << " il=" << interleave);
        std::vector<float> cos, sin;
        RopeTables(dim, pos, &cos, &sin);
        auto x = Random(dim, 40 + dim, -2.0f, 2.0f);
        std::vector<double> want(x.begin(), x.end());
        for (int64_t i = 0; i < dim / 2; ++i) {
          int64_t a = interleave ? 2 * i : i, b = interleave ? 2 * i + 1 : i + dim / 2;
          std::complex<double> z =
              std::complex<double>(x[a], x[b]) * std::complex<double>(cos[i], sin[i]);
          want[a] = z.real(), want[b] = z.imag();
        }
        double norm_before = 0.0, norm_after = 0.0;
        for (float v : x) norm_before += static_cast<double>(v) * v;
        ApplyRope(x.data(), dim, cos.data(), sin.data(), interleave);
        ExpectNear(x, want, 1e-5);
        for (float v : x) norm_after += static_cast<double>(v) * v;
        EXPECT_NEAR(norm_after, norm_before, 1e-5 * norm_before);
      }
    }
  }
}

TEST(RopeTest, PairingConventions) {
  const int64_t dim = 16, half = dim / 2;
  std::vector<float> cos, sin;
  RopeTables(dim, 3.0, &cos, &sin);
  // A basis vector only leaks into its partner: (2i, 2i+1) interleaved, (i, i+d/2) halves.
  for (bool interleave : {true, false}) {
    for (int64_t j = 0; j < dim; ++j) {
      int64_t pair = j % 2 == 0 ? j + 1 : j - 1;
      if (!interleave) pair = j < half ? j + half : j - half;
      std::vector<float> e(dim, 0.0f);
      e[j] = 1.0f;
      ApplyRope(e.data(), dim, cos.data(), sin.data(), interleave);
      for (int64_t i = 0; i < dim; ++i) {
        if (i != j && i != pair) {
          EXPECT_EQ(e[i], 0.0f) << "il=" << interleave << " j=" << j;
        }
      }
    }
  }
  // Halves on a de-interleaved vector == de-interleaved result of interleave (HF's permutation).
  auto x = Random(dim, 50);
  std::vector<float> perm(dim);
  for (int64_t i = 0; i < half; ++i) {
    perm[i] = x[2 * i];
    perm[i + half] = x[2 * i + 1];
  }
  ApplyRope(x.data(), dim, cos.data(), sin.data(), true);
  ApplyRope(perm.data(), dim, cos.data(), sin.data(), false);
  for (int64_t i = 0; i < half; ++i) EXPECT_EQ(perm[i], x[2 * i]) << i;
  for (int64_t i = 0; i < half; ++i) EXPECT_EQ(perm[i + half], x[2 * i + 1]) << i;
}

// Attention
// Softmax of scores (with -inf masked entries), then out = Σ p_t · value(t).
template <typename ValueFn>
void NaiveAttend(std::vector<double> scores, int64_t width, ValueFn value, double* out) {
  double max = -kInf, sum = 0.0;
  for (double s : scores) max = std::max(max, s);
  for (double& s : scores) sum += s = std::exp(s - max);
  std::fill(out, out + width, 0.0);
  for (size_t t = 0; t < scores.size(); ++t) {
    for (int64_t d = 0; d < width; ++d) out[d] += scores[t] / sum * value(t)[d];
  }
}

struct Span {
  int64_t ctx_len, start_pos, num_q;
};
// Prefill from 0, a chunk in the middle (with unused future cache rows), single decode tokens,
// and a prefill large enough for the parallel path.
constexpr Span kSpans[] = {{9, 0, 9}, {20, 6, 5}, {17, 16, 1}, {30, 11, 1}, {64, 0, 64}};

TEST(AttentionTest, GqaMatchesNaiveReference) {
  SetComputeThreads(4);
  const int64_t d = 16;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  for (Span s : kSpans) {
    for (int64_t kvh : {1, 2, 4}) {
      for (int64_t window : {0, 1, 4, 100}) {
        const int64_t h = 4, group = h / kvh;
        SCOPED_TRACE(testing::Message()
                     << "ctx=" << s.ctx_len << " start=" << s.start_pos << " num_q=" << s.num_q
                     << " kv_heads=" << kvh << " window=" << window);
        auto q = Random(s.num_q * h * d, 60, -2.0f, 2.0f);
        auto k = Random(s.ctx_len * kvh * d, 61, -2.0f, 2.0f), v = Random(k.size(), 62);
        std::vector<float> out(q.size(), NAN);
        AttentionGqa(q.data(), s.num_q, s.start_pos, k.data(), v.data(), s.ctx_len, h, kvh, d,
                     scale, window, out.data());
        std::vector<double> want(q.size());
        for (int64_t i = 0; i < s.num_q; ++i) {
          for (int64_t hh = 0; hh < h; ++hh) {
            const int64_t pos = s.start_pos + i, kv = hh / group;
            const float* qv = &q[(i * h + hh) * d];
            std::vector<double> scores(s.ctx_len, -kInf);
            for (int64_t t = 0; t < s.ctx_len; ++t) {
              if (t > pos || (window > 0 && t <= pos - window)) continue;
              double dot = 0.0;
              for (int64_t c = 0; c < d; ++c)
                dot += static_cast<double>(qv[c]) * k[(t * kvh + kv) * d + c];
              scores[t] = dot * scale;
            }
            NaiveAttend(
                scores, d, [&](size_t t) { return &v[(t * kvh + kv) * d]; },
                &want[(i * h + hh) * d]);
          }
        }
        ExpectNear(out, want, 1e-5);
      }
    }
  }
}

TEST(AttentionTest, MlaAbsorbedMatchesNaiveReference) {
  SetComputeThreads(4);
  const int64_t h = 3, lat = 32, rope = 8, row = lat + rope;
  const float scale = 0.2f;
  for (Span s : kSpans) {
    SCOPED_TRACE(testing::Message()
                 << "ctx=" << s.ctx_len << " start=" << s.start_pos << " num_q=" << s.num_q);
    auto q_lat = Random(s.num_q * h * lat, 70, -2.0f, 2.0f);
    auto q_pe = Random(s.num_q * h * rope, 71, -2.0f, 2.0f);
    auto cache = Random(s.ctx_len * row, 72, -1.5f, 1.5f);
    std::vector<float> out(q_lat.size(), NAN);
    AttentionMla(q_lat.data(), q_pe.data(), s.num_q, s.start_pos, cache.data(), s.ctx_len, h, lat,
                 rope, scale, out.data());
    std::vector<double> want(out.size());
    for (int64_t i = 0; i < s.num_q; ++i) {
      for (int64_t hh = 0; hh < h; ++hh) {
        std::vector<double> scores(s.ctx_len, -kInf);
        for (int64_t t = 0; t <= s.start_pos + i; ++t) {
          double dot = 0.0;
          for (int64_t c = 0; c < lat; ++c)
            dot += double{q_lat[(i * h + hh) * lat + c]} * cache[t * row + c];
          for (int64_t r = 0; r < rope; ++r)
            dot += double{q_pe[(i * h + hh) * rope + r]} * cache[t * row + lat + r];
          scores[t] = dot * scale;
        }
        NaiveAttend(
            scores, lat, [&](size_t t) { return &cache[t * row]; }, &want[(i * h + hh) * lat]);
      }
    }
    ExpectNear(out, want, 1e-5);
  }
}

// Routing (specs §3)
using Idx = std::vector<int32_t>;
struct Routed {
  std::vector<int32_t> idx;
  std::vector<float> weights;
};

Routed Route(const std::vector<float>& logits, const RoutingParams& p) {
  const int64_t tokens = logits.size() / p.num_experts;
  Routed r{std::vector<int32_t>(tokens * p.num_topk), std::vector<float>(tokens * p.num_topk)};
  RouteTopK(logits.data(), tokens, p, r.idx.data(), r.weights.data());
  return r;
}

// Order-independent comparison (expert -> weight).
void ExpectRouted(const Routed& got, const std::map<int32_t, double>& want) {
  std::map<int32_t, float> m;
  for (size_t j = 0; j < got.idx.size(); ++j) m[got.idx[j]] = got.weights[j];
  ASSERT_EQ(m.size(), want.size());
  for (auto [e, w] : want) {
    ASSERT_TRUE(m.count(e)) << "expert " << e << " not chosen";
    EXPECT_NEAR(m[e], w, 2e-6) << "expert " << e;
  }
}

// §3.5 oracle input.
const std::vector<float> kLogits = {0.50f,  -1.00f, 2.00f, 0.10f, 1.50f, 1.40f, -0.30f, 0.00f,
                                    -2.00f, 0.90f,  0.80f, 0.70f, 0.20f, 0.30f, 3.00f,  -0.50f};
const std::vector<float> kBias = {0.00f, 0.10f, -0.20f, 0.05f, 0.00f, 0.00f, 0.30f,  0.00f,
                                  0.40f, 0.00f, 0.00f,  0.00f, 0.00f, 0.00f, -0.60f, 0.00f};

RoutingParams DeepSeek(int64_t e, int64_t k, int64_t groups, int64_t keep, const float* bias) {
  return {e, k, /*sigmoid_group=*/true, groups, keep, /*norm_topk_prob=*/true, 2.5f, bias};
}
RoutingParams SoftmaxTopK(int64_t e, int64_t k, bool norm) {
  return {e, k, false, 1, 1, norm, 1.0f, nullptr};
}

TEST(RoutingTest, SpecOracleValues) {
  Routed ds = Route(kLogits, DeepSeek(16, 4, 4, 2, kBias.data()));
  ExpectRouted(ds, {{4, 0.74156}, {5, 0.7276}, {6, 0.385991}, {9, 0.644849}});
  EXPECT_NEAR(ds.weights[0] + ds.weights[1] + ds.weights[2] + ds.weights[3], 2.5, 1e-6);
  // Documented order: descending biased score (0.817574, 0.802184, 0.725558, 0.710949).
  EXPECT_EQ(ds.idx, (Idx{4, 5, 6, 9}));
  ExpectRouted(Route(kLogits, SoftmaxTopK(16, 2, true)), {{14, 0.731059}, {2, 0.268941}});
  ExpectRouted(Route(kLogits, SoftmaxTopK(16, 4, true)),
               {{14, 0.557754}, {2, 0.205186}, {4, 0.124452}, {5, 0.112609}});
  ExpectRouted(Route(kLogits, SoftmaxTopK(16, 4, false)),
               {{14, 0.394716}, {2, 0.145208}, {4, 0.088073}, {5, 0.079692}});
}

// §3.1 literally: sigmoid, + bias, group score = sum of top-2, keep topk_group groups, -inf
// elsewhere, top-k, weights = unbiased gathered (/ (sum + 1e-20)) * scale. Ties: lower index.
std::vector<int32_t> TopKRef(const std::vector<float>& v, int64_t k) {
  std::vector<int32_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return v[a] > v[b]; });
  order.resize(k);
  return order;
}

Routed RouteRef(const std::vector<float>& logits, const RoutingParams& p) {
  const int64_t e = p.num_experts, tokens = logits.size() / e, per = e / p.n_group;
  Routed r;
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<float> s(e), b(e);
    if (p.sigmoid_group) {
      for (int64_t i = 0; i < e; ++i) s[i] = 1.0f / (1.0f + std::exp(-logits[t * e + i]));
    } else {
      float max = *std::max_element(&logits[t * e], &logits[t * e] + e), total = 0.0f;
      for (int64_t i = 0; i < e; ++i) total += s[i] = std::exp(logits[t * e + i] - max);
      for (float& v : s) v /= total;
    }
    for (int64_t i = 0; i < e; ++i) b[i] = s[i] + (p.bias ? p.bias[i] : 0.0f);
    if (p.sigmoid_group && p.n_group > 1) {
      std::vector<float> group_scores(p.n_group);
      for (int64_t g = 0; g < p.n_group; ++g) {
        auto top2 = TopKRef(std::vector<float>(&b[g * per], &b[g * per] + per), 2);
        group_scores[g] = b[g * per + top2[0]] + b[g * per + top2[1]];
      }
      auto kept = TopKRef(group_scores, p.topk_group);
      for (int64_t i = 0; i < e; ++i) {
        if (std::find(kept.begin(), kept.end(), i / per) == kept.end()) b[i] = -kInf;
      }
    }
    auto idx = TopKRef(b, p.num_topk);
    double sum = 0.0;
    for (int32_t i : idx) sum += s[i];
    double denom = !p.norm_topk_prob ? 1.0 : p.sigmoid_group ? sum + 1e-20 : sum;
    for (int32_t i : idx) {
      r.idx.push_back(i);
      r.weights.push_back(static_cast<float>(s[i] / denom * p.routed_scaling_factor));
    }
  }
  return r;
}

void ExpectSameRouting(const Routed& got, const Routed& want) {
  ASSERT_EQ(got.idx, want.idx);
  for (size_t j = 0; j < got.weights.size(); ++j) {
    ASSERT_NEAR(got.weights[j], want.weights[j], 1e-6 * std::max(1.0f, want.weights[j])) << j;
  }
}

TEST(RoutingTest, TiesGoToLowerIndex) {
  std::vector<float> zeros(16, 0.0f);
  Routed ds = Route(zeros, DeepSeek(16, 4, 4, 2, nullptr));
  EXPECT_EQ(ds.idx, (Idx{0, 1, 2, 3}));
  for (float w : ds.weights) EXPECT_NEAR(w, 2.5f / 4, 1e-6);
  Routed sm = Route(zeros, SoftmaxTopK(16, 3, false));
  EXPECT_EQ(sm.idx, (Idx{0, 1, 2}));
  for (float w : sm.weights) EXPECT_NEAR(w, 1.0f / 16, 1e-7);
  std::vector<float> two_best = {0, 0, 0, 5, 0, 0, 0, 5};
  EXPECT_EQ(Route(two_best, SoftmaxTopK(8, 2, true)).idx, (Idx{3, 7}));
  EXPECT_EQ(Route(two_best, DeepSeek(8, 1, 1, 1, nullptr)).idx, (Idx{3}));
}

TEST(RoutingTest, BiasOnlySelectsAndRawWeightsWhenNotNormalised) {
  // Expert 7 wins only through its bias; its weight is the unbiased sigmoid(0) = 0.5.
  std::vector<float> logits(8, 0.0f), bias(8, 0.0f);
  logits[0] = 5.0f, bias[7] = 1.0f;
  RoutingParams p = DeepSeek(8, 2, 1, 1, bias.data());
  p.norm_topk_prob = false;
  Routed r = Route(logits, p);
  EXPECT_EQ(r.idx, (Idx{7, 0}));
  EXPECT_NEAR(r.weights[0], 0.5 * 2.5, 1e-6);
  EXPECT_NEAR(r.weights[1], 2.5 / (1.0 + std::exp(-5.0)), 1e-6);
  // §3.5 oracle without normalisation or scale: the raw unbiased sigmoid of the chosen experts.
  RoutingParams raw = DeepSeek(16, 4, 4, 2, kBias.data());
  raw.norm_topk_prob = false, raw.routed_scaling_factor = 1.0f;
  ExpectRouted(Route(kLogits, raw), {{4, 0.817574}, {5, 0.802184}, {6, 0.425557}, {9, 0.710949}});
}

TEST(RoutingTest, MaskedGroupsAreNeverChosen) {
  // 4 groups of 2. Expert 0 has the highest biased score (0.95) but group 0 sums to 1.0 < 1.4.
  std::vector<float> logits(8, 0.0f);
  std::vector<float> bias = {0.45f, -0.45f, 0.2f, 0.2f, 0.2f, 0.2f, 0.0f, 0.0f};
  Routed r = Route(logits, DeepSeek(8, 2, 4, 2, bias.data()));
  EXPECT_EQ(r.idx, (Idx{2, 3}));
  // -inf masking (the reference), not 0: the kept group's negative biased scores still win.
  std::vector<float> neg = {-0.8f, -0.8f, -0.6f, -0.7f, -0.8f, -0.8f, -0.8f, -0.8f};
  Routed n = Route(logits, DeepSeek(8, 2, 4, 1, neg.data()));
  EXPECT_EQ(n.idx, (Idx{2, 3}));
  for (float w : n.weights) EXPECT_NEAR(w, 1.25f, 1e-6);
}

TEST(RoutingTest, RandomTokensMatchLiteralReference) {
  SetComputeThreads(4);
  const int64_t tokens = 3000, e = 64;  // 192000 logits: the parallel path
  std::mt19937 rng(80);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  std::vector<float> logits(tokens * e);
  for (float& v : logits) v = normal(rng);
  auto bias = Random(e, 81, -0.1f, 0.1f);
  RoutingParams ds = DeepSeek(e, 6, 8, 3, bias.data());
  ExpectSameRouting(Route(logits, ds), RouteRef(logits, ds));
  // n_group == 1: plain top-k of sigmoid + bias; raw weights times the scale.
  RoutingParams flat = DeepSeek(e, 6, 1, 1, bias.data());
  flat.norm_topk_prob = false;
  ExpectSameRouting(Route(logits, flat), RouteRef(logits, flat));
  for (bool norm : {true, false}) {
    RoutingParams sm = SoftmaxTopK(e, 8, norm);
    ExpectSameRouting(Route(logits, sm), RouteRef(logits, sm));
  }
}

}  // namespace
}  // namespace switchyard::cpu
