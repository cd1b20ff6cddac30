// bench_a2a: MoE dispatch+combine over the MPI Transport against raw MPI_Alltoallv moving the same
// bytes, measured in the same run. Run under mpirun:
//   mpirun -np 4 build/bin/bench_a2a [--tokens 1,16,128,1024] [--hidden 2048,7168]
//       [--dtype bf16,f32] [--topk 8] [--experts 64] [--reps N] [--warmup N] [--seed N] [--json]
// Per case (tokens per rank, hidden, dtype): every rank routes its tokens top-k over experts placed
// contiguously over the ranks (random routing, fixed seed per rank), then
//   ours: Dispatcher::Dispatch + Dispatcher::Combine over the MPI Transport. The experts are the
//         identity with no compute at all: Combine sends the received rows back as they arrived
//         (row_out = ReceivedTokens::rows), so the time is the dispatcher's packing, BF16
//         conversion, header exchange, unpacking, combine accumulation and the transport.
//   raw:  MPI_Alltoallv of exactly the dispatch payload bytes per peer (rows in the transit dtype
//         plus the per-row entry counts and (expert, weight) entries, as the dispatcher's wire
//         format), then MPI_Alltoallv of the combine bytes per peer (rows back, reversed).
//   transport (diagnostic): the same two exchanges through Transport::AllToAllV alone, to tell
//         the dispatcher's own overhead from the MPI transport's (transport_ratio = raw / it).
// Each rep starts after an MPI_Barrier; a rep's time is the slowest rank's. Reps alternate
// ours/raw/transport after a warm-up; reported: the median (and best) over the reps. Bandwidth
// counts the bytes a rank sends to other ranks (dispatch payload + combine, self excluded, mean
// over ranks) per second; ratio = ours / raw bandwidth (= raw time / our time). One JSON line per
// case on rank 0.
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
#include <vector>

#include "common/logging.h"
#include "common/status.h"
#include "transport/dispatch.h"
#include "transport/dispatch_layout.h"
#include "transport/transport.h"
#include "transport/transport_factory.h"

using namespace switchyard;

namespace {

int g_rank = 0;

[[noreturn]] void Fail(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  std::fprintf(stderr, "bench_a2a rank %d: ", g_rank);
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
  Fail("%s failed: %s (code %d)", what, text, rc);
}
#define CHECK_MPI(call) CheckMpi((call), #call)

void CheckOk(const Status& st, const char* what) {
  if (!st.ok()) Fail("%s: %s", what, st.ToString().c_str());
}

// Generous: a slow (oversubscribed) rank must never turn a measurement into a timeout.
Deadline Generous() { return Deadline::After(std::chrono::seconds(60)); }

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// The dispatcher's per-peer payload size (transport/dispatch.cc, MessageBytes): rows in the
// transit dtype (padded to 4 bytes), an int32 entry count per row, int32 expert + float weight per
// entry.
int64_t PayloadBytes(int64_t rows, int64_t entries, int64_t hidden, int64_t esize) {
  return ((rows * hidden * esize + 3) & ~int64_t{3}) + 4 * rows + 8 * entries;
}

struct Options {
  std::vector<int64_t> tokens = {1, 16, 128, 1024};
  std::vector<int64_t> hidden = {2048, 7168};
  std::vector<PayloadDtype> dtypes = {PayloadDtype::kBF16, PayloadDtype::kF32};
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

bool ParseArgs(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const bool has_value = i + 1 < argc;
    if (arg == "--json") {
      o->json = true;
    } else if (arg == "--tokens" && has_value) {
      if (!ParseList(argv[++i], &o->tokens)) return false;
    } else if (arg == "--hidden" && has_value) {
      if (!ParseList(argv[++i], &o->hidden)) return false;
    } else if (arg == "--dtype" && has_value) {
      o->dtypes.clear();
      std::stringstream in(argv[++i]);
      std::string item;
      while (std::getline(in, item, ',')) {
        if (item == "bf16") {
          o->dtypes.push_back(PayloadDtype::kBF16);
        } else if (item == "f32") {
          o->dtypes.push_back(PayloadDtype::kF32);
        } else {
          return false;
        }
      }
      if (o->dtypes.empty()) return false;
    } else if ((arg == "--topk" || arg == "--experts" || arg == "--reps" || arg == "--warmup" ||
                arg == "--seed") &&
               has_value) {
      char* end = nullptr;
      const long long v = std::strtoll(argv[++i], &end, 10);
      if (*end != '\0' || v < 0) return false;
      if (arg == "--topk") o->topk = static_cast<int32_t>(v);
      if (arg == "--experts") o->experts = static_cast<int32_t>(v);
      if (arg == "--reps") o->reps = static_cast<int>(v);
      if (arg == "--warmup") o->warmup = static_cast<int>(v);
      if (arg == "--seed") o->seed = static_cast<uint64_t>(v);
    } else {
      return false;
    }
  }
  return o->topk > 0 && o->experts >= o->topk;
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

std::vector<int> ToIntCounts(const std::vector<int64_t>& v, const char* what) {
  std::vector<int> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] > INT32_MAX) Fail("%s: %lld bytes exceed MPI's int count", what, (long long)v[i]);
    out[i] = static_cast<int>(v[i]);
  }
  return out;
}

std::vector<int> Displacements(const std::vector<int>& counts, const char* what) {
  std::vector<int> out(counts.size());
  int64_t at = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (at > INT32_MAX) Fail("%s: displacement %lld exceeds MPI's int", what, (long long)at);
    out[i] = static_cast<int>(at);
    at += counts[i];
  }
  return out;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct CaseResult {
  double dispatch_bytes_per_peer = 0;  // mean over (rank, other rank) pairs
  double combine_bytes_per_peer = 0;
  double bytes_per_rank = 0;  // sent to other ranks, dispatch + combine, mean over ranks
  // Median / best over reps (slowest rank per rep), seconds.
  double ours = 0, ours_best = 0, ours_dispatch = 0, ours_combine = 0;
  double raw = 0, raw_best = 0, raw_dispatch = 0, raw_combine = 0;
  double transport = 0;  // Transport::AllToAllV alone, same bytes as raw
  int reps = 0;
};

CaseResult RunCase(Transport& t, MPI_Comm comm, const Options& o, int64_t tokens, int64_t hidden,
                   PayloadDtype dtype) {
  const int world = t.world_size(), me = t.rank();
  const int64_t esize = PayloadDtypeSize(dtype);
  const ExpertPlacement placement = ExpertPlacement::Contiguous(o.experts, world);
  CheckOk(placement.Validate(), "expert placement");
  std::vector<int32_t> topk_idx;
  std::vector<float> topk_weights;
  Route(tokens, o.topk, o.experts, o.seed * 1000003u + static_cast<uint64_t>(me), &topk_idx,
        &topk_weights);
  auto layout_or = ComputeDispatchLayout(topk_idx.data(), topk_weights.data(), tokens, o.topk,
                                         placement, ReplicaPolicy::kBalance, me);
  CheckOk(layout_or.status(), "ComputeDispatchLayout");
  const DispatchLayout& layout = *layout_or;

  std::vector<float> hidden_states(tokens * hidden);
  for (int64_t i = 0; i < tokens * hidden; ++i) {
    hidden_states[i] = static_cast<float>((i * 7 + me * 13) % 1001) * 0.001f - 0.5f;
  }
  std::vector<float> out(tokens * hidden);

  // The raw exchange's counts: exactly the dispatcher's per-peer payload and combine bytes.
  std::vector<int64_t> disp_send(world), disp_recv(world), comb_send(world), comb_recv(world);
  std::vector<int64_t> send_rows(world), recv_rows(world);
  for (int p = 0; p < world; ++p) {
    const int64_t first = layout.rank_prefix[p], last = layout.rank_prefix[p + 1];
    send_rows[p] = last - first;
    disp_send[p] = PayloadBytes(
        last - first, layout.entry_prefix[last] - layout.entry_prefix[first], hidden, esize);
  }
  CHECK_MPI(MPI_Alltoall(disp_send.data(), 1, MPI_INT64_T, disp_recv.data(), 1, MPI_INT64_T, comm));
  CHECK_MPI(MPI_Alltoall(send_rows.data(), 1, MPI_INT64_T, recv_rows.data(), 1, MPI_INT64_T, comm));
  for (int p = 0; p < world; ++p) {
    comb_send[p] = recv_rows[p] * hidden * esize;  // rows back to where they came from
    comb_recv[p] = send_rows[p] * hidden * esize;
  }
  const std::vector<int> ds = ToIntCounts(disp_send, "dispatch"),
                         dr = ToIntCounts(disp_recv, "dispatch"),
                         cs = ToIntCounts(comb_send, "combine"),
                         cr = ToIntCounts(comb_recv, "combine");
  const std::vector<int> dso = Displacements(ds, "dispatch"), dro = Displacements(dr, "dispatch"),
                         cso = Displacements(cs, "combine"), cro = Displacements(cr, "combine");
  // Combine sends from the dispatch receive buffer and receives into the dispatch send buffer.
  int64_t a_bytes = 0, b_bytes = 0, cs_total = 0, cr_total = 0;
  for (int p = 0; p < world; ++p) {
    a_bytes += disp_send[p];
    b_bytes += disp_recv[p];
    cs_total += comb_send[p];
    cr_total += comb_recv[p];
  }
  std::vector<char> buf_a(std::max<int64_t>({a_bytes, cr_total, 1}), 1);
  std::vector<char> buf_b(std::max<int64_t>({b_bytes, cs_total, 1}), 2);

  // Bytes: what this rank sends to other ranks, summed over ranks.
  double local[3] = {0, 0, 0};
  for (int p = 0; p < world; ++p) {
    if (p == me) continue;
    local[0] += static_cast<double>(disp_send[p]);
    local[1] += static_cast<double>(comb_send[p]);
  }
  local[2] = local[0] + local[1];
  double global[3] = {0, 0, 0};
  CHECK_MPI(MPI_Allreduce(local, global, 3, MPI_DOUBLE, MPI_SUM, comm));
  CaseResult r;
  const double pairs = world > 1 ? static_cast<double>(world) * (world - 1) : 1.0;
  r.dispatch_bytes_per_peer = global[0] / pairs;
  r.combine_bytes_per_peer = global[1] / pairs;
  r.bytes_per_rank = global[2] / world;

  Dispatcher dispatcher;
  ReceivedTokens received;
  auto ours = [&](double* split) {
    CHECK_MPI(MPI_Barrier(comm));
    const double t0 = Now();
    CheckOk(
        dispatcher.Dispatch(t, layout, hidden_states.data(), hidden, dtype, Generous(), &received),
        "Dispatch");
    const double t1 = Now();
    // Identity experts, no compute: the received rows go back as they are.
    CheckOk(dispatcher.Combine(t, received.rows.data(), dtype, Generous(), out.data()), "Combine");
    const double t2 = Now();
    split[0] = t1 - t0;
    split[1] = t2 - t1;
  };
  // The Transport alone: its AllToAllV with the raw exchange's counts and buffers (no headers, no
  // packing), to tell the dispatcher's overhead from the transport's.
  std::vector<int64_t> dso64(dso.begin(), dso.end()), dro64(dro.begin(), dro.end()),
      cso64(cso.begin(), cso.end()), cro64(cro.begin(), cro.end());
  auto bytes = [](std::vector<char>& v) { return std::as_writable_bytes(std::span<char>(v)); };
  auto transport = [&](double* split) {
    CHECK_MPI(MPI_Barrier(comm));
    const double t0 = Now();
    CheckOk(t.AllToAllV(bytes(buf_a), disp_send, dso64, bytes(buf_b), disp_recv, dro64, Generous()),
            "Transport::AllToAllV (dispatch bytes)");
    const double t1 = Now();
    CheckOk(t.AllToAllV(bytes(buf_b), comb_send, cso64, bytes(buf_a), comb_recv, cro64, Generous()),
            "Transport::AllToAllV (combine bytes)");
    const double t2 = Now();
    split[0] = t1 - t0;
    split[1] = t2 - t1;
  };
  auto raw = [&](double* split) {
    CHECK_MPI(MPI_Barrier(comm));
    const double t0 = Now();
    CHECK_MPI(MPI_Alltoallv(buf_a.data(), ds.data(), dso.data(), MPI_BYTE, buf_b.data(), dr.data(),
                            dro.data(), MPI_BYTE, comm));
    const double t1 = Now();
    CHECK_MPI(MPI_Alltoallv(buf_b.data(), cs.data(), cso.data(), MPI_BYTE, buf_a.data(), cr.data(),
                            cro.data(), MPI_BYTE, comm));
    const double t2 = Now();
    split[0] = t1 - t0;
    split[1] = t2 - t1;
  };

  // Warm-up (buffers grow, pages fault in, connections open), then a sanity check of the result:
  // out[t] = Σ over t's destination ranks of x[t] rounded to the transit dtype.
  double warm[6] = {0, 0, 0, 0, 0, 0};
  double warm_time = 0;
  for (int i = 0; i < std::max(1, o.warmup); ++i) {
    ours(warm);
    raw(warm + 2);
    transport(warm + 4);
    warm_time = std::max(warm_time, warm[0] + warm[1] + warm[2] + warm[3] + warm[4] + warm[5]);
  }
  {
    std::vector<int32_t> dests(tokens, 0);
    for (int64_t row = 0; row < layout.num_rows(); ++row) ++dests[layout.row_token_idx[row]];
    for (int64_t tok = 0; tok < tokens; ++tok) {
      for (int64_t k : {int64_t{0}, hidden - 1}) {
        const float x = hidden_states[tok * hidden + k];
        const float got = out[tok * hidden + k], want = static_cast<float>(dests[tok]) * x;
        if (std::fabs(got - want) > 1e-2f * std::fabs(want) + 1e-6f) {
          Fail("wrong combine result: token %lld element %lld is %g, expected %g",
               static_cast<long long>(tok), static_cast<long long>(k), got, want);
        }
      }
    }
  }
  double slowest_warm = 0;
  CHECK_MPI(MPI_Allreduce(&warm_time, &slowest_warm, 1, MPI_DOUBLE, MPI_MAX, comm));
  // ~1 s per case unless --reps says otherwise; the same on every rank (from the reduced time).
  const int reps =
      o.reps > 0 ? o.reps
                 : static_cast<int>(std::clamp(1.0 / std::max(slowest_warm, 1e-6), 5.0, 200.0));

  std::vector<double> times(6 * reps), slowest(6 * reps);
  for (int i = 0; i < reps; ++i) {
    ours(&times[6 * i]);
    raw(&times[6 * i + 2]);
    transport(&times[6 * i + 4]);
  }
  CHECK_MPI(MPI_Allreduce(times.data(), slowest.data(), 6 * reps, MPI_DOUBLE, MPI_MAX, comm));
  std::vector<double> v[7];
  for (int i = 0; i < reps; ++i) {
    const double* s = &slowest[6 * i];
    v[6].push_back(s[4] + s[5]);
    v[0].push_back(s[0] + s[1]);
    v[1].push_back(s[0]);
    v[2].push_back(s[1]);
    v[3].push_back(s[2] + s[3]);
    v[4].push_back(s[2]);
    v[5].push_back(s[3]);
  }
  r.reps = reps;
  r.ours = Median(v[0]);
  r.ours_best = *std::min_element(v[0].begin(), v[0].end());
  r.ours_dispatch = Median(v[1]);
  r.ours_combine = Median(v[2]);
  r.raw = Median(v[3]);
  r.raw_best = *std::min_element(v[3].begin(), v[3].end());
  r.raw_dispatch = Median(v[4]);
  r.raw_combine = Median(v[5]);
  r.transport = Median(v[6]);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!ParseArgs(argc, argv, &o)) {
    std::fprintf(stderr,
                 "usage: bench_a2a [--tokens 1,16,128,1024] [--hidden 2048,7168] "
                 "[--dtype bf16,f32] [--topk 8] [--experts 64] [--reps N] [--warmup N] "
                 "[--seed N] [--json]\n  (run under mpirun)\n");
    return 2;
  }
  SetLogLevel(LogLevel::kWarn);
  auto transport_or = CreateTransport(TransportKind::kMpi);
  if (!transport_or.ok())
    Fail("CreateTransport(mpi): %s", transport_or.status().ToString().c_str());
  std::unique_ptr<Transport> t = std::move(*transport_or);
  g_rank = t->rank();
  const int world = t->world_size();
  if (o.experts % world != 0) {
    Fail("%d experts do not split evenly over %d ranks", o.experts, world);
  }
  MPI_Comm comm = MPI_COMM_NULL;
  CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &comm));
  CHECK_MPI(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN));
  CheckOk(t->Barrier(Generous()), "Transport::Barrier");

  if (g_rank == 0 && !o.json) {
    std::printf(
        "# %d ranks, top-%d of %d experts (contiguous), random routing (seed %llu); experts are "
        "the identity (no compute); times: median over reps of the slowest rank, after a "
        "barrier\n",
        world, o.topk, o.experts, static_cast<unsigned long long>(o.seed));
    std::fflush(stdout);
  }
  double latency_ratio_sum = 0;
  int latency_cases = 0;
  for (int64_t tokens : o.tokens) {
    for (int64_t hidden : o.hidden) {
      for (PayloadDtype dtype : o.dtypes) {
        const CaseResult r = RunCase(*t, comm, o, tokens, hidden, dtype);
        if (g_rank != 0) continue;
        const double ours_gbs = r.bytes_per_rank / r.ours / 1e9;
        const double raw_gbs = r.bytes_per_rank / r.raw / 1e9;
        const double ratio = r.raw / r.ours;  // ours / raw bandwidth
        if (tokens == 1) {
          latency_ratio_sum += ratio;
          ++latency_cases;
        }
        std::printf(
            "{\"bench\": \"a2a_dispatch_combine\", \"ranks\": %d, \"tokens_per_rank\": %lld, "
            "\"hidden\": %lld, \"dtype\": \"%s\", \"bytes_per_peer\": %.0f, "
            "\"combine_bytes_per_peer\": %.0f, \"bytes_per_rank\": %.0f, \"reps\": %d, "
            "\"ours_us\": %.1f, \"ours_best_us\": %.1f, \"ours_dispatch_us\": %.1f, "
            "\"ours_combine_us\": %.1f, \"raw_us\": %.1f, \"raw_best_us\": %.1f, "
            "\"raw_dispatch_us\": %.1f, \"raw_combine_us\": %.1f, \"ours_GBps\": %.3f, "
            "\"raw_GBps\": %.3f, \"ratio\": %.2f, \"transport_us\": %.1f, "
            "\"transport_ratio\": %.2f}\n",
            world, static_cast<long long>(tokens), static_cast<long long>(hidden),
            PayloadDtypeName(dtype), r.dispatch_bytes_per_peer, r.combine_bytes_per_peer,
            r.bytes_per_rank, r.reps, r.ours * 1e6, r.ours_best * 1e6, r.ours_dispatch * 1e6,
            r.ours_combine * 1e6, r.raw * 1e6, r.raw_best * 1e6, r.raw_dispatch * 1e6,
            r.raw_combine * 1e6, ours_gbs, raw_gbs, ratio, r.transport * 1e6, r.raw / r.transport);
        std::fflush(stdout);
      }
    }
  }
  if (g_rank == 0 && !o.json && latency_cases > 0) {
    std::printf(
        "# small-message latency (tokens_per_rank 1): raw/ours time ratio %.2f (mean of %d "
        "cases; 1.0 = as fast as raw MPI_Alltoallv)\n",
        latency_ratio_sum / latency_cases, latency_cases);
  }
  CHECK_MPI(MPI_Comm_free(&comm));
  t.reset();
  CheckOk(ShutdownTransports(), "ShutdownTransports");
  return 0;
}
