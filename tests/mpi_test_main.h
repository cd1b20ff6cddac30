// main() of the test binaries that ctest runs under mpirun: creates the MPI transport, runs the
// tests on every rank, shuts MPI down. Without MPI built, tests see no transport and skip with
// the reason. Include in exactly one source file of a binary.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>

#include "transport/transport_factory.h"

namespace switchyard::testing {

// The MPI transport of this process, or null when MPI is not built (then MpiSkipReason() says why).
inline Transport*& MpiTransport() {
  static Transport* transport = nullptr;
  return transport;
}
inline std::string& MpiSkipReason() {
  static std::string reason;
  return reason;
}

inline int RunMpiTests(int argc, char** argv, const char* name) {
  ::testing::InitGoogleTest(&argc, argv);
  auto transport = CreateTransport(TransportKind::kMpi);
  std::unique_ptr<Transport> owned;
  if (transport.ok()) {
    owned = std::move(transport).value();
    MpiTransport() = owned.get();
  } else if (transport.status().code() == StatusCode::kUnimplemented) {
    MpiSkipReason() = transport.status().message();
  } else {
    std::fprintf(stderr, "%s: %s\n", name, transport.status().ToString().c_str());
    return 1;
  }
  const int rc = RUN_ALL_TESTS();
  MpiTransport() = nullptr;
  owned.reset();
  Status shutdown = ShutdownTransports();
  if (!shutdown.ok()) {
    std::fprintf(stderr, "%s: %s\n", name, shutdown.ToString().c_str());
    return 1;
  }
  return rc;
}

}  // namespace switchyard::testing
