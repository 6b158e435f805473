#!/usr/bin/env bash
# test_quantize.sh: `twin quantize IN OUT TYPE` as a user runs it.
#  - usage errors (exit 2) and runtime errors (exit 1) with one line naming the culprit;
#  - on the tiny GPT-2 fixture (tests/data/gpt2, always present): f32 -> f16 gives exactly the
#    committed f16 file (made by the fixture generator through tw_quantize_row), converting a
#    file to its own type gives it back byte for byte, f16 -> f32 -> f16 is lossless, and the
#    per-tensor type choices (norms/biases/position_embd kept, the tied head q8_0 for q4_x
#    unless --pure) as `twin gguf info` shows them;
#  - on SmolLM2-135M-Instruct Q4_1 (skipped when not fetched): q4_1 -> q4_1 reproduces the
#    llama.cpp-made file byte for byte; q8_0 and f16 conversions have the expected types and
#    sizes; with llama.cpp's llama-quantize (bench/llama_anchor.sh, or $TWIN_LLAMA_BIN) the
#    q8_0 tensors equal llama-quantize's byte for byte; with llama-cpp-python, llama.cpp loads
#    our q8_0 and f16 files and its top-1 next token agrees with the Q4_1 original on every
#    golden prompt (tools/gen_llama_golden.py --compare).
. "$(dirname "$0")/../lib.sh"
test_init quantize
G="${TWIN_TEST_DATA:?}/gpt2"

# ---- usage ----
"$TWIN" quantize --help >"$tmp/out" 2>&1
check "--help exits 0" test $? -eq 0
check "--help shows the usage" grep -q "usage: twin quantize IN.gguf OUT.gguf TYPE" "$tmp/out"
"$TWIN" quantize >/dev/null 2>&1
check "no arguments exits 2" test $? -eq 2
"$TWIN" quantize "$G/tiny-gpt2-f32.gguf" "$tmp/x.gguf" q3_k 2>"$tmp/err" >/dev/null
check "unknown TYPE exits 2" test $? -eq 2
check "unknown TYPE: one line naming it" test "$(wc -l <"$tmp/err")" -eq 1 -a -n "$(grep -F "'q3_k'" "$tmp/err")"
"$TWIN" quantize "$G/tiny-gpt2-f32.gguf" "$tmp/x.gguf" f16 --frobnicate 2>/dev/null >/dev/null
check "unknown option exits 2" test $? -eq 2
"$TWIN" quantize "$tmp/nope.gguf" "$tmp/x.gguf" f16 2>"$tmp/err" >/dev/null
check "missing input exits 1" test $? -eq 1
check "missing input: one line naming it" test "$(wc -l <"$tmp/err")" -eq 1 -a -n "$(grep -F "$tmp/nope.gguf" "$tmp/err")"
head -c 20000 "$G/tiny-gpt2-f32.gguf" >"$tmp/trunc.gguf"
"$TWIN" quantize "$tmp/trunc.gguf" "$tmp/x.gguf" f16 2>"$tmp/err" >/dev/null
check "truncated input exits 1" test $? -eq 1
check "truncated input: nothing written" test ! -e "$tmp/x.gguf"

# ---- the tiny GPT-2 fixture ----
"$TWIN" quantize "$G/tiny-gpt2-f32.gguf" "$tmp/f16.gguf" f16 >"$tmp/out" 2>&1
check "f32 -> f16 exits 0" test $? -eq 0
check "f32 -> f16 equals the committed f16 fixture" cmp -s "$tmp/f16.gguf" "$G/tiny-gpt2-f16.gguf"
"$TWIN" quantize "$G/tiny-gpt2-f16.gguf" "$tmp/f32.gguf" f32 >/dev/null 2>&1
"$TWIN" quantize "$tmp/f32.gguf" "$tmp/f16b.gguf" f16 >/dev/null 2>&1
check "f16 -> f32 -> f16 is lossless" cmp -s "$tmp/f16b.gguf" "$G/tiny-gpt2-f16.gguf"
"$TWIN" quantize "$G/tiny-gpt2-q8_0.gguf" "$tmp/same.gguf" q8_0 >/dev/null 2>&1
check "q8_0 -> q8_0 gives the file back" cmp -s "$tmp/same.gguf" "$G/tiny-gpt2-q8_0.gguf"

tinfo() { # tinfo FILE NAME TYPE: does gguf info list tensor NAME with TYPE?
    "$TWIN" gguf info "$1" | grep -qE "^  $2 +$3 "
}
kinfo() { # kinfo FILE KEY VALUE
    "$TWIN" gguf info "$1" | grep -qE "^  $2 +[a-z0-9]+ +$3$"
}
"$TWIN" quantize "$G/tiny-gpt2-f32.gguf" "$tmp/q8.gguf" q8_0 >"$tmp/out" 2>&1
check "f32 -> q8_0 exits 0" test $? -eq 0
check "q8_0: summary line" grep -q "tensors converted" "$tmp/out"
check "q8_0: token_embd q8_0" tinfo "$tmp/q8.gguf" 'token_embd\.weight' q8_0
check "q8_0: attn_qkv q8_0" tinfo "$tmp/q8.gguf" 'blk\.1\.attn_qkv\.weight' q8_0
check "q8_0: ffn_down q8_0" tinfo "$tmp/q8.gguf" 'blk\.0\.ffn_down\.weight' q8_0
check "q8_0: position_embd kept f32" tinfo "$tmp/q8.gguf" 'position_embd\.weight' f32
check "q8_0: norms kept f32" tinfo "$tmp/q8.gguf" 'blk\.0\.attn_norm\.weight' f32
check "q8_0: biases kept f32" tinfo "$tmp/q8.gguf" 'blk\.0\.ffn_up\.bias' f32
check "q8_0: general.file_type 7" kinfo "$tmp/q8.gguf" 'general\.file_type' 7
check "q8_0: quantization_version 2" kinfo "$tmp/q8.gguf" 'general\.quantization_version' 2
check "q8_0: metadata kept" kinfo "$tmp/q8.gguf" 'gpt2\.embedding_length' 32
# the fixture's q8_0 tensors were quantized from the same floats by the same function
for t in token_embd.weight blk.0.attn_qkv.weight blk.1.ffn_down.weight; do
    a="$("$TWIN" gguf info "$tmp/q8.gguf" | grep -E "^  ${t//./\\.} " | awk '{print $2, $3, $4, $5}')"
    b="$("$TWIN" gguf info "$G/tiny-gpt2-q8_0.gguf" | grep -E "^  ${t//./\\.} " | awk '{print $2, $3, $4, $5}')"
    check "q8_0: $t has the fixture's type and shape" test -n "$a" -a "$a" = "$b"
done
"$TWIN" quantize "$G/tiny-gpt2-f32.gguf" "$tmp/q4.gguf" q4_0 >/dev/null 2>&1
check "q4_0: attn_output q4_0" tinfo "$tmp/q4.gguf" 'blk\.0\.attn_output\.weight' q4_0
check "q4_0: tied head (token_embd) q8_0" tinfo "$tmp/q4.gguf" 'token_embd\.weight' q8_0
check "q4_0: general.file_type 2" kinfo "$tmp/q4.gguf" 'general\.file_type' 2
"$TWIN" quantize "$G/tiny-gpt2-f32.gguf" "$tmp/q4p.gguf" q4_1 --pure >/dev/null 2>&1
check "q4_1 --pure: token_embd q4_1" tinfo "$tmp/q4p.gguf" 'token_embd\.weight' q4_1
check "q4_1 --pure: general.file_type 3" kinfo "$tmp/q4p.gguf" 'general\.file_type' 3
"$TWIN" quantize "$G/tiny-gpt2-f32.gguf" "$tmp/bf.gguf" bf16 >/dev/null 2>&1
check "bf16: ffn_up bf16" tinfo "$tmp/bf.gguf" 'blk\.0\.ffn_up\.weight' bf16
"$TWIN" --threads 1 quantize "$G/tiny-gpt2-f32.gguf" "$tmp/q8t1.gguf" q8_0 >/dev/null 2>&1
check "one thread and many give the same file" cmp -s "$tmp/q8t1.gguf" "$tmp/q8.gguf"

# ---- SmolLM2 ----
MODEL="${TWIN_MODELS:-}/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -z "${TWIN_MODELS:-}" ] || [ ! -f "$MODEL" ]; then
    echo "SKIP: $MODEL not present (twin model fetch smollm2-135m)" >&2
    [ $fail -eq 0 ] && exit 77
    exit 1
fi
"$TWIN" quantize "$MODEL" "$tmp/s41.gguf" q4_1 >/dev/null 2>&1
check "SmolLM2 q4_1 -> q4_1 is llama.cpp's file byte for byte" cmp -s "$tmp/s41.gguf" "$MODEL"
rm -f "$tmp/s41.gguf"
"$TWIN" quantize "$MODEL" "$tmp/s8.gguf" q8_0 >"$tmp/out" 2>"$tmp/err"
check "SmolLM2 -> q8_0 exits 0" test $? -eq 0
check "SmolLM2 -> q8_0 notes the requantization" grep -q "already quantized" "$tmp/err"
check "SmolLM2 q8_0: 144811072 bytes" test "$(stat -c %s "$tmp/s8.gguf")" -eq 144811072
check "SmolLM2 q8_0: attn_k q8_0" tinfo "$tmp/s8.gguf" 'blk\.29\.attn_k\.weight' q8_0
check "SmolLM2 q8_0: chat template kept" kinfo "$tmp/s8.gguf" 'tokenizer\.chat_template' '".*'
check "SmolLM2 q8_0: tokens kept" kinfo "$tmp/s8.gguf" 'tokenizer\.ggml\.tokens' '\[string x 49152\].*'
"$TWIN" quantize "$MODEL" "$tmp/s16.gguf" f16 >/dev/null 2>&1
check "SmolLM2 f16: 270885952 bytes" test "$(stat -c %s "$tmp/s16.gguf")" -eq 270885952
check "SmolLM2 f16: token_embd f16" tinfo "$tmp/s16.gguf" 'token_embd\.weight' f16

# llama.cpp's own quantizer, when the anchor is built: the same type and bytes in every tensor
# (llama-quantize lays the tensors out in another order, so they are compared by name)
tensor_hashes() { # tensor_hashes FILE: "name type sha256" per tensor, sorted by name
    local f="$1" off name type n at
    "$TWIN" gguf info "$f" >"$tmp/hinfo" || return 1
    off="$(sed -n 's/^data offset: //p' "$tmp/hinfo")"
    awk '/^tensors: /{t = 1; next} t && /^  / {print $1, $2, $(NF-3), $NF}' "$tmp/hinfo" |
        while read -r name type n at; do
            echo "$name $type $(tail -c +$((off + at + 1)) "$f" | head -c "$n" | sha256sum | cut -c1-64)"
        done | sort
}
LBIN="${TWIN_LLAMA_BIN:-}"
if [ -z "$LBIN" ] && [ -n "${TWIN_SRC:-}" ]; then
    LBIN="$(bash "$TWIN_SRC/bench/llama_anchor.sh" --print 2>/dev/null || true)"
fi
if [ -n "$LBIN" ] && [ -x "$LBIN/llama-quantize" ]; then
    for pair in "Q8_0 s8" "F16 s16"; do
        set -- $pair
        "$LBIN/llama-quantize" --allow-requantize "$MODEL" "$tmp/l.gguf" "$1" 1 >"$tmp/lq.log" 2>&1
        check "llama-quantize $1 ran" test $? -eq 0
        tensor_hashes "$tmp/$2.gguf" >"$tmp/h.ours"
        tensor_hashes "$tmp/l.gguf" >"$tmp/h.theirs"
        check "$1: 272 tensors hashed" test "$(wc -l <"$tmp/h.ours")" -eq 272
        check "$1: every tensor's type and bytes equal llama-quantize's" cmp -s "$tmp/h.ours" "$tmp/h.theirs"
        rm -f "$tmp/l.gguf"
    done
else
    echo "skip: llama-quantize not built (bench/llama_anchor.sh or TWIN_LLAMA_BIN)"
fi

# llama.cpp loads our files and predicts the same next tokens as on the original
PY="${TWIN_PYTHON:-python3}"
if [ -n "${TWIN_SRC:-}" ] && "$PY" -c "import llama_cpp, numpy" >/dev/null 2>&1; then
    "$PY" "$TWIN_SRC/tools/gen_llama_golden.py" --compare "$MODEL" "$tmp/s8.gguf" >"$tmp/cmp8" 2>&1
    check "llama.cpp on our q8_0: same top-1 on every prompt" test $? -eq 0
    cat "$tmp/cmp8"
    "$PY" "$TWIN_SRC/tools/gen_llama_golden.py" --compare "$MODEL" "$tmp/s16.gguf" >"$tmp/cmp16" 2>&1
    check "llama.cpp on our f16: same top-1 on every prompt" test $? -eq 0
    cat "$tmp/cmp16"
else
    echo "skip: llama-cpp-python not installed (llama.cpp loading our files)"
fi
exit "$fail"
