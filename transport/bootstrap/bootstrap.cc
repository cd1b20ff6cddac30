#include "transport/bootstrap/bootstrap.h"

#include <charconv>
#include <cstdlib>
#include <memory>

#include "transport/bootstrap/rendezvous.h"

namespace switchyard {
namespace {

// Reads integer variable `name`: nullopt when unset; an error when set but not an integer >= 0.
StatusOr<std::optional<int>> EnvInt(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return std::optional<int>();
  int value = -1;
  const char* end = text + std::char_traits<char>::length(text);
  auto [ptr, ec] = std::from_chars(text, end, value);
  if (ec != std::errc() || ptr != end || value < 0) {
    return InvalidArgumentError(std::string("environment variable ") + name + "='" + text +
                                "' is not a non-negative integer");
  }
  return std::optional<int>(value);
}

// The first variable of `names` that is set, with its name.
StatusOr<std::pair<int, const char*>> FirstEnvInt(std::initializer_list<const char*> names) {
  for (const char* name : names) {
    ASSIGN_OR_RETURN(std::optional<int> value, EnvInt(name));
    if (value) return std::make_pair(*value, name);
  }
  return std::make_pair(-1, static_cast<const char*>(nullptr));
}

}  // namespace

StatusOr<BootstrapOptions> ResolveBootstrapOptions(BootstrapOptions options) {
  std::string rank_from = "options";
  std::string world_from = "options";
  if (options.rank < 0) {
    ASSIGN_OR_RETURN(auto found, FirstEnvInt({"SWITCHYARD_RANK", "OMPI_COMM_WORLD_RANK",
                                              "PMIX_RANK", "SLURM_PROCID"}));
    options.rank = found.first < 0 ? 0 : found.first;
    rank_from = found.second ? found.second : "default";
  }
  if (options.world_size < 0) {
    ASSIGN_OR_RETURN(
        auto found, FirstEnvInt({"SWITCHYARD_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS"}));
    options.world_size = found.first < 0 ? 1 : found.first;
    world_from = found.second ? found.second : "default";
  }
  if (options.world_size < 1 || options.rank >= options.world_size) {
    return InvalidArgumentError("bootstrap: rank " + std::to_string(options.rank) + " (from " +
                                rank_from + ") outside [0, world size " +
                                std::to_string(options.world_size) + " (from " + world_from + "))");
  }
  if (options.endpoint.empty()) {
    if (const char* env = std::getenv("SWITCHYARD_BOOTSTRAP"); env && *env) {
      options.endpoint = env;
      options.endpoint_from_env = true;
      if (const char* server = std::getenv("SWITCHYARD_BOOTSTRAP_SERVER"); server && *server) {
        const std::string_view mode(server);
        if (mode != "rank0" && mode != "external") {
          return InvalidArgumentError("environment variable SWITCHYARD_BOOTSTRAP_SERVER='" +
                                      std::string(mode) + "' (expected rank0 or external)");
        }
        options.rank0_serves = mode == "rank0";
      }
    }
  }
  if (!options.endpoint.empty()) {
    RETURN_IF_ERROR(ParseHostPort(options.endpoint, options.endpoint_from_env
                                                        ? "SWITCHYARD_BOOTSTRAP"
                                                        : "bootstrap endpoint")
                        .status());
  }
  return options;
}

bool LaunchedByMpiLauncher() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMIX_RANK") != nullptr;
}

BlobAllGather TcpBlobAllGather(const BootstrapOptions& options) {
  return [options](std::string_view blob, Deadline deadline) -> StatusOr<std::vector<std::string>> {
    if (options.world_size == 1) return std::vector<std::string>{std::string(blob)};
    if (options.endpoint.empty()) {
      return InvalidArgumentError(
          "bootstrap (rank " + std::to_string(options.rank) + " of " +
          std::to_string(options.world_size) +
          "): no rendezvous endpoint; set SWITCHYARD_BOOTSTRAP=host:port (rank 0's host and a "
          "free port) or pass one explicitly");
    }
    ASSIGN_OR_RETURN(HostPort where, ParseHostPort(options.endpoint, "bootstrap endpoint"));
    std::unique_ptr<RendezvousServer> server;
    if (options.rank == 0 && options.rank0_serves) {
      ASSIGN_OR_RETURN(
          server, RendezvousServer::Start("0.0.0.0", where.port, options.world_size, deadline));
    }
    auto blobs = RendezvousAllGather(where.host, where.port, options.rank, options.world_size, blob,
                                     deadline);
    if (!blobs.ok() && options.rank != 0 && options.rank0_serves &&
        blobs.status().message().find("not reachable") != std::string::npos) {
      return Status(blobs.status().code(),
                    blobs.status().message() + "; rank 0 hosts this rendezvous and has not " +
                        "started it (is rank 0 running, with the same endpoint?)");
    }
    // Keep serving until every rank has its reply (bounded by the deadline plus a grace).
    if (server) {
      Status served = server->Wait();
      if (blobs.ok() && !served.ok()) return served;
    }
    return blobs;
  };
}

}  // namespace switchyard
