// FP4 weights on CPU: quantized weight matrices (NVFP4 or MXFP4) and y = x·Wᵀ with int8 or
// FP32 activations.
//
// Layout of an Fp4Weight [rows = out features, cols = in features]: each row is padded with zeros
// to a whole number of blocks (padded_cols); packed [rows, padded_cols / 2] (two E2M1 codes per
// byte, even element in the low nibble, kernels/fp4_format.h), scales [rows, padded_cols / block]
// (E4M3 for NVFP4, E8M0 for MXFP4), and for NVFP4 a per-tensor FP32 global scale. A weight element
// is e2m1 · scale · global_scale (NVFP4) or e2m1 · 2^(scale-127) (MXFP4).
//
// Activations (Fp4Activations): kInt8 (the default) quantizes each token's activations per weight
// block to int8 (scale = amax/127, round to nearest even) and takes exact integer dot products per
// block (AVX2: vpshufb codes -> vpmaddubsw/vpmaddwd), one FP32 multiply-add per block with the two
// scales; its result equals the FP32 GEMM of the dequantized weights with the emulated activations
// (EmulateInt8Activations) up to summation order. kF32 keeps activations in FP32 (codes decoded in
// registers, FP32 FMA). From kPanelMinTokens (fp4_internal.h) tokens on, both modes dequantize
// weight panels to FP32 and run a register-blocked FP32 kernel on the (emulated) activations, so a
// token's result does not depend on the mode's fast path beyond summation order.
// AVX2/FMA paths are chosen at run time; a portable path remains for other CPUs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/huge_page_arena.h"
#include "common/status.h"

namespace switchyard::cpu {

enum class Fp4Format { kNvFp4, kMxFp4 };
const char* Fp4FormatName(Fp4Format format);
int Fp4BlockSize(Fp4Format format);  // 16 or 32

struct Fp4Weight {
  Fp4Format format = Fp4Format::kNvFp4;
  int64_t rows = 0, cols = 0, padded_cols = 0;
  // On transparent huge pages (common/huge_page_arena.h): decode streams every byte.
  HugePageBytes packed;       // [rows, padded_cols / 2]
  HugePageBytes scales;       // [rows, padded_cols / block]
  float global_scale = 1.0f;  // NVFP4 only
  int64_t Bytes() const { return static_cast<int64_t>(packed.size() + scales.size()); }
};

// Quantizes an FP32 matrix [rows, cols] (NVFP4: global scale = amax / (6·448), ModelOpt's weight
// recipe; MXFP4: OCP floor rule). `name` labels errors: a NaN/Inf weight is InvalidArgument naming
// the tensor, row and column.
StatusOr<Fp4Weight> QuantizeFp4(const float* w, int64_t rows, int64_t cols, Fp4Format format,
                                const std::string& name);
// Dequantized FP32 copy [rows, cols].
std::vector<float> DequantizeFp4(const Fp4Weight& w);

enum class Fp4Activations { kF32, kInt8 };
const char* Fp4ActivationsName(Fp4Activations act);  // "f32" | "int8"
// Parses "int8" | "f32"; anything else is InvalidArgument naming the text.
StatusOr<Fp4Activations> ParseFp4Activations(const std::string& text);
// The process-wide mode: SWITCHYARD_FP4_ACTIVATIONS (int8 | f32; default int8), read once on the
// first call, which logs the choice at INFO (an unknown value logs a warning and keeps int8).
// Thread-safe.
Fp4Activations DefaultFp4Activations();

// out[m, cols] = the int8-quantized activations as FP32 (q · scale per block of the format's
// block size, blocks along cols), exactly what the int8 path multiplies. out may not alias x.
void EmulateInt8Activations(const float* x, int64_t m, int64_t cols, Fp4Format format, float* out);

// y[m, rows] = x[m, cols] · dequant(w)ᵀ (x row-major, stride cols; y stride rows). Parallel over
// output rows (OpenMP team of the caller); blocking; results do not depend on the thread count.
// Safe to call concurrently on distinct outputs.
void Fp4MatMulTransB(const float* x, int64_t m, const Fp4Weight& w, float* y,
                     Fp4Activations act = DefaultFp4Activations());
// Same on the calling thread (bit-identical to the parallel form).
void Fp4MatMulTransBSerial(const float* x, int64_t m, const Fp4Weight& w, float* y,
                           Fp4Activations act = DefaultFp4Activations());
// Scalar reference: dequantize (and emulate int8 activations for kInt8), then double-precision
// dots.
void Fp4MatMulTransBReference(const float* x, int64_t m, const Fp4Weight& w, float* y,
                              Fp4Activations act);
bool Fp4MatMulUsesAvx2();

}  // namespace switchyard::cpu
