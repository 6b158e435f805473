#!/bin/bash
# test_bench_train.sh: twin bench train on the tiny llama of test_train_nf4 (a short run):
#   - one row per mode (f32, native, nf4), each from its own process, with positive tokens/s
#     and peak memory, and base bytes in the expected order (f32 base = 4 bytes per weight,
#     the same as native for this F32 GGUF; nf4 about 4.13 bits per weight, plus 1 KiB of
#     map per matrix);
#   - --modes picks and orders the modes; usage errors exit 2.
. "$(dirname "$0")/../lib.sh"
test_init bench_train
fx="$(dirname "$TWIN")/test_train_nf4"
[ -x "$fx" ] || { echo "SKIP: $fx not built" >&2; exit 77; }
model="$tmp/tiny64.gguf"
check "fixture" "$fx" --write-model "$model"
out="$("$TWIN" --threads 1 bench train -m "$model" --seq 32 --steps 1 2>&1)"
rc=$?
check "exits 0" test $rc = 0
[ $rc = 0 ] || echo "$out" >&2
row() { grep -E "^$1" <<<"$out"; }
check "f32 row" grep -qE '^f32 LoRA \(base f32\) +[0-9.]+ ' <<<"$out"
check "native row" grep -qE '^QLoRA native \(GGUF type\) +[0-9.]+ ' <<<"$out"
check "nf4 row" grep -qE '^QLoRA nf4 \(double quant\) +[0-9.]+ ' <<<"$out"
# columns from the end: base MiB is the 4th last field
base() { row "$1" | awk '{print $(NF-3)}'; }
b32=$(base "f32 LoRA"); bnat=$(base "QLoRA native"); bnf4=$(base "QLoRA nf4")
# 73728 projection weights: f32 0.28 MiB; nf4 36864 codes + 1152 qabsmax + 14 * 1032 B = 0.05 MiB
check "f32 base bytes ($b32)" test "$b32" = "0.3"
check "native base = f32 for an F32 file ($bnat)" test "$bnat" = "$b32"
check "nf4 base bytes ($bnf4)" test "$bnf4" = "0.1"
check "anchor line" grep -qE '^(anchor: OpenBLAS sgemm|anchor: OpenBLAS not found)' <<<"$out"
out2="$("$TWIN" --threads 1 bench train -m "$model" --seq 16 --steps 1 --modes nf4,f32 2>&1)"
check "--modes nf4,f32: two rows, in that order" test "$(grep -E '^(QLoRA|f32 LoRA)' <<<"$out2" | awk '{print $1}' | tr '\n' ,)" = "QLoRA,f32,"
"$TWIN" bench train -m "$model" --modes f32,bogus >/dev/null 2>"$tmp/e"
check "--modes bogus exits 2" test $? = 2
check "the error names --modes" grep -q -- '--modes' "$tmp/e"
exit "$fail"
