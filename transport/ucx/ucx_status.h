// UCX status codes -> Status (the only place that interprets them: ucx_status.cc). The code is
// passed as an int so that this header does not include UCX headers.
#pragma once

#include <string_view>

#include "common/status.h"

namespace switchyard {

// OK for UCS_OK (0); otherwise "<context>: <ucs_status_string> (UCS status N)" with a code that
// follows the UCX status: truncation -> OutOfRange, out of memory/resources -> ResourceExhausted,
// bad parameters/addresses -> InvalidArgument, unreachable / rejected / not connected / connection
// reset / link and endpoint failures / I/O errors -> Unavailable (a peer that died or cannot be
// reached), timeouts -> DeadlineExceeded, cancelled -> Cancelled, the rest -> Internal.
// Thread-safe.
Status UcsCodeToStatus(int ucs_status, std::string_view context);

}  // namespace switchyard
