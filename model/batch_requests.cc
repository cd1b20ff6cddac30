#include "model/batch_requests.h"

#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

namespace switchyard {

using json = nlohmann::json;

StatusOr<std::vector<BatchRequest>> ParseBatchRequests(const std::string& text,
                                                       const std::string& origin,
                                                       const Tokenizer* tokenizer) {
  std::vector<BatchRequest> out;
  std::istringstream in(text);
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = origin + " line " + std::to_string(number);
    json obj = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (obj.is_discarded() || !obj.is_object()) {
      return InvalidArgumentError(where + ": not a JSON object");
    }
    static const char* kKnown[] = {"id",    "prompt_ids", "prompt", "max_tokens", "temperature",
                                   "top_k", "top_p",      "seed",   "ignore_eos"};
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      bool known = false;
      for (const char* k : kKnown) known |= it.key() == k;
      if (!known) return InvalidArgumentError(where + ": unknown field '" + it.key() + "'");
    }
    BatchRequest req;
    req.id = std::to_string(number);
    if (obj.contains("id")) {
      if (!obj["id"].is_string() && !obj["id"].is_number_integer()) {
        return InvalidArgumentError(where + ": 'id' must be a string or an integer");
      }
      req.id = obj["id"].is_string() ? obj["id"].get<std::string>() : obj["id"].dump();
    }
    if (obj.contains("prompt") == obj.contains("prompt_ids")) {
      return InvalidArgumentError(where + ": give exactly one of 'prompt' and 'prompt_ids'");
    }
    if (obj.contains("prompt")) {
      if (!obj["prompt"].is_string() || obj["prompt"].get<std::string>().empty()) {
        return InvalidArgumentError(where + ": 'prompt' must be a non-empty string");
      }
      if (tokenizer == nullptr) {
        return InvalidArgumentError(where +
                                    ": 'prompt' needs a tokenizer (the checkpoint has no usable "
                                    "tokenizer.json); give 'prompt_ids' instead");
      }
      auto ids = tokenizer->Encode(obj["prompt"].get<std::string>(), /*add_special_tokens=*/true);
      if (!ids.ok()) return ids.status().WithContext(where + ": 'prompt'");
      if (ids->empty()) return InvalidArgumentError(where + ": 'prompt' encodes to no tokens");
      req.request.prompt = std::move(*ids);
    }
    if (obj.contains("prompt_ids")) {
      const json& ids = obj["prompt_ids"];
      if (!ids.is_array() || ids.empty()) {
        return InvalidArgumentError(where + ": 'prompt_ids' must be a non-empty list of token ids");
      }
      for (const json& id : ids) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
            id.get<int64_t>() > std::numeric_limits<int32_t>::max()) {
          return InvalidArgumentError(where + ": 'prompt_ids' holds " + id.dump() +
                                      ", not a token id");
        }
        req.request.prompt.push_back(id.get<int32_t>());
      }
    }
    auto number_field = [&](const char* key, double fallback, double* value) -> Status {
      if (!obj.contains(key)) {
        *value = fallback;
        return OkStatus();
      }
      if (!obj[key].is_number()) {
        return InvalidArgumentError(where + ": '" + key + "' must be a number");
      }
      *value = obj[key].get<double>();
      return OkStatus();
    };
    double max_tokens, temperature, top_k, top_p, seed;
    RETURN_IF_ERROR(number_field("max_tokens", 16, &max_tokens));
    RETURN_IF_ERROR(number_field("temperature", 0, &temperature));
    RETURN_IF_ERROR(number_field("top_k", 0, &top_k));
    RETURN_IF_ERROR(number_field("top_p", 1, &top_p));
    RETURN_IF_ERROR(number_field("seed", 0, &seed));
    if (max_tokens < 0 || max_tokens != static_cast<int64_t>(max_tokens)) {
      return InvalidArgumentError(where + ": 'max_tokens' must be an integer >= 0");
    }
    if (top_k < 0 || top_k != static_cast<int64_t>(top_k) || seed < 0) {
      return InvalidArgumentError(where + ": 'top_k' and 'seed' must be integers >= 0");
    }
    req.request.max_new_tokens = static_cast<int64_t>(max_tokens);
    req.request.sampling = {static_cast<float>(temperature), static_cast<int64_t>(top_k),
                            static_cast<float>(top_p), static_cast<uint64_t>(seed)};
    RETURN_IF_ERROR(ValidateSamplingParams(req.request.sampling).WithContext(where));
    if (obj.contains("ignore_eos")) {
      if (!obj["ignore_eos"].is_boolean()) {
        return InvalidArgumentError(where + ": 'ignore_eos' must be true or false");
      }
      req.request.ignore_eos = obj["ignore_eos"].get<bool>();
    }
    out.push_back(std::move(req));
  }
  if (out.empty()) return InvalidArgumentError(origin + ": no requests");
  return out;
}

std::string FormatBatchResult(const BatchRequest& request, const GenerationResult& result,
                              const Tokenizer* tokenizer) {
  json obj = {{"id", request.id},
              {"tokens", result.tokens},
              {"finish_reason", result.finish_reason},
              {"prompt_tokens", request.request.prompt.size()},
              {"completion_tokens", result.tokens.size()},
              {"time_to_first_token_s", result.time_to_first_token_s}};
  if (tokenizer != nullptr) {
    auto text = tokenizer->Decode(result.tokens, /*skip_special_tokens=*/true);
    // Generated ids come from the model's vocab; an id the tokenizer lacks is reported in place.
    obj["text"] = text.ok() ? *text : "<" + text.status().message() + ">";
  }
  return obj.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace switchyard
