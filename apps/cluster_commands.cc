#include "apps/cluster_commands.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "apps/cluster_start.h"
#include "apps/output_file.h"
#include "apps/process_signals.h"
#include "common/file_util.h"
#include "common/logging.h"
#include "common/npy.h"
#include "coordinator/control/tcp_channel.h"
#include "coordinator/coordinator.h"
#include "model/batch_requests.h"
#include "model/tokenizer.h"
#include "transport/bootstrap/bootstrap.h"
#include "transport/transport_factory.h"
#include "worker/rank_env.h"
#include "worker/worker.h"

namespace switchyard {
namespace {

int Fail(const Status& status) {
  std::fprintf(stderr, "switchyard: error: %s\n", status.message().c_str());
  return status.code() == StatusCode::kInvalidArgument ? 2 : 1;
}

// [requests, longest max_tokens, vocab], rows a request did not produce are NaN.
Status WriteLogits(const std::string& path, const std::vector<GenerationRequest>& requests,
                   const std::vector<GenerationResult>& results) {
  int64_t steps = 0, vocab = 0;
  for (const auto& r : requests) steps = std::max(steps, r.max_new_tokens);
  for (const auto& g : results) {
    if (!g.logits.empty()) vocab = static_cast<int64_t>(g.logits[0].size());
  }
  std::vector<float> data(results.size() * steps * vocab, std::nanf(""));
  for (size_t r = 0; r < results.size(); ++r) {
    for (size_t s = 0; s < results[r].logits.size(); ++s) {
      std::copy(results[r].logits[s].begin(), results[r].logits[s].end(),
                data.begin() + (r * steps + s) * vocab);
    }
  }
  return WriteNpyFloat32(path, {static_cast<int64_t>(results.size()), steps, vocab}, data.data());
}

// A worker that gets SIGTERM/SIGINT (mpirun and Slurm signal every process of the job, not only
// the coordinator) keeps serving until the coordinator's `shutdown`, so that every process can
// end cleanly, but at most `limit`; then, or at a second signal, it exits with status 1.
class SignalGrace {
 public:
  explicit SignalGrace(std::chrono::milliseconds limit) : thread_([this, limit] { Run(limit); }) {}
  ~SignalGrace() {
    done_.store(true);
    thread_.join();
  }

 private:
  void Run(std::chrono::milliseconds limit) {
    int sig = 0;
    while (!done_.load() && sig == 0) sig = signals_.Wait(std::chrono::milliseconds(200));
    if (sig == 0) return;
    LOG_WARN("worker", "signal %d: waiting up to %lld ms for the coordinator's shutdown", sig,
             static_cast<long long>(limit.count()));
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!done_.load()) {
      if (std::chrono::steady_clock::now() >= end) break;
      if (signals_.Wait(std::chrono::milliseconds(100)) != 0) break;  // a second signal
    }
    if (done_.load()) return;
    std::fprintf(stderr,
                 "switchyard: error: worker: stopped by signal %d before the coordinator "
                 "shut it down\n",
                 sig);
    std::fflush(stderr);
    std::_Exit(1);
  }

  StopSignals signals_;  // blocks the signals in the constructing thread: before threads start
  std::atomic<bool> done_{false};
  std::thread thread_;
};

std::string ErrorLine(const BatchRequest& request, const std::string& error) {
  return nlohmann::json{{"id", request.id}, {"error", error}}.dump();
}

}  // namespace

int RunCoordinatorCommand(const RuntimeConfig& runtime, const ClusterCommandFlags& flags) {
  if (!runtime.has_cluster) {
    return Fail(InvalidArgumentError("--config: no 'cluster:' section (see configs/README.md)"));
  }
  if (flags.requests.empty())
    return Fail(InvalidArgumentError("--requests FILE.jsonl is required"));
  auto text = ReadFileToString(flags.requests);
  if (!text.ok()) return Fail(text.status().WithContext("requests"));
  const ClusterConfig& cluster = runtime.cluster;
  // The checkpoint's tokenizer.json (if any) encodes "prompt" texts and decodes results to "text".
  std::unique_ptr<Tokenizer> tokenizer;
  auto loaded = Tokenizer::FromFile(cluster.model + "/tokenizer.json");
  if (loaded.ok()) {
    tokenizer = std::move(*loaded);
  } else if (loaded.status().code() != StatusCode::kNotFound) {
    return Fail(loaded.status());
  }
  auto batch = ParseBatchRequests(*text, flags.requests, tokenizer.get());
  if (!batch.ok()) return Fail(batch.status());
  auto started = StartedCluster::Start(runtime, "coordinator");
  if (!started.ok()) return Fail(started.status());
  Coordinator* coord = &(*started)->coordinator();

  std::vector<GenerationRequest> requests;
  for (const auto& b : *batch) requests.push_back(b.request);
  const auto start = std::chrono::steady_clock::now();
  BatchOutcome outcome = coord->Generate(requests, /*keep_logits=*/!flags.dump_logits.empty());
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::ofstream file;
  auto out_stream = OpenOutput(flags.out, file);
  if (!out_stream.ok()) return Fail(out_stream.status());
  std::ostream& out = **out_stream;
  if (outcome.results.empty() && !outcome.status.ok()) {
    for (const auto& b : *batch) out << ErrorLine(b, outcome.status.message()) << "\n";
  }
  for (size_t i = 0; i < outcome.results.size(); ++i) {
    out << (outcome.finished[i]
                ? FormatBatchResult((*batch)[i], outcome.results[i], tokenizer.get())
                : ErrorLine((*batch)[i], outcome.status.message()))
        << "\n";
  }
  out.flush();
  if (!outcome.status.ok()) {
    std::fprintf(stderr, "switchyard: error: %s\n", outcome.status.message().c_str());
    std::fflush(stderr);
    // Workers are aborted; with MPI a dead peer can make MPI_Finalize hang, so leave at once.
    std::_Exit(1);
  }
  if (!flags.dump_logits.empty()) {
    Status s = WriteLogits(flags.dump_logits, requests, outcome.results);
    if (!s.ok()) return Fail(s);
  }
  const auto& st = outcome.stats;
  std::fprintf(stderr,
               "switchyard run: %zu requests on %d workers (%s), %lld prompt + %lld generated "
               "tokens in %.3f s: %.1f generated tok/s, %.1f total tok/s\n",
               batch->size(), cluster.workers, cluster.transport.c_str(),
               static_cast<long long>(st.prompt_tokens),
               static_cast<long long>(st.generated_tokens), secs, st.generated_tokens / secs,
               (st.prompt_tokens + st.generated_tokens) / secs);
  Status s = (*started)->Shutdown(std::chrono::milliseconds(runtime.serving.shutdown_timeout_ms));
  if (!s.ok()) return Fail(s);
  return 0;
}

int RunWorkerCommand(const RuntimeConfig& runtime, const ClusterCommandFlags& flags) {
  if (!runtime.has_cluster) {
    return Fail(InvalidArgumentError("--config: no 'cluster:' section (see configs/README.md)"));
  }
  const ClusterConfig& cluster = runtime.cluster;
  if (cluster.transport == "local") {
    return Fail(InvalidArgumentError(
        "cluster.transport local runs the workers as threads of the coordinator; worker processes "
        "need transport mpi or ucx"));
  }
  const std::chrono::milliseconds shutdown_limit(runtime.serving.shutdown_timeout_ms);
  SignalGrace grace(shutdown_limit);  // first: before MPI or anything else starts threads
  std::string endpoint = flags.coordinator;
  std::unique_ptr<Transport> mpi_transport;
  WorkerOptions options;
  options.own_process = true;
  if (LaunchedByMpiLauncher()) {
    auto world_rank = MpiWorldRankOfProcess();
    if (!world_rank.ok()) return Fail(world_rank.status());
    std::string announced;
    Status s = MpiBroadcastText(&announced, 0, Deadline::After(std::chrono::seconds(120)));
    if (!s.ok()) return Fail(s.WithContext("waiting for the coordinator's endpoint"));
    if (endpoint.empty()) endpoint = announced;
    if (cluster.transport == "mpi") {
      auto t = CreateMpiWorkersTransport(true);
      if (!t.ok()) return Fail(t.status());
      mpi_transport = std::move(*t);
      options.known_rank = mpi_transport->rank();
    } else {
      options.known_rank = *world_rank - 1;
    }
    SetLogRank(options.known_rank);
    auto where = DiscoverRankEnv();
    if (!where.ok()) return Fail(where.status());
    LOG_INFO("worker", "MPI world rank %d, worker rank %d, local rank %d; coordinator at %s",
             *world_rank, options.known_rank, where->local_rank, endpoint.c_str());
  } else if (cluster.transport == "mpi") {
    return Fail(InvalidArgumentError(
        "cluster.transport mpi: start the workers with mpirun/srun together with the coordinator "
        "(deploy/mpirun.sh)"));
  }
  if (endpoint.empty()) {
    if (cluster.control_port == 0) {
      return Fail(InvalidArgumentError(
          "where is the coordinator? pass --coordinator HOST:PORT or set cluster.control_port"));
    }
    endpoint = cluster.coordinator_address + ":" + std::to_string(cluster.control_port);
  }
  std::string host;
  int port = 0;
  Status parsed = ParseEndpoint(endpoint, "coordinator endpoint", &host, &port);
  if (!parsed.ok()) return Fail(parsed);
  auto channel = ConnectTcp(
      host, port, Deadline::After(std::chrono::milliseconds(cluster.register_timeout_ms)));
  if (!channel.ok()) return Fail(channel.status());
  std::unique_ptr<Transport> ucx_transport;
  TransportProvider provider = [&](const AssignMsg& a) -> StatusOr<Transport*> {
    if (mpi_transport) return mpi_transport.get();
    ASSIGN_OR_RETURN(TransportKind kind, ParseTransportKind(a.transport));
    TransportOptions topts;
    topts.rank = a.rank;
    topts.world_size = a.world;
    topts.rendezvous = a.rendezvous;
    topts.rank0_serves = false;
    topts.connect_timeout = std::chrono::milliseconds(cluster.register_timeout_ms);
    ASSIGN_OR_RETURN(ucx_transport, CreateTransport(kind, topts));
    return ucx_transport.get();
  };
  Status s = RunWorker(channel->get(), provider, options);
  if (!s.ok()) {
    std::fprintf(stderr, "switchyard: error: worker: %s\n", s.message().c_str());
    std::fflush(stderr);
    std::_Exit(1);  // peers may be dead: do not wait in MPI_Finalize
  }
  ExitWatchdog watchdog(shutdown_limit, "worker: finalizing the transports");
  channel->reset();
  mpi_transport.reset();
  ucx_transport.reset();
  Status shut = ShutdownTransports();
  if (!shut.ok()) return Fail(shut);
  return 0;
}

}  // namespace switchyard
