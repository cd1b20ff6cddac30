#include "worker/step_runner.h"

#include <algorithm>

namespace switchyard {

StepRunner::StepRunner(const Model* model, int64_t max_seq_len, int64_t max_batch_tokens,
                       int64_t kv_budget_tokens)
    : model_(model),
      max_seq_len_(max_seq_len),
      max_batch_tokens_(max_batch_tokens),
      kv_budget_tokens_(kv_budget_tokens),
      cache_(model->config(), max_seq_len) {}

Status StepRunner::Add(const WorkRequest& work) {
  const std::string where = "request " + std::to_string(work.id) + ": ";
  const GenerationRequest& req = work.request;
  const int64_t vocab = model_->config().vocab_size;
  if (running_.count(work.id)) return InvalidArgumentError(where + "already running");
  if (req.prompt.empty()) return InvalidArgumentError(where + "empty prompt");
  for (size_t i = 0; i < req.prompt.size(); ++i) {
    if (req.prompt[i] < 0 || req.prompt[i] >= vocab) {
      return InvalidArgumentError(where + "prompt token " + std::to_string(i) + " = " +
                                  std::to_string(req.prompt[i]) +
                                  " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
    }
  }
  if (req.max_new_tokens < 1 ||
      req.max_new_tokens > max_seq_len_ - static_cast<int64_t>(req.prompt.size())) {
    return InvalidArgumentError(where + "max_new_tokens " + std::to_string(req.max_new_tokens) +
                                " must be >= 1 and fit max_seq_len " +
                                std::to_string(max_seq_len_) + " with the prompt (" +
                                std::to_string(req.prompt.size()) + ")");
  }
  RETURN_IF_ERROR(ValidateSamplingParams(req.sampling).WithContext(where + "sampling"));
  const int64_t need = static_cast<int64_t>(req.prompt.size()) + req.max_new_tokens;
  if (kv_reserved_ + need > kv_budget_tokens_) {
    return ResourceExhaustedError(where + "needs " + std::to_string(need) + " KV positions, " +
                                  std::to_string(kv_budget_tokens_ - kv_reserved_) +
                                  " of cluster.kv_cache_tokens = " +
                                  std::to_string(kv_budget_tokens_) + " are free on this worker");
  }
  Running run;
  run.request = req;
  run.reserved = need;
  kv_reserved_ += need;
  run.slot = cache_.Allocate();
  run.sampler = std::make_unique<Sampler>(req.sampling);
  running_.emplace(work.id, std::move(run));
  return OkStatus();
}

void StepRunner::Release(int64_t id) {
  auto it = running_.find(id);
  if (it == running_.end()) return;
  cache_.Free(it->second.slot);
  kv_reserved_ -= it->second.reserved;
  running_.erase(it);
}

StatusOr<std::vector<TokenOut>> StepRunner::Step(ExpertRunner* experts, bool want_logits,
                                                 int64_t* batch_tokens) {
  const ModelConfig& c = model_->config();
  ForwardBatch batch;
  std::vector<int64_t> owner;  // request id per chunk
  int64_t budget = max_batch_tokens_;
  for (auto& [id, run] : running_) {  // decode tokens first, as the engine does
    if (run.next < 0 || budget <= 0) continue;
    batch.tokens.push_back(run.next);
    batch.chunks.push_back({run.slot, 1, false, true});
    owner.push_back(id);
    --budget;
  }
  for (auto& [id, run] : running_) {
    const int64_t len = static_cast<int64_t>(run.request.prompt.size());
    if (budget <= 0) break;
    if (run.prefilled >= len) continue;
    const int64_t take = std::min(budget, len - run.prefilled);
    const auto& p = run.request.prompt;
    batch.tokens.insert(batch.tokens.end(), p.begin() + run.prefilled,
                        p.begin() + run.prefilled + take);
    batch.chunks.push_back({run.slot, take, false, run.prefilled + take == len});
    owner.push_back(id);
    run.prefilled += take;
    budget -= take;
  }
  if (batch_tokens) *batch_tokens = static_cast<int64_t>(batch.tokens.size());
  Tensor logits;
  RETURN_IF_ERROR(model_->Forward(batch, &cache_, experts, &logits));
  std::vector<TokenOut> out;
  int64_t row = 0;
  for (size_t ci = 0; ci < batch.chunks.size(); ++ci) {
    if (!batch.chunks[ci].want_logits) continue;
    auto it = running_.find(owner[ci]);
    Running& run = it->second;
    const float* lrow = logits.data() + row * c.vocab_size;
    ++row;
    TokenOut t;
    t.id = it->first;
    t.token = run.sampler->Sample(lrow, c.vocab_size);
    if (want_logits) t.logits.assign(lrow, lrow + c.vocab_size);
    run.next = t.token;
    ++run.generated;
    const bool eos =
        !run.request.ignore_eos &&
        std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), t.token) != c.eos_token_ids.end();
    if (eos || run.generated >= run.request.max_new_tokens) {
      t.finished = true;
      t.finish_reason = eos ? "stop" : "length";
      cache_.Free(run.slot);
      kv_reserved_ -= run.reserved;
      running_.erase(it);
    }
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace switchyard
