// bench_engine: CPU engine speed against this machine's own limits, measured in the same run.
//   bench_engine [--model DIR] [--batch 1,8] [--steps 16] [--prompt 128]
//                [--experts f32,nvfp4]   (routed experts FP32 and/or quantized at load time)
// Without --model, a DeepSeek-V3-shaped F32 checkpoint (hidden 1024, 4 layers, 32 experts top-4)
// is generated in a temp dir. Baselines: streaming read bandwidth over 1 GB with all threads, the
// better of 4 KiB and huge pages (decode is bound by reading weights, which the loader places on
// huge pages) and OpenBLAS sgemm on the expert GEMM shape (prefill is
// bound by GEMM). Prints per case: decode tok/s, the weight bytes a decode step must read, the
// bandwidth that implies, its ratio to the streaming baseline; prefill tok/s; our FP32 matmul
// GFLOP/s against OpenBLAS on the same shape.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/logging.h"
#include "common/parallel.h"
#include "kernels/cpu/cpu_kernels.h"
#include "model/engine.h"
#include "model/random_checkpoint.h"

using namespace switchyard;

namespace {

// GFLOP/s of y = x·wᵀ for [m,k] x [n,k]: ours vs OpenBLAS (same threads).
void GemmRatio(int64_t m, int64_t k, int64_t n, double* ours, double* blas) {
  std::vector<float> x(m * k, 0.5f), w(n * k, 0.25f), y(m * n);
  auto time = [&](auto&& fn) {
    fn();
    double best = 1e30;
    for (int rep = 0; rep < 5; ++rep) {
      double t0 = bench::Now();
      fn();
      best = std::min(best, bench::Now() - t0);
    }
    return 2.0 * m * n * k / best / 1e9;
  };
  *ours = time([&] { cpu::MatMulTransB(x.data(), m, k, w.data(), n, y.data()); });
  *blas = time([&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x.data(), k, w.data(), k,
                0.0f, y.data(), n);
  });
}

constexpr const char* kBenchConfig = R"({
  "architectures": ["DeepseekV3ForCausalLM"], "vocab_size": 16384, "hidden_size": 1024,
  "intermediate_size": 2816, "moe_intermediate_size": 512, "num_hidden_layers": 4,
  "first_k_dense_replace": 1, "num_attention_heads": 16, "q_lora_rank": 384, "kv_lora_rank": 256,
  "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64, "n_routed_experts": 32,
  "n_shared_experts": 1, "num_experts_per_tok": 4, "n_group": 4, "topk_group": 2,
  "norm_topk_prob": true, "routed_scaling_factor": 2.5, "eos_token_id": 1})";

}  // namespace

int main(int argc, char** argv) {
  if (auto st = switchyard::ApplyOpenMpWaitPolicy(argv); !st.ok()) {
    std::fprintf(stderr, "%s\n", st.ToString().c_str());
    return 2;
  }
  std::string model_dir;
  std::vector<int> batches = {1, 8};
  int steps = 16, prompt_len = 128;
  std::vector<std::string> formats = {"f32", "nvfp4"};
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--model" && i + 1 < argc) {
      model_dir = argv[++i];
    } else if (arg == "--batch" && i + 1 < argc) {
      batches.clear();
      std::stringstream in(argv[++i]);
      std::string item;
      while (std::getline(in, item, ',')) batches.push_back(std::stoi(item));
    } else if (arg == "--experts" && i + 1 < argc) {
      formats.clear();
      std::stringstream in(argv[++i]);
      std::string item;
      while (std::getline(in, item, ',')) formats.push_back(item);
    } else if (arg == "--steps" && i + 1 < argc) {
      steps = std::stoi(argv[++i]);
    } else if (arg == "--prompt" && i + 1 < argc) {
      prompt_len = std::stoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: bench_engine [--model DIR] [--batch 1,8] [--steps N] "
                   "[--prompt N] [--experts f32,nvfp4,mxfp4]\n");
      return 2;
    }
  }
  SetLogLevel(LogLevel::kWarn);
  SetComputeThreads(0);
  std::string tmp;
  if (model_dir.empty()) {
    tmp = (std::filesystem::temp_directory_path() / "switchyard_bench_engine").string();
    RandomCheckpointOptions options;
    options.dtype = DType::kF32;
    Status st = WriteRandomCheckpoint(tmp, kBenchConfig, options);
    if (!st.ok()) {
      std::fprintf(stderr, "bench_engine: %s\n", st.ToString().c_str());
      return 1;
    }
    model_dir = tmp;
  }
  const double stream = bench::StreamBaselineGBs();
  std::map<std::pair<std::string, int>, double> decode_tok_s;
  int64_t gemm_k = 0, gemm_n = 0;
  for (const std::string& format : formats) {
    RuntimeConfig runtime;
    runtime.max_seq_len = prompt_len + steps + 1;
    runtime.expert_format = format;
    auto engine = Engine::Load(model_dir, runtime);
    if (!engine.ok()) {
      std::fprintf(stderr, "bench_engine: %s\n", engine.status().ToString().c_str());
      return 1;
    }
    const ModelConfig& c = (*engine)->model().config();
    const ModelWeights& w = (*engine)->model().weights();
    gemm_k = c.hidden;
    gemm_n = c.moe_intermediate_size;
    const double expert_bytes =
        static_cast<double>(w.ExpertBytes()) / (c.NumMoeLayers() * c.num_experts);
    const int64_t dense_bytes = w.ResidentBytes() - w.ExpertBytes() - w.embed.bytes();
    std::printf(
        "# experts %s: threads %d, streaming read %.1f GB/s, non-expert weights %.0f MB, "
        "%.2f MB per expert, %s\n",
        format.c_str(), ComputeThreads(), stream, dense_bytes / 1e6, expert_bytes / 1e6,
        c.Summary().c_str());
    for (int batch : batches) {
      std::vector<GenerationRequest> requests(batch);
      for (int b = 0; b < batch; ++b) {
        for (int t = 0; t < prompt_len; ++t) {
          requests[b].prompt.push_back((7 + 31 * t + 101 * b) % static_cast<int>(c.vocab_size));
        }
        requests[b].max_new_tokens = steps;
        requests[b].ignore_eos = true;
      }
      GenerationStats stats;
      auto results = (*engine)->Generate(requests, false, &stats);
      if (!results.ok()) {
        std::fprintf(stderr, "bench_engine: %s\n", results.status().ToString().c_str());
        return 1;
      }
      const double decode_steps = steps - 1;  // the first token comes from the prefill step
      const double step_s = stats.decode_seconds / decode_steps;
      // Distinct experts a step reads: with random routing ~ E·(1-(1-k/E)^batch) per MoE layer.
      const double p_untouched = std::pow(1.0 - double(c.num_topk) / c.num_experts, batch);
      const double experts_read = c.NumMoeLayers() * c.num_experts * (1.0 - p_untouched);
      const double bytes = dense_bytes + experts_read * expert_bytes;
      const double gbs = bytes / step_s / 1e9;
      decode_tok_s[{format, batch}] = batch / step_s;
      std::printf(
          "{\"bench\": \"engine_decode\", \"experts\": \"%s\", \"batch\": %d, "
          "\"decode_tok_s\": %.1f, \"step_ms\": %.2f, \"weight_bytes_per_step\": %.0f, "
          "\"effective_GBps\": %.2f, \"stream_GBps\": %.2f, \"ratio_vs_stream\": %.2f, "
          "\"prefill_tok_s\": %.1f}\n",
          format.c_str(), batch, batch / step_s, step_s * 1e3, bytes, gbs, stream, gbs / stream,
          stats.prompt_tokens / stats.prefill_seconds);
    }
  }
  for (const std::string& format : formats) {
    if (format == "f32" || decode_tok_s.count({"f32", batches[0]}) == 0) continue;
    for (int batch : batches) {
      std::printf(
          "{\"bench\": \"engine_decode_speedup\", \"experts\": \"%s\", \"batch\": %d, "
          "\"vs_f32\": %.2f}\n",
          format.c_str(), batch, decode_tok_s[{format, batch}] / decode_tok_s[{"f32", batch}]);
    }
  }
  for (int64_t m : {1, 8, 128, 512}) {
    double ours = 0, blas = 0;
    GemmRatio(m, gemm_k, gemm_n, &ours, &blas);
    std::printf(
        "{\"bench\": \"gemm_f32\", \"m\": %lld, \"k\": %lld, \"n\": %lld, "
        "\"ours_GFLOPs\": %.1f, \"openblas_GFLOPs\": %.1f, \"ratio\": %.2f}\n",
        static_cast<long long>(m), static_cast<long long>(gemm_k), static_cast<long long>(gemm_n),
        ours, blas, ours / blas);
  }
  if (!tmp.empty()) std::filesystem::remove_all(tmp);
  return 0;
}
