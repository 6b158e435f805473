#!/usr/bin/env bash
# tools/demo.sh: the main job of the README. Installs what is missing, builds twin in build/
# (with the CUDA backend when nvcc is found), fetches the small models into the workspace
# (a no-op when present) and runs `twin demo`.
#   TWIN_HOME  workspace (default: ./twin-data in the checkout)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup
export TWIN_HOME="${TWIN_HOME:-$PWD/twin-data}"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
build/twin model fetch all
exec build/twin demo "$@"
