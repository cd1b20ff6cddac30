#!/usr/bin/env bash
# Builds everything and runs the whole test suite (what CI runs). Installs what is missing first.
# Extra arguments go to ctest (e.g. -L unit, -R oracle).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"
ctest --test-dir build --output-on-failure --timeout 900 -j "$(nproc)" "$@"
