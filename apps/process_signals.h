// Process-level shutdown helpers of the long-running commands (`serve`, `worker`, `coordinator`):
// the stop signals (SIGINT, SIGTERM) taken synchronously, and a watchdog that bounds a blocking
// shutdown phase (e.g. MPI_Finalize waiting for a peer that never comes).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace switchyard {

// Blocks SIGINT and SIGTERM in the calling thread; threads started afterwards inherit the mask
// (construct it in main() before MPI or any other library starts threads), so the signals stay
// pending until Wait takes them instead of killing the process. The mask is not restored.
class StopSignals {
 public:
  StopSignals();
  // Waits up to `timeout` for SIGINT or SIGTERM: returns the signal number, or 0 on timeout.
  // Blocking (bounded by `timeout`). Thread-safe; a signal is returned to one caller only.
  int Wait(std::chrono::milliseconds timeout) const;
};

// While it exists, a stop signal ends the process at once: logs "signal N during <what>" and
// _Exit(1) (e.g. while `serve` waits up to cluster.register_timeout_ms for its workers). Takes
// the signals from `signals` (which must outlive it) on one thread; the destructor stops it.
class ExitOnSignal {
 public:
  ExitOnSignal(const StopSignals* signals, std::string what);
  ~ExitOnSignal();
  ExitOnSignal(const ExitOnSignal&) = delete;
  ExitOnSignal& operator=(const ExitOnSignal&) = delete;

 private:
  std::atomic<bool> done_{false};
  std::thread thread_;
};

// Bounds a shutdown phase: unless destroyed within `limit`, logs "<what> did not finish within
// N ms" and ends the process with _Exit(1) (no destructors: a peer may be dead and the stuck call
// would never return). Starts one thread; the destructor disarms and joins it. Not copyable.
class ExitWatchdog {
 public:
  ExitWatchdog(std::chrono::milliseconds limit, std::string what);
  ~ExitWatchdog();
  ExitWatchdog(const ExitWatchdog&) = delete;
  ExitWatchdog& operator=(const ExitWatchdog&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace switchyard
