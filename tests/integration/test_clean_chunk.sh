#!/bin/bash
# test_clean_chunk.sh: twin clean and twin chunk on a warehouse built through the CLI without
# the network: a local source folder of the Markdown, text and HTML files of
# tests/fixtures/clean/ (a repost whose cleaned text equals another post's, a draft that is a
# near duplicate of a note), crawled with twin crawl. Checks:
#   - clean marks the exact and the near duplicate (the newer document of each pair), keeps
#     apostrophes, emoji and code in the cleaned text, and fails nothing;
#   - chunk chunks the other three (duplicates get no chunks): sizes within --max-tokens, each
#     stored count equal to a fresh count by twin tokenize, headings as labels, the code block
#     whole in one chunk, the model's name as the tokenizer;
#   - a second clean + chunk (and clean --all) writes nothing;
#   - editing one file, then crawl + clean + chunk, re-chunks only that document: the other
#     chunks keep their ids, the old ids of that one are tombstoned;
#   - bad usage exits 2, an unknown author or model 1, with one-line errors.
# Needs MiniLM's tokenizer ($TWIN_MODELS/minilm-l6) and the sqlite3 shell to look inside the
# warehouse; skipped (77) without them.
. "$(dirname "$0")/../lib.sh"
test_init clean_chunk

MODEL="${TWIN_MODELS:-}/minilm-l6"
if [ -z "${TWIN_MODELS:-}" ] || [ ! -f "$MODEL/tokenizer.json" ]; then
    echo "SKIP: no minilm-l6 in TWIN_MODELS (twin model fetch minilm-l6)" >&2
    exit 77
fi
if ! command -v sqlite3 >/dev/null; then
    echo "SKIP: the sqlite3 shell is not installed" >&2
    exit 77
fi
FIX="${TWIN_SRC:?}/tests/fixtures/clean"
export TWIN_HOME="$tmp/ws"
mkdir -p "$tmp/src"
cp "$FIX"/* "$tmp/src/"
db="$TWIN_HOME/twin.db"
q() { sqlite3 -batch -noheader "$db" "$@"; }

"$TWIN" source add --author sam --platform local "$tmp/src" >/dev/null 2>"$tmp/err"
check "source add" test $? -eq 0
"$TWIN" crawl >"$tmp/out" 2>"$tmp/err"
check "crawl" grep -q "5 new" "$tmp/out"

# ---- clean -------------------------------------------------------------------------------
"$TWIN" clean >"$tmp/out" 2>"$tmp/err"
rc=$?
check "clean exits 0" test $rc -eq 0
check "clean summary" grep -qx "clean: 5 documents: 3 cleaned, 0 unchanged, 1 exact duplicates, 1 near duplicates, 0 failed" "$tmp/out"
check "clean progress on stderr" grep -q "clean \[5/5\]" "$tmp/err"
# Local documents are keyed by "file://" + the file's real path (crawl_local.c).
src_url="file://$(realpath "$tmp/src")"
id_of() { q "select id from documents where url = '$src_url/$1'"; }
orig=$(id_of essay-on-tools.md); repost=$(id_of essay-on-tools-repost.md)
notes=$(id_of field-notes.txt); draft=$(id_of field-notes-draft.txt)
html=$(id_of announcement.html)
# The older document (smaller id) of each pair is the original.
if [ "$orig" -lt "$repost" ]; then e_old=$orig e_new=$repost; else e_old=$repost e_new=$orig; fi
if [ "$notes" -lt "$draft" ]; then n_old=$notes n_new=$draft; else n_old=$draft n_new=$notes; fi
check "exact duplicate marked" test "$(q "select dup_of, dup_similarity from cleaned where document_id = $e_new")" = "$e_old|1.0"
check "exact original unmarked" test -z "$(q "select dup_of from cleaned where document_id = $e_old")"
sim=$(q "select dup_similarity from cleaned where document_id = $n_new and dup_of = $n_old")
check "near duplicate marked (similarity $sim)" awk -v s="$sim" 'BEGIN { exit !(s >= 0.8 && s < 1.0) }'
check "near original unmarked" test -z "$(q "select dup_of from cleaned where document_id = $n_old")"
check "html not a duplicate" test -z "$(q "select dup_of from cleaned where document_id = $html")"
"$TWIN" docs show "$e_old" >"$tmp/essay.txt"
check "front matter dropped" sh -c "! grep -q '^tags:' '$tmp/essay.txt'"
check "apostrophes kept" grep -q "I've been asked more than once why I don't just use what's already out there." "$tmp/essay.txt"
check "emoji kept" grep -q "teaches you. 📓" "$tmp/essay.txt"
check "code kept verbatim" grep -qxF "        if (buf[i] == '\n') lines++;" "$tmp/essay.txt"
"$TWIN" docs show "$html" >"$tmp/html.txt"
check "html main text" grep -q "A bug with a reproducer is a gift. 🎁" "$tmp/html.txt"
check "html boilerplate gone" sh -c "! grep -q 'All rights reserved' '$tmp/html.txt'"

# ---- chunk -------------------------------------------------------------------------------
"$TWIN" chunk -m "$MODEL" --max-tokens 128 --overlap 24 >"$tmp/out" 2>"$tmp/err"
rc=$?
check "chunk exits 0" test $rc -eq 0
check "chunk summary" grep -q "^chunk: 3 documents, [0-9]* chunks, [0-9]* tokens (mean [0-9.]*, largest [0-9]* of 128) with minilm-l6, 0 failed$" "$tmp/out"
check "duplicates not chunked" test "$(q "select count(*) from chunks where document_id in ($e_new, $n_new)")" -eq 0
check "each original chunked" test "$(q "select count(distinct document_id) from chunks")" -eq 3
check "essay in several chunks" test "$(q "select count(*) from chunks where document_id = $e_old")" -ge 4
check "sizes within the limit" test "$(q "select count(*) from chunks where n_tokens < 1 or n_tokens > 128")" -eq 0
check "tokenizer recorded" test "$(q "select distinct tokenizer from chunks")" = "minilm-l6"
check "positions in order" test "$(q "select count(*) from chunks c where position > 0 and not exists (select 1 from chunks p where p.document_id = c.document_id and p.position = c.position - 1 and p.id < c.id)")" -eq 0
# Each stored count equals a fresh count (twin tokenize, special tokens not added).
bad=0
for cid in $(q "select id from chunks"); do
    want=$(q "select n_tokens from chunks where id = $cid")
    got=$(q "select text from chunks where id = $cid" | "$TWIN" tokenize -m "$MODEL" | wc -w)
    [ "$want" -eq "$got" ] || { echo "chunk $cid: stored $want, counted $got" >&2; bad=1; }
done
check "stored counts are fresh counts" test $bad -eq 0
check "heading labels" test "$(q "select count(*) from chunks where document_id = $e_old and heading = 'A tiny example'")" -ge 1
check "code block whole in one chunk" test "$(q "select count(*) from chunks where document_id = $e_old and text like '%static size_t count_lines(%' and text like '%return lines + (n > 0%'")" -eq 1
check "overlap between chunks" test "$(q "select count(*) from chunks a join chunks b on a.document_id = b.document_id and b.position = a.position + 1 where instr(a.text, substr(b.text, 1, 30)) > 0")" -ge 1

# ---- a second run changes nothing --------------------------------------------------------
snap() { q "select id, document_id, position, text_hash, made_at from chunks order by id; select document_id, text_hash, dup_of, cleaned_at from cleaned order by document_id; select count(*) from chunk_tombstones"; }
snap >"$tmp/before"
q "select id, document_id, position, text_hash, made_at from chunks order by id" >"$tmp/chunks_before"
"$TWIN" clean >"$tmp/out" 2>"$tmp/err"
check "second clean: nothing to do" grep -qx "clean: 0 documents: 0 cleaned, 0 unchanged, 0 exact duplicates, 0 near duplicates, 0 failed" "$tmp/out"
"$TWIN" chunk -m "$MODEL" --max-tokens 128 --overlap 24 >"$tmp/out" 2>"$tmp/err"
check "second chunk: nothing to do" grep -q "^chunk: 0 documents, 0 chunks" "$tmp/out"
snap >"$tmp/after"
check "second run wrote nothing" cmp -s "$tmp/before" "$tmp/after"
"$TWIN" clean --all >"$tmp/out" 2>"$tmp/err"
check "clean --all: originals unchanged" grep -qx "clean: 5 documents: 0 cleaned, 3 unchanged, 1 exact duplicates, 1 near duplicates, 0 failed" "$tmp/out"
q "select id, document_id, position, text_hash, made_at from chunks order by id" >"$tmp/chunks_after_all"
check "clean --all kept the chunks" cmp -s "$tmp/chunks_before" "$tmp/chunks_after_all"

# ---- editing one file re-chunks only that document ---------------------------------------
q "select id from chunks where document_id = $html order by id" >"$tmp/html_old"
q "select id, text_hash from chunks where document_id != $html order by id" >"$tmp/others_before"
max_old=$(q "select max(id) from chunks")
sed -i 's|<p>Thanks to everyone|<p>Version 2.0.1 followed a week later with two fixes: paths with spaces and a crash on empty files.</p>\n<p>Thanks to everyone|' "$tmp/src/announcement.html"
"$TWIN" crawl >"$tmp/out" 2>"$tmp/err"
check "crawl sees one change" grep -q "1 changed" "$tmp/out"
"$TWIN" clean >"$tmp/out" 2>"$tmp/err"
check "clean redoes the changed one" grep -qx "clean: 1 documents: 1 cleaned, 0 unchanged, 0 exact duplicates, 0 near duplicates, 0 failed" "$tmp/out"
"$TWIN" chunk -m "$MODEL" --max-tokens 128 --overlap 24 >"$tmp/out" 2>"$tmp/err"
check "chunk redoes one document" grep -q "^chunk: 1 documents," "$tmp/out"
q "select id, text_hash from chunks where document_id != $html order by id" >"$tmp/others_after"
check "other documents' chunks untouched" cmp -s "$tmp/others_before" "$tmp/others_after"
tomb_ok=1
while read -r cid; do
    [ "$(q "select count(*) from chunk_tombstones where chunk_id = $cid")" -eq 1 ] || tomb_ok=0
done <"$tmp/html_old"
check "old chunk ids tombstoned" test $tomb_ok -eq 1
check "new chunk ids are new" test "$(q "select min(id) from chunks where document_id = $html")" -gt "$max_old"
check "the edit is in the chunks" test "$(q "select count(*) from chunks where document_id = $html and text like '%Version 2.0.1 followed%'")" -eq 1

# ---- usage and errors --------------------------------------------------------------------
"$TWIN" clean --help >"$tmp/out" 2>&1
check "clean --help" grep -q "usage: twin clean" "$tmp/out"
"$TWIN" chunk --help >"$tmp/out" 2>&1
check "chunk --help" grep -q "usage: twin chunk" "$tmp/out"
"$TWIN" clean --bogus >/dev/null 2>"$tmp/err"
check "clean bad option exits 2" test $? -eq 2
check "clean names the option" grep -q -- "--bogus" "$tmp/err"
"$TWIN" chunk --overlap 64 --max-tokens 128 >/dev/null 2>"$tmp/err"
check "chunk overlap too large exits 2" test $? -eq 2
check "chunk names --overlap" grep -q -- "--overlap" "$tmp/err"
"$TWIN" chunk --max-tokens 3 >/dev/null 2>"$tmp/err"
check "chunk max-tokens too small exits 2" test $? -eq 2
"$TWIN" clean --author nobody >/dev/null 2>"$tmp/err"
check "clean unknown author exits 1" test $? -eq 1
check "one-line error naming the author" test "$(wc -l <"$tmp/err")" -eq 1 -a -n "$(grep nobody "$tmp/err")"
"$TWIN" chunk -m "$tmp/no-such-model" >/dev/null 2>"$tmp/err"
check "chunk unknown model exits 1" test $? -eq 1
check "chunk error names the model" grep -q "no-such-model" "$tmp/err"
exit "$fail"
