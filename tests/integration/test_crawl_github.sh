#!/usr/bin/env bash
# test_crawl_github.sh: the GitHub crawler as a user runs it (twin source add, twin crawl,
# twin docs export) against recorded API answers (tests/fixtures/web/github/, made by
# tools/make_github_fixtures.py) served by tests/fixture_server.py:
#   - a user's repositories over two pages (Link header), the fork skipped;
#   - the kept files stored with their content, type, URL and metadata, the blob API used for a
#     file the contents API does not inline;
#   - every skip recorded with its reason: binary by extension and by NUL bytes, vendored
#     folder, lock file, too large, not source or docs;
#   - a second crawl asks for nothing but the repository pages and 304 trees and adds no rows;
#   - a changed file (phase 2) is the only one fetched again and becomes version 2;
#   - an exhausted rate limit stops the run ("partial", the reason in a FAILED event), after
#     one more try when the reset time has passed;
#   - a run cut by --max-items leaves the tree to be read again, the next run gets the rest;
#   - a one-repository source; a bad source URL is a one-line error.
. "$(dirname "$0")/../lib.sh"
test_init crawl_github
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
SRC="${TWIN_SRC:?TWIN_SRC is not set}"
# The interpreter itself, without site packages: a version manager's shim costs ~0.4 s a call
# and this test makes dozens of small ones (standard library only).
PY="$(python3 -c 'import sys; print(sys.executable)')"
py() { "$PY" -S "$@"; }

py "$SRC/tests/fixture_server.py" --root "$SRC/tests/fixtures/web" --port 0 \
    >"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q '^PORT ' "$tmp/server.out" 2>/dev/null && break; sleep 0.1; done
PORT="$(sed -n 's/^PORT //p' "$tmp/server.out")"
if [ -z "$PORT" ]; then echo "FAIL the fixture server did not start" >&2; cat "$tmp/server.err" >&2; exit 1; fi
base="http://127.0.0.1:$PORT"
export GITHUB_API_URL="$base/github/api"
unset GITHUB_TOKEN
ws="$tmp/ws"
tw() { "$TWIN" --workspace "$ws" "$@"; }
# crawl: twin crawl without the politeness delay (one local server, nothing to be polite to).
crawl() { tw crawl --interval 0 "$@"; }
# q SQL: rows of the workspace's database, fields joined by '|'.
q() {
    py - "$ws/twin.db" "$1" <<'EOF'
import sqlite3, sys
for row in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]):
    print("|".join("" if v is None else str(v) for v in row))
EOF
}
# server_log: the requests since the last call, "STATUS PATH" per line.
server_log() {
    py - "$base/__fixture/log?clear=1" <<'EOF'
import json, sys, urllib.request
for e in json.load(urllib.request.urlopen(sys.argv[1])):
    print(e["status"], e["path"])
EOF
}
phase() { py -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1]).read()" "$base/__fixture/phase?n=$1"; }
# json_field FILE EXPR: a Python expression over the JSON object j read from FILE.
json_field() { py -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# ---- first crawl -----------------------------------------------------------------------------
check "source add" tw source add --author wren --platform github "$base/wrenfield" >/dev/null
server_log >/dev/null
crawl --author wren --json >"$tmp/crawl1.json" 2>"$tmp/crawl1.err"
check "first crawl exits 0" test $? -eq 0
check "first crawl: 7 new documents" test "$(json_field "$tmp/crawl1.json" 'j["totals"]["new"]')" = 7
check "first crawl: nothing failed" test "$(json_field "$tmp/crawl1.json" 'j["totals"]["failed"]')" = 0
tw docs export --author wren >"$tmp/docs1.jsonl"
check "docs export exits 0" test $? -eq 0

py - "$tmp/docs1.jsonl" "$base" "$SRC/tests/fixtures/web/github/api" <<'EOF' >"$tmp/docs_check.out" 2>&1
import base64, json, sys
docs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
base, api = sys.argv[2], sys.argv[3]
by_url = {d["url"]: d for d in docs}
want = {
    "wrenfield/tidepool/blob/main/README.md",
    "wrenfield/tidepool/blob/main/src/tide.c",
    "wrenfield/tidepool/blob/main/src/tide.h",
    "wrenfield/tidepool/blob/main/docs/guide/moon-phases.md",
    "wrenfield/tidepool/blob/main/docs/almanac.md",
    "wrenfield/lantern-notes/blob/main/README.md",
    "wrenfield/lantern-notes/blob/main/notes.py",
}
got = {u[len(base) + 1:] for u in by_url if u.startswith(base + "/")}
ok = True
if got != want or len(docs) != len(want):
    print("documents differ: extra", sorted(got - want), "missing", sorted(want - got))
    ok = False
def content_of(repo, path):  # what the fixture's contents answer decodes to
    ans = json.load(open(f"{api}/repos/wrenfield/{repo}/contents/{path}@ref=main"))
    if ans["encoding"] == "base64":
        return base64.b64decode(ans["content"]).decode()
    blob = json.load(open(f"{api}/repos/wrenfield/{repo}/git/blobs/{ans['sha']}"))
    return base64.b64decode(blob["content"]).decode()
for rel in want:
    d = by_url.get(f"{base}/{rel}")
    if not d:
        continue
    repo, path = rel.split("/")[1], rel.split("/blob/main/")[1]
    if d["content"] != content_of(repo, path):
        print("content differs:", rel)
        ok = False
    if d["platform"] != "github" or d["author"] != "wren":
        print("platform/author wrong:", rel, d["platform"], d["author"])
        ok = False
    if d["title"] != f"{repo}/{path}":
        print("title wrong:", rel, d["title"])
        ok = False
print("OK" if ok else "MISMATCH")
EOF
check "documents: the 7 kept files with their exact content, URL and title" grep -qx OK "$tmp/docs_check.out"
grep -vx OK "$tmp/docs_check.out" >&2

# Types and metadata (not in the export): the warehouse itself.
check "src/tide.c is code in C" test "$(q "SELECT content_type || ' ' || json_extract(meta_json, '\$.language') || ' ' || json_extract(meta_json, '\$.repo') FROM documents WHERE url LIKE '%/tidepool/blob/main/src/tide.c'")" = "code C wrenfield/tidepool"
check "moon-phases.md is markdown" test "$(q "SELECT content_type FROM documents WHERE url LIKE '%/docs/guide/moon-phases.md'")" = markdown
check "almanac.md came from the blob API" grep -q '^200 /github/api/repos/wrenfield/tidepool/git/blobs/' <(q "SELECT http_status || ' ' || substr(url, length('$base') + 1) FROM crawl_events WHERE run_id = 1")

# Every skip, with its reason.
q "SELECT substr(url, length('$base') + 2) || ' => ' || reason FROM crawl_events WHERE run_id = 1 AND kind = 2" >"$tmp/skips"
for want in \
    "wrenfield/forked-lib => fork" \
    "wrenfield/tidepool/blob/main/assets/logo.png => binary (.png)" \
    "wrenfield/tidepool/blob/main/notes/raw.txt => binary (NUL bytes)" \
    "wrenfield/tidepool/tree/main/node_modules => vendored (node_modules/)" \
    "wrenfield/tidepool/blob/main/package-lock.json => lock file (package-lock.json)" \
    "wrenfield/tidepool/blob/main/data/soundings.c => too large (5000000 bytes > 1048576)" \
    "wrenfield/tidepool/blob/main/config.yaml => not source or docs (.yaml)"; do
    check "skipped: $want" grep -qF "$want" "$tmp/skips"
done
check "7 skips in all (one for the vendored folder)" test "$(wc -l <"$tmp/skips")" -eq 7
check "no file in node_modules or over the cap was requested" \
    test "$(q "SELECT count(*) FROM crawl_events WHERE url LIKE '%node_modules%' OR url LIKE '%soundings%' OR url LIKE '%package-lock%'")" = 3
server_log >"$tmp/log1"
check "repositories read over two pages" grep -q 'users/wrenfield/repos?per_page=100&page=2' "$tmp/log1"
check "the fork's tree was not requested" test "$(grep -c forked-lib "$tmp/log1")" = 0

# ---- second crawl: nothing new -----------------------------------------------------------------
docs_before="$(q "SELECT count(*) FROM documents"), $(q "SELECT count(*) FROM document_versions")"
crawl --author wren --json >"$tmp/crawl2.json" 2>"$tmp/crawl2.err"
check "second crawl exits 0" test $? -eq 0
server_log >"$tmp/log2"
check "second crawl: no file content requested" test "$(grep -cE '/contents/|/git/blobs/' "$tmp/log2")" = 0
check "second crawl: both trees answered 304" test "$(grep -c '^304 .*/git/trees/main' "$tmp/log2")" = 2
check "second crawl: no new or changed documents" \
    test "$(json_field "$tmp/crawl2.json" 'j["totals"]["new"] + j["totals"]["changed"]')" = 0
check "second crawl: no rows added" test "$(q "SELECT count(*) FROM documents"), $(q "SELECT count(*) FROM document_versions")" = "$docs_before"

# ---- phase 2: one file changed -----------------------------------------------------------------
phase 2
crawl --author wren --json >"$tmp/crawl3.json" 2>"$tmp/crawl3.err"
check "third crawl exits 0" test $? -eq 0
phase 1
server_log >"$tmp/log3"
check "changed tree: only src/tide.c fetched" test "$(grep -E '/contents/|/git/blobs/' "$tmp/log3" | sed 's/^200 //')" = "/github/api/repos/wrenfield/tidepool/contents/src/tide.c?ref=main"
check "src/tide.c is version 2 with the new text" \
    test "$(q "SELECT version || ' ' || instr(content, 'mean_level') FROM documents WHERE url LIKE '%/tidepool/blob/main/src/tide.c'" | cut -d' ' -f1)" = 2
check "the other documents are still version 1" test "$(q "SELECT count(*) FROM documents WHERE version = 1")" = 6
check "third crawl: 1 changed, 0 new" test "$(json_field "$tmp/crawl3.json" '(j["totals"]["changed"], j["totals"]["new"])')" = "(1, 0)"

# ---- rate limit ---------------------------------------------------------------------------------
tw source add --author quota --platform github "$base/quota-user" >/dev/null
crawl --author quota --json >"$tmp/crawl4.json" 2>"$tmp/crawl4.err"
check "rate-limited crawl still exits 0 (the run finished)" test $? -eq 0
check "rate-limited run is partial" test "$(json_field "$tmp/crawl4.json" 'j["sources"][0]["status"]')" = partial
check "the reason says rate limited and stopped" \
    grep -q "rate limited; .*run stopped" <(q "SELECT reason FROM crawl_events WHERE kind = 3 AND url LIKE '%quota-user/r1/git/trees%'")
server_log >"$tmp/log4"
check "nothing asked after the limit (r2 untouched)" test "$(grep -c 'quota-user/r2' "$tmp/log4")" = 0

# A limit whose reset time has passed: one more try after waiting, then the run stops.
tw source add --author stale --platform github "$base/stale-quota" >/dev/null
crawl --author stale --json >"$tmp/crawl4b.json" 2>"$tmp/crawl4b.err"
check "stale rate limit: exit 0, run partial" test "$(json_field "$tmp/crawl4b.json" 'j["sources"][0]["status"]')" = partial
check "stale rate limit: the tree asked twice (waited once)" test "$(server_log | grep -c 'stale-quota/s1/git/trees')" = 2
check "stale rate limit: the reason says it waited" \
    grep -q "rate limited; still limited after waiting" <(q "SELECT reason FROM crawl_events WHERE kind = 3 AND url LIKE '%stale-quota/s1%'")

# ---- --max-items: a run cut short stores its tree state only when it got every file ------------
tw source add --author capped --platform github "$base/wrenfield" >/dev/null
crawl --author capped --max-items 2 --json >"$tmp/crawl7.json" 2>"$tmp/crawl7.err"
check "--max-items 2: 2 documents" test "$(json_field "$tmp/crawl7.json" 'j["totals"]["new"]')" = 2
server_log >/dev/null
crawl --author capped --json >"$tmp/crawl8.json" 2>"$tmp/crawl8.err"
check "the next run gets the other 5" test "$(json_field "$tmp/crawl8.json" 'j["totals"]["new"]')" = 5
check "... re-reading the cut tree (200), not the 2 stored files" \
    test "$(server_log | grep -c -E 'tidepool/(contents/README.md|contents/docs/almanac.md|git/blobs/)')" = 0

# ---- one repository ---------------------------------------------------------------------------
tw source add --author solo --platform github "$base/wrenfield/lantern-notes" >/dev/null
check "one-repository crawl exits 0" crawl --author solo --json >/dev/null 2>"$tmp/crawl5.err"
check "one-repository source: its 2 files" test "$(q "SELECT count(*) FROM documents d JOIN authors a ON a.id = d.author_id WHERE a.name = 'solo'")" = 2
check "it asked /repos/<o>/<r> for the default branch" grep -q '^200 /github/api/repos/wrenfield/lantern-notes$' <(server_log)

# ---- a source URL without a user ----------------------------------------------------------------
tw source add --author bad --platform github "$base/" >/dev/null 2>&1
crawl --author bad >"$tmp/crawl6.out" 2>"$tmp/crawl6.err"
check "a source URL without a user: exit 1" test $? -eq 1
check "... with an error naming the source URL" grep -q "expected https://github.com/<user>" "$tmp/crawl6.err" "$tmp/crawl6.out"

exit "$fail"
