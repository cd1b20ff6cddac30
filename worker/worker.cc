#include "worker/worker.h"

#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/logging.h"
#include "common/parallel.h"
#include "model/model.h"
#include "transport/transport_factory.h"
#include "worker/distributed_expert_runner.h"
#include "worker/plan_placement.h"
#include "worker/rank_env.h"
#include "worker/step_runner.h"
#include "worker/worker_gpu.h"

namespace switchyard {
namespace {

constexpr auto kSendTimeout = std::chrono::seconds(30);

std::string HostName() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown";
  return buf;
}

// Wraps the distributed runner and adds up, per plan layer and logical expert, the tokens this
// rank's expert slots processed (the coordinator's load statistics).
class CountingRunner : public ExpertRunner {
 public:
  CountingRunner(DistributedExpertRunner* inner, const PlacementPlan& plan, int rank,
                 int64_t num_layers)
      : inner_(inner), plan_layer_(PlanLayerOfModelLayer(plan, num_layers)) {
    slot_expert_.resize(plan.moe_layers.size());
    for (size_t l = 0; l < plan.moe_layers.size(); ++l) {
      for (int32_t s = 0; s < plan.slots_per_gpu; ++s) {
        slot_expert_[l].push_back(plan.phy2log[l][rank * plan.slots_per_gpu + s]);
      }
    }
    counts_.assign(plan.moe_layers.size(), std::vector<int64_t>(plan.num_logical_experts, 0));
  }

  Status Run(int64_t layer, const float* hidden, int64_t num_tokens, const int32_t* topk_idx,
             const float* topk_weights, float* out) override {
    RETURN_IF_ERROR(inner_->Run(layer, hidden, num_tokens, topk_idx, topk_weights, out));
    const int32_t pl = plan_layer_[layer];
    const auto& local = inner_->LastLocalCounts();
    for (size_t s = 0; s < local.size() && pl >= 0 && s < slot_expert_[pl].size(); ++s) {
      counts_[pl][slot_expert_[pl][s]] += local[s];
    }
    return OkStatus();
  }

  // The counts since the last call, then zeroed.
  std::vector<std::vector<int64_t>> TakeCounts() {
    auto out = counts_;
    for (auto& row : counts_) std::fill(row.begin(), row.end(), 0);
    return out;
  }

 private:
  DistributedExpertRunner* inner_;
  std::vector<int32_t> plan_layer_;
  std::vector<std::vector<int32_t>> slot_expert_;  // [plan layer][local slot] -> logical expert
  std::vector<std::vector<int64_t>> counts_;
};

// Sends `heartbeat` every interval until stopped (destructor).
class HeartbeatSender {
 public:
  HeartbeatSender(ControlChannel* channel, int rank, std::chrono::milliseconds interval)
      : thread_([=, this] {
          std::unique_lock<std::mutex> lock(mu_);
          while (!cv_.wait_for(lock, interval, [this] { return stop_; })) {
            lock.unlock();
            const Status s = channel->Send(EncodeHeartbeat(rank), Deadline::After(interval));
            lock.lock();
            if (!s.ok()) return;  // the main loop sees the broken channel too
          }
        }) {}
  ~HeartbeatSender() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// Receives the next message of `type` (heartbeat-free direction: the coordinator sends only
// protocol messages); `abort` becomes an error with the coordinator's reason.
StatusOr<std::string> Expect(ControlChannel* channel, Deadline deadline, std::string* type) {
  ASSIGN_OR_RETURN(std::string text, channel->Receive(deadline));
  ASSIGN_OR_RETURN(*type, MessageType(text, channel->peer()));
  if (*type == "abort") {
    auto reason = DecodeReason(text, channel->peer());
    return UnavailableError("the coordinator aborted: " +
                            (reason.ok() ? *reason : std::string("no reason given")));
  }
  return text;
}

struct Loaded {
  std::unique_ptr<Model> model;
  PlacementPlan plan;
  std::vector<ExpertPlacement> placement;
  ReadyMsg ready;
};

StatusOr<Loaded> LoadShard(const AssignMsg& assign) {
  Loaded out;
  const auto t0 = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(out.plan, PlacementPlan::FromJson(assign.plan_json, "assigned placement plan"));
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(assign.model_dir));
  ASSIGN_OR_RETURN(out.placement, ExpertPlacementsFromPlan(out.plan, config));
  if (out.plan.topology.num_gpus() != assign.world) {
    return InvalidArgumentError("placement plan spans " +
                                std::to_string(out.plan.topology.num_gpus()) +
                                " workers, the assignment " + std::to_string(assign.world));
  }
  LoadSelection selection;
  ASSIGN_OR_RETURN(selection.expert_format, ParseExpertFormat(assign.expert_format));
  const int rank = assign.rank;
  const auto& placement = out.placement;
  selection.want_expert = [&](int64_t layer, int64_t e) {
    for (const auto& r : placement[layer].replicas(static_cast<int32_t>(e))) {
      if (r.rank_idx == rank) return true;
    }
    return false;
  };
  LoadReport report;
  ASSIGN_OR_RETURN(auto weights, LoadModelWeights(assign.model_dir, config, selection, &report));
  out.ready.rank = rank;
  out.ready.expert_bytes = weights->ExpertBytes();
  out.ready.resident_bytes = weights->ResidentBytes();
  out.ready.expert_slots =
      static_cast<int64_t>(out.plan.moe_layers.size()) * out.plan.slots_per_gpu;
  out.ready.load_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.model = std::make_unique<Model>(std::move(config), std::move(weights));
  LOG_INFO("worker",
           "rank %d of %d loaded %.2f MB in %.2f s: routed experts %.2f MB (%lld expert slots over "
           "%zu MoE layers), the rest (attention, norms, router, embeddings) %.2f MB",
           rank, assign.world, out.ready.resident_bytes / 1e6, out.ready.load_seconds,
           out.ready.expert_bytes / 1e6, static_cast<long long>(out.ready.expert_slots),
           out.plan.moe_layers.size(), (out.ready.resident_bytes - out.ready.expert_bytes) / 1e6);
  return out;
}

// The GPU for this worker (-1: CPU), see worker.h.
StatusOr<int> PickGpu(const WorkerOptions& options, const AssignMsg& assign) {
  const bool nccl = assign.transport == "nccl";
  if (!options.own_process && !nccl) return -1;  // threads of one process share its device
  int local_rank = assign.rank;
  if (options.own_process) {
    ASSIGN_OR_RETURN(RankEnv env, DiscoverRankEnv());
    LOG_INFO("worker", "rank %d: launch position %s", assign.rank, env.ToString().c_str());
    local_rank = env.LocalRankOrZero();
  }
  int gpus_per_node = 0;
  auto plan = PlacementPlan::FromJson(assign.plan_json, "assigned placement plan");
  if (plan.ok()) gpus_per_node = plan->topology.gpus_per_node;  // else LoadShard reports it
  return ChooseWorkerGpu(assign.rank, local_rank, gpus_per_node, /*required=*/nccl);
}

// The nccl data plane: ranks from the coordinator, its rendezvous, the chosen GPU.
StatusOr<std::unique_ptr<Transport>> CreateNcclDataPlane(const WorkerOptions& options,
                                                         const AssignMsg& assign, int gpu) {
  if (assign.rendezvous.empty()) {
    return FailedPreconditionError("rank " + std::to_string(assign.rank) +
                                   ": transport nccl but the assignment names no rendezvous");
  }
  TransportOptions topts;
  topts.rank = assign.rank;
  topts.world_size = assign.world;
  topts.rendezvous = assign.rendezvous;
  topts.rank0_serves = false;  // the coordinator hosts the rendezvous
  topts.connect_timeout = options.connect_timeout;
  topts.device = gpu;
  auto created = CreateTransport(TransportKind::kNccl, topts);
  if (!created.ok()) {
    return created.status().WithContext("rank " + std::to_string(assign.rank) + " on GPU " +
                                        std::to_string(gpu) + ": nccl transport");
  }
  return std::move(*created);
}

Status Serve(ControlChannel* channel, const TransportProvider& provider,
             const WorkerOptions& options, const AssignMsg& assign) {
  if (options.own_process) SetComputeThreads(assign.num_threads);
  // Heartbeats start before loading: a large shard may take minutes to load.
  HeartbeatSender heartbeat(channel, assign.rank,
                            std::chrono::milliseconds(assign.heartbeat_interval_ms));
  // Before loading: a worker that cannot run (nccl without a GPU) fails fast.
  ASSIGN_OR_RETURN(const int gpu, PickGpu(options, assign));
  ASSIGN_OR_RETURN(Loaded loaded, LoadShard(assign));
  std::unique_ptr<Transport> own_transport;
  Transport* transport = nullptr;
  if (assign.transport == "nccl") {
    ASSIGN_OR_RETURN(own_transport, CreateNcclDataPlane(options, assign, gpu));
    transport = own_transport.get();
  } else {
    ASSIGN_OR_RETURN(transport, provider(assign));
  }
  if (transport->rank() != assign.rank || transport->world_size() != assign.world) {
    return FailedPreconditionError(
        "data-plane transport is rank " + std::to_string(transport->rank()) + " of " +
        std::to_string(transport->world_size()) + ", the coordinator assigned rank " +
        std::to_string(assign.rank) + " of " + std::to_string(assign.world));
  }
  DistributedExpertOptions ropts;
  ropts.timeout = std::chrono::milliseconds(assign.step_timeout_ms);
  DistributedExpertRunner runner(loaded.model->config(), loaded.model->weights(), transport,
                                 loaded.placement, ropts);
  RETURN_IF_ERROR(runner.Validate());
  CountingRunner counting(&runner, loaded.plan, assign.rank, loaded.model->config().num_layers);
  if (assign.kv_cache_tokens < 1) {
    return InvalidArgumentError("rank " + std::to_string(assign.rank) +
                                ": the assignment's kv_cache_tokens is " +
                                std::to_string(assign.kv_cache_tokens) + " (want >= 1)");
  }
  StepRunner steps(loaded.model.get(), assign.max_seq_len, assign.max_batch_tokens,
                   assign.kv_cache_tokens);
  RETURN_IF_ERROR(channel->Send(EncodeReady(loaded.ready), Deadline::After(kSendTimeout)));
  while (true) {
    std::string type;
    ASSIGN_OR_RETURN(std::string text,
                     Expect(channel, Deadline::After(options.idle_timeout), &type));
    if (type == "shutdown") {
      LOG_INFO("worker", "rank %d: shutdown", assign.rank);
      return OkStatus();
    }
    StepMsg step;
    RETURN_IF_ERROR(DecodeStep(text, channel->peer(), &step));
    for (int64_t id : step.release) steps.Release(id);
    for (const auto& w : step.add) RETURN_IF_ERROR(steps.Add(w));
    StepResultMsg result;
    result.rank = assign.rank;
    result.step = step.step;
    const auto t0 = std::chrono::steady_clock::now();
    ASSIGN_OR_RETURN(result.tokens, steps.Step(&counting, step.want_logits, &result.batch_tokens));
    result.forward_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    result.expert_counts = counting.TakeCounts();
    result.kv_used_tokens = steps.kv_positions_in_use();
    result.kv_capacity_tokens = steps.kv_budget_tokens();
    const LinkTraffic& traffic = runner.link_traffic();  // read between Runs, on this thread
    result.link_traffic.dispatch_bytes = traffic.dispatch_bytes;
    result.link_traffic.combine_bytes = traffic.combine_bytes;
    result.link_traffic.dispatch_seconds = traffic.dispatch_seconds;
    result.link_traffic.combine_seconds = traffic.combine_seconds;
    RETURN_IF_ERROR(channel->Send(EncodeStepResult(result), Deadline::After(kSendTimeout)));
  }
}

}  // namespace

Status RunWorker(ControlChannel* channel, const TransportProvider& provider,
                 const WorkerOptions& options) {
  RegisterMsg reg;
  reg.rank = options.known_rank;
  reg.host = HostName();
  reg.pid = getpid();
  RETURN_IF_ERROR(channel->Send(EncodeRegister(reg), Deadline::After(kSendTimeout)));
  std::string type;
  ASSIGN_OR_RETURN(std::string text, Expect(channel, Deadline::After(options.idle_timeout), &type));
  AssignMsg assign;
  RETURN_IF_ERROR(DecodeAssign(text, channel->peer(), &assign));
  if (options.own_process) SetLogRank(assign.rank);
  Status status = Serve(channel, provider, options, assign);
  if (!status.ok()) {
    LOG_ERROR("worker", "rank %d failed: %s", assign.rank, status.ToString().c_str());
    // Best effort: the coordinator may be gone already.
    (void)channel->Send(EncodeError(assign.rank, status.ToString()),
                        Deadline::After(std::chrono::seconds(2)));
  }
  return status;
}

}  // namespace switchyard
