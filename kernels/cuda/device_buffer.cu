#include <cuda_runtime.h>

#include <chrono>
#include <string>
#include <thread>
#include <utility>

#include "kernels/cuda/cuda_status.h"
#include "kernels/cuda/device_buffer.h"

namespace switchyard::cuda {

Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return OkStatus();
  std::string msg =
      std::string(what) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
  cudaGetLastError();  // clear a non-sticky error so that the next call starts clean
  if (err == cudaErrorMemoryAllocation) return ResourceExhaustedError(std::move(msg));
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ||
      err == cudaErrorInitializationError || err == cudaErrorNotSupported) {
    return UnavailableError(std::move(msg));
  }
  return InternalError(std::move(msg));
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_ != nullptr) cudaFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = std::exchange(other.ptr_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

StatusOr<DeviceBuffer> DeviceBuffer::Alloc(int64_t bytes, const char* what) {
  if (bytes < 0) {
    return InvalidArgumentError(std::string(what) + ": negative allocation size " +
                                std::to_string(bytes));
  }
  DeviceBuffer buf;
  if (bytes > 0) {
    const std::string label =
        std::string("cudaMalloc ") + std::to_string(bytes) + " bytes for " + what;
    SY_CUDA_RETURN_IF_ERROR(cudaMalloc(&buf.ptr_, static_cast<size_t>(bytes)), label.c_str());
  }
  buf.bytes_ = bytes;
  return buf;
}

StatusOr<DeviceBuffer> DeviceBuffer::FromHost(const void* host, int64_t bytes, const char* what) {
  ASSIGN_OR_RETURN(DeviceBuffer buf, Alloc(bytes, what));
  RETURN_IF_ERROR(buf.CopyFromHost(host, bytes));
  return buf;
}

namespace {
Status CheckRange(int64_t offset, int64_t bytes, int64_t size) {
  if (offset < 0 || bytes < 0 || offset > size || bytes > size - offset) {
    return OutOfRangeError("device copy of " + std::to_string(bytes) + " bytes at offset " +
                           std::to_string(offset) + " outside a buffer of " + std::to_string(size) +
                           " bytes");
  }
  return OkStatus();
}
}  // namespace

Status DeviceBuffer::CopyFromHost(const void* host, int64_t bytes, int64_t offset) {
  RETURN_IF_ERROR(CheckRange(offset, bytes, bytes_));
  if (bytes == 0) return OkStatus();
  RETURN_IF_ERROR(SynchronizeStream(nullptr, "work queued before a host-to-device copy"));
  return CudaStatus(cudaMemcpy(static_cast<char*>(ptr_) + offset, host, static_cast<size_t>(bytes),
                               cudaMemcpyHostToDevice),
                    "cudaMemcpy host to device");
}

Status DeviceBuffer::CopyToHost(void* host, int64_t bytes, int64_t offset) const {
  RETURN_IF_ERROR(CheckRange(offset, bytes, bytes_));
  if (bytes == 0) return OkStatus();
  RETURN_IF_ERROR(SynchronizeStream(nullptr, "work queued before a device-to-host copy"));
  return CudaStatus(cudaMemcpy(host, static_cast<const char*>(ptr_) + offset,
                               static_cast<size_t>(bytes), cudaMemcpyDeviceToHost),
                    "cudaMemcpy device to host");
}

Status DeviceBuffer::Fill(uint8_t value) {
  if (bytes_ == 0) return OkStatus();
  RETURN_IF_ERROR(SynchronizeStream(nullptr, "work queued before a device memset"));
  return CudaStatus(cudaMemset(ptr_, value, static_cast<size_t>(bytes_)), "cudaMemset");
}

Status SynchronizeStream(void* stream, const char* what, double timeout_s) {
  const auto s = static_cast<cudaStream_t>(stream);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  for (;;) {
    const cudaError_t err = cudaStreamQuery(s);
    if (err != cudaErrorNotReady) return CudaStatus(err, what);
    if (std::chrono::steady_clock::now() >= deadline) {
      return DeadlineExceededError(std::string(what) + ": GPU work still running after " +
                                   std::to_string(timeout_s) + " s");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(20));
  }
}

StatusOr<int> CurrentDeviceComputeCapability() {
  int dev = 0, major = 0, minor = 0;
  SY_CUDA_RETURN_IF_ERROR(cudaGetDevice(&dev), "cudaGetDevice");
  SY_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev),
                          "compute capability major");
  SY_CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev),
                          "compute capability minor");
  return major * 10 + minor;
}

}  // namespace switchyard::cuda
