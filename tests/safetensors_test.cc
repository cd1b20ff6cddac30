// Tests for the safetensors reader (ParseSafetensors, SafetensorsFile), the writer and Checkpoint.
//
// Over 1,000 lines on purpose: one short test per hostile-header case of the format specification
// (a catalogue is easier to audit than a table-driven maze of builders).
//
// Hostile inputs are built as byte images in memory and handed to ParseSafetensors; some are also
// written to a temporary directory and opened through SafetensorsFile::Open / Checkpoint::Open.
// Every rejection is checked for the specific error text, the file path and, where it applies,
// the tensor name and a byte offset.
#include "model/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "model/safetensors_writer.h"

namespace switchyard {
namespace {

namespace fs = std::filesystem;

constexpr const char* kMemPath = "mem/model.safetensors";

// 8-byte little-endian header length N, the N header bytes, then the data buffer.
std::string ImageWithLength(uint64_t n, const std::string& header, const std::string& data = "") {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string Image(const std::string& header, const std::string& data = "") {
  return ImageWithLength(header.size(), header, data);
}

StatusOr<SafetensorsHeader> Parse(const std::string& image, const std::string& path = kMemPath) {
  return ParseSafetensors(reinterpret_cast<const uint8_t*>(image.data()), image.size(), path);
}

// One header entry: "name": {"dtype": ..., "shape": ..., "data_offsets": [begin, end]}.
std::string Entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  uint64_t begin, uint64_t end) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
         ",\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(end) + "]}";
}

std::string Object(std::initializer_list<std::string> members) {
  std::string out = "{";
  bool first = true;
  for (const auto& m : members) {
    out += (first ? "" : ",") + m;
    first = false;
  }
  return out + "}";
}

// Passes when `status` is an error of `code` whose message holds every fragment.
testing::AssertionResult IsError(const Status& status, StatusCode code,
                                 std::initializer_list<std::string> fragments) {
  if (status.ok()) return testing::AssertionFailure() << "expected an error, got OK";
  if (status.code() != code) {
    return testing::AssertionFailure() << "wrong code: " << status.ToString();
  }
  for (const auto& f : fragments) {
    if (status.message().find(f) == std::string::npos) {
      return testing::AssertionFailure() << "message lacks '" << f << "': " << status.ToString();
    }
  }
  return testing::AssertionSuccess() << status.ToString();
}

template <typename T>
testing::AssertionResult IsError(const StatusOr<T>& result, StatusCode code,
                                 std::initializer_list<std::string> fragments) {
  return IsError(result.status(), code, fragments);
}

// A hostile header must be rejected as DATA_LOSS naming the file and every fragment.
testing::AssertionResult Rejects(const std::string& image,
                                 std::initializer_list<std::string> fragments) {
  auto result = Parse(image);
  testing::AssertionResult named = IsError(result, StatusCode::kDataLoss, {kMemPath});
  if (!named) return named;
  return IsError(result, StatusCode::kDataLoss, fragments);
}

std::string Bytes(size_t n, char fill = '\x5a') { return std::string(n, fill); }

std::vector<uint8_t> FloatBytes(const std::vector<float>& values) {
  std::vector<uint8_t> out(values.size() * 4);
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// A fresh directory under the test temp dir, removed afterwards.
class TempDirTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(testing::TempDir()) / "safetensors_test_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << tmpl;
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  void WriteFile(const std::string& path, const std::string& bytes) const {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << path;
  }
  std::string ReadFile(const std::string& path) const {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string dir_;
};

// ------------------------------------------------------------------------------------------------
// DType table

TEST(DTypeTableTest, NamesBitsAndParsing) {
  const std::map<std::string, int> expected = {
      {"BOOL", 8}, {"U8", 8},   {"I8", 8},   {"F8_E4M3", 8}, {"F8_E5M2", 8}, {"F8_E8M0", 8},
      {"I16", 16}, {"U16", 16}, {"F16", 16}, {"BF16", 16},   {"I32", 32},    {"U32", 32},
      {"F32", 32}, {"I64", 64}, {"U64", 64}, {"F64", 64},    {"F4", 4}};
  for (const auto& [name, bits] : expected) {
    DType dtype;
    ASSERT_TRUE(ParseDType(name, &dtype)) << name;
    EXPECT_STREQ(DTypeName(dtype), name.c_str());
    EXPECT_EQ(DTypeBits(dtype), bits) << name;
  }
  DType dtype = DType::kF32;
  for (const char* bad : {"", "f32", "F33", "FP32", "F32 ", "float32", "MXF4"}) {
    EXPECT_FALSE(ParseDType(bad, &dtype)) << bad;
  }
}

TEST(TensorInfoTest, NumElementsAndShapeString) {
  TensorInfo scalar;
  EXPECT_EQ(scalar.NumElements(), 1);
  EXPECT_EQ(scalar.ShapeString(), "[]");
  TensorInfo t;
  t.shape = {4, 16};
  EXPECT_EQ(t.NumElements(), 64);
  EXPECT_EQ(t.ShapeString(), "[4, 16]");
  t.shape = {3, 0, 5};
  EXPECT_EQ(t.NumElements(), 0);
}

// ------------------------------------------------------------------------------------------------
// Writer -> reader round trip

class RoundTripTest : public TempDirTest {};

TEST_F(RoundTripTest, AllKindsOfTensorsAndMetadata) {
  const std::vector<float> f32 = {0.f, 1.f, -2.5f, 3.25f, 1e-3f, -7.f};
  const std::vector<float> halfs = {1.f, -2.f, 0.5f, 384.f};  // exact in BF16
  const std::vector<float> f16 = {1.f, -0.25f, 3.f, 1024.f};
  std::vector<std::string> fill_order;
  auto record = [&fill_order](std::string name, std::function<void(uint8_t*, uint64_t)> inner) {
    return [&fill_order, name, inner](uint8_t* out, uint64_t bytes) {
      fill_order.push_back(name);
      if (inner) inner(out, bytes);
    };
  };
  std::vector<TensorToWrite> tensors;
  tensors.push_back(
      {"w_f32", DType::kF32, {2, 3}, record("w_f32", FillFromFloats(f32, DType::kF32))});
  tensors.push_back(
      {"w_bf16", DType::kBF16, {4}, record("w_bf16", FillFromFloats(halfs, DType::kBF16))});
  tensors.push_back(
      {"w_f16", DType::kF16, {2, 2}, record("w_f16", FillFromFloats(f16, DType::kF16))});
  tensors.push_back({"ids", DType::kI32, {3}, record("ids", [](uint8_t* out, uint64_t bytes) {
                       ASSERT_EQ(bytes, 12u);
                       const int32_t v[3] = {-1, 7, 1 << 30};
                       std::memcpy(out, v, sizeof(v));
                     })});
  tensors.push_back(
      {"scalar", DType::kF32, {}, record("scalar", FillFromFloats({3.5f}, DType::kF32))});
  tensors.push_back({"empty", DType::kF32, {0, 4}, record("empty", nullptr)});
  tensors.push_back({"bytes", DType::kU8, {5}, record("bytes", [](uint8_t* out, uint64_t bytes) {
                       for (uint64_t i = 0; i < bytes; ++i) out[i] = static_cast<uint8_t>(0xf0 + i);
                     })});
  tensors.push_back(
      {"packed", DType::kF4, {2, 4}, record("packed", [](uint8_t* out, uint64_t bytes) {
         ASSERT_EQ(bytes, 4u);
         std::memset(out, 0x21, bytes);
       })});
  const std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                       {"note", "a \"quoted\" ü"}};
  const std::string path = Path("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, metadata).ok());
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  // The file layout: dtype width descending, then name; fill called once each in that order.
  const std::vector<std::string> file_order = {"empty",  "ids",   "scalar", "w_f32",
                                               "w_bf16", "w_f16", "bytes",  "packed"};
  EXPECT_EQ(fill_order, file_order);

  auto file_or = SafetensorsFile::Open(path);
  ASSERT_TRUE(file_or.ok()) << file_or.status().ToString();
  const SafetensorsFile& file = **file_or;
  const SafetensorsHeader& header = file.header();
  EXPECT_EQ(file.path(), path);
  EXPECT_EQ(header.metadata, metadata);
  EXPECT_EQ(header.header_size % 8, 0u);
  EXPECT_EQ(header.data_offset(), 8 + header.header_size);
  ASSERT_EQ(header.tensors.size(), file_order.size());
  uint64_t expected_begin = 0;
  for (size_t i = 0; i < file_order.size(); ++i) {
    EXPECT_EQ(header.tensors[i].name, file_order[i]);
    EXPECT_EQ(header.tensors[i].begin, expected_begin);
    expected_begin = header.tensors[i].end;
  }

  // Raw bytes: length prefix, header padded with spaces, data right after.
  const std::string raw = ReadFile(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  EXPECT_EQ(n, header.header_size);
  EXPECT_EQ(raw[8], '{');
  std::string text = raw.substr(8, n);
  EXPECT_EQ(text.substr(0, text.find_last_not_of(' ') + 1).back(), '}');
  EXPECT_EQ(raw.size(), 8 + n + expected_begin);

  auto check = [&](const std::string& name, DType dtype, std::vector<int64_t> shape,
                   uint64_t bytes) -> const uint8_t* {
    const TensorInfo* info = file.Find(name);
    EXPECT_NE(info, nullptr) << name;
    if (info == nullptr) return nullptr;
    EXPECT_EQ(info->name, name);
    EXPECT_EQ(info->dtype, dtype) << name;
    EXPECT_EQ(info->shape, shape) << name;
    EXPECT_EQ(info->end - info->begin, bytes) << name;
    EXPECT_EQ(file.FileOffset(*info), header.data_offset() + info->begin);
    // Data() points at the same bytes as the file image.
    EXPECT_EQ(std::memcmp(file.Data(*info), raw.data() + file.FileOffset(*info), bytes), 0);
    return file.Data(*info);
  };

  const uint8_t* p = check("w_f32", DType::kF32, {2, 3}, 24);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::vector<uint8_t>(p, p + 24), FloatBytes(f32));

  p = check("w_bf16", DType::kBF16, {4}, 8);
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < halfs.size(); ++i) {
    uint16_t v;
    std::memcpy(&v, p + 2 * i, 2);
    EXPECT_EQ(v, F32ToBf16(halfs[i]));
    EXPECT_EQ(Bf16ToF32(v), halfs[i]);
  }
  p = check("w_f16", DType::kF16, {2, 2}, 8);
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < f16.size(); ++i) {
    uint16_t v;
    std::memcpy(&v, p + 2 * i, 2);
    EXPECT_EQ(F16ToF32(v), f16[i]);
  }
  p = check("ids", DType::kI32, {3}, 12);
  ASSERT_NE(p, nullptr);
  int32_t ids[3];
  std::memcpy(ids, p, 12);
  EXPECT_EQ(ids[0], -1);
  EXPECT_EQ(ids[1], 7);
  EXPECT_EQ(ids[2], 1 << 30);

  p = check("scalar", DType::kF32, {}, 4);
  ASSERT_NE(p, nullptr);
  float scalar;
  std::memcpy(&scalar, p, 4);
  EXPECT_EQ(scalar, 3.5f);
  EXPECT_EQ(file.Find("scalar")->NumElements(), 1);

  check("empty", DType::kF32, {0, 4}, 0);
  EXPECT_EQ(file.Find("empty")->NumElements(), 0);

  p = check("bytes", DType::kU8, {5}, 5);
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(p[i], 0xf0 + i);

  p = check("packed", DType::kF4, {2, 4}, 4);
  ASSERT_NE(p, nullptr);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(p[i], 0x21);

  EXPECT_EQ(file.Find("missing"), nullptr);
  EXPECT_EQ(file.Find("__metadata__"), nullptr);

  // The same image parses identically from memory.
  auto again = Parse(raw, path);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->tensors.size(), header.tensors.size());
  EXPECT_EQ(again->metadata, metadata);
}

TEST_F(RoundTripTest, HeaderPaddingForEveryLength) {
  // Names of every length mod 8 make the unpadded header every length mod 8.
  for (int extra = 0; extra < 8; ++extra) {
    std::vector<TensorToWrite> tensors;
    tensors.push_back({"t" + std::string(extra, 'x'), DType::kU8, {3}, nullptr});
    const std::string path = Path("pad" + std::to_string(extra) + ".safetensors");
    ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
    auto file = SafetensorsFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    EXPECT_EQ((*file)->header().header_size % 8, 0u);
    EXPECT_TRUE((*file)->header().metadata.empty());
    const TensorInfo* info = (*file)->Find("t" + std::string(extra, 'x'));
    ASSERT_NE(info, nullptr);
    // An absent fill leaves the tensor zeroed.
    const uint8_t* p = (*file)->Data(*info);
    EXPECT_EQ(p[0] | p[1] | p[2], 0);
  }
}

TEST_F(RoundTripTest, NoTensorsAtAll) {
  const std::string path = Path("empty.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {}, {{"format", "pt"}}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_TRUE((*file)->header().tensors.empty());
  EXPECT_EQ((*file)->header().metadata.at("format"), "pt");
}

TEST_F(RoundTripTest, WriterRejectsBadInput) {
  const std::string path = Path("bad.safetensors");
  auto write = [&](std::vector<TensorToWrite> tensors,
                   const std::map<std::string, std::string>& metadata = {}) {
    return WriteSafetensors(path, std::move(tensors), metadata);
  };
  EXPECT_TRUE(IsError(write({{"a", DType::kF32, {1}, nullptr}, {"a", DType::kU8, {2}, nullptr}}),
                      StatusCode::kInvalidArgument, {path, "duplicate tensor 'a'"}));
  EXPECT_TRUE(IsError(write({{"a", DType::kF32, {2, -1}, nullptr}}), StatusCode::kInvalidArgument,
                      {path, "'a'", "negative"}));
  EXPECT_TRUE(IsError(write({{"a", DType::kF4, {3}, nullptr}}), StatusCode::kInvalidArgument,
                      {path, "'a'", "whole number of bytes"}));
  EXPECT_TRUE(IsError(write({{"a", DType::kF32, {int64_t{1} << 40, int64_t{1} << 40}, nullptr}}),
                      StatusCode::kInvalidArgument, {path, "'a'", "overflows"}));
  EXPECT_TRUE(IsError(write({{"__metadata__", DType::kF32, {1}, nullptr}}, {{"k", "v"}}),
                      StatusCode::kInvalidArgument, {path, "__metadata__"}));
  EXPECT_TRUE(IsError(write({{"bad\xff", DType::kF32, {1}, nullptr}}), StatusCode::kInvalidArgument,
                      {path, "UTF-8"}));
  EXPECT_TRUE(IsError(write({{"a", DType::kF32, {1}, nullptr}}, {{"k", "\xc0\x80"}}),
                      StatusCode::kInvalidArgument, {path, "UTF-8"}));
  // Nothing was written, not even the temporary file.
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  // A file in a directory that does not exist.
  EXPECT_TRUE(IsError(WriteSafetensors(Path("no/such/dir/x.safetensors"), {}),
                      StatusCode::kInternal, {"no/such/dir/x.safetensors"}));
}

TEST_F(RoundTripTest, OverwritesAtomically) {
  const std::string path = Path("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"a", DType::kF32, {100}, nullptr}}).ok());
  ASSERT_TRUE(WriteSafetensors(path, {{"b", DType::kU8, {1}, nullptr}}).ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->Find("a"), nullptr);
  EXPECT_NE((*file)->Find("b"), nullptr);
}

// ------------------------------------------------------------------------------------------------
// Hostile headers, parsed from memory

TEST(ParseTest, AcceptsMinimalAndPaddedHeaders) {
  auto empty = Parse(Image("{}"));
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->header_size, 2u);
  EXPECT_TRUE(empty->tensors.empty());
  // Trailing spaces (the writer's padding) and other JSON whitespace are fine.
  EXPECT_TRUE(Parse(Image("{}      ")).ok());
  EXPECT_TRUE(Parse(Image("{ \n\t\r}")).ok());
  auto one = Parse(Image(Object({Entry("a", "F32", "[2]", 0, 8)}) + "   ", Bytes(8)));
  ASSERT_TRUE(one.ok()) << one.status().ToString();
  ASSERT_EQ(one->tensors.size(), 1u);
  EXPECT_EQ(one->tensors[0].name, "a");
  EXPECT_EQ(one->tensors[0].shape, std::vector<int64_t>{2});
  // Unicode tensor names (valid UTF-8, raw and escaped).
  auto uni = Parse(Image(Object({Entry("gewicht.\xc3\xbc\xe2\x82\xac", "U8", "[1]", 0, 1),
                                 Entry("esc\\u00e9", "U8", "[1]", 1, 2)}),
                         Bytes(2)));
  ASSERT_TRUE(uni.ok()) << uni.status().ToString();
  EXPECT_EQ(uni->tensors[0].name, "gewicht.\xc3\xbc\xe2\x82\xac");
  EXPECT_EQ(uni->tensors[1].name, "esc\xc3\xa9");
}

TEST(ParseTest, TensorsSortedByOffsetWhateverTheHeaderOrder) {
  auto result = Parse(Image(Object({Entry("a", "U8", "[4]", 8, 12), Entry("b", "U8", "[8]", 0, 8),
                                    Entry("c", "U8", "[0]", 12, 12)}),
                            Bytes(12)));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ(result->tensors.size(), 3u);
  EXPECT_EQ(result->tensors[0].name, "b");
  EXPECT_EQ(result->tensors[1].name, "a");
  EXPECT_EQ(result->tensors[2].name, "c");
}

TEST(ParseTest, EmptyTensorsAndScalars) {
  // Several empty tensors may share an offset; a 0-rank tensor holds one element.
  auto result = Parse(
      Image(Object({Entry("e1", "F32", "[0]", 0, 0), Entry("e2", "BF16", "[3, 0, 2]", 0, 0),
                    Entry("s", "F64", "[]", 0, 8), Entry("e3", "F4", "[0]", 8, 8),
                    Entry("big_but_empty", "F32", "[0, 1099511627776, 1099511627776]", 8, 8)}),
            Bytes(8)));
  ASSERT_TRUE(result.ok()) << result.status().ToString();
  ASSERT_EQ(result->tensors.size(), 5u);
  for (const auto& t : result->tensors) {
    EXPECT_EQ(t.NumElements(), t.name == "s" ? 1 : 0) << t.name;
  }
}

TEST(ParseTest, SubByteDTypes) {
  EXPECT_TRUE(Parse(Image(Object({Entry("a", "F4", "[2, 2]", 0, 2)}), Bytes(2))).ok());
  EXPECT_TRUE(Parse(Image(Object({Entry("a", "F4", "[1, 6]", 0, 3)}), Bytes(3))).ok());
  EXPECT_TRUE(Rejects(Image(Object({Entry("w4", "F4", "[3]", 0, 2)}), Bytes(2)),
                      {"'w4'", "not a whole number of bytes", "F4", "[3]"}));
  EXPECT_TRUE(Rejects(Image(Object({Entry("w4", "F4", "[3, 5]", 0, 8)}), Bytes(8)),
                      {"'w4'", "not a whole number of bytes"}));
  EXPECT_TRUE(Rejects(Image(Object({Entry("w4", "F4", "[]", 0, 1)}), Bytes(1)),
                      {"'w4'", "not a whole number of bytes"}));
}

TEST(ParseTest, FileTooSmallForLength) {
  for (size_t size = 0; size < 8; ++size) {
    std::string image(size, '\0');
    EXPECT_TRUE(Rejects(image, {std::to_string(size) + " bytes", "too small"})) << size;
  }
  // A null pointer with size 0 is fine too.
  EXPECT_TRUE(IsError(ParseSafetensors(nullptr, 0, kMemPath), StatusCode::kDataLoss,
                      {kMemPath, "too small"}));
}

TEST(ParseTest, HeaderLengthTooLarge) {
  EXPECT_TRUE(Rejects(ImageWithLength(uint64_t{1} << 63, "{}"),
                      {"header length 9223372036854775808", "100000000-byte limit"}));
  EXPECT_TRUE(Rejects(ImageWithLength(~uint64_t{0}, "{}"), {"100000000-byte limit"}));
  EXPECT_TRUE(Rejects(ImageWithLength(100'000'001, "{}"),
                      {"header length 100000001", "100000000-byte limit"}));
  // Exactly the limit is not refused for its size, only because the file is shorter.
  EXPECT_TRUE(Rejects(ImageWithLength(100'000'000, "{}"), {"runs past the end", "10-byte file"}));
}

TEST(ParseTest, HeaderLengthPastEndOfFile) {
  EXPECT_TRUE(
      Rejects(ImageWithLength(3, "{}"), {"header length 3", "runs past the end", "10-byte file"}));
  EXPECT_TRUE(Rejects(ImageWithLength(1000, Object({Entry("a", "U8", "[1]", 0, 1)}), Bytes(1)),
                      {"header length 1000", "runs past the end"}));
}

TEST(ParseTest, HeaderMustStartWithBrace) {
  for (const std::string& header :
       std::vector<std::string>{"", "{", "[]", " {}", "\n{}", "\"{}\"", "null", "12",
                                std::string("\0{}", 3), "\xef\xbb\xbf{}"}) {
    EXPECT_TRUE(Rejects(Image(header), {"byte 8", "starting with '{'"})) << header;
  }
}

TEST(ParseTest, InvalidJson) {
  for (const std::string& header : std::vector<std::string>{
           "{\"a\":}", "{,}", "{\"a\" 1}", "{'a':{}}", "{\"a\":{\"dtype\":\"F32\",}}", "{}}",
           "{} {}", "{}x", std::string("{}\0\0\0\0\0\0", 8), "{\"a\":01}", "{\"a\":nan}",
           "{\"a\":[1,2,]}", "{\"a\":1e999}", "{\"a\":-1e400}", "{\"a\":[1E+99999]}", "{/*c*/}",
           "{\"a\":\"\\x41\"}", "{\"a\":\"tab\there\"}"}) {
    EXPECT_TRUE(Rejects(Image(header), {"invalid JSON", "bytes 8.."})) << header;
  }
}

TEST(ParseTest, TruncatedJson) {
  const std::string full = Object({Entry("a", "F32", "[2]", 0, 8)});
  for (size_t len = 2; len < full.size(); ++len) {
    // The header length still matches, but the JSON text stops early.
    EXPECT_TRUE(Rejects(Image(full.substr(0, len), Bytes(8)), {"invalid JSON"})) << len;
  }
}

TEST(ParseTest, NonUtf8Bytes) {
  const std::string data = Bytes(4);
  for (const std::string& bad :
       std::vector<std::string>{"\xff", "\xfe\xff", "a\x80", "\xc3", "\xc0\x80", "\xed\xa0\x80",
                                "\xf4\x90\x80\x80", "\xe2\x82"}) {
    EXPECT_TRUE(
        Rejects(Image(Object({Entry(bad, "F32", "[1]", 0, 4)}), data), {"invalid JSON", "UTF-8"}))
        << "name";
    EXPECT_TRUE(Rejects(
        Image(Object({Entry("a", "F32", "[1]", 0, 4), "\"__metadata__\":{\"k\":\"" + bad + "\"}"}),
              data),
        {"invalid JSON", "UTF-8"}))
        << "metadata";
  }
  // Lone surrogates written as escapes are not valid either.
  EXPECT_TRUE(
      Rejects(Image(Object({Entry("\\ud800", "F32", "[1]", 0, 4)}), data), {"invalid JSON"}));
}

TEST(ParseTest, DuplicateTensorNames) {
  EXPECT_TRUE(Rejects(
      Image(Object({Entry("w", "U8", "[4]", 0, 4), Entry("w", "U8", "[4]", 4, 8)}), Bytes(8)),
      {"duplicate", "'w'"}));
  // Even when both entries are identical (nlohmann would keep only one).
  EXPECT_TRUE(Rejects(
      Image(Object({Entry("w", "U8", "[4]", 0, 4), Entry("w", "U8", "[4]", 0, 4)}), Bytes(4)),
      {"duplicate", "'w'"}));
  // Escaped and raw spellings of the same name are the same key.
  EXPECT_TRUE(Rejects(
      Image(Object({Entry("w", "U8", "[4]", 0, 4), Entry("\\u0077", "U8", "[4]", 4, 8)}), Bytes(8)),
      {"duplicate", "'w'"}));
  EXPECT_TRUE(
      Rejects(Image("{\"__metadata__\":{},\"__metadata__\":{}}"), {"duplicate", "'__metadata__'"}));
}

TEST(ParseTest, DuplicateKeysInsideAnEntry) {
  EXPECT_TRUE(Rejects(
      Image("{\"w\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
            Bytes(4)),
      {"duplicate key 'dtype'", "'w'"}));
  EXPECT_TRUE(Rejects(
      Image("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4],\"shape\":[2,2]}}",
            Bytes(4)),
      {"duplicate key 'shape'", "'w'"}));
  EXPECT_TRUE(Rejects(Image("{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}}"),
                      {"duplicate key 'k'", "__metadata__"}));
}

TEST(ParseTest, BadDType) {
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "F33", "[1]", 0, 4)}), Bytes(4)),
                      {"tensor 'w'", "unknown dtype 'F33'"}));
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "f32", "[1]", 0, 4)}), Bytes(4)),
                      {"tensor 'w'", "unknown dtype 'f32'"}));
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "", "[1]", 0, 4)}), Bytes(4)),
                      {"tensor 'w'", "unknown dtype ''"}));
  EXPECT_TRUE(
      Rejects(Image("{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", Bytes(4)),
              {"tensor 'w'", "'dtype'"}));
  EXPECT_TRUE(Rejects(Image("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", Bytes(4)),
                      {"tensor 'w'", "'dtype'"}));
}

TEST(ParseTest, BadShapeValues) {
  for (const std::string& shape : std::vector<std::string>{
           "[-1]", "[2, -3]", "[1.0]", "[1.5]", "[2e0]", "[1e2]", "[\"2\"]", "[true]", "[null]",
           "[[2]]", "[{}]", "[18446744073709551616]", "[-0]"}) {
    EXPECT_TRUE(Rejects(Image(Object({Entry("w", "U8", shape, 0, 2)}), Bytes(2)),
                        {"tensor 'w'", "non-negative integers"}))
        << shape;
  }
  for (const std::string& shape : std::vector<std::string>{"4", "\"[4]\"", "{}", "null"}) {
    EXPECT_TRUE(Rejects(Image(Object({Entry("w", "U8", shape, 0, 4)}), Bytes(4)),
                        {"tensor 'w'", "'shape'"}))
        << shape;
  }
  EXPECT_TRUE(Rejects(Image("{\"w\":{\"dtype\":\"U8\",\"data_offsets\":[0,4]}}", Bytes(4)),
                      {"tensor 'w'", "'shape'"}));
  // Too large for an int64 dimension.
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "U8", "[9223372036854775808]", 0, 0)})),
                      {"tensor 'w'", "too large"}));
}

TEST(ParseTest, DeeplyNestedJsonDoesNotCrash) {
  // Refused before parsing (a message built from such a value once recursed off the stack).
  for (int depth : {200, 100000, 2000000}) {
    const std::string nested = std::string(depth, '[') + std::string(depth, ']');
    const std::vector<std::string> images = {
        Image(Object({Entry("w", "U8", nested, 0, 0)})),  // in a shape
        Image("{\"w\":" + nested + "}"),                  // as an entry
        Image("{\"w\":" + std::string(depth, '[')),       // unclosed
    };
    for (const auto& image : images) {
      EXPECT_TRUE(Rejects(image, {"nested deeper than 128 levels at byte "})) << depth;
    }
    std::string objects;
    for (int i = 0; i < depth; ++i) objects += "{\"a\":";
    objects += "1" + std::string(depth, '}');
    EXPECT_TRUE(
        Rejects(Image("{\"__metadata__\":" + objects + "}"), {"nested deeper than 128 levels"}))
        << depth;
  }
  // The root object is level 1, so the 128th '[' after `{"w":` (at header offset 5 + 127) is the
  // first one too deep.
  EXPECT_TRUE(Rejects(Image("{\"w\":" + std::string(128, '[')), {"at byte 140"}));
  EXPECT_TRUE(Rejects(Image("{\"w\":" + std::string(127, '[')), {"invalid JSON"}));
  // Brackets inside strings (escaped quotes included) do not count.
  const std::string brackets = "[[[[{{{{\\\"" + std::string(1000, '[');
  auto ok = Parse(Image(
      Object({Entry("a", "U8", "[1]", 0, 1), "\"__metadata__\":{\"k\":\"" + brackets + "\"}"}),
      Bytes(1)));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->metadata.at("k"), "[[[[{{{{\"" + std::string(1000, '['));
  // Nesting within the limit reaches the usual checks.
  std::string shape = std::string(100, '[') + "1" + std::string(100, ']');
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "U8", shape, 0, 1)}), Bytes(1)),
                      {"tensor 'w'", "shape dimension 0 is an array", "non-negative integers"}));
}

TEST(ParseTest, BadDataOffsets) {
  for (const std::string& offsets :
       std::vector<std::string>{"[0]", "[]", "[0,4,8]", "\"0,4\"", "4", "[-1,3]", "[0,4.0]",
                                "[0,\"4\"]", "[null,4]", "{\"0\":4}", "[[0],[4]]"}) {
    EXPECT_TRUE(
        Rejects(Image("{\"w\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":" + offsets + "}}",
                      Bytes(4)),
                {"tensor 'w'", "'data_offsets' must be [BEGIN, END]"}))
        << offsets;
  }
  EXPECT_TRUE(Rejects(Image("{\"w\":{\"dtype\":\"U8\",\"shape\":[4]}}", Bytes(4)),
                      {"tensor 'w'", "'data_offsets'"}));
}

TEST(ParseTest, EndBeforeBegin) {
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "U8", "[4]", 8, 4)}), Bytes(8)),
                      {"tensor 'w'", "[8, 4]", "end before begin"}));
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "U8", "[0]", 1, 0)}), Bytes(1)),
                      {"tensor 'w'", "end before begin"}));
}

TEST(ParseTest, ByteSizeMismatch) {
  const std::string header = Object({Entry("w", "F32", "[2, 3]", 0, 20)});
  EXPECT_TRUE(
      Rejects(Image(header, Bytes(20)), {"tensor 'w'", "hold 20 bytes", "F32 [2, 3] needs 24",
                                         "at byte " + std::to_string(8 + header.size())}));
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "BF16", "[3]", 0, 8)}), Bytes(8)),
                      {"tensor 'w'", "hold 8 bytes", "needs 6"}));
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "F32", "[]", 0, 0)})),
                      {"tensor 'w'", "hold 0 bytes", "needs 4"}));
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "F32", "[0]", 0, 4)}), Bytes(4)),
                      {"tensor 'w'", "hold 4 bytes", "needs 0"}));
}

TEST(ParseTest, ShapeOverflow) {
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "F32", "[1099511627776, 1099511627776]", 0, 0)})),
                      {"tensor 'w'", "overflows"}));
  // 2^62 x 2^62 F32 = 2^129 bits: would wrap to 0 in 128-bit arithmetic and pass as empty.
  EXPECT_TRUE(Rejects(
      Image(Object({Entry("w", "F32", "[4611686018427387904, 4611686018427387904]", 0, 0)})),
      {"tensor 'w'", "overflows"}));
  EXPECT_TRUE(Rejects(
      Image(Object({Entry("w", "U8", "[4294967296, 4294967296, 4294967296, 4294967296]", 0, 0)})),
      {"tensor 'w'", "overflows"}));
  // The element count must fit in 64 bits at every step (the reference's checked_mul), even when a
  // later dimension is 0: NumElements() is int64.
  EXPECT_TRUE(Rejects(Image(Object({Entry("w", "F32", "[1099511627776, 1099511627776, 0]", 0, 0)})),
                      {"tensor 'w'", "overflows"}));
  // A count that fits but whose byte size does not fit the file.
  EXPECT_TRUE(
      Rejects(Image(Object({Entry("w", "F64", "[1152921504606846976]", 0, 0)})), {"tensor 'w'"}));
}

TEST(ParseTest, OverlappingRanges) {
  const std::string header =
      Object({Entry("a", "U8", "[8]", 0, 8), Entry("b", "U8", "[8]", 4, 12)});
  EXPECT_TRUE(Rejects(Image(header, Bytes(12)),
                      {"tensor 'b'", "overlaps the previous tensor", "expected begin 8, got 4",
                       "at byte " + std::to_string(8 + header.size() + 4)}));
  // The same range twice.
  EXPECT_TRUE(Rejects(
      Image(Object({Entry("a", "U8", "[8]", 0, 8), Entry("b", "U8", "[8]", 0, 8)}), Bytes(8)),
      {"overlaps the previous tensor"}));
  // One tensor inside another.
  EXPECT_TRUE(Rejects(
      Image(Object({Entry("a", "U8", "[8]", 0, 8), Entry("b", "U8", "[2]", 2, 4)}), Bytes(8)),
      {"tensor 'b'", "overlaps"}));
  // An empty tensor inside another one.
  EXPECT_TRUE(Rejects(
      Image(Object({Entry("a", "U8", "[8]", 0, 8), Entry("e", "U8", "[0]", 3, 3)}), Bytes(8)),
      {"overlaps"}));
}

TEST(ParseTest, HoleBetweenTensors) {
  const std::string header =
      Object({Entry("a", "U8", "[4]", 0, 4), Entry("b", "U8", "[4]", 8, 12)});
  EXPECT_TRUE(
      Rejects(Image(header, Bytes(12)), {"tensor 'b'", "leaves a hole", "expected begin 4, got 8",
                                         "at byte " + std::to_string(8 + header.size() + 8)}));
}

TEST(ParseTest, DataNotStartingAtZero) {
  EXPECT_TRUE(Rejects(Image(Object({Entry("a", "U8", "[4]", 4, 8)}), Bytes(8)),
                      {"tensor 'a'", "leaves a hole", "expected begin 0, got 4"}));
}

TEST(ParseTest, TruncatedBuffer) {
  const std::string header =
      Object({Entry("a", "U8", "[4]", 0, 4), Entry("b", "U8", "[8]", 4, 12)});
  for (size_t data = 0; data < 12; ++data) {
    EXPECT_TRUE(Rejects(
        Image(header, Bytes(data)),
        {"tensors end at byte " + std::to_string(8 + header.size() + 12), "(truncated)", "'b'"}))
        << data;
  }
  // A huge end, far past any file.
  EXPECT_TRUE(Rejects(
      Image(Object({Entry("a", "U8", "[1152921504606846976]", 0, uint64_t{1} << 60)}), Bytes(4)),
      {"tensors end at byte", "(truncated)"}));
  // Ends near 2^64 (eight tensors of 2^61 - 1 bytes): adding the header size must not wrap
  // around and report "trailing bytes".
  const uint64_t chunk = (uint64_t{1} << 61) - 1;
  std::string entries;
  for (uint64_t k = 0; k < 8; ++k) {
    entries +=
        (k ? "," : "") + Entry("t" + std::to_string(k), "U8", "[" + std::to_string(chunk) + "]",
                               k * chunk, (k + 1) * chunk);
  }
  const std::string huge = "{" + entries + "}";
  EXPECT_TRUE(Rejects(Image(huge, Bytes(4)), {"tensors end at byte 1844674407370955" /* 2^64 + N */,
                                              "(truncated)", "'t7'"}));
}

TEST(ParseTest, TrailingBytes) {
  const std::string header = Object({Entry("a", "U8", "[4]", 0, 4)});
  EXPECT_TRUE(Rejects(
      Image(header, Bytes(5)),
      {"tensors end at byte " + std::to_string(8 + header.size() + 4),
       "file has " + std::to_string(8 + header.size() + 5) + " bytes", "(trailing bytes)"}));
  EXPECT_TRUE(Rejects(Image("{}", Bytes(1)), {"(trailing bytes)"}));
}

TEST(ParseTest, BadMetadata) {
  const std::string t = Entry("a", "U8", "[1]", 0, 1);
  for (const std::string& value :
       std::vector<std::string>{"\"pt\"", "[]", "[\"a\",\"b\"]", "1", "null", "true"}) {
    EXPECT_TRUE(Rejects(Image(Object({t, "\"__metadata__\":" + value}), Bytes(1)),
                        {"__metadata__ must be an object"}))
        << value;
  }
  for (const std::string& value :
       std::vector<std::string>{"1", "1.5", "null", "true", "[\"x\"]", "{\"y\":\"z\"}"}) {
    EXPECT_TRUE(
        Rejects(Image(Object({t, "\"__metadata__\":{\"ok\":\"s\",\"k\":" + value + "}"}), Bytes(1)),
                {"__metadata__ value of 'k' is not a string"}))
        << value;
  }
  auto ok =
      Parse(Image(Object({t, "\"__metadata__\":{\"format\":\"pt\",\"empty\":\"\"}"}), Bytes(1)));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->metadata.at("format"), "pt");
  EXPECT_EQ(ok->metadata.at("empty"), "");
  EXPECT_EQ(ok->tensors.size(), 1u);
}

TEST(ParseTest, EntryNotAnObject) {
  for (const std::string& value :
       std::vector<std::string>{"[1]", "\"F32\"", "1", "null", "true", "[]"}) {
    EXPECT_TRUE(
        Rejects(Image("{\"w\":" + value + "}"), {"tensor 'w'", "entry is not a JSON object"}))
        << value;
  }
}

TEST(ParseTest, ErrorsNameThePathGiven) {
  const std::string image = Image(Object({Entry("a", "U8", "[4]", 0, 4)}), Bytes(3));
  EXPECT_TRUE(IsError(Parse(image, "/models/x/model-00001-of-00002.safetensors"),
                      StatusCode::kDataLoss, {"'/models/x/model-00001-of-00002.safetensors'"}));
}

// Every prefix and every single-byte corruption of a valid image is handled without a crash.
TEST(ParseTest, PrefixesAndByteFlipsDoNotCrash) {
  const std::string image =
      Image(Object({Entry("a", "F32", "[2]", 0, 8), Entry("b", "F4", "[4]", 8, 10),
                    "\"__metadata__\":{\"format\":\"pt\"}"}),
            Bytes(10));
  ASSERT_TRUE(Parse(image).ok());
  for (size_t len = 0; len < image.size(); ++len) {
    auto r = Parse(image.substr(0, len));
    EXPECT_FALSE(r.ok()) << len;
  }
  for (size_t i = 0; i < image.size(); ++i) {
    for (int v : {0x00, 0x20, 0x7b, 0x7d, 0x22, 0x5b, 0x5d, 0x2c, 0x30, 0x39, 0xff, 0x80}) {
      std::string mutated = image;
      mutated[i] = static_cast<char>(v);
      auto r = Parse(mutated);
      if (!r.ok()) {
        EXPECT_NE(r.status().message().find(kMemPath), std::string::npos);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// SafetensorsFile::Open on files

class FileTest : public TempDirTest {};

TEST_F(FileTest, MissingFile) {
  const std::string path = Path("nope.safetensors");
  EXPECT_TRUE(IsError(SafetensorsFile::Open(path), StatusCode::kNotFound, {"cannot open", path}));
}

TEST_F(FileTest, EmptyAndTinyFiles) {
  for (size_t size : {0, 3, 7}) {
    const std::string path = Path("tiny" + std::to_string(size) + ".safetensors");
    WriteFile(path, std::string(size, '\x01'));
    EXPECT_TRUE(IsError(SafetensorsFile::Open(path), StatusCode::kDataLoss,
                        {path, std::to_string(size) + " bytes", "too small"}));
  }
}

TEST_F(FileTest, DirectoryIsNotAFile) { EXPECT_FALSE(SafetensorsFile::Open(dir_).ok()); }

TEST_F(FileTest, HostileFilesAreRejectedWithPath) {
  struct Case {
    std::string image;
    std::string fragment;
  };
  const std::vector<Case> cases = {
      {ImageWithLength(uint64_t{1} << 63, "{}"), "100000000-byte limit"},
      {ImageWithLength(50, "{}"), "runs past the end"},
      {Image("[]"), "starting with '{'"},
      {Image("{\"a\":"), "invalid JSON"},
      {Image(Object({Entry("a", "U8", "[4]", 0, 4), Entry("b", "U8", "[4]", 8, 12)}), Bytes(12)),
       "leaves a hole"},
      {Image(Object({Entry("a", "U8", "[4]", 0, 4)}), Bytes(2)), "(truncated)"},
      {Image(Object({Entry("a", "U8", "[4]", 0, 4)}), Bytes(6)), "(trailing bytes)"},
      {Image(Object({Entry("a", "F16", "[4]", 0, 4)}), Bytes(4)), "needs 8"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = Path("hostile" + std::to_string(i) + ".safetensors");
    WriteFile(path, cases[i].image);
    EXPECT_TRUE(IsError(SafetensorsFile::Open(path), StatusCode::kDataLoss,
                        {"'" + path + "'", cases[i].fragment}))
        << i;
  }
}

TEST_F(FileTest, ReleaseKeepsEveryTensorIntact) {
  // Sizes straddle page boundaries in every way: released pages must be re-read from the file and
  // pages shared with neighbours must not be dropped.
  const long page = sysconf(_SC_PAGESIZE);
  ASSERT_GT(page, 0);
  struct Spec {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
  };
  const std::vector<Spec> specs = {
      {"a", DType::kF32, {3, 1001}},
      {"b", DType::kU8, {page * 3 + 17}},
      {"c", DType::kBF16, {page / 2 - 3}},
      {"d", DType::kF32, {}},
      {"e", DType::kU8, {0}},
      {"f", DType::kI64, {2 * page + 5}},
      {"g", DType::kU8, {1}},
      {"h", DType::kF16, {page}},
  };
  auto byte_of = [](const std::string& name, uint64_t i) {
    return static_cast<uint8_t>((i * 131 + name[0] * 7 + (i >> 8)) & 0xff);
  };
  std::vector<TensorToWrite> tensors;
  for (const auto& s : specs) {
    tensors.push_back(
        {s.name, s.dtype, s.shape, [&byte_of, name = s.name](uint8_t* out, uint64_t n) {
           for (uint64_t i = 0; i < n; ++i) out[i] = byte_of(name, i);
         }});
  }
  const std::string path = Path("release.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors).ok());
  auto file_or = SafetensorsFile::Open(path);
  ASSERT_TRUE(file_or.ok()) << file_or.status().ToString();
  const SafetensorsFile& file = **file_or;
  auto verify = [&](const std::string& when) {
    for (const auto& s : specs) {
      const TensorInfo* info = file.Find(s.name);
      ASSERT_NE(info, nullptr);
      const uint8_t* p = file.Data(*info);
      uint64_t bytes = info->end - info->begin;
      uint64_t bad = 0;
      for (uint64_t i = 0; i < bytes; ++i) bad += p[i] != byte_of(s.name, i);
      EXPECT_EQ(bad, 0u) << s.name << " " << when;
    }
  };
  verify("before release");
  for (const auto& s : specs) {
    file.Release(*file.Find(s.name));
    verify("after releasing " + s.name);
  }
  // Releasing again (and everything at once) is harmless too.
  for (const auto& t : file.header().tensors) file.Release(t);
  verify("after releasing all twice");
}

// ------------------------------------------------------------------------------------------------
// Checkpoint

class CheckpointTest : public TempDirTest {
 protected:
  // Writes a shard holding U8 tensors; each tensor's bytes are its name's first char repeated.
  void WriteShard(const std::string& file, const std::vector<std::pair<std::string, int64_t>>& ts) {
    std::vector<TensorToWrite> tensors;
    for (const auto& [name, size] : ts) {
      char c = name.empty() ? '?' : name.back();
      tensors.push_back(
          {name, DType::kU8, {size}, [c](uint8_t* out, uint64_t n) { std::memset(out, c, n); }});
    }
    ASSERT_TRUE(WriteSafetensors(Path(file), tensors, {{"format", "pt"}}).ok());
  }
  void WriteIndex(const std::map<std::string, std::string>& weight_map) {
    ASSERT_TRUE(WriteSafetensorsIndex(Path("model.safetensors.index.json"), weight_map, 0).ok());
  }
  std::string IndexPath() const { return Path("model.safetensors.index.json"); }
  static constexpr const char* kShard1 = "model-00001-of-00002.safetensors";
  static constexpr const char* kShard2 = "model-00002-of-00002.safetensors";
};

TEST_F(CheckpointTest, SingleFile) {
  WriteShard("model.safetensors", {{"x.a", 3}, {"x.b", 5}, {"x.c", 0}});
  auto ckpt = Checkpoint::Open(dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ((*ckpt)->dir(), dir_);
  EXPECT_EQ((*ckpt)->TensorNames(), (std::vector<std::string>{"x.a", "x.b", "x.c"}));
  EXPECT_EQ((*ckpt)->TotalBytes(), 8u);
  auto e = (*ckpt)->Find("x.b");
  ASSERT_NE(e.file, nullptr);
  ASSERT_NE(e.info, nullptr);
  EXPECT_EQ(e.file->path(), Path("model.safetensors"));
  EXPECT_EQ(e.info->shape, std::vector<int64_t>{5});
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(e.file->Data(*e.info)), 5), "bbbbb");
  EXPECT_EQ((*ckpt)->Find("x.d").file, nullptr);
  EXPECT_EQ((*ckpt)->Find("x.d").info, nullptr);
}

TEST_F(CheckpointTest, SingleFileHostile) {
  WriteFile(Path("model.safetensors"), Image("{\"a\":1}"));
  EXPECT_TRUE(IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss,
                      {Path("model.safetensors"), "tensor 'a'", "not a JSON object"}));
}

TEST_F(CheckpointTest, ShardedFindsEveryTensorInItsShard) {
  WriteShard(kShard1, {{"layers.0.w", 16}, {"layers.0.v", 4}, {"embed", 32}});
  WriteShard(kShard2, {{"layers.1.w", 16}, {"layers.1.v", 4}, {"head", 8}, {"empty", 0}});
  const std::map<std::string, std::string> weight_map = {
      {"layers.0.w", kShard1}, {"layers.0.v", kShard1}, {"embed", kShard1}, {"layers.1.w", kShard2},
      {"layers.1.v", kShard2}, {"head", kShard2},       {"empty", kShard2}};
  WriteIndex(weight_map);
  // A stray model.safetensors next to the index is ignored: the index wins.
  WriteFile(Path("model.safetensors"), "garbage");
  auto ckpt = Checkpoint::Open(dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ((*ckpt)->TensorNames().size(), weight_map.size());
  EXPECT_EQ((*ckpt)->TotalBytes(), 16u + 4 + 32 + 16 + 4 + 8);
  for (const auto& [name, shard] : weight_map) {
    auto e = (*ckpt)->Find(name);
    ASSERT_NE(e.file, nullptr) << name;
    ASSERT_NE(e.info, nullptr) << name;
    EXPECT_EQ(e.file->path(), Path(shard)) << name;
    EXPECT_EQ(e.info->name, name);
    EXPECT_EQ(e.file->Find(name), e.info);
    EXPECT_EQ(e.file->header().metadata.at("format"), "pt");
    uint64_t bytes = e.info->end - e.info->begin;
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(e.file->Data(*e.info)), bytes),
              std::string(bytes, name.back()))
        << name;
  }
  EXPECT_EQ((*ckpt)->Find("layers.2.w").file, nullptr);
}

TEST_F(CheckpointTest, IndexExtraKeysAreIgnored) {
  WriteShard(kShard1, {{"a", 2}});
  WriteFile(IndexPath(),
            "{\"metadata\":{\"total_size\":2,\"total_parameters\":2},\"extra\":[1,2],"
            "\"weight_map\":{\"a\":\"" +
                std::string(kShard1) + "\"}}");
  auto ckpt = Checkpoint::Open(dir_);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ((*ckpt)->TensorNames(), std::vector<std::string>{"a"});
}

TEST_F(CheckpointTest, IndexNamesAShardThatLacksTheTensor) {
  WriteShard(kShard1, {{"a", 2}});
  WriteShard(kShard2, {{"b", 2}});
  WriteIndex({{"a", kShard1}, {"b", kShard2}, {"c", kShard2}});
  EXPECT_TRUE(IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss,
                      {IndexPath(), "tensor 'c'", kShard2, "does not contain it"}));
}

TEST_F(CheckpointTest, ShardTensorNotInIndex) {
  WriteShard(kShard1, {{"a", 2}, {"stray", 1}});
  WriteShard(kShard2, {{"b", 2}});
  WriteIndex({{"a", kShard1}, {"b", kShard2}});
  EXPECT_TRUE(IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss,
                      {Path(kShard1), "tensor 'stray'", "not listed in", IndexPath()}));
}

TEST_F(CheckpointTest, TensorInADifferentShardThanIndexed) {
  WriteShard(kShard1, {{"a", 2}});
  WriteShard(kShard2, {{"b", 2}});
  WriteIndex({{"a", kShard2}, {"b", kShard2}});
  // Shard 1 is not opened because the index never names it; shard 2 lacks 'a'.
  EXPECT_TRUE(IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss,
                      {"tensor 'a'", kShard2, "does not contain it"}));
  // Both shards named, 'b' present in both.
  WriteShard(kShard1, {{"a", 2}, {"b", 2}});
  WriteIndex({{"a", kShard1}, {"b", kShard2}});
  EXPECT_TRUE(IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss,
                      {Path(kShard1), "tensor 'b'", "maps it to '" + std::string(kShard2) + "'"}));
}

TEST_F(CheckpointTest, IndexNotJson) {
  WriteShard(kShard1, {{"a", 2}});
  for (const std::string& text :
       std::vector<std::string>{"", "{", "not json", "{\"weight_map\":{\"a\":}}", "[1,2]", "\"x\"",
                                "{\"weight_map\":{\"a\":\"x\"}} trailing",
                                "{\"weight_map\":{},\"metadata\":{\"total_size\":1e999}}"}) {
    WriteFile(IndexPath(), text);
    EXPECT_TRUE(
        IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss, {IndexPath(), "not valid JSON"}))
        << text;
  }
}

TEST_F(CheckpointTest, WeightMapMissingOrNotAnObject) {
  WriteShard(kShard1, {{"a", 2}});
  for (const std::string& text : std::vector<std::string>{
           "{}", "{\"metadata\":{}}", "{\"weight_map\":[]}", "{\"weight_map\":\"x\"}",
           "{\"weight_map\":null}", "{\"Weight_map\":{\"a\":\"model.safetensors\"}}"}) {
    WriteFile(IndexPath(), text);
    EXPECT_TRUE(IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss,
                        {IndexPath(), "missing object 'weight_map'"}))
        << text;
  }
}

TEST_F(CheckpointTest, WeightMapValueIsNotAPlainFileName) {
  WriteShard(kShard1, {{"a", 2}});
  fs::create_directory(Path("sub"));
  WriteShard("sub/x.safetensors", {{"a", 2}});
  for (const std::string& shard : std::vector<std::string>{
           "../model-00001-of-00002.safetensors", "..", ".", "", "sub/x.safetensors", "/etc/passwd",
           "./model-00001-of-00002.safetensors", "sub/", "a/../b"}) {
    WriteIndex({{"a", shard}});
    EXPECT_TRUE(IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss,
                        {IndexPath(), "weight_map entry 'a'", "not a file in the directory"}))
        << shard;
  }
  // A NUL byte would make the name the OS sees differ from the name checked.
  WriteFile(IndexPath(), "{\"weight_map\":{\"a\":\"" + std::string(kShard1) + "\\u0000x\"}}");
  EXPECT_TRUE(IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss,
                      {IndexPath(), "weight_map entry 'a'", "not a file in the directory"}));
  for (const std::string& value : std::vector<std::string>{"1", "null", "[\"x\"]", "{}"}) {
    WriteFile(IndexPath(), "{\"weight_map\":{\"a\":" + value + "}}");
    EXPECT_TRUE(IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss,
                        {IndexPath(), "weight_map entry 'a'", "not a file name"}))
        << value;
  }
}

TEST_F(CheckpointTest, IndexNamesAMissingOrHostileShard) {
  WriteShard(kShard1, {{"a", 2}});
  WriteIndex({{"a", kShard1}, {"b", kShard2}});
  EXPECT_TRUE(
      IsError(Checkpoint::Open(dir_), StatusCode::kNotFound, {Path(kShard2), "cannot open"}));
  WriteFile(Path(kShard2), Image(Object({Entry("b", "U8", "[4]", 0, 4)}), Bytes(1)));
  EXPECT_TRUE(
      IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss, {Path(kShard2), "(truncated)"}));
}

TEST_F(CheckpointTest, DuplicateNamesInWeightMap) {
  WriteShard(kShard1, {{"a", 2}});
  WriteShard(kShard2, {{"b", 2}});
  WriteFile(IndexPath(), "{\"weight_map\":{\"a\":\"" + std::string(kShard1) + "\",\"b\":\"" +
                             kShard2 + "\",\"a\":\"" + kShard2 + "\"}}");
  EXPECT_TRUE(
      IsError(Checkpoint::Open(dir_), StatusCode::kDataLoss, {IndexPath(), "duplicate", "'a'"}));
}

TEST_F(CheckpointTest, DirectoryMissing) {
  const std::string missing = Path("does-not-exist");
  EXPECT_TRUE(
      IsError(Checkpoint::Open(missing), StatusCode::kNotFound, {missing, "does not exist"}));
  // A regular file is not a checkpoint directory either.
  WriteFile(Path("file"), "x");
  EXPECT_TRUE(IsError(Checkpoint::Open(Path("file")), StatusCode::kNotFound, {Path("file")}));
}

TEST_F(CheckpointTest, DirectoryWithNeitherFile) {
  WriteShard(kShard1, {{"a", 2}});  // shards without an index are not enough
  EXPECT_TRUE(IsError(Checkpoint::Open(dir_), StatusCode::kNotFound,
                      {dir_, "neither model.safetensors nor model.safetensors.index.json"}));
}

}  // namespace
}  // namespace switchyard
