#!/usr/bin/env bash
# Runs HERE (the build machine): builds the GPU test binaries and bench_fp4_gpu in build-cuda and
# copies them into .device/ (bin/, lib/) with every shared library they load that the GPU machine
# may lack: everything except glibc, the CUDA driver, cuBLAS/cuBLASLt and NCCL (those are found
# there by scripts/device/env.sh; NCCL is 200 MB and linked dynamically). The CUDA runtime is linked statically. Then starts each binary here with
# the same library path (no GPU here: the tests must SKIP, the benchmark must say "no GPU").
#
#   scripts/device/pack.sh            # then run scripts/device/check.sh on the GPU machine
# Env: BUILD_DIR (default build-cuda), JOBS (default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD_DIR:-$ROOT/build-cuda}
DEST=$ROOT/.device
TESTS="gpu_test gpu_fp4_test transport_nccl_test gpu_worker_test"
BENCH="bench_fp4_gpu"
export CCACHE_BASEDIR=$ROOT

if [ ! -f "$BUILD/build.ninja" ]; then
  launcher=()
  if command -v ccache > /dev/null; then
    launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache
      -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
  fi
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSWITCHYARD_ENABLE_CUDA=ON \
    "${launcher[@]}"
fi
ninja -C "$BUILD" -j"${JOBS:-2}" $TESTS $BENCH

rm -rf "$DEST"
mkdir -p "$DEST/bin" "$DEST/lib"
for t in $TESTS; do cp "$BUILD/tests/$t" "$DEST/bin/"; done
for b in $BENCH; do cp "$BUILD/bin/$b" "$DEST/bin/"; done

# Libraries: glibc parts and the loader stay (the GPU image has a newer glibc), the driver and
# cuBLAS and NCCL come from the GPU machine; everything else travels.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libpthread\.so|libdl\.so|librt\.so|libresolv\.so|libcuda\.so|libnvidia-|libcublas\.so|libcublasLt\.so|libnccl\.so)'
for f in "$DEST"/bin/*; do
  ldd "$f" | awk '/=>/ && $3 ~ /^\// {print $1, $3}' | while read -r name path; do
    if [[ ! "$name" =~ $skip ]] && [ ! -e "$DEST/lib/$name" ]; then
      cp -L "$path" "$DEST/lib/$name"
    fi
  done
done
chmod -R a+rX "$DEST"

{
  echo "packed $(date -u +%FT%TZ) from $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo '?')" \
    "(uncommitted changes included if any); glibc here: $(ldd --version | head -1)"
  (cd "$DEST" && find bin lib -type f -printf '%s %p\n' | sort -k2)
} > "$DEST/MANIFEST"
size_kib=$(du -sk "$DEST" | cut -f1)
echo "pack.sh: .device/ holds $((size_kib / 1024)) MiB:"
cat "$DEST/MANIFEST"
if [ "$size_kib" -gt $((60 * 1024)) ]; then
  echo "pack.sh: ERROR: .device/ is over 60 MiB" >&2
  exit 1
fi

# Smoke test here, with the library path the GPU machine will use.
source "$ROOT/scripts/device/env.sh"
echo "pack.sh: smoke test (cuBLAS from ${SY_CUBLAS_DIR:-nowhere}, NCCL from ${SY_NCCL_DIR:-nowhere})"
for t in $TESTS; do
  out=$(timeout 60 "$DEST/bin/$t" 2>&1) || { echo "$out" | tail -20; echo "pack.sh: $t failed here" >&2; exit 1; }
  echo "  $t: $(echo "$out" | grep -E '^\[ *(PASSED|SKIPPED|FAILED) *\] [0-9]+' | tr '\n' ' ')"
done
set +e
out=$(timeout 60 "$DEST/bin/bench_fp4_gpu" --json 2>&1)
rc=$?
set -e
echo "  bench_fp4_gpu: rc $rc: $out"
if [ $rc -ne 0 ] && ! echo "$out" | grep -q "no GPU"; then
  echo "pack.sh: bench_fp4_gpu did not start cleanly" >&2
  exit 1
fi
echo "pack.sh: done"
