// Internal to the rendezvous: the wire format shared by server (rendezvous_server.cc) and client
// (rendezvous.cc); see rendezvous.h for the layout.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace switchyard::rendezvous_wire {

inline constexpr uint32_t kMagic = 0x56525953;  // "SYRV" little-endian
inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kHelloBytes = 24;
inline constexpr size_t kReplyHeadBytes = 12;
// How long ranks that joined wait past the deadline for the server's verdict.
inline constexpr auto kVerdictGrace = std::chrono::seconds(2);

inline void PutU32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
// Little-endian unsigned integer of `bytes` bytes at p.
inline uint64_t GetLe(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
// A reply: code (u32), body length (u64), body.
inline std::string Reply(StatusCode code, std::string_view body) {
  std::string out;
  PutU32(out, static_cast<uint32_t>(code));
  PutU64(out, body.size());
  out.append(body);
  return out;
}

}  // namespace switchyard::rendezvous_wire
