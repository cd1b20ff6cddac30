#include "transport/bootstrap/mpi_blob_allgather.h"

#include <mpi.h>

#include <climits>
#include <thread>

#include "transport/mpi/mpi_status.h"
#include "transport/mpi/mpi_transport.h"

namespace switchyard {
namespace {

// Polls `request` until done or the deadline. On a deadline the request is left pending (a
// non-blocking collective may be neither cancelled nor freed) and false is returned.
StatusOr<bool> PollUntil(MPI_Request* request, Deadline deadline, const std::string& what) {
  int idle = 0;
  while (true) {
    int flag = 0;
    RETURN_IF_ERROR(MpiCodeToStatus(MPI_Test(request, &flag, MPI_STATUS_IGNORE), what));
    if (flag) return true;
    if (deadline.Expired()) return false;
    if (++idle > 64) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

}  // namespace

StatusOr<std::vector<std::string>> MpiBlobAllGather(std::string_view blob, Deadline deadline) {
  RETURN_IF_ERROR(MpiInitOnce());
  int rank = 0;
  int size = 0;
  RETURN_IF_ERROR(MpiCodeToStatus(MPI_Comm_rank(MPI_COMM_WORLD, &rank), "MPI_Comm_rank"));
  RETURN_IF_ERROR(MpiCodeToStatus(MPI_Comm_size(MPI_COMM_WORLD, &size), "MPI_Comm_size"));
  const std::string where = "MPI bootstrap allgather on rank " + std::to_string(rank);
  if (blob.size() > static_cast<size_t>(INT_MAX)) {
    return InvalidArgumentError(where + ": blob of " + std::to_string(blob.size()) +
                                " bytes (limit 2^31-1)");
  }
  // Heap state, leaked if a deadline leaves a collective pending (MPI may still write into it).
  struct State {
    int my_length = 0;
    std::vector<int> lengths;
    std::vector<int> displs;
    std::string send;
    std::string all;
    MPI_Request request = MPI_REQUEST_NULL;
  };
  auto state = std::make_unique<State>();
  state->my_length = static_cast<int>(blob.size());
  state->lengths.assign(size, 0);
  state->send.assign(blob);
  RETURN_IF_ERROR(
      MpiCodeToStatus(MPI_Iallgather(&state->my_length, 1, MPI_INT, state->lengths.data(), 1,
                                     MPI_INT, MPI_COMM_WORLD, &state->request),
                      where + ": MPI_Iallgather"));
  ASSIGN_OR_RETURN(bool done, PollUntil(&state->request, deadline, where));
  if (!done) {
    (void)state.release();  // see State
    return DeadlineExceededError(where + ": not every rank joined the length exchange in time");
  }
  state->displs.assign(size, 0);
  int64_t total = 0;
  for (int r = 0; r < size; ++r) {
    state->displs[r] = static_cast<int>(total);
    total += state->lengths[r];
    if (total > INT_MAX) return InvalidArgumentError(where + ": blobs exceed 2^31-1 bytes");
  }
  state->all.assign(total, '\0');
  RETURN_IF_ERROR(MpiCodeToStatus(
      MPI_Iallgatherv(state->send.data(), state->my_length, MPI_BYTE, state->all.data(),
                      state->lengths.data(), state->displs.data(), MPI_BYTE, MPI_COMM_WORLD,
                      &state->request),
      where + ": MPI_Iallgatherv"));
  ASSIGN_OR_RETURN(done, PollUntil(&state->request, deadline, where));
  if (!done) {
    (void)state.release();  // see State
    return DeadlineExceededError(where + ": not every rank joined the blob exchange in time");
  }
  std::vector<std::string> blobs(size);
  for (int r = 0; r < size; ++r) {
    blobs[r] = state->all.substr(state->displs[r], state->lengths[r]);
  }
  return blobs;
}

}  // namespace switchyard
