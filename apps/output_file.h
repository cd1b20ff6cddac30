// Where a command writes its result lines: a file named by --out, or stdout.
#pragma once

#include <fstream>
#include <iostream>
#include <string>

#include "common/status.h"

namespace switchyard {

// Opens `path` into `file` and returns it, or returns std::cout when `path` is empty. `file` must
// outlive the returned stream. Errors: InvalidArgument naming the path when it cannot be created.
inline StatusOr<std::ostream*> OpenOutput(const std::string& path, std::ofstream& file) {
  if (path.empty()) return &std::cout;
  file.open(path);
  if (!file) return InvalidArgumentError("cannot create '" + path + "'");
  return &file;
}

}  // namespace switchyard
