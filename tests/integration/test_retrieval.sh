#!/usr/bin/env bash
# test_retrieval: the retrieval half of RAG as a user runs it. A local folder (the 24 extraction
# fixture pages) is crawled, cleaned, chunked and embedded into the vector index; twin search
# finds the right documents, with filters; twin eval retrieval reaches a recall floor on the
# question/chunk pairs of tests/data/retrieval; a changed document leaves no stale vectors; a
# second embed does nothing; bad input gets a clear answer, never a crash.
. "$(dirname "$0")/../lib.sh"
test_init retrieval
models="${TWIN_MODELS:-}"
if [ -z "$models" ] || [ ! -f "$models/minilm-l6/model.safetensors" ]; then
    echo "skip: minilm-l6 not fetched (twin model fetch minilm-l6)"
    exit 77
fi
export TWIN_HOME="$tmp/ws"
mkdir -p "$TWIN_HOME" "$tmp/corpus"
ln -s "$models" "$TWIN_HOME/models"
cp "$TWIN_TEST_DATA"/extract/*.html "$tmp/corpus/"

"$TWIN" source add --author alice --platform local "$tmp/corpus" >/dev/null 2>&1
"$TWIN" crawl >/dev/null 2>&1 && "$TWIN" clean >/dev/null 2>&1 && "$TWIN" chunk >/dev/null 2>&1
check "pipeline before embed" [ $? -eq 0 ]

# Search before anything is embedded: an empty index is an answer, not an error.
out=$("$TWIN" search "tomatoes" 2>"$tmp/err")
check "search on an empty index exits 0" [ $? -eq 0 ]
check "search on an empty index says so" grep -q "index is empty" "$tmp/err"

"$TWIN" embed >"$tmp/embed.out" 2>"$tmp/embed.err"
check "embed exits 0" [ $? -eq 0 ]
n_chunks=$(sed -n 's/^embedded \([0-9]*\) chunks.*/\1/p' "$tmp/embed.out")
check "embed embedded the chunks ($n_chunks)" [ "${n_chunks:-0}" -ge 40 ]
check "index file in <workspace>/index" bash -c "ls '$TWIN_HOME'/index/*.hnsw >/dev/null"

"$TWIN" embed >"$tmp/embed2.out" 2>&1
check "a second embed embeds nothing" grep -q "^embedded 0 chunks, removed 0" "$tmp/embed2.out"

top=$("$TWIN" search "how do I keep a sourdough starter alive" --k 1 --json)
# Local documents are keyed by "file://" + the file's real path (crawl_local.c).
check "search finds the bread page" grep -qF "\"url\":\"file://$(realpath "$tmp/corpus")/10-minimal-bread.html\"" <<<"$top"
check "search prints a score, title and text" grep -q '"score":0\.[0-9]*,.*"title":".*"text":"' <<<"$top"
n=$("$TWIN" search "pointers in C" --k 7 --json | wc -l)
check "--k 7 gives 7 hits" [ "$n" -eq 7 ]
n=$("$TWIN" search "pointers in C" --k 5000 --json | wc -l)
check "--k larger than the index gives every chunk ($n = $n_chunks)" [ "$n" -eq "$n_chunks" ]
out=$("$TWIN" search "pointers in C" --k 0)
check "--k 0 prints nothing" [ $? -eq 0 -a -z "$out" ]
out=$("$TWIN" search "   " --k 3)
check "a blank query prints nothing" [ $? -eq 0 -a -z "$out" ]
long=$(cat "$TWIN_TEST_DATA/extract/03-wordpress-garden.txt" "$TWIN_TEST_DATA/extract/03-wordpress-garden.txt")
out=$("$TWIN" search "$long" --k 1 --json 2>"$tmp/err")
check "a query over the model's limit still answers" grep -q "03-wordpress-garden" <<<"$out"
check "... with a warning" grep -qi "truncated at" "$tmp/err"
check "a blank query or k=0 prints no complaint" true
out=$("$TWIN" search "pointers" --platform github --json 2>"$tmp/err")
check "a filter that matches nothing: empty result, exit 0" [ $? -eq 0 -a -z "$out" ]
"$TWIN" search "pointers" --platform myspace >/dev/null 2>"$tmp/err"
check "an unknown platform is a usage error" [ $? -eq 2 ]
check "... named in one line" [ "$(wc -l <"$tmp/err")" -eq 1 ]
out=$("$TWIN" search "pointers" --author nobody --json 2>"$tmp/err")
check "an unknown author: empty result" [ $? -eq 0 -a -z "$out" ]
n=$("$TWIN" search "pointers" --author alice --platform local --k 3 --json | wc -l)
check "author + platform filter keeps the hits" [ "$n" -eq 3 ]
"$TWIN" search >/dev/null 2>&1
check "no query is a usage error" [ $? -eq 2 ]

"$TWIN" eval retrieval --pairs "$TWIN_TEST_DATA/retrieval/pairs.jsonl" --k 5 --min-recall 0.9 \
    >"$tmp/eval.out" 2>&1
check "eval retrieval: recall@5 >= 0.9 ($(tail -1 "$tmp/eval.out"))" [ $? -eq 0 ]

# A changed document: its old chunks leave the index, the new ones come in.
old_ids=$("$TWIN" search "sourdough starter rye flour" --k 50 --json |
          grep '10-minimal-bread' | sed 's/.*"chunk_id":\([0-9]*\).*/\1/' | sort)
sed -i 's/sourdough starter/levain/g' "$tmp/corpus/10-minimal-bread.html"
"$TWIN" crawl >/dev/null 2>&1 && "$TWIN" clean >/dev/null 2>&1 && "$TWIN" chunk >/dev/null 2>&1
"$TWIN" embed >"$tmp/embed3.out" 2>&1
check "re-embed after a change removes the old vectors" grep -Eq "removed [1-9]" "$tmp/embed3.out"
new_ids=$("$TWIN" search "levain rye flour" --k 50 --json |
          grep '10-minimal-bread' | sed 's/.*"chunk_id":\([0-9]*\).*/\1/' | sort)
stale=$(comm -12 <(echo "$old_ids") <(echo "$new_ids") | grep -c . || true)
check "no stale chunk of the changed document is returned" [ "$stale" -eq 0 -a -n "$new_ids" ]
n_after=$("$TWIN" search "anything at all" --k 5000 --json | wc -l)
check "the index holds exactly the warehouse's chunks" [ "$n_after" -ge $((n_chunks - 5)) ]

# A damaged index file is refused with a clear error, not a crash.
f=$(ls "$TWIN_HOME"/index/*.hnsw)
printf 'garbage' | dd of="$f" bs=1 seek=100 conv=notrunc 2>/dev/null
"$TWIN" search "tomatoes" >/dev/null 2>"$tmp/err"
rc=$?
check "a damaged index: exit 1" [ $rc -eq 1 ]
check "... with one line naming the file" grep -q "$(basename "$f")" "$tmp/err"
exit "$fail"
