#!/bin/bash
# test_train_gpt2_cli.sh: twin train on a GPT-2 base as a user runs it: the tiny random GPT-2
# of test_train_gpt2 (test_train_gpt2 --write-model, 256 learned positions) and the SFT and
# preference data of tests/data/sft, one thread:
#   - an SFT run with LoRA on all six GPT-2 modules: step lines, held-out loss lower after,
#     PEFT (one fused attn.c_attn adapter, rank_pattern, fan_in_fan_out) + GGUF (attn_qkv)
#     adapters, the run recorded;
#   - resume: the same run killed with SIGKILL after its step-6 checkpoint and continued with
#     --resume gives every step's loss bit for bit and byte-identical adapters;
#   - generate --lora (PEFT and GGUF files) prints the tokens of the model merged by twin merge
#     (greedy, f32 base), and they differ from the base's;
#   - a DPO run finishes (rewards/accuracy lines, starts at log 2);
#   - --lora-targets gate is refused on GPT-2 with one line naming it.
. "$(dirname "$0")/../lib.sh"
test_init train_gpt2_cli
fx="$(dirname "$TWIN")/test_train_gpt2"
[ -x "$fx" ] || { echo "SKIP: $fx not built" >&2; exit 77; }
data="${TWIN_TEST_DATA:?}/sft"
model="$tmp/tiny-gpt2.gguf"
check "fixture" "$fx" --write-model "$model" --ctx 256
T=("$TWIN" --threads 1 --workspace "$tmp/ws" train -m "$model" --data "$data/voice_sft.jsonl"
   --lora-r 4 --lora-alpha 8 --max-len 192 --batch-tokens 2048 --micro-batch 1024 --lr 5e-3
   --warmup 2 --seed 7)

"${T[@]}" --steps 10 --eval-every 5 --save-every 3 --out "$tmp/a" >"$tmp/a.out" 2>"$tmp/a.err"
rc=$?
check "sft run exits 0" test $rc = 0
[ $rc = 0 ] || cat "$tmp/a.err" >&2
check "10 step lines" test "$(grep -c '^step [0-9]*/10 loss' "$tmp/a.out")" = 10
check "six modules x 2 layers" grep -q '12 adapters' "$tmp/a.err"
first=$(grep '^eval step 0:' "$tmp/a.out" | awk '{print $5}')
last=$(grep '^eval step 10:' "$tmp/a.out" | awk '{print $5}')
check "held-out loss goes down ($first -> $last)" awk -v a="$first" -v b="$last" 'BEGIN{exit !(b < a)}'
cfg="$tmp/a/adapter/adapter_config.json"
check "PEFT adapter" test -s "$tmp/a/adapter/adapter_model.safetensors" -a -s "$cfg"
check "PEFT: fused c_attn of rank 3r" grep -q '"rank_pattern": {"c_attn": 12}' "$cfg"
check "PEFT: GPT-2 module names" grep -q '"target_modules": \["attn.c_proj", "mlp.c_fc", "mlp.c_proj", "attn.c_attn"\]' "$cfg"
check "PEFT: Conv1D fan_in_fan_out" grep -q '"fan_in_fan_out": true' "$cfg"
check "PEFT tensor names" grep -qa 'base_model.model.transformer.h.1.attn.c_attn.lora_B.weight' "$tmp/a/adapter/adapter_model.safetensors"
check "GGUF adapter" test -s "$tmp/a/adapter.gguf"
check "GGUF attn_qkv tensors" bash -c "'$TWIN' gguf info '$tmp/a/adapter.gguf' | grep -q 'blk.1.attn_qkv.weight.lora_b'"
check "run recorded" bash -c "'$TWIN' --workspace '$tmp/ws' runs ls 2>&1 | grep -q sft"

# the same run, killed after its step-6 checkpoint, then resumed
"${T[@]}" --steps 10 --eval-every 5 --save-every 3 --out "$tmp/b" >"$tmp/b1.out" 2>"$tmp/b1.err" &
pid=$!
for _ in $(seq 1 3000); do
    [ -e "$tmp/b/steps.jsonl" ] && [ "$(wc -l <"$tmp/b/steps.jsonl")" -ge 7 ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
done
kill -KILL $pid 2>/dev/null
wait $pid 2>/dev/null
check "a checkpoint survived" test -n "$(ls "$tmp/b/checkpoints" 2>/dev/null)"
"${T[@]}" --steps 10 --eval-every 5 --save-every 3 --out "$tmp/b" --resume >"$tmp/b2.out" 2>"$tmp/b2.err"
rc=$?
check "resume exits 0" test $rc = 0
[ $rc = 0 ] || cat "$tmp/b2.err" >&2
check "resumed from a checkpoint" grep -q 'resuming from .*ckpt-' "$tmp/b2.err"
lastof() { awk -F'"loss":' '{split($1, s, ":"); st=s[2]+0; split($2, l, ","); v[st]=l[1]} END{for (i=1;i<=10;i++) print i, v[i]}' "$1"; }
lastof "$tmp/a/steps.jsonl" >"$tmp/la"
lastof "$tmp/b/steps.jsonl" >"$tmp/lb"
check "every step's loss bit-identical after resume" cmp -s "$tmp/la" "$tmp/lb"
check "same GGUF adapter bytes" cmp -s "$tmp/a/adapter.gguf" "$tmp/b/adapter.gguf"
check "same PEFT adapter bytes" cmp -s "$tmp/a/adapter/adapter_model.safetensors" "$tmp/b/adapter/adapter_model.safetensors"

# run-time adapter == merged model (f32 base: the merge is not requantized)
check "merge" "$TWIN" merge -m "$model" --lora "$tmp/a/adapter" -o "$tmp/merged.gguf"
G=("$TWIN" --threads 1 generate -p "Tell me about the weather" -n 32 --temp 0)
"${G[@]}" -m "$model" --lora "$tmp/a/adapter" >"$tmp/g.peft" 2>/dev/null
"${G[@]}" -m "$model" --lora "$tmp/a/adapter.gguf" >"$tmp/g.gguf" 2>/dev/null
"${G[@]}" -m "$tmp/merged.gguf" >"$tmp/g.merged" 2>/dev/null
"${G[@]}" -m "$model" >"$tmp/g.base" 2>/dev/null
check "generate --lora (PEFT) == merged" cmp -s "$tmp/g.peft" "$tmp/g.merged"
check "generate --lora (GGUF) == merged" cmp -s "$tmp/g.gguf" "$tmp/g.merged"
check "the adapter changes the text" bash -c "! cmp -s '$tmp/g.peft' '$tmp/g.base'"

# DPO
"$TWIN" --threads 1 --workspace "$tmp/ws" train -m "$model" --data "$data/voice_pref.jsonl" --dpo \
    --lora-r 4 --max-len 120 --batch-tokens 1024 --steps 3 --eval-every 0 --out "$tmp/d" \
    >"$tmp/d.out" 2>"$tmp/d.err"
rc=$?
check "dpo run exits 0" test $rc = 0
[ $rc = 0 ] || cat "$tmp/d.err" >&2
check "dpo step lines" test "$(grep -cE '^step [0-9]/3 loss [0-9.]+ acc [0-9.]+ margin' "$tmp/d.out")" = 3
check "dpo starts at log 2" grep -qE '^step 1/3 loss 0\.693' "$tmp/d.out"

# GPT-2 has no gate
"${T[@]}" --steps 1 --lora-targets q,gate --out "$tmp/g" 2>"$tmp/err"
rc=$?
check "gate refused (exit $rc)" test $rc = 1 -o $rc = 2
check "one error line, naming the gate" test "$(grep -c '^twin train: .*gate' "$tmp/err")" = 1
exit "$fail"
