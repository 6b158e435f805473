#!/usr/bin/env bash
# test_gguf_info.sh: `twin gguf info` as a user runs it: usage and exit statuses, the real
# SmolLM2-135M-Instruct Q4_1 file (skipped, exit 77, when it has not been fetched), and
# truncated copies of it, which must give exit 1 and one error line naming the file and field.
# The expected figures (272 tensors, 134515008 parameters, ...) were checked against the
# independent gguf-py reader (pip package gguf).
. "$(dirname "$0")/../lib.sh"
test_init gguf_info

# ---- usage, without a model ----
"$TWIN" gguf --help >"$tmp/out" 2>&1
check "gguf --help exits 0" test $? -eq 0
check "gguf --help shows the usage" grep -q "usage: twin gguf info FILE" "$tmp/out"
"$TWIN" gguf info --help >"$tmp/out" 2>&1
check "gguf info --help exits 0" test $? -eq 0
"$TWIN" gguf >/dev/null 2>&1
check "gguf without a subcommand exits 2" test $? -eq 2
"$TWIN" gguf info >/dev/null 2>"$tmp/err"
check "gguf info without FILE exits 2" test $? -eq 2
"$TWIN" gguf frobnicate x >/dev/null 2>&1
check "unknown subcommand exits 2" test $? -eq 2
"$TWIN" gguf info "$tmp/does-not-exist.gguf" >/dev/null 2>"$tmp/err"
check "missing file exits 1" test $? -eq 1
check "missing file: one line naming it" \
    test "$(wc -l <"$tmp/err")" -eq 1 -a -n "$(grep -F "$tmp/does-not-exist.gguf" "$tmp/err")"
printf 'GGUF\001\000\000\000' >"$tmp/v1.gguf"
"$TWIN" gguf info "$tmp/v1.gguf" >/dev/null 2>"$tmp/err"
check "GGUF v1 exits 1 with a clear reason" \
    test $? -eq 1 -a -n "$(grep -F "$tmp/v1.gguf: header: GGUF version 1 is not supported" "$tmp/err")"

MODEL="${TWIN_MODELS:-}/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -z "${TWIN_MODELS:-}" ] || [ ! -f "$MODEL" ]; then
    echo "SKIP: $MODEL not present (twin model fetch smollm2-135m)" >&2
    [ $fail -eq 0 ] && exit 77
    exit 1
fi

# ---- the real file ----
"$TWIN" gguf info "$MODEL" >"$tmp/info" 2>"$tmp/err"
check "info on SmolLM2 exits 0" test $? -eq 0
check "no stderr output" test ! -s "$tmp/err"
has() { grep -qE "$1" "$tmp/info"; }
check "version 3" has '^version: 3$'
check "alignment 32" has '^alignment: 32$'
check "data offset" has '^data offset: 1785664$'
check "33 metadata keys" has '^metadata: 33 keys$'
check "272 tensors" has '^tensors: 272$'
check "272 tensor lines" test "$(sed -n '/^tensors: /,/^total: /p' "$tmp/info" | grep -c '^  ')" -eq 272
check "architecture llama" has '^  general\.architecture +string +"llama"$'
check "block count" has '^  llama\.block_count +uint32 +30$'
check "rms epsilon" has '^  llama\.attention\.layer_norm_rms_epsilon +float32 +1e-05$'
check "bool value" has '^  tokenizer\.ggml\.add_bos_token +bool +false$'
check "vocabulary summarised" \
    has '^  tokenizer\.ggml\.tokens +array +\[string x 49152\] "<\|endoftext\|>", "<\|im_start\|>", "<\|im_end\|>", "<repo_name>", \.\.\.$'
check "merges summarised" has '^  tokenizer\.ggml\.merges +array +\[string x 48900\] "Ġ t", '
check "token types summarised" has '^  tokenizer\.ggml\.token_type +array +\[int32 x 49152\] 3, 3, '
check "chat template shortened" has '^  tokenizer\.chat_template +string +"\{% for message in messages %\}.*\.\.\. \(368 bytes\)$'
check "embedding tensor" has '^  token_embd\.weight +q8_0 +\[576, 49152\] +30081024 bytes +at 0$'
check "a q4_1 tensor" has '^  blk\.0\.attn_q\.weight +q4_1 +\[576, 576\] +207360 bytes +at 32020992$'
check "totals" has '^total: 134515008 parameters, 96576768 bytes of tensor data$'
check "longest line under 200 bytes" test "$(awk '{ if (length > m) m = length } END { print m }' "$tmp/info")" -lt 200

# ---- truncated copies: exit 1, one line, the file and the field named ----
size=$(stat -c %s "$MODEL")
for cut in 5 1000 1000000 1785664 $((size / 2)) $((size - 1)); do
    head -c "$cut" "$MODEL" >"$tmp/cut.gguf"
    "$TWIN" gguf info "$tmp/cut.gguf" >/dev/null 2>"$tmp/err"
    rc=$?
    check "truncated at $cut: exit 1" test $rc -eq 1
    check "truncated at $cut: one line naming the file" \
        test "$(wc -l <"$tmp/err")" -eq 1 -a -n "$(grep -F "$tmp/cut.gguf: " "$tmp/err")"
done
head -c 1000000 "$MODEL" >"$tmp/cut.gguf"
"$TWIN" gguf info "$tmp/cut.gguf" >/dev/null 2>"$tmp/err"
check "a cut in the vocabulary names the key" grep -qF "'tokenizer.ggml.merges'" "$tmp/err"
head -c $((size - 1)) "$MODEL" >"$tmp/cut.gguf"
"$TWIN" gguf info "$tmp/cut.gguf" >/dev/null 2>"$tmp/err"
check "a cut in the data names the last tensor" grep -qE "tensor 271 'output_norm\.weight'" "$tmp/err"

exit $fail
