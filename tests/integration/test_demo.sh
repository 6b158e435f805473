#!/usr/bin/env bash
# test_demo.sh: `twin demo` runs end to end on the fetched models, as the README's first
# command does: both models described, both tokenizers, BPE decode round trip identical.
. "$(dirname "$0")/../lib.sh"
models="${TWIN_MODELS:-}"
if [ -z "$models" ] || [ ! -f "$models/smollm2-135m/model.json" ] || [ ! -f "$models/minilm-l6/model.json" ]; then
  echo "SKIP: models not fetched in TWIN_MODELS" >&2
  exit 77
fi
ws="$(dirname "$models")"
test_init demo

out="$("$TWIN" --workspace "$ws" demo 2>/dev/null)"; rc=$?
check "twin demo exits 0" test "$rc" -eq 0
check "describes SmolLM2 from its GGUF" grep -q "llama, 30 layers, d_model 576, 9 heads (3 kv)" <<<"$out"
check "describes MiniLM from config.json" grep -q "bert: 6 layers, hidden 384, 12 heads" <<<"$out"
check "BPE decode round trip is identical" grep -q "decode round trip: identical" <<<"$out"
check "WordPiece adds [CLS] (101) and [SEP] (102)" grep -qE "ids: 101 .* 102$" <<<"$out"
out="$("$TWIN" --workspace "$ws" demo --text "Hello twin" 2>/dev/null)"
check "--text is tokenized (SmolLM2 ids of 'Hello twin')" grep -q "ids: 19556 18418$" <<<"$out"
"$TWIN" --workspace "$ws" demo --bogus >/dev/null 2>&1; rc=$?
check "unknown argument exits 2" test "$rc" -eq 2
"$TWIN" --workspace "$tmp/nowhere" demo >/dev/null 2>"$tmp/err"; rc=$?
check "missing models exit 1 with a hint to fetch" test "$rc" -eq 1
check "... naming twin model fetch" grep -q "twin model fetch" "$tmp/err"
exit "$fail"
