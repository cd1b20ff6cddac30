#include "common/runtime_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <sstream>

#include "common/file_util.h"
#include "common/logging.h"

namespace switchyard {
namespace {

// Upper bounds that keep the arithmetic on these values inside int64: durations become
// steady_clock time points in nanoseconds (now + 30 days is far from overflow; 10^10 s is not),
// KV budgets are summed over up to 65536 workers with prompt + max_tokens added.
constexpr int64_t kMaxDurationS = 30 * 24 * 3600;
constexpr int64_t kMaxDurationMs = kMaxDurationS * 1000;
constexpr int64_t kMaxPositions = int64_t{1} << 40;

template <typename T>
Status ReadScalar(const YAML::Node& node, const std::string& key, const std::string& origin,
                  const char* type_name, T* out) {
  try {
    *out = node.as<T>();
  } catch (const YAML::Exception&) {
    return InvalidArgumentError(origin + ": key '" + key + "' must be " + type_name + ", got '" +
                                (node.IsScalar() ? node.Scalar() : "<non-scalar>") + "'");
  }
  return OkStatus();
}

Status ParseEnvInt(const char* name, int64_t* out) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return OkStatus();
  char* end = nullptr;
  long long v = std::strtoll(text, &end, 10);
  if (*end != '\0') {
    return InvalidArgumentError(std::string("environment variable ") + name +
                                " must be an integer, got '" + text + "'");
  }
  *out = v;
  return OkStatus();
}

Status ParseClusterYaml(const YAML::Node& node, const std::string& origin, ClusterConfig* c) {
  if (!node.IsMap()) return InvalidArgumentError(origin + ": key 'cluster' must be a mapping");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    const std::string full = "cluster." + key;
    const YAML::Node& v = kv.second;
    const char* kStr = "a string";
    const char* kInt = "an integer";
    if (key == "model") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kStr, &c->model));
    } else if (key == "workers") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->workers));
    } else if (key == "transport") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kStr, &c->transport));
    } else if (key == "coordinator_address") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kStr, &c->coordinator_address));
    } else if (key == "bind_address") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kStr, &c->bind_address));
    } else if (key == "control_port") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->control_port));
    } else if (key == "racks") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->racks));
    } else if (key == "nodes_per_rack") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->nodes_per_rack));
    } else if (key == "gpus_per_node") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->gpus_per_node));
    } else if (key == "placement") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kStr, &c->placement));
    } else if (key == "redundant_experts_per_worker") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->redundant_experts_per_worker));
    } else if (key == "heartbeat_interval_ms") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->heartbeat_interval_ms));
    } else if (key == "heartbeat_timeout_ms") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->heartbeat_timeout_ms));
    } else if (key == "step_timeout_ms") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->step_timeout_ms));
    } else if (key == "register_timeout_ms") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->register_timeout_ms));
    } else if (key == "load_window_steps") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->load_window_steps));
    } else if (key == "kv_cache_tokens") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->kv_cache_tokens));
    } else {
      return InvalidArgumentError(
          origin + ": unknown key '" + full +
          "' (known: model, workers, transport, coordinator_address, bind_address, control_port, "
          "racks, nodes_per_rack, gpus_per_node, placement, redundant_experts_per_worker, "
          "heartbeat_interval_ms, heartbeat_timeout_ms, step_timeout_ms, register_timeout_ms, "
          "load_window_steps, kv_cache_tokens)");
    }
  }
  return OkStatus();
}

Status ParseServingYaml(const YAML::Node& node, const std::string& origin, ServingConfig* c) {
  if (!node.IsMap()) return InvalidArgumentError(origin + ": key 'serving' must be a mapping");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    const std::string full = "serving." + key;
    const YAML::Node& v = kv.second;
    const char* kInt = "an integer";
    if (key == "host") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, "a string", &c->host));
    } else if (key == "port") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->port));
    } else if (key == "served_model_name") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, "a string", &c->served_model_name));
    } else if (key == "max_queue") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->max_queue));
    } else if (key == "max_running") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->max_running));
    } else if (key == "request_timeout_s") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->request_timeout_s));
    } else if (key == "exit_on_worker_failure") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, "true or false", &c->exit_on_worker_failure));
    } else if (key == "worker_failure_grace_ms") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->worker_failure_grace_ms));
    } else if (key == "shutdown_timeout_ms") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->shutdown_timeout_ms));
    } else if (key == "stats_interval_s") {
      RETURN_IF_ERROR(ReadScalar(v, full, origin, kInt, &c->stats_interval_s));
    } else {
      return InvalidArgumentError(
          origin + ": unknown key '" + full +
          "' (known: host, port, served_model_name, max_queue, max_running, request_timeout_s, "
          "exit_on_worker_failure, worker_failure_grace_ms, shutdown_timeout_ms, "
          "stats_interval_s)");
    }
  }
  return OkStatus();
}

}  // namespace

Status ParseRuntimeConfigYaml(const std::string& text, const std::string& origin,
                              RuntimeConfig* config) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(origin + ": invalid YAML at line " +
                                std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  if (root.IsNull()) return OkStatus();
  if (!root.IsMap()) return InvalidArgumentError(origin + ": top level must be a mapping");
  for (const auto& kv : root) {
    std::string key = kv.first.as<std::string>();
    const YAML::Node& v = kv.second;
    if (key == "log_level") {
      RETURN_IF_ERROR(ReadScalar(v, key, origin, "a string", &config->log_level));
    } else if (key == "log_format") {
      RETURN_IF_ERROR(ReadScalar(v, key, origin, "a string", &config->log_format));
    } else if (key == "num_threads") {
      RETURN_IF_ERROR(ReadScalar(v, key, origin, "an integer", &config->num_threads));
    } else if (key == "max_seq_len") {
      RETURN_IF_ERROR(ReadScalar(v, key, origin, "an integer", &config->max_seq_len));
    } else if (key == "max_batch_tokens") {
      RETURN_IF_ERROR(ReadScalar(v, key, origin, "an integer", &config->max_batch_tokens));
    } else if (key == "expert_format") {
      RETURN_IF_ERROR(ReadScalar(v, key, origin, "a string", &config->expert_format));
    } else if (key == "cluster") {
      config->has_cluster = true;
      RETURN_IF_ERROR(ParseClusterYaml(v, origin, &config->cluster));
    } else if (key == "serving") {
      config->has_serving = true;
      RETURN_IF_ERROR(ParseServingYaml(v, origin, &config->serving));
    } else {
      return InvalidArgumentError(
          origin + ": unknown key '" + key +
          "' (known: log_level, log_format, num_threads, max_seq_len, max_batch_tokens, "
          "expert_format, cluster, serving)");
    }
  }
  return ValidateRuntimeConfig(*config).WithContext(origin);
}

Status LoadRuntimeConfigYaml(const std::string& path, RuntimeConfig* config) {
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status().WithContext("runtime config");
  return ParseRuntimeConfigYaml(*text, path, config);
}

Status ApplyRuntimeConfigEnv(RuntimeConfig* config) {
  if (const char* level = std::getenv("SWITCHYARD_LOG_LEVEL"); level && *level) {
    config->log_level = level;
  }
  if (const char* format = std::getenv("SWITCHYARD_LOG_FORMAT"); format && *format) {
    config->log_format = format;
  }
  int64_t threads = config->num_threads;
  RETURN_IF_ERROR(ParseEnvInt("SWITCHYARD_NUM_THREADS", &threads));
  config->num_threads = static_cast<int>(threads);
  RETURN_IF_ERROR(ParseEnvInt("SWITCHYARD_MAX_SEQ_LEN", &config->max_seq_len));
  RETURN_IF_ERROR(ParseEnvInt("SWITCHYARD_MAX_BATCH_TOKENS", &config->max_batch_tokens));
  if (const char* format = std::getenv("SWITCHYARD_EXPERT_FORMAT"); format && *format) {
    config->expert_format = format;
  }
  return ValidateRuntimeConfig(*config).WithContext("environment");
}

Status ValidateRuntimeConfig(const RuntimeConfig& config) {
  LogLevel level;
  if (!ParseLogLevel(config.log_level, &level)) {
    return InvalidArgumentError("log_level '" + config.log_level +
                                "' is not one of trace, debug, info, warn, error, off");
  }
  LogFormat format;
  if (!ParseLogFormat(config.log_format, &format)) {
    return InvalidArgumentError("log_format '" + config.log_format + "' is not one of text, json");
  }
  if (config.num_threads < 0 || config.num_threads > 4096) {
    return InvalidArgumentError("num_threads must be in [0, 4096], got " +
                                std::to_string(config.num_threads));
  }
  if (config.max_seq_len < 1) {
    return InvalidArgumentError("max_seq_len must be >= 1, got " +
                                std::to_string(config.max_seq_len));
  }
  if (config.max_seq_len > kMaxPositions) {
    return InvalidArgumentError("max_seq_len must be in [1, " + std::to_string(kMaxPositions) +
                                "], got " + std::to_string(config.max_seq_len));
  }
  if (config.max_batch_tokens < 1) {
    return InvalidArgumentError("max_batch_tokens must be >= 1, got " +
                                std::to_string(config.max_batch_tokens));
  }
  if (config.expert_format != "f32" && config.expert_format != "nvfp4" &&
      config.expert_format != "mxfp4") {
    return InvalidArgumentError("expert_format '" + config.expert_format +
                                "' is not one of f32, nvfp4, mxfp4");
  }
  if (config.has_cluster) RETURN_IF_ERROR(ValidateClusterConfig(config.cluster));
  if (config.has_serving) return ValidateServingConfig(config.serving);
  return OkStatus();
}

Status ValidateServingConfig(const ServingConfig& c) {
  auto bad = [](const std::string& key, const std::string& want, const std::string& got) {
    return InvalidArgumentError("serving." + key + " must be " + want + ", got " + got);
  };
  if (c.host.empty()) return bad("host", "an address to listen on", "nothing");
  if (c.port < 0 || c.port > 65535) return bad("port", "in [0, 65535]", std::to_string(c.port));
  for (const auto& [key, v] : {std::pair<const char*, int64_t>{"max_queue", c.max_queue},
                               {"max_running", c.max_running}}) {
    if (v < 1) return bad(key, ">= 1", std::to_string(v));
  }
  const std::string s_range = "[1, " + std::to_string(kMaxDurationS) + "]";
  const std::string ms_range = "[1, " + std::to_string(kMaxDurationMs) + "]";
  if (c.request_timeout_s < 1 || c.request_timeout_s > kMaxDurationS) {
    return bad("request_timeout_s", "in " + s_range, std::to_string(c.request_timeout_s));
  }
  for (const auto& [key, v] :
       {std::pair<const char*, int64_t>{"worker_failure_grace_ms", c.worker_failure_grace_ms},
        {"shutdown_timeout_ms", c.shutdown_timeout_ms}}) {
    if (v < 1 || v > kMaxDurationMs) return bad(key, "in " + ms_range, std::to_string(v));
  }
  if (c.stats_interval_s < 0 || c.stats_interval_s > kMaxDurationS) {
    return bad("stats_interval_s", "in [0, " + std::to_string(kMaxDurationS) + "] (0: off)",
               std::to_string(c.stats_interval_s));
  }
  return OkStatus();
}

Status ValidateClusterConfig(const ClusterConfig& c) {
  auto bad = [](const std::string& key, const std::string& want, const std::string& got) {
    return InvalidArgumentError("cluster." + key + " must be " + want + ", got " + got);
  };
  if (c.model.empty()) return bad("model", "a checkpoint directory", "nothing");
  if (c.workers < 1 || c.workers > 65536) {
    return bad("workers", "in [1, 65536]", std::to_string(c.workers));
  }
  if (c.transport != "local" && c.transport != "mpi" && c.transport != "ucx" &&
      c.transport != "nccl") {
    return bad("transport", "one of local, mpi, ucx, nccl", "'" + c.transport + "'");
  }
  if (c.control_port < 0 || c.control_port > 65535) {
    return bad("control_port", "in [0, 65535]", std::to_string(c.control_port));
  }
  if (c.racks < 1) return bad("racks", ">= 1", std::to_string(c.racks));
  if (c.nodes_per_rack < 1) return bad("nodes_per_rack", ">= 1", std::to_string(c.nodes_per_rack));
  if (c.gpus_per_node < 0) return bad("gpus_per_node", ">= 0", std::to_string(c.gpus_per_node));
  const int64_t nodes = int64_t{c.racks} * c.nodes_per_rack;
  const int64_t gpus = c.gpus_per_node > 0 ? nodes * c.gpus_per_node : c.workers;
  if (gpus != c.workers || c.workers % nodes != 0) {
    return bad(
        "workers",
        "racks x nodes_per_rack x gpus_per_node (one worker per GPU) = " + std::to_string(gpus),
        std::to_string(c.workers));
  }
  if (c.placement.empty()) return bad("placement", "eplb, contiguous or a plan file", "nothing");
  if (c.redundant_experts_per_worker < 0) {
    return bad("redundant_experts_per_worker", ">= 0",
               std::to_string(c.redundant_experts_per_worker));
  }
  for (const auto& [key, v] :
       {std::pair<const char*, int64_t>{"heartbeat_interval_ms", c.heartbeat_interval_ms},
        {"heartbeat_timeout_ms", c.heartbeat_timeout_ms},
        {"step_timeout_ms", c.step_timeout_ms},
        {"register_timeout_ms", c.register_timeout_ms},
        {"load_window_steps", c.load_window_steps}}) {
    if (v < 1) return bad(key, ">= 1", std::to_string(v));
  }
  if (c.heartbeat_timeout_ms <= c.heartbeat_interval_ms) {
    return bad("heartbeat_timeout_ms",
               "above heartbeat_interval_ms (" + std::to_string(c.heartbeat_interval_ms) + ")",
               std::to_string(c.heartbeat_timeout_ms));
  }
  for (const auto& [key, v] :
       {std::pair<const char*, int64_t>{"heartbeat_interval_ms", c.heartbeat_interval_ms},
        {"heartbeat_timeout_ms", c.heartbeat_timeout_ms},
        {"step_timeout_ms", c.step_timeout_ms},
        {"register_timeout_ms", c.register_timeout_ms}}) {
    if (v > kMaxDurationMs) {
      return bad(key, "in [1, " + std::to_string(kMaxDurationMs) + "]", std::to_string(v));
    }
  }
  if (c.kv_cache_tokens < 0) {
    return bad("kv_cache_tokens", ">= 0 (0 = 16 x max_seq_len)", std::to_string(c.kv_cache_tokens));
  }
  if (c.kv_cache_tokens > kMaxPositions) {
    return bad("kv_cache_tokens", "in [0, " + std::to_string(kMaxPositions) + "]",
               std::to_string(c.kv_cache_tokens));
  }
  return OkStatus();
}

std::string RuntimeConfigToYaml(const RuntimeConfig& config) {
  std::ostringstream out;
  out << "log_level: " << config.log_level << "\n"
      << "log_format: " << config.log_format << "\n"
      << "num_threads: " << config.num_threads << "\n"
      << "max_seq_len: " << config.max_seq_len << "\n"
      << "max_batch_tokens: " << config.max_batch_tokens << "\n"
      << "expert_format: " << config.expert_format << "\n";
  if (config.has_cluster) {
    const ClusterConfig& c = config.cluster;
    out << "cluster:\n"
        << "  model: " << c.model << "\n"
        << "  workers: " << c.workers << "\n"
        << "  transport: " << c.transport << "\n"
        << "  coordinator_address: " << c.coordinator_address << "\n"
        << "  bind_address: " << c.bind_address << "\n"
        << "  control_port: " << c.control_port << "\n"
        << "  racks: " << c.racks << "\n"
        << "  nodes_per_rack: " << c.nodes_per_rack << "\n"
        << "  gpus_per_node: " << c.gpus_per_node << "\n"
        << "  placement: " << c.placement << "\n"
        << "  redundant_experts_per_worker: " << c.redundant_experts_per_worker << "\n"
        << "  heartbeat_interval_ms: " << c.heartbeat_interval_ms << "\n"
        << "  heartbeat_timeout_ms: " << c.heartbeat_timeout_ms << "\n"
        << "  step_timeout_ms: " << c.step_timeout_ms << "\n"
        << "  register_timeout_ms: " << c.register_timeout_ms << "\n"
        << "  load_window_steps: " << c.load_window_steps << "\n"
        << "  kv_cache_tokens: " << c.kv_cache_tokens << "\n";
  }
  if (config.has_serving) {
    const ServingConfig& s = config.serving;
    std::string name;  // YAML single-quoted: a quote is doubled
    for (char ch : s.served_model_name) name += ch == '\'' ? std::string("''") : std::string(1, ch);
    out << "serving:\n"
        << "  host: " << s.host << "\n"
        << "  port: " << s.port << "\n"
        << "  served_model_name: '" << name << "'\n"
        << "  max_queue: " << s.max_queue << "\n"
        << "  max_running: " << s.max_running << "\n"
        << "  request_timeout_s: " << s.request_timeout_s << "\n"
        << "  exit_on_worker_failure: " << (s.exit_on_worker_failure ? "true" : "false") << "\n"
        << "  worker_failure_grace_ms: " << s.worker_failure_grace_ms << "\n"
        << "  shutdown_timeout_ms: " << s.shutdown_timeout_ms << "\n"
        << "  stats_interval_s: " << s.stats_interval_s << "\n";
  }
  return out.str();
}

}  // namespace switchyard
