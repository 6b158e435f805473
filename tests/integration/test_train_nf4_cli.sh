#!/bin/bash
# test_train_nf4_cli.sh: twin train --qlora nf4 as a user runs it, on the tiny random llama of
# test_train_nf4 (rows of 64 and 128: NF4's blocks fit) and the SFT data of tests/data/sft,
# one thread:
#   - the run finishes, its held-out loss falls, the adapters are written;
#   - the warehouse row records the mode (twin runs show: qlora: "nf4");
#   - the same run with --qlora native differs (its base is not quantized), so nf4 did apply;
#   - a base whose rows are not a multiple of 64 (test_train's tiny llama, n_embd 32) is
#     refused with exit 1 and a message naming the tensor.
. "$(dirname "$0")/../lib.sh"
test_init train_nf4_cli
fx="$(dirname "$TWIN")/test_train_nf4"
fx32="$(dirname "$TWIN")/test_train"
[ -x "$fx" ] || { echo "SKIP: $fx not built" >&2; exit 77; }
data="${TWIN_TEST_DATA:?}/sft"
model="$tmp/tiny64.gguf"
check "fixture" "$fx" --write-model "$model"
T=("$TWIN" --threads 1 --workspace "$tmp/ws" train -m "$model" --data "$data/voice_sft.jsonl"
   --lora-r 4 --lora-alpha 8 --max-len 192 --batch-tokens 2048 --micro-batch 1024 --lr 5e-3
   --warmup 2 --seed 7 --steps 8 --eval-every 8 --save-every 8)

"${T[@]}" --qlora nf4 --out "$tmp/q" --name nf4run >"$tmp/q.out" 2>"$tmp/q.err"
rc=$?
check "nf4 run exits 0" test $rc = 0
[ $rc = 0 ] || cat "$tmp/q.err" >&2
check "8 step lines" test "$(grep -c '^step [0-9]*/8 loss' "$tmp/q.out")" = 8
first=$(grep '^eval step 0:' "$tmp/q.out" | awk '{print $5}')
last=$(grep '^eval step 8:' "$tmp/q.out" | awk '{print $5}')
check "held-out loss goes down ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a)}'
check "PEFT adapter" test -s "$tmp/q/adapter/adapter_model.safetensors"
check "GGUF adapter" test -s "$tmp/q/adapter.gguf"
show="$("$TWIN" --workspace "$tmp/ws" runs show nf4run 2>&1)"
check "the run records qlora nf4" grep -qE '^ +qlora +"?nf4"?$' <<<"$show"
[ $fail = 0 ] || echo "$show" >&2

"${T[@]}" --qlora native --out "$tmp/n" --name nativerun >"$tmp/n.out" 2>"$tmp/n.err"
check "native run exits 0" test $? = 0
l_nf4=$(grep '^step 1/8 loss' "$tmp/q.out" | awk '{print $4}')
l_nat=$(grep '^step 1/8 loss' "$tmp/n.out" | awk '{print $4}')
check "nf4 and native bases give different first losses ($l_nf4 vs $l_nat)" test "$l_nf4" != "$l_nat"

if [ -x "$fx32" ]; then
    "$fx32" --write-model "$tmp/tiny32.gguf"
    "$TWIN" --threads 1 --workspace "$tmp/ws" train -m "$tmp/tiny32.gguf" --qlora nf4 \
        --data "$data/voice_sft.jsonl" --steps 1 --out "$tmp/x" >"$tmp/x.out" 2>"$tmp/x.err"
    rc=$?
    check "rows of 32 are refused with exit 1 (got $rc)" test $rc = 1
    check "the refusal names the option and the tensor" grep -q -- '--qlora nf4: .*blk.0.attn_q.*multiple of NF4' "$tmp/x.err"
    check "the refusal is one line" test "$(wc -l <"$tmp/x.err")" = 1
fi
exit "$fail"
