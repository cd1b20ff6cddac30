// StopMatcher: OpenAI `stop` sequences over streamed text. Text is fed as it is decoded; what is
// returned is safe to send (it cannot be the start of a stop sequence). When a stop sequence
// appears, the text before it is returned, the stop text itself is never sent (OpenAI semantics).
// Not thread-safe; one per request.
#pragma once

#include <string>
#include <vector>

namespace switchyard {

class StopMatcher {
 public:
  // Empty strings in `stops` are ignored.
  explicit StopMatcher(std::vector<std::string> stops);

  // Appends `text`; returns the text that became safe to send. Sets *stopped when a stop sequence
  // completed (the returned text then ends right before it; later calls return nothing).
  std::string Push(const std::string& text, bool* stopped);
  // At the end of generation: the held-back text (a partial stop prefix that never completed).
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string pending_;  // decoded but not yet sent
  bool stopped_ = false;
};

}  // namespace switchyard
