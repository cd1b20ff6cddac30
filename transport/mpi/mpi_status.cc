#include "transport/mpi/mpi_status.h"

#include <mpi.h>
#if __has_include(<mpi-ext.h>)
#include <mpi-ext.h>
#endif

namespace switchyard {

std::string MpiErrorString(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) {
    return "MPI error " + std::to_string(code);
  }
  return std::string(text, length);
}

Status MpiCodeToStatus(int code, std::string_view context) {
  if (code == MPI_SUCCESS) return OkStatus();
  int error_class = code;
  if (MPI_Error_class(code, &error_class) != MPI_SUCCESS) error_class = MPI_ERR_UNKNOWN;
  std::string msg = std::string(context) + ": " + MpiErrorString(code) + " (MPI error class " +
                    std::to_string(error_class) + ")";
#if defined(MPIX_ERR_PROC_FAILED)
  if (error_class == MPIX_ERR_PROC_FAILED) return UnavailableError(std::move(msg));
#endif
#if defined(MPIX_ERR_REVOKED)
  if (error_class == MPIX_ERR_REVOKED) return UnavailableError(std::move(msg));
#endif
  switch (error_class) {
    case MPI_ERR_BUFFER:
    case MPI_ERR_COUNT:
    case MPI_ERR_TYPE:
    case MPI_ERR_TAG:
    case MPI_ERR_COMM:
    case MPI_ERR_RANK:
    case MPI_ERR_REQUEST:
    case MPI_ERR_ROOT:
    case MPI_ERR_GROUP:
    case MPI_ERR_OP:
    case MPI_ERR_ARG:
      return InvalidArgumentError(std::move(msg));
    case MPI_ERR_TRUNCATE:
      return OutOfRangeError(std::move(msg));
    case MPI_ERR_NO_MEM:
      return ResourceExhaustedError(std::move(msg));
    case MPI_ERR_UNKNOWN:
    case MPI_ERR_OTHER:
      // What Open MPI reports when a connection to a peer breaks.
      return UnavailableError(std::move(msg));
    default:
      return InternalError(std::move(msg));
  }
}

}  // namespace switchyard
