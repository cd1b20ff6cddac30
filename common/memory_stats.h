// Process memory statistics from /proc (Linux): resident set size and its peak ("high water
// mark"), with a reset so a phase (e.g. loading a checkpoint) can be measured on its own.
#pragma once

#include <cstdint>

namespace switchyard {

// Current resident set size in bytes (VmRSS); -1 if unavailable.
int64_t CurrentRssBytes();
// Peak resident set size in bytes since start or the last ResetPeakRss (VmHWM); -1 if unavailable.
int64_t PeakRssBytes();
// Resets the peak to the current RSS (writes 5 to /proc/self/clear_refs). False if unsupported.
bool ResetPeakRss();

}  // namespace switchyard
