#!/usr/bin/env bash
# test_generate_cli.sh: `twin generate` and `twin chat` as a user runs them.
# Without a model: --help, usage errors (exit 2) and a file that is not a model (exit 1).
# With SmolLM2-135M-Instruct Q4_1 from $TWIN_MODELS (skipped, exit 77, when absent):
#   - greedy generation is deterministic and starts as llama.cpp's greedy continuation: the
#     expected texts are the "greedy_text" of the cases "capital" and "chatml" in
#     tests/data/llama/smollm2-135m.golden.json (llama.cpp through llama-cpp-python,
#     tools/gen_llama_golden.py); "chatml" is the prompt SmolLM2's own template renders for
#     one user message, so --chat (template, special tokens, tokenizer, streaming) is checked
#     end to end. The texts must agree over their first 12 and 16 tokens; that all 32 tokens
#     agree is test_llama_logits's claim, where the numerical tolerance is argued (a later
#     token whose top-2 margin is 0.03 may flip with the kernels' rounding);
#   - the same seed gives the same text, another seed another text;
#   - --stop cuts the text before the stop string;
#   - bad input: -n 0, an unknown chat template, a prompt longer than the context: one line,
#     exit 1; --ctx-size beyond the model's: exit 2;
#   - chat over a pipe with two messages answers twice and reuses the first turn's KV pages.
. "$(dirname "$0")/../lib.sh"
test_init generate_cli

"$TWIN" generate --help >"$tmp/out" 2>&1
check "generate --help exits 0" test $? -eq 0
check "generate --help names --chat-template" grep -q -- "--chat-template" "$tmp/out"
check "generate --help names --stop" grep -q -- "--stop" "$tmp/out"
"$TWIN" chat --help >"$tmp/out" 2>&1
check "chat --help exits 0" test $? -eq 0
"$TWIN" generate -p hi >/dev/null 2>"$tmp/err"
check "generate without -m exits 2" test $? -eq 2
check "... with one line" test "$(wc -l <"$tmp/err")" -eq 1
"$TWIN" generate -m x >/dev/null 2>"$tmp/err"
check "generate without -p exits 2" test $? -eq 2
"$TWIN" generate -m x -p hi --frobnicate >/dev/null 2>&1
check "an unknown option exits 2" test $? -eq 2
"$TWIN" generate -m x -p hi --top-p 1.5 >/dev/null 2>"$tmp/err"
check "--top-p 1.5 exits 2" test $? -eq 2
check "... naming the option" grep -q -- "--top-p" "$tmp/err"
"$TWIN" chat </dev/null >/dev/null 2>&1
check "chat without -m exits 2" test $? -eq 2
printf 'not a model' >"$tmp/notamodel.gguf"
# (--log-level warn: on a build without CUDA the backend's "using the CPU backend" info line
# would come before the error line)
"$TWIN" --log-level warn generate -m "$tmp/notamodel.gguf" -p hi >/dev/null 2>"$tmp/err"
check "a file that is not a model exits 1" test $? -eq 1
check "... with one line naming it" \
    test "$(wc -l <"$tmp/err" | tr -d ' ')" -eq 1 -a -n "$(grep -F "$tmp/notamodel.gguf" "$tmp/err")"

MODEL="${TWIN_MODELS:-}/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ -z "${TWIN_MODELS:-}" ] || [ ! -f "$MODEL" ]; then
    echo "SKIP: $MODEL is absent (twin model fetch smollm2-135m); the model checks did not run"
    [ "$fail" -eq 0 ] && exit 77
    exit 1
fi
gen() { "$TWIN" --threads 2 --log-level warn generate -m "$MODEL" "$@"; }

# llama.cpp's greedy continuations (greedy_text in tests/data/llama/smollm2-135m.golden.json)
capital=' Paris.

The United States has a population of approximately 311 million people.

The United States has a population of approximately 31'
chatml='The tallest mountain in the world is Mount Everest, also known as K2. However, the highest mountain on Earth is Mount Kilauea in Hawaii,'
capital12="${capital%% 311 million*}"    # the text of its first 12 tokens
chatml16="${chatml%% However,*}"          # the text of its first 16 tokens

out1="$(gen -p "The capital of France is" -n 32 --temp 0 2>"$tmp/err")"
check "greedy generate exits 0" test $? -eq 0
check "greedy text starts as llama.cpp's greedy continuation" test "${out1:0:${#capital12}}" = "$capital12"
check "the statistics line has both speeds and the stop reason" \
    grep -q "prompt 5 tokens.*tok/s; generated 32 tokens.*tok/s; stop length" "$tmp/err"
out2="$(gen -p "The capital of France is" -n 32 --temp 0 2>/dev/null)"
check "greedy generation is deterministic" test "$out1" = "$out2"

out="$(gen --chat -p "What is the tallest mountain in the world?" -n 32 --temp 0 2>/dev/null)"
check "--chat with SmolLM2's template starts as llama.cpp's greedy answer" \
    test "${out:0:${#chatml16}}" = "$chatml16"

s1="$(gen -p "Once upon a time" -n 24 --temp 1.2 --top-k 0 --top-p 1 --min-p 0 --seed 42 2>"$tmp/err")"
s2="$(gen -p "Once upon a time" -n 24 --temp 1.2 --top-k 0 --top-p 1 --min-p 0 --seed 42 2>/dev/null)"
s3="$(gen -p "Once upon a time" -n 24 --temp 1.2 --top-k 0 --top-p 1 --min-p 0 --seed 43 2>/dev/null)"
check "the same seed gives the same text" test -n "$s1" -a "$s1" = "$s2"
check "another seed gives another text" test "$s1" != "$s3"
check "the seed is reported" grep -q "seed 42" "$tmp/err"

out="$(gen -p "The capital of France is" -n 32 --temp 0 --stop "United" 2>"$tmp/err")"
check "--stop cuts the text before the stop string" test "$out" = "$(printf ' Paris.\n\nThe ')"
check "... and says why it stopped" grep -q "stop stop" "$tmp/err"

gen -p "The capital of France is" -n 0 >/dev/null 2>"$tmp/err"
check "-n 0 exits 1" test $? -eq 1
check "... with one line" test "$(wc -l <"$tmp/err" | tr -d ' ')" -eq 1
gen --chat --chat-template vicuna -p hi >/dev/null 2>"$tmp/err"
check "an unknown chat template exits 1" test $? -eq 1
check "... with one line listing the known ones" \
    test "$(wc -l <"$tmp/err" | tr -d ' ')" -eq 1 -a -n "$(grep "chatml, llama3" "$tmp/err")"
gen --ctx-size 8 -p "The lighthouse keeper had kept the same routine for thirty-one years." \
    >/dev/null 2>"$tmp/err"
check "a prompt longer than the context exits 1" test $? -eq 1
check "... with one line saying so" \
    test "$(wc -l <"$tmp/err" | tr -d ' ')" -eq 1 -a -n "$(grep "context holds 8" "$tmp/err")"
gen --ctx-size 100000 -p hi >/dev/null 2>&1
check "--ctx-size beyond the model's context exits 2" test $? -eq 2

printf 'What is 2+2?\n\nAnd what is 3+3?\n' |
    "$TWIN" --threads 2 --log-level warn chat -m "$MODEL" --temp 0 -n 16 >"$tmp/chat" 2>"$tmp/err"
check "chat over a pipe exits 0" test $? -eq 0
check "chat answered both messages" grep -q "twin chat: 2 turns" "$tmp/err"
check "the second turn reused the first turn's KV pages" \
    grep -q "computed ([1-9][0-9]* cached)" "$tmp/err"
check "chat printed the answers" test -s "$tmp/chat"
"$TWIN" --log-level warn chat -m "$MODEL" </dev/null >"$tmp/chat" 2>"$tmp/err"
check "chat at once at the end of input exits 0 with no output" test $? -eq 0 -a ! -s "$tmp/chat"
exit "$fail"
