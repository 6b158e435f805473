#!/bin/bash
# test_merge_cli.sh: twin merge on a tiny llama GGUF and adapters for it written by
# test_lora --write-fixture (a C program linking libtwin). The PEFT folder and the GGUF LoRA of
# the same adapter merge into byte-identical files; the merged file is a GGUF twin reads with
# the merged weights changed and the others copied; --type q8_0 converts the weight matrices;
# an adapter for another base (stored hash, dimensions) is refused naming the difference; usage
# errors exit 2. (The arithmetic of the merge is checked in test_lora.)
. "$(dirname "$0")/../lib.sh"
test_init merge_cli
fx="$(dirname "$TWIN")/test_lora"
[ -x "$fx" ] || { echo "SKIP: $fx not built" >&2; exit 77; }
check "fixture" "$fx" --write-fixture "$tmp"
base="$tmp/tiny-llama.gguf"

check "merge PEFT" "$TWIN" merge -m "$base" --lora "$tmp/adapter" -o "$tmp/m1.gguf"
check "merge GGUF LoRA" "$TWIN" merge -m "$base" --lora "$tmp/adapter.gguf" -o "$tmp/m2.gguf"
check "same merged file from both adapter formats" cmp -s "$tmp/m1.gguf" "$tmp/m2.gguf"
check "merged differs from the base" bash -c "! cmp -s '$base' '$tmp/m1.gguf'"
info="$("$TWIN" gguf info "$tmp/m1.gguf")"
check "merged file readable, tensors kept" grep -q 'blk.1.ffn_up.weight' <<<"$info"

check "merge --type q8_0" "$TWIN" merge -m "$base" --lora "$tmp/adapter" -o "$tmp/m3.gguf" --type q8_0
info="$("$TWIN" gguf info "$tmp/m3.gguf")"
check "q8_0 weights" grep -qE 'blk.0.attn_q.weight.*q8_0' <<<"$info"
check "no temporary left" bash -c "! ls '$tmp' | grep -q merge-f32"

"$TWIN" merge -m "$base" --lora "$tmp/other-hash.gguf" -o "$tmp/x.gguf" 2>"$tmp/err"; rc=$?
check "other base hash: exit 1" test $rc = 1
check "other base hash: says sha256" grep -q 'sha256' "$tmp/err"
check "other base hash: one line" test "$(wc -l <"$tmp/err")" = 1
"$TWIN" merge -m "$base" --lora "$tmp/other-dims" -o "$tmp/x.gguf" 2>"$tmp/err"; rc=$?
check "other dims: exit 1" test $rc = 1
check "other dims: names the tensor" grep -q "up_proj.lora_B.weight' has shape \[128, 4\]" "$tmp/err"
check "nothing written on failure" test ! -e "$tmp/x.gguf"
"$TWIN" merge -m "$base" --lora "$tmp/adapter" 2>"$tmp/err"; rc=$?
check "missing -o: exit 2" test $rc = 2
"$TWIN" merge -m "$base" --lora "$tmp/adapter" -o "$tmp/y.gguf" --type q4_K 2>"$tmp/err"; rc=$?
check "bad --type: exit 2" test $rc = 2
"$TWIN" merge -m "$base" --lora "$tmp/nonexistent" -o "$tmp/y.gguf" 2>"$tmp/err"; rc=$?
check "missing adapter: exit 1" test $rc = 1
check "missing adapter: named" grep -q "nonexistent" "$tmp/err"
check "merge --help" bash -c "\"$TWIN\" merge --help | grep -q '^usage: twin merge'"
exit "$fail"
