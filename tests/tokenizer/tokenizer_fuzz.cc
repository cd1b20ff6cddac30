// libFuzzer target for the tokenizer (built with Clang only; not run by ctest).
//
//   cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ && ninja -C build-fuzz \
//     tokenizer_fuzz && build-fuzz/tests/tokenizer_fuzz -max_total_time=60 corpus/
//
// First input byte even: the rest is text for the default model's tokenizer (byte-level BPE, no
// normalizer), which must reject invalid UTF-8 and otherwise round-trip exactly, streaming
// included. Odd: the rest is a tokenizer.json, which must load or be rejected, never crash; a
// loaded one must encode and decode a fixed multilingual text.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/random_checkpoint.h"
#include "model/tokenizer.h"

namespace {

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "tokenizer_fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

const switchyard::Tokenizer& Default() {
  static const auto* tokenizer =
      switchyard::Tokenizer::FromJson(switchyard::DefaultModelTokenizerJson(), "default")
          .value()
          .release();
  return *tokenizer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] % 2 == 0) {
    const auto& tokenizer = Default();
    auto ids = tokenizer.Encode(rest, false);
    if (!ids.ok()) return 0;  // invalid UTF-8
    auto text = tokenizer.Decode(*ids, false);
    Check(text.ok() && *text == rest, "decode(encode(text)) == text");
    switchyard::StreamingDecoder stream(tokenizer, false);
    std::string joined;
    for (int32_t id : *ids) joined += stream.Push(id).value();
    joined += stream.Flush();
    Check(joined == rest, "streamed decode == text");
    return 0;
  }
  auto tokenizer = switchyard::Tokenizer::FromJson(rest, "fuzz.json");
  if (!tokenizer.ok()) return 0;
  auto ids = (*tokenizer)->Encode("Hello 世界 🇯🇵\n\t x", true);
  if (ids.ok()) (void)(*tokenizer)->Decode(*ids, true);
  return 0;
}
