// Reads JSON lines from stdin and writes one JSON line per input for check_tokenizers.py:
//   {"text": T}  -> {"ids": Encode(T, true), "ids_plain": Encode(T, false),
//                    "decoded": Decode(ids, false), "decoded_skip": Decode(ids, true)}
//   {"ids": [..]} -> {"decoded": Decode(ids, false), "decoded_skip": ..., "stream": chunks joined,
//                     "stream_ok": every streamed chunk was valid UTF-8}
// Usage: tokenizer_dump TOKENIZER_JSON < in.jsonl > out.jsonl. Exit 1 on any error.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "model/tokenizer.h"
#include "model/tokenizer_text.h"

using json = nlohmann::json;
using switchyard::StreamingDecoder;
using switchyard::Tokenizer;

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s TOKENIZER_JSON < in.jsonl\n", argv[0]);
    return 1;
  }
  auto tokenizer = Tokenizer::FromFile(argv[1]);
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    const json in = json::parse(line);
    json out;
    std::vector<int32_t> ids;
    if (in.contains("text")) {
      auto encoded = (*tokenizer)->Encode(in["text"].get<std::string>(), true);
      auto plain = (*tokenizer)->Encode(in["text"].get<std::string>(), false);
      if (!encoded.ok() || !plain.ok()) {
        std::fprintf(stderr, "%s\n", encoded.status().ToString().c_str());
        return 1;
      }
      ids = *encoded;
      out["ids"] = ids;
      out["ids_plain"] = *plain;
    } else {
      ids = in["ids"].get<std::vector<int32_t>>();
    }
    auto decoded = (*tokenizer)->Decode(ids, false);
    auto decoded_skip = (*tokenizer)->Decode(ids, true);
    if (!decoded.ok() || !decoded_skip.ok()) {
      std::fprintf(stderr, "%s\n", decoded.status().ToString().c_str());
      return 1;
    }
    out["decoded"] = *decoded;
    out["decoded_skip"] = *decoded_skip;
    StreamingDecoder stream(**tokenizer, false);
    std::string joined;
    bool stream_ok = true;
    for (int32_t id : ids) {
      auto chunk = stream.Push(id);
      if (!chunk.ok()) return 1;
      stream_ok &= switchyard::tok::ValidateUtf8(*chunk, "chunk").ok();
      joined += *chunk;
    }
    joined += stream.Flush();
    out["stream"] = joined;
    out["stream_ok"] = stream_ok;
    std::cout << out.dump() << "\n";
  }
  return 0;
}
