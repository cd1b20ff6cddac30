// The transport conformance suite: test bodies written once, run by every rank of a world over
// every built backend (transport_local_test: ranks as threads; transport_mpi_test: under mpirun).
// Each body is called on every rank with that rank's Transport, in the same order on all ranks.
// Every call carries a deadline, so a broken backend fails a case instead of hanging it.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "transport/transport.h"

namespace switchyard::testing {

// Generous: only a broken backend gets near it.
inline Deadline OpDeadline() { return Deadline::After(std::chrono::seconds(10)); }

inline std::byte PatternByte(int src, int dst, int iter, int64_t i) {
  return static_cast<std::byte>((src * 131 + dst * 31 + iter * 7 + i * 13 + (i >> 8)) & 0xff);
}

inline bool HasText(const Status& status, const std::string& text) {
  return status.message().find(text) != std::string::npos;
}

// Bytes from rank src to rank dst in round `iter`.
using CountFn = std::function<int64_t(int src, int dst, int iter)>;

// One AllToAllV with counts from `count`, regions packed with `gap` untouched bytes between them,
// payload PatternByte; checks every received byte and that the gaps were not written.
inline void CheckedAllToAllV(Transport& t, const CountFn& count, int iter, int64_t gap,
                             std::vector<std::byte>& send, std::vector<std::byte>& recv) {
  const int n = t.world_size();
  const int me = t.rank();
  std::vector<int64_t> send_counts(n), send_offsets(n), recv_counts(n), recv_offsets(n);
  int64_t send_total = gap;
  int64_t recv_total = gap;
  for (int p = 0; p < n; ++p) {
    send_counts[p] = count(me, p, iter);
    send_offsets[p] = send_total;
    send_total += send_counts[p] + gap;
    recv_counts[p] = count(p, me, iter);
    recv_offsets[p] = recv_total;
    recv_total += recv_counts[p] + gap;
  }
  // Buffers are only grown, so repeated rounds reuse them.
  if (static_cast<int64_t>(send.size()) < send_total) send.resize(send_total);
  if (static_cast<int64_t>(recv.size()) < recv_total) recv.resize(recv_total);
  for (int p = 0; p < n; ++p) {
    for (int64_t i = 0; i < send_counts[p]; ++i) {
      send[send_offsets[p] + i] = PatternByte(me, p, iter, i);
    }
  }
  std::fill(recv.begin(), recv.end(), std::byte{0xEE});
  Status status =
      t.AllToAllV(send, send_counts, send_offsets, recv, recv_counts, recv_offsets, OpDeadline());
  ASSERT_TRUE(status.ok()) << "rank " << me << " round " << iter << ": " << status.ToString();
  for (int p = 0; p < n; ++p) {
    int64_t bad = 0;
    for (int64_t i = 0; i < recv_counts[p]; ++i) {
      if (recv[recv_offsets[p] + i] != PatternByte(p, me, iter, i)) ++bad;
    }
    EXPECT_EQ(bad, 0) << "rank " << me << " round " << iter << ": bytes from rank " << p;
    for (int64_t i = 0; i < gap; ++i) {
      EXPECT_EQ(recv[recv_offsets[p] + recv_counts[p] + i], std::byte{0xEE})
          << "rank " << me << ": gap after region of rank " << p << " was written";
    }
  }
}

inline void CheckedAllToAllV(Transport& t, const CountFn& count, int iter = 0, int64_t gap = 0) {
  std::vector<std::byte> send, recv;
  CheckedAllToAllV(t, count, iter, gap, send, recv);
}

// One AllToAllVBounded: rank s sends count(s, d, iter) bytes to d, every receive region has
// capacity `cap` (+ `gap` untouched bytes after it). Checks recv_sizes, the bytes, and the gaps.
inline void CheckedBounded(Transport& t, const CountFn& count, int64_t cap, int iter, int64_t gap) {
  const int n = t.world_size();
  const int me = t.rank();
  std::vector<int64_t> send_counts(n), send_offsets(n), capacity(n, cap), recv_offsets(n);
  std::vector<int64_t> sizes(n, -1);
  int64_t send_total = 0;
  for (int p = 0; p < n; ++p) {
    send_counts[p] = count(me, p, iter);
    ASSERT_LE(send_counts[p], cap) << "test bug";
    send_offsets[p] = send_total;
    send_total += send_counts[p];
    recv_offsets[p] = (cap + gap) * p;
  }
  std::vector<std::byte> send(send_total), recv((cap + gap) * n, std::byte{0xEE});
  for (int p = 0; p < n; ++p) {
    for (int64_t i = 0; i < send_counts[p]; ++i) {
      send[send_offsets[p] + i] = PatternByte(me, p, iter, i);
    }
  }
  Status status = t.AllToAllVBounded(send, send_counts, send_offsets, recv, capacity, recv_offsets,
                                     sizes, OpDeadline());
  ASSERT_TRUE(status.ok()) << "rank " << me << " round " << iter << ": " << status.ToString();
  for (int p = 0; p < n; ++p) {
    ASSERT_EQ(sizes[p], count(p, me, iter)) << "rank " << me << " round " << iter << " from " << p;
    int64_t bad = 0;
    for (int64_t i = 0; i < sizes[p]; ++i) {
      if (recv[recv_offsets[p] + i] != PatternByte(p, me, iter, i)) ++bad;
    }
    EXPECT_EQ(bad, 0) << "rank " << me << " round " << iter << ": bytes from rank " << p;
    for (int64_t i = 0; i < gap; ++i) {
      EXPECT_EQ(recv[recv_offsets[p] + cap + i], std::byte{0xEE})
          << "rank " << me << ": gap after the capacity of rank " << p << " was written";
    }
  }
}

// Receive sizes as upper bounds: sizes from 0 to exactly the capacity, small and rendezvous-sized
// messages, interleaved with exact AllToAllV calls (one collective sequence).
inline void CaseBoundedReceives(Transport& t) {
  for (int iter = 0; iter < 6; ++iter) {
    const int64_t cap = iter % 2 == 0 ? 64 : 150000;
    CheckedBounded(
        t,
        [cap](int s, int d, int it) -> int64_t {
          const int64_t v = (s * 7 + d * 13 + it * 5) % 4;
          return v == 0 ? 0 : (v == 1 ? cap : (cap / 3) * v - s - d);
        },
        cap, iter, iter % 3);
    if (::testing::Test::HasFatalFailure()) return;
    CheckedAllToAllV(
        t, [](int s, int d, int it) -> int64_t { return 3 + s + d + it; }, iter);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

// A message over the receiver's capacity fails the receiver's call naming the sender; the world
// stays in step.
inline void CaseBoundedOverflowNamesPeer(Transport& t) {
  const int n = t.world_size();
  const int me = t.rank();
  std::vector<int64_t> send_counts(n, 8), capacity(n, 16), offsets(n), sizes(n);
  for (int p = 0; p < n; ++p) offsets[p] = 64 * p;
  if (me == 1) send_counts[0] = 40;
  std::vector<std::byte> send(64 * n), recv(64 * n);
  Status s =
      t.AllToAllVBounded(send, send_counts, offsets, recv, capacity, offsets, sizes, OpDeadline());
  if (me == 0) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_TRUE(HasText(s, "rank 1 sent")) << s.ToString();
  } else if (me != 1) {
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  // Wrong arguments are refused before anything is sent.
  std::vector<int64_t> short_sizes(n + 1), self_over(n, 0), huge(n, 0);
  self_over[me] = 20;
  huge[(me + 1) % n] = Transport::kMaxBoundedMessageBytes + 1;
  std::vector<int64_t> zeros(n, 0);
  EXPECT_EQ(t.AllToAllVBounded(send, send_counts, offsets, recv, capacity, offsets, short_sizes,
                               OpDeadline())
                .code(),
            StatusCode::kInvalidArgument);
  s = t.AllToAllVBounded(send, self_over, zeros, recv, capacity, offsets, sizes, OpDeadline());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_TRUE(HasText(s, "itself")) << s.ToString();
  std::vector<std::byte> none;
  EXPECT_EQ(t.AllToAllVBounded(none, zeros, zeros, none, huge, zeros, sizes, OpDeadline()).code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(t.Barrier(OpDeadline()).ok());
  CheckedBounded(
      t, [](int s, int d, int) -> int64_t { return 1 + s + d; }, 32, 0, 1);
}

inline void CaseIdentity(Transport& t) {
  const int n = t.world_size();
  ASSERT_GE(n, 1);
  ASSERT_GE(t.rank(), 0);
  ASSERT_LT(t.rank(), n);
  EXPECT_TRUE(t.capabilities().host_memory);
  EXPECT_FALSE(t.name().empty());
  std::vector<int64_t> send(n), recv(n, -1);
  for (int p = 0; p < n; ++p) send[p] = (int64_t{1} << 40) | (t.rank() * 1000 + p);
  ASSERT_TRUE(t.AllToAllCounts(send, recv, OpDeadline()).ok());
  for (int p = 0; p < n; ++p) EXPECT_EQ(recv[p], (int64_t{1} << 40) | (p * 1000 + t.rank()));
}

inline void CaseEmptyAllToAllV(Transport& t) {
  std::vector<int64_t> zeros(t.world_size(), 0);
  for (int i = 0; i < 3; ++i) {
    Status s = t.AllToAllV({}, zeros, zeros, {}, zeros, zeros, OpDeadline());
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
}

inline void CaseZeroCountPeers(Transport& t) {
  // Some pairs exchange nothing, some ranks send nothing at all (odd ranks to even ranks).
  CheckedAllToAllV(t, [](int s, int d, int) -> int64_t {
    return (s + 2 * d) % 3 == 0 || (s % 2 == 1 && d % 2 == 0) ? 0 : 1 + 3 * s + d;
  });
}

inline void CaseSkewedAllToAll(Transport& t) {
  const int last = t.world_size() - 1;
  // Everything goes to rank 0, then everything to the last rank.
  CheckedAllToAllV(
      t, [](int s, int d, int) -> int64_t { return d == 0 ? 1000 + s : 0; }, 0, 5);
  CheckedAllToAllV(
      t, [last](int s, int d, int) -> int64_t { return d == last ? 70000 + 3 * s : 0; }, 1);
}

inline void CaseOddSizes(Transport& t) {
  // Sizes and offsets that are not multiples of 8; a round big enough for rendezvous protocols.
  CheckedAllToAllV(
      t, [](int s, int d, int) -> int64_t { return 1 + 7 * ((s * 5 + d * 3) % 11); }, 0, 3);
  CheckedAllToAllV(
      t, [](int s, int d, int) -> int64_t { return 100003 + s * 17 + d; }, 1, 1);
}

inline void CaseRepeatedCallsReuseBuffers(Transport& t) {
  std::vector<std::byte> send, recv;
  for (int iter = 0; iter < 20; ++iter) {
    CheckedAllToAllV(
        t, [](int s, int d, int it) -> int64_t { return (s * 7 + d * 13 + it * 5) % 40; }, iter,
        iter % 3, send, recv);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

inline void CaseCountsThenData(Transport& t) {
  // The dispatch pattern: only the sender knows its counts; exchange them, then the data.
  const int n = t.world_size();
  const int me = t.rank();
  auto count = [](int s, int d, int it) -> int64_t {
    return ((s * 2654435761u + d * 40503u + it * 977u) >> 7) % 300;
  };
  for (int iter = 0; iter < 3; ++iter) {
    std::vector<int64_t> send_counts(n), recv_counts(n, -1);
    for (int p = 0; p < n; ++p) send_counts[p] = count(me, p, iter);
    ASSERT_TRUE(t.AllToAllCounts(send_counts, recv_counts, OpDeadline()).ok());
    for (int p = 0; p < n; ++p) ASSERT_EQ(recv_counts[p], count(p, me, iter));
    CheckedAllToAllV(t, count, iter);
  }
}

inline void CaseBarrier(Transport& t) {
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(t.Barrier(OpDeadline()).ok());
  if (t.world_size() < 2) return;
  // Nobody leaves the barrier before the last rank has entered it. The last rank hears from every
  // other rank (after that rank started its clock) before it sleeps, so a rank descheduled on a
  // busy machine cannot start its clock after the last rank entered.
  const int last = t.world_size() - 1;
  const auto start = TransportClock::now();
  const std::byte ready[1] = {std::byte{1}};
  if (t.rank() == last) {
    std::byte got[1];
    for (int peer = 0; peer < last; ++peer) ASSERT_TRUE(t.Recv(peer, 11, got, OpDeadline()).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
  } else {
    ASSERT_TRUE(t.Send(last, 11, ready, OpDeadline()).ok());
  }
  ASSERT_TRUE(t.Barrier(OpDeadline()).ok());
  EXPECT_GE(TransportClock::now() - start, std::chrono::milliseconds(150)) << "rank " << t.rank();
}

inline void CaseSendRecvTags(Transport& t) {
  const int n = t.world_size();
  const int me = t.rank();
  auto bytes = [](int64_t size, int seed) {
    std::vector<std::byte> v(size);
    for (int64_t i = 0; i < size; ++i) v[i] = PatternByte(seed, 0, 0, i);
    return v;
  };
  // Ring of small messages: everyone sends first (small sends never wait for the receiver).
  {
    std::vector<std::byte> out = bytes(13, me), in(64);
    ASSERT_TRUE(t.Send((me + 1) % n, 3, out, OpDeadline()).ok());
    auto got = t.Recv((me - 1 + n) % n, 3, in, OpDeadline());
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(*got, 13);  // shorter than the buffer: the size says how much arrived
    in.resize(13);
    EXPECT_EQ(in, bytes(13, (me - 1 + n) % n));
  }
  // Pairs (0,1), (2,3): tags are matched independently of arrival order; a large message.
  const int partner = me ^ 1;
  if (partner < n) {
    if (me % 2 == 0) {
      ASSERT_TRUE(t.Send(partner, 5, bytes(1000, 5), OpDeadline()).ok());
      ASSERT_TRUE(t.Send(partner, 7, bytes(77, 7), OpDeadline()).ok());
      ASSERT_TRUE(t.Send(partner, 9, bytes(200001, 9), OpDeadline()).ok());
      std::vector<std::byte> back(200001);
      auto got = t.Recv(partner, 9, back, OpDeadline());
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      EXPECT_EQ(back, bytes(200001, 10));
      // Too long for the buffer: consumed and reported.
      ASSERT_TRUE(t.Send(partner, 11, bytes(100, 11), OpDeadline()).ok());
    } else {
      std::vector<std::byte> seven(77), five(1000), big(200001), small(10);
      auto got7 = t.Recv(partner, 7, seven, OpDeadline());
      ASSERT_TRUE(got7.ok()) << got7.status().ToString();
      auto got5 = t.Recv(partner, 5, five, OpDeadline());
      ASSERT_TRUE(got5.ok()) << got5.status().ToString();
      EXPECT_EQ(seven, bytes(77, 7));
      EXPECT_EQ(five, bytes(1000, 5));
      auto got9 = t.Recv(partner, 9, big, OpDeadline());
      ASSERT_TRUE(got9.ok()) << got9.status().ToString();
      EXPECT_EQ(big, bytes(200001, 9));
      ASSERT_TRUE(t.Send(partner, 9, bytes(200001, 10), OpDeadline()).ok());
      auto too_long = t.Recv(partner, 11, small, OpDeadline());
      EXPECT_EQ(too_long.status().code(), StatusCode::kOutOfRange) << too_long.status().ToString();
    }
  }
  ASSERT_TRUE(t.Barrier(OpDeadline()).ok());
}

inline void CaseInvalidArgumentsThenBarrier(Transport& t) {
  const int n = t.world_size();
  const int me = t.rank();
  std::vector<int64_t> wrong(n + 1, 0), zeros(n, 0), big(n, 0);
  big[0] = 10;
  std::vector<std::byte> buf(8);
  Status s = t.AllToAllV(buf, wrong, wrong, buf, wrong, wrong, OpDeadline());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  s = t.AllToAllV(buf, big, zeros, buf, zeros, zeros, OpDeadline());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_TRUE(HasText(s, "does not fit")) << s.ToString();
  std::vector<int64_t> negative(n, 0);
  negative[n - 1] = -1;
  s = t.AllToAllV(buf, zeros, zeros, buf, negative, zeros, OpDeadline());
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  std::vector<int64_t> counts_short(n - 1 + (n == 1 ? 2 : 0));
  EXPECT_EQ(t.AllToAllCounts(zeros, counts_short, OpDeadline()).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(t.Send(me, 0, buf, OpDeadline()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.Send(n, 0, buf, OpDeadline()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(t.Recv((me + 1) % n, -1, buf, OpDeadline()).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(t.Recv(-1, 0, buf, OpDeadline()).status().code(), StatusCode::kInvalidArgument);
  // Nothing was sent, so the world is still in step.
  ASSERT_TRUE(t.Barrier(OpDeadline()).ok());
  CheckedAllToAllV(t, [](int s, int d, int) -> int64_t { return 3 + s + d; });
}

inline void CaseCountMismatchNamesPeer(Transport& t) {
  // Rank 1 sends rank 0 fewer, then more bytes than rank 0 expects; everything else agrees.
  const int n = t.world_size();
  const int me = t.rank();
  for (int64_t sent : {4, 12}) {
    std::vector<int64_t> send_counts(n, 2), recv_counts(n, 2), offsets(n);
    for (int p = 0; p < n; ++p) offsets[p] = 16 * p;
    if (me == 1) send_counts[0] = sent;
    if (me == 0) recv_counts[1] = 8;
    std::vector<std::byte> send(16 * n), recv(16 * n);
    Status s = t.AllToAllV(send, send_counts, offsets, recv, recv_counts, offsets, OpDeadline());
    if (me == 0) {
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
      EXPECT_TRUE(HasText(s, "rank 1 sent")) << s.ToString();
    } else {
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
  }
  ASSERT_TRUE(t.Barrier(OpDeadline()).ok());
  CheckedAllToAllV(t, [](int s, int d, int) -> int64_t { return 9 + s + d; });
}

inline void CaseRecvDeadlineNamesPeer(Transport& t) {
  if (t.rank() == 0) {
    std::vector<std::byte> buf(16);
    const auto start = TransportClock::now();
    auto got = t.Recv(1, 99, buf, Deadline::After(std::chrono::milliseconds(100)));
    const auto waited = TransportClock::now() - start;
    EXPECT_EQ(got.status().code(), StatusCode::kDeadlineExceeded) << got.status().ToString();
    EXPECT_TRUE(HasText(got.status(), "rank 1")) << got.status().ToString();
    EXPECT_TRUE(HasText(got.status(), "Recv")) << got.status().ToString();
    EXPECT_GE(waited, std::chrono::milliseconds(95));
    EXPECT_LT(waited, std::chrono::seconds(3));
  }
  // A barrier after the error.
  ASSERT_TRUE(t.Barrier(OpDeadline()).ok());
}

// The last rank stalls past the others' deadline, in an AllToAllV and then in a Barrier. The
// others get DeadlineExceeded naming it; when it catches up the world is back in step.
inline void CaseStalledPeerDeadline(Transport& t) {
  const int n = t.world_size();
  const int me = t.rank();
  const int last = n - 1;
  const std::string last_name = "rank " + std::to_string(last);
  const auto short_deadline = std::chrono::milliseconds(150);
  const auto stall = std::chrono::milliseconds(600);
  auto count = [](int s, int d, int) -> int64_t { return 16 + s + 2 * d; };
  std::vector<int64_t> send_counts(n), send_offsets(n), recv_counts(n), recv_offsets(n);
  int64_t send_total = 0, recv_total = 0;
  for (int p = 0; p < n; ++p) {
    send_counts[p] = count(me, p, 0);
    send_offsets[p] = send_total;
    send_total += send_counts[p];
    recv_counts[p] = count(p, me, 0);
    recv_offsets[p] = recv_total;
    recv_total += recv_counts[p];
  }
  std::vector<std::byte> send(send_total, std::byte{1}), recv(recv_total);

  if (me == last) {
    std::this_thread::sleep_for(stall);
    // Late, but the others' data is there: this rank's call may complete.
    Status s =
        t.AllToAllV(send, send_counts, send_offsets, recv, recv_counts, recv_offsets, OpDeadline());
    EXPECT_TRUE(s.ok()) << s.ToString();
  } else {
    const auto start = TransportClock::now();
    Status s = t.AllToAllV(send, send_counts, send_offsets, recv, recv_counts, recv_offsets,
                           Deadline::After(short_deadline));
    const auto waited = TransportClock::now() - start;
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
    EXPECT_TRUE(HasText(s, "waiting for " + last_name)) << s.ToString();
    EXPECT_TRUE(HasText(s, "AllToAllV")) << s.ToString();
    EXPECT_GE(waited, short_deadline - std::chrono::milliseconds(5));
    EXPECT_LT(waited, stall);
  }
  ASSERT_TRUE(t.Barrier(OpDeadline()).ok());

  if (me == last) {
    std::this_thread::sleep_for(stall);
    Status s = t.Barrier(OpDeadline());
    EXPECT_TRUE(s.ok()) << s.ToString();
  } else {
    Status s = t.Barrier(Deadline::After(short_deadline));
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
    EXPECT_TRUE(HasText(s, "waiting for " + last_name)) << s.ToString();
    EXPECT_TRUE(HasText(s, "Barrier")) << s.ToString();
  }
  // Back in step, and no data of the abandoned calls leaks into new ones.
  ASSERT_TRUE(t.Barrier(OpDeadline()).ok());
  CheckedAllToAllV(
      t, [](int s, int d, int) -> int64_t { return 5 + s * 3 + d; }, 4, 2);
}

struct ConformanceCase {
  const char* name;
  int min_world_size;
  void (*body)(Transport&);
};

// In the order every backend runs them; the stall case last (it leaves abandoned requests behind).
inline std::vector<ConformanceCase> ConformanceCases() {
  return {
      {"Identity", 1, CaseIdentity},
      {"EmptyAllToAllV", 1, CaseEmptyAllToAllV},
      {"ZeroCountPeers", 1, CaseZeroCountPeers},
      {"SkewedAllToAll", 1, CaseSkewedAllToAll},
      {"OddSizes", 1, CaseOddSizes},
      {"RepeatedCallsReuseBuffers", 1, CaseRepeatedCallsReuseBuffers},
      {"CountsThenData", 1, CaseCountsThenData},
      {"Barrier", 1, CaseBarrier},
      {"SendRecvTags", 2, CaseSendRecvTags},
      {"InvalidArgumentsThenBarrier", 1, CaseInvalidArgumentsThenBarrier},
      {"CountMismatchNamesPeer", 2, CaseCountMismatchNamesPeer},
      {"RecvDeadlineNamesPeer", 2, CaseRecvDeadlineNamesPeer},
      {"BoundedReceives", 1, CaseBoundedReceives},
      {"BoundedOverflowNamesPeer", 2, CaseBoundedOverflowNamesPeer},
      {"StalledPeerDeadline", 2, CaseStalledPeerDeadline},
  };
}

}  // namespace switchyard::testing
