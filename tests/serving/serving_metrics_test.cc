// What `switchyard serve` reports, over a 2-worker local cluster (default model) with a small KV
// budget (cluster.kv_cache_tokens = 100 positions per worker): step_done's KV positions and
// capacity (exact after each lockstep step, 0 again when done), the admission rules (a request
// that never fits is refused at Submit naming the key; one that does not fit now waits in the
// queue until a running one finishes; batch Generate queues too; a worker refuses an over-budget
// add), the kv_cache_usage_perc gauge, and the per-link dispatch/combine counters on /metrics.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../test_util.h"
#include "coordinator/serving/serving_engine.h"
#include "local_serving_fixture.h"
#include "model/random_checkpoint.h"
#include "worker/local_cluster.h"

namespace switchyard {
namespace {

constexpr int64_t kBudget = 100;

// The value of the series `name_labels` (e.g. `x{model_name="m"}`) in a Prometheus exposition.
std::optional<double> Series(const std::string& text, const std::string& name_labels) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name_labels + " ", 0) == 0) return std::stod(line.substr(name_labels.size()));
  }
  return std::nullopt;
}

// Polls `pred` until it holds or 30 s passed (the engine publishes after its callbacks run).
bool Eventually(const std::function<bool()>& pred) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

// Callback events of several requests in the order the serving thread produced them.
struct EventLog {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> order;  // "<name>:first" / "<name>:end"
  std::map<std::string, ServeEvent> ends;
  ServeCallback For(const std::string& name) {
    auto seen = std::make_shared<bool>(false);
    return [this, name, seen](const ServeEvent& e) {
      std::lock_guard<std::mutex> lock(mu);
      if (e.new_tokens > 0 && !*seen) {
        *seen = true;
        order.push_back(name + ":first");
      }
      if (e.finished) {
        order.push_back(name + ":end");
        ends[name] = e;
      }
      cv.notify_all();
    };
  }
  bool WaitEnds(size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(60), [&] { return ends.size() >= n; });
  }
  size_t Index(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    for (size_t i = 0; i < order.size(); ++i) {
      if (order[i] == what) return i;
    }
    return order.size();
  }
};

class ServingMetricsTest : public testing::LocalServingFixture {
 protected:
  void SetUp() override {
    PrepareModel();
    if (HasFatalFailure()) return;
    rt_.max_batch_tokens = 64;
    rt_.cluster.workers = 2;
    rt_.cluster.kv_cache_tokens = kBudget;
    StartCluster();
  }

  static GenerationRequest Request(int prompt_len, int64_t max_new) {
    GenerationRequest g;
    for (int t = 0; t < prompt_len; ++t) g.prompt.push_back((37 * t + 11) % 900 + 5);
    g.max_new_tokens = max_new;
    g.ignore_eos = true;
    return g;
  }

  std::optional<double> Metric(const std::string& name_labels) {
    return Series(metrics_->RenderPrometheus(), name_labels);
  }
};

TEST_F(ServingMetricsTest, StepReportsKvPositionsAndLinkTraffic) {
  Coordinator& c = cluster_->coordinator();
  EXPECT_EQ(c.kv_cache_tokens(), kBudget);
  std::vector<std::vector<WorkRequest>> add(2);
  add[0].push_back({6, Request(6, 2)});
  add[1].push_back({7, Request(10, 3)});
  auto step = c.RunStep(add, std::vector<std::vector<int64_t>>(2), false);
  ASSERT_TRUE(step.ok()) << step.status().ToString();
  // Both prompts were prefilled and their first tokens sampled.
  EXPECT_EQ(step->kv_used_tokens, (std::vector<int64_t>{6, 10}));
  EXPECT_EQ(step->kv_used_total, 16);
  EXPECT_EQ(step->kv_capacity_total, 2 * kBudget);
  ASSERT_EQ(step->link_traffic.size(), 2u);
  for (int src = 0; src < 2; ++src) {
    ASSERT_EQ(step->link_traffic[src].dispatch_bytes.size(), 2u);
    EXPECT_EQ(step->link_traffic[src].dispatch_bytes[src], 0) << "no traffic to itself";
    EXPECT_GT(step->link_traffic[src].dispatch_bytes[1 - src], 0) << src;
    EXPECT_GT(step->link_traffic[src].combine_bytes[1 - src], 0) << src;
  }
  const int64_t sent_before = step->link_traffic[1].dispatch_bytes[0];
  step = c.RunStep(std::vector<std::vector<WorkRequest>>(2), std::vector<std::vector<int64_t>>(2),
                   false);
  ASSERT_TRUE(step.ok()) << step.status().ToString();
  // Request 7 cached one decode position more; request 6 sampled its last token and was freed.
  EXPECT_EQ(step->kv_used_total, 11);
  EXPECT_EQ(step->kv_used_tokens[0], 0) << "a finished request frees its positions";
  EXPECT_GT(step->link_traffic[1].dispatch_bytes[0], sent_before) << "totals grow";
  step = c.RunStep(std::vector<std::vector<WorkRequest>>(2), std::vector<std::vector<int64_t>>(2),
                   false);
  ASSERT_TRUE(step.ok()) << step.status().ToString();
  ASSERT_EQ(step->tokens[1].size(), 1u);
  EXPECT_TRUE(step->tokens[1][0].finished);
  EXPECT_EQ(step->kv_used_total, 0);
}

TEST_F(ServingMetricsTest, TooLargeIsRefusedAndWhatDoesNotFitWaits) {
  ServingOptions opts;
  opts.stats_interval = std::chrono::milliseconds(0);
  ServingEngine engine(&cluster_->coordinator(), tokenizer_.get(), metrics_.get(), opts);
  // 10 + 95 > 100 positions: never fits a worker (although within max_seq_len 256).
  auto too_large = engine.Submit({Request(10, 95), {}}, [](const ServeEvent&) {});
  ASSERT_EQ(too_large.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(too_large.status().message().find("cluster.kv_cache_tokens = 100"), std::string::npos)
      << too_large.status().ToString();

  // a and b take 90 of each worker's 100 positions; c (90) must wait for one of them.
  EventLog log;
  ASSERT_TRUE(engine.Submit({Request(10, 80), {}}, log.For("a")).ok());
  ASSERT_TRUE(engine.Submit({Request(12, 78), {}}, log.For("b")).ok());
  ASSERT_TRUE(engine.Submit({Request(8, 82), {}}, log.For("c")).ok());
  const std::string kv = "switchyard:kv_cache_usage_perc{model_name=\"m\"}";
  const std::string waiting = "switchyard:num_requests_waiting{model_name=\"m\"}";
  EXPECT_TRUE(Eventually([&] { return Metric(waiting).value_or(0) == 1; })) << "c is queued";
  EXPECT_TRUE(Eventually([&] { return Metric(kv).value_or(0) > 0.1; })) << "usage rises";
  ASSERT_TRUE(log.WaitEnds(3));
  for (const char* name : {"a", "b", "c"}) {
    EXPECT_EQ(log.ends[name].finish_reason, "length") << name;
  }
  const size_t c_first = log.Index("c:first");
  EXPECT_GT(c_first, std::min(log.Index("a:end"), log.Index("b:end")))
      << "c started before a or b finished";
  EXPECT_TRUE(Eventually([&] { return Metric(kv).value_or(-1) == 0; })) << "usage returns to 0";
  EXPECT_EQ(Metric(waiting), 0);
}

TEST_F(ServingMetricsTest, LinkCountersOnMetricsAfterARequest) {
  ServingEngine engine(&cluster_->coordinator(), tokenizer_.get(), metrics_.get(), {});
  // One request per worker (least loaded first): tokens travel both ways on both links.
  EventLog log;
  ASSERT_TRUE(engine.Submit({Request(9, 4), {}}, log.For("a")).ok());
  ASSERT_TRUE(engine.Submit({Request(7, 4), {}}, log.For("b")).ok());
  ASSERT_TRUE(log.WaitEnds(2));
  for (const char* family : {"dispatch_bytes_total", "combine_bytes_total",
                             "dispatch_seconds_total", "combine_seconds_total"}) {
    for (const char* link : {"0->1", "1->0"}) {
      const std::string series =
          std::string("switchyard:") + family + "{model_name=\"m\",link=\"" + link + "\"}";
      EXPECT_TRUE(Eventually([&] { return Metric(series).value_or(0) > 0; })) << series;
    }
  }
  EXPECT_FALSE(Metric("switchyard:dispatch_bytes_total{model_name=\"m\",link=\"0->0\"}"));
}

TEST_F(ServingMetricsTest, StatsLineCountsTheIntervalsTokens) {
  FakeClock clock;
  std::mutex mu;
  std::vector<std::pair<ServingStats, LogLevel>> lines;
  ServingOptions opts;
  opts.keepalive = std::chrono::milliseconds(60000);
  opts.stats_interval = std::chrono::milliseconds(10000);
  opts.stats_clock = &clock;
  opts.stats_sink = [&](const ServingStats& s, LogLevel l) {
    std::lock_guard<std::mutex> lock(mu);
    lines.emplace_back(s, l);
  };
  ServingEngine engine(&cluster_->coordinator(), tokenizer_.get(), metrics_.get(), opts);
  EventLog log;
  ASSERT_TRUE(engine.Submit({Request(9, 5), {}}, log.For("a")).ok());
  ASSERT_TRUE(log.WaitEnds(1));
  const std::string kv = "switchyard:kv_cache_usage_perc{model_name=\"m\"}";
  ASSERT_TRUE(Eventually([&] { return Metric(kv).value_or(-1) == 0; }));
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_TRUE(lines.empty()) << "no line before the interval passed (test clock)";
  }
  clock.Advance(std::chrono::seconds(10));
  engine.Cancel(-1);  // wakes the idle loop, which then sees the line due
  ASSERT_TRUE(Eventually([&] {
    std::lock_guard<std::mutex> lock(mu);
    return !lines.empty();
  }));
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(lines.size(), 1u);
  const ServingStats& s = lines[0].first;
  EXPECT_EQ(lines[0].second, LogLevel::kInfo);
  EXPECT_DOUBLE_EQ(s.interval_s, 10.0);
  EXPECT_EQ(s.prompt_tokens, 9);
  EXPECT_EQ(s.generation_tokens, 5);
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.waiting, 0);
  EXPECT_EQ(s.kv_used_tokens, 0);
  EXPECT_EQ(s.kv_capacity_tokens, 2 * kBudget);
}

// A stop string that ends the last running request leaves it on its worker until the next step
// releases it: that step must come at once, not a keepalive later (the KV positions stay held
// and kv_cache_usage_perc stays above 0 meanwhile).
TEST_F(ServingMetricsTest, StopStringReleasesTheWorkersKvAtOnce) {
  ServingOptions opts;
  opts.keepalive = std::chrono::milliseconds(120000);
  opts.stats_interval = std::chrono::milliseconds(0);
  ServingEngine engine(&cluster_->coordinator(), tokenizer_.get(), metrics_.get(), opts);
  // Greedy, so the same request produces the same text again: learn it first.
  std::mutex mu;
  std::string text;
  EventLog log;
  auto first = log.For("first");
  ASSERT_TRUE(engine
                  .Submit({Request(9, 24), {}},
                          [&](const ServeEvent& e) {
                            {
                              std::lock_guard<std::mutex> lock(mu);
                              text += e.text;
                            }
                            first(e);
                          })
                  .ok());
  ASSERT_TRUE(log.WaitEnds(1));
  std::string stop;
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_FALSE(text.empty()) << "the default model decodes to some text";
    stop = text.substr(0, 1);
  }
  // The gauges are set after the callbacks of a step: the link counters (observed whenever
  // nothing is left running, after the KV gauge) show that the stopping step was observed.
  const std::string kv = "switchyard:kv_cache_usage_perc{model_name=\"m\"}";
  const std::string link = "switchyard:dispatch_bytes_total{model_name=\"m\",link=\"0->1\"}";
  ASSERT_TRUE(Eventually([&] { return Metric(link).value_or(0) > 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the last step's metrics are in
  ASSERT_EQ(Metric(kv).value_or(-1), 0);
  const double link_before = Metric(link).value_or(0);
  ASSERT_TRUE(engine.Submit({Request(9, 24), {stop}}, log.For("stopped")).ok());
  ASSERT_TRUE(log.WaitEnds(2));
  EXPECT_EQ(log.ends["stopped"].finish_reason, "stop");
  ASSERT_LT(log.ends["stopped"].completion_tokens, 24) << "the worker still held the request";
  ASSERT_TRUE(Eventually([&] { return Metric(link).value_or(0) > link_before; }));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(Eventually([&] { return Metric(kv).value_or(-1) == 0; }))
      << "the stopped request's KV positions were not released";
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

TEST_F(ServingMetricsTest, BatchGenerateQueuesWithinTheBudget) {
  // Four requests of 90 positions on two workers of 100: two at a time.
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 4; ++i) reqs.push_back(Request(10 + i, 80 - i));
  BatchOutcome out = cluster_->coordinator().Generate(reqs);
  ASSERT_TRUE(out.status.ok()) << out.status.ToString();
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_TRUE(out.finished[i]);
    EXPECT_EQ(static_cast<int64_t>(out.results[i].tokens.size()), reqs[i].max_new_tokens);
  }
  GenerationRequest big = Request(10, 95);
  EXPECT_EQ(cluster_->coordinator().Generate({big}).status.code(), StatusCode::kInvalidArgument);
}

TEST_F(ServingMetricsTest, WorkerRefusesAnAddBeyondItsBudget) {
  std::vector<std::vector<WorkRequest>> add(2);
  add[0].push_back({1, Request(10, 50)});
  add[0].push_back({2, Request(10, 50)});  // 120 > 100 on worker 0
  auto step = cluster_->coordinator().RunStep(add, std::vector<std::vector<int64_t>>(2), false);
  ASSERT_FALSE(step.ok());
  EXPECT_NE(step.status().message().find("rank 0"), std::string::npos) << step.status().ToString();
  EXPECT_NE(step.status().message().find("kv_cache_tokens"), std::string::npos)
      << step.status().ToString();
}

}  // namespace
}  // namespace switchyard
