#include "common/memory_stats.h"

#include <cstdio>
#include <cstring>

namespace switchyard {
namespace {

int64_t ReadStatusKb(const char* key) {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  int64_t value = -1;
  const size_t len = std::strlen(key);
  while (std::fgets(line, sizeof(line), f)) {
    if (std::strncmp(line, key, len) == 0 && line[len] == ':') {
      long long kb = 0;
      if (std::sscanf(line + len + 1, "%lld", &kb) == 1) value = kb;
      break;
    }
  }
  std::fclose(f);
  return value;
}

}  // namespace

int64_t CurrentRssBytes() {
  int64_t kb = ReadStatusKb("VmRSS");
  return kb < 0 ? -1 : kb * 1024;
}

int64_t PeakRssBytes() {
  int64_t kb = ReadStatusKb("VmHWM");
  return kb < 0 ? -1 : kb * 1024;
}

bool ResetPeakRss() {
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (f == nullptr) return false;
  bool ok = std::fputs("5", f) >= 0;
  ok = std::fclose(f) == 0 && ok;
  return ok;
}

}  // namespace switchyard
