#!/usr/bin/env bash
# test_bench_hnsw.sh: `twin bench hnsw` as a user runs it: usage errors (exit 2, one line naming
# the option), a missing file (exit 1), then a short interleaved run (2 rounds, f32 and int8):
# the per-round lines, the median lines in the ARCHITECTURE.md form with a recall that the ef
# sweep must reach, and the summary. With hnswlib's anchor beside twin (plain builds with g++)
# its lines and the ratios must be there; without it, the line that says so. Then anchors that
# do not start or die mid-run: twin's figures still come, the anchor's failure is said, exit 0.
. "$(dirname "$0")/../lib.sh"
test_init bench_hnsw

"$TWIN" bench hnsw --help >"$tmp/out" 2>&1
check "--help exits 0" test $? -eq 0
check "--help shows the usage" grep -q "usage: twin bench hnsw" "$tmp/out"
"$TWIN" bench hnsw --ef 10,x >/dev/null 2>"$tmp/err"
check "bad --ef exits 2" test $? -eq 2
check "bad --ef: one line naming it" test "$(wc -l <"$tmp/err")" -eq 1 -a -n "$(grep -F -- "--ef" "$tmp/err")"
"$TWIN" bench hnsw --repeat 0 >/dev/null 2>"$tmp/err"
check "--repeat 0 exits 2" test $? -eq 2
check "--repeat 0: named" grep -qF -- "--repeat" "$tmp/err"
"$TWIN" bench hnsw --base "$tmp/b.fvecs" >/dev/null 2>&1
check "--base without --query exits 2" test $? -eq 2
"$TWIN" bench hnsw --base "$tmp/none.fvecs" --query "$tmp/none.fvecs" >/dev/null 2>"$tmp/err"
check "missing file exits 1" test $? -eq 1
check "missing file: named" grep -q "none.fvecs" "$tmp/err"

small=(--n 2000 --dim 32 --nq 100 --ef 10,40 --threads 2 --int8 --repeat 2)
"$TWIN" bench hnsw "${small[@]}" >"$tmp/out" 2>"$tmp/err"
check "short run exits 0" test $? -eq 0
cat "$tmp/out"
check "2 rounds of twin builds" test "$(grep -c '^round [12]/2: twin build_s=' "$tmp/out")" -eq 2
check "2 rounds of int8 searches at ef 40" test "$(grep -c '^round [12]/2: twin-int8 ef=40 recall@10=' "$tmp/out")" -eq 2
check "median build line" grep -qE '^twin build_s=[0-9.]+ \[[0-9.]+-[0-9.]+\] cpu_s=[0-9.]+' "$tmp/out"
r40="$(sed -n 's/^twin ef=40 recall@10=\([0-9.]*\) qps=.*/\1/p' "$tmp/out")"
check "twin ef=40 recall@10 >= 0.95 (got $r40)" awk -v r="$r40" 'BEGIN { exit !(r >= 0.95) }'
q40="$(sed -n 's/^twin-int8 ef=40 recall@10=[0-9.]* qps=\([0-9.]*\) .*/\1/p' "$tmp/out")"
check "twin-int8 ef=40 has a qps (got $q40)" awk -v q="$q40" 'BEGIN { exit !(q > 0) }'
check "int8 summary" grep -q "^  int8 vs f32 at recall 0.95 cpu :" "$tmp/out"
check "the machine is printed" grep -q "^machine: " "$tmp/out"
if [ -x "$(dirname "$TWIN")/anchor_hnswlib" ]; then
    check "hnswlib median lines" grep -qE '^hnswlib ef=40 recall@10=[0-9.]+ qps=[0-9.]+' "$tmp/out"
    check "qps ratio at 0.95 (cpu)" grep -qE '^  recall 0.95 cpu : twin qps=[0-9.]+ hnswlib qps=[0-9.]+ ratio=' "$tmp/out"
    check "build ratio" grep -qE '^  build cpu : twin .* ratio=[0-9.]+ \[' "$tmp/out"
    check "the anchor's wait4 CPU" grep -qE '^hnswlib process cpu_s=' "$tmp/out"
else
    check "the anchor's absence is said" grep -q "^hnswlib: anchor missing" "$tmp/out"
fi

one=(--n 500 --dim 16 --nq 20 --ef 10 --threads 1 --repeat 1)
TWIN_HNSWLIB_ANCHOR=/bin/false "$TWIN" bench hnsw "${one[@]}" >"$tmp/out" 2>&1
check "anchor that does not start: exit 0" test $? -eq 0
check "anchor that does not start: said" grep -q "^hnswlib: the anchor /bin/false did not start" "$tmp/out"
check "anchor that does not start: twin's figures" grep -q "^twin ef=10 recall@10=" "$tmp/out"
printf '#!/bin/sh\necho "hnswlib ready"\nread cmd\nexit 3\n' >"$tmp/dies.sh"
chmod +x "$tmp/dies.sh"
TWIN_HNSWLIB_ANCHOR="$tmp/dies.sh" "$TWIN" bench hnsw "${one[@]}" >"$tmp/out" 2>&1
check "anchor that dies: exit 0" test $? -eq 0
check "anchor that dies: said" grep -q "^hnswlib: the anchor stopped answering (build, round 1)" "$tmp/out"
check "anchor that dies: its status" grep -q "^hnswlib: anchor failed (status 3)" "$tmp/out"
check "anchor that dies: twin's figures" grep -q "^twin ef=10 recall@10=" "$tmp/out"
exit "$fail"
