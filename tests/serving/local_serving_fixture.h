// A test fixture base shared by the serving tests: the default model in a scratch directory, a
// cluster of worker threads on it (transport local), its tokenizer and a metrics registry.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "../test_util.h"
#include "common/runtime_config.h"
#include "coordinator/serving/serving_metrics.h"
#include "model/random_checkpoint.h"
#include "model/tokenizer.h"
#include "worker/local_cluster.h"

namespace switchyard::testing {

class LocalServingFixture : public ::testing::Test {
 protected:
  // Writes the default model and fills rt_ with the shared settings (workers as threads, max
  // sequence 256, a 20 s step deadline); a test's SetUp adjusts rt_ and calls StartCluster.
  void PrepareModel() {
    ASSERT_TRUE(WriteDefaultModel(tmp_.path() + "/m").ok());
    rt_.max_seq_len = 256;
    rt_.has_cluster = true;
    rt_.cluster.model = tmp_.path() + "/m";
    rt_.cluster.transport = "local";
    rt_.cluster.step_timeout_ms = 20000;
  }
  // Starts the cluster on rt_, loads the model's tokenizer and creates metrics_ (model "m").
  void StartCluster() {
    auto tok = Tokenizer::FromFile(rt_.cluster.model + "/tokenizer.json");
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    tokenizer_ = std::move(*tok);
    auto cluster = LocalCluster::Start(rt_);
    ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
    cluster_ = std::move(*cluster);
    auto m = ServingMetrics::Create("m");
    ASSERT_TRUE(m.ok());
    metrics_ = std::move(*m);
  }

  TempDir tmp_;
  RuntimeConfig rt_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<LocalCluster> cluster_;
  std::unique_ptr<ServingMetrics> metrics_;
};

}  // namespace switchyard::testing
