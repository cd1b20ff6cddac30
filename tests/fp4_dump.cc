// Writes the FP4 codec's encodings of the test inputs (fp4_test_inputs.h) and its decode tables to
// a binary file for fp4_ml_dtypes_check.py. Usage: fp4_dump OUT_FILE. Layout, little-endian:
//   "SYFP4DMP", uint64 n, float32 x[n], uint8 e2m1[n], uint8 e4m3[n], uint8 e8m0_floor[n],
//   uint8 e8m0_ceil[n], float32 e2m1_table[16], float32 e4m3_table[256], float32 e8m0_table[256]
#include <cstdint>
#include <cstdio>
#include <vector>

#include "kernels/fp4_format.h"
#include "tests/fp4_test_inputs.h"

int main(int argc, char** argv) {
  namespace fp4 = switchyard::fp4;
  if (argc != 2) {
    std::fprintf(stderr, "usage: fp4_dump OUT_FILE\n");
    return 2;
  }
  const std::vector<float> x = switchyard::fp4_test::AllInputs(1000000);
  const uint64_t n = x.size();
  std::vector<uint8_t> codes(4 * n);
  for (uint64_t i = 0; i < n; ++i) {
    codes[i] = fp4::F32ToE2m1(x[i]);
    codes[n + i] = fp4::F32ToE4m3(x[i]);
    codes[2 * n + i] = fp4::F32ToE8m0(x[i], fp4::E8m0Rounding::kFloor);
    codes[3 * n + i] = fp4::F32ToE8m0(x[i], fp4::E8m0Rounding::kCeil);
  }
  std::vector<float> tables;
  for (int c = 0; c < 16; ++c) tables.push_back(fp4::E2m1ToF32(static_cast<uint8_t>(c)));
  for (int c = 0; c < 256; ++c) tables.push_back(fp4::E4m3ToF32(static_cast<uint8_t>(c)));
  for (int c = 0; c < 256; ++c) tables.push_back(fp4::E8m0ToF32(static_cast<uint8_t>(c)));
  std::FILE* f = std::fopen(argv[1], "wb");
  if (f == nullptr) {
    std::perror(argv[1]);
    return 1;
  }
  bool ok = std::fwrite("SYFP4DMP", 1, 8, f) == 8 && std::fwrite(&n, 8, 1, f) == 1 &&
            std::fwrite(x.data(), 4, n, f) == n &&
            std::fwrite(codes.data(), 1, 4 * n, f) == 4 * n &&
            std::fwrite(tables.data(), 4, tables.size(), f) == tables.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    std::fprintf(stderr, "fp4_dump: writing %s failed\n", argv[1]);
    return 1;
  }
  std::printf("fp4_dump: %llu inputs written to %s\n", static_cast<unsigned long long>(n), argv[1]);
  return 0;
}
