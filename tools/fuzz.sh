#!/usr/bin/env bash
# tools/fuzz.sh: every libFuzzer target of tests/fuzz/ (or those named) for longer than the
# test suite's smoke runs, with random seeds: the search for new crashes, beside CI's fixed-seed
# runs. Builds build-test/ as tools/test.sh does (clang + ASan + UBSan + libFuzzer), runs the
# targets TWIN_FUZZ_JOBS at a time (default: the online cores), each for SECONDS (default 60),
# from its seed corpus plus build-test/fuzz-corpus/<target> (kept between runs). A crash lands
# in build-test/fuzz-artifacts/<target>/ and is named at the end; add the input to
# tests/fuzz/corpus/<target>/ once fixed, so the smoke run replays it.
#   tools/fuzz.sh [SECONDS] [fuzz_target ...]
# Exit status 0 when no target failed, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs="${1:-60}"
[ $# -gt 0 ] && shift
case "$secs" in '' | *[!0-9]*) echo "usage: tools/fuzz.sh [SECONDS] [fuzz_target ...]" >&2; exit 2 ;; esac

build="$root/build-test"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DTWIN_SANITIZE=address,undefined -DTWIN_FUZZ=ON -DTWIN_WERROR=ON >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"

# the environment the tests give the targets (tests/tests.cmake)
export TWIN_TEST_DATA="$root/tests/data" TWIN_SRC="$root"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
log="$build/fuzz-logs"
mkdir -p "$log"
run_one() {
  local t="$1"
  mkdir -p "$build/fuzz-corpus/$t" "$build/fuzz-artifacts/$t"
  if "$build/$t" -seed=0 -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="$build/fuzz-artifacts/$t/" "$build/fuzz-corpus/$t" \
      "$root/tests/fuzz/corpus/$t" >"$log/$t.log" 2>&1; then
    echo "ok   $t ($(grep -o 'Done [0-9]* runs' "$log/$t.log" | tail -1))"
  else
    echo "FAIL $t: $(ls "$build/fuzz-artifacts/$t" | tail -1) (log: $log/$t.log)"
    return 1
  fi
}
export -f run_one
export build root secs log
printf '%s\n' "${targets[@]}" |
  xargs -P"${TWIN_FUZZ_JOBS:-$(nproc)}" -I{} bash -c 'run_one {}' >"$log/summary" || true
cat "$log/summary"
! grep -q '^FAIL' "$log/summary"
