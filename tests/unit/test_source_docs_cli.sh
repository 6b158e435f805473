#!/usr/bin/env bash
# test_source_docs_cli.sh: `twin source` and `twin docs` as a user runs them, on a fresh
# workspace: source add (platform guessed from the URL or given, --every, "already present",
# paths stored absolute), ls (text and --json), rm; bad input (unknown platform, bad interval,
# a URL that fits no platform, a missing folder, rm of a missing id, unknown options) exits 2 or
# 1 with one line naming the culprit and changes nothing; docs ls/show/export on an empty
# warehouse, then on documents crawled from a local folder (`twin crawl`, when this build has
# it): export has exactly ARCHITECTURE.md's fields, one object per line, bytes that are not
# UTF-8 as U+FFFD, --out written whole.
. "$(dirname "$0")/../lib.sh"
test_init source_docs_cli
export TWIN_HOME="$tmp/ws"
one_line() { test "$(wc -l <"$1")" -eq 1; }

# ---- help and usage ----
for c in source docs; do
    "$TWIN" $c --help >"$tmp/out" 2>&1
    check "$c --help exits 0" test $? -eq 0
done
"$TWIN" source --help >"$tmp/out"
check "source --help documents --every" grep -q -- "--every INTERVAL" "$tmp/out"
check "source --help names every platform" grep -q "medium|substack|github|linkedin|article|local" "$tmp/out"
"$TWIN" docs --help >"$tmp/out"
check "docs --help documents export's fields" grep -q "{id, author, platform, url, title" "$tmp/out"
"$TWIN" source >/dev/null 2>&1
check "source without a subcommand exits 2" test $? -eq 2
"$TWIN" docs frob >/dev/null 2>"$tmp/err"
check "docs frob exits 2 with one line" test $? -eq 2 -a "$(wc -l <"$tmp/err")" -eq 1

# ---- empty warehouse ----
"$TWIN" docs export >"$tmp/out" 2>"$tmp/err"
check "export of an empty warehouse exits 0" test $? -eq 0
check "... writes nothing to stdout" test ! -s "$tmp/out"
check "... and says so in one line" one_line "$tmp/err"
check "the workspace and twin.db were made" test -f "$TWIN_HOME/twin.db"
"$TWIN" docs export --out "$tmp/empty.jsonl" 2>/dev/null
check "export --out of an empty warehouse makes an empty file" test -f "$tmp/empty.jsonl" -a ! -s "$tmp/empty.jsonl"
out="$("$TWIN" docs ls --json)"
check "docs ls --json of an empty warehouse is []" test "$out" = "[]"
"$TWIN" docs show 1 >/dev/null 2>"$tmp/err"
check "docs show of a missing id exits 1" test $? -eq 1
check "... one line naming the id" grep -q "no document 1" "$tmp/err"

# ---- source add ----
id1="$("$TWIN" source add --author ada --every 6h https://medium.com/@ada 2>"$tmp/err")"
check "add prints the new id" test "$id1" = "1"
id2="$("$TWIN" source add --author ada https://ada.substack.com/ 2>/dev/null)"
id3="$("$TWIN" source add --author ada https://github.com/ada/engine 2>/dev/null)"
id4="$("$TWIN" source add --author bob --every 30m https://bob.example.org/blog 2>/dev/null)"
mkdir -p "$tmp/notes/sub" "$tmp/export"
: >"$tmp/export/Shares.csv"
(cd "$tmp" && "$TWIN" source add --author ada notes >"$tmp/id5" 2>/dev/null)
id5="$(cat "$tmp/id5")"
id6="$("$TWIN" source add --author ada "$tmp/export" 2>/dev/null)"
check "ids follow" test "$id2.$id3.$id4.$id5.$id6" = "2.3.4.5.6"
again="$("$TWIN" source add --author ada https://medium.com/@ada 2>"$tmp/err")"
check "adding it again prints the same id" test "$again" = "1"
check "... and says already present" grep -q "already present" "$tmp/err"

"$TWIN" source ls >"$tmp/ls"
check "ls has a header and 6 sources" test "$(wc -l <"$tmp/ls")" -eq 7
check "medium guessed, every 6h" grep -Eq "^1 +ada +medium +https://medium.com/@ada +6h +never +-$" "$tmp/ls"
check "substack guessed" grep -Eq "^2 +ada +substack " "$tmp/ls"
check "github guessed" grep -Eq "^3 +ada +github " "$tmp/ls"
check "article guessed, every 30m" grep -Eq "^4 +bob +article .* 30m " "$tmp/ls"
check "a folder is local, stored absolute" grep -Eq "^5 +ada +local +$tmp/notes " "$tmp/ls"
check "a folder with Shares.csv is linkedin" grep -Eq "^6 +ada +linkedin +$tmp/export " "$tmp/ls"
"$TWIN" source ls --author bob >"$tmp/ls"
check "ls --author bob: header + 1" test "$(wc -l <"$tmp/ls")" -eq 2
"$TWIN" source ls --json >"$tmp/ls.json"
check "ls --json: one object per source" test "$(grep -c '"id": ' "$tmp/ls.json")" -eq 6
check "ls --json: fields" grep -q '{"id": 1, "author": "ada", "platform": "medium", "url": "https://medium.com/@ada", "every_s": 21600, "next_crawl_at": 0.000, "last_crawl_at": null, "last_status": null}' "$tmp/ls.json"

# ---- bad input: exit 2 (usage) or 1 (not found), one line, nothing changed ----
bad() { # bad NAME STATUS WORD ARGS...: the command exits STATUS with one line containing WORD
    local name="$1" want="$2" word="$3"
    shift 3
    "$TWIN" "$@" >"$tmp/out" 2>"$tmp/err"
    local got=$?
    check "$name exits $want" test "$got" -eq "$want"
    check "$name: one line naming '$word'" test "$(wc -l <"$tmp/err")" -eq 1 -a -n "$(grep -F -- "$word" "$tmp/err")"
}
bad "unknown platform" 2 myspace source add --author ada --platform myspace https://x.org
bad "bad interval" 2 6x source add --author ada --every 6x https://x.org
bad "zero interval" 2 "'0'" source add --author ada --every 0 https://x.org
bad "no author" 2 --author source add https://x.org
bad "no URL" 2 URL source add --author ada
bad "a URL of no platform" 2 "ftp://x.org" source add --author ada ftp://x.org
bad "a missing folder" 2 "$tmp/nowhere" source add --author ada --platform local "$tmp/nowhere"
bad "a medium source that is a path" 2 "$tmp/notes" source add --author ada --platform medium "$tmp/notes"
bad "unknown option" 2 --frob source add --author ada --frob https://x.org
bad "rm of a missing id" 1 99 source rm 99
bad "rm of a non-number" 2 abc source rm abc
bad "ls of an unknown author" 1 carol source ls --author carol
bad "docs ls of an unknown platform" 2 myspace docs ls --platform myspace
bad "export in another format" 2 csv docs export --format csv
bad "export of an unknown author" 1 carol docs export --author carol
bad "docs show of a non-number" 2 x1 docs show x1
check "bad input changed nothing" test "$("$TWIN" source ls | wc -l)" -eq 7

# ---- rm ----
"$TWIN" source rm 4 >"$tmp/out"
check "rm exits 0" test $? -eq 0
check "rm says what it did" grep -q "removed source 4" "$tmp/out"
"$TWIN" source ls >"$tmp/ls"
check "rm removed it" test "$(grep -Ec '^4 ' "$tmp/ls")" -eq 0 -a "$(wc -l <"$tmp/ls")" -eq 6

# ---- documents from a local folder (twin crawl) ----
if ! "$TWIN" crawl --help >/dev/null 2>&1; then
    echo "SKIP: this build has no twin crawl; the document checks did not run"
    [ "$fail" -eq 0 ] && exit 77
    exit 1
fi
printf '# First note\n\nShe said "hi"\tand left.\n' >"$tmp/notes/a.md"
# Local documents are keyed by their file:// URI (the real path; mktemp's names need no
# percent-encoding).
a_url="file://$(realpath "$tmp/notes")/a.md"
printf 'plain text \377 with a bad byte\n' >"$tmp/notes/sub/b.txt"
"$TWIN" crawl --source 5 >"$tmp/out" 2>"$tmp/err"
check "crawl of the local folder exits 0" test $? -eq 0
"$TWIN" docs ls >"$tmp/ls"
check "docs ls: header + 2 documents" test "$(wc -l <"$tmp/ls")" -eq 3
check "docs ls: local, version 1, not cleaned" grep -Eq "^[0-9]+ +ada +local +1  .* no " "$tmp/ls"
"$TWIN" docs ls --platform medium >"$tmp/ls"
check "docs ls --platform medium: header only" test "$(wc -l <"$tmp/ls")" -eq 1
"$TWIN" docs ls --json --author ada >"$tmp/ls.json"
check "docs ls --json: 2 objects" test "$(grep -c '"id": ' "$tmp/ls.json")" -eq 2
check "docs ls --json: fields" grep -qF "\"platform\": \"local\", \"url\": \"$a_url\"" "$tmp/ls.json"

"$TWIN" docs export >"$tmp/all.jsonl" 2>/dev/null
check "export exits 0" test $? -eq 0
check "export: one line per document" test "$(wc -l <"$tmp/all.jsonl")" -eq 2
check "export: exactly the ARCHITECTURE.md fields, in order" \
    test "$(grep -Ec '^\{"id": [0-9]+, "author": "ada", "platform": "local", "url": "file:///[^"]+/(a\.md|sub/b\.txt)", "title": (null|"[^"]*"), "published_at": (null|"[^"]*"), "content": ".*"\}$' "$tmp/all.jsonl")" -eq 2
check "export: quotes, tabs and newlines escaped" grep -qF 'She said \"hi\"\tand left.\n' "$tmp/all.jsonl"
check "export: a byte that is not UTF-8 is U+FFFD" grep -qF "plain text $(printf '\357\277\275') with" "$tmp/all.jsonl"
"$TWIN" docs export --format jsonl --out "$tmp/out.jsonl" 2>"$tmp/err"
check "export --out exits 0" test $? -eq 0
check "export --out: the same lines" cmp -s "$tmp/out.jsonl" "$tmp/all.jsonl"
check "export --out: no temporary file left" test -z "$(ls "$tmp" | grep -F 'out.jsonl.tmp')"
check "export --out says how many" grep -q "2 documents written" "$tmp/err"
"$TWIN" docs export --out "$tmp/nodir/x.jsonl" >/dev/null 2>"$tmp/err"
check "export to an unwritable place exits 1 with one line" test $? -eq 1 -a "$(wc -l <"$tmp/err")" -eq 1
"$TWIN" docs export --platform github >"$tmp/out" 2>"$tmp/err"
check "export of an empty selection: exit 0, nothing, one line" \
    test $? -eq 0 -a ! -s "$tmp/out" -a "$(wc -l <"$tmp/err")" -eq 1
id="$(grep -F "\"url\": \"$a_url\"" "$tmp/all.jsonl" | grep -o '^{"id": [0-9]*' | grep -o '[0-9]*' | head -1)"
"$TWIN" docs show "$id" >"$tmp/show"
check "docs show prints the raw content byte for byte" cmp -s "$tmp/show" "$tmp/notes/a.md"
"$TWIN" docs show "$id" --raw >"$tmp/show"
check "docs show --raw too" cmp -s "$tmp/show" "$tmp/notes/a.md"
# The documents outlive their source.
"$TWIN" source rm 5 >/dev/null
check "documents stay when their source is removed" test "$("$TWIN" docs export 2>/dev/null | wc -l)" -eq 2
exit "$fail"
