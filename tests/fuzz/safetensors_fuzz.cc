// libFuzzer target for the safetensors header parser (built with Clang only; not run by ctest).
//
//   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ && ninja -C build-fuzz \
//     safetensors_fuzz && build-fuzz/tests/safetensors_fuzz -max_total_time=60 corpus/
//
// Any input must either be rejected with a message naming the file or yield a header whose
// invariants hold: tensors sorted, contiguous from 0, sized as dtype x shape, ending exactly at the
// end of the input. A violated invariant aborts, so the fuzzer reports it like a crash.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace {

constexpr const char* kPath = "fuzz.safetensors";

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "safetensors_fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

// Parses one image and checks the result.
void ParseAndCheck(const uint8_t* data, size_t size) {
  auto result = switchyard::ParseSafetensors(data, size, kPath);
  if (!result.ok()) {
    Check(result.status().code() == switchyard::StatusCode::kDataLoss, "error code is DATA_LOSS");
    Check(result.status().message().find(kPath) != std::string::npos, "error names the file");
    return;
  }
  const switchyard::SafetensorsHeader& header = *result;
  Check(header.header_size >= 2 && header.data_offset() <= size, "header inside the input");
  Check(data[8] == '{', "header starts with '{'");
  uint64_t expected = 0;
  volatile uint8_t sink = 0;
  for (const auto& t : header.tensors) {
    Check(t.begin == expected && t.end >= t.begin, "tensors contiguous from 0");
    expected = t.end;
    int64_t elements = t.NumElements();
    Check(elements >= 0, "element count non-negative");
    unsigned __int128 bits =
        static_cast<unsigned __int128>(elements) * switchyard::DTypeBits(t.dtype);
    Check(bits % 8 == 0 && bits / 8 == t.end - t.begin, "byte size matches dtype x shape");
    Check(t.ShapeString().front() == '[', "shape string");
    // Touch the tensor's first and last bytes: ASan reports them if they lie outside the input.
    if (t.end > t.begin) {
      sink = sink + data[header.data_offset() + t.begin] + data[header.data_offset() + t.end - 1];
    }
  }
  Check(header.data_offset() + expected == size, "tensors end at the end of the input");
  (void)sink;
}

}  // namespace

// Each input is tried twice: as a whole file image, and as [u16 data size][header JSON] from which
// a well-formed length prefix and a data buffer of that size are built, so that the fuzzer reaches
// the checks after the length checks (and valid headers) far more often.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ParseAndCheck(data, size);
  if (size >= 2) {
    const size_t buffer = data[0] | (size_t{data[1]} << 8);
    const size_t n = size - 2;
    std::vector<uint8_t> image(8 + n + buffer, 0x5a);
    for (int i = 0; i < 8; ++i) image[i] = static_cast<uint8_t>((uint64_t{n} >> (8 * i)) & 0xff);
    if (n > 0) std::memcpy(image.data() + 8, data + 2, n);
    ParseAndCheck(image.data(), image.size());
  }
  return 0;
}
