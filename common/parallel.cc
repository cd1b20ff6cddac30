#include "common/parallel.h"

#include <omp.h>
#include <unistd.h>

namespace switchyard {

void SetComputeThreads(int n) {
  if (n <= 0) {
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    n = cores > 0 ? static_cast<int>(cores) : 1;
  }
  omp_set_num_threads(n);
}

int ComputeThreads() { return omp_get_max_threads(); }

}  // namespace switchyard
