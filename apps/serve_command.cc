#include "apps/serve_command.h"

#include <signal.h>

#include <cstdio>
#include <ctime>

#include "common/logging.h"
#include "coordinator/http/openai_server.h"
#include "coordinator/serving/serving_engine.h"
#include "coordinator/serving/serving_metrics.h"
#include "model/tokenizer.h"
#include "worker/local_cluster.h"

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

}  // namespace

int RunServeCommand(const RuntimeConfig& runtime, const ServeFlags& flags) {
  if (!runtime.has_cluster) {
    return Fail(InvalidArgumentError("--config: no 'cluster:' section (see configs/README.md)"));
  }
  const ClusterConfig& cluster = runtime.cluster;
  if (cluster.transport != "local") {
    return Fail(InvalidArgumentError(
        "serve: cluster.transport '" + cluster.transport +
        "' is not supported by `serve` yet; use transport local (workers as threads)"));
  }
  if (flags.port < 0 || flags.port > 65535) {
    return Fail(InvalidArgumentError("--port must be within [0, 65535]"));
  }
  if (flags.max_queue < 1 || flags.max_running < 1) {
    return Fail(InvalidArgumentError("--max-queue and --max-running must be >= 1"));
  }
  auto tokenizer = Tokenizer::FromFile(cluster.model + "/tokenizer.json");
  if (!tokenizer.ok()) return Fail(tokenizer.status().WithContext("serve needs a tokenizer"));
  // Block the stop signals before any thread starts, so that only sigtimedwait below sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto cluster_run = LocalCluster::Start(runtime);
  if (!cluster_run.ok()) return Fail(cluster_run.status());
  Coordinator& coord = (*cluster_run)->coordinator();
  const std::string model_name =
      flags.served_model_name.empty() ? DirName(cluster.model) : flags.served_model_name;
  auto metrics = ServingMetrics::Create(model_name);
  if (!metrics.ok()) return Fail(metrics.status());
  ServingOptions sopts;
  sopts.max_queue = flags.max_queue;
  sopts.max_running = flags.max_running;
  auto engine = std::make_unique<ServingEngine>(&coord, tokenizer->get(), metrics->get(), sopts);
  OpenAiServerOptions hopts;
  hopts.model_name = model_name;
  hopts.max_seq_len = runtime.max_seq_len;
  hopts.http.host = flags.host;
  hopts.http.port = flags.port;
  auto server =
      OpenAiServer::Start(engine.get(), tokenizer->get(), ChatFamilyForModel(coord.model_config()),
                          metrics->get(), hopts);
  if (!server.ok()) return Fail(server.status());
  LOG_INFO("serve", "model '%s' on %d workers; listening on http://%s:%d", model_name.c_str(),
           coord.num_workers(), flags.host.c_str(), (*server)->port());
  int sig = -1;
  while (sig < 0) {
    timespec slice{1, 0};
    sig = sigtimedwait(&stop_signals, nullptr, &slice);
  }
  LOG_INFO("serve", "signal %d: shutting down", sig);
  (*server)->Stop();
  server->reset();
  engine.reset();
  cluster_run->reset();
  return 0;
}

}  // namespace switchyard
