// safetensors reader: single files and sharded checkpoints (model.safetensors.index.json).
//
// Files are memory-mapped read-only; the header is validated as the format specification demands
// before any tensor is exposed: header length bounds, UTF-8 JSON beginning with '{', known dtypes,
// shapes and data_offsets consistent with the dtype size, ranges inside the file, no holes, no
// overlaps, no duplicate names, a string-to-string __metadata__. Every error names the file, and
// where it applies the tensor and the byte offset in the file.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace switchyard {

enum class DType {
  kBool,
  kU8,
  kI8,
  kF8E4M3,
  kF8E5M2,
  kF8E8M0,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kI64,
  kU64,
  kF64,
  kF4
};

const char* DTypeName(DType dtype);
// Bits per element (F4 = 4).
int DTypeBits(DType dtype);
// Parses the safetensors dtype string ("F32", "BF16", ...).
bool ParseDType(const std::string& text, DType* dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data buffer (after the header)
  uint64_t end = 0;    // one past the last byte
  int64_t NumElements() const;
  std::string ShapeString() const;  // "[4, 16]"
};

// The parsed and validated header of one file. `file_size` is the whole file's size in bytes.
struct SafetensorsHeader {
  uint64_t header_size = 0;         // N: the JSON header's length
  std::vector<TensorInfo> tensors;  // in header order of data_offsets (ascending)
  std::map<std::string, std::string> metadata;
  uint64_t data_offset() const { return 8 + header_size; }
};

// Validates a whole file image (`size` bytes starting at `data`). `path` names it in errors.
// Pure function over bytes: the fuzz target and hostile-input tests call it directly.
StatusOr<SafetensorsHeader> ParseSafetensors(const uint8_t* data, uint64_t size,
                                             const std::string& path);

// One memory-mapped, validated file. Not copyable; thread-safe for concurrent reads.
class SafetensorsFile {
 public:
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const SafetensorsHeader& header() const { return header_; }
  // nullptr when absent.
  const TensorInfo* Find(const std::string& name) const;
  // Raw bytes of a tensor (inside the mapping; may be unaligned). Valid while this object lives.
  const uint8_t* Data(const TensorInfo& info) const;
  // Byte offset of the tensor's first byte in the file (for error messages).
  uint64_t FileOffset(const TensorInfo& info) const { return header_.data_offset() + info.begin; }
  // Tells the kernel the tensor's pages are no longer needed (after converting it to its compute
  // format), so mapped pages do not stay resident next to the converted copy.
  void Release(const TensorInfo& info) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  const uint8_t* map_ = nullptr;
  uint64_t size_ = 0;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

// A checkpoint directory: `model.safetensors`, or shards listed by `model.safetensors.index.json`.
// A tensor found in the index must be in the shard the index names; a shard tensor absent from
// the index, or a name in two shards, is an error.
class Checkpoint {
 public:
  static StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  // nullptr file when absent.
  Entry Find(const std::string& name) const;
  std::vector<std::string> TensorNames() const;
  // Sum of all tensors' byte sizes.
  uint64_t TotalBytes() const;
  // The files, in shard order (one for a single-file checkpoint).
  std::vector<const SafetensorsFile*> Files() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, Entry> entries_;
};

}  // namespace switchyard
