#!/usr/bin/env bash
# tools/test.sh: the test command of the README (and of .ci/run).
# Installs what is missing, builds twin with clang + AddressSanitizer + UBSan + libFuzzer in
# build-test/, fetches the models for the integration tests into the workspace (skipped when
# already there), and runs every ctest label but gpu (gpu tests skip themselves anyway).
#   TWIN_HOME      workspace holding models/ (default: ./twin-data in the checkout)
#   TWIN_TEST_JOBS parallel ctest jobs (default 2)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

tools/setup

export TWIN_HOME="${TWIN_HOME:-$root/twin-data}"
build="$root/build-test"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DTWIN_SANITIZE=address,undefined -DTWIN_FUZZ=ON -DTWIN_WERROR=ON \
  -DTWIN_MODELS_DIR="$TWIN_HOME/models" >/dev/null
cmake --build "$build" -j"$(nproc)"

# Models for the integration tests (a no-op when present). ASan is not needed for the fetch.
ASAN_OPTIONS=detect_leaks=0 "$build/twin" --workspace "$TWIN_HOME" model fetch all

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
# ctest runs TWIN_TEST_JOBS tests at once, each with an OpenMP team as wide as the machine:
# libgomp's default spin-waiting at every barrier then burns the cores the other test needs
# (measured here: one test's CPU time 31 s -> 7 s with passive waiting on a busy machine).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
cd "$build"
ctest -LE gpu --output-on-failure -j"${TWIN_TEST_JOBS:-2}"
