// The control plane: in-memory and TCP channels (whole messages, deadlines, peer closing), the
// heartbeat monitor on a fake clock, and the protocol's encode/decode with named errors.
#include "coordinator/control/control_channel.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "coordinator/control/heartbeat.h"
#include "coordinator/control/protocol.h"
#include "coordinator/control/tcp_channel.h"

namespace switchyard {
namespace {

using std::chrono::milliseconds;

double SecondsSince(TransportClock::time_point t) {
  return std::chrono::duration<double>(TransportClock::now() - t).count();
}

// Both directions, in order, then a receive deadline, then the peer closing.
void ExerciseChannelPair(ControlChannel* a, ControlChannel* b) {
  ASSERT_TRUE(a->Send("hello", Deadline::After(milliseconds(1000))).ok());
  ASSERT_TRUE(a->Send(std::string(1 << 20, 'x'), Deadline::After(milliseconds(5000))).ok());
  auto m = b->Receive(Deadline::After(milliseconds(5000)));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(*m, "hello");
  m = b->Receive(Deadline::After(milliseconds(5000)));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->size(), size_t{1} << 20);
  ASSERT_TRUE(b->Send("back", Deadline::After(milliseconds(1000))).ok());
  m = a->Receive(Deadline::After(milliseconds(5000)));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, "back");
  // Nothing pending: the deadline ends the wait, and loses nothing.
  const auto t0 = TransportClock::now();
  m = b->Receive(Deadline::After(milliseconds(100)));
  EXPECT_EQ(m.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_LT(SecondsSince(t0), 2.0);
  ASSERT_TRUE(a->Send("late", Deadline::After(milliseconds(1000))).ok());
  m = b->Receive(Deadline::After(milliseconds(5000)));
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(*m, "late");
  // The peer closes while b waits: b learns at once, not at its deadline.
  std::thread closer([&] {
    std::this_thread::sleep_for(milliseconds(50));
    a->Close();
  });
  const auto t1 = TransportClock::now();
  m = b->Receive(Deadline::After(milliseconds(20000)));
  closer.join();
  EXPECT_EQ(m.status().code(), StatusCode::kUnavailable) << m.status().ToString();
  EXPECT_LT(SecondsSince(t1), 5.0);
}

TEST(ControlChannel, InMemoryPair) {
  auto [a, b] = MakeInMemoryChannelPair("w0");
  ExerciseChannelPair(a.get(), b.get());
}

TEST(ControlChannel, TcpPair) {
  auto listener = TcpListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  const int port = (*listener)->port();
  ASSERT_GT(port, 0);
  StatusOr<std::unique_ptr<ControlChannel>> client = UnavailableError("not yet");
  std::thread t(
      [&] { client = ConnectTcp("127.0.0.1", port, Deadline::After(milliseconds(5000))); });
  auto server = (*listener)->Accept(Deadline::After(milliseconds(5000)));
  t.join();
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  ExerciseChannelPair(client->get(), server->get());
}

TEST(ControlChannel, TcpDeadlines) {
  auto listener = TcpListener::Listen("127.0.0.1", 0);
  ASSERT_TRUE(listener.ok());
  const auto t0 = TransportClock::now();
  auto none = (*listener)->Accept(Deadline::After(milliseconds(100)));
  EXPECT_EQ(none.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_LT(SecondsSince(t0), 2.0);
  // Nobody listens on that port any more: connecting gives up at the deadline, naming it.
  const int port = (*listener)->port();
  listener->reset();
  const auto t1 = TransportClock::now();
  auto c = ConnectTcp("127.0.0.1", port, Deadline::After(milliseconds(300)));
  EXPECT_EQ(c.status().code(), StatusCode::kDeadlineExceeded) << c.status().ToString();
  EXPECT_NE(c.status().message().find(std::to_string(port)), std::string::npos);
  EXPECT_LT(SecondsSince(t1), 3.0);
  EXPECT_EQ(TcpListener::Listen("not-an-ip", 0).status().code(), StatusCode::kInvalidArgument);
  std::string host;
  int p = 0;
  EXPECT_TRUE(ParseEndpoint("10.0.0.1:555", "x", &host, &p).ok());
  EXPECT_EQ(host, "10.0.0.1");
  EXPECT_EQ(p, 555);
  EXPECT_FALSE(ParseEndpoint("10.0.0.1", "x", &host, &p).ok());
  EXPECT_FALSE(ParseEndpoint("h:99999", "x", &host, &p).ok());
}

TEST(Heartbeat, SilentRanksFollowTheInjectedClock) {
  FakeClock clock;
  HeartbeatMonitor monitor(&clock, 3, milliseconds(1000));
  EXPECT_TRUE(monitor.SilentRanks().empty());
  clock.Advance(milliseconds(600));
  monitor.Beat(0);
  monitor.Beat(2);
  clock.Advance(milliseconds(600));
  auto silent = monitor.SilentRanks();
  ASSERT_EQ(silent.size(), 1u);
  EXPECT_EQ(silent[0].rank, 1);
  EXPECT_EQ(silent[0].silent_for.count(), 1200);
  monitor.Beat(1);
  EXPECT_TRUE(monitor.SilentRanks().empty());
  clock.Advance(milliseconds(1001));
  EXPECT_EQ(monitor.SilentRanks().size(), 3u);
  monitor.Beat(7);  // out of range: ignored
}

TEST(Protocol, RoundTripsAndNamedErrors) {
  StepMsg step;
  step.step = 7;
  step.want_logits = true;
  WorkRequest w;
  w.id = 3;
  w.request.prompt = {1, 2, 3};
  w.request.max_new_tokens = 5;
  w.request.sampling = {0.5f, 4, 0.9f, 42};
  step.add.push_back(w);
  StepMsg back;
  ASSERT_TRUE(DecodeStep(EncodeStep(step), "test", &back).ok());
  EXPECT_EQ(back.step, 7);
  ASSERT_EQ(back.add.size(), 1u);
  EXPECT_EQ(back.add[0].request.prompt, w.request.prompt);
  EXPECT_EQ(back.add[0].request.sampling.seed, 42u);
  EXPECT_FLOAT_EQ(back.add[0].request.sampling.top_p, 0.9f);

  StepResultMsg res;
  res.rank = 1;
  res.step = 7;
  res.tokens.push_back({3, 17, true, "length", {0.1f, -2.5e-7f, 3.0f}});
  res.expert_counts = {{1, 2}, {3, 4}};
  StepResultMsg res2;
  ASSERT_TRUE(DecodeStepResult(EncodeStepResult(res), "test", &res2).ok());
  ASSERT_EQ(res2.tokens.size(), 1u);
  EXPECT_EQ(res2.tokens[0].logits, res.tokens[0].logits);  // floats survive exactly
  EXPECT_EQ(res2.tokens[0].finish_reason, "length");
  EXPECT_EQ(res2.expert_counts, res.expert_counts);

  AssignMsg a;
  a.rank = 2;
  a.world = 4;
  a.plan_json = "{}";
  a.rendezvous = "h:1";
  AssignMsg a2;
  ASSERT_TRUE(DecodeAssign(EncodeAssign(a), "c", &a2).ok());
  EXPECT_EQ(a2.world, 4);
  EXPECT_EQ(a2.rendezvous, "h:1");

  EXPECT_EQ(*MessageType(EncodeHeartbeat(3), "w"), "heartbeat");
  EXPECT_EQ(MessageRank(EncodeHeartbeat(3)), 3);
  EXPECT_EQ(*DecodeReason(EncodeAbort("why"), "c"), "why");
  Status wrong = DecodeStep(EncodeShutdown(), "coordinator", &back);
  EXPECT_EQ(wrong.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(wrong.message().find("coordinator"), std::string::npos);
  Status missing = DecodeStep(R"({"type":"step","step":1,"add":[]})", "c", &back);
  EXPECT_NE(missing.message().find("want_logits"), std::string::npos) << missing.ToString();
  EXPECT_FALSE(MessageType("not json", "w").ok());
}

// Ranks, world sizes and thread counts outside int32 are refused naming the field, never narrowed
// (2^32 + 1 must not become rank 1).
TEST(Protocol, IntFieldsAreNotNarrowed) {
  AssignMsg a;
  a.rank = 1;
  a.world = 2;
  a.num_threads = 2;
  const std::string good = EncodeAssign(a);
  auto with = [&good](const std::string& field, const std::string& value) {
    std::string text = good;
    const std::string key = "\"" + field + "\":";
    const size_t at = text.find(key) + key.size();
    const size_t end = text.find_first_of(",}", at);
    return text.replace(at, end - at, value);
  };
  AssignMsg ok;
  ASSERT_TRUE(DecodeAssign(with("num_threads", "3"), "coordinator", &ok).ok());
  EXPECT_EQ(ok.num_threads, 3);  // the edit helper does what it says
  for (const std::string field : {"rank", "world", "num_threads"}) {
    for (const std::string value : {"4294967297", "-4294967295", "1.5"}) {
      AssignMsg back;
      const Status st = DecodeAssign(with(field, value), "coordinator", &back);
      EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << field << "=" << value;
      EXPECT_NE(st.message().find(field), std::string::npos) << st.ToString();
    }
  }
  RegisterMsg r;
  EXPECT_FALSE(
      DecodeRegister(R"({"type":"register","rank":4294967297,"host":"h","pid":1})", "w", &r).ok());
  EXPECT_EQ(MessageRank(R"({"type":"heartbeat","rank":4294967297})"), -1);
  EXPECT_EQ(MessageRank(R"({"type":"heartbeat","rank":-3})"), -1);
  EXPECT_EQ(MessageRank(R"({"type":"heartbeat","rank":7})"), 7);
}

}  // namespace
}  // namespace switchyard
