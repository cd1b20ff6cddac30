#include "model/safetensors_writer.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "common/dtype.h"

namespace switchyard {

Status WriteSafetensors(const std::string& path, std::vector<TensorToWrite> tensors,
                        const std::map<std::string, std::string>& metadata) {
  const std::string where = "WriteSafetensors '" + path + "'";
  std::set<std::string> names;
  for (const auto& t : tensors) {
    const std::string what = where + ": tensor '" + t.name + "'";
    if (!names.insert(t.name).second) {
      return InvalidArgumentError(where + ": duplicate tensor '" + t.name + "'");
    }
    // The reader takes this key for the metadata map, not a tensor.
    if (t.name == "__metadata__") {
      return InvalidArgumentError(what + ": the name is reserved for the metadata map");
    }
    // The same checks as the reader: a file it would refuse is never written.
    uint64_t count = 1;
    for (int64_t d : t.shape) {
      if (d < 0) {
        return InvalidArgumentError(what + ": negative dimension in shape " +
                                    nlohmann::json(t.shape).dump());
      }
      if (__builtin_mul_overflow(count, static_cast<uint64_t>(d), &count) ||
          count > static_cast<uint64_t>(INT64_MAX)) {
        return InvalidArgumentError(what + ": shape " + nlohmann::json(t.shape).dump() +
                                    " overflows");
      }
    }
    uint64_t bits = 0;
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(DTypeBits(t.dtype)), &bits)) {
      return InvalidArgumentError(what + ": shape " + nlohmann::json(t.shape).dump() + " of " +
                                  DTypeName(t.dtype) + " overflows");
    }
    if (bits % 8 != 0) {
      return InvalidArgumentError(what + ": shape " + nlohmann::json(t.shape).dump() + " of " +
                                  DTypeName(t.dtype) + " is not a whole number of bytes");
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
    for (int64_t d : t.shape) bits *= static_cast<uint64_t>(d);  // checked above
    uint64_t bytes = bits / 8;
    if (__builtin_add_overflow(offset, bytes, &offset)) {
      return InvalidArgumentError(where + ": tensors total more than 2^64 bytes");
    }
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset - bytes, offset}}};
    sizes.push_back(bytes);
  }
  std::string text;
  try {
    text = header.dump();  // strict: throws on a name or metadata string that is not UTF-8
  } catch (const nlohmann::json::exception& e) {
    return InvalidArgumentError(where + ": a tensor name or metadata string is not valid UTF-8 (" +
                                e.what() + ")");
  }
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
    // At least one byte, so that an empty tensor's fill never sees a null pointer.
    buffer.assign(std::max<uint64_t>(sizes[i], 1), 0);
    if (tensors[i].fill) tensors[i].fill(buffer.data(), sizes[i]);
    ok = sizes[i] == 0 || std::fwrite(buffer.data(), 1, sizes[i], f) == sizes[i];
  }
  int error = ok ? 0 : errno;
  if (std::fclose(f) != 0 && ok) {
    ok = false;
    error = errno;
  }
  if (ok && std::rename(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    error = errno;
  }
  if (!ok) {
    std::remove(tmp.c_str());
    return InternalError("cannot write '" + path + "': " + std::strerror(error));
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
