#include "common/file_util.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace switchyard {

StatusOr<std::string> ReadFileToString(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return NotFoundError("cannot open '" + path + "': " + std::strerror(errno));
  std::string text;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return NotFoundError("cannot read '" + path + "'");
  return text;
}

}  // namespace switchyard
