// Helpers shared by the test binaries: paths of fixtures and scratch directories.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace switchyard::testing {

inline std::string SourceDir() {
  const char* dir = std::getenv("SWITCHYARD_SOURCE_DIR");
  return dir ? dir : ".";
}

inline std::string FixtureDir(const std::string& name) {
  return SourceDir() + "/tests/oracle/fixtures/" + name;
}

// A fresh directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir() {
    std::string pattern =
        (std::filesystem::temp_directory_path() / "switchyard_test_XXXXXX").string();
    path_ = mkdtemp(pattern.data()) ? pattern : "";
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace switchyard::testing
