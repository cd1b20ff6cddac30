# Sourced by pack.sh and check.sh: puts .device/lib and a folder holding libcublasLt.so.13 (and
# libcublas.so.13) on LD_LIBRARY_PATH. Search order: $CUBLAS_LIB_DIR, the CUDA toolkit folders,
# the system library folders, then the pip package nvidia/cublas/lib under python3's site-packages.
# Sets SY_CUBLAS_DIR (empty when not found). Never fails, never waits on the network.
sy_find_cublas() {
  local d
  for d in ${CUBLAS_LIB_DIR:-} /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda-13*/lib64 \
    /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
    if [ -e "$d/libcublasLt.so.13" ]; then echo "$d"; return 0; fi
  done
  if command -v python3 > /dev/null 2>&1; then
    local sp
    for sp in $(timeout 20 python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2> /dev/null); do
      for d in "$sp/nvidia/cublas/lib" "$sp/nvidia/cu13/lib"; do
        if [ -e "$d/libcublasLt.so.13" ]; then echo "$d"; return 0; fi
      done
    done
  fi
  return 1
}

SY_REPO_ROOT=${SY_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SY_CUBLAS_DIR=$(sy_find_cublas || true)
export LD_LIBRARY_PATH="$SY_REPO_ROOT/.device/lib${SY_CUBLAS_DIR:+:$SY_CUBLAS_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
