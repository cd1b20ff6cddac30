// Compute-thread control. Kernels parallelise with OpenMP; this is the one place that sets how
// many threads they use (RuntimeConfig::num_threads).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace switchyard {

// n <= 0 selects all online cores. Not thread-safe: call at start-up.
void SetComputeThreads(int n);
int ComputeThreads();

// How long an idle OpenMP thread spins before it sleeps, from SWITCHYARD_OMP_SPIN: "off" (or
// unset, or "0"): 0, sleep at once; "on": kOmpSpinOn; a count 1..1e9: that many spin iterations
// (libgomp's GOMP_SPINCOUNT; libgomp estimates ~100 per microsecond). Anything else is
// InvalidArgument naming the text.
inline constexpr int64_t kOmpSpinOn = 10000;
StatusOr<int64_t> ParseOmpSpin(const std::string& text);

// Call first thing in main(). OpenMP reads its wait policy only at start-up. Unless the user set
// OMP_WAIT_POLICY (then nothing changes): OMP_WAIT_POLICY becomes "passive", GOMP_SPINCOUNT (unless
// set) the SWITCHYARD_OMP_SPIN count when it is not 0, and the program re-executes itself with the
// same arguments (if the exec fails it returns OK and nothing changes). libgomp reads
// GOMP_SPINCOUNT; other OpenMP runtimes ignore it (the spin is then off). An invalid
// SWITCHYARD_OMP_SPIN is returned as InvalidArgument (the caller exits) before anything changes.
// Why: with the default (spin ~3 ms before sleeping) and any other busy process or rank on the
// same cores, idle threads spinning steal the cores that the work needs: two engines sharing 2
// vCPUs decoded at 5 tok/s instead of 300 (docs/PERFORMANCE.md, "OpenMP wait policy"). Sleeping at
// once costs ~20 us per parallel region (the futex wake-up of an idle vCPU), which is why a
// process that has its cores to itself (one rank per socket or per pinned core set) decodes up to
// 2x faster with SWITCHYARD_OMP_SPIN=on: opt-in, since nothing here can tell whether the cores
// are shared.
Status ApplyOpenMpWaitPolicy(char** argv);

}  // namespace switchyard
