#include "model/quantize_checkpoint.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "common/file_util.h"
#include "common/logging.h"
#include "kernels/cpu/fp4_gemm.h"
#include "model/safetensors_writer.h"

namespace switchyard {
namespace {

using json = nlohmann::json;

constexpr const char* kVersion = "0.1.0";

std::function<void(uint8_t*, uint64_t)> CopyBytes(const uint8_t* src) {
  return [src](uint8_t* out, uint64_t bytes) { std::memcpy(out, src, bytes); };
}

template <class Bytes>
std::function<void(uint8_t*, uint64_t)> ShareBytes(std::shared_ptr<Bytes> data) {
  return [data](uint8_t* out, uint64_t bytes) { std::memcpy(out, data->data(), bytes); };
}

Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) return InternalError("cannot write '" + path + "'");
  return OkStatus();
}

// Module patterns that stay unquantized (ModelOpt's exclude_modules convention).
std::vector<std::string> ExcludedModules(const ModelConfig& c) {
  std::vector<std::string> out = {"lm_head", "model.layers.*.self_attn*"};
  const std::string moe = c.family == ModelFamily::kMixtral ? "block_sparse_moe" : "mlp";
  out.push_back("model.layers.*." + moe + ".gate");
  if (c.shared_intermediate_size > 0) out.push_back("model.layers.*.mlp.shared_experts*");
  for (int64_t l = 0; l < c.num_layers; ++l) {
    if (!c.moe_layer[l]) out.push_back("model.layers." + std::to_string(l) + ".mlp*");
  }
  return out;
}

}  // namespace

Status QuantizeCheckpoint(const std::string& in_dir, const std::string& out_dir,
                          ExpertFormat format, QuantizeReport* report) {
  if (format == ExpertFormat::kF32) {
    return InvalidArgumentError("quantize: choose an FP4 format (nvfp4 or mxfp4)");
  }
  ASSIGN_OR_RETURN(std::string config_text, ReadFileToString(in_dir + "/config.json"));
  ASSIGN_OR_RETURN(ModelConfig config, ParseModelConfig(config_text, in_dir + "/config.json"));
  if (!config.quant_algo.empty()) {
    return InvalidArgumentError("quantize: '" + in_dir + "' is already quantized (" +
                                config.quant_algo + ")");
  }
  ASSIGN_OR_RETURN(auto ckpt, Checkpoint::Open(in_dir));
  const cpu::Fp4Format fp4 =
      format == ExpertFormat::kNvFp4 ? cpu::Fp4Format::kNvFp4 : cpu::Fp4Format::kMxFp4;
  const int block = cpu::Fp4BlockSize(fp4);
  std::set<std::string> expert_weights;
  for (const WeightSpec& spec : RequiredWeights(config)) {
    if (spec.kind != WeightSpec::Kind::kExpertLinear) continue;
    if (spec.shape[1] % block != 0) {
      return InvalidArgumentError(
          "quantize: tensor '" + spec.name + "' has " + std::to_string(spec.shape[1]) +
          " input features, not a multiple of the " + std::to_string(block) + "-element " +
          cpu::Fp4FormatName(fp4) + " block");
    }
    expert_weights.insert(spec.name);
  }
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return InvalidArgumentError("quantize: cannot create '" + out_dir + "': " + ec.message());

  QuantizeReport local;
  std::map<std::string, std::string> weight_map;
  const auto files = ckpt->Files();
  for (const SafetensorsFile* file : files) {
    const std::string shard = std::filesystem::path(file->path()).filename().string();
    std::vector<TensorToWrite> out;
    for (const TensorInfo& info : file->header().tensors) {
      local.bytes_in += static_cast<int64_t>(info.end - info.begin);
      if (expert_weights.count(info.name) == 0) {
        out.push_back({info.name, info.dtype, info.shape, CopyBytes(file->Data(info))});
        continue;
      }
      std::vector<float> w(info.NumElements());
      ConvertToF32(file->Data(info), info.dtype, info.NumElements(), w.data());
      ASSIGN_OR_RETURN(cpu::Fp4Weight q,
                       cpu::QuantizeFp4(w.data(), info.shape[0], info.shape[1], fp4, info.name));
      const std::string prefix = info.name.substr(0, info.name.size() - 7);  // drop ".weight"
      auto packed = std::make_shared<HugePageBytes>(std::move(q.packed));
      auto scales = std::make_shared<HugePageBytes>(std::move(q.scales));
      out.push_back({info.name, DType::kU8, {q.rows, q.cols / 2}, ShareBytes(packed)});
      out.push_back({prefix + ".weight_scale",
                     fp4 == cpu::Fp4Format::kNvFp4 ? DType::kF8E4M3 : DType::kF8E8M0,
                     {q.rows, q.cols / block},
                     ShareBytes(scales)});
      if (fp4 == cpu::Fp4Format::kNvFp4) {
        const float g = q.global_scale;
        out.push_back({prefix + ".weight_scale_2", DType::kF32, {}, [g](uint8_t* o, uint64_t) {
                         std::memcpy(o, &g, 4);
                       }});
      }
      ++local.tensors_quantized;
    }
    for (const auto& t : out) {
      weight_map[t.name] = shard;
      int64_t bits = DTypeBits(t.dtype);
      for (int64_t d : t.shape) bits *= d;
      local.bytes_out += bits / 8;
    }
    RETURN_IF_ERROR(
        WriteSafetensors(out_dir + "/" + shard, std::move(out), file->header().metadata));
    LOG_INFO("quantize", "wrote %s", (out_dir + "/" + shard).c_str());
  }
  if (files.size() > 1) {
    RETURN_IF_ERROR(WriteSafetensorsIndex(out_dir + "/model.safetensors.index.json", weight_map,
                                          static_cast<uint64_t>(local.bytes_out)));
  }
  const std::string algo = fp4 == cpu::Fp4Format::kNvFp4 ? "W4A16_NVFP4" : "MXFP4";
  const std::vector<std::string> excluded = ExcludedModules(config);
  json cfg = json::parse(config_text);
  cfg["quantization_config"] = {{"quant_method", "modelopt"},
                                {"quant_algo", algo},
                                {"group_size", block},
                                {"producer", {{"name", "switchyard"}, {"version", kVersion}}},
                                {"exclude_modules", excluded}};
  RETURN_IF_ERROR(WriteText(out_dir + "/config.json", cfg.dump(2) + "\n"));
  json hf = {{"producer", {{"name", "switchyard"}, {"version", kVersion}}},
             {"quantization",
              {{"quant_algo", algo},
               {"kv_cache_quant_algo", nullptr},
               {"group_size", block},
               {"exclude_modules", excluded}}}};
  RETURN_IF_ERROR(WriteText(out_dir + "/hf_quant_config.json", hf.dump(2) + "\n"));
  if (report != nullptr) *report = local;
  return OkStatus();
}

}  // namespace switchyard
