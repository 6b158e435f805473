#!/bin/sh
# gen_wh_v1_fixture.sh BUILD_DIR: (re)writes tests/data/warehouse/v1.twin.db, a warehouse made by
# the schema-version-1 code (pipelines/warehouse.c as of commit 7ca6d1d, before training runs
# were added) holding one author, one source and a document in two versions. test_trun opens a
# copy with the current code to check the migration to version 2 keeps everything.
# BUILD_DIR is a configured and built twin build folder (its libtwin.a supplies the rest).
set -eu
build="${1:?usage: gen_wh_v1_fixture.sh BUILD_DIR}"
src="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$src" show 7ca6d1d:pipelines/warehouse.c > "$work/warehouse_v1.c"
git -C "$src" show 7ca6d1d:pipelines/warehouse.h > "$work/warehouse.h"
cat > "$work/make_v1.c" <<'C'
#include "warehouse.h"
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    wh_db *db;
    int64_t src, doc, run;
    int existed;
    wh_doc_outcome oc;
    if (argc != 2 || wh_open(argv[1], &db)) return 1;
    if (wh_schema_version(db) != 1) return 1;
    if (wh_source_add(db, "ada", WH_PLATFORM_LOCAL, "/srv/ada/notes", 0, &src, &existed)) return 1;
    if (wh_run_begin(db, src, &run)) return 1;
    wh_doc_in d = {src, "file:essay.md", "An essay", "2024-05-01", "markdown", NULL,
                   "# An essay\n\nFirst version.\n", 0};
    d.content_len = strlen(d.content);
    if (wh_document_upsert(db, run, &d, &doc, &oc)) return 1;
    d.content = "# An essay\n\nSecond version, edited.\n";
    d.content_len = strlen(d.content);
    if (wh_document_upsert(db, run, &d, &doc, &oc)) return 1;
    wh_run_counts c = {2, 1, 1, 0, 0, 0};
    if (wh_run_finish(db, run, &c, "ok", NULL)) return 1;
    wh_close(db);
    return 0;
}
C
out="$src/tests/data/warehouse/v1.twin.db"
rm -f "$out" "$out-wal" "$out-shm"
${CC:-cc} -std=c11 -D_GNU_SOURCE -I"$work" -I"$src/engine" -I"$src/kernels" -I"$src" \
    -o "$work/make_v1" "$work/make_v1.c" "$work/warehouse_v1.c" "$build/libtwin.a" \
    $(pkg-config --libs sqlite3 libcjson libutf8proc zlib libcurl gumbo) -fopenmp -lpthread -lm
"$work/make_v1" "$out"
rm -f "$out-wal" "$out-shm"
echo "wrote $out"
