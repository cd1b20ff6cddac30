#!/usr/bin/env python3
"""Compares the FP4 codec (kernels/fp4_format.h) with ml_dtypes, an independent implementation.

Usage: fp4_ml_dtypes_check.py --dumper PATH/fp4_dump   (runs it into a temporary file)
       fp4_ml_dtypes_check.py --file DUMP               (an existing fp4_dump output)

ml_dtypes follows the formats' own definitions, NVIDIA's converters saturate; specs.md §1 (which
follows NVIDIA) is normative. Where the two differ by design the comparison is restricted to the
domain where both define the same result, and the other side is checked to be the documented
difference (not just skipped):
  E2M1 (float4_e2m1fn): identical for every non-NaN input (both round to nearest even and
      saturate |x| > 6 and inf to ±6). NaN: ml_dtypes gives a zero (the format has no NaN), ours
      +6 (0x7) as __nv_cvt_float_to_fp4.
  E4M3 (float8_e4m3fn): identical for non-NaN |x| <= 464 (464 is the tie that rounds to 448).
      Beyond, and ±inf: ml_dtypes gives NaN (0x7F/0xFF), ours ±448 (0x7E/0xFE, __NV_SATFINITE).
      NaN: both a NaN code (ml_dtypes keeps the sign, ours is always 0x7F).
  E8M0 (float8_e8m0fnu): ml_dtypes rounds to nearest (a tie at 1.5 * 2^k goes up); ours has the
      two modes CUDA has, floor (RZ) and ceil (RP). For 0 < x < 1.5 * 2^127 (subnormals included)
      ml_dtypes must equal ceil when mantissa bit 22 is set (x >= 1.5 * 2^k) and floor otherwise;
      in particular all three agree on powers of two. Outside: ml_dtypes maps 0, negatives,
      x >= 1.5 * 2^127 and inf to NaN (0xFF); ours ignores the sign, clamps 0 to 0x00 and
      saturates to 0xFE.
  Decode tables (16 / 256 / 256 codes): identical bits, NaN codes NaN in both.
Exits non-zero on any difference, or when ml_dtypes (or numpy) is missing.
"""
import argparse
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import ml_dtypes
except ImportError as e:  # CI installs both (scripts/install_deps.sh): missing is a failure
    print(f"FAIL: {e}; run scripts/install_deps.sh (pip install ml_dtypes)", file=sys.stderr)
    sys.exit(1)

failures = []


def check(name, ok_mask, domain_size, x, ours, theirs):
    bad = np.flatnonzero(~ok_mask)
    print(f"{name}: {domain_size} inputs compared, {bad.size} differ")
    for i in bad[:10]:
        print(f"  x={x[i]!r} bits=0x{x.view(np.uint32)[i]:08x} ours=0x{ours[i]:02x} "
              f"ml_dtypes=0x{theirs[i]:02x}")
    if bad.size:
        failures.append(name)


def load(path):
    raw = open(path, "rb").read()
    if raw[:8] != b"SYFP4DMP":
        sys.exit(f"FAIL: {path} is not an fp4_dump file")
    n = int(np.frombuffer(raw, np.uint64, 1, 8)[0])
    x = np.frombuffer(raw, np.float32, n, 16)
    codes = np.frombuffer(raw, np.uint8, 4 * n, 16 + 4 * n).reshape(4, n)
    tables = np.frombuffer(raw, np.float32, 16 + 256 + 256, 16 + 8 * n)
    return x, codes, tables[:16], tables[16:272], tables[272:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dumper")
    ap.add_argument("--file")
    args = ap.parse_args()
    if args.dumper:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "fp4_dump.bin")
            subprocess.run([args.dumper, path], check=True)
            data = load(path)
    elif args.file:
        data = load(args.file)
    else:
        sys.exit("usage: fp4_ml_dtypes_check.py --dumper EXE | --file DUMP")
    x, codes, t_e2m1, t_e4m3, t_e8m0 = data
    e2m1, e4m3, e8m0_floor, e8m0_ceil = codes
    bits = x.view(np.uint32)
    absbits = bits & 0x7FFFFFFF
    nan = absbits > 0x7F800000
    neg = (bits >> 31) == 1
    print(f"ml_dtypes {ml_dtypes.__version__}, numpy {np.__version__}, {x.size} inputs")

    with np.errstate(invalid="ignore", over="ignore"):
        ml_e2m1 = x.astype(ml_dtypes.float4_e2m1fn).view(np.uint8)
        ml_e4m3 = x.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)
        ml_e8m0 = x.astype(ml_dtypes.float8_e8m0fnu).view(np.uint8)

    # E2M1
    d = ~nan
    check("E2M1 non-NaN", ~d | (e2m1 == ml_e2m1), d.sum(), x, e2m1, ml_e2m1)
    check("E2M1 NaN: ours +6, ml_dtypes a zero", ~nan | ((e2m1 == 0x7) & ((ml_e2m1 & 0x7) == 0)),
          nan.sum(), x, e2m1, ml_e2m1)

    # E4M3
    d = ~nan & (absbits <= np.float32(464).view(np.uint32))
    check("E4M3 non-NaN |x| <= 464", ~d | (e4m3 == ml_e4m3), d.sum(), x, e4m3, ml_e4m3)
    over = ~nan & ~d
    sat = np.where(neg, 0xFE, 0x7E)
    check("E4M3 |x| > 464: ours +-448, ml_dtypes NaN",
          ~over | ((e4m3 == sat) & ((ml_e4m3 & 0x7F) == 0x7F)), over.sum(), x, e4m3, ml_e4m3)
    check("E4M3 NaN: both NaN", ~nan | ((e4m3 == 0x7F) & ((ml_e4m3 & 0x7F) == 0x7F)), nan.sum(), x,
          e4m3, ml_e4m3)

    # E8M0
    limit = np.float32(1.5 * 2.0**127).view(np.uint32)
    d = ~neg & (bits > 0) & (bits < limit)
    predicted = np.where((bits >> 22) & 1 == 1, e8m0_ceil, e8m0_floor)
    check("E8M0 0 < x < 1.5*2^127: ml_dtypes == (bit22 ? ceil : floor)",
          ~d | (predicted == ml_e8m0), d.sum(), x, predicted, ml_e8m0)
    pow2 = d & ((bits & 0x7FFFFF) == 0)
    check("E8M0 powers of two: floor == ceil == ml_dtypes",
          ~pow2 | ((e8m0_floor == ml_e8m0) & (e8m0_ceil == ml_e8m0)), pow2.sum(), x, e8m0_floor,
          ml_e8m0)
    rest = ~d & ~nan
    check("E8M0 x <= 0, x >= 1.5*2^127: ml_dtypes NaN", ~rest | (ml_e8m0 == 0xFF), rest.sum(), x,
          e8m0_floor, ml_e8m0)
    zero = absbits == 0
    check("E8M0 +-0: ours 0x00 (clamped)", ~zero | ((e8m0_floor == 0) & (e8m0_ceil == 0)),
          zero.sum(), x, e8m0_ceil, ml_e8m0)
    huge = ~nan & (absbits >= limit)
    check("E8M0 |x| >= 1.5*2^127: ours 0xFE (saturated)",
          ~huge | ((e8m0_floor == 0xFE) & (e8m0_ceil == 0xFE)), huge.sum(), x, e8m0_ceil, ml_e8m0)
    check("E8M0 NaN: 0xFF", ~nan | ((e8m0_floor == 0xFF) & (e8m0_ceil == 0xFF) & (ml_e8m0 == 0xFF)),
          nan.sum(), x, e8m0_floor, ml_e8m0)

    # Decode tables
    for name, dtype, ours in (("E2M1", ml_dtypes.float4_e2m1fn, t_e2m1),
                              ("E4M3", ml_dtypes.float8_e4m3fn, t_e4m3),
                              ("E8M0", ml_dtypes.float8_e8m0fnu, t_e8m0)):
        theirs = np.arange(ours.size, dtype=np.uint8).view(dtype).astype(np.float32)
        ok = (ours.view(np.uint32) == theirs.view(np.uint32)) | (np.isnan(ours) & np.isnan(theirs))
        check(f"{name} decode table", ok, ours.size, ours, np.arange(ours.size),
              np.arange(ours.size))

    if failures:
        print("FAIL: " + "; ".join(failures), file=sys.stderr)
        return 1
    print("fp4_ml_dtypes_check: all comparisons passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
