// Coordinator: registers the workers, plans and distributes the expert placement, drives the
// steps (every worker runs every step in lockstep; each request lives on one worker), collects
// tokens, per-expert loads and heartbeats, and notices failures.
//
// Failure behaviour: a worker whose control channel closes (its process died), that reports an
// error, that stays silent beyond cluster.heartbeat_timeout_ms, or that misses the step deadline
// (cluster.step_timeout_ms) fails the whole batch: the error names the rank, its host:pid and the
// reason; the surviving workers get `abort`; results of the requests already finished are kept.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/runtime_config.h"
#include "common/status.h"
#include "coordinator/cluster_plan.h"
#include "coordinator/control/control_channel.h"
#include "coordinator/control/heartbeat.h"
#include "coordinator/control/inbox.h"
#include "coordinator/control/protocol.h"
#include "coordinator/placement/placement_plan.h"
#include "model/engine.h"
#include "transport/bootstrap/rendezvous.h"

namespace switchyard {

struct WorkerInfo {
  int rank = -1;
  std::string host;
  int64_t pid = 0;
  ReadyMsg ready;  // what it loaded
};

// The outcome of a batch: results for every request (complete ones where `finished`), and the
// failure that stopped the batch (OK when every request finished).
struct BatchOutcome {
  std::vector<GenerationResult> results;
  std::vector<bool> finished;
  GenerationStats stats;
  Status status;
};

// What one lockstep step produced: the tokens of every worker (by rank), the batch size, the
// KV-cache use after the step and the workers' cumulative MoE link traffic.
struct StepOutcome {
  std::vector<std::vector<TokenOut>> tokens;    // [rank]
  int64_t batch_tokens = 0;                     // tokens forwarded over all workers
  std::vector<int64_t> kv_used_tokens;          // [rank] KV positions cached
  int64_t kv_used_total = 0;                    // sum over workers
  int64_t kv_capacity_total = 0;                // sum of the workers' budgets
  std::vector<LinkTrafficTotals> link_traffic;  // [source rank] totals, [destination] entries
};

// cluster.kv_cache_tokens = 0 means this many full-length (max_seq_len) sequences per worker.
inline constexpr int64_t kAutoKvSequencesPerWorker = 16;

class Coordinator {
 public:
  // `runtime.has_cluster` must hold. `clock` (heartbeat ages) must outlive the coordinator.
  explicit Coordinator(RuntimeConfig runtime, Clock* clock = SteadyClock());
  ~Coordinator();  // aborts the workers if still running, joins the reader threads

  // Takes one channel per worker (cluster.workers of them, in any order), receives their
  // `register` (ranks they announce are kept, the others numbered in order), computes the
  // placement, sends each its assignment and waits until all report `ready`, logging what each
  // loaded and the placement in force. Blocking, bounded by cluster.register_timeout_ms.
  // Errors: bad model or plan (named), duplicate/out-of-range ranks, a worker failing to load or
  // registering too late (named by rank and host:pid).
  Status Start(std::vector<std::unique_ptr<ControlChannel>> channels);

  // Runs every request to completion over the workers. Requests are checked first (like
  // Engine::Generate: an invalid one fails the call naming its index, nothing runs). Blocking.
  // On a worker failure: outcome.status names the rank and why, unfinished requests keep
  // finished[i] = false, and the workers are aborted (the coordinator is then unusable).
  BatchOutcome Generate(const std::vector<GenerationRequest>& requests, bool keep_logits = false);

  // Checks one request against the model and runtime limits (what Generate checks per request),
  // including prompt + max_new_tokens within one worker's KV budget (kv_cache_tokens()):
  // InvalidArgument prefixed by `where`, naming the limit. Thread-safe.
  Status ValidateRequest(const GenerationRequest& req, const std::string& where) const;

  // One lockstep step: worker w first drops `release[w]` (cancelled request ids, KV freed),
  // starts `add[w]`, then every worker runs one forward step; waits for every `step_done`
  // (bounded by cluster.step_timeout_ms). Both vectors have one entry per worker. Request ids are
  // the caller's, unique among running requests; the caller keeps the prompt + max_new_tokens of
  // the requests running on each worker within kv_cache_tokens() (the worker refuses more).
  // Blocking; one caller at a time (not thread-safe). Errors: a worker failure (Unavailable
  // naming the rank; the workers are aborted and the coordinator is unusable; also a reply whose
  // KV budget or link-traffic size does not match), FailedPrecondition when not running.
  StatusOr<StepOutcome> RunStep(std::vector<std::vector<WorkRequest>> add,
                                std::vector<std::vector<int64_t>> release, bool want_logits);

  // True after a successful Start until a failure or Shutdown. Thread-safe.
  bool healthy() const { return running_.load(); }
  int num_workers() const { return runtime_.cluster.workers; }
  const ModelConfig& model_config() const { return model_config_; }
  const RuntimeConfig& runtime() const { return runtime_; }
  // Each worker's KV-cache budget in positions: cluster.kv_cache_tokens, or when 0,
  // kAutoKvSequencesPerWorker x max_seq_len. Fixed at construction; thread-safe.
  int64_t kv_cache_tokens() const { return kv_cache_tokens_; }

  // Sends `shutdown` to every worker and closes the channels. Idempotent.
  void Shutdown();

  const std::vector<WorkerInfo>& workers() const { return workers_; }
  const PlacementPlan& plan() const { return plan_; }
  // Expert loads over the last cluster.load_window_steps steps, [MoE layer][expert].
  std::vector<std::vector<double>> ExpertLoads() const;

 private:
  Status WaitReady();
  // The next event from any worker, with heartbeat bookkeeping; a worker failure is an error.
  StatusOr<std::string> NextMessage(Deadline deadline, int* rank);
  Status WorkerFailure(int rank, const std::string& why);
  void Abort(const std::string& reason);
  void LogLoadSummary();

  RuntimeConfig runtime_;
  int64_t kv_cache_tokens_;
  Clock* clock_;
  ModelConfig model_config_;
  PlacementPlan plan_;
  std::vector<std::unique_ptr<ControlChannel>> channels_;  // by rank
  std::vector<WorkerInfo> workers_;
  std::unique_ptr<HeartbeatMonitor> heartbeat_;
  std::unique_ptr<ChannelInbox> inbox_;
  std::unique_ptr<ExpertLoadWindow> loads_;
  std::unique_ptr<RendezvousServer> rendezvous_;  // ucx/nccl data-plane bootstrap
  int64_t next_step_ = 0;
  bool failed_ = false;
  bool shut_down_ = false;
  std::atomic<bool> running_{false};
};

}  // namespace switchyard
