// switchyard: the command-line entry point.
//   switchyard generate --model DIR --prompt-ids 1,2,3 | --prompt TEXT --max-new-tokens N [...]
//   switchyard make-default-model --out DIR
//   switchyard info --model DIR
// Every error exits non-zero with "switchyard: error: <reason>" on stderr.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "apps/cluster_commands.h"
#include "apps/output_file.h"
#include "apps/serve_command.h"
#include "common/file_util.h"
#include "common/huge_page_arena.h"
#include "common/logging.h"
#include "common/npy.h"
#include "common/parallel.h"
#include "common/runtime_config.h"
#include "coordinator/placement/placement_plan.h"
#include "model/batch_requests.h"
#include "model/engine.h"
#include "model/quantize_checkpoint.h"
#include "model/random_checkpoint.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"

namespace switchyard {
namespace {

constexpr const char* kVersion = "0.1.0";

int Fail(const Status& status) {
  std::fprintf(stderr, "switchyard: error: %s\n", status.message().c_str());
  return status.code() == StatusCode::kInvalidArgument ? 2 : 1;
}

// Runtime flags shared by the commands that run a model.
struct RuntimeFlags {
  std::string config_path;
  std::string log_level;
  std::string log_format;
  int threads = -1;
  int64_t max_seq_len = -1;
  int64_t max_batch_tokens = -1;
  std::string expert_format;
  bool print_config = false;
  const ServeFlags* serve = nullptr;  // `serve`: its flags override the YAML's serving section

  void Add(CLI::App* app) {
    app->add_option("--config", config_path, "runtime settings (YAML; see configs/README.md)");
    app->add_option("--log-level", log_level, "trace|debug|info|warn|error|off");
    app->add_option("--log-format", log_format, "text | json (one JSON object per line)");
    app->add_option("--threads", threads, "compute threads (0 = all cores)");
    app->add_option("--max-seq-len", max_seq_len, "KV-cache capacity per sequence (tokens)");
    app->add_option("--max-batch-tokens", max_batch_tokens, "most tokens in one forward step");
    app->add_option("--expert-format", expert_format,
                    "routed experts in memory: f32, or quantized at load time to nvfp4 | mxfp4");
    app->add_flag("--print-config", print_config, "print the effective runtime configuration");
  }

  // default < YAML < SWITCHYARD_* environment < flags.
  StatusOr<RuntimeConfig> Resolve() const {
    RuntimeConfig config;
    if (!config_path.empty()) RETURN_IF_ERROR(LoadRuntimeConfigYaml(config_path, &config));
    RETURN_IF_ERROR(ApplyRuntimeConfigEnv(&config));
    if (!log_level.empty()) config.log_level = log_level;
    if (!log_format.empty()) config.log_format = log_format;
    if (threads >= 0) config.num_threads = threads;
    if (max_seq_len >= 0) config.max_seq_len = max_seq_len;
    if (max_batch_tokens >= 0) config.max_batch_tokens = max_batch_tokens;
    if (!expert_format.empty()) config.expert_format = expert_format;
    if (serve != nullptr) RETURN_IF_ERROR(ApplyServeFlags(*serve, &config));
    RETURN_IF_ERROR(ValidateRuntimeConfig(config).WithContext("command line"));
    LogLevel level;
    ParseLogLevel(config.log_level, &level);
    SetLogLevel(level);
    LogFormat format;
    ParseLogFormat(config.log_format, &format);
    SetLogFormat(format);
    SetComputeThreads(config.num_threads);
    if (print_config)
      std::fprintf(stderr, "# effective runtime configuration\n%s",
                   RuntimeConfigToYaml(config).c_str());
    return config;
  }
};

StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  if (!text.empty() && text.back() == ',') {
    return InvalidArgumentError("--prompt-ids: '" + text + "' ends with a comma");
  }
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || errno != 0 || v < 0 ||
        v > std::numeric_limits<int32_t>::max()) {
      return InvalidArgumentError("--prompt-ids: '" + item +
                                  "' is not a token id (comma-separated non-negative integers)");
    }
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) return InvalidArgumentError("--prompt-ids: no token ids given");
  return ids;
}

struct GenerateFlags {
  std::string model;
  std::vector<std::string> prompts;
  std::vector<std::string> prompt_texts;  // --prompt: encoded with the checkpoint's tokenizer
  int64_t max_new_tokens = 16;
  float temperature = 0.0f;
  int64_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
  bool ignore_eos = false;
  std::string dump_logits;
};

int RunGenerate(const GenerateFlags& flags, const RuntimeFlags& runtime_flags) {
  auto runtime = runtime_flags.Resolve();
  if (!runtime.ok()) return Fail(runtime.status());
  std::vector<GenerationRequest> requests;
  if (flags.prompts.empty() && flags.prompt_texts.empty()) {
    return Fail(InvalidArgumentError("give --prompt-ids IDS or --prompt TEXT"));
  }
  std::unique_ptr<Tokenizer> tokenizer;
  if (!flags.prompt_texts.empty()) {
    auto loaded = Tokenizer::FromFile(flags.model + "/tokenizer.json");
    if (!loaded.ok()) return Fail(loaded.status().WithContext("--prompt needs a tokenizer"));
    tokenizer = std::move(*loaded);
  }
  std::vector<std::string> inputs = flags.prompts;  // ids first, then texts (marked by index)
  inputs.insert(inputs.end(), flags.prompt_texts.begin(), flags.prompt_texts.end());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string& text = inputs[i];
    auto ids = i < flags.prompts.size() ? ParseIds(text) : tokenizer->Encode(text, true);
    if (!ids.ok()) return Fail(ids.status());
    GenerationRequest req;
    req.prompt = std::move(*ids);
    req.max_new_tokens = flags.max_new_tokens;
    req.sampling = {flags.temperature, flags.top_k, flags.top_p, flags.seed};
    req.ignore_eos = flags.ignore_eos;
    requests.push_back(std::move(req));
  }
  auto engine = Engine::Load(flags.model, *runtime);
  if (!engine.ok()) return Fail(engine.status());
  GenerationStats stats;
  auto results = (*engine)->Generate(requests, !flags.dump_logits.empty(), &stats);
  if (!results.ok()) return Fail(results.status());
  for (size_t r = 0; r < results->size(); ++r) {
    const auto& res = (*results)[r];
    for (size_t i = 0; i < res.tokens.size(); ++i) std::printf(i ? ",%d" : "%d", res.tokens[i]);
    std::printf("\n");
    if (r >= flags.prompts.size()) {  // a --prompt text: the completion as text too (JSON string)
      auto text = tokenizer->Decode(res.tokens, /*skip_special_tokens=*/true);
      const nlohmann::json shown = text.ok() ? *text : "<" + text.status().message() + ">";
      std::printf("text: %s\n",
                  shown.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    }
  }
  std::fflush(stdout);
  LOG_INFO(
      "generate",
      "%zu request(s): %lld prompt tokens in %.3f s, %lld generated tokens, decode %.1f tok/s",
      requests.size(), static_cast<long long>(stats.prompt_tokens), stats.prefill_seconds,
      static_cast<long long>(stats.generated_tokens),
      stats.decode_seconds > 0
          ? (stats.generated_tokens - static_cast<double>(requests.size())) / stats.decode_seconds
          : 0.0);
  if (!flags.dump_logits.empty()) {
    // One prompt: [steps, vocab]. Several: [prompts, max_new_tokens, vocab], rows after a
    // request stopped (EOS) filled with NaN.
    const int64_t vocab = (*engine)->model().config().vocab_size;
    std::vector<float> data;
    std::vector<int64_t> shape;
    if (results->size() == 1) {
      for (const auto& row : (*results)[0].logits) data.insert(data.end(), row.begin(), row.end());
      shape = {static_cast<int64_t>((*results)[0].logits.size()), vocab};
    } else {
      const int64_t steps = flags.max_new_tokens;
      data.assign(results->size() * steps * vocab, std::nanf(""));
      for (size_t r = 0; r < results->size(); ++r) {
        const auto& rows = (*results)[r].logits;
        for (size_t s = 0; s < rows.size(); ++s) {
          std::copy(rows[s].begin(), rows[s].end(), data.begin() + (r * steps + s) * vocab);
        }
      }
      shape = {static_cast<int64_t>(results->size()), steps, vocab};
    }
    Status st = WriteNpyFloat32(flags.dump_logits, shape, data.data());
    if (!st.ok()) return Fail(st);
  }
  return 0;
}

struct RunFlags {
  std::string model, requests, out;
};

// Batch mode: every request of a JSONL file in one Generate call (batched prefill and decode).
int RunBatch(const RunFlags& flags, const RuntimeFlags& runtime_flags) {
  auto runtime = runtime_flags.Resolve();
  if (!runtime.ok()) return Fail(runtime.status());
  if (runtime->has_cluster) {  // a distributed deployment: coordinator + workers
    if (!flags.model.empty()) runtime->cluster.model = flags.model;
    return RunCoordinatorCommand(*runtime, {flags.requests, flags.out, "", ""});
  }
  if (flags.model.empty()) {
    return Fail(
        InvalidArgumentError("--model is required (or a --config with a cluster: section)"));
  }
  auto text = ReadFileToString(flags.requests);
  if (!text.ok()) return Fail(text.status().WithContext("requests"));
  // A checkpoint's tokenizer.json (if any) encodes "prompt" texts and decodes results to "text".
  std::unique_ptr<Tokenizer> tokenizer;
  auto loaded = Tokenizer::FromFile(flags.model + "/tokenizer.json");
  if (loaded.ok()) {
    tokenizer = std::move(*loaded);
  } else if (loaded.status().code() != StatusCode::kNotFound) {
    LOG_WARN("run", "no text prompts/results: %s", loaded.status().ToString().c_str());
  }
  auto batch = ParseBatchRequests(*text, flags.requests, tokenizer.get());
  if (!batch.ok()) return Fail(batch.status());
  auto engine = Engine::Load(flags.model, *runtime);
  if (!engine.ok()) return Fail(engine.status());
  std::vector<GenerationRequest> requests;
  for (const auto& b : *batch) requests.push_back(b.request);
  GenerationStats stats;
  const auto start = std::chrono::steady_clock::now();
  auto results = (*engine)->Generate(requests, false, &stats);
  if (!results.ok()) return Fail(results.status());
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::ofstream file;
  auto out_stream = OpenOutput(flags.out, file);
  if (!out_stream.ok()) return Fail(out_stream.status());
  std::ostream& out = **out_stream;
  for (size_t i = 0; i < batch->size(); ++i)
    out << FormatBatchResult((*batch)[i], (*results)[i], tokenizer.get()) << "\n";
  out.flush();
  if (!out) return Fail(InternalError("cannot write the results"));
  std::fprintf(stderr,
               "switchyard run: %zu requests, %lld prompt + %lld generated tokens in %.3f s: "
               "%.1f generated tok/s, %.1f total tok/s\n",
               batch->size(), static_cast<long long>(stats.prompt_tokens),
               static_cast<long long>(stats.generated_tokens), secs, stats.generated_tokens / secs,
               (stats.prompt_tokens + stats.generated_tokens) / secs);
  return 0;
}

int RunInfo(const std::string& dir) {
  auto config = LoadModelConfig(dir);
  if (!config.ok()) return Fail(config.status());
  auto ckpt = Checkpoint::Open(dir);
  if (!ckpt.ok()) return Fail(ckpt.status());
  std::printf("%s\n", config->Summary().c_str());
  std::printf("checkpoint: %zu tensors, %.1f MB\n", (*ckpt)->TensorNames().size(),
              (*ckpt)->TotalBytes() / 1e6);
  int64_t params = 0, expert_params = 0;
  for (const auto& spec : RequiredWeights(*config)) {
    int64_t n = 1;
    for (int64_t d : spec.shape) n *= d;
    params += n;
    if (spec.name.find(".experts.") != std::string::npos) expert_params += n;
  }
  std::printf("parameters: %.2f M (routed experts %.2f M)\n", params / 1e6, expert_params / 1e6);
  return 0;
}

struct PlaceFlags {
  std::string model, load_path, plan_in, plan_out;
  ClusterTopology topology;
  int32_t redundant_per_gpu = 0;
};

// Per-layer expert loads from a JSON file {"layers": [[load of expert 0, ...], ...]} (one row per
// MoE layer), or uniform loads when no file is given.
StatusOr<std::vector<std::vector<double>>> ReadLoads(const std::string& path, size_t layers,
                                                     int64_t experts) {
  if (path.empty())
    return std::vector<std::vector<double>>(layers, std::vector<double>(experts, 1));
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  nlohmann::json root = nlohmann::json::parse(text, nullptr, false);
  if (root.is_discarded() || !root.contains("layers") || !root["layers"].is_array()) {
    return InvalidArgumentError(path + ": expected {\"layers\": [[expert loads], ...]}");
  }
  std::vector<std::vector<double>> loads;
  for (const auto& row : root["layers"]) {
    if (!row.is_array() || static_cast<int64_t>(row.size()) != experts) {
      return InvalidArgumentError(path + ": layer " + std::to_string(loads.size()) + " must list " +
                                  std::to_string(experts) + " expert loads");
    }
    std::vector<double> r;
    for (const auto& v : row) {
      if (!v.is_number()) {
        return InvalidArgumentError(path + ": layer " + std::to_string(loads.size()) + " holds " +
                                    v.dump() + ", not a number");
      }
      r.push_back(v.get<double>());
    }
    loads.push_back(std::move(r));
  }
  if (loads.size() != layers) {
    return InvalidArgumentError(path + ": " + std::to_string(loads.size()) +
                                " layers of loads, the model has " + std::to_string(layers) +
                                " MoE layers");
  }
  return loads;
}

int RunPlace(const PlaceFlags& flags) {
  auto config = LoadModelConfig(flags.model);
  if (!config.ok()) return Fail(config.status());
  std::vector<int32_t> moe_layers;
  for (int64_t l = 0; l < config->num_layers; ++l) {
    if (config->moe_layer[l]) moe_layers.push_back(static_cast<int32_t>(l));
  }
  const auto experts = static_cast<int32_t>(config->num_experts);
  auto loads = ReadLoads(flags.load_path, moe_layers.size(), experts);
  if (!loads.ok()) return Fail(loads.status());
  StatusOr<PlacementPlan> plan = InvalidArgumentError("no plan");
  if (!flags.plan_in.empty()) {
    auto text = ReadFileToString(flags.plan_in);
    if (!text.ok()) return Fail(text.status().WithContext("plan"));
    plan = PlacementPlan::FromJson(*text, flags.plan_in);
  } else {
    plan = PlanWithEplb(flags.topology, experts, moe_layers, *loads, flags.redundant_per_gpu,
                        static_cast<int32_t>(config->n_group));
  }
  if (!plan.ok()) return Fail(plan.status());
  if (plan->num_logical_experts != experts || plan->moe_layers != moe_layers) {
    return Fail(InvalidArgumentError(
        "plan does not fit the model: it places " + std::to_string(plan->num_logical_experts) +
        " experts over " + std::to_string(plan->moe_layers.size()) + " layers, the model has " +
        std::to_string(experts) + " experts in " + std::to_string(moe_layers.size()) +
        " MoE layers"));
  }
  auto balance = plan->Balance(*loads);
  auto contiguous = ContiguousPlan(plan->topology, experts, moe_layers);
  if (!balance.ok()) return Fail(balance.status());
  std::printf(
      "placement: %d racks x %d nodes x %d GPUs, %d slots per GPU (%d redundant), %d "
      "experts, %zu MoE layers\n",
      plan->topology.racks, plan->topology.nodes_per_rack, plan->topology.gpus_per_node,
      plan->slots_per_gpu,
      plan->num_physical() / plan->topology.num_gpus() - experts / plan->topology.num_gpus(),
      experts, moe_layers.size());
  std::printf("%-6s %14s %14s %14s %18s\n", "layer", "max GPU load", "mean GPU load", "max/mean",
              "contiguous max/mean");
  std::vector<LayerBalance> base;
  if (contiguous.ok()) {
    auto b = contiguous->Balance(*loads);
    if (b.ok()) base = *b;
  }
  for (size_t l = 0; l < balance->size(); ++l) {
    const LayerBalance& b = (*balance)[l];
    std::printf("%-6d %14.1f %14.1f %14.3f", moe_layers[l], b.max_gpu_load, b.mean_gpu_load,
                b.balancedness());
    if (l < base.size()) std::printf(" %18.3f", base[l].balancedness());
    std::printf("\n");
  }
  if (!flags.plan_out.empty()) {
    std::ofstream out(flags.plan_out);
    out << plan->ToJson();
    if (!out) return Fail(InternalError("cannot write '" + flags.plan_out + "'"));
    std::printf("wrote the plan to %s\n", flags.plan_out.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace switchyard

int main(int argc, char** argv) {
  using namespace switchyard;
  if (Status st = ApplyOpenMpWaitPolicy(argv); !st.ok()) return Fail(st);
  if (const char* hp = std::getenv("SWITCHYARD_HUGEPAGES"); hp != nullptr) {
    if (auto on = ParseHugePages(hp); !on.ok()) return Fail(on.status());
  }
  CLI::App app{"Switchyard: a runtime for serving Mixture-of-Experts language models"};
  app.set_version_flag("--version", kVersion);
  app.require_subcommand(1);

  GenerateFlags gen;
  RuntimeFlags gen_runtime;
  CLI::App* generate =
      app.add_subcommand("generate", "generate tokens from prompt token ids or text");
  generate->add_option("--model", gen.model, "checkpoint directory (config.json + safetensors)")
      ->required();
  generate->add_option("--prompt-ids", gen.prompts,
                       "comma-separated prompt token ids; repeat for a batch of prompts");
  generate->add_option("--prompt", gen.prompt_texts,
                       "prompt text, encoded with the checkpoint's tokenizer.json (BOS added); "
                       "repeat for a batch; prints the completion's text after its ids");
  generate->add_option("--max-new-tokens", gen.max_new_tokens, "tokens to generate per prompt")
      ->capture_default_str();
  generate->add_option("--temperature", gen.temperature, "0 = greedy")->capture_default_str();
  generate->add_option("--top-k", gen.top_k, "keep the k most likely tokens (0 = all)");
  generate->add_option("--top-p", gen.top_p, "nucleus sampling threshold in (0, 1]");
  generate->add_option("--seed", gen.seed, "sampling seed");
  generate->add_flag("--ignore-eos", gen.ignore_eos, "do not stop at the model's EOS token");
  generate->add_option("--dump-logits", gen.dump_logits,
                       "write every step's logits to this .npy file");
  gen_runtime.Add(generate);

  std::string default_out;
  CLI::App* make_default = app.add_subcommand(
      "make-default-model", "write the built-in default model (small DeepSeek-V3, random weights)");
  make_default->add_option("--out", default_out, "output directory")->required();

  std::string quant_in, quant_out, quant_format = "nvfp4";
  CLI::App* quantize = app.add_subcommand(
      "quantize", "write an FP4 copy of a checkpoint (routed experts; ModelOpt NVFP4 layout)");
  quantize->add_option("--model", quant_in, "input checkpoint directory (BF16/F16/F32)")
      ->required();
  quantize->add_option("--out", quant_out, "output directory")->required();
  quantize->add_option("--format", quant_format, "nvfp4 | mxfp4")->capture_default_str();

  RunFlags run_flags;
  RuntimeFlags run_runtime;
  CLI::App* run = app.add_subcommand(
      "run", "batch mode: generate for every request of a JSONL file, one JSON line out each");
  run->add_option("--model", run_flags.model,
                  "checkpoint directory (with a cluster config: overrides cluster.model)");
  run->add_option("--requests", run_flags.requests,
                  "JSONL: {\"prompt_ids\": [...], \"max_tokens\": N, \"temperature\", "
                  "\"top_k\", \"top_p\", \"seed\", \"ignore_eos\", \"id\"} per line")
      ->required();
  run->add_option("--out", run_flags.out, "write results here instead of stdout");
  run_runtime.Add(run);

  PlaceFlags place_flags;
  CLI::App* place = app.add_subcommand(
      "place", "plan expert placement (DeepSeek EPLB) and print its balance per MoE layer");
  place->add_option("--model", place_flags.model, "checkpoint directory (config.json)")->required();
  place->add_option("--racks", place_flags.topology.racks, "racks")->capture_default_str();
  place->add_option("--nodes-per-rack", place_flags.topology.nodes_per_rack, "nodes per rack")
      ->capture_default_str();
  place->add_option("--gpus-per-node", place_flags.topology.gpus_per_node, "GPUs per node")
      ->capture_default_str();
  place
      ->add_option("--redundant-per-gpu", place_flags.redundant_per_gpu,
                   "extra expert slots per GPU for replicas of hot experts")
      ->capture_default_str();
  place->add_option("--load", place_flags.load_path,
                    "expert load statistics JSON {\"layers\": [[...], ...]} (default: uniform)");
  place->add_option("--plan", place_flags.plan_in, "validate and report a supplied plan instead");
  place->add_option("--out", place_flags.plan_out, "write the plan as JSON");

  ClusterCommandFlags coord_flags;
  RuntimeFlags coord_runtime;
  CLI::App* coordinator = app.add_subcommand(
      "coordinator", "distributed run: plan placement, drive the workers, run a JSONL batch");
  coordinator->add_option("--requests", coord_flags.requests, "JSONL requests (as for run)")
      ->required();
  coordinator->add_option("--out", coord_flags.out, "write results here instead of stdout");
  coordinator->add_option("--dump-logits", coord_flags.dump_logits,
                          "write every token's logits as .npy [requests, max_tokens, vocab]");
  coord_runtime.Add(coordinator);
  ClusterCommandFlags worker_flags;
  RuntimeFlags worker_runtime;
  CLI::App* worker = app.add_subcommand("worker", "one worker rank of a distributed run");
  worker->add_option("--coordinator", worker_flags.coordinator,
                     "HOST:PORT of the coordinator (default: from MPI, or the config)");
  worker_runtime.Add(worker);

  ServeFlags serve_flags;
  RuntimeFlags serve_runtime;
  CLI::App* serve = app.add_subcommand("serve", "OpenAI-compatible HTTP server over the cluster");
  serve->add_option("--host", serve_flags.host, "address to listen on (serving.host)");
  serve->add_option("--port", serve_flags.port, "port, 0 = ephemeral (serving.port)");
  serve->add_option("--served-model-name", serve_flags.served_model_name,
                    "model id in the API (serving.served_model_name)");
  serve->add_option("--max-queue", serve_flags.max_queue,
                    "waiting requests before 429 (serving.max_queue)");
  serve->add_option("--max-running", serve_flags.max_running,
                    "requests running at once (serving.max_running)");
  serve_runtime.Add(serve);
  serve_runtime.serve = &serve_flags;

  std::string info_model;
  CLI::App* info = app.add_subcommand("info", "describe a checkpoint");
  info->add_option("--model", info_model, "checkpoint directory")->required();

  const std::string first = argc > 1 ? argv[1] : "";
  if (!first.empty() && first[0] != '-' && first != "generate" && first != "make-default-model" &&
      first != "info" && first != "quantize" && first != "place" && first != "run" &&
      first != "coordinator" && first != "worker" && first != "serve") {
    std::fprintf(stderr,
                 "switchyard: error: unknown command '%s' (commands: generate, make-default-model,"
                 " info, quantize, place, run, coordinator, worker, serve; see --help)\n",
                 argv[1]);
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "switchyard: error: %s (see --help)\n", e.what());
    return 2;
  }
  if (generate->parsed()) return RunGenerate(gen, gen_runtime);
  if (make_default->parsed()) {
    Status st = WriteDefaultModel(default_out);
    if (!st.ok()) return Fail(st);
    std::printf("wrote the default model to %s\n", default_out.c_str());
    return 0;
  }
  if (info->parsed()) return RunInfo(info_model);
  if (place->parsed()) return RunPlace(place_flags);
  if (run->parsed()) return RunBatch(run_flags, run_runtime);
  if (serve->parsed()) {
    auto runtime = serve_runtime.Resolve();
    if (!runtime.ok()) return Fail(runtime.status());
    return RunServeCommand(*runtime);
  }
  for (auto [cmd, flags, rflags] : {std::tuple{coordinator, &coord_flags, &coord_runtime},
                                    std::tuple{worker, &worker_flags, &worker_runtime}}) {
    if (!cmd->parsed()) continue;
    auto runtime = rflags->Resolve();
    if (!runtime.ok()) return Fail(runtime.status());
    return cmd == worker ? RunWorkerCommand(*runtime, *flags)
                         : RunCoordinatorCommand(*runtime, *flags);
  }
  if (quantize->parsed()) {
    auto format = ParseExpertFormat(quant_format);
    if (!format.ok()) return Fail(format.status());
    QuantizeReport report;
    Status st = QuantizeCheckpoint(quant_in, quant_out, *format, &report);
    if (!st.ok()) return Fail(st);
    std::printf("quantized %lld expert tensors to %s: %.1f MB -> %.1f MB in %s\n",
                static_cast<long long>(report.tensors_quantized), quant_format.c_str(),
                report.bytes_in / 1e6, report.bytes_out / 1e6, quant_out.c_str());
    return 0;
  }
  return 2;
}
