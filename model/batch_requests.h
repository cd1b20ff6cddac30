// Batch requests for `switchyard run`: one JSON object per line in, one per line out.
//
// Input line: {"id": "a" (optional; default the line number), "prompt_ids": [1, 2, 3] or
//   "prompt": "text" (one of the two; text needs a tokenizer), "max_tokens": 16, "temperature": 0,
//   "top_k": 0, "top_p": 1, "seed": 0, "ignore_eos": false}.
// Output line: {"id", "tokens", "finish_reason", "prompt_tokens", "completion_tokens",
//   "time_to_first_token_s"} plus "text" (the decoded tokens, special tokens left out) when a
//   tokenizer is given. Blank lines are skipped; any other bad line is an error naming the file,
//   the line number and the field, and nothing runs.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "model/engine.h"
#include "model/tokenizer.h"

namespace switchyard {

struct BatchRequest {
  std::string id;
  GenerationRequest request;
};

// Parses the JSONL `text` (`origin` names it in errors). `tokenizer` (may be null; not owned)
// encodes "prompt" texts with special tokens added (BOS); without one a "prompt" is an error.
StatusOr<std::vector<BatchRequest>> ParseBatchRequests(const std::string& text,
                                                       const std::string& origin,
                                                       const Tokenizer* tokenizer = nullptr);
// One output line (no newline). With a tokenizer (may be null) it carries "text" too.
std::string FormatBatchResult(const BatchRequest& request, const GenerationResult& result,
                              const Tokenizer* tokenizer = nullptr);

}  // namespace switchyard
