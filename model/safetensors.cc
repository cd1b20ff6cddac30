#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace switchyard {
namespace {

using json = nlohmann::json;

// The reference implementation's limit; a larger header is refused before it is read.
constexpr uint64_t kMaxHeaderSize = 100'000'000;
// The deepest JSON nesting a header may have. A valid header needs 3 levels (the root object, an
// entry, its shape or data_offsets array); serde_json, which the reference reader uses, stops at
// 128. Refused before parsing, so hostile nesting cannot exhaust the stack or memory.
constexpr int kMaxJsonDepth = 128;

struct DTypeEntry {
  const char* name;
  DType dtype;
  int bits;
};
constexpr DTypeEntry kDTypes[] = {
    {"BOOL", DType::kBool, 8},      {"U8", DType::kU8, 8},          {"I8", DType::kI8, 8},
    {"F8_E4M3", DType::kF8E4M3, 8}, {"F8_E5M2", DType::kF8E5M2, 8}, {"F8_E8M0", DType::kF8E8M0, 8},
    {"I16", DType::kI16, 16},       {"U16", DType::kU16, 16},       {"F16", DType::kF16, 16},
    {"BF16", DType::kBF16, 16},     {"I32", DType::kI32, 32},       {"U32", DType::kU32, 32},
    {"F32", DType::kF32, 32},       {"I64", DType::kI64, 64},       {"U64", DType::kU64, 64},
    {"F64", DType::kF64, 64},       {"F4", DType::kF4, 4},
};

std::string Where(const std::string& path) { return "safetensors file '" + path + "'"; }

using U128 = unsigned __int128;

// Decimal text of a 128-bit value (std::to_string has no overload for it).
std::string U128ToString(U128 v) {
  std::string out;
  do {
    out.insert(out.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  } while (v != 0);
  return out;
}

// A short rendering of a JSON value for an error message: never recursive (a hostile value may be
// nested deeply) and never long.
std::string Brief(const json& value) {
  if (value.is_array()) return "an array";
  if (value.is_object()) return "an object";
  std::string text = value.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return text;
}

// Offset in `text` of the first '[' or '{' nested deeper than kMaxJsonDepth, or -1. Skips strings
// (with their escapes); other syntax errors are left to the JSON parser, which stops at the first.
int64_t FindExcessiveNesting(const uint8_t* text, uint64_t n) {
  int depth = 0;
  bool in_string = false;
  for (uint64_t i = 0; i < n; ++i) {
    uint8_t c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxJsonDepth) return static_cast<int64_t>(i);
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return -1;
}

// Rejects duplicate keys at any depth (nlohmann would silently keep the last one), remembering the
// top-level key the duplicate is under.
class DuplicateKeyGuard {
 public:
  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys_.emplace_back();
        break;
      case json::parse_event_t::object_end:
        keys_.pop_back();
        break;
      case json::parse_event_t::key: {
        const std::string& key = parsed.get_ref<const std::string&>();
        if (keys_.size() == 1) top_key_ = key;
        if (!keys_.back().insert(key).second && !found_) {
          found_ = true;
          duplicate_ = key;
          if (keys_.size() > 1) under_ = top_key_;
        }
        break;
      }
      default:
        break;
    }
    return true;
  }
  bool found() const { return found_; }
  // "duplicate key 'k'", or "duplicate key 'k' in 'top'" for one below the top level.
  std::string Describe() const {
    return "duplicate key '" + duplicate_ + "'" + (under_.empty() ? "" : " in '" + under_ + "'");
  }

 private:
  std::vector<std::set<std::string>> keys_;
  std::string top_key_;
  bool found_ = false;
  std::string duplicate_;
  std::string under_;
};

// `data_offset` is the file offset of the data buffer (8 + N), for byte offsets in messages.
Status ParseEntry(const std::string& path, const std::string& name, const json& value,
                  uint64_t data_offset, TensorInfo* info) {
  std::string where = Where(path) + ": tensor '" + name + "'";
  if (!value.is_object()) return DataLossError(where + ": entry is not a JSON object");
  auto dtype_it = value.find("dtype");
  auto shape_it = value.find("shape");
  auto offsets_it = value.find("data_offsets");
  if (dtype_it == value.end() || !dtype_it->is_string()) {
    return DataLossError(where + ": missing or non-string 'dtype'");
  }
  if (!ParseDType(dtype_it->get<std::string>(), &info->dtype)) {
    return DataLossError(where + ": unknown dtype '" + dtype_it->get<std::string>().substr(0, 40) +
                         "'");
  }
  if (shape_it == value.end() || !shape_it->is_array()) {
    return DataLossError(where + ": missing or non-array 'shape'");
  }
  for (size_t i = 0; i < shape_it->size(); ++i) {
    const json& dim = (*shape_it)[i];
    if (!dim.is_number_unsigned()) {
      return DataLossError(where + ": shape dimension " + std::to_string(i) + " is " + Brief(dim) +
                           "; shape must hold non-negative integers");
    }
    uint64_t d = dim.get<uint64_t>();
    if (d > (uint64_t{1} << 62)) {
      return DataLossError(where + ": shape dimension " + std::to_string(i) + " (" +
                           std::to_string(d) + ") too large");
    }
    info->shape.push_back(static_cast<int64_t>(d));
  }
  if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
      !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned()) {
    return DataLossError(where + ": 'data_offsets' must be [BEGIN, END] of non-negative integers");
  }
  info->name = name;
  info->begin = (*offsets_it)[0].get<uint64_t>();
  info->end = (*offsets_it)[1].get<uint64_t>();
  const std::string range = "data_offsets [" + std::to_string(info->begin) + ", " +
                            std::to_string(info->end) + "] (at byte " +
                            U128ToString(U128{data_offset} + info->begin) + ")";
  if (info->end < info->begin) return DataLossError(where + ": " + range + " end before begin");
  // Element count and bit size must fit 64 bits at every step (the reference's checked_mul), so
  // NumElements() cannot overflow even when a later dimension is 0.
  uint64_t count = 1;
  for (int64_t d : info->shape) {
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(d), &count) ||
        count > static_cast<uint64_t>(INT64_MAX)) {
      return DataLossError(where + ": shape " + info->ShapeString() + " overflows");
    }
  }
  uint64_t bits = 0;
  if (__builtin_mul_overflow(count, static_cast<uint64_t>(DTypeBits(info->dtype)), &bits)) {
    return DataLossError(where + ": shape " + info->ShapeString() + " of " +
                         DTypeName(info->dtype) + " overflows");
  }
  if (bits % 8 != 0) {
    return DataLossError(where + ": shape " + info->ShapeString() + " of " +
                         DTypeName(info->dtype) + " is not a whole number of bytes");
  }
  uint64_t bytes = bits / 8;
  if (bytes != info->end - info->begin) {
    return DataLossError(where + ": " + range + " hold " + std::to_string(info->end - info->begin) +
                         " bytes but " + DTypeName(info->dtype) + " " + info->ShapeString() +
                         " needs " + std::to_string(bytes));
  }
  return OkStatus();
}

}  // namespace

const char* DTypeName(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "?";
}

int DTypeBits(DType dtype) {
  for (const auto& e : kDTypes) {
    if (e.dtype == dtype) return e.bits;
  }
  return 0;
}

bool ParseDType(const std::string& text, DType* dtype) {
  for (const auto& e : kDTypes) {
    if (text == e.name) {
      *dtype = e.dtype;
      return true;
    }
  }
  return false;
}

int64_t TensorInfo::NumElements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorInfo::ShapeString() const {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

StatusOr<SafetensorsHeader> ParseSafetensors(const uint8_t* data, uint64_t size,
                                             const std::string& path) {
  const std::string where = Where(path);
  if (size < 8) {
    return DataLossError(where + ": " + std::to_string(size) +
                         " bytes is too small for the 8-byte header length");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | data[i];  // little-endian u64
  if (n > kMaxHeaderSize) {
    return DataLossError(where + ": header length " + std::to_string(n) + " exceeds the " +
                         std::to_string(kMaxHeaderSize) + "-byte limit");
  }
  if (n > size - 8) {
    return DataLossError(where + ": header length " + std::to_string(n) + " runs past the end of" +
                         " the " + std::to_string(size) + "-byte file");
  }
  if (n < 2 || data[8] != '{') {
    return DataLossError(where + ": header at byte 8 must be a JSON object starting with '{'");
  }
  const uint8_t* text = data + 8;
  const std::string span = "header (bytes 8.." + std::to_string(8 + n) + ")";
  // nlohmann takes a NUL byte for the end of input, which would accept "{...}\0<anything>"; JSON
  // has no raw NUL anywhere (not even inside strings), so any is an error.
  if (const void* nul = std::memchr(text, 0, n); nul != nullptr) {
    return DataLossError(where + ": " + span + ": invalid JSON (NUL byte at byte " +
                         std::to_string(8 + (static_cast<const uint8_t*>(nul) - text)) + ")");
  }
  if (int64_t deep = FindExcessiveNesting(text, n); deep >= 0) {
    return DataLossError(where + ": " + span + ": JSON nested deeper than " +
                         std::to_string(kMaxJsonDepth) + " levels at byte " +
                         std::to_string(8 + deep));
  }
  SafetensorsHeader header;
  header.header_size = n;
  DuplicateKeyGuard guard;
  json root = json::parse(text, text + n, std::ref(guard), /*allow_exceptions=*/false);
  if (root.is_discarded() || !root.is_object()) {
    // Re-parse for the message (errors only: not a hot path).
    std::string reason = "invalid JSON";
    try {
      json discard = json::parse(text, text + n);
      (void)discard;
    } catch (const json::parse_error& e) {
      // e.byte counts the characters read, the offending one included.
      reason = "invalid JSON at byte " + std::to_string(8 + (e.byte > 0 ? e.byte - 1 : 0)) + " (" +
               e.what() + ")";
    } catch (const json::exception& e) {
      // Not only parse_error: a number too large for a double is out_of_range (406).
      reason = std::string("invalid JSON (") + e.what() + ")";
    }
    return DataLossError(where + ": " + span + ": " + reason);
  }
  if (guard.found()) return DataLossError(where + ": " + guard.Describe() + " in header");
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (!it->is_object()) return DataLossError(where + ": __metadata__ must be an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return DataLossError(where + ": __metadata__ value of '" + m.key() + "' is not a string");
        }
        header.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    TensorInfo info;
    RETURN_IF_ERROR(ParseEntry(path, it.key(), *it, header.data_offset(), &info));
    header.tensors.push_back(std::move(info));
  }
  std::sort(header.tensors.begin(), header.tensors.end(),
            [](const TensorInfo& a, const TensorInfo& b) {
              if (a.begin != b.begin) return a.begin < b.begin;
              return a.end != b.end ? a.end < b.end : a.name < b.name;
            });
  uint64_t expected = 0;
  for (const auto& t : header.tensors) {
    if (t.begin != expected) {
      const char* what = t.begin < expected ? "overlaps the previous tensor" : "leaves a hole";
      return DataLossError(where + ": tensor '" + t.name + "' at byte " +
                           U128ToString(U128{8 + n} + t.begin) + " " + what + " (expected begin " +
                           std::to_string(expected) + ", got " + std::to_string(t.begin) + ")");
    }
    expected = t.end;
  }
  // Compared without adding to `expected`, which may be near 2^64.
  const uint64_t buffer = size - 8 - n;
  if (expected != buffer) {
    std::string last =
        header.tensors.empty() ? "" : " (tensor '" + header.tensors.back().name + "')";
    return DataLossError(where + ": tensors end at byte " + U128ToString(U128{8 + n} + expected) +
                         last + " but the file has " + std::to_string(size) + " bytes" +
                         (expected > buffer ? " (truncated)" : " (trailing bytes)"));
  }
  return header;
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFoundError("cannot open " + Where(path) + ": " + std::strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return InternalError("cannot stat " + Where(path) + ": " + std::strerror(errno));
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  void* map = nullptr;
  if (size > 0) {
    map = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  }
  ::close(fd);
  if (map == MAP_FAILED) {
    return InternalError("cannot mmap " + Where(path) + ": " + std::strerror(errno));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = static_cast<const uint8_t*>(map);
  file->size_ = size;
  static const uint8_t kEmpty[1] = {0};
  ASSIGN_OR_RETURN(file->header_, ParseSafetensors(map ? file->map_ : kEmpty, size, path));
  for (size_t i = 0; i < file->header_.tensors.size(); ++i) {
    file->index_[file->header_.tensors[i].name] = i;
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(const_cast<uint8_t*>(map_), size_);
}

const TensorInfo* SafetensorsFile::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

const uint8_t* SafetensorsFile::Data(const TensorInfo& info) const {
  return map_ + header_.data_offset() + info.begin;
}

void SafetensorsFile::Release(const TensorInfo& info) const {
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t first = FileOffset(info);
  uint64_t last = first + (info.end - info.begin);
  // Only whole pages inside the tensor: neighbours may still be in use.
  uint64_t a = (first + page - 1) / page * page;
  uint64_t b = last / page * page;
  if (b > a) madvise(const_cast<uint8_t*>(map_) + a, b - a, MADV_DONTNEED);
}

StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& dir) {
  std::unique_ptr<Checkpoint> ckpt(new Checkpoint());
  ckpt->dir_ = dir;
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single_path = dir + "/model.safetensors";
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return NotFoundError("checkpoint directory '" + dir + "' does not exist");
  }
  if (stat(index_path.c_str(), &st) == 0) {
    std::ifstream in(index_path, std::ios::binary);
    if (!in.is_open()) {
      return InternalError("cannot read '" + index_path + "': " + std::strerror(errno));
    }
    DuplicateKeyGuard guard;
    json index = json::parse(in, std::ref(guard), /*allow_exceptions=*/false);
    if (index.is_discarded() || !index.is_object()) {
      return DataLossError("'" + index_path + "' is not valid JSON");
    }
    // Two entries for one tensor would silently keep the last one.
    if (guard.found()) return DataLossError("'" + index_path + "': " + guard.Describe());
    auto map_it = index.find("weight_map");
    if (map_it == index.end() || !map_it->is_object()) {
      return DataLossError("'" + index_path + "': missing object 'weight_map'");
    }
    std::map<std::string, std::string> weight_map;
    std::set<std::string> shards;
    for (auto it = map_it->begin(); it != map_it->end(); ++it) {
      if (!it->is_string()) {
        return DataLossError("'" + index_path + "': weight_map entry '" + it.key() +
                             "' is not a file name");
      }
      std::string shard = it->get<std::string>();
      // A plain file name in `dir`: no path separator, no "." or "..", and no NUL (the OS would
      // see a shorter name than the one checked here).
      if (shard.empty() || shard == "." || shard == ".." ||
          shard.find_first_of(std::string("/\0", 2)) != std::string::npos) {
        return DataLossError("'" + index_path + "': weight_map entry '" + it.key() + "' names '" +
                             shard + "', which is not a file in the directory");
      }
      weight_map[it.key()] = shard;
      shards.insert(shard);
    }
    for (const auto& shard : shards) {
      auto file = SafetensorsFile::Open(dir + "/" + shard);
      if (!file.ok()) {
        return file.status().WithContext("shard '" + shard + "' named by '" + index_path + "'");
      }
      ckpt->files_.push_back(std::move(file).value());
    }
    for (const auto& file : ckpt->files_) {
      std::string shard = file->path().substr(dir.size() + 1);
      for (const auto& t : file->header().tensors) {
        auto w = weight_map.find(t.name);
        if (w == weight_map.end()) {
          return DataLossError(Where(file->path()) + ": tensor '" + t.name +
                               "' is not listed in '" + index_path + "'");
        }
        if (w->second != shard) {
          return DataLossError(Where(file->path()) + ": tensor '" + t.name + "' is in this shard" +
                               " but '" + index_path + "' maps it to '" + w->second + "'");
        }
        ckpt->entries_[t.name] = Entry{file.get(), &t};
      }
    }
    for (const auto& [name, shard] : weight_map) {
      if (ckpt->entries_.count(name) == 0) {
        return DataLossError("'" + index_path + "' maps tensor '" + name + "' to '" + shard +
                             "', which does not contain it");
      }
    }
  } else if (stat(single_path.c_str(), &st) == 0) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single_path));
    ckpt->files_.push_back(std::move(file));
    for (const auto& t : ckpt->files_.back()->header().tensors) {
      ckpt->entries_[t.name] = Entry{ckpt->files_.back().get(), &t};
    }
  } else {
    return NotFoundError("checkpoint directory '" + dir +
                         "' has neither model.safetensors nor model.safetensors.index.json");
  }
  return ckpt;
}

Checkpoint::Entry Checkpoint::Find(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? Entry{nullptr, nullptr} : it->second;
}

std::vector<std::string> Checkpoint::TensorNames() const {
  std::vector<std::string> names;
  names.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) names.push_back(name);
  return names;
}

std::vector<const SafetensorsFile*> Checkpoint::Files() const {
  std::vector<const SafetensorsFile*> out;
  for (const auto& f : files_) out.push_back(f.get());
  return out;
}

uint64_t Checkpoint::TotalBytes() const {
  uint64_t total = 0;
  for (const auto& [name, entry] : entries_) total += entry.info->end - entry.info->begin;
  return total;
}

}  // namespace switchyard
