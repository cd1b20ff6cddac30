#include "common/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace switchyard {

Status WriteNpyFloat32(const std::string& path, const std::vector<int64_t>& shape,
                       const float* data) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  int64_t count = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
    if (i + 1 < shape.size()) dict += " ";
    count *= shape[i];
  }
  dict += "), }";
  // Magic (6) + version (2) + header length (2) + dict, padded with spaces and a final newline
  // to a multiple of 64 bytes.
  size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict.push_back('\n');
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return InvalidArgumentError("cannot create '" + path + "': " + std::strerror(errno));
  }
  const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
  const uint16_t len = static_cast<uint16_t>(dict.size());
  const unsigned char len_bytes[2] = {static_cast<unsigned char>(len & 0xff),
                                      static_cast<unsigned char>(len >> 8)};
  bool ok =
      std::fwrite(magic, 1, 8, f) == 8 && std::fwrite(len_bytes, 1, 2, f) == 2 &&
      std::fwrite(dict.data(), 1, dict.size(), f) == dict.size() &&
      (count == 0 || std::fwrite(data, sizeof(float), count, f) == static_cast<size_t>(count));
  ok = std::fclose(f) == 0 && ok;
  if (!ok) return InternalError("cannot write '" + path + "'");
  return OkStatus();
}

}  // namespace switchyard
