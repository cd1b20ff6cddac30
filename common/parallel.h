// Compute-thread control. Kernels parallelise with OpenMP; this is the one place that sets how
// many threads they use (RuntimeConfig::num_threads).
#pragma once

namespace switchyard {

// n <= 0 selects all online cores. Not thread-safe: call at start-up.
void SetComputeThreads(int n);
int ComputeThreads();

// Call first thing in main(). OpenMP reads OMP_WAIT_POLICY only at start-up, and its default
// (spin before sleeping) made decode 2-4x slower on the 2-vCPU machines we measured (idle threads
// spinning steal the core the main thread needs between parallel regions; docs/PERFORMANCE.md).
// If the variable is unset, this sets it to "passive" and re-executes the program with the same
// arguments; if it is set (a user's choice) or the exec fails, it returns and nothing changes.
void PreferPassiveOpenMpWait(char** argv);

}  // namespace switchyard
