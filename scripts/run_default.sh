#!/usr/bin/env bash
# The main job on the built-in default: installs what is missing, builds, writes the default
# model (a small DeepSeek-V3-shaped checkpoint with random weights) once, and generates from it.
# Extra arguments go to `switchyard generate` (e.g. --max-new-tokens 64 --temperature 0.8).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install_deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build --target switchyard -j "$(nproc)"
if [ ! -f build/default-model/config.json ]; then
  build/bin/switchyard make-default-model --out build/default-model
fi
build/bin/switchyard info --model build/default-model
exec build/bin/switchyard generate --model build/default-model \
  --prompt-ids 0,17,42,256,1024,7 --prompt-ids 0,99,3 --max-new-tokens 32 "$@"
