#include "apps/process_signals.h"

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "common/logging.h"

namespace switchyard {
namespace {

sigset_t StopSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

StopSignals::StopSignals() {
  const sigset_t set = StopSet();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

int StopSignals::Wait(std::chrono::milliseconds timeout) const {
  const sigset_t set = StopSet();
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return 0;
    timespec slice{static_cast<time_t>(left.count() / 1000000000),
                   static_cast<long>(left.count() % 1000000000)};
    const int sig = sigtimedwait(&set, nullptr, &slice);
    if (sig > 0) return sig;
    if (errno == EAGAIN) return 0;  // timed out; EINTR (another signal): wait on
  }
}

ExitOnSignal::ExitOnSignal(const StopSignals* signals, std::string what) {
  thread_ = std::thread([this, signals, what = std::move(what)] {
    while (!done_.load()) {
      const int sig = signals->Wait(std::chrono::milliseconds(200));
      if (sig == 0) continue;
      LOG_WARN("shutdown", "signal %d during %s: exiting", sig, what.c_str());
      std::fprintf(stderr, "switchyard: error: signal %d during %s\n", sig, what.c_str());
      std::fflush(stderr);
      std::_Exit(1);
    }
  });
}

ExitOnSignal::~ExitOnSignal() {
  done_.store(true);
  thread_.join();
}

ExitWatchdog::ExitWatchdog(std::chrono::milliseconds limit, std::string what) {
  thread_ = std::thread([this, limit, what = std::move(what)] {
    std::unique_lock<std::mutex> lock(mu_);
    if (done_cv_.wait_for(lock, limit, [this] { return done_; })) return;
    LOG_ERROR("shutdown", "%s did not finish within %lld ms: exiting", what.c_str(),
              static_cast<long long>(limit.count()));
    std::fprintf(stderr, "switchyard: error: %s did not finish within %lld ms\n", what.c_str(),
                 static_cast<long long>(limit.count()));
    std::fflush(stderr);
    std::_Exit(1);
  });
}

ExitWatchdog::~ExitWatchdog() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
  }
  done_cv_.notify_all();
  thread_.join();
}

}  // namespace switchyard
