#!/bin/bash
# test_train_full.sh: twin train --full (every weight trained) on the tiny random llama of
# test_train (test_train --write-model) and the SFT/preference data of tests/data/sft:
#   - an SFT run: step lines, held-out loss lower after than before, the whole model written
#     as a GGUF (F32) that twin generate -m loads, the run recorded with mode "full";
#   - resume: the same run killed with SIGKILL after its step-4 checkpoint and continued with
#     --resume gives every step's loss bit for bit (%.17g in steps.jsonl) and the same model
#     bytes; --out-type f16 writes a smaller model that loads;
#   - DPO with --full: the reference log-probs are computed once from the initial weights and
#     cached in the checkpoint folder; a resumed run reads them back (does not recompute them
#     from the changed weights) and its losses equal the uninterrupted run's;
#   - LoRA DPO resumed reads its cached references too;
#   - LoRA options with --full, --out-type without --full, --full on an HF folder: exit 2
#     naming the option or the file;
#   - GPT-2 (the tiny random GPT-2 of test_train_gpt2, 256 learned positions): a --full run
#     lowers the held-out loss and writes a model.gguf with the fused attn_qkv that twin
#     generate loads; killed after its step-3 checkpoint and resumed, every step's loss and the
#     model bytes are the uninterrupted run's.
. "$(dirname "$0")/../lib.sh"
test_init train_full
fx="$(dirname "$TWIN")/test_train"
[ -x "$fx" ] || { echo "SKIP: $fx not built" >&2; exit 77; }
data="${TWIN_TEST_DATA:?}/sft"
model="$tmp/tiny.gguf"
check "fixture" "$fx" --write-model "$model"
T=("$TWIN" --threads 1 --workspace "$tmp/ws" train -m "$model" --data "$data/voice_sft.jsonl"
   --full --max-len 192 --batch-tokens 1024 --micro-batch 1024 --lr 2e-3 --warmup 1 --seed 7)

"${T[@]}" --steps 8 --eval-every 8 --save-every 4 --out "$tmp/a" --name fa >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?
check "full sft run exits 0" test $rc = 0
[ $rc = 0 ] || cat "$tmp/a.err" >&2
check "8 step lines" test "$(grep -c '^step [0-9]*/8 loss' "$tmp/a.out")" = 8
check "says full fine-tuning" grep -q 'full fine-tuning: .* trainable parameters' "$tmp/a.err"
first=$(grep '^eval step 0:' "$tmp/a.out" | awk '{print $5}')
last=$(grep '^eval step 8:' "$tmp/a.out" | awk '{print $5}')
check "held-out loss goes down ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a)}'
check "model GGUF written" test -s "$tmp/a/model.gguf"
check "no adapter files" test ! -e "$tmp/a/adapter.gguf"
check "gguf info reads it" "$TWIN" gguf info "$tmp/a/model.gguf"
"$TWIN" --threads 1 generate -m "$tmp/a/model.gguf" -p "hello" -n 4 --temp 0 >"$tmp/g.out" 2>"$tmp/g.err"
check "twin generate loads the trained model" test $? = 0
runs="$("$TWIN" --workspace "$tmp/ws" runs show fa 2>&1)"
check "run records mode full" grep -qE '^ +mode +full$' <<<"$runs"

# killed after the step-4 checkpoint, resumed
"${T[@]}" --steps 8 --eval-every 8 --save-every 4 --out "$tmp/b" >"$tmp/b1.out" 2>"$tmp/b1.err" &
pid=$!
for _ in $(seq 1 3000); do
    [ -e "$tmp/b/steps.jsonl" ] && [ "$(wc -l <"$tmp/b/steps.jsonl")" -ge 5 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
check "killed before the end" bash -c "! grep -q '^done:' '$tmp/b1.out'"
"${T[@]}" --steps 8 --eval-every 8 --save-every 4 --out "$tmp/b" --resume >"$tmp/b2.out" 2>"$tmp/b2.err"
rc=$?
check "resume exits 0" test $rc = 0
[ $rc = 0 ] || cat "$tmp/b2.err" >&2
check "resume says where from" grep -q 'resuming from .*ckpt-0000000004' "$tmp/b2.err"
lastof() { awk -F'"loss":' '{split($1, s, ":"); st=s[2]+0; split($2, l, ","); v[st]=l[1]} END{for (i=1;i<=8;i++) print i, v[i]}' "$1"; }
lastof "$tmp/a/steps.jsonl" >"$tmp/la"
lastof "$tmp/b/steps.jsonl" >"$tmp/lb"
check "every step's loss bit-identical after resume" cmp -s "$tmp/la" "$tmp/lb"
check "same model bytes" cmp -s "$tmp/a/model.gguf" "$tmp/b/model.gguf"
"$TWIN" --threads 1 --workspace "$tmp/ws" train -m "$model" --data "$data/voice_sft.jsonl" --lora-r 4 \
    --steps 8 --out "$tmp/b" --resume >"$tmp/x" 2>"$tmp/err"
check "LoRA resume of a full run refused" test $? = 1
"${T[@]}" --steps 2 --eval-every 0 --out-type f16 --out "$tmp/h" >"$tmp/h.out" 2>"$tmp/h.err"
check "f16 run exits 0" test $? = 0
check "f16 model smaller" test "$(stat -c %s "$tmp/h/model.gguf")" -lt "$(stat -c %s "$tmp/a/model.gguf")"
"$TWIN" --threads 1 generate -m "$tmp/h/model.gguf" -p "hello" -n 2 --temp 0 >/dev/null 2>"$tmp/g.err"
check "the f16 model loads" test $? = 0

# DPO --full: references from the initial weights, cached; a resume reads them back
D=("$TWIN" --threads 1 --workspace "$tmp/ws" train -m "$model" --data "$data/voice_pref.jsonl" --dpo
   --max-len 160 --batch-tokens 1024 --lr 2e-3 --warmup 0 --eval-every 0 --save-every 2 --seed 3)
"${D[@]}" --full --steps 4 --out "$tmp/d" >"$tmp/d.out" 2>"$tmp/d.err"
rc=$?
check "full dpo exits 0" test $rc = 0
[ $rc = 0 ] || cat "$tmp/d.err" >&2
check "dpo starts at log 2" grep -qE '^step 1/4 loss 0\.693' "$tmp/d.out"
check "references cached" test -s "$tmp/d/checkpoints/ref-logps.twck"
"${D[@]}" --full --steps 4 --out "$tmp/e" >"$tmp/e1.out" 2>"$tmp/e1.err" &
pid=$!
for _ in $(seq 1 3000); do
    [ -e "$tmp/e/steps.jsonl" ] && [ "$(wc -l <"$tmp/e/steps.jsonl")" -ge 3 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
"${D[@]}" --full --steps 4 --out "$tmp/e" --resume >"$tmp/e2.out" 2>"$tmp/e2.err"
rc=$?
check "full dpo resume exits 0" test $rc = 0
[ $rc = 0 ] || cat "$tmp/e2.err" >&2
check "resume reads the cached references" grep -q 'reference log-probs read from .*ref-logps.twck' "$tmp/e2.err"
lastof "$tmp/d/steps.jsonl" | head -4 >"$tmp/ld"
lastof "$tmp/e/steps.jsonl" | head -4 >"$tmp/le"
check "full dpo losses bit-identical after resume" cmp -s "$tmp/ld" "$tmp/le"
mv "$tmp/e/checkpoints/ref-logps.twck" "$tmp/ref.bak"
"${D[@]}" --full --steps 6 --out "$tmp/e" --resume >"$tmp/x" 2>"$tmp/err"
check "full dpo resume without the cached references refused" test $? = 1
check "  says why" grep -q 'reference log-probs' "$tmp/err"
# LoRA DPO: cached as well
"${D[@]}" --lora-r 4 --steps 2 --out "$tmp/f" >"$tmp/f.out" 2>"$tmp/f.err"
check "lora dpo exits 0" test $? = 0
"${D[@]}" --lora-r 4 --steps 3 --out "$tmp/f" --resume >"$tmp/f2.out" 2>"$tmp/f2.err"
check "lora dpo resume exits 0" test $? = 0
check "lora dpo resume reads the cache" grep -q 'reference log-probs read from' "$tmp/f2.err"

# usage
"${T[@]}" --lora-r 8 --steps 1 --out "$tmp/u" 2>"$tmp/err"; check "--full with --lora-r: exit 2" test $? = 2
check "  names the option" grep -q -- '--lora-r' "$tmp/err"
"${T[@]}" --qlora nf4 --steps 1 --out "$tmp/u" 2>"$tmp/err"; check "--full with --qlora: exit 2" test $? = 2
"$TWIN" train -m "$model" --data "$data/voice_sft.jsonl" --out-type f16 2>"$tmp/err"
check "--out-type without --full: exit 2" test $? = 2
"${T[@]}" --out-type q4_0 2>"$tmp/err"; check "--out-type q4_0: exit 2" test $? = 2
mkdir -p "$tmp/hf" && echo '{}' >"$tmp/hf/config.json"
"$TWIN" train -m "$tmp/hf" --data "$data/voice_sft.jsonl" --full 2>"$tmp/err"
check "--full on an HF folder: exit 2" test $? = 2
check "  says the base must be a GGUF" grep -q 'must be a GGUF' "$tmp/err"

# GPT-2
fx2="$(dirname "$TWIN")/test_train_gpt2"
if [ -x "$fx2" ]; then
    g2="$tmp/tiny-gpt2.gguf"
    check "gpt2 fixture" "$fx2" --write-model "$g2" --ctx 256
    P=("$TWIN" --threads 1 --workspace "$tmp/ws" train -m "$g2" --data "$data/voice_sft.jsonl"
       --full --max-len 192 --batch-tokens 1024 --micro-batch 1024 --lr 2e-3 --warmup 1 --seed 5
       --steps 6 --eval-every 6 --save-every 3)
    "${P[@]}" --out "$tmp/p" >"$tmp/p.out" 2>"$tmp/p.err"
    rc=$?
    check "gpt2 full run exits 0" test $rc = 0
    [ $rc = 0 ] || cat "$tmp/p.err" >&2
    check "gpt2: every weight trained" grep -q 'full fine-tuning: 28 tensors' "$tmp/p.err"
    first=$(grep '^eval step 0:' "$tmp/p.out" | awk '{print $5}')
    last=$(grep '^eval step 6:' "$tmp/p.out" | awk '{print $5}')
    check "gpt2 held-out loss goes down ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a)}'
    check "gpt2 model keeps attn_qkv fused" bash -c "'$TWIN' gguf info '$tmp/p/model.gguf' | grep -q 'blk.1.attn_qkv.weight'"
    "$TWIN" --threads 1 generate -m "$tmp/p/model.gguf" -p "hello" -n 4 --temp 0 >"$tmp/g.out" 2>"$tmp/g.err"
    check "twin generate loads the trained gpt2" test $? = 0
    "${P[@]}" --out "$tmp/q" >"$tmp/q1.out" 2>"$tmp/q1.err" &
    pid=$!
    for _ in $(seq 1 3000); do
        [ -e "$tmp/q/steps.jsonl" ] && [ "$(wc -l <"$tmp/q/steps.jsonl")" -ge 4 ] && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.01
    done
    kill -KILL $pid 2>/dev/null
    wait $pid 2>/dev/null
    check "gpt2 killed before the end" bash -c "! grep -q '^done:' '$tmp/q1.out'"
    "${P[@]}" --out "$tmp/q" --resume >"$tmp/q2.out" 2>"$tmp/q2.err"
    rc=$?
    check "gpt2 resume exits 0" test $rc = 0
    [ $rc = 0 ] || cat "$tmp/q2.err" >&2
    check "gpt2 resume says where from" grep -q 'resuming from .*ckpt-0000000003' "$tmp/q2.err"
    lastof "$tmp/p/steps.jsonl" | head -6 >"$tmp/lp"
    lastof "$tmp/q/steps.jsonl" | head -6 >"$tmp/lq"
    check "gpt2: every step's loss bit-identical after resume" cmp -s "$tmp/lp" "$tmp/lq"
    check "gpt2: same model bytes" cmp -s "$tmp/p/model.gguf" "$tmp/q/model.gguf"
fi
exit "$fail"
