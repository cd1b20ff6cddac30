#include "transport/ucx/ucx_status.h"

#include <ucs/type/status.h>

#include <string>

namespace switchyard {

Status UcsCodeToStatus(int ucs_status, std::string_view context) {
  const auto status = static_cast<ucs_status_t>(ucs_status);
  if (status == UCS_OK) return OkStatus();
  std::string msg = std::string(context) + ": " + ucs_status_string(status) + " (UCS status " +
                    std::to_string(ucs_status) + ")";
  if (status <= UCS_ERR_FIRST_LINK_FAILURE && status >= UCS_ERR_LAST_ENDPOINT_FAILURE) {
    return UnavailableError(std::move(msg));  // link and endpoint failures: the peer is gone
  }
  switch (status) {
    case UCS_ERR_MESSAGE_TRUNCATED:
    case UCS_ERR_BUFFER_TOO_SMALL:
    case UCS_ERR_OUT_OF_RANGE:
      return OutOfRangeError(std::move(msg));
    case UCS_ERR_NO_MEMORY:
    case UCS_ERR_NO_RESOURCE:
    case UCS_ERR_EXCEEDS_LIMIT:
      return ResourceExhaustedError(std::move(msg));
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
      return InvalidArgumentError(std::move(msg));
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_REJECTED:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_IO_ERROR:
    case UCS_ERR_SOME_CONNECTS_FAILED:
    case UCS_ERR_NO_DEVICE:
      return UnavailableError(std::move(msg));
    case UCS_ERR_TIMED_OUT:
      return DeadlineExceededError(std::move(msg));
    case UCS_ERR_CANCELED:
      return Status(StatusCode::kCancelled, std::move(msg));
    default:
      return InternalError(std::move(msg));
  }
}

}  // namespace switchyard
