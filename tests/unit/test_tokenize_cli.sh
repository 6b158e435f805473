#!/usr/bin/env bash
# test_tokenize_cli.sh: `twin tokenize` as a user runs it: usage and exit statuses (no -m:
# 2; a file that is not a model: 1 and one line naming it), the --ids line and the per-token
# view on llama.cpp's GPT-2 test vocabulary ($TWIN_SHARED/testdata/tokenizer; the usage
# checks run without it, the rest is skipped, exit 77, when it is absent).
# Expected ids: "Hello world" -> 15496 995 is the vocabulary's own test vector
# (ggml-vocab-gpt-2.gguf.out); 50256 is <|endoftext|>.
. "$(dirname "$0")/../lib.sh"
test_init tokenize_cli

"$TWIN" tokenize --help >"$tmp/out" 2>&1
check "tokenize --help exits 0" test $? -eq 0
check "--help documents --ids and the per-token view" grep -q -- "--ids" "$tmp/out"
echo hi | "$TWIN" tokenize >/dev/null 2>"$tmp/err"
check "no -m exits 2" test $? -eq 2
check "no -m: one line" test "$(wc -l <"$tmp/err")" -eq 1
echo hi | "$TWIN" tokenize -m x --frobnicate >/dev/null 2>&1
check "unknown option exits 2" test $? -eq 2
printf 'not a model' >"$tmp/notamodel.bin"
echo hi | "$TWIN" tokenize -m "$tmp/notamodel.bin" >/dev/null 2>"$tmp/err"
check "a file that is not a model exits 1" test $? -eq 1
check "not a model: one line naming the file" \
    test "$(wc -l <"$tmp/err")" -eq 1 -a -n "$(grep -F "$tmp/notamodel.bin" "$tmp/err")"
echo hi | "$TWIN" tokenize -m "$tmp/nothing-here.gguf" >/dev/null 2>"$tmp/err"
check "a missing model exits 1" test $? -eq 1

VOCAB="${TWIN_SHARED:-}/testdata/tokenizer/ggml-vocab-gpt-2.gguf"
if [ -z "${TWIN_SHARED:-}" ] || [ ! -f "$VOCAB" ]; then
    echo "SKIP: $VOCAB is absent; the output checks did not run"
    [ "$fail" -eq 0 ] && exit 77
    exit 1
fi

out="$(printf 'Hello world' | "$TWIN" tokenize -m "$VOCAB" --ids)"
check "--ids prints the ids on one line" test "$out" = "15496 995"
out="$(printf '' | "$TWIN" tokenize -m "$VOCAB" --ids)"
check "empty input gives an empty line" test "$out" = ""
out="$(printf 'Hello world' | "$TWIN" tokenize -m "$VOCAB")"
check "the default output is the ids on one line (ARCHITECTURE.md)" test "$out" = "15496 995"
printf 'Hello world' | "$TWIN" tokenize -m "$VOCAB" --pieces >"$tmp/out"
check "per-token view: id, tab, quoted piece" \
    test "$(cat "$tmp/out")" = "$(printf '15496\t"Hello"\n995\t" world"')"
printf 'a\tb\n"c\\' | "$TWIN" tokenize -m "$VOCAB" --pieces >"$tmp/out"
check "per-token view escapes tab, newline, quote, backslash" \
    grep -q -F '"\t"' "$tmp/out"
check "... and the newline" grep -q -F '"\n' "$tmp/out"
out="$(printf '<|endoftext|>' | "$TWIN" tokenize -m "$VOCAB" --ids)"
check "special text is plain text by default" test "$out" != "50256"
out="$(printf '<|endoftext|>' | "$TWIN" tokenize -m "$VOCAB" --ids --parse-special)"
check "--parse-special makes it the token" test "$out" = "50256"
printf '\377\376 ok' | "$TWIN" tokenize -m "$VOCAB" --pieces >"$tmp/out"
check "bytes that are not UTF-8 show as \\xNN" grep -q -F '\xff' "$tmp/out"
exit "$fail"
