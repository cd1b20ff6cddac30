// DistributedExpertRunner: the ExpertRunner of a worker rank. Routed tokens go to the ranks that
// hold their experts (dispatch), each rank runs its local experts on what it received, and the
// weighted results come back (combine) — over any Transport. The model code is the same as in
// the single-process engine; only this object differs.
//
// Every rank must call Run for every MoE layer of every step, in the same order, also with zero
// tokens (dispatch and combine are collectives). Not thread-safe: one forward pass at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "model/expert_runner.h"
#include "transport/dispatch.h"
#include "transport/dispatch_layout.h"
#include "transport/transport.h"

namespace switchyard {

struct DistributedExpertOptions {
  ReplicaPolicy replica_policy = ReplicaPolicy::kPreferLocal;
  PayloadDtype dispatch_dtype = PayloadDtype::kF32;
  PayloadDtype combine_dtype = PayloadDtype::kF32;  // f32 or bf16 (fp8 is dispatch-only)
  // With dispatch_dtype kBF16: use the dispatcher's BF16 path (DispatchBf16: each token rounded
  // to BF16 once and sent as it is, expert inputs widened straight from the received views; with
  // combine_dtype kBF16 also CombineBf16 from the dispatcher's combine rows, sent without a pack
  // copy). Results are bitwise those of the FP32 API with the same dtypes; false forces the FP32
  // API (for comparisons).
  bool bf16_path = true;
  // Integrity mode etc. SWITCHYARD_INTEGRITY=1|0, when set, overrides `integrity` (a bad value is
  // reported by Validate()).
  DispatcherOptions dispatcher;
  // Each dispatch and each combine must finish within this; a peer that does not is reported
  // (DeadlineExceeded naming it) instead of hanging.
  std::chrono::milliseconds timeout{30000};
};

// This rank's MoE traffic per peer, cumulative since the runner was built: the bytes it handed the
// transport for each destination (DispatchMessageBytes / CombineMessageBytes: headers and bodies,
// as sent, unpadded; 0 to itself) and the wall time spent in the Dispatch and Combine
// collectives (the time of a collective is shared by all of its links). Counters only grow;
// report them as they are and let the receiver take differences.
struct LinkTraffic {
  std::vector<int64_t> dispatch_bytes;  // [world_size] bytes sent to each rank in dispatch
  std::vector<int64_t> combine_bytes;   // [world_size] bytes sent to each rank in combine
  double dispatch_seconds = 0.0;
  double combine_seconds = 0.0;
  int64_t calls = 0;  // successful Run calls (MoE layers) counted
};

class DistributedExpertRunner : public ExpertRunner {
 public:
  // `placement[layer]` is the placement of MoE layer `layer` (entries for dense layers are
  // ignored); this rank's weights must hold every expert placed on it. `transport` and `weights`
  // must outlive the runner.
  DistributedExpertRunner(const ModelConfig& config, const ModelWeights& weights,
                          Transport* transport, std::vector<ExpertPlacement> placement,
                          DistributedExpertOptions options = {});

  // Checks that the placement fits the model and that every expert placed on this rank is
  // loaded; errors name the layer and expert (or the bad SWITCHYARD_INTEGRITY value).
  Status Validate() const;

  Status Run(int64_t layer, const float* hidden, int64_t num_tokens, const int32_t* topk_idx,
             const float* topk_weights, float* out) override;

  // Tokens (entries) this rank's experts processed in the last Run, per local slot.
  const std::vector<int64_t>& LastLocalCounts() const { return local_counts_; }

  // Cumulative per-peer traffic (see LinkTraffic). Plain fields updated by Run without locking:
  // read it on the thread that calls Run, between Runs (e.g. when building the step reply).
  const LinkTraffic& link_traffic() const { return link_traffic_; }

 private:
  void CountTraffic(const DispatchLayout& layout, std::chrono::steady_clock::duration dispatch_time,
                    std::chrono::steady_clock::duration combine_time);

  const ModelConfig& config_;
  const ModelWeights& weights_;
  Transport* transport_;
  std::vector<ExpertPlacement> placement_;
  DistributedExpertOptions options_;
  std::vector<std::vector<int32_t>> slot_expert_;  // [layer][local slot] -> logical expert
  Status env_status_;                              // SWITCHYARD_INTEGRITY parse result
  Dispatcher dispatcher_;
  ReceivedTokens received_;
  std::vector<float> gathered_, results_, scratch_, entry_out_, row_out_;
  std::vector<uint16_t> hidden_bf16_;  // the BF16 path: this layer's tokens rounded once
  std::vector<int64_t> local_counts_;
  LinkTraffic link_traffic_;
};

}  // namespace switchyard
