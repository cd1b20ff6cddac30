#include "coordinator/serving/serving_engine.h"

#include <algorithm>

#include "common/logging.h"
#include "coordinator/serving/stop_strings.h"

namespace switchyard {
namespace {

using ServeClock = std::chrono::steady_clock;

double Seconds(ServeClock::time_point a, ServeClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int64_t KvNeed(const GenerationRequest& g) {
  return static_cast<int64_t>(g.prompt.size()) + g.max_new_tokens;
}

}  // namespace

struct ServingEngine::Active {
  Active(int64_t id_, ServeRequest req_, ServeCallback cb_, const Tokenizer& tok)
      : id(id_),
        req(std::move(req_)),
        cb(std::move(cb_)),
        decoder(tok, /*skip_special_tokens=*/true),
        stop(req.stop),
        queued(ServeClock::now()) {}
  int64_t id;
  ServeRequest req;
  ServeCallback cb;
  StreamingDecoder decoder;
  StopMatcher stop;
  int worker = -1;
  int64_t generated = 0;
  ServeClock::time_point queued, first_token, last_token;
};

ServingEngine::ServingEngine(Coordinator* coordinator, const Tokenizer* tokenizer,
                             ServingMetrics* metrics, ServingOptions options)
    : coordinator_(coordinator),
      tokenizer_(tokenizer),
      metrics_(metrics),
      options_(options),
      worker_load_(coordinator->num_workers(), 0),
      release_next_(coordinator->num_workers()),
      stats_(options.stats_interval, options.stats_clock ? options.stats_clock : SteadyClock(),
             options.stats_sink) {
  thread_ = std::thread([this] { Loop(); });
}

ServingEngine::~ServingEngine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
  // The loop has ended: whatever is left is aborted (the workers are shut down by the owner).
  std::deque<std::unique_ptr<Active>> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued.swap(queue_);
  }
  for (auto& a : queued) running_.emplace(a->id, std::move(a));
  while (!running_.empty()) Finish(running_.begin()->first, "abort");
}

bool ServingEngine::healthy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return !failed_ && !stop_ && coordinator_->healthy();
}

StatusOr<int64_t> ServingEngine::Submit(ServeRequest request, ServeCallback callback) {
  RETURN_IF_ERROR(coordinator_->ValidateRequest(request.gen, ""));
  std::lock_guard<std::mutex> lock(mu_);
  if (failed_ || stop_ || !coordinator_->healthy()) {
    return UnavailableError("the cluster is not serving (a worker failed or it is shutting down)");
  }
  if (static_cast<int64_t>(queue_.size()) >= options_.max_queue) {
    return ResourceExhaustedError("the request queue is full (" +
                                  std::to_string(options_.max_queue) + " waiting); retry later");
  }
  const int64_t id = next_id_++;
  queue_.push_back(
      std::make_unique<Active>(id, std::move(request), std::move(callback), *tokenizer_));
  wake_.notify_all();
  return id;
}

void ServingEngine::Cancel(int64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancels_.insert(id);
  }
  wake_.notify_all();
}

int64_t ServingEngine::Waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(queue_.size());
}

void ServingEngine::PublishQueue() {
  metrics_->SetQueue(static_cast<int64_t>(running_.size()), Waiting());
}

void ServingEngine::Loop() {
  const int n = coordinator_->num_workers();
  auto last_step = ServeClock::now();
  while (true) {
    std::set<int64_t> cancels;
    std::vector<std::unique_ptr<Active>> admitted, dropped;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // A request that a stop string ended is still on its worker: the next step releases it
      // now, not a keepalive later (its KV positions stay reserved until then).
      bool release_pending = false;
      for (const auto& r : release_next_) release_pending |= !r.empty();
      if (running_.empty() && !release_pending) {
        // Idle: sleep until work arrives, a keepalive step or a stats line is due. The stats
        // clock may be a test clock: only the time left on it is used.
        auto until = last_step + options_.keepalive;
        if (stats_.enabled()) {
          until = std::min(
              until, ServeClock::now() +
                         std::chrono::duration_cast<ServeClock::duration>(stats_.time_to_due()));
        }
        wake_.wait_until(lock, until,
                         [&] { return stop_ || !queue_.empty() || !cancels_.empty(); });
      }
      if (stop_) return;
      cancels.swap(cancels_);
      for (auto it = queue_.begin(); it != queue_.end();) {
        if (cancels.count((*it)->id)) {
          dropped.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      // In order while the head fits: the least-loaded worker has the most KV room left.
      while (!queue_.empty() &&
             static_cast<int64_t>(running_.size() + admitted.size()) < options_.max_running) {
        const int w = static_cast<int>(std::min_element(worker_load_.begin(), worker_load_.end()) -
                                       worker_load_.begin());
        const int64_t need = KvNeed(queue_.front()->req.gen);
        if (worker_load_[w] + need > coordinator_->kv_cache_tokens()) break;
        worker_load_[w] += need;
        queue_.front()->worker = w;
        admitted.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    for (auto& a : dropped) {
      const int64_t id = a->id;
      running_.emplace(id, std::move(a));
      Finish(id, "abort");
    }
    for (int64_t id : cancels) {
      if (running_.count(id)) Finish(id, "abort");
    }
    std::vector<std::vector<WorkRequest>> add(n);
    for (auto& a : admitted) {
      const auto now = ServeClock::now();
      metrics_->OnScheduled(Seconds(a->queued, now));
      const int64_t id = a->id;
      const GenerationRequest& g = a->req.gen;
      const bool empty = g.max_new_tokens == 0;
      if (!empty) add[a->worker].push_back({id, g});
      running_.emplace(id, std::move(a));
      if (empty) Finish(id, "length");
    }
    PublishQueue();
    stats_.Maybe(static_cast<int64_t>(running_.size()), Waiting(), kv_used_, kv_capacity_);
    bool any_release = false;
    for (const auto& r : release_next_) any_release |= !r.empty();
    const bool any_add = !admitted.empty();
    if (running_.empty() && !any_add && !any_release &&
        ServeClock::now() < last_step + options_.keepalive) {
      continue;
    }
    std::vector<std::vector<int64_t>> release(n);
    release.swap(release_next_);
    release_next_.assign(n, {});
    last_step = ServeClock::now();
    auto step = coordinator_->RunStep(std::move(add), std::move(release), false);
    if (!step.ok()) {
      LOG_ERROR("serving", "step failed, failing every request: %s",
                step.status().ToString().c_str());
      FailAll(step.status());
      return;
    }
    int64_t decode_tokens = 0, generated = 0;  // forwarded decode tokens, tokens sampled
    for (int rank = 0; rank < n; ++rank) {
      for (const TokenOut& t : step->tokens[rank]) {
        ++generated;
        auto it = running_.find(t.id);
        if (it == running_.end() || it->second->worker != rank) {
          ++decode_tokens;  // a request dropped here but still on the worker: it was decoding
          LOG_WARN("serving", "worker rank %d returned a token for request %lld it does not serve",
                   rank, static_cast<long long>(t.id));
          continue;
        }
        // A request's first token comes from its last prompt chunk, the others from a decode.
        if (it->second->generated > 0) ++decode_tokens;
        OnToken(*it->second, t);
      }
    }
    ObserveStep(*step, decode_tokens, generated);
    PublishQueue();
  }
}

void ServingEngine::ObserveStep(const StepOutcome& step, int64_t decode_tokens, int64_t generated) {
  kv_used_ = step.kv_used_total;
  kv_capacity_ = step.kv_capacity_total;
  metrics_->SetKvCache(kv_used_, kv_capacity_);
  stats_.AddTokens(std::max<int64_t>(0, step.batch_tokens - decode_tokens), generated);
  // Expert loads and link counters: not every step (cheap, but many series), and whenever the
  // cluster has nothing left running so that /metrics is exact at rest. Link totals are
  // cumulative, so skipped steps lose nothing.
  if (++steps_since_loads_ < kLoadMetricsEverySteps && !running_.empty()) return;
  steps_since_loads_ = 0;
  Status s = metrics_->SetExpertLoads(coordinator_->ExpertLoads(), coordinator_->plan().moe_layers);
  if (!s.ok()) LOG_WARN("serving", "expert-load metrics: %s", s.ToString().c_str());
  s = metrics_->ObserveLinkTraffic(step.link_traffic);
  if (!s.ok()) LOG_WARN("serving", "link-traffic metrics: %s", s.ToString().c_str());
}

void ServingEngine::OnToken(Active& a, const TokenOut& t) {
  const auto now = ServeClock::now();
  if (a.generated++ == 0) {
    a.first_token = now;
  } else {
    metrics_->OnInterToken(Seconds(a.last_token, now));
  }
  a.last_token = now;
  auto piece = a.decoder.Push(t.token);
  if (!piece.ok()) {
    LOG_WARN("serving", "request %lld: %s", static_cast<long long>(a.id),
             piece.status().ToString().c_str());
  }
  bool stopped = false;
  ServeEvent ev;
  ev.new_tokens = 1;
  ev.text = a.stop.Push(piece.ok() ? *piece : "", &stopped);
  if (t.finished && !stopped) {
    ev.text += a.stop.Push(a.decoder.Flush(), &stopped);
    if (!stopped) ev.text += a.stop.Flush();
  }
  a.cb(ev);
  if (stopped) {
    // The stop text ends the request here; the worker still holds it unless it finished too.
    if (!t.finished) release_next_[a.worker].push_back(a.id);
    Finish(a.id, "stop");
  } else if (t.finished) {
    Finish(a.id, t.finish_reason);
  }
}

void ServingEngine::Finish(int64_t id, const std::string& reason, const Status& error) {
  auto it = running_.find(id);
  if (it == running_.end()) return;
  std::unique_ptr<Active> a = std::move(it->second);
  running_.erase(it);
  const GenerationRequest& g = a->req.gen;
  if (a->worker >= 0) {
    worker_load_[a->worker] -= static_cast<int64_t>(g.prompt.size()) + g.max_new_tokens;
    // Cancelled while the worker still runs it: free its KV cache at the next step.
    if (reason == "abort") release_next_[a->worker].push_back(id);
  }
  const auto now = ServeClock::now();
  metrics_->OnFinished(reason, static_cast<int64_t>(g.prompt.size()), a->generated,
                       a->generated > 0 ? Seconds(a->queued, a->first_token) : 0,
                       Seconds(a->queued, now));
  ServeEvent ev;
  ev.finished = true;
  ev.finish_reason = reason;
  ev.error = error;
  ev.prompt_tokens = static_cast<int64_t>(g.prompt.size());
  ev.completion_tokens = a->generated;
  a->cb(ev);
}

void ServingEngine::FailAll(const Status& error) {
  std::deque<std::unique_ptr<Active>> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    failed_ = true;
    queued.swap(queue_);
  }
  for (auto& a : queued) running_.emplace(a->id, std::move(a));
  // The workers are aborted: no KV cache is held any more (not what the last step reported).
  kv_used_ = 0;
  metrics_->SetKvCache(kv_used_, kv_capacity_);
  while (!running_.empty()) Finish(running_.begin()->first, "error", error);
  PublishQueue();
}

}  // namespace switchyard
