#include "model/engine.h"

#include <algorithm>
#include <chrono>

#include "common/logging.h"

namespace switchyard {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Running {
  int64_t slot = -1;
  int64_t prefilled = 0;  // prompt tokens already in the cache
  int32_t next = -1;      // sampled token waiting to be fed
  bool done = false;
  std::unique_ptr<Sampler> sampler;
};

}  // namespace

StatusOr<std::unique_ptr<Engine>> Engine::Load(const std::string& model_dir,
                                               const RuntimeConfig& runtime) {
  ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  LOG_INFO("engine", "model %s", config.Summary().c_str());
  LoadSelection selection;
  ASSIGN_OR_RETURN(selection.expert_format, ParseExpertFormat(runtime.expert_format));
  ASSIGN_OR_RETURN(auto weights, LoadModelWeights(model_dir, config, selection));
  auto model = std::make_unique<Model>(std::move(config), std::move(weights));
  auto experts = std::make_unique<LocalExpertRunner>(model->config(), model->weights());
  auto engine = std::make_unique<Engine>(model.get(), experts.get(), runtime);
  engine->owned_model_ = std::move(model);
  engine->owned_experts_ = std::move(experts);
  return engine;
}

Engine::Engine(const Model* model, ExpertRunner* experts, const RuntimeConfig& runtime)
    : model_(model),
      experts_(experts),
      runtime_(runtime),
      cache_(std::make_unique<KvCache>(model->config(), runtime.max_seq_len)) {}

StatusOr<std::vector<GenerationResult>> Engine::Generate(
    const std::vector<GenerationRequest>& requests, bool keep_logits, GenerationStats* stats) {
  const ModelConfig& c = model_->config();
  for (size_t r = 0; r < requests.size(); ++r) {
    const auto& req = requests[r];
    const std::string where = "request " + std::to_string(r) + ": ";
    if (req.prompt.empty()) return InvalidArgumentError(where + "empty prompt");
    for (size_t i = 0; i < req.prompt.size(); ++i) {
      if (req.prompt[i] < 0 || req.prompt[i] >= c.vocab_size) {
        return InvalidArgumentError(
            where + "prompt token " + std::to_string(i) + " = " + std::to_string(req.prompt[i]) +
            " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
      }
    }
    if (req.max_new_tokens < 0) {
      return InvalidArgumentError(where + "max_new_tokens must be >= 0");
    }
    // Compared without adding, so a huge max_new_tokens cannot overflow past the check.
    if (req.max_new_tokens > runtime_.max_seq_len - static_cast<int64_t>(req.prompt.size())) {
      return InvalidArgumentError(where + "prompt (" + std::to_string(req.prompt.size()) +
                                  ") + max_new_tokens (" + std::to_string(req.max_new_tokens) +
                                  ") exceeds max_seq_len " + std::to_string(runtime_.max_seq_len));
    }
    RETURN_IF_ERROR(ValidateSamplingParams(req.sampling).WithContext(where + "sampling"));
  }

  std::vector<GenerationResult> results(requests.size());
  std::vector<Running> running(requests.size());
  GenerationStats local_stats;
  const double start = Now();
  for (size_t r = 0; r < requests.size(); ++r) {
    running[r].slot = cache_->Allocate();
    running[r].sampler = std::make_unique<Sampler>(requests[r].sampling);
    running[r].done = requests[r].max_new_tokens == 0;
    if (running[r].done) results[r].finish_reason = "length";
    local_stats.prompt_tokens += static_cast<int64_t>(requests[r].prompt.size());
  }
  auto release = [&] {
    for (auto& run : running) {
      if (run.slot >= 0) cache_->Free(run.slot);
      run.slot = -1;
    }
  };

  Tensor logits;
  while (true) {
    ForwardBatch batch;
    std::vector<size_t> owner;  // request per chunk
    int64_t budget = runtime_.max_batch_tokens;
    // Decode tokens first: running requests never wait behind a long prompt.
    for (size_t r = 0; r < requests.size(); ++r) {
      Running& run = running[r];
      if (run.done || run.next < 0 || budget <= 0) continue;
      batch.tokens.push_back(run.next);
      batch.chunks.push_back({run.slot, 1, false, true});
      owner.push_back(r);
      --budget;
    }
    bool has_prefill = false;
    for (size_t r = 0; r < requests.size() && budget > 0; ++r) {
      Running& run = running[r];
      const int64_t len = static_cast<int64_t>(requests[r].prompt.size());
      if (run.done || run.prefilled >= len) continue;
      const int64_t take = std::min(budget, len - run.prefilled);
      batch.tokens.insert(batch.tokens.end(), requests[r].prompt.begin() + run.prefilled,
                          requests[r].prompt.begin() + run.prefilled + take);
      const bool last = run.prefilled + take == len;
      batch.chunks.push_back({run.slot, take, false, last});
      owner.push_back(r);
      run.prefilled += take;
      budget -= take;
      has_prefill = true;
    }
    if (batch.chunks.empty()) break;
    const double t0 = Now();
    Status status = model_->Forward(batch, cache_.get(), experts_, &logits);
    if (!status.ok()) {
      release();
      return status;
    }
    const double t1 = Now();
    (has_prefill ? local_stats.prefill_seconds : local_stats.decode_seconds) += t1 - t0;
    ++local_stats.steps;
    int64_t row = 0;
    for (size_t ci = 0; ci < batch.chunks.size(); ++ci) {
      if (!batch.chunks[ci].want_logits) continue;
      const size_t r = owner[ci];
      Running& run = running[r];
      GenerationResult& res = results[r];
      const float* lrow = logits.data() + row * c.vocab_size;
      ++row;
      const int32_t token = run.sampler->Sample(lrow, c.vocab_size);
      if (res.tokens.empty()) res.time_to_first_token_s = t1 - start;
      res.tokens.push_back(token);
      if (keep_logits) res.logits.emplace_back(lrow, lrow + c.vocab_size);
      run.next = token;
      const bool eos =
          !requests[r].ignore_eos &&
          std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), token) != c.eos_token_ids.end();
      if (eos || static_cast<int64_t>(res.tokens.size()) >= requests[r].max_new_tokens) {
        run.done = true;
        res.finish_reason = eos ? "stop" : "length";
        cache_->Free(run.slot);
        run.slot = -1;
      }
    }
  }
  release();
  for (const auto& res : results) local_stats.generated_tokens += res.tokens.size();
  if (stats != nullptr) *stats = local_stats;
  return results;
}

}  // namespace switchyard
