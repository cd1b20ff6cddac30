// Device memory owned by a host object, and stream helpers. Compiles without CUDA headers for its
// callers: streams are `void*` (a cudaStream_t; nullptr = the legacy default stream).
#pragma once

#include <cstdint>

#include "common/status.h"

namespace switchyard::cuda {

// One cudaMalloc'd allocation on the current device, freed by the destructor. Move-only.
// Thread-safety: as a plain object (no internal locking). The copies are synchronous: they first
// wait (up to kDefaultWaitSeconds, else DeadlineExceeded) for the work already queued on the
// default stream, then copy with cudaMemcpy.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // Allocates `bytes` (0 allowed: data() is nullptr). `what` labels errors. ResourceExhausted on
  // out-of-memory, Unavailable when CUDA cannot run (no GPU/driver).
  static StatusOr<DeviceBuffer> Alloc(int64_t bytes, const char* what);
  // Alloc + copy of `bytes` host bytes.
  static StatusOr<DeviceBuffer> FromHost(const void* host, int64_t bytes, const char* what);

  // Copies between host memory and [offset, offset + bytes) of this buffer; OutOfRange when the
  // range is not inside the buffer.
  Status CopyFromHost(const void* host, int64_t bytes, int64_t offset = 0);
  Status CopyToHost(void* host, int64_t bytes, int64_t offset = 0) const;
  // Sets every byte to `value` (synchronous).
  Status Fill(uint8_t value);

  void* data() const { return ptr_; }
  int64_t bytes() const { return bytes_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  int64_t bytes_ = 0;
};

inline constexpr double kDefaultWaitSeconds = 120.0;

// Waits until the work queued on `stream` (nullptr = default stream) is done, polling, for at most
// `timeout_s` seconds: DeadlineExceeded naming `what` when it is still running then, else the
// first CUDA error of that work (naming `what`).
Status SynchronizeStream(void* stream, const char* what, double timeout_s = kDefaultWaitSeconds);

// Compute capability of the current device as major * 10 + minor (90 Hopper, 100 Blackwell), or
// Unavailable with the CUDA reason.
StatusOr<int> CurrentDeviceComputeCapability();

}  // namespace switchyard::cuda
