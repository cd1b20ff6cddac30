// Rank discovery from the launcher's variables (worker/rank_env.h): Open MPI, Slurm, PMIx,
// precedence, and bad values named with their variable.
#include "worker/rank_env.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace switchyard {
namespace {

StatusOr<RankEnv> FromMap(const std::map<std::string, std::string>& vars) {
  return RankEnvFromVariables([&vars](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(RankEnv, NothingSetIsUnknown) {
  auto env = FromMap({});
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_EQ(env->rank, -1);
  EXPECT_EQ(env->world_size, -1);
  EXPECT_EQ(env->local_rank, -1);
  EXPECT_EQ(env->local_size, -1);
  EXPECT_EQ(env->LocalRankOrZero(), 0);
  EXPECT_EQ(env->source, "none");
}

TEST(RankEnv, OpenMpiVariables) {
  auto env = FromMap({{"OMPI_COMM_WORLD_RANK", "5"},
                      {"OMPI_COMM_WORLD_SIZE", "8"},
                      {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
                      {"OMPI_COMM_WORLD_LOCAL_SIZE", "4"},
                      {"PMIX_RANK", "5"}});
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_EQ(env->rank, 5);
  EXPECT_EQ(env->world_size, 8);
  EXPECT_EQ(env->local_rank, 1);
  EXPECT_EQ(env->local_size, 4);
  EXPECT_EQ(env->source,
            "OMPI_COMM_WORLD_RANK,OMPI_COMM_WORLD_SIZE,OMPI_COMM_WORLD_LOCAL_RANK,"
            "OMPI_COMM_WORLD_LOCAL_SIZE");
  EXPECT_EQ(env->ToString(),
            "rank 5/8 local 1/4 (OMPI_COMM_WORLD_RANK,OMPI_COMM_WORLD_SIZE,"
            "OMPI_COMM_WORLD_LOCAL_RANK,OMPI_COMM_WORLD_LOCAL_SIZE)");
}

// srun --mpi=pmix: no OMPI_* at all, Slurm's variables and PMIX_RANK.
TEST(RankEnv, SlurmVariables) {
  auto env = FromMap({{"SLURM_PROCID", "6"},
                      {"SLURM_NTASKS", "17"},
                      {"SLURM_LOCALID", "2"},
                      {"SLURM_NTASKS_PER_NODE", "4"}});
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_EQ(env->rank, 6);
  EXPECT_EQ(env->world_size, 17);
  EXPECT_EQ(env->local_rank, 2);
  EXPECT_EQ(env->local_size, 4);
  EXPECT_EQ(env->LocalRankOrZero(), 2);
}

TEST(RankEnv, PrecedenceOmpiThenPmixThenSlurm) {
  auto env = FromMap({{"PMIX_RANK", "3"},
                      {"SLURM_PROCID", "9"},
                      {"SLURM_STEP_NUM_TASKS", "12"},
                      {"SLURM_LOCALID", "1"},
                      {"OMPI_COMM_WORLD_LOCAL_RANK", "0"}});
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  EXPECT_EQ(env->rank, 3);         // PMIX_RANK before SLURM_PROCID
  EXPECT_EQ(env->world_size, 12);  // SLURM_STEP_NUM_TASKS when SLURM_NTASKS is unset
  EXPECT_EQ(env->local_rank, 0);   // Open MPI before Slurm
  EXPECT_EQ(env->local_size, -1);
  EXPECT_EQ(env->source, "PMIX_RANK,SLURM_STEP_NUM_TASKS,OMPI_COMM_WORLD_LOCAL_RANK");
}

TEST(RankEnv, BadValuesNameTheVariable) {
  struct Case {
    std::map<std::string, std::string> vars;
    std::string want;  // in the message
  };
  const Case cases[] = {
      {{{"SLURM_LOCALID", "abc"}}, "SLURM_LOCALID='abc'"},
      {{{"SLURM_LOCALID", ""}}, "SLURM_LOCALID=''"},
      {{{"OMPI_COMM_WORLD_RANK", "-1"}}, "OMPI_COMM_WORLD_RANK='-1'"},
      {{{"PMIX_RANK", "2x"}}, "PMIX_RANK='2x'"},
      {{{"SLURM_NTASKS", "0"}}, "SLURM_NTASKS='0'"},
      {{{"OMPI_COMM_WORLD_LOCAL_SIZE", "99999999999"}}, "OMPI_COMM_WORLD_LOCAL_SIZE="},
      {{{"SLURM_PROCID", "4"}, {"SLURM_NTASKS", "4"}},
       "SLURM_PROCID=4 is not below SLURM_NTASKS=4"},
      {{{"OMPI_COMM_WORLD_LOCAL_RANK", "2"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}},
       "OMPI_COMM_WORLD_LOCAL_RANK=2 is not below OMPI_COMM_WORLD_LOCAL_SIZE=2"},
  };
  for (const Case& c : cases) {
    auto env = FromMap(c.vars);
    ASSERT_FALSE(env.ok()) << c.want;
    EXPECT_EQ(env.status().code(), StatusCode::kInvalidArgument) << c.want;
    EXPECT_NE(env.status().message().find(c.want), std::string::npos)
        << env.status().message() << " lacks " << c.want;
  }
}

// Without MPI initialized by this process, discovery reads the real environment.
TEST(RankEnv, DiscoverFallsBackToTheEnvironment) {
  ASSERT_EQ(setenv("SLURM_LOCALID", "3", 1), 0);
  auto env = DiscoverRankEnv();
  unsetenv("SLURM_LOCALID");
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  if (getenv("OMPI_COMM_WORLD_LOCAL_RANK") == nullptr) {
    EXPECT_EQ(env->local_rank, 3);
  }
  ASSERT_EQ(setenv("SLURM_LOCALID", "three", 1), 0);
  auto bad = DiscoverRankEnv();
  unsetenv("SLURM_LOCALID");
  if (getenv("OMPI_COMM_WORLD_LOCAL_RANK") == nullptr) {
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("SLURM_LOCALID"), std::string::npos);
  }
}

}  // namespace
}  // namespace switchyard

#ifdef SWITCHYARD_TEST_CUDA_DEVICE_CHOICE
#include "kernels/cuda/device.h"

namespace switchyard {
namespace {

// The GPU choice rule (pure; no GPU needed): local rank modulo the visible devices.
TEST(DeviceChoice, LocalRankModuloVisibleDevices) {
  std::string warning;
  EXPECT_EQ(*cuda::DeviceForLocalRank(0, 4, 4, &warning), 0);
  EXPECT_EQ(*cuda::DeviceForLocalRank(3, 4, 4, &warning), 3);
  EXPECT_TRUE(warning.empty()) << warning;
  // Slurm --gpus-per-task=1: one device visible per task, always index 0, no warning.
  EXPECT_EQ(*cuda::DeviceForLocalRank(3, 1, 4, &warning), 0);
  EXPECT_TRUE(warning.empty()) << warning;
  // More workers than GPUs on the node: shared, with a warning naming the key.
  EXPECT_EQ(*cuda::DeviceForLocalRank(5, 4, 8, &warning), 1);
  EXPECT_NE(warning.find("cluster.gpus_per_node is 8"), std::string::npos) << warning;
  EXPECT_EQ(*cuda::DeviceForLocalRank(4, 4, 0, &warning), 0);
  EXPECT_NE(warning.find("local rank 4"), std::string::npos) << warning;
  EXPECT_EQ(cuda::DeviceForLocalRank(-1, 4, 0).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(cuda::DeviceForLocalRank(0, 0, 0).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace switchyard
#endif
