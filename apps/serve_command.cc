#include "apps/serve_command.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>

#include "apps/cluster_start.h"
#include "apps/process_signals.h"
#include "common/logging.h"
#include "coordinator/http/openai_server.h"
#include "coordinator/serving/serving_engine.h"
#include "coordinator/serving/serving_metrics.h"
#include "model/tokenizer.h"

namespace switchyard {
namespace {

int Fail(const Status& s) {
  std::fprintf(stderr, "switchyard: error: %s\n", s.message().c_str());
  return s.code() == StatusCode::kInvalidArgument ? 2 : 1;
}

std::string DirName(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Leaves without destructors or MPI_Finalize: a worker is dead, and MPI would wait for it.
[[noreturn]] void ExitAfterFailure(OpenAiServer* server) {
  if (server != nullptr) server->Stop();
  std::fprintf(stderr, "switchyard: error: serve: a worker failed (see the log above)\n");
  std::fflush(stderr);
  std::_Exit(1);
}

}  // namespace

Status ApplyServeFlags(const ServeFlags& flags, RuntimeConfig* config) {
  ServingConfig& s = config->serving;
  if (flags.host) s.host = *flags.host;
  if (flags.port) s.port = *flags.port;
  if (flags.served_model_name) s.served_model_name = *flags.served_model_name;
  if (flags.max_queue) s.max_queue = *flags.max_queue;
  if (flags.max_running) s.max_running = *flags.max_running;
  config->has_serving = true;
  return ValidateServingConfig(s).WithContext(
      "serve flags (--host, --port, --served-model-name, --max-queue, --max-running override "
      "serving.*)");
}

int RunServeCommand(const RuntimeConfig& runtime) {
  if (!runtime.has_cluster) {
    return Fail(InvalidArgumentError("--config: no 'cluster:' section (see configs/README.md)"));
  }
  const ClusterConfig& cluster = runtime.cluster;
  const ServingConfig& serving = runtime.serving;
  Status valid = ValidateServingConfig(serving);
  if (!valid.ok()) return Fail(valid);
  auto tokenizer = Tokenizer::FromFile(cluster.model + "/tokenizer.json");
  if (!tokenizer.ok()) return Fail(tokenizer.status().WithContext("serve needs a tokenizer"));
  // Before any thread starts (MPI's included), so that only Wait below sees the signals.
  StopSignals signals;

  std::optional<ExitOnSignal> interruptible(std::in_place, &signals, "startup");
  auto started = StartedCluster::Start(runtime, "serve");
  if (!started.ok()) return Fail(started.status());
  Coordinator& coord = (*started)->coordinator();
  const std::chrono::milliseconds limit(serving.shutdown_timeout_ms);
  // A failure once the workers run (e.g. the HTTP port is taken): shut them down and finalize
  // MPI (bounded) before reporting it, so that the job ends cleanly instead of being torn down.
  auto fail_started = [&](const Status& why) {
    const Status down = (*started)->Shutdown(limit);
    if (!down.ok()) LOG_ERROR("serve", "%s", down.ToString().c_str());
    return Fail(why);
  };
  const std::string model_name =
      serving.served_model_name.empty() ? DirName(cluster.model) : serving.served_model_name;
  auto metrics = ServingMetrics::Create(model_name);
  if (!metrics.ok()) return fail_started(metrics.status());
  ServingOptions sopts;
  sopts.max_queue = serving.max_queue;
  sopts.max_running = serving.max_running;
  sopts.stats_interval = std::chrono::seconds(serving.stats_interval_s);
  auto engine = std::make_unique<ServingEngine>(&coord, tokenizer->get(), metrics->get(), sopts);
  OpenAiServerOptions hopts;
  hopts.model_name = model_name;
  // A request must fit both max_seq_len and one worker's KV budget: the smaller is its context
  // (so chat requests without max_tokens, which default to the room left, are not refused when
  // cluster.kv_cache_tokens < max_seq_len, and the 400 names the real limit).
  hopts.max_seq_len = std::min(runtime.max_seq_len, coord.kv_cache_tokens());
  hopts.request_timeout = std::chrono::seconds(serving.request_timeout_s);
  hopts.http.host = serving.host;
  hopts.http.port = serving.port;
  auto server =
      OpenAiServer::Start(engine.get(), tokenizer->get(), ChatFamilyForModel(coord.model_config()),
                          metrics->get(), hopts);
  if (!server.ok()) {
    engine.reset();
    return fail_started(server.status());
  }
  interruptible.reset();  // from here the loop below takes the signals
  LOG_INFO("serve", "model '%s' on %d workers (transport %s); listening on http://%s:%d",
           model_name.c_str(), coord.num_workers(), cluster.transport.c_str(), serving.host.c_str(),
           (*server)->port());

  int sig = 0;
  while (sig == 0) {
    sig = signals.Wait(std::chrono::milliseconds(200));
    if (sig != 0 || engine->healthy()) continue;
    // The engine has failed every queued and running request and /ready answers 503.
    if (serving.exit_on_worker_failure) {
      LOG_ERROR("serve",
                "a worker failed: requests end with an error, /ready answers 503; "
                "exiting in %lld ms (serving.worker_failure_grace_ms)",
                static_cast<long long>(serving.worker_failure_grace_ms));
      signals.Wait(std::chrono::milliseconds(serving.worker_failure_grace_ms));
    } else {
      LOG_ERROR("serve",
                "a worker failed: requests end with an error, /ready answers 503 until "
                "SIGINT/SIGTERM (serving.exit_on_worker_failure: false)");
      while (signals.Wait(std::chrono::seconds(1)) == 0) {
      }
    }
    ExitAfterFailure(server->get());
  }
  LOG_INFO("serve", "signal %d: shutting down", sig);
  {
    ExitWatchdog watchdog(limit, "serve: stopping HTTP and the serving loop");
    (*server)->Stop();
    server->reset();
    engine.reset();
  }
  if (!coord.healthy()) ExitAfterFailure(nullptr);
  Status s = (*started)->Shutdown(limit);
  if (!s.ok()) return Fail(s);
  LOG_INFO("serve", "stopped: every worker shut down");
  return 0;
}

}  // namespace switchyard
