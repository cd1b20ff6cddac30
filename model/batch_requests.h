// Batch requests for `switchyard run`: one JSON object per line in, one per line out.
//
// Input line: {"id": "a" (optional; default the line number), "prompt_ids": [1, 2, 3],
//   "max_tokens": 16, "temperature": 0, "top_k": 0, "top_p": 1, "seed": 0, "ignore_eos": false}.
// Output line: {"id", "tokens", "finish_reason", "prompt_tokens", "completion_tokens",
//   "time_to_first_token_s"}. Blank lines are skipped; any other bad line is an error naming the
// file, the line number and the field, and nothing runs.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "model/engine.h"

namespace switchyard {

struct BatchRequest {
  std::string id;
  GenerationRequest request;
};

StatusOr<std::vector<BatchRequest>> ParseBatchRequests(const std::string& text,
                                                       const std::string& origin);
std::string FormatBatchResult(const BatchRequest& request, const GenerationResult& result);

}  // namespace switchyard
