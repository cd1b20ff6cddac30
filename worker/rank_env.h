// Where this process sits in a launch: global rank and world size, and its rank among the
// processes of the same node (the local rank picks the GPU). Deploy-facing: read once at start.
//
// Precedence (first that answers wins, per field):
//   1. MPI, when this process initialized MPI through the transport layer (MpiInitOnce): world
//      rank/size from MPI_COMM_WORLD, local rank/size from MPI_Comm_split_type(SHARED), computed
//      right after MPI_Init_thread. Under MPMD launches the coordinator counts too.
//   2. The launcher's environment (before MPI is up, or without MPI):
//      rank:       OMPI_COMM_WORLD_RANK, PMIX_RANK, SLURM_PROCID
//      world_size: OMPI_COMM_WORLD_SIZE, SLURM_NTASKS, SLURM_STEP_NUM_TASKS
//      local_rank: OMPI_COMM_WORLD_LOCAL_RANK, SLURM_LOCALID
//      local_size: OMPI_COMM_WORLD_LOCAL_SIZE, SLURM_NTASKS_PER_NODE
//   3. Unknown: -1 (a single process: treat as rank 0 of 1, local rank 0).
#pragma once

#include <functional>
#include <string>

#include "common/status.h"

namespace switchyard {

struct RankEnv {
  int rank = -1;        // global rank (-1: unknown)
  int world_size = -1;  // processes in the launch (-1: unknown)
  int local_rank = -1;  // rank among this node's processes (-1: unknown)
  int local_size = -1;  // processes on this node (-1: unknown)
  std::string source;   // "mpi", the variables that answered (e.g. "SLURM_PROCID,..."), or "none"

  // local_rank, or 0 when unknown (one process per node).
  int LocalRankOrZero() const { return local_rank < 0 ? 0 : local_rank; }
  // "rank R/W local L/S (source)" with '?' for unknown fields, for logs.
  std::string ToString() const;
};

// Looks up one environment variable (nullptr when unset); std::getenv by default.
using EnvLookup = std::function<const char*(const char* name)>;

// The launcher's variables only (precedence 2 above). Pure apart from `lookup`; thread-safe if it
// is. Errors: InvalidArgument naming the variable and its value when a set variable is not a
// non-negative decimal integer (ranks) / positive integer (sizes), or when a rank is not below its
// size (naming both variables).
StatusOr<RankEnv> RankEnvFromVariables(const EnvLookup& lookup);

// MPI when this process initialized it, else RankEnvFromVariables(std::getenv). Never initializes
// MPI and never communicates (the MPI answer is cached at MPI initialization). Thread-safe.
// Errors: those of RankEnvFromVariables.
StatusOr<RankEnv> DiscoverRankEnv();

}  // namespace switchyard
