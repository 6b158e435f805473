#!/usr/bin/env bash
# test_cmd_info.sh: `twin info` as a user runs it: exit statuses, every line it promises, and
# the backend "auto" picks: a CUDA device when one is usable, else the CPU with exactly one
# fallback line on stderr that gives the reason.
. "$(dirname "$0")/../lib.sh"
test_init info

"$TWIN" info --help >"$tmp/out" 2>&1
check "info --help exits 0" test $? -eq 0
check "info --help shows the usage" grep -q "^usage: twin info" "$tmp/out"
"$TWIN" info bogus >/dev/null 2>"$tmp/err"
check "info with an argument exits 2" test $? -eq 2
check "the error names the argument" grep -q "twin info: unexpected argument 'bogus'" "$tmp/err"

TWIN_LOG=info "$TWIN" --threads 3 info >"$tmp/out" 2>"$tmp/err"
check "info exits 0" test $? -eq 0
for key in "twin: [0-9]+\.[0-9]+\.[0-9]+" "build: " "sanitizers: (none|[a-z,]+)$" "compiler: (gcc|clang) " \
           "cuda compiled: (yes|no) " "backend \(auto\): (cpu|cuda:0)$" "cuda devices: " \
           "cpu: .*avx2 (yes|no), fma (yes|no), avx512f (yes|no)" "threads: 3 "; do
    check "info prints '$key'" grep -Eq "^$key" "$tmp/out"
done
if grep -q "^backend (auto): cpu$" "$tmp/out"; then
    check "one fallback line on stderr" test "$(grep -c . "$tmp/err")" -eq 1
    check "the fallback line" grep -Eq "^twin: no CUDA device found \(.+\); using the CPU backend$" "$tmp/err"
    check "no devices listed" grep -q "^cuda devices: none (" "$tmp/out"
    if grep -q "^cuda compiled: no" "$tmp/out"; then
        check "the reason is the build" grep -q "(built without CUDA)" "$tmp/err"
    fi
else
    check "no fallback line when CUDA is picked" test ! -s "$tmp/err"
    check "the device is listed" grep -q "^  cuda:0: .*compute capability" "$tmp/out"
fi
exit $fail
