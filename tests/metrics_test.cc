// Metrics registry: exact Prometheus text (golden strings), bucket math, label escaping, name
// sanitising, registration errors, concurrency, and the ServingMetrics set.
#include "coordinator/metrics/metrics.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/metrics/serving_metrics.h"

namespace switchyard::metrics {
namespace {

TEST(Metrics, CounterAndGaugeGolden) {
  Registry r;
  auto c = r.AddCounter("switchyard:prompt_tokens_total", "Prompt tokens.", {"model_name"});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  (*c)->WithLabels({"tiny"}).value()->Inc(17);
  (*c)->WithLabels({"a\"b\\c\nd"}).value()->Inc();
  auto g = r.AddGauge("switchyard:kv_cache_usage_perc", "KV usage\\fraction\nline 2.");
  ASSERT_TRUE(g.ok());
  Gauge* gauge = (*g)->WithLabels({}).value();
  gauge->Set(0.25);
  gauge->Inc(0.5);
  gauge->Dec(1.0);
  EXPECT_EQ(r.RenderPrometheus(),
            "# HELP switchyard:prompt_tokens_total Prompt tokens.\n"
            "# TYPE switchyard:prompt_tokens_total counter\n"
            "switchyard:prompt_tokens_total{model_name=\"a\\\"b\\\\c\\nd\"} 1\n"
            "switchyard:prompt_tokens_total{model_name=\"tiny\"} 17\n"
            "# HELP switchyard:kv_cache_usage_perc KV usage\\\\fraction\\nline 2.\n"
            "# TYPE switchyard:kv_cache_usage_perc gauge\n"
            "switchyard:kv_cache_usage_perc -0.25\n");
}

TEST(Metrics, HistogramGoldenAndBucketMath) {
  Registry r;
  auto h = r.AddHistogram("lat_seconds", "Latency.", {0.1, 1, 10}, {"op"});
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  Histogram* x = (*h)->WithLabels({"get"}).value();
  for (double v : {0.05, 0.1, 0.5, 1.0, 3.0, 100.0, std::numeric_limits<double>::quiet_NaN()}) {
    x->Observe(v);
  }
  Histogram::Snapshot s = x->Take();
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{2, 4, 5, 6}));  // le is inclusive
  EXPECT_EQ(s.count, 6u);                                        // NaN ignored
  EXPECT_DOUBLE_EQ(s.sum, 104.65);
  EXPECT_EQ(r.RenderPrometheus(),
            "# HELP lat_seconds Latency.\n"
            "# TYPE lat_seconds histogram\n"
            "lat_seconds_bucket{op=\"get\",le=\"0.1\"} 2\n"
            "lat_seconds_bucket{op=\"get\",le=\"1\"} 4\n"
            "lat_seconds_bucket{op=\"get\",le=\"10\"} 5\n"
            "lat_seconds_bucket{op=\"get\",le=\"+Inf\"} 6\n"
            "lat_seconds_sum{op=\"get\"} " +
                FormatValue(s.sum) +
                "\n"
                "lat_seconds_count{op=\"get\"} 6\n");
}

TEST(Metrics, HistogramWithoutLabelsAndNoBounds) {
  Registry r;
  auto h = r.AddHistogram("h", "H.", {std::numeric_limits<double>::infinity()});
  ASSERT_TRUE(h.ok());
  (*h)->WithLabels({}).value()->Observe(2.5);
  EXPECT_EQ(r.RenderPrometheus(),
            "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 2.5\nh_count 1\n");
}

TEST(Metrics, ValueFormatting) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(42), "42");
  EXPECT_EQ(FormatValue(0.005), "0.005");
  EXPECT_EQ(FormatValue(1e21), "1e+21");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatValue(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(Metrics, NamesSanitisedAndLabelsValidated) {
  EXPECT_EQ(SanitizeMetricName("switchyard:a-b.c d"), "switchyard:a_b_c_d");
  EXPECT_EQ(SanitizeMetricName("9lives"), "_9lives");
  Registry r;
  auto c = r.AddCounter("my-metric", "x");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->name(), "my_metric");
  EXPECT_FALSE(r.AddCounter("", "x").ok());
  EXPECT_EQ(r.AddCounter("a", "x", {"bad-label"}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.AddCounter("a", "x", {"__reserved"}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.AddCounter("a", "x", {"l", "l"}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(r.AddHistogram("h", "x", {1}, {"le"}).status().code(), StatusCode::kInvalidArgument);
  auto unsorted = r.AddHistogram("h", "x", {1, 0.5});
  ASSERT_FALSE(unsorted.ok());
  EXPECT_NE(unsorted.status().message().find("bound 1"), std::string::npos);
  EXPECT_FALSE(r.AddHistogram("h", "x", {1, std::numeric_limits<double>::quiet_NaN()}).ok());
  // Wrong number of label values names the metric.
  auto lab = r.AddGauge("g", "x", {"a", "b"});
  ASSERT_TRUE(lab.ok());
  auto s = (*lab)->WithLabels({"only one"});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("metric g"), std::string::npos);
}

TEST(Metrics, ReRegistrationIsIdempotentOrConflict) {
  Registry r;
  auto a = r.AddCounter("c_total", "x", {"l"});
  auto b = r.AddCounter("c_total", "x", {"l"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(r.AddGauge("c_total", "x", {"l"}).status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(r.AddCounter("c_total", "x", {"m"}).status().code(), StatusCode::kAlreadyExists);
  ASSERT_TRUE(r.AddHistogram("h", "x", {1, 2}).ok());
  EXPECT_EQ(r.AddHistogram("h", "x", {1, 3}).status().code(), StatusCode::kAlreadyExists);
  // Same series pointer for the same label values; counters ignore negative increments.
  Counter* c1 = (*a)->WithLabels({"v"}).value();
  EXPECT_EQ(c1, (*a)->WithLabels({"v"}).value());
  c1->Inc(-5);
  EXPECT_EQ(c1->Value(), 0);
}

TEST(Metrics, BucketHelpers) {
  EXPECT_EQ(LinearBuckets(1, 2, 3).value(), (std::vector<double>{1, 3, 5}));
  EXPECT_EQ(ExponentialBuckets(0.5, 2, 4).value(), (std::vector<double>{0.5, 1, 2, 4}));
  EXPECT_FALSE(LinearBuckets(0, 0, 3).ok());
  EXPECT_FALSE(ExponentialBuckets(0, 2, 3).ok());
  EXPECT_FALSE(ExponentialBuckets(1, 1, 3).ok());
  EXPECT_FALSE(ExponentialBuckets(1, 2, 0).ok());
}

TEST(Metrics, ConcurrentUpdatesAreExact) {
  Registry r;
  auto c = r.AddCounter("hits_total", "x", {"t"}).value();
  auto g = r.AddGauge("level", "x").value()->WithLabels({}).value();
  auto h = r.AddHistogram("obs", "x", {0.5}).value()->WithLabels({}).value();
  constexpr int kThreads = 8, kIters = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Half the threads share a series, half create their own concurrently.
      Counter* shared = c->WithLabels({"shared"}).value();
      Counter* own = c->WithLabels({"t" + std::to_string(t % 4)}).value();
      for (int i = 0; i < kIters; ++i) {
        shared->Inc();
        own->Inc(0.5);
        g->Inc();
        g->Dec(0.5);
        h->Observe(i % 2 == 0 ? 0.25 : 1.0);
      }
      (void)r.RenderPrometheus();  // rendering while others write must be safe
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->WithLabels({"shared"}).value()->Value(), kThreads * kIters);
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(c->WithLabels({"t" + std::to_string(k)}).value()->Value(), 2 * kIters * 0.5);
  }
  EXPECT_EQ(g->Value(), kThreads * kIters * 0.5);
  Histogram::Snapshot s = h->Take();
  EXPECT_EQ(s.count, static_cast<uint64_t>(kThreads * kIters));
  EXPECT_EQ(s.cumulative[0], static_cast<uint64_t>(kThreads * kIters / 2));
  EXPECT_EQ(s.sum, kThreads * (kIters / 2) * 1.25);  // exact in binary
}

TEST(ServingMetrics, StandardNamesAndMoeSeries) {
  Registry r;
  auto m = ServingMetrics::Create(&r, "tiny-moe");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ServingMetrics& sm = **m;
  sm.ObserveTimeToFirstToken(0.03);
  sm.ObserveInterTokenLatency(0.02);
  sm.ObserveE2eLatency(1.2);
  sm.AddPromptTokens(12);
  sm.AddGenerationTokens(5);
  sm.SetRequestsRunning(3);
  sm.SetRequestsWaiting(1);
  sm.SetKvCacheUsage(0.5);
  ASSERT_TRUE(sm.RequestFinished("stop", 12, 5).ok());
  EXPECT_FALSE(sm.RequestFinished("", 1, 1).ok());
  ASSERT_TRUE(sm.UpdateExpertLoads({{1, 1, 1, 5}, {0, 0, 0, 0}}, {3, 4}).ok());
  EXPECT_FALSE(sm.UpdateExpertLoads({{1, -1}}).ok());
  EXPECT_FALSE(sm.UpdateExpertLoads({{1}}, {1, 2}).ok());
  ASSERT_TRUE(sm.AddLinkStats({0, 1, 1000, 500, 0.25, 0.125}).ok());
  ASSERT_TRUE(sm.AddLinkStats({0, 1, 24, 12, 0.25, 0.125}).ok());
  EXPECT_FALSE(sm.AddLinkStats({-1, 1, 0, 0, 0, 0}).ok());
  const std::string text = r.RenderPrometheus();
  for (const char* line : {
           "switchyard:num_requests_running{model_name=\"tiny-moe\"} 3\n",
           "switchyard:num_requests_waiting{model_name=\"tiny-moe\"} 1\n",
           "switchyard:kv_cache_usage_perc{model_name=\"tiny-moe\"} 0.5\n",
           "switchyard:prompt_tokens_total{model_name=\"tiny-moe\"} 12\n",
           "switchyard:generation_tokens_total{model_name=\"tiny-moe\"} 5\n",
           "switchyard:request_success_total{model_name=\"tiny-moe\",finished_reason=\"stop\"} 1\n",
           "switchyard:time_to_first_token_seconds_bucket{model_name=\"tiny-moe\",le=\"0.02\"} 0\n",
           "switchyard:time_to_first_token_seconds_bucket{model_name=\"tiny-moe\",le=\"0.04\"} 1\n",
           "switchyard:inter_token_latency_seconds_count{model_name=\"tiny-moe\"} 1\n",
           "switchyard:time_per_output_token_seconds_count{model_name=\"tiny-moe\"} 1\n",
           "switchyard:e2e_request_latency_seconds_sum{model_name=\"tiny-moe\"} 1.2\n",
           "switchyard:request_prompt_tokens_bucket{model_name=\"tiny-moe\",le=\"10\"} 0\n",
           "switchyard:request_prompt_tokens_bucket{model_name=\"tiny-moe\",le=\"20\"} 1\n",
           "switchyard:expert_load{model_name=\"tiny-moe\",layer=\"3\",expert=\"3\"} 5\n",
           "switchyard:expert_balancedness{model_name=\"tiny-moe\",layer=\"3\"} 2.5\n",
           "switchyard:expert_balancedness{model_name=\"tiny-moe\",layer=\"4\"} 0\n",
           "switchyard:dispatch_bytes_total{model_name=\"tiny-moe\",link=\"0->1\"} 1024\n",
           "switchyard:combine_bytes_total{model_name=\"tiny-moe\",link=\"0->1\"} 512\n",
           "switchyard:dispatch_seconds_total{model_name=\"tiny-moe\",link=\"0->1\"} 0.5\n",
           "switchyard:combine_seconds_total{model_name=\"tiny-moe\",link=\"0->1\"} 0.25\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line;
  }
  // A second ServingMetrics on the same registry (another model) shares the families.
  auto other = ServingMetrics::Create(&r, "other");
  ASSERT_TRUE(other.ok()) << other.status().ToString();
}

TEST(ServingMetrics, LinkTotalsBecomeIncrements) {
  Registry r;
  auto m = ServingMetrics::Create(&r, "m");
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE((*m)->ObserveLinkTotals({2, 0, 100, 10, 1.0, 0.5}).ok());
  ASSERT_TRUE((*m)->ObserveLinkTotals({2, 0, 150, 30, 1.5, 0.5}).ok());  // +50 +20 +0.5 +0
  ASSERT_TRUE((*m)->ObserveLinkTotals({2, 0, 7, 1, 0.25, 0.25}).ok());   // restarted worker
  ASSERT_TRUE((*m)->ObserveLinkTotals({0, 2, 5, 5, 0, 0}).ok());         // another link
  EXPECT_FALSE((*m)->ObserveLinkTotals({0, 2, 5, 5, -1, 0}).ok());
  const std::string text = r.RenderPrometheus();
  for (const char* line : {
           "switchyard:dispatch_bytes_total{model_name=\"m\",link=\"2->0\"} 157\n",
           "switchyard:combine_bytes_total{model_name=\"m\",link=\"2->0\"} 31\n",
           "switchyard:dispatch_seconds_total{model_name=\"m\",link=\"2->0\"} 1.75\n",
           "switchyard:combine_seconds_total{model_name=\"m\",link=\"2->0\"} 0.75\n",
           "switchyard:dispatch_bytes_total{model_name=\"m\",link=\"0->2\"} 5\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line << text;
  }
}

// Parses the rendered text with prometheus_client's parser when python3 has it (skips otherwise).
TEST(ServingMetrics, PrometheusClientParsesOutput) {
  if (std::system("timeout 60 python3 -c 'import prometheus_client' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3 prometheus_client not installed";
  }
  Registry r;
  auto m = ServingMetrics::Create(&r, "m\"q");
  ASSERT_TRUE(m.ok());
  (*m)->ObserveTimeToFirstToken(0.2);
  ASSERT_TRUE((*m)->RequestFinished("length", 3, 4).ok());
  ASSERT_TRUE((*m)->UpdateExpertLoads({{2, 4}}).ok());
  ASSERT_TRUE((*m)->AddLinkStats({1, 0, 8, 8, 0.5, 0.5}).ok());
  const std::string path = testing::TempDir() + "/metrics_test_exposition.txt";
  {
    std::ofstream f(path);
    f << r.RenderPrometheus();
  }
  const std::string script =
      "import sys\n"
      "from prometheus_client.parser import text_string_to_metric_families as p\n"
      "fams = {f.name: f for f in p(open(sys.argv[1]).read())}\n"
      "s = {(x.name, tuple(sorted(x.labels.items()))): x.value "
      "for f in fams.values() for x in f.samples}\n"
      "assert fams['switchyard:time_to_first_token_seconds'].type == 'histogram'\n"
      "assert s[('switchyard:request_success_total', (('finished_reason', 'length'), "
      "('model_name', 'm\"q')))] == 1\n"
      "assert s[('switchyard:expert_balancedness', (('layer', '0'), ('model_name', 'm\"q')))] == "
      "4/3\n"
      "assert s[('switchyard:dispatch_bytes_total', (('link', '1->0'), ('model_name', 'm\"q')))] "
      "== 8\n"
      "print('parsed', len(fams), 'families')\n";
  const std::string script_path = testing::TempDir() + "/metrics_test_parse.py";
  {
    std::ofstream f(script_path);
    f << script;
  }
  EXPECT_EQ(std::system(("timeout 60 python3 " + script_path + " " + path).c_str()), 0);
}

}  // namespace
}  // namespace switchyard::metrics
