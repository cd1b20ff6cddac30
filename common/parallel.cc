#include "common/parallel.h"

#include <omp.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace switchyard {

void SetComputeThreads(int n) {
  if (n <= 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    n = cores > 0 ? static_cast<int>(cores) : 1;
  }
  omp_set_num_threads(n);
}

int ComputeThreads() { return omp_get_max_threads(); }

StatusOr<int64_t> ParseOmpSpin(const std::string& text) {
  if (text.empty() || text == "off" || text == "0") return int64_t{0};
  if (text == "on") return kOmpSpinOn;
  int64_t n = 0;
  bool valid = true;
  for (char c : text) {
    if (c < '0' || c > '9' || n > 100000000) {
      valid = false;
      break;
    }
    n = n * 10 + (c - '0');
  }
  if (!valid || n > 1000000000) {
    return InvalidArgumentError("SWITCHYARD_OMP_SPIN='" + text +
                                "': expected off, on or a spin count 1..1000000000");
  }
  return n;
}

Status ApplyOpenMpWaitPolicy(char** argv) {
  int64_t spin = 0;
  const char* spin_env = std::getenv("SWITCHYARD_OMP_SPIN");
  if (spin_env != nullptr) {
    ASSIGN_OR_RETURN(spin, ParseOmpSpin(spin_env));
  }
  // A user's OMP_WAIT_POLICY or GOMP_SPINCOUNT wins (after our own re-exec both are set, or the
  // spin is 0, so nothing changes a second time).
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return OkStatus();
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return OkStatus();
  bool set_spin = false;
  if (spin > 0 && std::getenv("GOMP_SPINCOUNT") == nullptr &&
      setenv("GOMP_SPINCOUNT", std::to_string(spin).c_str(), 1) == 0) {
    set_spin = true;
  }
  execv("/proc/self/exe", argv);
  unsetenv("OMP_WAIT_POLICY");  // exec failed: carry on as we were
  if (set_spin) unsetenv("GOMP_SPINCOUNT");
  return OkStatus();
}

}  // namespace switchyard
