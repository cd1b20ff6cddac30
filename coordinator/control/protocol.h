// The control-plane messages between the coordinator and its workers, as JSON text.
//
//   worker -> coordinator: register, ready, step_done, heartbeat, error
//   coordinator -> worker: assign, step, shutdown, abort
//
// Session: a worker connects and sends `register`; the coordinator answers `assign` (rank, world,
// model, transport, runtime settings, the placement plan); the worker loads its share and sends
// `ready`. Then, for every step, the coordinator sends `step` to every worker (new requests for
// it, possibly none) and each worker runs one forward step in lockstep with the others and
// answers `step_done` (tokens sampled, per-expert counts, KV-cache positions in use and budget,
// cumulative per-link dispatch/combine traffic). `shutdown` ends the session; `abort`
// ends it because something failed. Workers send `heartbeat` periodically from their own thread.
// Encode* never fail; Decode* check every field and name the message type and field on error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/engine.h"

namespace switchyard {

struct RegisterMsg {
  int rank = -1;  // the worker's data-plane rank when its launcher knows it (MPI), else -1
  std::string host;
  int64_t pid = 0;
};

struct AssignMsg {
  int rank = 0;
  int world = 1;
  std::string model_dir;
  std::string transport;  // local | mpi | ucx | nccl
  std::string expert_format = "f32";
  int64_t max_seq_len = 4096;
  int64_t max_batch_tokens = 8192;
  int num_threads = 0;
  int64_t step_timeout_ms = 60000;
  int64_t heartbeat_interval_ms = 500;
  int64_t kv_cache_tokens =
      0;                   // KV budget of the worker in positions (Coordinator::kv_cache_tokens)
  std::string plan_json;   // PlacementPlan::ToJson()
  std::string rendezvous;  // ucx/nccl: "host:port" of the coordinator's rendezvous server
};

struct ReadyMsg {
  int rank = 0;
  int64_t expert_bytes = 0;    // routed-expert weights this worker holds
  int64_t resident_bytes = 0;  // all weights it holds
  int64_t expert_slots = 0;    // physical expert slots it holds, summed over layers
  double load_seconds = 0;
};

struct WorkRequest {
  int64_t id = 0;  // the coordinator's request index
  GenerationRequest request;
};

struct StepMsg {
  int64_t step = 0;
  std::vector<WorkRequest> add;  // requests this worker starts now
  std::vector<int64_t> release;  // requests to drop before this step (cancelled): KV freed
  bool want_logits = false;      // return each sampled token's logits row (tests)
};

struct TokenOut {
  int64_t id = 0;
  int32_t token = 0;
  bool finished = false;
  std::string finish_reason;  // when finished: "length" | "stop"
  std::vector<float> logits;  // when asked for
};

// A worker's MoE traffic per peer, cumulative since it started (worker/DistributedExpertRunner::
// link_traffic()): totals, not increments; the receiver takes differences.
struct LinkTrafficTotals {
  std::vector<int64_t> dispatch_bytes;  // [world] bytes this rank sent to each rank in dispatch
  std::vector<int64_t> combine_bytes;   // [world] bytes this rank sent to each rank in combine
  double dispatch_seconds = 0;          // wall time in dispatch collectives (shared by all links)
  double combine_seconds = 0;           // wall time in combine collectives
};

struct StepResultMsg {
  int rank = 0;
  int64_t step = 0;
  std::vector<TokenOut> tokens;
  // [plan layer][logical expert]: tokens this worker's expert slots processed in this step.
  std::vector<std::vector<int64_t>> expert_counts;
  int64_t batch_tokens = 0;
  double forward_seconds = 0;
  int64_t kv_used_tokens = 0;      // KV positions cached after the step, over its sequences
  int64_t kv_capacity_tokens = 0;  // its KV budget (positions)
  LinkTrafficTotals link_traffic;
};

std::string EncodeRegister(const RegisterMsg& m);
std::string EncodeAssign(const AssignMsg& m);
std::string EncodeReady(const ReadyMsg& m);
std::string EncodeStep(const StepMsg& m);
std::string EncodeStepResult(const StepResultMsg& m);
std::string EncodeHeartbeat(int rank);
std::string EncodeError(int rank, const std::string& message);
std::string EncodeShutdown();
std::string EncodeAbort(const std::string& reason);

// The "type" of a message. Errors: InvalidArgument (not JSON, no string "type"), naming `from`.
StatusOr<std::string> MessageType(const std::string& text, const std::string& from);

// Decoders: the message must have the expected type. Errors name `from`, the type and the field.
// DecodeStepResult also checks 0 <= kv_used_tokens <= kv_capacity_tokens, link_traffic byte
// vectors of equal length with entries >= 0, seconds >= 0, batch_tokens >= 0, token ids >= 0
// and finish_reason stop or length (errors name the token index and request id). Token ids
// (step_done) and prompt ids (step) must be integers within int32: nothing is narrowed silently.
Status DecodeRegister(const std::string& text, const std::string& from, RegisterMsg* m);
Status DecodeAssign(const std::string& text, const std::string& from, AssignMsg* m);
Status DecodeReady(const std::string& text, const std::string& from, ReadyMsg* m);
Status DecodeStep(const std::string& text, const std::string& from, StepMsg* m);
Status DecodeStepResult(const std::string& text, const std::string& from, StepResultMsg* m);
// "error" and "abort" carry a text: returns it.
StatusOr<std::string> DecodeReason(const std::string& text, const std::string& from);
// The rank field of register/heartbeat/error/ready/step_done messages (-1 when absent, not an
// integer, or outside [0, 2^31 - 1]: never narrowed).
int MessageRank(const std::string& text);

}  // namespace switchyard
