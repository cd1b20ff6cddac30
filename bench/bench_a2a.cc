// bench_a2a: MoE dispatch+combine over a Transport backend against raw MPI_Alltoallv moving the
// same bytes, measured in the same run.
//   mpirun -np 4 build/bin/bench_a2a [--backend mpi|ucx] [--tokens 1,16,128,1024,4096]
//       [--hidden 2048,7168] [--dtype bf16,fp8,f32] [--integrity off,on] [--input f32,bf16]
//       [--output f32,bf16] [--rows own,caller] [--first-cap 67108864,65536] [--shm auto,off]
//       [--topk 8]
//       [--experts 64] [--reps N] [--warmup N] [--seed N] [--json]
//   build/bin/bench_a2a --backend local --ranks 4 ...       (ranks as threads; no raw baseline)
// Per case (tokens per rank, hidden, dispatch dtype, integrity): every rank routes its tokens top-k
// over experts placed contiguously over the ranks (random routing, fixed seed per rank), then
//   ours: Dispatcher::Dispatch + Dispatcher::Combine over the backend. The experts are the identity
//         with no compute: Combine sends the received rows back (row_out = ReceivedTokens::rows),
//         in BF16 after a BF16 or FP8 dispatch, in F32 after an F32 one. The time is the
//         dispatcher's packing and conversions, its exchanges and unpacking, combine accumulation,
//         integrity checksums when on, and the transport. With --input bf16 (BF16 transit only):
//         DispatchBf16 + CombineBf16 instead, BF16 tokens in and BF16 expert rows out, rows read
//         in place; the identity experts' output write (a gather of the received views into the
//         dispatcher's Bf16CombineRows(), sent from there without a copy) and a barrier after it
//         are between the two timed phases, untimed. --output bf16 (with --input bf16): the
//         combine's output rounded to BF16 (the CombineBf16 overload DeepEP's combine matches).
//         --rows caller (with --input bf16): the expert rows in the bench's own buffer instead,
//         which CombineBf16 copies into its send buffer (the behaviour before Bf16CombineRows).
//         --first-cap B1,B2: DispatcherOptions::max_first_exchange_bytes per variant (default
//         64 MiB: steady traffic takes one exchange; 65536: large dispatches take two, the
//         behaviour before AllToAllVBounded, minus the eager padding); each case runs them in turn.
//         --shm auto,off: DispatcherOptions::shared_memory per variant (default auto: on one
//         host the rows go through the dispatcher's shared-memory channel, not the transport;
//         "path" in the JSON line says which path dispatch/combine took).
//   raw:  MPI_Alltoallv of exactly the dispatcher's message bytes per peer (header and body, as
//         DispatchMessageBytes says; nothing to itself, as the dispatcher), then MPI_Alltoallv of
//         the combine bytes per peer. Only for backends run under mpirun (mpi, ucx).
//   transport (diagnostic): the same two exchanges through Transport::AllToAllV alone, to tell
//         the dispatcher's own overhead from the transport's (transport_ratio = raw / it;
//         vs_transport = it / ours, the only baseline of the local backend).
// Each rep starts after a Transport barrier; a rep's time is the slowest rank's (for ours: the
// largest dispatch + combine of one rank; ours_dispatch_us / ours_combine_us are each phase's
// slowest rank, so they need not add up to ours_us). Reps alternate
// ours/raw/transport after a warm-up; reported: the median (and best) over the reps. Bandwidth
// counts the bytes a rank sends to other ranks (dispatch + combine, mean over ranks) per second;
// ratio = raw time / our time. One JSON line per case on rank 0; dispatch_bytes_per_peer shows
// what FP8 saves against BF16, transport_bytes what the dispatcher actually handed over (no
// padding since AllToAllVBounded: equal to the payload).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/dtype.h"
#include "common/logging.h"
#include "common/status.h"
#include "transport/dispatch.h"
#include "transport/dispatch_layout.h"
#include "transport/transport.h"
#include "transport/transport_factory.h"

using namespace switchyard;

namespace {

[[noreturn]] void Fail(int rank, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::fprintf(stderr, "bench_a2a rank %d: ", rank);
  std::vfprintf(stderr, fmt, args);
  std::fprintf(stderr, "\n");
  va_end(args);
  std::fflush(stderr);
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, 1);
  std::exit(1);
}

void CheckMpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  Fail(-1, "%s failed: %s (code %d)", what, text, rc);
}
#define CHECK_MPI(call) CheckMpi((call), #call)

void CheckOk(const Transport& t, const Status& st, const char* what) {
  if (!st.ok()) Fail(t.rank(), "%s: %s", what, st.ToString().c_str());
}

// Generous: a slow (oversubscribed) rank must never turn a measurement into a timeout.
Deadline Generous() { return Deadline::After(std::chrono::seconds(120)); }

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Options {
  TransportKind backend = TransportKind::kMpi;
  int local_ranks = 2;
  std::vector<int64_t> tokens = {1, 16, 128, 1024, 4096};
  std::vector<int64_t> hidden = {2048, 7168};
  std::vector<PayloadDtype> dtypes = {PayloadDtype::kBF16, PayloadDtype::kFP8, PayloadDtype::kF32};
  std::vector<bool> integrity = {false};
  // Hidden states handed in as FP32 (Dispatch/Combine) or BF16 (DispatchBf16/CombineBf16: rows
  // read in place, sent as they are; BF16 transit only, other dtypes skipped).
  std::vector<bool> bf16_input = {false};
  // With BF16 input: the combine's output as FP32 sums or rounded to BF16 (as DeepEP returns).
  std::vector<bool> bf16_output = {false};
  // With BF16 input: the expert rows written into the dispatcher's Bf16CombineRows() (sent in
  // place) or into the bench's own buffer (CombineBf16 packs them: the behaviour before).
  std::vector<bool> own_rows = {true};
  // DispatcherOptions::max_first_exchange_bytes variants (A/B in one run).
  std::vector<int64_t> first_caps = {int64_t{64} << 20};
  // DispatcherOptions::shared_memory variants: auto (shared memory when every rank is on one
  // host) and/or off (always the transport).
  std::vector<bool> shm = {true};
  int32_t topk = 8;
  int32_t experts = 64;
  int reps = 0;  // 0: chosen per case from the warm-up time
  int warmup = 2;
  uint64_t seed = 1234;
  bool json = false;
};

bool ParseList(const std::string& text, std::vector<int64_t>* out) {
  out->clear();
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v <= 0) return false;
    out->push_back(v);
  }
  return !out->empty();
}

template <typename T>
bool ParseWords(const std::string& text, std::vector<T>* out,
                T (*parse)(const std::string&, bool*)) {
  out->clear();
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    bool ok = false;
    out->push_back(parse(item, &ok));
    if (!ok) return false;
  }
  return !out->empty();
}

PayloadDtype ParseDtype(const std::string& s, bool* ok) {
  *ok = s == "bf16" || s == "fp8" || s == "f32";
  return s == "bf16" ? PayloadDtype::kBF16 : (s == "fp8" ? PayloadDtype::kFP8 : PayloadDtype::kF32);
}
bool ParseInput(const std::string& s, bool* ok) {
  *ok = s == "f32" || s == "bf16";
  return s == "bf16";
}
bool ParseOnOff(const std::string& s, bool* ok) {
  *ok = s == "on" || s == "off";
  return s == "on";
}
bool ParseRows(const std::string& s, bool* ok) {  // own: the dispatcher's combine rows
  *ok = s == "own" || s == "caller";
  return s == "own";
}

bool ParseAutoOff(const std::string& s, bool* ok) {  // auto: shared memory when possible
  *ok = s == "auto" || s == "off";
  return s == "auto";
}

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--json") {
      o->json = true;
    } else if (arg == "--backend" && has_value) {
      auto kind = ParseTransportKind(argv[++i]);
      if (!kind.ok() || *kind == TransportKind::kNccl) return false;
      o->backend = *kind;
    } else if (arg == "--shm" && has_value) {
      if (!ParseWords(argv[++i], &o->shm, ParseAutoOff)) return false;
    } else if (arg == "--first-cap" && has_value) {
      if (!ParseList(argv[++i], &o->first_caps)) return false;
    } else if (arg == "--tokens" && has_value) {
      if (!ParseList(argv[++i], &o->tokens)) return false;
    } else if (arg == "--hidden" && has_value) {
      if (!ParseList(argv[++i], &o->hidden)) return false;
    } else if (arg == "--dtype" && has_value) {
      if (!ParseWords(argv[++i], &o->dtypes, ParseDtype)) return false;
    } else if (arg == "--input" && has_value) {
      if (!ParseWords(argv[++i], &o->bf16_input, ParseInput)) return false;
    } else if (arg == "--output" && has_value) {
      if (!ParseWords(argv[++i], &o->bf16_output, ParseInput)) return false;
    } else if (arg == "--rows" && has_value) {
      if (!ParseWords(argv[++i], &o->own_rows, ParseRows)) return false;
    } else if (arg == "--integrity" && has_value) {
      if (!ParseWords(argv[++i], &o->integrity, ParseOnOff)) return false;
    } else if ((arg == "--topk" || arg == "--experts" || arg == "--reps" || arg == "--warmup" ||
                arg == "--seed" || arg == "--ranks") &&
               has_value) {
      char* end = nullptr;
      const long long v = std::strtoll(argv[++i], &end, 10);
      if (*end != '\0' || v < 0) return false;
      if (arg == "--topk") o->topk = static_cast<int32_t>(v);
      if (arg == "--experts") o->experts = static_cast<int32_t>(v);
      if (arg == "--reps") o->reps = static_cast<int>(v);
      if (arg == "--warmup") o->warmup = static_cast<int>(v);
      if (arg == "--seed") o->seed = static_cast<uint64_t>(v);
      if (arg == "--ranks") o->local_ranks = static_cast<int>(v);
    } else {
      return false;
    }
  }
  return o->topk > 0 && o->experts >= o->topk && o->local_ranks >= 1;
}

// Random top-k routing: k distinct experts per token, positive weights summing to 1.
void Route(int64_t tokens, int32_t topk, int32_t experts, uint64_t seed, std::vector<int32_t>* idx,
           std::vector<float>* weights) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> perm(experts);
  idx->resize(tokens * topk);
  weights->resize(tokens * topk);
  std::uniform_real_distribution<float> uniform(0.1f, 1.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int32_t e = 0; e < experts; ++e) perm[e] = e;
    float sum = 0;
    for (int32_t k = 0; k < topk; ++k) {
      const int32_t j =
          k + static_cast<int32_t>(std::uniform_int_distribution<int32_t>(0, experts - 1 - k)(rng));
      std::swap(perm[k], perm[j]);
      (*idx)[t * topk + k] = perm[k];
      (*weights)[t * topk + k] = uniform(rng);
      sum += (*weights)[t * topk + k];
    }
    for (int32_t k = 0; k < topk; ++k) (*weights)[t * topk + k] /= sum;
  }
}

// Every rank's `mine` (same length everywhere), concatenated in rank order (collective).
std::vector<double> AllGather(Transport& t, const std::vector<double>& mine) {
  const int n = t.world_size();
  const int64_t bytes = static_cast<int64_t>(mine.size() * sizeof(double));
  std::vector<double> all(mine.size() * n);
  std::vector<int64_t> counts(n, bytes), send_offsets(n, 0), recv_offsets(n);
  for (int p = 0; p < n; ++p) recv_offsets[p] = bytes * p;
  CheckOk(
      t,
      t.AllToAllV(std::as_bytes(std::span<const double>(mine)), counts, send_offsets,
                  std::as_writable_bytes(std::span<double>(all)), counts, recv_offsets, Generous()),
      "AllGather");
  return all;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct CaseResult {
  double dispatch_bytes_per_peer = 0;  // dispatcher messages, mean over (rank, other rank) pairs
  double combine_bytes_per_peer = 0;
  double bytes_per_rank = 0;            // sent to other ranks, dispatch + combine, mean over ranks
  double transport_bytes_per_rank = 0;  // what the dispatcher handed over (= payload)
  int exchanges = 0;                    // the dispatch's AllToAllV calls (1 or 2), max over ranks
  // Median / best over reps (slowest rank per rep), seconds; raw < 0: not measured.
  double ours = 0, ours_best = 0, ours_dispatch = 0, ours_combine = 0;
  double raw = -1, raw_best = -1, transport = 0;
  bool shm_dispatch = false, shm_combine = false;  // the path the last rep took (same on all)
  int reps = 0;
};

std::vector<int> IntCounts(const Transport& t, const std::vector<int64_t>& v) {
  std::vector<int> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] > INT32_MAX) Fail(t.rank(), "%lld bytes exceed MPI's int count", (long long)v[i]);
    out[i] = static_cast<int>(v[i]);
  }
  return out;
}
std::vector<int64_t> Offsets(const std::vector<int64_t>& counts) {
  std::vector<int64_t> out(counts.size());
  int64_t at = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    out[i] = at;
    at += counts[i];
  }
  return out;
}

// One case: a point of the Options lists.
struct CaseSpec {
  int64_t tokens, hidden;
  PayloadDtype dtype;
  bool integrity, bf16_in, bf16_out, own_rows;
  int64_t first_cap;
  bool shm;
};

CaseResult RunCase(Transport& t, MPI_Comm comm, const Options& o, const CaseSpec& spec) {
  const auto [tokens, hidden, dtype, integrity, bf16_in, bf16_out, own_rows, first_cap, shm] = spec;
  const int world = t.world_size(), me = t.rank();
  const PayloadDtype combine_dtype =
      dtype == PayloadDtype::kF32 ? PayloadDtype::kF32 : PayloadDtype::kBF16;
  const ExpertPlacement placement = ExpertPlacement::Contiguous(o.experts, world);
  CheckOk(t, placement.Validate(), "expert placement");
  std::vector<int32_t> topk_idx;
  std::vector<float> topk_weights;
  Route(tokens, o.topk, o.experts, o.seed * 1000003u + static_cast<uint64_t>(me), &topk_idx,
        &topk_weights);
  auto layout_or = ComputeDispatchLayout(topk_idx.data(), topk_weights.data(), tokens, o.topk,
                                         placement, ReplicaPolicy::kBalance, me);
  CheckOk(t, layout_or.status(), "ComputeDispatchLayout");
  const DispatchLayout& layout = *layout_or;
  std::vector<float> x(tokens * hidden), out(tokens * hidden);
  for (int64_t i = 0; i < tokens * hidden; ++i) {
    x[i] = static_cast<float>((i * 7 + me * 13) % 1001) * 0.001f - 0.5f;
  }

  // The raw exchange's counts: exactly the dispatcher's message bytes per peer.
  std::vector<int64_t> send_rows(world), recv_rows(world);
  for (int p = 0; p < world; ++p) send_rows[p] = layout.rank_prefix[p + 1] - layout.rank_prefix[p];
  CheckOk(t, t.AllToAllCounts(send_rows, recv_rows, Generous()), "AllToAllCounts");
  std::vector<int64_t> ds(world), dr(world), cs(world), cr(world);
  for (int p = 0; p < world; ++p) {
    ds[p] = DispatchMessageBytes(layout, me, p, hidden, dtype, integrity);
    cs[p] = p == me ? 0 : CombineMessageBytes(recv_rows[p], hidden, combine_dtype, integrity);
    cr[p] = p == me ? 0 : CombineMessageBytes(send_rows[p], hidden, combine_dtype, integrity);
  }
  CheckOk(t, t.AllToAllCounts(ds, dr, Generous()), "AllToAllCounts");
  const std::vector<int64_t> dso = Offsets(ds), dro = Offsets(dr), cso = Offsets(cs),
                             cro = Offsets(cr);
  int64_t a = 0, b = 0;
  for (int p = 0; p < world; ++p) {
    a = std::max({a, dso[p] + ds[p], cro[p] + cr[p]});
    b = std::max({b, dro[p] + dr[p], cso[p] + cs[p]});
  }
  std::vector<std::byte> buf_a(std::max<int64_t>(a, 1)), buf_b(std::max<int64_t>(b, 1));

  Dispatcher dispatcher(
      DispatcherOptions{.integrity = integrity,
                        .shared_memory = shm ? SharedMemoryMode::kAuto : SharedMemoryMode::kOff,
                        .max_first_exchange_bytes = first_cap});
  ReceivedTokens received;
  std::vector<uint16_t> xb(bf16_in ? x.size() : 0), out_bf16(bf16_out ? out.size() : 0),
      caller_rows;
  for (size_t i = 0; i < xb.size(); ++i) xb[i] = F32ToBf16(x[i]);
  // BF16 input: the identity experts write their output rows (a gather of the views into the
  // dispatcher's combine rows, Bf16CombineRows(), what a real expert's output write replaces)
  // between the phases, untimed, and a barrier lines the ranks up again so that the gather does
  // not show up as waiting in Combine. CombineBf16 then sends those rows in place.
  auto ours_bf16 = [&](double* split) {
    CheckOk(t, t.Barrier(Generous()), "Barrier");
    const double t0 = Now();
    CheckOk(t, dispatcher.DispatchBf16(t, 0, layout, xb.data(), hidden, Generous(), &received),
            "DispatchBf16");
    split[0] = Now() - t0;
    caller_rows.resize(own_rows ? 0 : received.num_rows() * hidden);
    uint16_t* rows = own_rows ? dispatcher.Bf16CombineRows() : caller_rows.data();
    for (int64_t r = 0; r < received.num_rows(); ++r) {
      std::memcpy(rows + r * hidden, received.row_bf16(r), 2 * hidden);
    }
    CheckOk(t, t.Barrier(Generous()), "Barrier");
    const double t1 = Now();
    CheckOk(t,
            bf16_out ? dispatcher.CombineBf16(t, rows, Generous(), out_bf16.data())
                     : dispatcher.CombineBf16(t, rows, Generous(), out.data()),
            "CombineBf16");
    split[1] = Now() - t1;
  };
  auto ours = [&](double* split) {
    if (bf16_in) return ours_bf16(split);
    CheckOk(t, t.Barrier(Generous()), "Barrier");
    const double t0 = Now();
    CheckOk(t, dispatcher.Dispatch(t, 0, layout, x.data(), hidden, dtype, Generous(), &received),
            "Dispatch");
    const double t1 = Now();
    CheckOk(t, dispatcher.Combine(t, received.rows.data(), combine_dtype, Generous(), out.data()),
            "Combine");
    split[0] = t1 - t0;
    split[1] = Now() - t1;
  };
  auto transport = [&](double* split) {
    CheckOk(t, t.Barrier(Generous()), "Barrier");
    const double t0 = Now();
    CheckOk(t, t.AllToAllV(buf_a, ds, dso, buf_b, dr, dro, Generous()), "AllToAllV (dispatch)");
    CheckOk(t, t.AllToAllV(buf_b, cs, cso, buf_a, cr, cro, Generous()), "AllToAllV (combine)");
    split[0] = Now() - t0;
  };
  const std::vector<int> ids = IntCounts(t, ds), idr = IntCounts(t, dr), ics = IntCounts(t, cs),
                         icr = IntCounts(t, cr), idso = IntCounts(t, dso), idro = IntCounts(t, dro),
                         icso = IntCounts(t, cso), icro = IntCounts(t, cro);
  auto raw = [&](double* split) {
    if (comm == MPI_COMM_NULL) return;
    CheckOk(t, t.Barrier(Generous()), "Barrier");
    const double t0 = Now();
    CHECK_MPI(MPI_Alltoallv(buf_a.data(), ids.data(), idso.data(), MPI_BYTE, buf_b.data(),
                            idr.data(), idro.data(), MPI_BYTE, comm));
    CHECK_MPI(MPI_Alltoallv(buf_b.data(), ics.data(), icso.data(), MPI_BYTE, buf_a.data(),
                            icr.data(), icro.data(), MPI_BYTE, comm));
    split[0] = Now() - t0;
  };

  // Warm-up (buffers grow, pages fault in, connections open, the bound E settles), then a
  // sanity check: out[t] = Σ over t's destination ranks of x[t] rounded to the transit formats.
  double rep[4] = {0, 0, 0, 0}, warm_time = 0;
  for (int i = 0; i < std::max(1, o.warmup); ++i) {
    ours(rep);
    raw(rep + 2);
    transport(rep + 3);
    warm_time = std::max(warm_time, rep[0] + rep[1] + rep[2] + rep[3]);
  }
  for (size_t i = 0; i < out_bf16.size(); ++i) out[i] = Bf16ToF32(out_bf16[i]);
  std::vector<int32_t> dests(tokens, 0);
  for (int64_t row = 0; row < layout.num_rows(); ++row) ++dests[layout.row_token_idx[row]];
  const float tol = dtype == PayloadDtype::kFP8 ? 0.08f : (bf16_out ? 2e-2f : 1e-2f);
  for (int64_t tok = 0; tok < tokens; ++tok) {
    for (int64_t k : {int64_t{0}, hidden - 1}) {
      const float want = static_cast<float>(dests[tok]) * x[tok * hidden + k];
      const float got = out[tok * hidden + k];
      if (std::fabs(got - want) > tol * 0.5f * dests[tok] + 1e-6f) {
        Fail(me, "wrong combine result: token %lld element %lld is %g, expected %g",
             static_cast<long long>(tok), static_cast<long long>(k), got, want);
      }
    }
  }
  double slowest_warm = 0;
  for (double v : AllGather(t, {warm_time})) slowest_warm = std::max(slowest_warm, v);
  // ~1 s per case unless --reps says otherwise; the same on every rank (from the gathered time).
  const int reps =
      o.reps > 0 ? o.reps
                 : static_cast<int>(std::clamp(1.0 / std::max(slowest_warm, 1e-6), 5.0, 200.0));
  std::vector<double> times(4 * reps, 0.0);
  for (int i = 0; i < reps; ++i) {
    ours(&times[4 * i]);
    raw(&times[4 * i + 2]);
    transport(&times[4 * i + 3]);
  }
  const std::vector<double> all = AllGather(t, times);
  std::vector<double> v[5];
  for (int i = 0; i < reps; ++i) {
    // The slowest rank per measurement: for ours the slowest (dispatch + combine) of one rank, not
    // the sum of each phase's slowest (a rank that finishes its dispatch early waits in its
    // combine for the late one: that wait must not count twice).
    double s[4] = {0, 0, 0, 0}, both = 0;
    for (int r = 0; r < world; ++r) {
      const double* m = &all[4 * reps * r + 4 * i];
      for (int k = 0; k < 4; ++k) s[k] = std::max(s[k], m[k]);
      both = std::max(both, m[0] + m[1]);
    }
    v[0].push_back(both);
    v[1].push_back(s[0]);
    v[2].push_back(s[1]);
    v[3].push_back(s[2]);
    v[4].push_back(s[3]);
  }
  CaseResult r;
  r.reps = reps;
  r.ours = Median(v[0]);
  r.ours_best = *std::min_element(v[0].begin(), v[0].end());
  r.ours_dispatch = Median(v[1]);
  r.ours_combine = Median(v[2]);
  if (comm != MPI_COMM_NULL) {
    r.raw = Median(v[3]);
    r.raw_best = *std::min_element(v[3].begin(), v[3].end());
  }
  r.transport = Median(v[4]);
  // Bytes to other ranks, and what the dispatcher handed over, summed over ranks.
  double local[3] = {0, 0, 0};
  for (int p = 0; p < world; ++p) {
    local[0] += static_cast<double>(ds[p]);
    local[1] += static_cast<double>(cs[p]);
  }
  const DispatchTraffic& traffic = dispatcher.last_traffic();
  local[2] =
      static_cast<double>(traffic.dispatch_transport_bytes + traffic.combine_transport_bytes);
  const std::vector<double> sums =
      AllGather(t, {local[0], local[1], local[2], static_cast<double>(traffic.dispatch_exchanges)});
  double g[4] = {0, 0, 0, 0};
  for (int rr = 0; rr < world; ++rr) {
    for (int k = 0; k < 3; ++k) g[k] += sums[4 * rr + k];
    g[3] = std::max(g[3], sums[4 * rr + 3]);
  }
  const double pairs = world > 1 ? static_cast<double>(world) * (world - 1) : 1.0;
  r.dispatch_bytes_per_peer = g[0] / pairs;
  r.combine_bytes_per_peer = g[1] / pairs;
  r.bytes_per_rank = (g[0] + g[1]) / world;
  r.transport_bytes_per_rank = g[2] / world;
  r.exchanges = static_cast<int>(g[3]);
  r.shm_dispatch = traffic.dispatch_shared_memory;
  r.shm_combine = traffic.combine_shared_memory;
  return r;
}

void PrintCase(const Options& o, int world, const CaseSpec& spec, const CaseResult& r) {
  const auto [tokens, hidden, dtype, integrity, bf16_in, bf16_out, own_rows, first_cap, shm] = spec;
  const double ours_gbs = r.bytes_per_rank / r.ours / 1e9;
  char raw[160] = "\"raw_us\": null, \"raw_best_us\": null, \"raw_GBps\": null, \"ratio\": null";
  if (r.raw > 0) {
    std::snprintf(raw, sizeof raw,
                  "\"raw_us\": %.1f, \"raw_best_us\": %.1f, \"raw_GBps\": %.3f, \"ratio\": %.2f",
                  r.raw * 1e6, r.raw_best * 1e6, r.bytes_per_rank / r.raw / 1e9, r.raw / r.ours);
  }
  char transport_ratio[32] = "null";
  if (r.raw > 0)
    std::snprintf(transport_ratio, sizeof transport_ratio, "%.2f", r.raw / r.transport);
  std::printf(
      "{\"bench\": \"a2a_dispatch_combine\", \"backend\": \"%s\", \"ranks\": %d, "
      "\"tokens_per_rank\": %lld, \"hidden\": %lld, \"topk\": %d, \"dtype\": \"%s\", "
      "\"combine_dtype\": \"%s\", \"input\": \"%s\", \"output\": \"%s\", \"rows\": \"%s\", "
      "\"integrity\": %s, \"first_cap\": %lld, \"shm\": \"%s\", \"path\": \"%s/%s\", "
      "\"dispatch_bytes_per_peer\": %.0f, "
      "\"combine_bytes_per_peer\": %.0f, \"bytes_per_rank\": %.0f, \"transport_bytes_per_rank\": "
      "%.0f, \"dispatch_exchanges\": %d, \"reps\": %d, \"ours_us\": %.1f, \"ours_best_us\": %.1f, "
      "\"ours_dispatch_us\": %.1f, \"ours_combine_us\": %.1f, \"ours_GBps\": %.3f, %s, "
      "\"transport_us\": %.1f, \"transport_ratio\": %s, \"vs_transport\": %.2f}\n",
      TransportKindName(o.backend), world, static_cast<long long>(tokens),
      static_cast<long long>(hidden), o.topk, PayloadDtypeName(dtype),
      dtype == PayloadDtype::kF32 ? "f32" : "bf16", bf16_in ? "bf16" : "f32",
      bf16_out ? "bf16" : "f32", bf16_in ? (own_rows ? "own" : "caller") : "-",
      integrity ? "true" : "false", static_cast<long long>(first_cap), shm ? "auto" : "off",
      r.shm_dispatch ? "shm" : "transport", r.shm_combine ? "shm" : "transport",
      r.dispatch_bytes_per_peer, r.combine_bytes_per_peer, r.bytes_per_rank,
      r.transport_bytes_per_rank, r.exchanges, r.reps, r.ours * 1e6, r.ours_best * 1e6,
      r.ours_dispatch * 1e6, r.ours_combine * 1e6, ours_gbs, raw, r.transport * 1e6,
      transport_ratio, r.transport / r.ours);
  std::fflush(stdout);
}

// Every case on this rank; rank 0 prints.
void RunAll(Transport& t, MPI_Comm comm, const Options& o) {
  const int world = t.world_size();
  if (o.experts % world != 0) {
    Fail(t.rank(), "%d experts do not split evenly over %d ranks", o.experts, world);
  }
  CheckOk(t, t.Barrier(Generous()), "Barrier");
  if (t.rank() == 0 && !o.json) {
    std::printf(
        "# %s backend, %d ranks, top-%d of %d experts (contiguous), random routing (seed %llu); "
        "experts are the identity (no compute); times: median over reps of the slowest rank\n",
        TransportKindName(o.backend), world, o.topk, o.experts,
        static_cast<unsigned long long>(o.seed));
    std::fflush(stdout);
  }
  for (int64_t tokens : o.tokens) {
    for (int64_t hidden : o.hidden) {
      for (PayloadDtype dtype : o.dtypes) {
        for (bool integrity : o.integrity) {
          for (bool bf16_in : o.bf16_input) {
            if (bf16_in && dtype != PayloadDtype::kBF16) continue;  // BF16 in: BF16 transit
            for (bool bf16_out : o.bf16_output) {
              if (bf16_out && !bf16_in) continue;  // BF16 out: the BF16 path only
              for (bool own_rows : o.own_rows) {
                if (!own_rows && !bf16_in) continue;  // caller rows: the BF16 path only
                for (int64_t cap : o.first_caps) {
                  for (bool shm : o.shm) {
                    const CaseSpec spec{tokens,   hidden,   dtype, integrity, bf16_in,
                                        bf16_out, own_rows, cap,   shm};
                    const CaseResult r = RunCase(t, comm, o, spec);
                    if (t.rank() == 0) PrintCase(o, world, spec, r);
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) {
    std::fprintf(stderr,
                 "usage: bench_a2a [--backend mpi|ucx|local] [--ranks N (local)] "
                 "[--tokens 1,16,128,1024,4096] [--hidden 2048,7168] [--dtype bf16,fp8,f32] "
                 "[--integrity off,on] [--input f32,bf16] [--output f32,bf16] [--rows own,caller] "
                 "[--first-cap 67108864,65536] [--shm auto,off] [--topk 8] "
                 "[--experts 64] [--reps N] [--warmup N] "
                 "[--seed N] [--json]\n  (mpi, ucx: run under mpirun)\n");
    return 2;
  }
  SetLogLevel(LogLevel::kWarn);
  if (o.backend == TransportKind::kLocal) {
    auto world = MakeLocalWorld(o.local_ranks);
    if (!world.ok()) Fail(0, "MakeLocalWorld: %s", world.status().ToString().c_str());
    std::vector<std::thread> threads;
    for (int r = 0; r < o.local_ranks; ++r) {
      threads.emplace_back([&, r] { RunAll((*world)->transport(r), MPI_COMM_NULL, o); });
    }
    for (std::thread& th : threads) th.join();
    return 0;
  }
  // MPI for the raw baseline (and the MPI backend), initialized here for every backend.
  int provided = 0;
  CHECK_MPI(MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided));
  auto transport_or = CreateTransport(o.backend);
  if (!transport_or.ok()) {
    Fail(0, "CreateTransport(%s): %s", TransportKindName(o.backend),
         transport_or.status().ToString().c_str());
  }
  std::unique_ptr<Transport> t = std::move(*transport_or);
  MPI_Comm comm = MPI_COMM_NULL;
  CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
  CHECK_MPI(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  RunAll(*t, comm, o);
  CHECK_MPI(MPI_Comm_free(&comm));
  t.reset();
  const Status shutdown = ShutdownTransports();
  if (!shutdown.ok()) Fail(0, "ShutdownTransports: %s", shutdown.ToString().c_str());
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) CHECK_MPI(MPI_Finalize());
  return 0;
}
