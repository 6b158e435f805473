#!/bin/bash
# test_train_cli.sh: twin train as a user runs it, on the tiny random llama of test_train
# (test_train --write-model) and the SFT/preference data of tests/data/sft, one thread:
#   - an SFT run: per-step lines, held-out loss evaluated before and after (and lower after),
#     PEFT + GGUF adapters written, the run recorded (twin runs ls / show);
#   - resume: a second identical run is killed with SIGKILL after its step-10 checkpoint and
#     continued with --resume; every step's loss equals the uninterrupted run's, bit for bit
#     (%.17g in steps.jsonl), and the adapters are byte-identical;
#   - the adapter loads for merging (twin merge);
#   - a DPO run on preference pairs: rewards/accuracy lines, finishes;
#   - a diverging run (absurd learning rate) stops with exit 1 naming the non-finite value and
#     keeps its last good checkpoint; usage errors exit 2.
. "$(dirname "$0")/../lib.sh"
test_init train_cli
fx="$(dirname "$TWIN")/test_train"
[ -x "$fx" ] || { echo "SKIP: $fx not built" >&2; exit 77; }
data="${TWIN_TEST_DATA:?}/sft"
model="$tmp/tiny.gguf"
check "fixture" "$fx" --write-model "$model"
T=("$TWIN" --threads 1 --workspace "$tmp/ws" train -m "$model" --data "$data/voice_sft.jsonl"
   --lora-r 4 --lora-alpha 8 --max-len 192 --batch-tokens 2048 --micro-batch 1024 --lr 5e-3
   --warmup 2 --seed 7)

"${T[@]}" --steps 16 --eval-every 8 --save-every 5 --out "$tmp/a" >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?
check "sft run exits 0" test $rc = 0
[ $rc = 0 ] || cat "$tmp/a.err" >&2
check "16 step lines" test "$(grep -c '^step [0-9]*/16 loss' "$tmp/a.out")" = 16
check "step line fields" grep -qE '^step 3/16 loss [0-9.]+ lr [0-9.e+-]+ grad_norm [0-9.]+ tok/s [0-9]+ mem [0-9]+ MiB' "$tmp/a.out"
check "eval before, middle, after" test "$(grep -c '^eval step' "$tmp/a.out")" = 3
first=$(grep '^eval step 0:' "$tmp/a.out" | awk '{print $5}')
last=$(grep '^eval step 16:' "$tmp/a.out" | awk '{print $5}')
check "held-out loss goes down ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a)}'
check "PEFT adapter" test -s "$tmp/a/adapter/adapter_model.safetensors" -a -s "$tmp/a/adapter/adapter_config.json"
check "GGUF adapter" test -s "$tmp/a/adapter.gguf"
check "steps.jsonl" test "$(wc -l <"$tmp/a/steps.jsonl")" = 16
check "checkpoints kept" test "$(ls "$tmp/a/checkpoints" | wc -l)" -ge 1
runs="$("$TWIN" --workspace "$tmp/ws" runs ls 2>&1)"
check "run recorded" grep -q 'sft' <<<"$runs"
check "merge the trained adapter" "$TWIN" merge -m "$model" --lora "$tmp/a/adapter" -o "$tmp/merged.gguf"

# the same run, killed after its step-10 checkpoint, then resumed
"${T[@]}" --steps 16 --eval-every 8 --save-every 5 --out "$tmp/b" >"$tmp/b1.out" 2>"$tmp/b1.err" &
pid=$!
for _ in $(seq 1 3000); do
    [ -e "$tmp/b/steps.jsonl" ] && [ "$(wc -l <"$tmp/b/steps.jsonl")" -ge 11 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
check "killed before the end" bash -c "! grep -q '^done:' '$tmp/b1.out'"
check "adapter written at the checkpoint" test -s "$tmp/b/adapter.gguf"
check "a checkpoint survived" test -n "$(ls "$tmp/b/checkpoints" 2>/dev/null)"
"${T[@]}" --steps 16 --eval-every 8 --save-every 5 --out "$tmp/b" --resume >"$tmp/b2.out" 2>"$tmp/b2.err"
rc=$?
check "resume exits 0" test $rc = 0
[ $rc = 0 ] || cat "$tmp/b2.err" >&2
check "resume says where from" grep -q 'resuming from .*ckpt-0000000010' "$tmp/b2.err"
# the last line written for each step (the resumed run rewrites those after its checkpoint)
lastof() { awk -F'"loss":' '{split($1, s, ":"); st=s[2]+0; split($2, l, ","); v[st]=l[1]} END{for (i=1;i<=16;i++) print i, v[i]}' "$1"; }
lastof "$tmp/a/steps.jsonl" >"$tmp/la"
lastof "$tmp/b/steps.jsonl" >"$tmp/lb"
check "every step's loss bit-identical after resume" cmp -s "$tmp/la" "$tmp/lb"
check "same adapter bytes" cmp -s "$tmp/a/adapter.gguf" "$tmp/b/adapter.gguf"
"${T[@]}" --steps 16 --out "$tmp/b" --resume --data "$data/voice_pref.jsonl" --dpo >"$tmp/x" 2>"$tmp/err"
check "resume on other data refused" test $? = 1

# DPO
"$TWIN" --threads 1 --workspace "$tmp/ws" train -m "$model" --data "$data/voice_pref.jsonl" --dpo \
    --lora-r 4 --max-len 160 --batch-tokens 1024 --steps 3 --eval-every 0 --out "$tmp/d" \
    >"$tmp/d.out" 2>"$tmp/d.err"
rc=$?
check "dpo run exits 0" test $rc = 0
[ $rc = 0 ] || cat "$tmp/d.err" >&2
check "dpo step lines" test "$(grep -cE '^step [0-9]/3 loss [0-9.]+ acc [0-9.]+ margin' "$tmp/d.out")" = 3
check "dpo starts at log 2" grep -qE '^step 1/3 loss 0\.693' "$tmp/d.out"
check "dpo references computed" grep -q 'reference log-probs of' "$tmp/d.err"

# divergence: stops, names it, keeps the last good checkpoint
"${T[@]}" --steps 30 --lr 1e30 --warmup 0 --schedule constant --clip 0 --save-every 1 \
    --eval-every 0 --out "$tmp/n" >"$tmp/n.out" 2>"$tmp/n.err"
rc=$?
check "diverging run exits 1" test $rc = 1
check "says not finite" grep -q 'not finite' "$tmp/n.err"
check "last good checkpoint kept" test -n "$(ls "$tmp/n/checkpoints" 2>/dev/null)"

# usage
"$TWIN" train -m "$model" 2>"$tmp/err"; check "no --data: exit 2" test $? = 2
"${T[@]}" --qlora nf4 --steps 1 --out "$tmp/u" 2>"$tmp/err"; check "nf4: exit 1" test $? = 1
check "nf4: says why" grep -q 'nf4' "$tmp/err"
"${T[@]}" --lora-dropout 1.5 2>"$tmp/err"; check "dropout outside [0, 1): exit 2" test $? = 2
"${T[@]}" --steps 2 --epochs 1 2>"$tmp/err"; check "--steps with --epochs: exit 2" test $? = 2
"$TWIN" --threads 1 --workspace "$tmp/ws" train -m "$model" --data "$data/voice_pref.jsonl" \
    --steps 1 --out "$tmp/p" 2>"$tmp/err"
check "preference data without --dpo: exit 2" test $? = 2
check "one-line errors" test "$(wc -l <"$tmp/err")" = 1
exit "$fail"
