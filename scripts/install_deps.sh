#!/usr/bin/env bash
# Installs every system and Python dependency that building and testing Switchyard needs.
# Idempotent: packages already present are skipped, so running it twice costs a few seconds.
# Usage: scripts/install_deps.sh            (build + test dependencies)
#        scripts/install_deps.sh --oracle   (also PyTorch + transformers, only to regenerate fixtures)
set -euo pipefail

APT_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  libgtest-dev libgmock-dev libbenchmark-dev libopenblas-dev
  libopenmpi-dev openmpi-bin libucx-dev libboost-dev
  libpcre2-dev libutf8proc-dev
  clang-format python3 python3-pip
  slurm-wlm munge
)
PIP_PACKAGES=(numpy ml_dtypes openai==2.8.1 prometheus_client)
# Pinned: transformers 4.56 writes the hub layout (one tensor per expert) and supports all three
# families; torch 2.8 is its contemporary.
# tokenizers 0.22.2 trains the tokenizer fixtures (tests/tokenizer/make_tokenizers.py) and is the
# oracle of the tokenizer_check test, which is skipped where it is not installed.
ORACLE_PIP_PACKAGES=(torch==2.8.0 transformers==4.56.2 tokenizers==0.22.2 safetensors numpy)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install_deps: system packages present"
fi

pip_install() {
  local need=()
  for spec in "$@"; do
    local name="${spec%%==*}"
    python3 -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$name" 2>/dev/null || need+=("$spec")
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "install_deps: pip install ${need[*]}"
    python3 -m pip install -q "${need[@]}" 2>/dev/null ||
      python3 -m pip install -q --break-system-packages "${need[@]}"
  fi
}
pip_install "${PIP_PACKAGES[@]}"
if [ "${1:-}" = "--oracle" ]; then
  pip_install "${ORACLE_PIP_PACKAGES[@]}"
fi
echo "install_deps: done"
