#include "coordinator/coordinator.h"

#include <algorithm>
#include <cstdio>
#include <deque>

#include "common/logging.h"

namespace switchyard {
namespace {

constexpr auto kSendTimeout = std::chrono::seconds(10);
constexpr auto kPollSlice = std::chrono::milliseconds(50);

double Seconds(TransportClock::time_point a, TransportClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// KV positions a request reserves on its worker.
int64_t KvNeed(const GenerationRequest& r) {
  return static_cast<int64_t>(r.prompt.size()) + r.max_new_tokens;
}

int64_t KvBudget(const RuntimeConfig& rt) {
  return rt.cluster.kv_cache_tokens > 0 ? rt.cluster.kv_cache_tokens
                                        : kAutoKvSequencesPerWorker * rt.max_seq_len;
}

}  // namespace

Coordinator::Coordinator(RuntimeConfig runtime, Clock* clock)
    : runtime_(std::move(runtime)), kv_cache_tokens_(KvBudget(runtime_)), clock_(clock) {}

Coordinator::~Coordinator() { Shutdown(); }

Status Coordinator::Start(std::vector<std::unique_ptr<ControlChannel>> channels) {
  const ClusterConfig& cluster = runtime_.cluster;
  if (!runtime_.has_cluster) return FailedPreconditionError("the configuration has no cluster");
  if (static_cast<int>(channels.size()) != cluster.workers) {
    return InvalidArgumentError(std::to_string(channels.size()) +
                                " worker connections, cluster.workers is " +
                                std::to_string(cluster.workers));
  }
  ASSIGN_OR_RETURN(model_config_, LoadModelConfig(cluster.model));
  ASSIGN_OR_RETURN(plan_, MakeClusterPlan(cluster, model_config_));
  const Deadline deadline = Deadline::After(std::chrono::milliseconds(cluster.register_timeout_ms));
  // Registration: announced ranks first, then the others in connection order.
  std::vector<RegisterMsg> regs(channels.size());
  for (size_t i = 0; i < channels.size(); ++i) {
    auto text = channels[i]->Receive(deadline);
    if (!text.ok()) return text.status().WithContext("waiting for worker registration");
    RETURN_IF_ERROR(DecodeRegister(*text, channels[i]->peer(), &regs[i]));
  }
  channels_.resize(channels.size());
  workers_.resize(channels.size());
  std::vector<size_t> unranked;
  for (size_t i = 0; i < channels.size(); ++i) {
    const int r = regs[i].rank;
    if (r < 0) {
      unranked.push_back(i);
      continue;
    }
    if (r >= cluster.workers || channels_[r]) {
      return InvalidArgumentError(
          "worker " + regs[i].host + ":" + std::to_string(regs[i].pid) + " announced rank " +
          std::to_string(r) +
          (r >= cluster.workers ? ", outside [0, cluster.workers)" : ", already taken"));
    }
    channels_[r] = std::move(channels[i]);
    workers_[r] = {r, regs[i].host, regs[i].pid, {}};
  }
  int next = 0;
  for (size_t i : unranked) {
    while (channels_[next]) ++next;
    channels_[next] = std::move(channels[i]);
    workers_[next] = {next, regs[i].host, regs[i].pid, {}};
  }
  LOG_INFO("coordinator", "%d workers registered; model %s; transport %s", cluster.workers,
           cluster.model.c_str(), cluster.transport.c_str());
  LOG_INFO("placement", "placement in force (%s): %d experts, %d slots per worker, %zu MoE layers",
           cluster.placement.c_str(), plan_.num_logical_experts, plan_.slots_per_gpu,
           plan_.moe_layers.size());
  // Every (layer, worker) row; beyond a screenful only at debug level, with a hint.
  const auto rows = DescribePlan(plan_);
  const bool all_info = rows.size() <= 64;
  for (const auto& line : rows) {
    if (all_info) {
      LOG_INFO("placement", "%s", line.c_str());
    } else {
      LOG_DEBUG("placement", "%s", line.c_str());
    }
  }
  if (!all_info) {
    LOG_INFO("placement", "%zu placement rows (layer x worker) at log level debug", rows.size());
  }
  AssignMsg assign;
  assign.world = cluster.workers;
  assign.model_dir = cluster.model;
  assign.transport = cluster.transport;
  assign.expert_format = runtime_.expert_format;
  assign.max_seq_len = runtime_.max_seq_len;
  assign.max_batch_tokens = runtime_.max_batch_tokens;
  assign.num_threads = runtime_.num_threads;
  assign.step_timeout_ms = cluster.step_timeout_ms;
  assign.heartbeat_interval_ms = cluster.heartbeat_interval_ms;
  assign.kv_cache_tokens = kv_cache_tokens_;
  assign.plan_json = plan_.ToJson();
  if (cluster.transport == "ucx" || cluster.transport == "nccl") {
    // The workers' data plane meets through a rendezvous here: ranks come from this coordinator,
    // not from MPI (which may not be there, or may include this process).
    ASSIGN_OR_RETURN(rendezvous_,
                     RendezvousServer::Start(cluster.bind_address, 0, cluster.workers, deadline));
    assign.rendezvous = cluster.coordinator_address + ":" + std::to_string(rendezvous_->port());
  }
  for (int r = 0; r < cluster.workers; ++r) {
    assign.rank = r;
    RETURN_IF_ERROR(channels_[r]
                        ->Send(EncodeAssign(assign), Deadline::After(kSendTimeout))
                        .WithContext("assigning rank " + std::to_string(r)));
  }
  heartbeat_ = std::make_unique<HeartbeatMonitor>(
      clock_, cluster.workers, std::chrono::milliseconds(cluster.heartbeat_timeout_ms));
  inbox_ = std::make_unique<ChannelInbox>(channels_);
  loads_ = std::make_unique<ExpertLoadWindow>(plan_.moe_layers.size(), plan_.num_logical_experts,
                                              cluster.load_window_steps);
  RETURN_IF_ERROR(WaitReady());
  running_ = true;
  return OkStatus();
}

Status Coordinator::WaitReady() {
  const int n = runtime_.cluster.workers;
  const Deadline deadline =
      Deadline::After(std::chrono::milliseconds(runtime_.cluster.register_timeout_ms));
  int ready = 0;
  while (ready < n) {
    int rank = -1;
    auto text = NextMessage(deadline, &rank);
    if (!text.ok()) {
      if (text.status().code() != StatusCode::kDeadlineExceeded) return text.status();
      std::string missing;
      for (const auto& w : workers_) {
        if (w.ready.resident_bytes == 0)
          missing += (missing.empty() ? "" : ", ") + std::to_string(w.rank);
      }
      const std::string why = "not ready within cluster.register_timeout_ms";
      Abort(why);
      return DeadlineExceededError("worker rank(s) " + missing + " " + why);
    }
    ReadyMsg msg;
    RETURN_IF_ERROR(DecodeReady(*text, channels_[rank]->peer(), &msg));
    workers_[rank].ready = msg;
    ++ready;
  }
  int64_t total_experts = 0;
  for (const auto& w : workers_) total_experts += w.ready.expert_bytes;
  for (const auto& w : workers_) {
    LOG_INFO("coordinator",
             "worker rank %d on %s pid %lld: %.2f MB resident, routed experts %.2f MB (%.1f%% of "
             "all workers' expert bytes), loaded in %.2f s",
             w.rank, w.host.c_str(), static_cast<long long>(w.pid), w.ready.resident_bytes / 1e6,
             w.ready.expert_bytes / 1e6,
             total_experts > 0 ? 100.0 * w.ready.expert_bytes / total_experts : 0.0,
             w.ready.load_seconds);
  }
  return OkStatus();
}

StatusOr<std::string> Coordinator::NextMessage(Deadline deadline, int* rank) {
  while (true) {
    ChannelInbox::Event e;
    const auto slice = std::min(deadline.when(), TransportClock::now() + kPollSlice);
    if (inbox_->Pop(Deadline(slice), &e)) {
      *rank = e.rank;
      heartbeat_->Beat(e.rank);
      if (!e.status.ok()) {
        return WorkerFailure(
            e.rank, "control connection lost (process died or exited): " + e.status.message());
      }
      ASSIGN_OR_RETURN(std::string type, MessageType(e.text, channels_[e.rank]->peer()));
      if (type == "heartbeat") continue;
      if (type == "error") {
        auto reason = DecodeReason(e.text, channels_[e.rank]->peer());
        return WorkerFailure(e.rank, "reported an error: " + (reason.ok() ? *reason : e.text));
      }
      return std::move(e.text);
    }
    for (const auto& s : heartbeat_->SilentRanks()) {
      return WorkerFailure(s.rank, "no heartbeat for " + std::to_string(s.silent_for.count()) +
                                       " ms (cluster.heartbeat_timeout_ms = " +
                                       std::to_string(heartbeat_->timeout().count()) + ")");
    }
    if (deadline.Expired()) return DeadlineExceededError("deadline exceeded");
  }
}

Status Coordinator::WorkerFailure(int rank, const std::string& why) {
  const WorkerInfo& w = workers_[rank];
  const std::string msg = "worker rank " + std::to_string(rank) + " (" + w.host + " pid " +
                          std::to_string(w.pid) + ") failed: " + why;
  LOG_ERROR("coordinator", "%s", msg.c_str());
  Abort(msg);
  return UnavailableError(msg);
}

void Coordinator::Abort(const std::string& reason) {
  if (failed_) return;
  failed_ = true;
  running_ = false;
  for (auto& ch : channels_) {
    if (ch) (void)ch->Send(EncodeAbort(reason), Deadline::After(std::chrono::seconds(1)));
  }
  for (auto& ch : channels_) {
    if (ch) ch->Close();
  }
}

void Coordinator::Shutdown() {
  if (!shut_down_ && !failed_) {
    for (auto& ch : channels_) {
      if (ch) (void)ch->Send(EncodeShutdown(), Deadline::After(std::chrono::seconds(1)));
    }
  }
  shut_down_ = true;
  running_ = false;
  for (auto& ch : channels_) {
    if (ch) ch->Close();
  }
  inbox_.reset();
}

std::vector<std::vector<double>> Coordinator::ExpertLoads() const {
  return loads_ ? loads_->Totals() : std::vector<std::vector<double>>{};
}

Status Coordinator::ValidateRequest(const GenerationRequest& req, const std::string& where) const {
  const ModelConfig& c = model_config_;
  if (req.prompt.empty()) return InvalidArgumentError(where + "empty prompt");
  for (size_t i = 0; i < req.prompt.size(); ++i) {
    if (req.prompt[i] < 0 || req.prompt[i] >= c.vocab_size) {
      return InvalidArgumentError(
          where + "prompt token " + std::to_string(i) + " = " + std::to_string(req.prompt[i]) +
          " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
    }
  }
  if (req.max_new_tokens < 0 ||
      req.max_new_tokens > runtime_.max_seq_len - static_cast<int64_t>(req.prompt.size())) {
    return InvalidArgumentError(where + "max_new_tokens must be >= 0 and prompt (" +
                                std::to_string(req.prompt.size()) + ") + max_new_tokens (" +
                                std::to_string(req.max_new_tokens) + ") within max_seq_len " +
                                std::to_string(runtime_.max_seq_len));
  }
  if (KvNeed(req) > kv_cache_tokens_) {
    return InvalidArgumentError(
        where + "prompt (" + std::to_string(req.prompt.size()) + ") + max_new_tokens (" +
        std::to_string(req.max_new_tokens) + ") exceed a worker's KV-cache budget " +
        (runtime_.cluster.kv_cache_tokens > 0
             ? "cluster.kv_cache_tokens = "
             : "(cluster.kv_cache_tokens = 0: " + std::to_string(kAutoKvSequencesPerWorker) +
                   " x max_seq_len) ") +
        std::to_string(kv_cache_tokens_));
  }
  return ValidateSamplingParams(req.sampling).WithContext(where + "sampling");
}

StatusOr<StepOutcome> Coordinator::RunStep(std::vector<std::vector<WorkRequest>> add,
                                           std::vector<std::vector<int64_t>> release,
                                           bool want_logits) {
  const int n = runtime_.cluster.workers;
  if (!inbox_ || failed_ || shut_down_) {
    return FailedPreconditionError(
        "the coordinator is not running (start failed, aborted or shut down)");
  }
  if (static_cast<int>(add.size()) != n || static_cast<int>(release.size()) != n) {
    return InvalidArgumentError("RunStep needs one add and one release list per worker");
  }
  const int64_t step = next_step_++;
  for (int w = 0; w < n; ++w) {
    StepMsg msg;
    msg.step = step;
    msg.add = std::move(add[w]);
    msg.release = std::move(release[w]);
    msg.want_logits = want_logits;
    Status s = channels_[w]->Send(EncodeStep(msg), Deadline::After(kSendTimeout));
    if (!s.ok()) return WorkerFailure(w, s.message());
  }
  const auto step_timeout = std::chrono::milliseconds(runtime_.cluster.step_timeout_ms);
  StepOutcome out;
  out.tokens.resize(n);
  out.kv_used_tokens.assign(n, 0);
  out.link_traffic.resize(n);
  std::vector<bool> replied(n, false);
  int replies = 0;
  const Deadline deadline = Deadline::After(step_timeout);
  while (replies < n) {
    int rank = -1;
    auto text = NextMessage(deadline, &rank);
    if (!text.ok()) {
      if (text.status().code() != StatusCode::kDeadlineExceeded) return text.status();
      int late = 0;
      while (replied[late]) ++late;
      return WorkerFailure(late, "no result for step " + std::to_string(step) +
                                     " within cluster.step_timeout_ms (" +
                                     std::to_string(step_timeout.count()) + " ms)");
    }
    StepResultMsg res;
    Status s = DecodeStepResult(*text, channels_[rank]->peer(), &res);
    if (s.ok() && (res.step != step || replied[rank])) {
      s = InvalidArgumentError("answered step " + std::to_string(res.step) + " during step " +
                               std::to_string(step));
    }
    if (s.ok() && res.kv_capacity_tokens != kv_cache_tokens_) {
      s = InvalidArgumentError("reports a KV budget of " + std::to_string(res.kv_capacity_tokens) +
                               " positions, it was assigned " + std::to_string(kv_cache_tokens_));
    }
    if (s.ok() && static_cast<int>(res.link_traffic.dispatch_bytes.size()) != n) {
      s = InvalidArgumentError("reports link traffic for " +
                               std::to_string(res.link_traffic.dispatch_bytes.size()) +
                               " ranks, the cluster has " + std::to_string(n));
    }
    if (s.ok()) s = loads_->Add(res.expert_counts);
    if (!s.ok()) return WorkerFailure(rank, s.message());
    replied[rank] = true;
    ++replies;
    out.batch_tokens += res.batch_tokens;
    out.tokens[rank] = std::move(res.tokens);
    out.kv_used_tokens[rank] = res.kv_used_tokens;
    out.kv_used_total += res.kv_used_tokens;
    out.kv_capacity_total += res.kv_capacity_tokens;
    out.link_traffic[rank] = std::move(res.link_traffic);
  }
  loads_->EndStep();
  return out;
}

BatchOutcome Coordinator::Generate(const std::vector<GenerationRequest>& requests,
                                   bool keep_logits) {
  BatchOutcome out;
  for (size_t r = 0; r < requests.size(); ++r) {
    out.status = ValidateRequest(requests[r], "request " + std::to_string(r) + ": ");
    if (!out.status.ok()) return out;
  }
  if (!inbox_ || failed_ || shut_down_) {
    out.status = FailedPreconditionError(
        "the coordinator is not running (start failed, aborted "
        "or shut down)");
    return out;
  }
  const int n = runtime_.cluster.workers;
  out.results.resize(requests.size());
  out.finished.assign(requests.size(), false);
  std::vector<std::vector<WorkRequest>> pending(n);
  std::vector<int> owner(requests.size(), -1);
  std::vector<int64_t> reserved(n, 0);  // KV positions reserved on each worker
  std::deque<size_t> waiting;           // requests not started yet, in order
  size_t remaining = 0;
  for (size_t r = 0; r < requests.size(); ++r) {
    out.stats.prompt_tokens += static_cast<int64_t>(requests[r].prompt.size());
    if (requests[r].max_new_tokens == 0) {
      out.finished[r] = true;
      out.results[r].finish_reason = "length";
      continue;
    }
    waiting.push_back(r);
    ++remaining;
  }
  const auto start = TransportClock::now();
  while (remaining > 0) {
    // Start, in order, what fits: the least-loaded worker (ties to the lowest rank) has the most
    // room; when even it cannot take the next request, that request waits for one to finish.
    while (!waiting.empty()) {
      const size_t r = waiting.front();
      const int w =
          static_cast<int>(std::min_element(reserved.begin(), reserved.end()) - reserved.begin());
      if (reserved[w] + KvNeed(requests[r]) > kv_cache_tokens_) break;
      reserved[w] += KvNeed(requests[r]);
      owner[r] = w;
      pending[w].push_back({static_cast<int64_t>(r), requests[r]});
      waiting.pop_front();
    }
    const auto t0 = TransportClock::now();
    auto step = RunStep(std::move(pending), std::vector<std::vector<int64_t>>(n), keep_logits);
    pending.assign(n, {});
    if (!step.ok()) {
      out.status = step.status();
      return out;
    }
    int64_t tokens_out = 0;
    const auto now = TransportClock::now();
    for (int rank = 0; rank < n; ++rank) {
      for (auto& t : step->tokens[rank]) {
        if (t.id < 0 || t.id >= static_cast<int64_t>(requests.size()) || out.finished[t.id] ||
            owner[t.id] != rank) {
          out.status = WorkerFailure(
              rank, "returned a token for request " + std::to_string(t.id) + " it does not serve");
          return out;
        }
        GenerationResult& g = out.results[t.id];
        if (g.tokens.empty()) g.time_to_first_token_s = Seconds(start, now);
        g.tokens.push_back(t.token);
        if (keep_logits) g.logits.push_back(std::move(t.logits));
        ++tokens_out;
        if (t.finished) {
          g.finish_reason = t.finish_reason;
          out.finished[t.id] = true;
          reserved[rank] -= KvNeed(requests[t.id]);
          --remaining;
        }
      }
    }
    ++out.stats.steps;
    const double secs = Seconds(t0, TransportClock::now());
    (step->batch_tokens == tokens_out ? out.stats.decode_seconds : out.stats.prefill_seconds) +=
        secs;
  }
  for (const auto& g : out.results) out.stats.generated_tokens += g.tokens.size();
  LogLoadSummary();
  return out;
}

void Coordinator::LogLoadSummary() {
  const auto loads = loads_->Totals();
  auto balance = plan_.Balance(loads);
  if (!balance.ok()) return;
  // What a fresh EPLB plan from the observed loads would give (the plan is not changed live).
  StatusOr<std::vector<LayerBalance>> rebalanced = InvalidArgumentError("not eplb");
  if (runtime_.cluster.placement == "eplb") {
    auto eplb = MakeClusterPlan(runtime_.cluster, model_config_, loads);
    if (eplb.ok()) rebalanced = eplb->Balance(loads);
  }
  for (size_t l = 0; l < balance->size(); ++l) {
    double total = 0;
    for (double v : loads[l]) total += v;
    char eplb_text[96] = "";
    if (rebalanced.ok()) {
      std::snprintf(eplb_text, sizeof(eplb_text), ", %.3f if EPLB re-planned from these loads",
                    (*rebalanced)[l].balancedness());
    }
    LOG_INFO("placement",
             "expert load, last %lld steps, layer %d: %.0f token-expert pairs, max/mean worker "
             "load %.3f with the plan in force%s",
             static_cast<long long>(loads_->steps()), plan_.moe_layers[l], total,
             (*balance)[l].balancedness(), eplb_text);
  }
}

}  // namespace switchyard
