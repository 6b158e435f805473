#!/usr/bin/env bash
# test_bench_infer.sh: `twin bench infer` as a user runs it: usage errors (exit 2), a missing
# model (exit 1), and a short run on the tiny GPT-2 fixture without the llama.cpp anchor: every
# table row carries a positive figure for each thread count, the batched rows a gain, and the
# peak-RSS row its budget verdict. (The figures against llama.cpp come from the full run on
# SmolLM2; see tools/cmd_bench_infer.c.)
. "$(dirname "$0")/../lib.sh"
test_init bench_infer
M="${TWIN_TEST_DATA:?}/gpt2/tiny-gpt2-f32.gguf"

"$TWIN" bench infer --help >"$tmp/out" 2>&1
check "--help exits 0" test $? -eq 0
check "--help shows the usage" grep -q "usage: twin bench infer" "$tmp/out"
"$TWIN" bench infer -m "$M" -t 1,x --no-anchor >/dev/null 2>"$tmp/err"
check "bad -t exits 2" test $? -eq 2
check "bad -t: one line naming it" test "$(wc -l <"$tmp/err")" -eq 1 -a -n "$(grep -F -- "-t:" "$tmp/err")"
"$TWIN" bench infer -m "$M" --frobnicate >/dev/null 2>&1
check "unknown option exits 2" test $? -eq 2
"$TWIN" bench infer -m "$M" --prompt 0 >/dev/null 2>&1
check "--prompt 0 exits 2" test $? -eq 2
"$TWIN" bench infer -m "$tmp/nope.gguf" --no-anchor >/dev/null 2>"$tmp/err"
check "missing model exits 1" test $? -eq 1

"$TWIN" bench infer -m "$M" -t 1,2 --prompt 16 --gen 8 --batch 3 --batch-prompt 4 --repeat 2 \
    --no-anchor >"$tmp/out" 2>"$tmp/err"
check "short run exits 0" test $? -eq 0
cat "$tmp/out"
row() { # row TEST THREADS: the twin tok/s of that row (empty when absent)
    awk -v t="$1" -v n="$2" '$1 == "tiny-gpt2-f32.gguf" && $4 == t && $5 == n { print $6 }' "$tmp/out"
}
pos() { awk -v v="$1" 'BEGIN { exit !(v + 0 > 0) }'; }
for t in 1 2; do
    check "pp16 at $t threads has a figure" pos "$(row pp16 "$t")"
    check "tg8 at $t threads has a figure" pos "$(row tg8 "$t")"
    # the batched row without its "± sd" parts: model thr twin1 twinB gain llama1 llamaB gain ratio
    b="$(sed 's/ ± [0-9.]*//g' "$tmp/out" | awk -v n="$t" '$1 == "tiny-gpt2-f32.gguf" && $2 == n && NF == 9 { print $5 }')"
    check "batched gain at $t threads" pos "$b"
done
check "the machine is printed" grep -q "^machine: " "$tmp/out"
check "the anchor's absence is said" grep -q "^anchor: llama.cpp missing: --no-anchor" "$tmp/out"
# ASan's shadow memory and quarantine inflate RSS: the budget is checked in plain builds only.
if "$TWIN" info 2>/dev/null | grep -q '^sanitizers: none$'; then
    check "peak RSS within budget" awk '$1 == "tiny-gpt2-f32.gguf" && $6 == "yes" { f = 1 } END { exit !f }' "$tmp/out"
else
    echo "skip peak RSS within budget (sanitizer build)"
fi
exit "$fail"
