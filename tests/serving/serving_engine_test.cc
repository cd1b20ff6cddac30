// ServingEngine over a 4-worker local cluster (default model): continuous batching reproduces
// the batch mode's greedy tokens with requests joining at different steps; Cancel frees the
// request (the worker's KV slot is released at the next step); a full queue answers
// ResourceExhausted; a worker failure fails every request and turns healthy() false. Also the
// StopMatcher's OpenAI stop semantics.
#include "coordinator/serving/serving_engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "../test_util.h"
#include "coordinator/serving/stop_strings.h"
#include "local_serving_fixture.h"
#include "model/random_checkpoint.h"
#include "worker/local_cluster.h"

namespace switchyard {
namespace {

struct Collected {
  std::mutex mu;
  std::condition_variable cv;
  std::string text;
  int64_t tokens = 0;
  bool finished = false;
  ServeEvent last;
  void Push(const ServeEvent& e) {
    std::lock_guard<std::mutex> lock(mu);
    text += e.text;
    tokens += e.new_tokens;
    if (e.finished) {
      finished = true;
      last = e;
    }
    cv.notify_all();
  }
  bool Wait(std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, limit, [&] { return finished; });
  }
  bool WaitTokens(int64_t n, std::chrono::seconds limit) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, limit, [&] { return tokens >= n || finished; });
  }
};

class ServingEngineTest : public testing::LocalServingFixture {
 protected:
  void SetUp() override {
    PrepareModel();
    if (HasFatalFailure()) return;
    rt_.max_batch_tokens = 16;  // prompts longer than this are prefilled in chunks
    rt_.cluster.workers = 4;
    StartCluster();
  }

  GenerationRequest Request(int i, int64_t max_new) {
    GenerationRequest g;
    for (int t = 0; t < 5 + 7 * i; ++t) g.prompt.push_back((31 * t + 17 * i) % 1000 + 3);
    g.max_new_tokens = max_new;
    g.ignore_eos = true;
    return g;
  }
};

TEST_F(ServingEngineTest, StaggeredRequestsMatchBatchMode) {
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back(Request(i, 6 + i));
  BatchOutcome batch = cluster_->coordinator().Generate(reqs);
  ASSERT_TRUE(batch.status.ok()) << batch.status.ToString();
  ServingEngine engine(&cluster_->coordinator(), tokenizer_.get(), metrics_.get(), {});
  std::vector<std::unique_ptr<Collected>> got;
  for (size_t i = 0; i < reqs.size(); ++i) {
    got.push_back(std::make_unique<Collected>());
    Collected* c = got.back().get();
    ASSERT_TRUE(engine.Submit({reqs[i], {}}, [c](const ServeEvent& e) { c->Push(e); }).ok());
    // Later requests join while earlier ones decode.
    if (i % 2 == 1) {
      ASSERT_TRUE(got[i - 1]->WaitTokens(2, std::chrono::seconds(30)));
    }
  }
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(got[i]->Wait(std::chrono::seconds(60))) << i;
    auto want = tokenizer_->Decode(batch.results[i].tokens, true);
    ASSERT_TRUE(want.ok());
    EXPECT_EQ(got[i]->text, *want) << i;
    EXPECT_EQ(got[i]->last.finish_reason, "length");
    EXPECT_EQ(got[i]->last.completion_tokens, reqs[i].max_new_tokens);
    EXPECT_EQ(got[i]->last.prompt_tokens, static_cast<int64_t>(reqs[i].prompt.size()));
  }
}

TEST_F(ServingEngineTest, CancelFreesTheRequestAndOthersContinue) {
  ServingEngine engine(&cluster_->coordinator(), tokenizer_.get(), metrics_.get(), {});
  Collected a, b;
  auto ida = engine.Submit({Request(0, 200), {}}, [&](const ServeEvent& e) { a.Push(e); });
  auto idb = engine.Submit({Request(1, 8), {}}, [&](const ServeEvent& e) { b.Push(e); });
  ASSERT_TRUE(ida.ok() && idb.ok());
  ASSERT_TRUE(a.WaitTokens(3, std::chrono::seconds(30)));
  engine.Cancel(*ida);
  ASSERT_TRUE(a.Wait(std::chrono::seconds(30)));
  EXPECT_EQ(a.last.finish_reason, "abort");
  EXPECT_LT(a.last.completion_tokens, 200);
  ASSERT_TRUE(b.Wait(std::chrono::seconds(30)));
  EXPECT_EQ(b.last.finish_reason, "length");
  // The released slot is reusable: 4 workers x several more requests still run to the end.
  std::vector<std::unique_ptr<Collected>> more;
  for (int i = 0; i < 8; ++i) {
    more.push_back(std::make_unique<Collected>());
    Collected* c = more.back().get();
    ASSERT_TRUE(engine.Submit({Request(i, 3), {}}, [c](const ServeEvent& e) { c->Push(e); }).ok());
  }
  for (auto& c : more) ASSERT_TRUE(c->Wait(std::chrono::seconds(30)));
  EXPECT_TRUE(engine.healthy());
}

TEST_F(ServingEngineTest, FullQueueIsResourceExhaustedAndBadRequestsInvalid) {
  ServingOptions opts;
  opts.max_queue = 2;
  opts.max_running = 1;
  ServingEngine engine(&cluster_->coordinator(), tokenizer_.get(), metrics_.get(), opts);
  std::vector<std::unique_ptr<Collected>> got;
  std::vector<int64_t> ids;
  int exhausted = 0;
  for (int i = 0; i < 8; ++i) {
    got.push_back(std::make_unique<Collected>());
    Collected* c = got.back().get();
    auto id = engine.Submit({Request(0, 50), {}}, [c](const ServeEvent& e) { c->Push(e); });
    if (id.ok()) {
      ids.push_back(*id);
    } else {
      EXPECT_EQ(id.status().code(), StatusCode::kResourceExhausted);
      ++exhausted;
      got.pop_back();
    }
  }
  EXPECT_GE(exhausted, 5);
  GenerationRequest bad = Request(0, 4);
  bad.prompt[1] = 1 << 30;
  auto id = engine.Submit({bad, {}}, [](const ServeEvent&) {});
  EXPECT_EQ(id.status().code(), StatusCode::kInvalidArgument);
  for (int64_t id : ids) engine.Cancel(id);
  for (auto& c : got) ASSERT_TRUE(c->Wait(std::chrono::seconds(30)));
}

TEST_F(ServingEngineTest, WorkerFailureFailsEveryRequest) {
  ServingEngine engine(&cluster_->coordinator(), tokenizer_.get(), metrics_.get(), {});
  Collected a;
  ASSERT_TRUE(engine.Submit({Request(0, 200), {}}, [&](const ServeEvent& e) { a.Push(e); }).ok());
  ASSERT_TRUE(a.WaitTokens(2, std::chrono::seconds(30)));
  cluster_->KillWorker(2);
  ASSERT_TRUE(a.Wait(std::chrono::seconds(60)));
  EXPECT_EQ(a.last.finish_reason, "error");
  EXPECT_NE(a.last.error.message().find("rank 2"), std::string::npos) << a.last.error.ToString();
  EXPECT_FALSE(engine.healthy());
  auto id = engine.Submit({Request(1, 4), {}}, [](const ServeEvent&) {});
  EXPECT_EQ(id.status().code(), StatusCode::kUnavailable);
  // The aborted workers hold no KV cache any more: the gauges say so (not the last step's use).
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  std::string text;
  while (std::chrono::steady_clock::now() < end) {
    text = metrics_->RenderPrometheus();
    if (text.find("switchyard:num_requests_running{model_name=\"m\"} 0\n") != std::string::npos) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_NE(text.find("switchyard:num_requests_running{model_name=\"m\"} 0\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("switchyard:kv_cache_usage_perc{model_name=\"m\"} 0\n"), std::string::npos)
      << text;
}

TEST(StepProtocolTest, ReleaseRoundTripsAndIsOptional) {
  StepMsg m;
  m.step = 7;
  m.release = {3, 9};
  StepMsg back;
  ASSERT_TRUE(DecodeStep(EncodeStep(m), "test", &back).ok());
  EXPECT_EQ(back.release, (std::vector<int64_t>{3, 9}));
  ASSERT_TRUE(
      DecodeStep(R"({"type":"step","step":1,"add":[],"want_logits":false})", "t", &back).ok());
  EXPECT_TRUE(back.release.empty());
  EXPECT_FALSE(
      DecodeStep(R"({"type":"step","step":1,"add":[],"release":["x"],"want_logits":false})", "t",
                 &back)
          .ok());
}

TEST(StopMatcherTest, HoldsBackPrefixesAndCutsBeforeTheStop) {
  StopMatcher m({"END", ""});
  bool stopped = false;
  EXPECT_EQ(m.Push("hello E", &stopped), "hello ");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(m.Push("N", &stopped), "");
  EXPECT_EQ(m.Push("Dtail", &stopped), "");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(m.Flush(), "");
  StopMatcher n({"xyz"});
  EXPECT_EQ(n.Push("abx", &stopped), "ab");
  EXPECT_EQ(n.Push("q", &stopped), "xq");
  EXPECT_EQ(n.Push("x", &stopped), "");
  EXPECT_EQ(n.Flush(), "x");
  StopMatcher none({});
  EXPECT_EQ(none.Push("abc", &stopped), "abc");
}

}  // namespace
}  // namespace switchyard
