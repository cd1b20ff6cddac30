#!/usr/bin/env bash
# Runs THERE after check.sh (same library path): Nsight Compute on bench_fp4_gpu --quick for one
# launch of the grouped FP4 GEMM kernel per case given as "NAME:SKIP" (SKIP = matching launches
# to skip first; in --quick order each decode case makes 21 launches, warm-up included:
# decode8:0, decode16:42, prefill:63). Key metrics into $OUT/ncu.txt. Bounded by timeouts.
#
#   OUT=dir scripts/device/profile.sh [NAME:SKIP ...]
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/device-out}
SY_REPO_ROOT=$ROOT
source "$ROOT/scripts/device/env.sh"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2> /dev/null | head -1)
if [ -z "$NCU" ]; then
  echo "profile.sh: ncu not found" | tee -a "$OUT/ncu.txt"
  exit 0
fi
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(decode8:0 prefill:63)
for c in "${cases[@]}"; do
  name=${c%%:*}
  skip=${c##*:}
  echo "== $name (launch-skip $skip)" >> "$OUT/ncu.txt"
  timeout 60 "$NCU" --clock-control none -k regex:Fp4MmaKernel --launch-skip "$skip" -c 1 \
    --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
    --section MemoryWorkloadAnalysis \
    "$ROOT/.device/bin/bench_fp4_gpu" --quick 2>&1 |
    grep -vE '^(decode|prefill|bench_fp4_gpu on)' |
    grep -E 'Duration|Throughput|Warp Cycles|Issued|Eligible|No Eligible|Active Warps|Occupancy|Registers|Shared Memory|Stall|OPT|Block Limit|Bandwidth|Hit Rate|^ *[A-Z].*%' |
    head -60 >> "$OUT/ncu.txt"
done
cat "$OUT/ncu.txt"
