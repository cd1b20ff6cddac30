#include "transport/shm/peer_memory.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>

namespace switchyard {
namespace {

constexpr uint64_t kMagic = 0x59445241594853ull;  // "SHYARDY"

// Fixed-size records, copied byte for byte through AllToAllV (every rank runs this code).
struct Identity {
  char host[64] = {};
  char boot_id[48] = {};
  char pid_ns[48] = {};
  uint64_t uid = 0;
  int64_t pid = 0;
  int64_t want = 0;
};
struct Offer {
  int64_t ok = 0;
  int64_t bytes = 0;
  uint64_t nonce[2] = {0, 0};
  char name[64] = {};
  char why[96] = {};
};
struct Verdict {
  int64_t ok = 0;
  char why[96] = {};
};

void CopyText(char* dst, size_t cap, const std::string& s) {
  const size_t n = std::min(cap - 1, s.size());
  std::memcpy(dst, s.data(), n);
  dst[n] = '\0';
}

std::string ReadFirstLine(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string Errno(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Every rank's `mine` (sizeof(T) bytes) -> all[r] (collective).
template <typename T>
Status AllGather(Transport& t, const T& mine, std::vector<T>* all, Deadline deadline) {
  const int n = t.world_size();
  const int64_t b = sizeof(T);
  std::vector<std::byte> send(b * n), recv(b * n);
  std::vector<int64_t> counts(n, b), send_off(n), recv_off(n);
  for (int p = 0; p < n; ++p) {
    std::memcpy(send.data() + b * p, &mine, b);
    send_off[p] = recv_off[p] = b * p;
  }
  RETURN_IF_ERROR(t.AllToAllV(send, counts, send_off, recv, counts, recv_off, deadline));
  all->resize(n);
  for (int p = 0; p < n; ++p) std::memcpy(&(*all)[p], recv.data() + b * p, b);
  return OkStatus();
}

// Creates, sizes and maps this rank's segment; fills `offer` (ok or why) and `seg`.
void CreateOwn(int64_t want, Offer* offer, std::byte** base) {
  static std::atomic<uint64_t> counter{0};
  std::random_device rd;
  const uint64_t r0 = (uint64_t{rd()} << 32) | rd(), r1 = (uint64_t{rd()} << 32) | rd();
  char name[64];
  std::snprintf(name, sizeof name, "/switchyard-%d-%llu-%016llx", static_cast<int>(getpid()),
                static_cast<unsigned long long>(counter++), static_cast<unsigned long long>(r0));
  CopyText(offer->name, sizeof offer->name, name);
  offer->nonce[0] = r0;
  offer->nonce[1] = r1;
  int64_t bytes = std::max((want + 4095) / 4096 * 4096, PeerMemory::kMinBytes);
  struct statvfs vfs;
  if (statvfs("/dev/shm", &vfs) == 0) {
    const int64_t room = static_cast<int64_t>(vfs.f_bavail) * static_cast<int64_t>(vfs.f_frsize);
    bytes = std::min(bytes, room / 4 / 4096 * 4096);
  }
  if (bytes < PeerMemory::kMinBytes) {
    CopyText(offer->why, sizeof offer->why, "/dev/shm has too little free space");
    return;
  }
  const int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) {
    CopyText(offer->why, sizeof offer->why, Errno("shm_open"));
    return;
  }
  const int rc = posix_fallocate(fd, 0, bytes);
  void* p = MAP_FAILED;
  if (rc != 0) {
    errno = rc;
    CopyText(offer->why, sizeof offer->why, Errno("posix_fallocate"));
  } else {
    p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) CopyText(offer->why, sizeof offer->why, Errno("mmap"));
  }
  close(fd);
  if (p == MAP_FAILED) {
    shm_unlink(name);
    return;
  }
  const uint64_t head[4] = {kMagic, r0, r1, static_cast<uint64_t>(bytes)};
  std::memcpy(p, head, sizeof head);
  *base = static_cast<std::byte*>(p);
  offer->bytes = bytes;
  offer->ok = 1;
}

// Maps a peer's segment named in `offer`; "" or why not.
std::string MapPeer(const Offer& offer, std::byte** base) {
  const int fd = shm_open(offer.name, O_RDWR, 0);
  if (fd < 0) return Errno("shm_open");
  struct stat st;
  std::string why;
  void* p = MAP_FAILED;
  if (fstat(fd, &st) != 0) {
    why = Errno("fstat");
  } else if (st.st_size != offer.bytes) {
    why =
        "segment size " + std::to_string(st.st_size) + ", announced " + std::to_string(offer.bytes);
  } else {
    p = mmap(nullptr, offer.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) why = Errno("mmap");
  }
  close(fd);
  if (p == MAP_FAILED) return why;
  uint64_t head[4];
  std::memcpy(head, p, sizeof head);
  if (head[0] != kMagic || head[1] != offer.nonce[0] || head[2] != offer.nonce[1]) {
    munmap(p, offer.bytes);
    return "segment nonce differs (another host's /dev/shm?)";
  }
  *base = static_cast<std::byte*>(p);
  return "";
}

}  // namespace

StatusOr<std::unique_ptr<PeerMemory>> PeerMemory::Create(Transport& t, int64_t bytes,
                                                         Deadline deadline, std::string* why_not) {
  if (bytes <= 0) return InvalidArgumentError("PeerMemory: segment size must be > 0");
  const int n = t.world_size(), me = t.rank();
  auto refuse = [why_not](std::string why) -> std::unique_ptr<PeerMemory> {
    if (why_not != nullptr) *why_not = std::move(why);
    return nullptr;
  };

  // 1. Identities: all on one host?
  Identity id;
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  CopyText(id.host, sizeof id.host, host);
  CopyText(id.boot_id, sizeof id.boot_id, ReadFirstLine("/proc/sys/kernel/random/boot_id"));
  char ns[64] = {};
  if (readlink("/proc/self/ns/pid", ns, sizeof ns - 1) < 0) ns[0] = '\0';
  CopyText(id.pid_ns, sizeof id.pid_ns, ns);
  id.uid = getuid();
  id.pid = getpid();
  id.want = bytes;
  std::vector<Identity> ids;
  RETURN_IF_ERROR(AllGather(t, id, &ids, deadline));
  for (int p = 0; p < n; ++p) {
    if (std::strcmp(ids[p].host, id.host) != 0 || std::strcmp(ids[p].boot_id, id.boot_id) != 0) {
      return refuse("ranks on different hosts (rank " + std::to_string(p) + " on " + ids[p].host +
                    ", rank " + std::to_string(me) + " on " + id.host + ")");
    }
  }

  // 2. Segments.
  std::unique_ptr<PeerMemory> pm(new PeerMemory());
  pm->rank_ = me;
  pm->segments_.resize(n);
  Offer offer;
  CreateOwn(bytes, &offer, &pm->segments_[me].base);
  pm->segments_[me].bytes = offer.ok ? offer.bytes : 0;
  std::vector<Offer> offers;
  Status st = AllGather(t, offer, &offers, deadline);
  auto unlink_own = [&offer] {
    if (offer.ok) shm_unlink(offer.name);
  };
  if (!st.ok()) {
    unlink_own();
    return st;  // pm unmaps its own segment
  }
  for (int p = 0; p < n; ++p) pm->segments_[p].pid = ids[p].pid;

  // 3. Map the peers', agree.
  Verdict verdict;
  verdict.ok = 1;
  for (int p = 0; p < n && verdict.ok; ++p) {
    if (!offers[p].ok) {
      verdict.ok = 0;
      CopyText(verdict.why, sizeof verdict.why, "rank " + std::to_string(p) + ": " + offers[p].why);
    } else if (p != me) {
      const std::string why = MapPeer(offers[p], &pm->segments_[p].base);
      if (!why.empty()) {
        verdict.ok = 0;
        CopyText(verdict.why, sizeof verdict.why,
                 "rank " + std::to_string(me) + " maps rank " + std::to_string(p) + ": " + why);
      } else {
        pm->segments_[p].bytes = offers[p].bytes;
      }
    }
  }
  std::vector<Verdict> verdicts;
  st = AllGather(t, verdict, &verdicts, deadline);
  unlink_own();  // every peer has opened it (or given up): the name is no longer needed
  RETURN_IF_ERROR(st);
  for (int p = 0; p < n; ++p) {
    if (!verdicts[p].ok) return refuse(verdicts[p].why);
  }
  bool same_ns = ids[me].pid_ns[0] != '\0';
  for (int p = 0; p < n; ++p) same_ns = same_ns && std::strcmp(ids[p].pid_ns, id.pid_ns) == 0;
  pm->pids_comparable_ = same_ns;
  return pm;
}

PeerMemory::~PeerMemory() {
  if (leaked_) return;
  for (const Segment& s : segments_) {
    if (s.base != nullptr) munmap(s.base, s.bytes);
  }
}

bool PeerMemory::PeerDead(int r) const {
  if (!pids_comparable_ || r == rank_ || segments_[r].pid == segments_[rank_].pid) return false;
  const pid_t pid = static_cast<pid_t>(segments_[r].pid);
  if (kill(pid, 0) != 0) return errno == ESRCH;
  // Alive to kill(), but maybe a zombie its launcher has not reaped yet: state Z or X in
  // /proc/<pid>/stat (the field after the parenthesised command name).
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  const std::string stat = ReadFirstLine(path);
  const size_t close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  const char state = stat[close + 2];
  return state == 'Z' || state == 'X';
}

}  // namespace switchyard
