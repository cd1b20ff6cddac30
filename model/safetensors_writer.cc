#include "model/safetensors_writer.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "common/dtype.h"

namespace switchyard {

Status WriteSafetensors(const std::string& path, std::vector<TensorToWrite> tensors,
                        const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second) {
      return InvalidArgumentError("WriteSafetensors '" + path + "': duplicate tensor '" + t.name +
                                  "'");
    }
  }
  std::stable_sort(tensors.begin(), tensors.end(),
                   [](const TensorToWrite& a, const TensorToWrite& b) {
                     int aa = DTypeBits(a.dtype), bb = DTypeBits(b.dtype);
                     return aa != bb ? aa > bb : a.name < b.name;
                   });
  // nlohmann's default object is sorted by key; order in the header does not matter to readers.
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    uint64_t bits = DTypeBits(t.dtype);
    for (int64_t d : t.shape) bits *= static_cast<uint64_t>(d);
    uint64_t bytes = bits / 8;
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + bytes}}};
    sizes.push_back(bytes);
    offset += bytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return InternalError("cannot create '" + tmp + "': " + std::strerror(errno));
  uint8_t len[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(text.data(), 1, n, f) == n;
  std::vector<uint8_t> buffer;
  for (size_t i = 0; ok && i < tensors.size(); ++i) {
    buffer.assign(sizes[i], 0);
    if (tensors[i].fill) tensors[i].fill(buffer.data(), sizes[i]);
    ok = std::fwrite(buffer.data(), 1, sizes[i], f) == sizes[i];
  }
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return InternalError("cannot write '" + path + "': " + std::strerror(errno));
  }
  return OkStatus();
}

Status WriteSafetensorsIndex(const std::string& path,
                             const std::map<std::string, std::string>& weight_map,
                             uint64_t total_size) {
  nlohmann::json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
  std::string text = index.dump(2) + "\n";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return InternalError("cannot create '" + path + "': " + std::strerror(errno));
  bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) return InternalError("cannot write '" + path + "'");
  return OkStatus();
}

std::function<void(uint8_t*, uint64_t)> FillFromFloats(std::vector<float> values, DType dtype) {
  return [values = std::move(values), dtype](uint8_t* out, uint64_t bytes) {
    switch (dtype) {
      case DType::kF32:
        std::memcpy(out, values.data(), std::min<uint64_t>(bytes, values.size() * 4));
        break;
      case DType::kBF16:
        for (size_t i = 0; i < values.size() && 2 * i + 1 < bytes; ++i) {
          uint16_t v = F32ToBf16(values[i]);
          std::memcpy(out + 2 * i, &v, 2);
        }
        break;
      case DType::kF16:
        for (size_t i = 0; i < values.size() && 2 * i + 1 < bytes; ++i) {
          uint16_t v = F32ToF16(values[i]);
          std::memcpy(out + 2 * i, &v, 2);
        }
        break;
      default:
        break;
    }
  };
}

}  // namespace switchyard
