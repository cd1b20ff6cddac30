// StepRunner: one worker's sequences, advanced one forward step at a time.
//
// The same scheduling and sampling as Engine::Generate (decode tokens first, then prompt chunks
// up to max_batch_tokens; one seeded Sampler per request; stop on length or EOS), but driven
// from outside, step by step, so that every worker of a cluster runs every step in lockstep —
// with an empty batch when it has nothing to do (the expert runner still joins the collectives).
// Not thread-safe; one owner.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "coordinator/control/protocol.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/sampler.h"

namespace switchyard {

class StepRunner {
 public:
  // `model` must outlive the runner. `kv_budget_tokens` (>= 1; the coordinator's
  // cluster.kv_cache_tokens) bounds the KV positions reserved by the running requests, each
  // reserving prompt + max_new_tokens.
  StepRunner(const Model* model, int64_t max_seq_len, int64_t max_batch_tokens,
             int64_t kv_budget_tokens);

  // Starts a request. Errors (InvalidArgument naming the request id): empty prompt, ids outside
  // the vocabulary, prompt + max_new_tokens > max_seq_len, bad sampling parameters, duplicate id;
  // ResourceExhausted when its reservation does not fit the remaining KV budget (the coordinator
  // admits only what fits, so this means a coordinator bug or a mismatched budget).
  Status Add(const WorkRequest& work);

  // Drops a request (cancelled by the coordinator) and frees its KV slot. Unknown ids are
  // ignored (the request may have finished in the step that crossed the cancel). Never fails.
  void Release(int64_t id);

  // Runs one forward step over `experts` (possibly with zero tokens) and returns one TokenOut per
  // request that produced a token; finished requests release their KV slot. With `want_logits`,
  // each TokenOut carries its logits row. Errors: the model's / expert runner's.
  StatusOr<std::vector<TokenOut>> Step(ExpertRunner* experts, bool want_logits,
                                       int64_t* batch_tokens = nullptr);

  // Requests still running.
  size_t active() const { return running_.size(); }
  // KV positions cached now (over the running requests) and the budget.
  int64_t kv_positions_in_use() const { return cache_.PositionsInUse(); }
  int64_t kv_budget_tokens() const { return kv_budget_tokens_; }
  // KV positions reserved by the running requests (sum of prompt + max_new_tokens).
  int64_t kv_reserved_tokens() const { return kv_reserved_; }

 private:
  struct Running {
    GenerationRequest request;
    int64_t reserved = 0;  // KV positions: prompt + max_new_tokens
    int64_t slot = -1;
    int64_t prefilled = 0;
    int32_t next = -1;
    int64_t generated = 0;
    std::unique_ptr<Sampler> sampler;
  };

  const Model* model_;
  int64_t max_seq_len_;
  int64_t max_batch_tokens_;
  int64_t kv_budget_tokens_;
  int64_t kv_reserved_ = 0;
  KvCache cache_;
  std::map<int64_t, Running> running_;  // by request id: a stable order on every step
};

}  // namespace switchyard
