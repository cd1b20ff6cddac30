#include "common/parallel.h"

#include <omp.h>
#include <unistd.h>

#include <cstdlib>

namespace switchyard {

void SetComputeThreads(int n) {
  if (n <= 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    n = cores > 0 ? static_cast<int>(cores) : 1;
  }
  omp_set_num_threads(n);
}

int ComputeThreads() { return omp_get_max_threads(); }

void PreferPassiveOpenMpWait(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  execv("/proc/self/exe", argv);
  unsetenv("OMP_WAIT_POLICY");  // exec failed: carry on as we were
}

}  // namespace switchyard
