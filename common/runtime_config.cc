#include "common/runtime_config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <sstream>

#include "common/file_util.h"
#include "common/logging.h"

namespace switchyard {
namespace {

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
    } else if (key == "num_threads") {
      RETURN_IF_ERROR(ReadScalar(v, key, origin, "an integer", &config->num_threads));
    } else if (key == "max_seq_len") {
      RETURN_IF_ERROR(ReadScalar(v, key, origin, "an integer", &config->max_seq_len));
    } else if (key == "max_batch_tokens") {
      RETURN_IF_ERROR(ReadScalar(v, key, origin, "an integer", &config->max_batch_tokens));
    } else if (key == "expert_format") {
      RETURN_IF_ERROR(ReadScalar(v, key, origin, "a string", &config->expert_format));
    } else {
      return InvalidArgumentError(
          origin + ": unknown key '" + key +
          "' (known: log_level, num_threads, max_seq_len, max_batch_tokens, expert_format)");
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
  if (config.num_threads < 0 || config.num_threads > 4096) {
    return InvalidArgumentError("num_threads must be in [0, 4096], got " +
                                std::to_string(config.num_threads));
  }
  if (config.max_seq_len < 1) {
    return InvalidArgumentError("max_seq_len must be >= 1, got " +
                                std::to_string(config.max_seq_len));
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
  return OkStatus();
}

std::string RuntimeConfigToYaml(const RuntimeConfig& config) {
  std::ostringstream out;
  out << "log_level: " << config.log_level << "\n"
      << "num_threads: " << config.num_threads << "\n"
      << "max_seq_len: " << config.max_seq_len << "\n"
      << "max_batch_tokens: " << config.max_batch_tokens << "\n"
      << "expert_format: " << config.expert_format << "\n";
  return out.str();
}

}  // namespace switchyard
