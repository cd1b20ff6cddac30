// MoE dispatch/combine (transport/dispatch.h) against a single-rank reference. The case bodies are
// written once and run on every rank of a world: over the local backend with 1, 2 and 4 ranks as
// threads (dispatch_test, label unit), and over MPI under mpirun with 2 and 4 ranks (this file
// compiled again with SWITCHYARD_DISPATCH_TEST_MPI as dispatch_mpi_test, label mpi).
//
// Every rank builds the same scenario from a seed (placement with replicas, every rank's routing
// and hidden states), dispatches its own tokens, runs the known per-expert function on what it
// received (grouped by local expert), applies the weights (SumEntriesPerRow), combines, and checks
// its tokens against two references:
//  - bitwise: the single-rank computation in dispatch's documented order (per token, destination
//    ranks ascending; within a rank the top-k order; transit roundings applied where dispatch
//    applies them). FP32 transit then equals the plain FP32 reference whenever all of a token's
//    experts are on one rank.
//  - bounded: the plain FP32 sum Σ_k w_k f_k(x) in top-k order. BF16 keeps 8 significant bits:
//    rounding to nearest has relative error <= 2^-8. Dispatch rounds each element of x once and
//    combine rounds each returned partial sum P_r once, so with expert functions
//    f_k(x) = s_k x + b_k and M = Σ_k |w_k| (|s_k x| + |b_k|):
//      BF16 dispatch:  |error| <= 2^-8 Σ_k |w_k s_k x|          <= 2^-8 M
//      BF16 combine:   |error| <= 2^-8 Σ_r |P_r|                <= 2^-8 M (1 + 2^-8)
//    plus FP32 rounding of at most a few units of 2^-24 M; the test allows 1.01 * 2^-8 * M per
//    BF16 phase (so 1.01 * 2^-7 * M for BF16 both ways) plus 1e-5 * M. FP32 transit is held to
//    1e-5 * M (the reordered sum only). FP8 dispatch (E4M3, one scale per 128-element block of a
//    row) moves each x by at most 2^-4 |x| + 2^-18 amax_block (transport/dispatch_codec.h), so
//      FP8 dispatch:   |error| <= Σ_k |w_k s_k| (2^-4 |x| + 2^-18 amax_block)
//    allowed with the same 1.01 factor; a BF16 combine after it gets M (1 + 2^-4).
// Integrity mode (checksums) must not change any result: its rounds are held to the same bitwise
// reference. The bytes the dispatcher hands to the transport are counted by a decorator
// (dispatch_fault_transport.h): FP8 moves about half the bytes of BF16.
#include "transport/dispatch.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/dtype.h"
#include "dispatch_fault_transport.h"
#include "kernels/fp4_format.h"
#include "local_ranks.h"
#include "mpi_test_main.h"
#include "transport/transport_factory.h"

namespace switchyard {
namespace {

Deadline OpDeadline() { return Deadline::After(std::chrono::seconds(10)); }

// The path every case's dispatchers take (the suites run each case with kOff: the transport, and
// kRequire: shared memory, which fails rather than fall back when it cannot be set up). Set before
// the ranks start.
SharedMemoryMode g_shm_mode = SharedMemoryMode::kOff;

DispatcherOptions Opts(DispatcherOptions options = {}) {
  options.shared_memory = g_shm_mode;
  return options;
}
DispatcherOptions TransportOnly(DispatcherOptions options = {}) {
  options.shared_memory = SharedMemoryMode::kOff;
  return options;
}

bool HasText(const Status& status, const std::string& text) {
  return status.message().find(text) != std::string::npos;
}

// Logical expert e computes s_e * x + b_e elementwise (replicas compute the same).
float Scale(int32_t e) { return 0.5f + 0.37f * static_cast<float>(e); }
float Bias(int32_t e) { return 0.01f * static_cast<float>(e) - 0.1f; }
float ExpertFn(int32_t e, float x) { return Scale(e) * x + Bias(e); }

float RoundTransit(PayloadDtype dtype, float v) {
  return dtype == PayloadDtype::kBF16 ? Bf16ToF32(F32ToBf16(v)) : v;
}

// max |x| over the 128-element FP8 block of row x[0, h) that holds element i.
float BlockAmax(const float* x, int64_t h, int64_t i) {
  float amax = 0.0f;
  for (int64_t j = i / 128 * 128; j < std::min<int64_t>(h, i / 128 * 128 + 128); ++j) {
    amax = std::max(amax, std::abs(x[j]));
  }
  return amax;
}

// A row as its destination sees it: an independent restatement of the transit formats.
std::vector<float> TransitRow(PayloadDtype dtype, const float* x, int64_t h) {
  std::vector<float> out(x, x + h);
  if (dtype == PayloadDtype::kFP8) {
    for (int64_t i = 0; i < h; ++i) {
      const float amax = BlockAmax(x, h, i);
      const float scale = amax == 0.0f ? 1.0f : amax / 448.0f;
      out[i] = fp4::E4m3ToF32(fp4::F32ToE4m3(x[i] / scale)) * scale;
    }
  } else {
    for (float& v : out) v = RoundTransit(dtype, v);
  }
  return out;
}

// Every rank's inputs for one round, identical on every rank (built from the seed).
struct Scenario {
  int32_t world = 0;
  int32_t topk = 0;
  int64_t hidden = 0;
  ExpertPlacement placement;
  std::vector<std::vector<int32_t>> slot_expert;  // [rank][local slot] -> logical expert
  std::vector<int64_t> tokens;                    // [rank]
  std::vector<std::vector<int32_t>> idx;          // [rank][tokens * topk]
  std::vector<std::vector<float>> weights;        // [rank][tokens * topk]
  std::vector<std::vector<float>> x;              // [rank][tokens * hidden]
};

enum class Routing { kRandom, kAllToRank0, kAllToLastRank };

struct ScenarioSpec {
  uint32_t seed = 0;
  int64_t hidden = 8;
  int32_t topk = 2;
  int32_t experts_per_rank = 8;
  int hot_replicas = 3;
  int64_t max_tokens = 40;
  std::function<bool(int rank)> zero_tokens = [](int) { return false; };
  Routing routing = Routing::kRandom;
};

Scenario MakeScenario(int32_t world, const ScenarioSpec& spec) {
  std::mt19937 rng(spec.seed);
  Scenario s;
  s.world = world;
  s.topk = spec.topk;
  s.hidden = spec.hidden;
  const int32_t experts = spec.experts_per_rank * world;
  std::vector<std::vector<ExpertReplica>> replicas(experts);
  std::vector<int32_t> next_slot(world, spec.experts_per_rank);
  for (int32_t e = 0; e < experts; ++e) {
    replicas[e].push_back({e / spec.experts_per_rank, e % spec.experts_per_rank});
  }
  if (spec.routing == Routing::kRandom) {
    for (int hot = 0; hot < spec.hot_replicas && world > 1; ++hot) {
      const int32_t e = rng() % experts;
      const int32_t rank = (e / spec.experts_per_rank + 1 + hot) % world;
      bool already = false;
      for (const auto& r : replicas[e]) already |= r.rank_idx == rank;
      if (!already) replicas[e].push_back({rank, next_slot[rank]++});
    }
  }
  s.slot_expert.resize(world);
  for (int32_t r = 0; r < world; ++r) s.slot_expert[r].assign(next_slot[r], -1);
  for (int32_t e = 0; e < experts; ++e) {
    for (const auto& r : replicas[e]) s.slot_expert[r.rank_idx][r.local_expert_idx] = e;
  }
  s.placement = ExpertPlacement(world, std::move(replicas));
  std::uniform_real_distribution<float> value(-2.0f, 2.0f), weight(0.01f, 1.0f);
  s.tokens.resize(world);
  s.idx.resize(world);
  s.weights.resize(world);
  s.x.resize(world);
  for (int32_t r = 0; r < world; ++r) {
    const int64_t tokens = spec.zero_tokens(r) ? 0 : 1 + rng() % spec.max_tokens;
    s.tokens[r] = tokens;
    s.idx[r].resize(tokens * spec.topk);
    s.weights[r].resize(tokens * spec.topk);
    s.x[r].resize(tokens * spec.hidden);
    for (int64_t t = 0; t < tokens; ++t) {
      std::set<int32_t> chosen;
      for (int32_t k = 0; k < spec.topk; ++k) {
        int32_t e;
        do {
          if (spec.routing == Routing::kRandom) {
            e = rng() % experts;
          } else {
            const int32_t target = spec.routing == Routing::kAllToRank0 ? 0 : world - 1;
            e = target * spec.experts_per_rank + rng() % spec.experts_per_rank;
          }
        } while (!chosen.insert(e).second);
        s.idx[r][t * spec.topk + k] = e;
        s.weights[r][t * spec.topk + k] = weight(rng);
      }
    }
    for (float& v : s.x[r]) v = value(rng);
  }
  return s;
}

// The rank that (token t, k) of rank `me` goes to: an independent restatement of the replica
// policies (every rank on its own node).
int32_t TargetRank(const Scenario& s, int32_t me, ReplicaPolicy policy, int64_t t, int32_t k) {
  const auto& reps = s.placement.replicas(s.idx[me][t * s.topk + k]);
  if (policy == ReplicaPolicy::kPreferLocal) {
    for (const auto& r : reps) {
      if (r.rank_idx == me) return me;
    }
  }
  return reps[(t * s.topk + k) % static_cast<int64_t>(reps.size())].rank_idx;
}

// out[t] in dispatch's documented order and roundings (bitwise reference).
std::vector<float> OrderedReference(const Scenario& s, int32_t me, ReplicaPolicy policy,
                                    PayloadDtype dispatch_dtype, PayloadDtype combine_dtype) {
  const int64_t h = s.hidden;
  std::vector<float> out(s.tokens[me] * h, 0.0f), partial(h);
  for (int64_t t = 0; t < s.tokens[me]; ++t) {
    const std::vector<float> xt = TransitRow(dispatch_dtype, &s.x[me][t * h], h);
    for (int32_t r = 0; r < s.world; ++r) {
      bool any = false;
      std::fill(partial.begin(), partial.end(), 0.0f);
      for (int32_t k = 0; k < s.topk; ++k) {
        if (TargetRank(s, me, policy, t, k) != r) continue;
        any = true;
        const int32_t e = s.idx[me][t * s.topk + k];
        const float w = s.weights[me][t * s.topk + k];
        for (int64_t i = 0; i < h; ++i) {
          const float v = ExpertFn(e, xt[i]);
          partial[i] += w * v;
        }
      }
      if (!any) continue;
      for (int64_t i = 0; i < h; ++i) out[t * h + i] += RoundTransit(combine_dtype, partial[i]);
    }
  }
  return out;
}

// The receiver's side: runs each local expert on its entries (grouped by expert), applies the
// weights, and checks the grouping.
void RunLocalExperts(const Scenario& s, int32_t me, const ReceivedTokens& recv,
                     std::vector<float>& entry_out, std::vector<float>& row_out) {
  const int64_t h = s.hidden;
  ASSERT_EQ(recv.hidden, h);
  ASSERT_EQ(recv.num_local_experts, s.placement.NumLocalExperts(me));
  ASSERT_EQ(static_cast<int64_t>(recv.rows.size()), recv.num_rows() * h);
  ASSERT_EQ(static_cast<int64_t>(recv.expert_prefix.size()), recv.num_local_experts + 1);
  ASSERT_EQ(recv.expert_prefix.back(), recv.num_entries());
  entry_out.assign(recv.num_entries() * h, std::nanf(""));
  for (int32_t e = 0; e < recv.num_local_experts; ++e) {
    const int32_t logical = s.slot_expert[me][e];
    int64_t previous = -1;
    for (int64_t j : recv.ExpertEntries(e)) {
      ASSERT_EQ(recv.entry_local_expert[j], e);
      ASSERT_GT(j, previous);
      previous = j;
      const float* x = recv.row(recv.entry_row[j]);
      for (int64_t i = 0; i < h; ++i) entry_out[j * h + i] = ExpertFn(logical, x[i]);
    }
  }
  row_out.resize(recv.num_rows() * h);
  SumEntriesPerRow(recv, entry_out.data(), row_out.data());
}

// Per-rank state reused across rounds (as a runner would keep it).
struct RankState {
  RankState() : dispatcher(Opts()) {}
  explicit RankState(DispatcherOptions options) : dispatcher(options) {}
  Dispatcher dispatcher;
  ReceivedTokens received;
  std::vector<float> entry_out, row_out, out;
};

// One dispatch -> experts -> combine round on rank t.rank(), checked against both references.
void CheckedRound(Transport& t, RankState& st, const Scenario& s, ReplicaPolicy policy,
                  PayloadDtype dispatch_dtype, PayloadDtype combine_dtype, const std::string& label,
                  int64_t layer = 0) {
  const int32_t me = t.rank();
  const std::string where = label + " rank " + std::to_string(me) + " " +
                            PayloadDtypeName(dispatch_dtype) + "/" +
                            PayloadDtypeName(combine_dtype);
  auto layout = ComputeDispatchLayout(s.idx[me].data(), s.weights[me].data(), s.tokens[me], s.topk,
                                      s.placement, policy, me);
  ASSERT_TRUE(layout.ok()) << where << ": " << layout.status().ToString();
  Status status = st.dispatcher.Dispatch(t, layer, *layout, s.x[me].data(), s.hidden,
                                         dispatch_dtype, OpDeadline(), &st.received);
  ASSERT_TRUE(status.ok()) << where << ": " << status.ToString();
  RunLocalExperts(s, me, st.received, st.entry_out, st.row_out);
  st.out.assign(s.tokens[me] * s.hidden, std::nanf(""));
  status = st.dispatcher.Combine(t, st.row_out.data(), combine_dtype, OpDeadline(), st.out.data());
  ASSERT_TRUE(status.ok()) << where << ": " << status.ToString();

  const int64_t h = s.hidden;
  const std::vector<float> ordered = OrderedReference(s, me, policy, dispatch_dtype, combine_dtype);
  int64_t bitwise_mismatches = 0, bound_violations = 0;
  for (int64_t t_idx = 0; t_idx < s.tokens[me]; ++t_idx) {
    for (int64_t i = 0; i < h; ++i) {
      const float got = st.out[t_idx * h + i];
      uint32_t a, b;
      std::memcpy(&a, &got, 4);
      std::memcpy(&b, &ordered[t_idx * h + i], 4);
      if (a != b && bitwise_mismatches++ == 0) {
        ADD_FAILURE() << where << ": token " << t_idx << " element " << i << " = " << got
                      << ", ordered reference " << ordered[t_idx * h + i];
      }
      float exact = 0.0f, m = 0.0f;
      const float x = s.x[me][t_idx * h + i];
      for (int32_t k = 0; k < s.topk; ++k) {
        const int32_t e = s.idx[me][t_idx * s.topk + k];
        const float w = s.weights[me][t_idx * s.topk + k];
        exact += w * ExpertFn(e, x);
        m += std::abs(w) * (std::abs(Scale(e) * x) + std::abs(Bias(e)));
      }
      const bool fp8 = dispatch_dtype == PayloadDtype::kFP8;
      const int bf16_phases =
          (dispatch_dtype == PayloadDtype::kBF16) + (combine_dtype == PayloadDtype::kBF16);
      float bound =
          (1.01f * std::ldexp(1.0f, -8) * bf16_phases * (fp8 ? 1.0625f : 1.0f) + 1e-5f) * m;
      if (fp8) {
        const float amax = BlockAmax(&s.x[me][t_idx * h], h, i);
        float ws = 0.0f;
        for (int32_t k = 0; k < s.topk; ++k) {
          ws += std::abs(s.weights[me][t_idx * s.topk + k] * Scale(s.idx[me][t_idx * s.topk + k]));
        }
        bound += 1.01f * ws * (std::ldexp(std::abs(x), -4) + std::ldexp(amax, -18));
      }
      if (!(std::abs(got - exact) <= bound) && bound_violations++ == 0) {
        ADD_FAILURE() << where << ": token " << t_idx << " element " << i << " = " << got
                      << ", FP32 reference " << exact << ", bound " << bound;
      }
    }
  }
  EXPECT_EQ(bitwise_mismatches, 0) << where;
  EXPECT_EQ(bound_violations, 0) << where;
}

constexpr PayloadDtype kF32 = PayloadDtype::kF32;
constexpr PayloadDtype kBF16 = PayloadDtype::kBF16;
constexpr PayloadDtype kFP8 = PayloadDtype::kFP8;

// ---- Cases: each body runs on every rank, in the same order. ----

void CaseRandomRoutingsWithReplicas(Transport& t) {
  RankState st;  // reused across trials: sizes and dtypes change from call to call
  const int64_t hiddens[] = {7, 33, 1, 130, 300};
  const PayloadDtype dtypes[][2] = {{kF32, kF32},  {kBF16, kBF16}, {kBF16, kF32},
                                    {kF32, kBF16}, {kFP8, kF32},   {kFP8, kBF16}};
  for (uint32_t trial = 0; trial < 24; ++trial) {
    ScenarioSpec spec;
    spec.seed = 100 + trial;
    spec.hidden = hiddens[trial % 5];
    spec.topk = 1 + static_cast<int32_t>(trial % 6);
    spec.zero_tokens = [trial](int r) { return (trial + r) % 3 == 0; };
    const Scenario s = MakeScenario(t.world_size(), spec);
    const ReplicaPolicy policy =
        trial % 2 == 0 ? ReplicaPolicy::kBalance : ReplicaPolicy::kPreferLocal;
    CheckedRound(t, st, s, policy, dtypes[trial % 6][0], dtypes[(trial / 6) % 4][1],
                 "trial " + std::to_string(trial), trial);
  }
}

void CaseZeroTokensEverywhere(Transport& t) {
  RankState st;
  ScenarioSpec spec;
  spec.hidden = 33;
  spec.zero_tokens = [](int) { return true; };
  const Scenario s = MakeScenario(t.world_size(), spec);
  for (PayloadDtype dtype : {kF32, kBF16, kFP8}) {
    CheckedRound(t, st, s, ReplicaPolicy::kBalance, dtype, dtype == kFP8 ? kBF16 : dtype,
                 "zero tokens");
    EXPECT_EQ(st.received.num_rows(), 0);
    EXPECT_EQ(st.received.num_entries(), 0);
  }
  // Null buffers are fine when there is nothing to move.
  DispatchLayout layout = *ComputeDispatchLayout(nullptr, nullptr, 0, 2, s.placement,
                                                 ReplicaPolicy::kBalance, t.rank());
  ASSERT_TRUE(
      st.dispatcher.Dispatch(t, 0, layout, nullptr, 5, kF32, OpDeadline(), &st.received).ok());
  ASSERT_TRUE(st.dispatcher.Combine(t, nullptr, kBF16, OpDeadline(), nullptr).ok());
}

void CaseSkewedToOneRank(Transport& t) {
  RankState st;
  const int n = t.world_size();
  for (Routing routing : {Routing::kAllToLastRank, Routing::kAllToRank0}) {
    ScenarioSpec spec;
    spec.seed = 7;
    spec.hidden = 33;
    spec.topk = 3;
    spec.max_tokens = 60;
    spec.routing = routing;
    const Scenario s = MakeScenario(n, spec);
    for (PayloadDtype dtype : {kF32, kBF16, kFP8}) {
      CheckedRound(t, st, s, ReplicaPolicy::kBalance, dtype, dtype == kFP8 ? kF32 : dtype,
                   "skewed");
      const int target = routing == Routing::kAllToRank0 ? 0 : n - 1;
      int64_t all_tokens = 0;
      for (int64_t tokens : s.tokens) all_tokens += tokens;
      EXPECT_EQ(st.received.num_rows(), t.rank() == target ? all_tokens : 0);
      EXPECT_EQ(st.received.num_entries(), t.rank() == target ? all_tokens * 3 : 0);
    }
  }
}

void CaseRepeatedCallsReuseBuffers(Transport& t) {
  RankState st;
  ScenarioSpec spec;
  spec.seed = 11;
  spec.hidden = 7;
  spec.topk = 4;
  Scenario s = MakeScenario(t.world_size(), spec);
  const float* rows = nullptr;
  const int64_t* entries = nullptr;
  for (int iter = 0; iter < 10; ++iter) {
    // Same routing, new activations each round.
    for (auto& xs : s.x) {
      for (float& v : xs) v = v * -1.25f + 0.0625f * iter;
    }
    CheckedRound(t, st, s, ReplicaPolicy::kBalance, iter % 2 ? kBF16 : kF32, kF32,
                 "iteration " + std::to_string(iter));
    if (iter >= 2) {  // same sizes: the receiver's vectors are not reallocated
      EXPECT_EQ(st.received.rows.data(), rows);
      EXPECT_EQ(st.received.entry_prefix.data(), entries);
    }
    rows = st.received.rows.data();
    entries = st.received.entry_prefix.data();
  }
}

void CaseLargeRows(Transport& t) {
  RankState st;
  ScenarioSpec spec;
  spec.seed = 21;
  spec.hidden = 2048;
  spec.topk = 4;
  spec.max_tokens = 48;
  const Scenario s = MakeScenario(t.world_size(), spec);
  CheckedRound(t, st, s, ReplicaPolicy::kBalance, kBF16, kF32, "large");
  CheckedRound(t, st, s, ReplicaPolicy::kPreferLocal, kF32, kBF16, "large");
  CheckedRound(t, st, s, ReplicaPolicy::kBalance, kFP8, kBF16, "large");
}

// Rank 0 dispatches with another hidden size: both sides name each other, every rank took part in
// both collectives, and the next round works.
void CasePeerDisagreesOnHidden(Transport& t) {
  RankState st;
  ScenarioSpec spec;
  spec.seed = 3;
  spec.hidden = 8;
  const Scenario s = MakeScenario(t.world_size(), spec);
  const int me = t.rank();
  auto layout = ComputeDispatchLayout(s.idx[me].data(), s.weights[me].data(), s.tokens[me], s.topk,
                                      s.placement, ReplicaPolicy::kBalance, me);
  ASSERT_TRUE(layout.ok());
  std::vector<float> x(s.tokens[me] * 9, 1.0f);
  Status status = st.dispatcher.Dispatch(t, 0, *layout, me == 0 ? x.data() : s.x[me].data(),
                                         me == 0 ? 9 : 8, kF32, OpDeadline(), &st.received);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
  EXPECT_TRUE(HasText(status, me == 0 ? "rank 1 sends hidden 8" : "rank 0 sends hidden 9"))
      << status.ToString();
  // Combine refuses after a failed dispatch, without communicating.
  EXPECT_EQ(st.dispatcher.Combine(t, nullptr, kF32, OpDeadline(), nullptr).code(),
            StatusCode::kFailedPrecondition);
  CheckedRound(t, st, s, ReplicaPolicy::kBalance, kF32, kF32, "after disagreement");
  // The last rank is a layer ahead of the others.
  const int last = t.world_size() - 1;
  status = st.dispatcher.Dispatch(t, me == last ? 8 : 7, *layout, s.x[me].data(), 8, kF32,
                                  OpDeadline(), &st.received);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
  EXPECT_TRUE(HasText(
      status, me == last ? "rank 0 sends hidden 8 as f32 for layer 7"
                         : "rank " + std::to_string(last) + " sends hidden 8 as f32 for layer 8"))
      << status.ToString();
  CheckedRound(t, st, s, ReplicaPolicy::kBalance, kF32, kF32, "after layer disagreement");
}

void CaseBadArguments(Transport& t) {
  Dispatcher dispatcher(Opts());
  ReceivedTokens received;
  Status s = dispatcher.Combine(t, nullptr, kF32, OpDeadline(), nullptr);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  ExpertPlacement other = ExpertPlacement::Contiguous(8, t.world_size() + 1);
  DispatchLayout layout =
      *ComputeDispatchLayout(nullptr, nullptr, 0, 1, other, ReplicaPolicy::kBalance, 0);
  s = dispatcher.Dispatch(t, 0, layout, nullptr, 4, kF32, OpDeadline(), &received);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  ExpertPlacement mine = ExpertPlacement::Contiguous(8, t.world_size());
  layout = *ComputeDispatchLayout(nullptr, nullptr, 0, 1, mine, ReplicaPolicy::kBalance, t.rank());
  s = dispatcher.Dispatch(t, 0, layout, nullptr, 0, kF32, OpDeadline(), &received);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  s = dispatcher.Dispatch(t, -1, layout, nullptr, 4, kF32, OpDeadline(), &received);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  // FP8 is a dispatch format only.
  ASSERT_TRUE(dispatcher.Dispatch(t, 0, layout, nullptr, 4, kFP8, OpDeadline(), &received).ok());
  s = dispatcher.Combine(t, nullptr, kFP8, OpDeadline(), nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_TRUE(HasText(s, "f32 or bf16")) << s.ToString();
  EXPECT_TRUE(t.Barrier(OpDeadline()).ok());
}

// Integrity mode on: every round still matches the references bitwise, and the outputs equal an
// integrity-off dispatcher's on the same inputs.
void CaseIntegrityOnChangesNothing(Transport& t) {
  RankState checked(Opts({.integrity = true})), plain;
  const PayloadDtype dtypes[][2] = {{kF32, kF32}, {kBF16, kBF16}, {kFP8, kF32}, {kFP8, kBF16}};
  for (uint32_t trial = 0; trial < 8; ++trial) {
    ScenarioSpec spec;
    spec.seed = 500 + trial;
    spec.hidden = trial % 2 ? 130 : 33;
    spec.topk = 1 + static_cast<int32_t>(trial % 4);
    spec.zero_tokens = [trial](int r) { return (trial + r) % 4 == 0; };
    const Scenario s = MakeScenario(t.world_size(), spec);
    const auto [dd, cd] = std::pair(dtypes[trial % 4][0], dtypes[trial % 4][1]);
    const std::string label = "integrity trial " + std::to_string(trial);
    CheckedRound(t, checked, s, ReplicaPolicy::kBalance, dd, cd, label, trial);
    CheckedRound(t, plain, s, ReplicaPolicy::kBalance, dd, cd, label, trial);
    EXPECT_EQ(0, std::memcmp(checked.out.data(), plain.out.data(), 4 * plain.out.size())) << label;
  }
}

// The BF16 path (DispatchBf16 / CombineBf16: rows read in place, sent as they are) against the
// FP32 API with BF16 transit, which CheckedRound checks against both references. Ranks mix the
// two paths in the same collective (same wire), with and without integrity and with large rows
// (two exchanges). The views must equal the FP32 rows widened, and the combined output must be
// bitwise the FP32 API's (the BF16 output: its FP32 output rounded), whether the combine rows come
// from the caller's buffer or the dispatcher's own (Bf16CombineRows, sent in place).
void CaseBf16InPlaceMatchesF32Api(Transport& t) {
  const int32_t me = t.rank();
  for (uint32_t trial = 0; trial < 8; ++trial) {
    const DispatcherOptions options = Opts({.integrity = trial % 4 == 3});
    RankState plain(options), fast(options);
    ScenarioSpec spec;
    spec.seed = 700 + trial;
    spec.hidden = trial < 6 ? (trial % 2 ? 130 : 33) : 2048;
    spec.topk = 1 + static_cast<int32_t>(trial % 4);
    spec.zero_tokens = [trial](int r) { return (trial + r) % 5 == 0; };
    const Scenario s = MakeScenario(t.world_size(), spec);
    const std::string label = "bf16 trial " + std::to_string(trial);
    CheckedRound(t, plain, s, ReplicaPolicy::kBalance, kBF16, kBF16, label, trial);

    const int64_t h = s.hidden;
    const bool use_bf16 = (trial + me) % 2 == 0;  // this rank's path in the mixed round
    std::vector<uint16_t> xb(s.x[me].size());
    for (size_t i = 0; i < xb.size(); ++i) xb[i] = F32ToBf16(s.x[me][i]);
    auto layout = ComputeDispatchLayout(s.idx[me].data(), s.weights[me].data(), s.tokens[me],
                                        s.topk, s.placement, ReplicaPolicy::kBalance, me);
    ASSERT_TRUE(layout.ok()) << label;
    Status status = use_bf16 ? fast.dispatcher.DispatchBf16(t, trial, *layout, xb.data(), h,
                                                            OpDeadline(), &fast.received)
                             : fast.dispatcher.Dispatch(t, trial, *layout, s.x[me].data(), h, kBF16,
                                                        OpDeadline(), &fast.received);
    ASSERT_TRUE(status.ok()) << label << ": " << status.ToString();
    ReceivedTokens& got = fast.received;
    ASSERT_EQ(got.num_rows(), plain.received.num_rows()) << label;
    EXPECT_EQ(got.entry_row, plain.received.entry_row) << label;
    EXPECT_EQ(got.expert_entries, plain.received.expert_entries) << label;
    EXPECT_EQ(got.row_source_token, plain.received.row_source_token) << label;
    if (use_bf16) {
      ASSERT_TRUE(got.rows.empty()) << label;
      ASSERT_EQ(static_cast<int64_t>(got.bf16_rows.size()), got.num_rows()) << label;
      got.rows.resize(got.num_rows() * h);  // widen the views for the experts (and the check)
      for (int64_t r = 0; r < got.num_rows(); ++r) {
        for (int64_t i = 0; i < h; ++i) got.rows[r * h + i] = Bf16ToF32(got.row_bf16(r)[i]);
      }
    } else {
      EXPECT_TRUE(got.bf16_rows.empty()) << label;
    }
    ASSERT_EQ(0, std::memcmp(got.rows.data(), plain.received.rows.data(), 4 * got.rows.size()))
        << label << ": the received rows differ";
    RunLocalExperts(s, me, got, fast.entry_out, fast.row_out);
    fast.out.assign(s.tokens[me] * h, std::nanf(""));
    // BF16 path: rows from the caller's buffer (packed) or, every other trial, written into the
    // dispatcher's Bf16CombineRows() (sent in place when integrity is off); every third trial
    // the BF16-output overload, which must give the FP32 output rounded.
    const bool own_rows = trial % 2 == 1, bf16_out = trial % 3 == 2;
    std::vector<uint16_t> out_bf16(bf16_out ? fast.out.size() : 0, 0xffff);
    if (use_bf16) {
      std::vector<uint16_t> caller_rows(own_rows ? 0 : fast.row_out.size());
      uint16_t* row_out_bf16 = own_rows ? fast.dispatcher.Bf16CombineRows() : caller_rows.data();
      if (own_rows) {
        ASSERT_NE(row_out_bf16, nullptr) << label;
      }
      for (size_t i = 0; i < fast.row_out.size(); ++i) {
        row_out_bf16[i] = F32ToBf16(fast.row_out[i]);
      }
      status = bf16_out
                   ? fast.dispatcher.CombineBf16(t, row_out_bf16, OpDeadline(), out_bf16.data())
                   : fast.dispatcher.CombineBf16(t, row_out_bf16, OpDeadline(), fast.out.data());
    } else {
      status =
          fast.dispatcher.Combine(t, fast.row_out.data(), kBF16, OpDeadline(), fast.out.data());
    }
    ASSERT_TRUE(status.ok()) << label << ": " << status.ToString();
    if (use_bf16 && bf16_out) {
      for (size_t i = 0; i < out_bf16.size(); ++i) {
        ASSERT_EQ(out_bf16[i], F32ToBf16(plain.out[i])) << label << ": BF16 output element " << i;
      }
      continue;
    }
    EXPECT_EQ(0, std::memcmp(fast.out.data(), plain.out.data(), 4 * plain.out.size())) << label;
  }
}

// FP8 dispatch moves about half the bytes of BF16: counted by a decorator around the transport,
// and equal to what the dispatcher reports.
void CaseFp8MovesHalfTheBytes(Transport& inner) {
  testing::FaultyTransport t(inner);
  ScenarioSpec spec;
  spec.seed = 77;
  spec.hidden = 2048;
  spec.topk = 8;
  spec.max_tokens = 32;
  spec.zero_tokens = [](int) { return false; };
  const Scenario s = MakeScenario(t.world_size(), spec);
  int64_t moved[2] = {0, 0}, payload[2] = {0, 0};
  const PayloadDtype dtypes[2] = {kBF16, kFP8};
  for (int i = 0; i < 2; ++i) {
    RankState st(TransportOnly());  // counts what the transport is given
    t.ResetCount();
    CheckedRound(t, st, s, ReplicaPolicy::kBalance, dtypes[i], kBF16, "bytes");
    const DispatchTraffic& traffic = st.dispatcher.last_traffic();
    moved[i] = traffic.dispatch_transport_bytes;
    payload[i] = traffic.dispatch_payload_bytes;
    EXPECT_EQ(t.bytes_to_others(),
              traffic.dispatch_transport_bytes + traffic.combine_transport_bytes);
    EXPECT_GE(traffic.dispatch_transport_bytes, traffic.dispatch_payload_bytes);
  }
  if (t.world_size() == 1) {
    EXPECT_EQ(moved[0] + moved[1], 0);  // nothing leaves a one-rank world
    return;
  }
  // Per row: 2048 E4M3 codes + 16 scales = 2112 bytes against 4096 (BF16), + 8 bytes of metadata
  // and 8 per entry either way.
  const double ratio = static_cast<double>(payload[1]) / static_cast<double>(payload[0]);
  EXPECT_GT(ratio, 0.50) << "fp8 " << payload[1] << " bf16 " << payload[0];
  EXPECT_LT(ratio, 0.53) << "fp8 " << payload[1] << " bf16 " << payload[0];
  // No padding: the transport moves exactly the payload.
  EXPECT_EQ(moved[0], payload[0]);
  EXPECT_EQ(moved[1], payload[1]);
  EXPECT_LT(static_cast<double>(moved[1]) / static_cast<double>(moved[0]), 0.6)
      << "fp8 " << moved[1] << " bf16 " << moved[0];
}

// The bound E follows the traffic: a first call with messages over the initial 4 KiB takes two
// exchanges, the same sizes again take one (also for messages over 64 KiB, the old eager cap);
// smaller ones after large ones take one. Every round is checked against the references, and the
// transport is given exactly the payload bytes (no padding).
void CaseEagerSizeAdapts(Transport& t) {
  // 24 tokens on every rank, routed deterministically over all ranks' experts.
  auto fixed = [&t](int64_t hidden) {
    ScenarioSpec spec;
    spec.seed = 31;
    spec.hidden = hidden;
    spec.topk = 4;
    Scenario out = MakeScenario(t.world_size(), spec);
    const int32_t experts = spec.experts_per_rank * out.world;
    std::mt19937 rng(7);
    for (int32_t r = 0; r < out.world; ++r) {
      out.tokens[r] = 24;
      out.idx[r].resize(24 * spec.topk);
      out.weights[r].assign(24 * spec.topk, 0.5f);
      out.x[r].resize(24 * hidden);
      for (int64_t tok = 0; tok < 24; ++tok) {
        for (int32_t k = 0; k < spec.topk; ++k) {
          out.idx[r][tok * spec.topk + k] = (static_cast<int32_t>(tok) * 5 + k * 3 + r) % experts;
        }
      }
      for (float& v : out.x[r]) v = static_cast<float>(rng() % 1000) * 0.001f - 0.5f;
    }
    return out;
  };
  const Scenario small = fixed(256);            // F32: 1 KiB rows, over 4 KiB per peer
  const Scenario large = fixed(4096);           // BF16: 8 KiB rows, over 64 KiB per peer
  const int many = t.world_size() > 1 ? 2 : 1;  // a one-rank world sends nothing
  RankState st(TransportOnly());                // the bound E is the transport path's
  CheckedRound(t, st, small, ReplicaPolicy::kBalance, kF32, kF32, "eager first");
  EXPECT_EQ(st.dispatcher.last_traffic().dispatch_exchanges, many);
  CheckedRound(t, st, small, ReplicaPolicy::kBalance, kF32, kF32, "eager second");
  EXPECT_EQ(st.dispatcher.last_traffic().dispatch_exchanges, 1);
  for (int i = 0; i < 2; ++i) {
    CheckedRound(t, st, large, ReplicaPolicy::kBalance, kBF16, kBF16, "eager large");
    EXPECT_EQ(st.dispatcher.last_traffic().dispatch_exchanges, i == 0 ? many : 1) << i;
    EXPECT_EQ(st.dispatcher.last_traffic().dispatch_transport_bytes,
              st.dispatcher.last_traffic().dispatch_payload_bytes);
  }
  CheckedRound(t, st, small, ReplicaPolicy::kBalance, kF32, kF32, "eager small again");
  EXPECT_EQ(st.dispatcher.last_traffic().dispatch_exchanges, 1);
  EXPECT_EQ(st.dispatcher.last_traffic().dispatch_transport_bytes,
            st.dispatcher.last_traffic().dispatch_payload_bytes);
  // With E capped at 64 KiB, messages over the cap always take two exchanges (still unpadded).
  DispatcherOptions capped = TransportOnly();
  capped.max_first_exchange_bytes = 64 * 1024;
  RankState small_slots(capped);
  for (int i = 0; i < 2; ++i) {
    CheckedRound(t, small_slots, large, ReplicaPolicy::kBalance, kBF16, kBF16, "capped large");
    EXPECT_EQ(small_slots.dispatcher.last_traffic().dispatch_exchanges, many) << i;
    EXPECT_EQ(small_slots.dispatcher.last_traffic().dispatch_transport_bytes,
              small_slots.dispatcher.last_traffic().dispatch_payload_bytes);
  }
}

// The shared-memory path against the transport path on the same inputs: bitwise the same
// outputs (FP32 and BF16 APIs, integrity on and off, the experts' rows in Bf16CombineRows), and
// in a world of several ranks the rows really went through shared memory.
void CaseShmMatchesTransport(Transport& t) {
  const int32_t me = t.rank();
  const bool many = t.world_size() > 1;
  for (uint32_t trial = 0; trial < 6; ++trial) {
    const bool integrity = trial % 3 == 2;
    RankState wire(TransportOnly({.integrity = integrity}));
    RankState shm({.integrity = integrity, .shared_memory = SharedMemoryMode::kRequire});
    ScenarioSpec spec;
    spec.seed = 900 + trial;
    spec.hidden = trial % 2 ? 130 : 2048;
    spec.topk = 2 + static_cast<int32_t>(trial % 3);
    spec.zero_tokens = [trial](int r) { return (trial + r) % 4 == 1; };
    const Scenario s = MakeScenario(t.world_size(), spec);
    const std::string label = "shm trial " + std::to_string(trial);
    CheckedRound(t, wire, s, ReplicaPolicy::kBalance, kBF16, kF32, label, trial);
    CheckedRound(t, shm, s, ReplicaPolicy::kBalance, kBF16, kF32, label, trial);
    EXPECT_EQ(0, std::memcmp(wire.out.data(), shm.out.data(), 4 * wire.out.size())) << label;
    EXPECT_EQ(shm.dispatcher.last_traffic().dispatch_shared_memory, many) << label;
    EXPECT_FALSE(wire.dispatcher.last_traffic().dispatch_shared_memory) << label;
    // BF16 in place: rows written into the dispatcher's buffer (the shared combine area), summed
    // by the sources from there; both paths again.
    std::vector<uint16_t> xb(s.x[me].size());
    for (size_t i = 0; i < xb.size(); ++i) xb[i] = F32ToBf16(s.x[me][i]);
    auto layout = ComputeDispatchLayout(s.idx[me].data(), s.weights[me].data(), s.tokens[me],
                                        s.topk, s.placement, ReplicaPolicy::kBalance, me);
    ASSERT_TRUE(layout.ok());
    std::vector<uint16_t> outs[2];
    RankState* states[2] = {&wire, &shm};
    for (int i = 0; i < 2; ++i) {
      RankState& st = *states[i];
      ASSERT_TRUE(
          st.dispatcher
              .DispatchBf16(t, trial, *layout, xb.data(), spec.hidden, OpDeadline(), &st.received)
              .ok());
      uint16_t* rows = st.dispatcher.Bf16CombineRows();
      ASSERT_NE(rows, nullptr);
      for (int64_t r = 0; r < st.received.num_rows(); ++r) {
        for (int64_t k = 0; k < spec.hidden; ++k) {  // an "expert": 2x + 1, in BF16
          const float v = Bf16ToF32(st.received.row_bf16(r)[k]);
          rows[r * spec.hidden + k] = F32ToBf16(2.0f * v + 1.0f);
        }
      }
      outs[i].resize(xb.size());
      const Status status = st.dispatcher.CombineBf16(t, rows, OpDeadline(), outs[i].data());
      ASSERT_TRUE(status.ok()) << label << ": " << status.ToString();
    }
    EXPECT_EQ(outs[0], outs[1]) << label;
    EXPECT_EQ(shm.dispatcher.last_traffic().combine_shared_memory, many) << label;
    EXPECT_EQ(shm.dispatcher.last_traffic().combine_transport_bytes, 0) << label;
  }
}

// Messages that outgrow the shared-memory slots (or combine rows the combine area) go through the
// transport once, with every rank agreeing, and the next call rebuilds the channel to fit them.
void CaseShmGrowsWhenOutgrown(Transport& t) {
  RankState st({.shared_memory = SharedMemoryMode::kRequire});
  ScenarioSpec small_spec;
  small_spec.seed = 41;
  small_spec.hidden = 16;
  small_spec.zero_tokens = [](int) { return false; };
  const Scenario small = MakeScenario(t.world_size(), small_spec);
  ScenarioSpec large_spec = small_spec;
  large_spec.hidden = 4096;
  const Scenario large = MakeScenario(t.world_size(), large_spec);
  CheckedRound(t, st, small, ReplicaPolicy::kBalance, kBF16, kBF16, "small");
  EXPECT_TRUE(st.dispatcher.last_traffic().dispatch_shared_memory);
  CheckedRound(t, st, large, ReplicaPolicy::kBalance, kBF16, kBF16, "large, first");
  EXPECT_FALSE(st.dispatcher.last_traffic().dispatch_shared_memory);  // over the transport
  EXPECT_GT(st.dispatcher.last_traffic().dispatch_transport_bytes, 0);
  for (int i = 0; i < 2; ++i) {
    CheckedRound(t, st, large, ReplicaPolicy::kBalance, kBF16, kBF16, "large, again");
    EXPECT_TRUE(st.dispatcher.last_traffic().dispatch_shared_memory) << i;
    EXPECT_TRUE(st.dispatcher.last_traffic().combine_shared_memory) << i;
  }
  // F32 combine rows are twice the BF16 rows the combine area was sized for.
  CheckedRound(t, st, large, ReplicaPolicy::kBalance, kBF16, kF32, "f32 combine, first");
  EXPECT_TRUE(st.dispatcher.last_traffic().dispatch_shared_memory);
  EXPECT_FALSE(st.dispatcher.last_traffic().combine_shared_memory);
  EXPECT_GT(st.dispatcher.last_traffic().combine_transport_bytes, 0);
  CheckedRound(t, st, large, ReplicaPolicy::kBalance, kBF16, kF32, "f32 combine, again");
  EXPECT_TRUE(st.dispatcher.last_traffic().combine_shared_memory);
  EXPECT_EQ(st.dispatcher.last_traffic().combine_transport_bytes, 0);
}

// A rank that fails a shared-memory step on its own (bad arguments) tells the others, whose call
// fails at once naming it (Cancelled, or FailedPrecondition when it has already gone on to the
// next step); the next round works on every rank. A second
// Combine of one Dispatch waits until every source has read the first.
void CaseShmRejoinsAfterAFailedStep(Transport& t) {
  const int me = t.rank();
  RankState st({.shared_memory = SharedMemoryMode::kRequire});
  ScenarioSpec spec;
  spec.seed = 43;
  spec.hidden = 24;
  const Scenario s = MakeScenario(t.world_size(), spec);
  CheckedRound(t, st, s, ReplicaPolicy::kBalance, kBF16, kF32, "before");
  auto layout = ComputeDispatchLayout(s.idx[me].data(), s.weights[me].data(), s.tokens[me], s.topk,
                                      s.placement, ReplicaPolicy::kBalance, me);
  ASSERT_TRUE(layout.ok());
  const Status status =
      st.dispatcher.Dispatch(t, 5, *layout, s.x[me].data(), me == 0 ? 0 : 24, kBF16,
                             Deadline::After(std::chrono::milliseconds(200)), &st.received);
  if (me == 0) {
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << status.ToString();
  } else {
    // Cancelled when it reads rank 0's abandoned step, FailedPrecondition when rank 0 has already
    // gone on to the next one.
    EXPECT_TRUE(status.code() == StatusCode::kCancelled ||
                status.code() == StatusCode::kFailedPrecondition)
        << status.ToString();
    EXPECT_TRUE(HasText(status, "abandoned the step") || HasText(status, "already past step"))
        << status.ToString();
    EXPECT_TRUE(HasText(status, ": rank 0 ") || HasText(status, ": ranks 0, "))
        << status.ToString();
    EXPECT_TRUE(HasText(status, "dispatch layer 5 (shared memory)")) << status.ToString();
  }
  CheckedRound(t, st, s, ReplicaPolicy::kBalance, kBF16, kF32, "after");
  // Combine twice for the same Dispatch: the same result both times.
  std::vector<float> first = st.out;
  ASSERT_TRUE(st.dispatcher.Combine(t, st.row_out.data(), kF32, OpDeadline(), st.out.data()).ok());
  EXPECT_EQ(first, st.out);
}

struct DispatchCase {
  const char* name;
  int min_world_size;
  void (*body)(Transport&);
};

const std::vector<DispatchCase>& DispatchCases() {
  static const std::vector<DispatchCase> cases = {
      {"RandomRoutingsWithReplicas", 1, CaseRandomRoutingsWithReplicas},
      {"ZeroTokensEverywhere", 1, CaseZeroTokensEverywhere},
      {"SkewedToOneRank", 1, CaseSkewedToOneRank},
      {"RepeatedCallsReuseBuffers", 1, CaseRepeatedCallsReuseBuffers},
      {"LargeRows", 1, CaseLargeRows},
      {"PeerDisagreesOnHidden", 2, CasePeerDisagreesOnHidden},
      {"BadArguments", 1, CaseBadArguments},
      {"IntegrityOnChangesNothing", 1, CaseIntegrityOnChangesNothing},
      {"Fp8MovesHalfTheBytes", 1, CaseFp8MovesHalfTheBytes},
      {"EagerSizeAdapts", 1, CaseEagerSizeAdapts},
      {"Bf16InPlaceMatchesF32Api", 1, CaseBf16InPlaceMatchesF32Api},
      {"ShmMatchesTransport", 1, CaseShmMatchesTransport},
      {"ShmGrowsWhenOutgrown", 2, CaseShmGrowsWhenOutgrown},
      {"ShmRejoinsAfterAFailedStep", 2, CaseShmRejoinsAfterAFailedStep},
  };
  return cases;
}

std::string CaseName(const DispatchCase& c) { return c.name; }
void PrintTo(const DispatchCase& c, std::ostream* os) { *os << c.name; }

#ifndef SWITCHYARD_DISPATCH_TEST_MPI

// ---- Local backend: ranks as threads. ----

using testing::AllRanks;
using testing::RunRanks;

class LocalDispatch
    : public ::testing::TestWithParam<std::tuple<DispatchCase, int, SharedMemoryMode>> {};

TEST_P(LocalDispatch, Runs) {
  const auto& [test_case, world_size, mode] = GetParam();
  if ((mode != SharedMemoryMode::kOff || std::string(test_case.name).rfind("Shm", 0) == 0) &&
      !testing::ShmUnusable().empty()) {
    GTEST_SKIP() << testing::ShmUnusable();
  }
  g_shm_mode = mode;
  testing::RunCaseOnLocalWorld(test_case, world_size);
  g_shm_mode = SharedMemoryMode::kOff;
}

INSTANTIATE_TEST_SUITE_P(
    Suite, LocalDispatch,
    ::testing::Combine(::testing::ValuesIn(DispatchCases()), ::testing::Values(1, 2, 4),
                       ::testing::Values(SharedMemoryMode::kOff, SharedMemoryMode::kRequire)),
    [](const ::testing::TestParamInfo<LocalDispatch::ParamType>& info) {
      return CaseName(std::get<0>(info.param)) + "_" + std::to_string(std::get<1>(info.param)) +
             "ranks_" + (std::get<2>(info.param) == SharedMemoryMode::kOff ? "transport" : "shm");
    });

// Rank 3 never joins: the others' Dispatch fails within its deadline naming it. Then every rank
// dispatches but rank 2 never combines: the others' Combine names rank 2.
class DispatchDeadlineTest : public ::testing::TestWithParam<SharedMemoryMode> {
 protected:
  void SetUp() override {
    if (GetParam() != SharedMemoryMode::kOff && !testing::ShmUnusable().empty()) {
      GTEST_SKIP() << testing::ShmUnusable();
    }
    g_shm_mode = GetParam();
  }
  void TearDown() override { g_shm_mode = SharedMemoryMode::kOff; }
};

INSTANTIATE_TEST_SUITE_P(Paths, DispatchDeadlineTest,
                         ::testing::Values(SharedMemoryMode::kOff, SharedMemoryMode::kRequire),
                         [](const ::testing::TestParamInfo<SharedMemoryMode>& info) {
                           return info.param == SharedMemoryMode::kOff ? "transport" : "shm";
                         });

TEST_P(DispatchDeadlineTest, MissingRankIsNamed) {
  using std::chrono::milliseconds;
  auto world = MakeLocalWorld(4);
  ASSERT_TRUE(world.ok());
  ScenarioSpec spec;
  spec.hidden = 7;
  const Scenario s = MakeScenario(4, spec);
  RunRanks(**world, {0, 1, 2}, [&](int me, Transport& t) {
    Dispatcher dispatcher(Opts());
    ReceivedTokens received;
    auto layout = ComputeDispatchLayout(s.idx[me].data(), s.weights[me].data(), s.tokens[me],
                                        s.topk, s.placement, ReplicaPolicy::kBalance, me);
    ASSERT_TRUE(layout.ok());
    const auto start = TransportClock::now();
    Status status = dispatcher.Dispatch(t, 4, *layout, s.x[me].data(), 7, kBF16,
                                        Deadline::After(milliseconds(100)), &received);
    const auto waited = TransportClock::now() - start;
    EXPECT_EQ(status.code(), StatusCode::kDeadlineExceeded) << status.ToString();
    EXPECT_TRUE(HasText(status, "waiting for rank 3")) << status.ToString();
    EXPECT_TRUE(HasText(status, "dispatch layer 4")) << status.ToString();
    EXPECT_LT(waited, std::chrono::seconds(2));
  });

  auto fresh = MakeLocalWorld(4);
  ASSERT_TRUE(fresh.ok());
  RunRanks(**fresh, AllRanks(4), [&](int me, Transport& t) {
    RankState st;
    auto layout = ComputeDispatchLayout(s.idx[me].data(), s.weights[me].data(), s.tokens[me],
                                        s.topk, s.placement, ReplicaPolicy::kBalance, me);
    ASSERT_TRUE(layout.ok());
    ASSERT_TRUE(
        st.dispatcher.Dispatch(t, 2, *layout, s.x[me].data(), 7, kF32, OpDeadline(), &st.received)
            .ok());
    if (me == 2) return;  // never combines
    RunLocalExperts(s, me, st.received, st.entry_out, st.row_out);
    st.out.resize(s.tokens[me] * 7);
    Status status = st.dispatcher.Combine(t, st.row_out.data(), kF32,
                                          Deadline::After(milliseconds(100)), st.out.data());
    EXPECT_EQ(status.code(), StatusCode::kDeadlineExceeded) << status.ToString();
    EXPECT_TRUE(HasText(status, "waiting for rank 2")) << status.ToString();
    EXPECT_TRUE(HasText(status, "combine layer 2")) << status.ToString();
  });
}

// CombineBf16 sending the dispatcher's own rows in place: rank 1 never combines, the others name
// it within the deadline. Over the transport the rows buffer they wrote is kept alive for the
// transport (quarantined) and Bf16CombineRows() hands out a fresh one, so the next step (on a
// fresh world, as a restarted step would be) works with the same dispatchers. On the
// shared-memory path a failed wait is fail-stop: the next step fails at once on every rank (rank
// 1 included, through the others' broken mark), naming the remedy, and recreated dispatchers
// work.
TEST_P(DispatchDeadlineTest, InPlaceCombineNamesMissingRank) {
  using std::chrono::milliseconds;
  ScenarioSpec spec;
  spec.hidden = 64;
  spec.zero_tokens = [](int) { return false; };
  const Scenario s = MakeScenario(3, spec);
  std::vector<Dispatcher> dispatchers;
  for (int r = 0; r < 3; ++r) dispatchers.emplace_back(Opts());
  const bool shm = GetParam() != SharedMemoryMode::kOff;
  for (int step = 0; step < (shm ? 3 : 2); ++step) {
    if (shm && step == 2) {
      dispatchers.clear();
      for (int r = 0; r < 3; ++r) dispatchers.emplace_back(Opts());
    }
    auto world = MakeLocalWorld(3);
    ASSERT_TRUE(world.ok());
    RunRanks(**world, AllRanks(3), [&](int me, Transport& t) {
      Dispatcher& dispatcher = dispatchers[me];
      ReceivedTokens received;
      auto layout = ComputeDispatchLayout(s.idx[me].data(), s.weights[me].data(), s.tokens[me],
                                          s.topk, s.placement, ReplicaPolicy::kBalance, me);
      ASSERT_TRUE(layout.ok());
      std::vector<uint16_t> xb(s.x[me].size());
      for (size_t i = 0; i < xb.size(); ++i) xb[i] = F32ToBf16(s.x[me][i]);
      const Status dispatched =
          dispatcher.DispatchBf16(t, step, *layout, xb.data(), 64, OpDeadline(), &received);
      if (shm && step == 1) {
        EXPECT_EQ(dispatched.code(), StatusCode::kFailedPrecondition) << dispatched.ToString();
        EXPECT_TRUE(HasText(dispatched, "recreate the")) << dispatched.ToString();
        return;
      }
      ASSERT_TRUE(dispatched.ok()) << dispatched.ToString();
      uint16_t* rows = dispatcher.Bf16CombineRows();
      ASSERT_NE(rows, nullptr);
      for (int64_t r = 0; r < received.num_rows(); ++r) {
        std::memcpy(rows + r * 64, received.row_bf16(r), 2 * 64);
      }
      if (step == 0 && me == 1) return;  // never combines in step 0
      std::vector<float> out(s.tokens[me] * 64);
      const Status status = dispatcher.CombineBf16(
          t, rows, step == 0 ? Deadline::After(milliseconds(100)) : OpDeadline(), out.data());
      if (step == 0) {
        EXPECT_EQ(status.code(), StatusCode::kDeadlineExceeded) << status.ToString();
        EXPECT_TRUE(HasText(status, "waiting for rank 1")) << status.ToString();
        EXPECT_TRUE(HasText(status, "combine layer 0")) << status.ToString();
        return;
      }
      ASSERT_TRUE(status.ok()) << "rank " << me << ": " << status.ToString();
      // Identity experts: each token comes back once per destination rank.
      std::vector<int> dests(s.tokens[me], 0);
      for (int64_t row = 0; row < layout->num_rows(); ++row) ++dests[layout->row_token_idx[row]];
      for (int64_t tok = 0; tok < s.tokens[me]; ++tok) {
        const float want = dests[tok] * Bf16ToF32(xb[tok * 64]);
        EXPECT_NEAR(out[tok * 64], want, 1e-2f * std::fabs(want) + 1e-6f) << "token " << tok;
      }
    });
  }
}

// A failure that only some ranks see, in a step the shared-memory path hands to the transport
// (messages larger than the slots): rank 2 gives up waiting, ranks 0 and 1 come late and go on to
// the transport without it. Every rank must then stop (fail-stop, FailedPrecondition naming the
// remedy, at once: no call that waits for its deadline again and again), and recreated
// dispatchers on a restarted world work.
TEST(DispatchShmFailStop, SplitFailureStopsEveryRank) {
  if (!testing::ShmUnusable().empty()) GTEST_SKIP() << testing::ShmUnusable();
  using std::chrono::milliseconds;
  constexpr int kRanks = 3;
  ScenarioSpec small_spec;
  small_spec.seed = 61;
  small_spec.hidden = 16;
  small_spec.zero_tokens = [](int) { return false; };
  const Scenario small = MakeScenario(kRanks, small_spec);
  ScenarioSpec large_spec = small_spec;
  large_spec.hidden = 4096;
  const Scenario large = MakeScenario(kRanks, large_spec);
  auto world = MakeLocalWorld(kRanks);
  ASSERT_TRUE(world.ok());
  RunRanks(**world, AllRanks(kRanks), [&](int me, Transport& t) {
    auto st =
        std::make_unique<RankState>(DispatcherOptions{.shared_memory = SharedMemoryMode::kRequire});
    CheckedRound(t, *st, small, ReplicaPolicy::kBalance, kBF16, kBF16, "warm");
    auto layout =
        ComputeDispatchLayout(large.idx[me].data(), large.weights[me].data(), large.tokens[me],
                              large.topk, large.placement, ReplicaPolicy::kBalance, me);
    ASSERT_TRUE(layout.ok());
    if (me != 2) std::this_thread::sleep_for(milliseconds(100));
    Status status =
        st->dispatcher.Dispatch(t, 1, *layout, large.x[me].data(), 4096, kBF16,
                                Deadline::After(milliseconds(me == 2 ? 10 : 400)), &st->received);
    EXPECT_FALSE(status.ok()) << "rank " << me;
    const auto start = TransportClock::now();
    status = st->dispatcher.Dispatch(t, 2, *layout, large.x[me].data(), 4096, kBF16, OpDeadline(),
                                     &st->received);
    EXPECT_EQ(status.code(), StatusCode::kFailedPrecondition) << status.ToString();
    EXPECT_TRUE(HasText(status, "recreate the Dispatcher")) << status.ToString();
    EXPECT_LT(TransportClock::now() - start, std::chrono::seconds(1));
  });
  // The transport is out of step too (ranks 0 and 1 made an exchange rank 2 did not): restart
  // the world, as after any fail-stop error.
  auto fresh = MakeLocalWorld(kRanks);
  ASSERT_TRUE(fresh.ok());
  RunRanks(**fresh, AllRanks(kRanks), [&](int, Transport& t) {
    RankState st(DispatcherOptions{.shared_memory = SharedMemoryMode::kRequire});
    CheckedRound(t, st, small, ReplicaPolicy::kBalance, kBF16, kBF16, "recreated");
    EXPECT_TRUE(st.dispatcher.last_traffic().combine_shared_memory);
  });
}

#else  // SWITCHYARD_DISPATCH_TEST_MPI

// ---- MPI backend: this process is one rank (under mpirun). ----

class MpiDispatch : public ::testing::TestWithParam<std::tuple<DispatchCase, SharedMemoryMode>> {};

TEST_P(MpiDispatch, Runs) {
  if (!testing::MpiTransport()) GTEST_SKIP() << testing::MpiSkipReason();
  const auto& [test_case, mode] = GetParam();
  if (testing::MpiTransport()->world_size() < test_case.min_world_size) {
    GTEST_SKIP() << test_case.name << " needs " << test_case.min_world_size << " ranks";
  }
  if ((mode != SharedMemoryMode::kOff || std::string(test_case.name).rfind("Shm", 0) == 0) &&
      !testing::ShmUnusable().empty()) {
    GTEST_SKIP() << testing::ShmUnusable();
  }
  g_shm_mode = mode;
  test_case.body(*testing::MpiTransport());
  g_shm_mode = SharedMemoryMode::kOff;
}

INSTANTIATE_TEST_SUITE_P(Suite, MpiDispatch,
                         ::testing::Combine(::testing::ValuesIn(DispatchCases()),
                                            ::testing::Values(SharedMemoryMode::kOff,
                                                              SharedMemoryMode::kRequire)),
                         [](const ::testing::TestParamInfo<MpiDispatch::ParamType>& info) {
                           return CaseName(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) == SharedMemoryMode::kOff ? "_transport"
                                                                                     : "_shm");
                         });

#endif  // SWITCHYARD_DISPATCH_TEST_MPI

}  // namespace
}  // namespace switchyard

#ifdef SWITCHYARD_DISPATCH_TEST_MPI
int main(int argc, char** argv) {
  return switchyard::testing::RunMpiTests(argc, argv, "dispatch_mpi_test");
}
#endif
