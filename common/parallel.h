// Compute-thread control. Kernels parallelise with OpenMP; this is the one place that sets how
// many threads they use (RuntimeConfig::num_threads).
#pragma once

namespace switchyard {

// n <= 0 selects all online cores. Not thread-safe: call at start-up.
void SetComputeThreads(int n);
int ComputeThreads();

}  // namespace switchyard
