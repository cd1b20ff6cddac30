// Whole-file reads for configuration-sized files (config.json, YAML, JSONL requests, plans).
#pragma once

#include <string>

#include "common/status.h"

namespace switchyard {

// The file's bytes. NotFound "cannot open '<path>': <reason>" when it cannot be opened or read.
StatusOr<std::string> ReadFileToString(const std::string& path);

}  // namespace switchyard
