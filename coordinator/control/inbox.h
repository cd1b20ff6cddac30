// ChannelInbox: one reader thread per control channel, all feeding one queue, so the coordinator
// reacts to the first message (or failure) of any worker at once instead of polling channels in
// turn.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/control/control_channel.h"

namespace switchyard {

class ChannelInbox {
 public:
  struct Event {
    int rank = -1;     // index of the channel
    Status status;     // not OK: the channel failed (its reader stopped)
    std::string text;  // the message when status is OK
  };

  // Starts a reader per channel (index = rank). The channels must outlive the inbox; closing one
  // ends its reader with a failure event.
  explicit ChannelInbox(const std::vector<std::unique_ptr<ControlChannel>>& channels);
  // Stops and joins the readers (each returns within ~200 ms: their receive deadline).
  ~ChannelInbox();

  // The oldest event, waiting until `deadline`; false when none arrived. One consumer at a time.
  bool Pop(Deadline deadline, Event* event);

 private:
  void Read(int rank, ControlChannel* channel);

  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  std::vector<std::thread> threads_;
};

}  // namespace switchyard
