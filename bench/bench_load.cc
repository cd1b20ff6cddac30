// bench_load: peak memory and speed of loading a generated checkpoint of a few GB.
//   bench_load [--gb 2] [--dtype f32|bf16] [--dir /tmp/switchyard_bench_ckpt] [--keep]
// Prints one JSON line: checkpoint bytes, resident bytes, peak RSS increase, the ratio of the
// peak to the resident size (1.0 = every weight resident once, nothing else), and the load rate
// against this machine's memcpy bandwidth measured in the same run.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/memory_stats.h"
#include "common/parallel.h"
#include "model/model_config.h"
#include "model/random_checkpoint.h"
#include "model/weights.h"

using namespace switchyard;

namespace {

double Seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Single-thread memcpy bandwidth over 512 MB (read + write counted once, as the loader's copy).
double MemcpyGBs() {
  const size_t n = size_t{512} << 20;
  std::vector<char> a(n, 1), b(n, 0);
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    double t0 = Seconds();
    std::memcpy(b.data(), a.data(), n);
    double t1 = Seconds();
    best = std::max(best, n / (t1 - t0) / 1e9);
  }
  return best + 0 * b[n / 2];
}

}  // namespace

int main(int argc, char** argv) {
  if (auto st = switchyard::ApplyOpenMpWaitPolicy(argv); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 2;
  }
  double gb = 2.0;
  std::string dtype_name = "f32";
  std::string dir = (std::filesystem::temp_directory_path() / "switchyard_bench_ckpt").string();
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--gb" && i + 1 < argc)
      gb = std::atof(argv[++i]);
    else if (arg == "--dtype" && i + 1 < argc)
      dtype_name = argv[++i];
    else if (arg == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (arg == "--keep")
      keep = true;
    else {
      std::fprintf(stderr, "usage: bench_load [--gb G] [--dtype f32|bf16] [--dir D] [--keep]\n");
      return 2;
    }
  }
  const DType dtype = dtype_name == "bf16" ? DType::kBF16 : DType::kF32;
  const int bytes_per = dtype == DType::kBF16 ? 2 : 4;
  // Experts dominate: each MoE layer holds 64 experts of 2048 x 1024 (3 matrices).
  const double layer_bytes = 64.0 * 3 * 2048 * 1024 * bytes_per;
  const int layers = std::max(1, static_cast<int>(std::lround(gb * 1e9 / layer_bytes)));
  const std::string config = R"({"architectures": ["DeepseekV3ForCausalLM"], "vocab_size": 8192,
    "hidden_size": 2048, "intermediate_size": 4096, "moe_intermediate_size": 1024,
    "num_hidden_layers": )" + std::to_string(layers) +
                             R"(, "first_k_dense_replace": 0,
    "num_attention_heads": 16, "q_lora_rank": 512, "kv_lora_rank": 256, "qk_nope_head_dim": 64,
    "qk_rope_head_dim": 32, "v_head_dim": 64, "n_routed_experts": 64, "n_shared_experts": 1,
    "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "norm_topk_prob": true,
    "routed_scaling_factor": 2.5, "eos_token_id": 1})";
  RandomCheckpointOptions options;
  options.dtype = dtype;
  options.max_shard_bytes = int64_t{1} << 30;
  std::fprintf(stderr, "bench_load: writing a %d-layer checkpoint (%s) to %s\n", layers,
               dtype_name.c_str(), dir.c_str());
  Status st = WriteRandomCheckpoint(dir, config, options);
  if (!st.ok()) {
    std::fprintf(stderr, "bench_load: %s\n", st.ToString().c_str());
    return 1;
  }
  auto model_config = ParseModelConfig(config, "bench");
  const double memcpy_gbs = MemcpyGBs();
  ResetPeakRss();
  const int64_t baseline = CurrentRssBytes();
  LoadReport report;
  auto weights = LoadModelWeights(dir, *model_config, {}, &report);
  if (!weights.ok()) {
    std::fprintf(stderr, "bench_load: %s\n", weights.status().ToString().c_str());
    return 1;
  }
  const int64_t peak = PeakRssBytes() - baseline;
  const double load_gbs = report.bytes_read / report.seconds / 1e9;
  std::printf(
      "{\"bench\": \"load\", \"dtype\": \"%s\", \"checkpoint_bytes\": %lld, "
      "\"resident_bytes\": %lld, \"peak_rss_increase_bytes\": %lld, "
      "\"peak_over_resident\": %.3f, \"peak_over_checkpoint\": %.3f, \"load_seconds\": %.2f, "
      "\"load_GBps\": %.2f, \"memcpy_GBps\": %.2f, \"load_over_memcpy\": %.2f}\n",
      dtype_name.c_str(), static_cast<long long>(report.bytes_read),
      static_cast<long long>(report.bytes_resident), static_cast<long long>(peak),
      static_cast<double>(peak) / report.bytes_resident,
      static_cast<double>(peak) / report.bytes_read, report.seconds, load_gbs, memcpy_gbs,
      load_gbs / memcpy_gbs);
  if (!keep) std::filesystem::remove_all(dir);
  return 0;
}
