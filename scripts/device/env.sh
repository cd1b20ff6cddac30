# Sourced by pack.sh and check.sh: puts .device/lib, a folder holding libcublasLt.so.13 (and
# libcublas.so.13) and one holding libnccl.so.2 on LD_LIBRARY_PATH. Search order: $CUBLAS_LIB_DIR /
# $NCCL_LIB_DIR, the CUDA toolkit folders, the system library folders, then the pip packages
# (nvidia/cublas/lib, nvidia/nccl/lib, nvidia/cu13/lib) under python3's site-packages.
# Sets SY_CUBLAS_DIR and SY_NCCL_DIR (empty when not found). Never fails, never waits on the network.
sy_site_dirs() {
  command -v python3 > /dev/null 2>&1 || return 0
  timeout 20 python3 -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2> /dev/null
}
# sy_find_lib FILE OVERRIDE_DIR PIP_SUBDIR...: the first folder holding FILE.
sy_find_lib() {
  local file=$1 override=$2 d sp sub
  shift 2
  for d in $override /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda-13*/lib64 \
    /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu /usr/lib64; do
    if [ -e "$d/$file" ]; then echo "$d"; return 0; fi
  done
  for sp in $SY_SITE_DIRS; do
    for sub in "$@"; do
      if [ -e "$sp/$sub/$file" ]; then echo "$sp/$sub"; return 0; fi
    done
  done
  return 1
}

SY_REPO_ROOT=${SY_REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SY_SITE_DIRS=$(sy_site_dirs)
SY_CUBLAS_DIR=$(sy_find_lib libcublasLt.so.13 "${CUBLAS_LIB_DIR:-}" nvidia/cublas/lib nvidia/cu13/lib || true)
SY_NCCL_DIR=$(sy_find_lib libnccl.so.2 "${NCCL_LIB_DIR:-}" nvidia/nccl/lib nvidia/cu13/lib || true)
export LD_LIBRARY_PATH="$SY_REPO_ROOT/.device/lib${SY_CUBLAS_DIR:+:$SY_CUBLAS_DIR}${SY_NCCL_DIR:+:$SY_NCCL_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
