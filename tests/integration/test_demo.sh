#!/usr/bin/env bash
# test_demo.sh: `twin demo` runs end to end on the fetched models, as the README's first
# command does: both models described, both tokenizers, BPE decode round trip identical; the
# corpus crawled, cleaned (duplicates marked), chunked, embedded, searched, and an answer
# generated from the best source; a second run finds everything unchanged.
. "$(dirname "$0")/../lib.sh"
models="${TWIN_MODELS:-}"
if [ -z "$models" ] || [ ! -f "$models/smollm2-135m/model.json" ] || [ ! -f "$models/minilm-l6/model.json" ]; then
  echo "SKIP: models not fetched in TWIN_MODELS" >&2
  exit 77
fi
ws="$(dirname "$models")"
test_init demo
# The demo keeps its warehouse in <workspace>/demo: start from an empty one in a copy of the
# workspace that shares the models.
mkdir -p "$tmp/ws"
ln -s "$models" "$tmp/ws/models"
ws="$tmp/ws"

out="$("$TWIN" --workspace "$ws" demo 2>/dev/null)"; rc=$?
check "twin demo exits 0" test "$rc" -eq 0
check "describes SmolLM2 from its GGUF" grep -q "llama, 30 layers, d_model 576, 9 heads (3 kv)" <<<"$out"
check "describes MiniLM from config.json" grep -q "bert: 6 layers, hidden 384, 12 heads" <<<"$out"
check "BPE decode round trip is identical" grep -q "decode round trip: identical" <<<"$out"
check "WordPiece adds [CLS] (101) and [SEP] (102)" grep -qE "ids: 101 .* 102$" <<<"$out"
check "the corpus is crawled" grep -qE "^crawled 1 source: [0-9]+ fetched, [0-9]+ new" <<<"$out"
check "cleaning marks the .txt copies of the pages as duplicates" \
    grep -qE "^clean: .* 24 cleaned, .*[1-9][0-9]* exact duplicates" <<<"$out"
check "chunks are made with minilm-l6" grep -qE "^chunk: 24 documents, [0-9]+ chunks.*minilm-l6" <<<"$out"
check "chunks are embedded into the index" grep -qE "^embedded [1-9][0-9]* chunks" <<<"$out"
check "search finds the sourdough notes first" grep -qE "^1\. 0\.[0-9]+  Notes on a sourdough starter" <<<"$out"
answer="$(sed -n '/^\$ twin generate/,/^not yet part/p' <<<"$out" | sed '1d;$d' | tr -d '[:space:]')"
check "SmolLM2 answers from the source" test -n "$answer"
check "the warehouse and index are in <workspace>/demo" \
    bash -c "test -f '$ws/demo/twin.db' && ls '$ws'/demo/index/*.hnsw >/dev/null"
out="$("$TWIN" --workspace "$ws" demo --text "Hello twin" -n 8 2>/dev/null)"
check "--text is tokenized (SmolLM2 ids of 'Hello twin')" grep -q "ids: 19556 18418$" <<<"$out"
check "a second run adds no document" grep -qE "^crawled 1 source: .* 0 new, 0 changed" <<<"$out"
check "... and embeds nothing" grep -qE "^embedded 0 chunks" <<<"$out"
"$TWIN" --workspace "$ws" demo --bogus >/dev/null 2>&1; rc=$?
check "unknown argument exits 2" test "$rc" -eq 2
"$TWIN" --workspace "$tmp/nowhere" demo >/dev/null 2>"$tmp/err"; rc=$?
check "missing models exit 1 with a hint to fetch" test "$rc" -eq 1
check "... naming twin model fetch" grep -q "twin model fetch" "$tmp/err"
exit "$fail"
