#!/usr/bin/env bash
# test_crawl_linkedin_local.sh: the LinkedIn export and local folder crawlers as a user runs
# them (twin source add, twin crawl, twin docs export), on tests/fixtures/linkedin/ and
# tests/fixtures/local/:
#   linkedin  the unpacked export and the same export zipped (Python's zipfile, in a top folder
#             as LinkedIn's own archive has it): one "text" document per post with commentary
#             (multi-line, doubled quotes, BOM and CRLF of Shares.csv handled; dates in ISO
#             8601), empty commentary rows SKIPPED with a reason, articles as "html" with their
#             page title; a second crawl parses nothing and adds no rows; a folder that is not
#             an export is a one-line error;
#   local     markdown / text / html files found recursively with titles from the first heading
#             or the file name; hidden files and folders passed over; a symlink, a binary and
#             an unknown extension SKIPPED with reasons; a file over the size cap SKIPPED; a
#             second crawl reads nothing (mtime + size) and adds no rows; an edited file becomes
#             version 2; documents keyed "file://<real path>", so a second folder of the same
#             author with the same relative paths gets its own documents (a space in its name
#             percent-encoded) and leaves the first folder's alone.
. "$(dirname "$0")/../lib.sh"
test_init crawl_linkedin_local
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
SRC="${TWIN_SRC:?TWIN_SRC is not set}"
# The interpreter itself, without site packages: a version manager's shim costs ~0.4 s a call
# and this test makes dozens of small ones (standard library only).
PY="$(python3 -c 'import sys; print(sys.executable)')"
py() { "$PY" -S "$@"; }
ws="$tmp/ws"
tw() { "$TWIN" --workspace "$ws" "$@"; }
q() {
    py - "$ws/twin.db" "$1" <<'EOF'
import sqlite3, sys
for row in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]):
    print("|".join("" if v is None else str(v) for v in row))
EOF
}
json_field() { py -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }
rows() { echo "$(q "SELECT count(*) FROM documents") $(q "SELECT count(*) FROM document_versions")"; }

# ---- LinkedIn: the unpacked export --------------------------------------------------------------
export_dir="$tmp/export"
cp -r "$SRC/tests/fixtures/linkedin/export" "$export_dir"
check "source add (linkedin folder)" tw source add --author wren --platform linkedin "$export_dir" >/dev/null
tw crawl --author wren --json >"$tmp/li1.json" 2>"$tmp/li1.err"
check "linkedin crawl exits 0" test $? -eq 0
check "linkedin: 5 new documents (3 posts, 2 articles)" test "$(json_field "$tmp/li1.json" 'j["totals"]["new"]')" = 5
check "linkedin: 2 skipped (empty commentary)" test "$(json_field "$tmp/li1.json" 'j["totals"]["skipped"]')" = 2
tw docs export --author wren >"$tmp/li.jsonl"
py - "$tmp/li.jsonl" <<'EOF' >"$tmp/li_check.out" 2>&1
import json, sys
docs = {d["url"]: d for d in (json.loads(l) for l in open(sys.argv[1]) if l.strip())}
ok = True
def expect(what, got, want):
    global ok
    if got != want:
        print(f"{what}: got {got!r}, want {want!r}")
        ok = False
share = "https://www.linkedin.com/feed/update/urn:li:share:"
p1 = docs.get(share + "7186600000000000001", {})
expect("multi-line post", p1.get("content"),
       "Three things I learned shipping a tide predictor to fishermen:\r\n\r\n"
       "1. Nobody reads the \"accuracy\" column.\r\n2. Everybody reads the time of low water.\r\n"
       "3. If it is wrong once, it is wrong forever.")
expect("post date", p1.get("published_at"), "2024-04-18T07:42:10Z")
expect("post title", p1.get("title"), "Three things I learned shipping a tide predictor to fishermen:")
expect("platform", p1.get("platform"), "linkedin")
p5 = docs.get(share + "7127000000000000005", {})
expect("unquoted post", p5.get("content"),
       "Plain unquoted post: a bowline holds until you want it not to. Learned that on a quay in Brest.")
expect("long title cut at a word", p5.get("title"),
       "Plain unquoted post: a bowline holds until you want it not to. Learned that on a\u2026")
expect("empty commentary rows are not documents",
       [u for u in docs if u.endswith(("7169800000000000002", "7144700000000000004"))], [])
art = [d for u, d in docs.items() if u.startswith("file:Articles/Articles/")]
expect("articles", sorted(d["title"] for d in art),
       ["Lenses & light", "Why I still carry a paper tide table"])
for d in art:
    if "<h1>" not in d["content"]:
        print("article content is not the page:", d["url"])
        ok = False
a1 = [d for d in art if "paper" in d["title"]]
expect("article date from its name", a1[0]["published_at"] if a1 else None, "2023-09-14T08:30:00Z")
expect("document count", len(docs), 5)
print("OK" if ok else "MISMATCH")
EOF
check "linkedin documents: posts, dates, titles, articles" grep -qx OK "$tmp/li_check.out"
grep -vx OK "$tmp/li_check.out" >&2
check "linkedin: post types are text, articles html" \
    test "$(q "SELECT group_concat(content_type || ':' || n) FROM (SELECT content_type, count(*) AS n FROM documents GROUP BY content_type ORDER BY content_type)")" = "html:2,text:3"
check "linkedin: empty commentary skips say why" \
    test "$(q "SELECT count(*) FROM crawl_events WHERE kind = 2 AND reason LIKE 'empty commentary%'")" = 2
before="$(rows)"
tw crawl --author wren --json >"$tmp/li2.json" 2>"$tmp/li2.err"
check "linkedin second crawl exits 0" test $? -eq 0
check "linkedin second crawl: nothing parsed (3 files unchanged)" \
    test "$(json_field "$tmp/li2.json" '(j["totals"]["fetched"], j["totals"]["unchanged"], j["totals"]["new"])')" = "(0, 3, 0)"
check "linkedin second crawl: no rows added" test "$(rows)" = "$before"

# ---- LinkedIn: the zip, members in a top folder --------------------------------------------------
py - "$SRC/tests/fixtures/linkedin/export" "$tmp/Basic_LinkedInDataExport.zip" <<'EOF'
import os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
    for root, _, files in sorted(os.walk(src)):
        for f in sorted(files):
            p = os.path.join(root, f)
            z.write(p, "Basic_LinkedInDataExport_05-01-2024/" + os.path.relpath(p, src))
EOF
check "source add (linkedin zip)" tw source add --author zipper --platform linkedin "$tmp/Basic_LinkedInDataExport.zip" >/dev/null
tw crawl --author zipper --json >"$tmp/li3.json" 2>"$tmp/li3.err"
check "linkedin zip crawl exits 0" test $? -eq 0
check "linkedin zip: the same 5 documents" test "$(json_field "$tmp/li3.json" '(j["totals"]["new"], j["totals"]["skipped"])')" = "(5, 2)"
check "linkedin zip: same contents as the folder" \
    test "$(q "SELECT count(*) FROM documents a JOIN documents b ON a.url = b.url AND a.content_hash = b.content_hash AND a.author_id < b.author_id")" = 5

# ---- LinkedIn: not an export ---------------------------------------------------------------------
mkdir -p "$tmp/not-an-export"
echo "hello" >"$tmp/not-an-export/readme.txt"
tw source add --author lost --platform linkedin "$tmp/not-an-export" >/dev/null 2>&1
tw crawl --author lost >"$tmp/li4.out" 2>"$tmp/li4.err"
check "a folder that is not an export: exit 1" test $? -eq 1
check "... with a one-line error saying so" grep -q "not a LinkedIn data export" "$tmp/li4.err" "$tmp/li4.out"

# ---- local folder ---------------------------------------------------------------------------------
notes="$tmp/notes"
cp -r "$SRC/tests/fixtures/local/notes" "$notes"
ln -s essay.md "$notes/link-to-essay.md"
py -c "import sys; open(sys.argv[1], 'w').write('# Too big\n' + 'x' * (1 << 20))" "$notes/huge.md"
check "source add (local)" tw source add --author wren --platform local "$notes" >/dev/null
# Local documents are keyed by "file://" + the file's real path (mktemp's names need no
# percent-encoding; test_crawl_local_keys.sh checks names that do).
nurl="file://$(realpath "$notes")"
tw crawl --author wren --json >"$tmp/lo1.json" 2>"$tmp/lo1.err"
check "local crawl exits 0" test $? -eq 0
check "local: 5 new documents" test "$(json_field "$tmp/lo1.json" 'j["totals"]["new"]')" = 5
tw docs export --author wren --platform local >"$tmp/lo.jsonl"
py - "$tmp/lo.jsonl" "$notes" "$nurl" <<'EOF' >"$tmp/lo_check.out" 2>&1
import json, os, sys
docs = {d["url"]: d for d in (json.loads(l) for l in open(sys.argv[1]) if l.strip())}
notes, base = sys.argv[2], sys.argv[3] + "/"
want = {
    base + "essay.md": "On slow harbours",
    base + "journal/2024-05-01.txt": "2024-05-01",
    base + "journal/deep/nested.markdown": "Knots worth knowing",
    base + "page.html": "Harbour lights, a list",
    base + "untitled-thoughts.md": "untitled-thoughts",
}
ok = True
if {u: d["title"] for u, d in docs.items()} != want:
    print("documents/titles differ:", {u: d["title"] for u, d in docs.items()})
    ok = False
for u, d in docs.items():
    if u in want and d["content"] != open(os.path.join(notes, u[len(base):]), encoding="utf-8").read():
        print("content differs:", u)
        ok = False
print("OK" if ok else "MISMATCH")
EOF
check "local documents: the 5 text files with titles and exact content" grep -qx OK "$tmp/lo_check.out"
grep -vx OK "$tmp/lo_check.out" >&2
q "SELECT url || ' => ' || reason FROM crawl_events WHERE kind = 2 AND url LIKE 'file://%'" >"$tmp/lo_skips"
for want in \
    "$nurl/link-to-essay.md => symlink (links are not followed)" \
    "$nurl/journal/corrupt.txt => binary (NUL bytes)" \
    "$nurl/photo.jpg => not a text file (.jpg" \
    "$nurl/huge.md => too large ("; do
    check "local skipped: $want" grep -qF "$want" "$tmp/lo_skips"
done
check "hidden files and folders leave no trace" test "$(q "SELECT count(*) FROM crawl_events WHERE url LIKE '%hidden%' OR url LIKE '%drafts%' OR url LIKE '%secret%'")" = 0
check "local types: markdown, text, html" \
    test "$(q "SELECT group_concat(content_type, ',') FROM (SELECT content_type FROM documents WHERE platform = 'local' ORDER BY url)")" = "markdown,text,markdown,html,markdown"
before="$(rows)"
tw crawl --author wren --json >"$tmp/lo2.json" 2>"$tmp/lo2.err"
check "local second crawl exits 0" test $? -eq 0
check "local second crawl: nothing read, nothing new" \
    test "$(json_field "$tmp/lo2.json" '[s for s in j["sources"] if s["platform"] == "local"][0]["fetched"]')" = 0
check "local second crawl: no rows added" test "$(rows)" = "$before"
printf '\nA line added later.\n' >>"$notes/journal/2024-05-01.txt"
tw crawl --author wren --json >"$tmp/lo3.json" 2>"$tmp/lo3.err"
check "local third crawl: the edited file only" \
    test "$(json_field "$tmp/lo3.json" '[(s["fetched"], s["changed"], s["new"]) for s in j["sources"] if s["platform"] == "local"][0]')" = "(1, 1, 0)"
check "the edited file is version 2" test "$(q "SELECT version FROM documents WHERE url = '$nurl/journal/2024-05-01.txt'")" = 2

# ---- a second local folder of the same author, with the same relative paths ---------------------
# Its documents are its own (keyed by the folder), the first folder's stay as they were; a name
# with a space is percent-encoded in the URL.
copy="$tmp/notes copy"
mkdir -p "$copy/journal"
printf '# Fast rivers\n\nAnother essay under the same name.\n' >"$copy/essay.md"
printf 'A different day.\n' >"$copy/journal/2024-05-01.txt"
curl_="file://$(realpath "$tmp")/notes%20copy"
first="$(q "SELECT id, version, content_hash FROM documents WHERE url LIKE '$nurl/%' ORDER BY id")"
check "source add (second local folder)" tw source add --author wren --platform local "$copy" >/dev/null
tw crawl --author wren --json >"$tmp/lo4.json" 2>"$tmp/lo4.err"
check "second folder: 2 new documents, none changed" \
    test "$(json_field "$tmp/lo4.json" '(j["totals"]["new"], j["totals"]["changed"])')" = "(2, 0)"
check "second folder: its essay under its own URL" \
    test "$(q "SELECT title FROM documents WHERE url = '$curl_/essay.md'")" = "Fast rivers"
check "second folder: the journal entry too" \
    test "$(q "SELECT count(*) FROM documents WHERE url = '$curl_/journal/2024-05-01.txt'")" = 1
check "the first folder's documents are untouched" \
    test "$(q "SELECT id, version, content_hash FROM documents WHERE url LIKE '$nurl/%' ORDER BY id")" = "$first"
before="$(rows)"
tw crawl --author wren --json >"$tmp/lo5.json" 2>"$tmp/lo5.err"
check "both folders again: nothing read, no rows added" \
    test "$(json_field "$tmp/lo5.json" 'sum(s["fetched"] for s in j["sources"] if s["platform"] == "local")')" = 0 -a "$(rows)" = "$before"

exit "$fail"
