#include "worker/rank_env.h"

#include <cstdlib>
#include <vector>

#include "transport/transport_factory.h"

namespace switchyard {
namespace {

// The first set variable of `names` as an integer >= `min` (-1 when none is set); `which`
// receives its name.
StatusOr<int> FirstInt(const EnvLookup& lookup, const std::vector<const char*>& names, int min,
                       std::string* which) {
  for (const char* name : names) {
    const char* text = lookup(name);
    if (text == nullptr) continue;
    const std::string value(text);
    bool digits = !value.empty() && value.size() <= 9;
    for (char c : value) digits = digits && c >= '0' && c <= '9';
    if (!digits || std::atoi(text) < min) {
      return InvalidArgumentError(std::string("environment variable ") + name + "='" + value +
                                  "': expected " + (min > 0 ? "a positive" : "a non-negative") +
                                  " integer");
    }
    *which = name;
    return std::atoi(text);
  }
  return -1;
}

Status CheckBelow(int value, const std::string& value_name, int size,
                  const std::string& size_name) {
  if (value >= 0 && size > 0 && value >= size) {
    return InvalidArgumentError("environment variable " + value_name + "=" + std::to_string(value) +
                                " is not below " + size_name + "=" + std::to_string(size));
  }
  return OkStatus();
}

std::string Field(int v) { return v < 0 ? "?" : std::to_string(v); }

}  // namespace

std::string RankEnv::ToString() const {
  return "rank " + Field(rank) + "/" + Field(world_size) + " local " + Field(local_rank) + "/" +
         Field(local_size) + " (" + source + ")";
}

StatusOr<RankEnv> RankEnvFromVariables(const EnvLookup& lookup) {
  RankEnv env;
  std::string rank_var, size_var, local_var, local_size_var;
  ASSIGN_OR_RETURN(env.rank, FirstInt(lookup, {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"},
                                      0, &rank_var));
  ASSIGN_OR_RETURN(
      env.world_size,
      FirstInt(lookup, {"OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS"}, 1,
               &size_var));
  ASSIGN_OR_RETURN(env.local_rank, FirstInt(lookup, {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID"},
                                            0, &local_var));
  ASSIGN_OR_RETURN(env.local_size,
                   FirstInt(lookup, {"OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"}, 1,
                            &local_size_var));
  RETURN_IF_ERROR(CheckBelow(env.rank, rank_var, env.world_size, size_var));
  RETURN_IF_ERROR(CheckBelow(env.local_rank, local_var, env.local_size, local_size_var));
  for (const std::string* name : {&rank_var, &size_var, &local_var, &local_size_var}) {
    if (name->empty()) continue;
    if (!env.source.empty()) env.source += ",";
    env.source += *name;
  }
  if (env.source.empty()) env.source = "none";
  return env;
}

StatusOr<RankEnv> DiscoverRankEnv() {
  auto mpi = MpiNodeRanksOfProcess();
  if (mpi.ok()) {
    RankEnv env;
    env.rank = mpi->rank;
    env.world_size = mpi->world_size;
    env.local_rank = mpi->local_rank;
    env.local_size = mpi->local_size;
    env.source = "mpi";
    return env;
  }
  return RankEnvFromVariables([](const char* name) { return std::getenv(name); });
}

}  // namespace switchyard
