#include "coordinator/control/protocol.h"

#include <algorithm>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace switchyard {
namespace {

using nlohmann::json;

// A field value that its C++ type cannot hold (Decode turns it into InvalidArgument).
struct FieldRangeError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An integer JSON number within int32: get<int32_t> would narrow silently (2^32 + 17 becomes the
// valid id 17, 1.5 becomes 1).
int32_t Int32(const json& v, const char* field) {
  if (v.is_number_unsigned() && v.get<uint64_t>() <= uint64_t{INT32_MAX}) {
    return static_cast<int32_t>(v.get<uint64_t>());
  }
  if (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() >= INT32_MIN &&
      v.get<int64_t>() <= INT32_MAX) {
    return static_cast<int32_t>(v.get<int64_t>());
  }
  throw FieldRangeError(std::string(field) + " " +
                        v.dump(-1, ' ', false, json::error_handler_t::replace) +
                        " is not an int32");
}

// Parses `text` and checks its type; json exceptions become InvalidArgument naming the field.
template <typename Fn>
Status Decode(const std::string& text, const std::string& from, const char* type, Fn&& fn) {
  const std::string where = "control message '" + std::string(type) + "' from " + from;
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return InvalidArgumentError(where + ": not a JSON object");
  if (!j.contains("type") || j["type"] != type) {
    return InvalidArgumentError(where + ": unexpected type " +
                                (j.contains("type") ? j["type"].dump() : "<none>"));
  }
  try {
    fn(j);
  } catch (const json::exception& e) {
    return InvalidArgumentError(where + ": " + e.what());
  } catch (const FieldRangeError& e) {
    return InvalidArgumentError(where + ": " + e.what());
  }
  return OkStatus();
}

json EncodeRequest(const WorkRequest& w) {
  const auto& r = w.request;
  return {{"id", w.id},
          {"prompt", r.prompt},
          {"max_new_tokens", r.max_new_tokens},
          {"temperature", r.sampling.temperature},
          {"top_k", r.sampling.top_k},
          {"top_p", r.sampling.top_p},
          {"seed", r.sampling.seed},
          {"ignore_eos", r.ignore_eos}};
}

WorkRequest DecodeRequest(const json& j) {
  WorkRequest w;
  w.id = j.at("id").get<int64_t>();
  auto& r = w.request;
  const json& prompt = j.at("prompt");
  if (!prompt.is_array()) throw FieldRangeError("prompt is not an array");
  for (const json& t : prompt) r.prompt.push_back(Int32(t, "prompt"));
  r.max_new_tokens = j.at("max_new_tokens").get<int64_t>();
  r.sampling.temperature = j.at("temperature").get<float>();
  r.sampling.top_k = j.at("top_k").get<int64_t>();
  r.sampling.top_p = j.at("top_p").get<float>();
  r.sampling.seed = j.at("seed").get<uint64_t>();
  r.ignore_eos = j.at("ignore_eos").get<bool>();
  return w;
}

// Ranges the JSON types do not express (see DecodeStepResult).
Status CheckStepResult(const StepResultMsg& m, const std::string& where) {
  if (m.kv_used_tokens < 0 || m.kv_capacity_tokens < 0 || m.kv_used_tokens > m.kv_capacity_tokens) {
    return InvalidArgumentError(where + ": kv_used_tokens " + std::to_string(m.kv_used_tokens) +
                                " and kv_capacity_tokens " + std::to_string(m.kv_capacity_tokens) +
                                " must satisfy 0 <= used <= capacity");
  }
  const LinkTrafficTotals& t = m.link_traffic;
  if (t.dispatch_bytes.size() != t.combine_bytes.size()) {
    return InvalidArgumentError(
        where + ": link_traffic.dispatch_bytes has " + std::to_string(t.dispatch_bytes.size()) +
        " entries, link_traffic.combine_bytes " + std::to_string(t.combine_bytes.size()));
  }
  for (size_t r = 0; r < t.dispatch_bytes.size(); ++r) {
    if (t.dispatch_bytes[r] < 0 || t.combine_bytes[r] < 0) {
      return InvalidArgumentError(where + ": link_traffic bytes to rank " + std::to_string(r) +
                                  " are negative");
    }
  }
  if (!(t.dispatch_seconds >= 0) || !(t.combine_seconds >= 0)) {
    return InvalidArgumentError(where +
                                ": link_traffic.dispatch_seconds / combine_seconds must be >= 0");
  }
  if (m.batch_tokens < 0) {
    return InvalidArgumentError(where + ": batch_tokens " + std::to_string(m.batch_tokens) +
                                " must be >= 0");
  }
  if (!(m.forward_seconds >= 0)) {
    return InvalidArgumentError(where + ": forward_seconds must be >= 0");
  }
  // Token ids and finish reasons travel on to clients and metric labels.
  for (size_t i = 0; i < m.tokens.size(); ++i) {
    const TokenOut& o = m.tokens[i];
    const std::string token =
        where + ": token " + std::to_string(i) + " (request " + std::to_string(o.id) + "): ";
    if (o.token < 0) {
      return InvalidArgumentError(token + "token id " + std::to_string(o.token) + " is negative");
    }
    if (o.finished && o.finish_reason != "stop" && o.finish_reason != "length") {
      return InvalidArgumentError(token + "finish_reason '" + o.finish_reason +
                                  "' is not stop or length");
    }
  }
  return OkStatus();
}

}  // namespace

std::string EncodeRegister(const RegisterMsg& m) {
  return json{{"type", "register"}, {"rank", m.rank}, {"host", m.host}, {"pid", m.pid}}.dump();
}

std::string EncodeAssign(const AssignMsg& m) {
  return json{{"type", "assign"},
              {"rank", m.rank},
              {"world", m.world},
              {"model_dir", m.model_dir},
              {"transport", m.transport},
              {"expert_format", m.expert_format},
              {"max_seq_len", m.max_seq_len},
              {"max_batch_tokens", m.max_batch_tokens},
              {"num_threads", m.num_threads},
              {"step_timeout_ms", m.step_timeout_ms},
              {"heartbeat_interval_ms", m.heartbeat_interval_ms},
              {"kv_cache_tokens", m.kv_cache_tokens},
              {"plan", m.plan_json},
              {"rendezvous", m.rendezvous}}
      .dump();
}

std::string EncodeReady(const ReadyMsg& m) {
  return json{{"type", "ready"},
              {"rank", m.rank},
              {"expert_bytes", m.expert_bytes},
              {"resident_bytes", m.resident_bytes},
              {"expert_slots", m.expert_slots},
              {"load_seconds", m.load_seconds}}
      .dump();
}

std::string EncodeStep(const StepMsg& m) {
  json add = json::array();
  for (const auto& w : m.add) add.push_back(EncodeRequest(w));
  return json{{"type", "step"},
              {"step", m.step},
              {"add", add},
              {"release", m.release},
              {"want_logits", m.want_logits}}
      .dump();
}

std::string EncodeStepResult(const StepResultMsg& m) {
  json tokens = json::array();
  for (const auto& t : m.tokens) {
    json o = {{"id", t.id}, {"token", t.token}, {"finished", t.finished}};
    if (t.finished) o["finish_reason"] = t.finish_reason;
    if (!t.logits.empty()) o["logits"] = t.logits;
    tokens.push_back(std::move(o));
  }
  return json{{"type", "step_done"},
              {"rank", m.rank},
              {"step", m.step},
              {"tokens", tokens},
              {"expert_counts", m.expert_counts},
              {"batch_tokens", m.batch_tokens},
              {"forward_seconds", m.forward_seconds},
              {"kv_used_tokens", m.kv_used_tokens},
              {"kv_capacity_tokens", m.kv_capacity_tokens},
              {"link_traffic",
               {{"dispatch_bytes", m.link_traffic.dispatch_bytes},
                {"combine_bytes", m.link_traffic.combine_bytes},
                {"dispatch_seconds", m.link_traffic.dispatch_seconds},
                {"combine_seconds", m.link_traffic.combine_seconds}}}}
      .dump();
}

std::string EncodeHeartbeat(int rank) { return json{{"type", "heartbeat"}, {"rank", rank}}.dump(); }

std::string EncodeError(int rank, const std::string& message) {
  return json{{"type", "error"}, {"rank", rank}, {"reason", message}}.dump();
}

std::string EncodeShutdown() { return json{{"type", "shutdown"}}.dump(); }

std::string EncodeAbort(const std::string& reason) {
  return json{{"type", "abort"}, {"reason", reason}}.dump();
}

StatusOr<std::string> MessageType(const std::string& text, const std::string& from) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return InvalidArgumentError("control message from " + from +
                                " is not a JSON object with a string \"type\"");
  }
  return j["type"].get<std::string>();
}

int MessageRank(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("rank") || !j["rank"].is_number_integer())
    return -1;
  const int64_t rank = j["rank"].is_number_unsigned()
                           ? static_cast<int64_t>(std::min<uint64_t>(j["rank"].get<uint64_t>(),
                                                                     uint64_t{INT32_MAX} + 1))
                           : j["rank"].get<int64_t>();
  return rank >= 0 && rank <= INT32_MAX ? static_cast<int>(rank) : -1;  // never narrowed
}

Status DecodeRegister(const std::string& text, const std::string& from, RegisterMsg* m) {
  return Decode(text, from, "register", [&](const json& j) {
    m->rank = Int32(j.at("rank"), "rank");
    m->host = j.at("host").get<std::string>();
    m->pid = j.at("pid").get<int64_t>();
  });
}

Status DecodeAssign(const std::string& text, const std::string& from, AssignMsg* m) {
  return Decode(text, from, "assign", [&](const json& j) {
    m->rank = Int32(j.at("rank"), "rank");
    m->world = Int32(j.at("world"), "world");
    m->model_dir = j.at("model_dir").get<std::string>();
    m->transport = j.at("transport").get<std::string>();
    m->expert_format = j.at("expert_format").get<std::string>();
    m->max_seq_len = j.at("max_seq_len").get<int64_t>();
    m->max_batch_tokens = j.at("max_batch_tokens").get<int64_t>();
    m->num_threads = Int32(j.at("num_threads"), "num_threads");
    m->step_timeout_ms = j.at("step_timeout_ms").get<int64_t>();
    m->heartbeat_interval_ms = j.at("heartbeat_interval_ms").get<int64_t>();
    m->kv_cache_tokens = j.at("kv_cache_tokens").get<int64_t>();
    m->plan_json = j.at("plan").get<std::string>();
    m->rendezvous = j.at("rendezvous").get<std::string>();
  });
}

Status DecodeReady(const std::string& text, const std::string& from, ReadyMsg* m) {
  return Decode(text, from, "ready", [&](const json& j) {
    m->rank = Int32(j.at("rank"), "rank");
    m->expert_bytes = j.at("expert_bytes").get<int64_t>();
    m->resident_bytes = j.at("resident_bytes").get<int64_t>();
    m->expert_slots = j.at("expert_slots").get<int64_t>();
    m->load_seconds = j.at("load_seconds").get<double>();
  });
}

Status DecodeStep(const std::string& text, const std::string& from, StepMsg* m) {
  return Decode(text, from, "step", [&](const json& j) {
    m->step = j.at("step").get<int64_t>();
    m->want_logits = j.at("want_logits").get<bool>();
    m->add.clear();
    for (const auto& r : j.at("add")) m->add.push_back(DecodeRequest(r));
    // Optional: older coordinators send no "release".
    m->release =
        j.contains("release") ? j["release"].get<std::vector<int64_t>>() : std::vector<int64_t>{};
  });
}

Status DecodeStepResult(const std::string& text, const std::string& from, StepResultMsg* m) {
  RETURN_IF_ERROR(Decode(text, from, "step_done", [&](const json& j) {
    m->rank = Int32(j.at("rank"), "rank");
    m->step = j.at("step").get<int64_t>();
    m->tokens.clear();
    for (const auto& t : j.at("tokens")) {
      TokenOut o;
      o.id = t.at("id").get<int64_t>();
      o.token = Int32(t.at("token"), "token");
      o.finished = t.at("finished").get<bool>();
      if (o.finished) o.finish_reason = t.at("finish_reason").get<std::string>();
      if (t.contains("logits")) o.logits = t.at("logits").get<std::vector<float>>();
      m->tokens.push_back(std::move(o));
    }
    m->expert_counts = j.at("expert_counts").get<std::vector<std::vector<int64_t>>>();
    m->batch_tokens = j.at("batch_tokens").get<int64_t>();
    m->forward_seconds = j.at("forward_seconds").get<double>();
    m->kv_used_tokens = j.at("kv_used_tokens").get<int64_t>();
    m->kv_capacity_tokens = j.at("kv_capacity_tokens").get<int64_t>();
    const json& lt = j.at("link_traffic");
    m->link_traffic.dispatch_bytes = lt.at("dispatch_bytes").get<std::vector<int64_t>>();
    m->link_traffic.combine_bytes = lt.at("combine_bytes").get<std::vector<int64_t>>();
    m->link_traffic.dispatch_seconds = lt.at("dispatch_seconds").get<double>();
    m->link_traffic.combine_seconds = lt.at("combine_seconds").get<double>();
  }));
  return CheckStepResult(*m, "control message 'step_done' from " + from);
}

StatusOr<std::string> DecodeReason(const std::string& text, const std::string& from) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("reason") || !j["reason"].is_string()) {
    return InvalidArgumentError("control message from " + from + " has no string \"reason\"");
  }
  return j["reason"].get<std::string>();
}

}  // namespace switchyard
