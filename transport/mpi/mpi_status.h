// MPI error codes -> Status (the only place that interprets them: mpi_status.cc).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace switchyard {

// OK for MPI_SUCCESS; otherwise a Status whose code follows the MPI error class (argument errors ->
// InvalidArgument, truncation -> OutOfRange, out of memory -> ResourceExhausted, failed or revoked
// processes and unknown communication errors -> Unavailable, the rest -> Internal) and whose
// message is "<context>: <MPI error string> (MPI error class N)". Callable only while MPI is
// initialized.
Status MpiCodeToStatus(int code, std::string_view context);

// The MPI error string of `code` (for messages).
std::string MpiErrorString(int code);

}  // namespace switchyard
