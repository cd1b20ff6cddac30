// FP4 weights on CPU: quantized weight matrices (NVFP4 or MXFP4) and y = x·Wᵀ with FP32
// activations.
//
// Layout of an Fp4Weight [rows = out features, cols = in features]: each row is padded with zeros
// to a whole number of blocks (padded_cols); packed [rows, padded_cols / 2] (two E2M1 codes per
// byte, even element in the low nibble, kernels/fp4_format.h), scales [rows, padded_cols / block]
// (E4M3 for NVFP4, E8M0 for MXFP4), and for NVFP4 a per-tensor FP32 global scale. A weight element
// is e2m1 · scale · global_scale (NVFP4) or e2m1 · 2^(scale-127) (MXFP4).
//
// The GEMM keeps activations in FP32 (no activation quantization), so its result equals the FP32
// GEMM of the dequantized weights up to summation order. AVX2 path chosen at run time: E2M1 codes
// go through one byte shuffle to small integers (2·e2m1 ∈ {0, ±1, ±2, ±3, ±4, ±6, ±8, ±12}),
// converted to FP32 and FMA'd, with the block scale (and the 1/2) applied once per block.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace switchyard::cpu {

enum class Fp4Format { kNvFp4, kMxFp4 };
const char* Fp4FormatName(Fp4Format format);
int Fp4BlockSize(Fp4Format format);  // 16 or 32

struct Fp4Weight {
  Fp4Format format = Fp4Format::kNvFp4;
  int64_t rows = 0, cols = 0, padded_cols = 0;
  std::vector<uint8_t> packed;  // [rows, padded_cols / 2]
  std::vector<uint8_t> scales;  // [rows, padded_cols / block]
  float global_scale = 1.0f;    // NVFP4 only
  int64_t Bytes() const { return static_cast<int64_t>(packed.size() + scales.size()); }
};

// Quantizes an FP32 matrix [rows, cols] (NVFP4: global scale = amax / (6·448), ModelOpt's weight
// recipe; MXFP4: OCP floor rule). `name` labels errors: a NaN/Inf weight is InvalidArgument naming
// the tensor, row and column.
StatusOr<Fp4Weight> QuantizeFp4(const float* w, int64_t rows, int64_t cols, Fp4Format format,
                                const std::string& name);
// Dequantized FP32 copy [rows, cols].
std::vector<float> DequantizeFp4(const Fp4Weight& w);

// y[m, rows] = x[m, cols] · dequant(w)ᵀ. Parallel over output rows.
void Fp4MatMulTransB(const float* x, int64_t m, const Fp4Weight& w, float* y);
// Same on the calling thread.
void Fp4MatMulTransBSerial(const float* x, int64_t m, const Fp4Weight& w, float* y);
// Scalar reference: dequantize, then double-precision dots.
void Fp4MatMulTransBReference(const float* x, int64_t m, const Fp4Weight& w, float* y);
bool Fp4MatMulUsesAvx2();

}  // namespace switchyard::cpu
