// Helpers shared by the test binaries: paths of fixtures and scratch directories, random data.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace switchyard::testing {

inline std::string SourceDir() {
  const char* dir = std::getenv("SWITCHYARD_SOURCE_DIR");
  return dir ? dir : ".";
}

// n values from N(0, scale^2), deterministic for a seed.
inline std::vector<float> RandomNormal(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
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
