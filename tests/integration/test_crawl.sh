#!/usr/bin/env bash
# test_crawl.sh: the Medium, Substack and article crawlers as a user runs them (twin source add,
# twin crawl, twin docs ls/export, twin schedule run) against recorded pages and API answers
# (tests/fixtures/web/{medium,substack,article}/) served by tests/fixture_server.py:
#   - the right documents with their text, titles, normalised dates and canonical URLs;
#   - a Medium page that answers 404 falls back to the feed's content, and the event says so;
#     a paywalled Substack post is skipped with its reason; a publication without the API
#     falls back to its feed; the summary groups the reasons;
#   - a second crawl gets only 304s, fetches no article page and writes no row;
#   - phase 2 (a new and an edited Medium post, an edited Substack post): exactly one new and
#     two changed documents, the changed ones as version 2;
#   - a crawl killed with SIGKILL while it waits on a slow page leaves a consistent database,
#     a second crawl meanwhile is refused by the lock, the next crawl marks the killed run
#     interrupted, takes the lock over and completes the feed;
#   - twin schedule run --once crawls only scheduled, due sources; SIGTERM stops the daemon;
#   - usage errors.
. "$(dirname "$0")/../lib.sh"
test_init crawl
command -v python3 >/dev/null || { echo "SKIP: python3 is not installed"; exit 77; }
SRC="${TWIN_SRC:?TWIN_SRC is not set}"

python3 "$SRC/tests/fixture_server.py" --root "$SRC/tests/fixtures/web" --port 0 \
    >"$tmp/server.out" 2>"$tmp/server.err" &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do grep -q '^PORT ' "$tmp/server.out" 2>/dev/null && break; sleep 0.1; done
PORT="$(sed -n 's/^PORT //p' "$tmp/server.out")"
if [ -z "$PORT" ]; then echo "FAIL the fixture server did not start" >&2; cat "$tmp/server.err" >&2; exit 1; fi
base="http://127.0.0.1:$PORT"
ws="$tmp/ws"
tw() { "$TWIN" --workspace "$ws" "$@"; }
# q DB SQL: rows of a workspace's database, fields joined by '|' (the sqlite3 shell when there
# is one: it starts faster than Python, which matters on a loaded machine).
if command -v sqlite3 >/dev/null; then
    q() { sqlite3 -batch -noheader -separator '|' "file:$1?mode=ro" "$2"; }
else
    q() {
        python3 - "$1" "$2" <<'EOF'
import sqlite3, sys
for row in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]):
    print("|".join("" if v is None else str(v) for v in row))
EOF
    }
fi
# server_log: the requests since the last call, "STATUS PATH" per line.
server_log() {
    python3 - "$base/__fixture/log?clear=1" <<'EOF'
import json, sys, urllib.request
for e in json.load(urllib.request.urlopen(sys.argv[1])):
    print(e["status"], e["path"])
EOF
}
phase() { python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1]).read()" "$base/__fixture/phase?n=$1"; }
# export_docs: twin docs export into $tmp/export.jsonl, and "url<TAB>title<TAB>published_at"
# lines into $tmp/export.tsv for doc_field.
export_docs() {
    tw docs export >"$tmp/export.jsonl"
    python3 -c '
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    d = json.loads(line)
    print("\t".join(str(d[k]) for k in ("url", "title", "published_at")))' "$tmp/export.jsonl" >"$tmp/export.tsv"
}
# doc_field URL_SUFFIX title|published_at: that field of the exported document whose URL ends so.
doc_field() {
    awk -F '\t' -v s="$1" -v f="$2" '{ n = length(s); if (substr($1, length($1) - n + 1) == s)
        print (f == "title" ? $2 : $3) }' "$tmp/export.tsv"
}
# event URL_SUFFIX: "KIND|STATUS|REASON" of the events of that URL, latest run first.
event() { q "$ws/twin.db" "select kind, http_status, reason from crawl_events where url like '%$1' order by id desc limit 1"; }
counts() { q "$ws/twin.db" "select (select count(*) from documents), (select count(*) from document_versions), (select count(*) from fetch_state), (select count(*) from seen_items)"; }

# ---- sources and the first crawl -------------------------------------------------------------
tw source add --author "Ada Lindqvist" --platform medium "$base/medium/@ada" >/dev/null 2>&1
tw source add --author "Ada Lindqvist" --platform substack "$base/substack/quill" >/dev/null 2>&1
tw source add --author "Ada Lindqvist" --platform substack "$base/substack/inkwell" >/dev/null 2>&1
tw source add --author "Ada Lindqvist" --platform article "$base/article/bridges.html" >/dev/null 2>&1
check "four sources added" [ "$(q "$ws/twin.db" 'select count(*) from sources')" = 4 ]
server_log >/dev/null
tw crawl --interval 0 >"$tmp/crawl1.out" 2>"$tmp/crawl1.err"
rc=$?
check "first crawl exits 0 (failed items do not fail the run)" [ "$rc" = 0 ]
check "a progress line per source on stderr" [ "$(grep -c '^crawl \[[1-4]/4\] source' "$tmp/crawl1.err")" = 4 ]
check "summary totals" grep -qx 'crawled 4 sources: 12 fetched, 9 new, 0 changed, 0 unchanged, 1 skipped, 2 failed' "$tmp/crawl1.out"
check "failures grouped by reason" grep -qx '2 failed: 2 x HTTP 404' "$tmp/crawl1.out"
check "skips grouped by reason" grep -q '^1 skipped: 1 x paywalled (audience only_paid' "$tmp/crawl1.out"
check "the medium run is partial (one page failed)" grep -q "^source 1 medium $base/medium/@ada: partial" "$tmp/crawl1.out"

export_docs
check "nine documents" [ "$(wc -l <"$tmp/export.jsonl")" = 9 ]
check "medium page text" grep -q 'the mussel beds would be open before breakfast' "$tmp/export.jsonl"
check "medium title from the feed" [ "$(doc_field /medium/@ada/the-quiet-kiln-9b8e7d title)" = "The Quiet Kiln" ]
check "medium date normalised to UTC" [ "$(doc_field /medium/@ada/the-quiet-kiln-9b8e7d published_at)" = "2024-03-10T18:00:00Z" ]
check "medium URL without the tracking query" [ -z "$(grep -o '?source=' "$tmp/export.jsonl")" ]
check "404 page: the feed's content stored" grep -q 'Lichen is two lives pretending to be one' "$tmp/export.jsonl"
check "404 page: stored as an html_fragment" [ "$(q "$ws/twin.db" "select content_type from documents where url like '%notes-on-lichen-51c0aa'")" = html_fragment ]
check "404 page: the event says it fell back" [ "$(event /medium/@ada/notes-on-lichen-51c0aa)" = "3|404|HTTP 404; fell back to the feed's content" ]
check "substack body_html" grep -q 'Hide glue gives you time to be wrong' "$tmp/export.jsonl"
check "substack canonical URL and date" [ "$(doc_field /p/a-bench-for-two published_at)" = "2024-03-15T09:00:00Z" ]
check "substack subtitle kept in meta" [ "$(q "$ws/twin.db" "select meta_json from documents where url like '%/p/a-bench-for-two'")" = '{"slug":"a-bench-for-two","subtitle":"Building a garden seat from one oak board","audience":"everyone"}' ]
check "paywalled post not stored" [ -z "$(grep -o 'members-only-ledger' "$tmp/export.jsonl")" ]
check "paywalled post: a SKIPPED event with the reason" [ "$(event /p/the-members-only-ledger)" = "2|200|paywalled (audience only_paid, no body_html)" ]
check "substack without the API: the feed's post" grep -q 'Iron gall ink eats its own page' "$tmp/export.jsonl"
check "substack without the API: the event says it fell back" [ "$(event '/substack/inkwell/api/v1/archive?sort=new&offset=0&limit=12')" = "3|404|HTTP 404; fell back to the feed" ]
check "article text" grep -q 'A footbridge is a promise made in timber' "$tmp/export.jsonl"
check "article title and date from the page" [ "$(doc_field /article/bridges.html title)|$(doc_field /article/bridges.html published_at)" = "On Footbridges|2024-01-15T09:00:00Z" ]
check "every fetched URL has an event" [ "$(q "$ws/twin.db" "select count(*) from crawl_events where kind = 0")" = 12 ]
check "runs recorded with their counts" [ "$(q "$ws/twin.db" "select status, fetched, new_docs, skipped, failed from crawl_runs order by id" | tr '\n' ' ')" = "partial|4|4|0|1 ok|6|3|1|0 partial|1|1|0|1 ok|1|1|0|0 " ]
check "sources unlocked and marked crawled" [ "$(q "$ws/twin.db" "select count(*) from sources where lock_owner is null and last_crawl_at > 0")" = 4 ]

# ---- a second crawl: nothing new ---------------------------------------------------------------
before="$(counts)"
server_log >/dev/null
tw crawl --interval 0 >"$tmp/crawl2.out" 2>/dev/null
check "second crawl exits 0" [ $? = 0 ]
server_log >"$tmp/log2"
check "second crawl: no rows written" [ "$(counts)" = "$before" ]
check "second crawl: only 304s (besides robots.txt and the missing API)" \
    [ -z "$(grep -v -e '^304 ' -e '^200 /robots.txt$' -e '^404 /substack/inkwell/api/v1/archive' "$tmp/log2")" ]
check "second crawl: the feed, the archive and the article asked conditionally" \
    [ "$(grep -c '^304 ' "$tmp/log2")" = 4 ]
check "second crawl: no article page fetched" [ -z "$(grep -e '/medium/@ada/[a-z-]*-[0-9a-f]\{6\}' -e '/api/v1/posts/' "$tmp/log2")" ]
check "second crawl summary" grep -qx 'crawled 4 sources: 0 fetched, 0 new, 0 changed, 4 unchanged, 0 skipped, 1 failed' "$tmp/crawl2.out"

# ---- phase 2: a new Medium post, an edited one, an edited Substack post ------------------------
phase 2
tw crawl --interval 0 --json >"$tmp/crawl3.json" 2>/dev/null
check "phase 2 crawl exits 0" [ $? = 0 ]
totals="$(python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['totals']; print(t['new'], t['changed'], t['fetched'])" "$tmp/crawl3.json")"
check "phase 2: one new, two changed, five fetched" [ "$totals" = "1 2 5" ]
export_docs
check "phase 2: ten documents" [ "$(wc -l <"$tmp/export.jsonl")" = 10 ]
check "phase 2: the new post" grep -q 'her herring kept until the ice broke' "$tmp/export.jsonl"
check "phase 2: the edited medium post is version 2 with its new text" \
    [ "$(q "$ws/twin.db" "select version, instr(content, 'the work stops needing me') > 0 from documents where url like '%the-quiet-kiln-9b8e7d'")" = "2|1" ]
check "phase 2: the edited substack post is version 2 with its new text" \
    [ "$(q "$ws/twin.db" "select version, instr(content, 'strop again after every mortise') > 0 from documents where url like '%/p/on-sharpening-chisels'")" = "2|1" ]
check "phase 2: the old versions kept" [ "$(q "$ws/twin.db" 'select count(*) from document_versions')" = 12 ]

# ---- a crawl killed mid-way ---------------------------------------------------------------------
ws2="$tmp/ws2"
tw2() { "$TWIN" --workspace "$ws2" "$@"; }
tw2 source add --author "Bo Ekholm" --platform medium "$base/medium/@bo" >/dev/null 2>&1
"$TWIN" --workspace "$ws2" crawl --interval 0 >/dev/null 2>&1 &
crawl_pid=$!
# wait until the first post is stored: the crawl then waits on the slow page (3 s)
for _ in $(seq 100); do
    [ "$(q "$ws2/twin.db" 'select count(*) from documents' 2>/dev/null)" = 1 ] && break
    sleep 0.05
done
tw2 crawl --interval 0 >"$tmp/locked.out" 2>"$tmp/locked.err"
check "a second crawl of a source being crawled exits 1" [ $? = 1 ]
check "... saying who holds it" grep -q "being crawled by pid:$crawl_pid@" "$tmp/locked.err"
kill -9 "$crawl_pid"
wait "$crawl_pid" 2>/dev/null
check "killed crawl: the run is left running" [ "$(q "$ws2/twin.db" 'select status from crawl_runs order by id limit 1')" = running ]
check "killed crawl: twin docs ls works" tw2 docs ls >/dev/null
check "killed crawl: SQLite integrity" [ "$(q "$ws2/twin.db" 'pragma integrity_check')" = ok ]
check "killed crawl: the feed is not marked fetched" [ "$(q "$ws2/twin.db" 'select count(*) from fetch_state')" = 0 ]
tw2 crawl --interval 0 >"$tmp/resume.out" 2>/dev/null
check "next crawl exits 0 (the dead owner's lock taken over)" [ $? = 0 ]
check "next crawl marks the killed run interrupted" [ "$(q "$ws2/twin.db" 'select status from crawl_runs order by id limit 1')" = interrupted ]
check "next crawl completes the feed" grep -qx 'crawled 1 source: 3 fetched, 2 new, 0 changed, 1 unchanged, 0 skipped, 0 failed' "$tmp/resume.out"
check "all three posts stored once" [ "$(q "$ws2/twin.db" 'select count(*), count(distinct url) from documents')" = "3|3" ]

# ---- twin schedule run ---------------------------------------------------------------------------
ws3="$tmp/ws3"
tw3() { "$TWIN" --workspace "$ws3" "$@"; }
tw3 source add --author "Ada Lindqvist" --platform article --every 1h "$base/article/bridges.html" >/dev/null 2>&1
tw3 source add --author "Ada Lindqvist" --platform medium "$base/medium/@ada" >/dev/null 2>&1
tw3 schedule run --once --interval 0 >"$tmp/sched.out" 2>"$tmp/sched.err"
check "schedule --once exits 0" [ $? = 0 ]
check "schedule logs the run" grep -q "source 1 article $base/article/bridges.html: ok, 1 fetched, 1 new" "$tmp/sched.out"
check "schedule crawls only scheduled sources" [ "$(q "$ws3/twin.db" 'select count(*) from crawl_runs')" = 1 ]
check "schedule sets the next crawl an interval ahead" \
    [ "$(q "$ws3/twin.db" 'select cast(round(next_crawl_at - last_crawl_at) as int) from sources where id = 1')" = 3600 ]
tw3 schedule run --once --interval 0 >"$tmp/sched2.out" 2>/dev/null
check "schedule --once: nothing due, nothing crawled" [ ! -s "$tmp/sched2.out" ]
"$TWIN" --workspace "$ws3" schedule run --poll 30 --interval 0 >/dev/null 2>"$tmp/sched.err" &
sched_pid=$!
# Its signal handlers are in place once it logs "started" (a slow, loaded or sanitizer build
# may take seconds to get there; a SIGTERM before that would be the default action).
for _ in $(seq 300); do grep -q "schedule: started" "$tmp/sched.err" 2>/dev/null && break; sleep 0.1; done
t0=$(date +%s)
kill -TERM "$sched_pid"
wait "$sched_pid"
rc=$?
check "SIGTERM stops the daemon cleanly (exit 0)" [ "$rc" = 0 ]
check "... at once, not at the next poll" [ $(( $(date +%s) - t0 )) -le 2 ]

# ---- usage ----------------------------------------------------------------------------------------
tw crawl --bogus >/dev/null 2>"$tmp/u1"
check "unknown option: exit 2" [ $? = 2 ]
check "... naming it" grep -q "unknown argument '--bogus'" "$tmp/u1"
tw crawl --max-items 0 >/dev/null 2>&1
check "--max-items 0: exit 2" [ $? = 2 ]
tw crawl --author Nobody >/dev/null 2>"$tmp/u2"
rc=$?
check "unknown author: exit 1" [ "$rc" = 1 ]
check "... naming the author" grep -q "Nobody" "$tmp/u2"
tw crawl --source 99 >/dev/null 2>&1
check "unknown source: exit 1" [ $? = 1 ]
tw schedule stop >/dev/null 2>&1
check "schedule: unknown subcommand exit 2" [ $? = 2 ]
check "crawl --help exits 0" tw crawl --help >/dev/null
exit "$fail"
