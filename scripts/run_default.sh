#!/usr/bin/env bash
# The main job on the built-in default: installs what is missing, builds, writes the default
# model (a small DeepSeek-V3-shaped checkpoint with random weights) once, and runs the distributed
# runtime on this machine: one coordinator and two worker processes under mpirun
# (deploy/mpirun.sh), one JSON line per request. Extra arguments go to deploy/mpirun.sh
# (e.g. --workers 4, --requests FILE.jsonl, --transport ucx).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target switchyard -j "$(nproc)"
if [ ! -f build/default-model/config.json ]; then
  build/bin/switchyard make-default-model --out build/default-model
fi
build/bin/switchyard info --model build/default-model
exec deploy/mpirun.sh --model build/default-model "$@"
