// Integrity mode of MoE dispatch/combine (transport/dispatch.h): a decorator around each rank's
// local transport (dispatch_fault_transport.h) flips one byte of one message in flight.
//  - integrity on: the receiver fails with DataLoss naming exactly the corrupted row (direction,
//    layer, source and destination rank, the token's index on the rank that dispatched it);
//  - integrity off: the same corruption goes unnoticed and changes exactly that token's output
//    (so the corruption is real and the check is what catches it);
//  - integrity on without corruption: outputs identical to integrity off.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "dispatch_fault_transport.h"
#include "local_ranks.h"
#include "transport/dispatch.h"

namespace switchyard {
namespace {

constexpr int64_t kHidden = 16;
constexpr int64_t kTokens = 8;
constexpr int32_t kTopk = 2;
constexpr int64_t kLayer = 5;

Deadline OpDeadline() { return Deadline::After(std::chrono::seconds(10)); }

// Two experts per rank; token t of every rank goes to an expert on rank t % n and one on rank
// (t + 1) % n, so every pair of ranks exchanges several rows.
struct Inputs {
  ExpertPlacement placement;
  std::vector<int32_t> idx;
  std::vector<float> weights, x;
};
Inputs MakeInputs(int n, int me) {
  Inputs in;
  in.placement = ExpertPlacement::Contiguous(2 * n, n);
  for (int64_t t = 0; t < kTokens; ++t) {
    in.idx.push_back(static_cast<int32_t>(2 * (t % n)));
    in.idx.push_back(static_cast<int32_t>(2 * ((t + 1) % n) + 1));
    in.weights.push_back(0.25f + 0.125f * static_cast<float>(t % 3));
    in.weights.push_back(0.5f);
  }
  for (int64_t i = 0; i < kTokens * kHidden; ++i) {
    in.x.push_back(0.5f + 0.01f * static_cast<float>(i) + static_cast<float>(me));
  }
  return in;
}

struct Outcome {
  Status dispatch, combine;
  std::vector<float> out;
  DispatchLayout layout;
};

// One round with identity experts (row_out = Σ_k w_k x).
// `combine_deadline` is short where a peer is expected to fail its dispatch (and so never combine).
Outcome Round(Transport& t, bool integrity, PayloadDtype combine_dtype,
              std::chrono::milliseconds combine_deadline = std::chrono::seconds(10)) {
  const int n = t.world_size(), me = t.rank();
  const Inputs in = MakeInputs(n, me);
  Outcome o;
  o.layout = *ComputeDispatchLayout(in.idx.data(), in.weights.data(), kTokens, kTopk, in.placement,
                                    ReplicaPolicy::kBalance, me);
  // The transport path: the decorator corrupts bytes in flight there. (The shared-memory path
  // verifies the same message bytes with the same code; dispatch_test's ShmMatchesTransport runs
  // it with integrity on.)
  Dispatcher dispatcher(
      DispatcherOptions{.integrity = integrity, .shared_memory = SharedMemoryMode::kOff});
  ReceivedTokens received;
  o.dispatch = dispatcher.Dispatch(t, kLayer, o.layout, in.x.data(), kHidden, PayloadDtype::kF32,
                                   OpDeadline(), &received);
  if (!o.dispatch.ok()) return o;
  std::vector<float> entry_out(received.num_entries() * kHidden), row_out;
  for (int64_t j = 0; j < received.num_entries(); ++j) {
    std::memcpy(&entry_out[j * kHidden], received.row(received.entry_row[j]), 4 * kHidden);
  }
  row_out.resize(received.num_rows() * kHidden);
  SumEntriesPerRow(received, entry_out.data(), row_out.data());
  o.out.assign(kTokens * kHidden, std::nanf(""));
  o.combine = dispatcher.Combine(t, row_out.data(), combine_dtype,
                                 Deadline::After(combine_deadline), o.out.data());
  return o;
}

// Runs `body(rank, faulty transport)` on every rank of a fresh local world of n ranks.
void OnWorld(int n, const std::function<void(int, testing::FaultyTransport&)>& body) {
  auto world = MakeLocalWorld(n);
  ASSERT_TRUE(world.ok());
  testing::RunRanks(**world, testing::AllRanks(n), [&](int me, Transport& inner) {
    testing::FaultyTransport t(inner);
    body(me, t);
  });
}

// The token of rank `src` whose row is row `row` of its message to rank `dst`.
int64_t TokenOfRow(const DispatchLayout& src_layout, int dst, int64_t row) {
  return src_layout.row_token_idx[src_layout.rank_prefix[dst] + row];
}

class IntegrityTest : public ::testing::TestWithParam<int> {};

TEST_P(IntegrityTest, CorruptDispatchRowIsNamed) {
  const int n = GetParam();
  // Rank 1 flips the exponent byte of element 0 of row 2 of its message to rank 0.
  const int64_t offset = DispatchWireRowOffset(PayloadDtype::kF32, kHidden, 2) + 3;
  std::vector<Outcome> clean(n), off(n), on(n);
  OnWorld(n, [&](int me, testing::FaultyTransport& t) {
    clean[me] = Round(t, false, PayloadDtype::kF32);
  });
  for (bool integrity : {false, true}) {
    OnWorld(n, [&](int me, testing::FaultyTransport& t) {
      if (me == 1) t.CorruptOnce(/*call=*/0, /*peer=*/0, offset, 0x40);
      // With integrity on, rank 0 fails its dispatch: the others' combine then times out.
      (integrity ? on : off)[me] = Round(t, integrity, PayloadDtype::kF32,
                                         std::chrono::milliseconds(integrity ? 200 : 10000));
      if (me == 1) {
        EXPECT_TRUE(t.corrupted());
      }
    });
  }
  const int64_t token = TokenOfRow(clean[1].layout, 0, 2);
  // Integrity on: rank 0 names the row; the others' dispatch succeeded.
  const Status& s = on[0].dispatch;
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find("dispatch integrity check failed on rank 0: layer 5, row 2 from "
                             "rank 1 to rank 0 (token " +
                             std::to_string(token) + " of rank 1)"),
            std::string::npos)
      << s.ToString();
  for (int r = 1; r < n; ++r) EXPECT_TRUE(on[r].dispatch.ok()) << on[r].dispatch.ToString();
  // Integrity off: nothing noticed; exactly rank 1's token `token` came back different.
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(off[r].dispatch.ok() && off[r].combine.ok()) << r;
    ASSERT_TRUE(clean[r].combine.ok());
    for (int64_t tok = 0; tok < kTokens; ++tok) {
      const bool same =
          std::memcmp(&off[r].out[tok * kHidden], &clean[r].out[tok * kHidden], 4 * kHidden) == 0;
      EXPECT_EQ(same, !(r == 1 && tok == token)) << "rank " << r << " token " << tok;
    }
  }
}

TEST_P(IntegrityTest, CorruptCombineRowIsNamed) {
  const int n = GetParam();
  // Rank 0 flips a byte of row 1 of its combine message (call 1: dispatch took one exchange) to
  // rank 1, in BF16.
  const int64_t offset = PayloadRowBytes(PayloadDtype::kBF16, kHidden) * 1 + 1;
  std::vector<Outcome> clean(n), off(n), on(n);
  OnWorld(n, [&](int me, testing::FaultyTransport& t) {
    clean[me] = Round(t, false, PayloadDtype::kBF16);
  });
  for (bool integrity : {false, true}) {
    OnWorld(n, [&](int me, testing::FaultyTransport& t) {
      if (me == 0) t.CorruptOnce(/*call=*/1, /*peer=*/1, offset, 0x40);
      (integrity ? on : off)[me] = Round(t, integrity, PayloadDtype::kBF16);
      if (me == 0) {
        EXPECT_TRUE(t.corrupted());
      }
    });
  }
  // Row 1 of what rank 1 dispatched to rank 0 is the row rank 0 returns as row 1.
  const int64_t token = TokenOfRow(clean[1].layout, 0, 1);
  const Status& s = on[1].combine;
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_NE(s.message().find("combine integrity check failed on rank 1: layer 5, row 1 from rank "
                             "0 to rank 1 (token " +
                             std::to_string(token) + " of rank 1)"),
            std::string::npos)
      << s.ToString();
  for (int r = 0; r < n; ++r) {
    EXPECT_TRUE(on[r].dispatch.ok()) << on[r].dispatch.ToString();
    if (r != 1) {
      EXPECT_TRUE(on[r].combine.ok()) << on[r].combine.ToString();
    }
  }
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(off[r].combine.ok()) << off[r].combine.ToString();
    for (int64_t tok = 0; tok < kTokens; ++tok) {
      const bool same =
          std::memcmp(&off[r].out[tok * kHidden], &clean[r].out[tok * kHidden], 4 * kHidden) == 0;
      EXPECT_EQ(same, !(r == 1 && tok == token)) << "rank " << r << " token " << tok;
    }
  }
}

TEST_P(IntegrityTest, NoCorruptionSameResults) {
  const int n = GetParam();
  std::vector<Outcome> off(n), on(n);
  for (bool integrity : {false, true}) {
    OnWorld(n, [&](int me, testing::FaultyTransport& t) {
      (integrity ? on : off)[me] = Round(t, integrity, PayloadDtype::kBF16);
    });
  }
  for (int r = 0; r < n; ++r) {
    ASSERT_TRUE(on[r].dispatch.ok() && on[r].combine.ok()) << r;
    EXPECT_EQ(0, std::memcmp(on[r].out.data(), off[r].out.data(), 4 * off[r].out.size())) << r;
  }
}

INSTANTIATE_TEST_SUITE_P(Ranks, IntegrityTest, ::testing::Values(2, 4),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::to_string(info.param) + "ranks";
                         });

TEST(IntegrityOptions, FromEnv) {
  unsetenv("SWITCHYARD_INTEGRITY");
  EXPECT_FALSE(DispatcherOptions::FromEnv()->integrity);
  setenv("SWITCHYARD_INTEGRITY", "1", 1);
  EXPECT_TRUE(DispatcherOptions::FromEnv()->integrity);
  setenv("SWITCHYARD_INTEGRITY", "off", 1);
  EXPECT_FALSE(DispatcherOptions::FromEnv()->integrity);
  setenv("SWITCHYARD_INTEGRITY", "maybe", 1);
  auto bad = DispatcherOptions::FromEnv();
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("SWITCHYARD_INTEGRITY=maybe"), std::string::npos);
  unsetenv("SWITCHYARD_INTEGRITY");
}

TEST(SharedMemoryOptions, FromEnv) {
  unsetenv("SWITCHYARD_DISPATCH_SHM");
  EXPECT_EQ(DispatcherOptions::FromEnv()->shared_memory, SharedMemoryMode::kAuto);
  setenv("SWITCHYARD_DISPATCH_SHM", "off", 1);
  EXPECT_EQ(DispatcherOptions::FromEnv()->shared_memory, SharedMemoryMode::kOff);
  setenv("SWITCHYARD_DISPATCH_SHM", "on", 1);
  EXPECT_EQ(DispatcherOptions::FromEnv()->shared_memory, SharedMemoryMode::kRequire);
  setenv("SWITCHYARD_DISPATCH_SHM", "auto", 1);
  EXPECT_EQ(DispatcherOptions::FromEnv()->shared_memory, SharedMemoryMode::kAuto);
  setenv("SWITCHYARD_DISPATCH_SHM", "sometimes", 1);
  auto bad = DispatcherOptions::FromEnv();
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("SWITCHYARD_DISPATCH_SHM=sometimes"), std::string::npos);
  unsetenv("SWITCHYARD_DISPATCH_SHM");
}

}  // namespace
}  // namespace switchyard
