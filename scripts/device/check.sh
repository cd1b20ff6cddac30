#!/usr/bin/env bash
# Runs THERE (the GPU machine), from the repo root, on the binaries scripts/device/pack.sh left in
# .device/: lists the GPUs, sets the library path (scripts/device/env.sh), runs each GPU test
# binary (gtest JSON into $OUT; transport_nccl_test with NCCL_DEBUG=VERSION, the libnccl it loads
# named in the summary) and bench_fp4_gpu --json (into $OUT), prints a short summary.
# Every step has a timeout; the whole script stays under 4 minutes.
#
#   OUT=/path/to/out scripts/device/check.sh [--rebuild] [--quick]
# --rebuild: if the carried binaries do not start, build bench_fp4_gpu there with nvcc for the
#            GPU's own architecture (the tests need GoogleTest, absent there: they cannot be
#            rebuilt; the summary says so).
# --quick:   bench with 32 experts only.
# Exit status: 0 when every test passed or skipped and the benchmark ran; 1 otherwise.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/device-out}
REBUILD=0
QUICK=()
for a in "$@"; do
  case "$a" in
    --rebuild) REBUILD=1 ;;
    --quick) QUICK=(--quick) ;;
    *) echo "usage: OUT=dir $0 [--rebuild] [--quick]" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"
BUDGET=${CHECK_BUDGET_S:-230}  # seconds for the whole script
DEADLINE=$(($(date +%s) + BUDGET))
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
status=0
log() { echo "check.sh: $*" | tee -a "$SUMMARY"; }
# Seconds for the next step: at most $1, never past the deadline (at least 1).
budget() {
  local left=$((DEADLINE - $(date +%s)))
  [ "$left" -lt 1 ] && left=1
  echo $(($1 < left ? $1 : left))
}

log "GPUs:"
timeout "$(budget 20)" nvidia-smi -L 2>&1 | tee -a "$SUMMARY" || log "nvidia-smi failed or is absent"
timeout "$(budget 20)" nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total \
  --format=csv,noheader 2>&1 | tee "$OUT/gpu.csv" | tee -a "$SUMMARY"

SY_REPO_ROOT=$ROOT
source "$ROOT/scripts/device/env.sh"
log "cuBLAS: ${SY_CUBLAS_DIR:-NOT FOUND (set CUBLAS_LIB_DIR to the folder of libcublasLt.so.13)}"
log "NCCL: ${SY_NCCL_DIR:-NOT FOUND (set NCCL_LIB_DIR to the folder of libnccl.so.2)}"
log "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

BIN=$ROOT/.device/bin
if [ ! -d "$BIN" ]; then
  log "ERROR: $BIN is missing: run scripts/device/pack.sh on the build machine and carry .device/"
  exit 1
fi

# Do the carried binaries start? (loader errors: missing libraries, too old glibc/driver)
starts=1
nccl_ok=1
for f in "$BIN"/*; do
  missing=$(ldd "$f" 2>&1 | grep -E 'not found|version .* not found' || true)
  if [ -n "$missing" ]; then
    # A missing NCCL only stops its own test.
    if [ "$(basename "$f")" = transport_nccl_test ]; then nccl_ok=0; else starts=0; fi
    log "ERROR: $(basename "$f") cannot load: $missing"
  fi
done
if [ -x "$BIN/transport_nccl_test" ]; then
  log "libnccl loaded: $(ldd "$BIN/transport_nccl_test" | awk '/libnccl/ {print $3}' | xargs -r readlink -f)"
fi
if [ "$starts" = 1 ] && ! timeout "$(budget 20)" "$BIN/gpu_test" --gtest_list_tests > /dev/null 2>&1; then
  starts=0
  log "ERROR: gpu_test does not start: $(timeout 10 "$BIN/gpu_test" --gtest_list_tests 2>&1 | tail -3)"
fi

BENCH_BIN=$BIN/bench_fp4_gpu
if [ "$starts" = 0 ]; then
  status=1
  if [ "$REBUILD" = 1 ]; then
    cc=$(head -1 "$OUT/gpu.csv" 2> /dev/null | cut -d, -f2 | tr -d ' .')
    NVCC=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    log "rebuilding bench_fp4_gpu with $NVCC for sm_${cc}a (tests need GoogleTest: not rebuilt)"
    mkdir -p "$OUT/rebuild"
    if [ -n "$cc" ] && timeout "$(budget 150)" "$NVCC" -std=c++17 -O3 --fmad=false \
      -gencode "arch=compute_${cc}a,code=sm_${cc}a" -I"$ROOT" -o "$OUT/rebuild/bench_fp4_gpu" \
      "$ROOT/bench/bench_fp4_gpu.cu" "$ROOT"/kernels/cuda/*.cu "$ROOT/common/status.cc" \
      ${SY_CUBLAS_DIR:+-L"$SY_CUBLAS_DIR"} -lcublas -lcublasLt > "$OUT/rebuild/nvcc.log" 2>&1; then
      BENCH_BIN=$OUT/rebuild/bench_fp4_gpu
      log "rebuild OK: $BENCH_BIN"
    else
      log "rebuild FAILED: see $OUT/rebuild/nvcc.log: $(tail -3 "$OUT/rebuild/nvcc.log" 2> /dev/null)"
      BENCH_BIN=
    fi
  else
    log "the carried binaries do not start; rerun with --rebuild to build the benchmark here"
    BENCH_BIN=
  fi
else
  tests=(gpu_test gpu_fp4_test)
  # gpu_worker_test reads the HF fixtures from the source tree (which travels with the binaries).
  [ -x "$BIN/gpu_worker_test" ] && [ "$nccl_ok" = 1 ] && tests+=(gpu_worker_test)
  export SWITCHYARD_SOURCE_DIR=$ROOT
  if [ -x "$BIN/transport_nccl_test" ] && [ "$nccl_ok" = 1 ]; then
    tests+=(transport_nccl_test)
  elif [ -x "$BIN/transport_nccl_test" ]; then
    status=1
  fi
  for t in "${tests[@]}"; do
    NCCL_DEBUG=VERSION timeout "$(budget 90)" "$BIN/$t" --gtest_output="json:$OUT/$t.json" \
      > "$OUT/$t.log" 2>&1
    rc=$?
    counts=$(grep -E '^\[ *(PASSED|SKIPPED|FAILED) *\] [0-9]+ test' "$OUT/$t.log" | tr -s ' ' | tr '\n' ' ')
    [ "$rc" = 124 ] && counts="TIMED OUT $counts"
    log "$t: rc $rc: $counts"
    grep -E '^\[ +(FAILED|SKIPPED) +\] [A-Za-z_./0-9]+$' "$OUT/$t.log" | sort -u | tee -a "$SUMMARY"
    grep -m1 -E 'NCCL version' "$OUT/$t.log" | tee -a "$SUMMARY"
    [ "$rc" != 0 ] && status=1
  done
fi

if [ -n "$BENCH_BIN" ]; then
  timeout "$(budget 90)" "$BENCH_BIN" --json "${QUICK[@]}" > "$OUT/bench_fp4_gpu.jsonl" \
    2> "$OUT/bench_fp4_gpu.err"
  rc=$?
  log "bench_fp4_gpu: rc $rc, $(wc -l < "$OUT/bench_fp4_gpu.jsonl") cases$([ "$rc" = 124 ] && echo ' (TIMED OUT)')"
  [ -s "$OUT/bench_fp4_gpu.err" ] && log "bench stderr: $(tail -3 "$OUT/bench_fp4_gpu.err")"
  if command -v python3 > /dev/null; then
    python3 - "$OUT/bench_fp4_gpu.jsonl" << 'PY' | tee -a "$SUMMARY"
import json, sys
for line in open(sys.argv[1]):
    try:
        c = json.loads(line)
    except ValueError:
        continue
    what = ("%.0f GB/s weights" % c["weight_gbs"]) if c["case"] == "decode" else ("%.1f TFLOP/s" % c["tflops"])
    extra = (" (%.2f vs copy r+w)" % c["ratio_copy"]) if "ratio_copy" in c and c["case"] == "decode" else ""
    print("  %-7s [%5d x %5d] x %3d experts %3d tok  %-14s %-9s %9.3f ms  %s  ratio %.2f vs %s %.0f%s" % (
        c["case"], c["n"], c["k"], c["experts"], c["tokens_per_expert"], c["path"],
        c.get("layout", "packed"), c["ms"], what,
        c["ratio"], c["baseline"], c["baseline_value"], extra))
PY
  fi
  [ "$rc" != 0 ] && status=1
fi
log "done in $((BUDGET - DEADLINE + $(date +%s)))s, status $status; outputs in $OUT"
exit $status
