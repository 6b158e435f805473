/* test_trun: tracked training runs in the warehouse (pipelines/warehouse.h, schema version 2;
 * the build is at version 3 now).
 *   - migration: a copy of tests/data/warehouse/v1.twin.db (written by the version-1 code,
 *     tools/gen_wh_v1_fixture.sh) opens at the current version with its author, source, document and
 *     versions intact, passes the integrity check, and takes training runs;
 *   - begin / log steps / log evals / finish, read back by get, each, each_step, each_eval
 *     (more rows than one page), a resumed run's steps replacing earlier rows, NaN loss as
 *     NULL, find by id and by name (latest), refusals (kind, status, unknown run);
 *   test_trun --fill DB: writes three runs for tests/unit/test_runs_cli.sh (no hidden command
 *   of the twin program does this). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "pipelines/warehouse.h"

static char tmpdir[256];

static int copy_file(const char *from, const char *to) {
    char *buf;
    size_t n;
    if (tw_file_read(from, &buf, &n)) return -1;
    int rc = tw_file_write_atomic(to, buf, n) ? -1 : 0;
    tw_free(buf);
    return rc;
}

static void test_migration(void) {
    const char *data = test_env("TWIN_TEST_DATA");
    if (!data) {
        fprintf(stderr, "TWIN_TEST_DATA unset: migration check skipped\n");
        return;
    }
    char from[512], to[512];
    snprintf(from, sizeof from, "%s/warehouse/v1.twin.db", data);
    snprintf(to, sizeof to, "%s/v1-copy.db", tmpdir);
    CHECK(copy_file(from, to) == 0);
    wh_db *db = NULL;
    CHECK(wh_open(to, &db) == TW_OK);
    if (!db) return;
    CHECK_EQ_INT(wh_schema_version(db), 3);
    CHECK(wh_integrity_check(db) == TW_OK);
    int64_t author = 0, n = 0;
    CHECK(wh_author_find(db, "ada", &author) == TW_OK);
    CHECK(wh_doc_count(db, NULL, &n) == TW_OK);
    CHECK_EQ_INT(n, 1);
    wh_stats stats;
    CHECK(wh_stats_get(db, &stats) == TW_OK);
    CHECK_EQ_INT(stats.versions, 2);
    CHECK_EQ_INT(stats.runs, 1);
    wh_doc d;
    CHECK(wh_doc_get(db, 1, WH_DOC_RAW, &d) == TW_OK);
    CHECK(strstr(d.content, "Second version") != NULL);
    CHECK_EQ_INT(d.version, 2);
    /* version 3: the local source's "file:essay.md" keyed by its folder (test_wh_local_keys) */
    CHECK_EQ_STR(d.url, "file:///srv/ada/notes/essay.md");
    wh_doc_clear(&d);
    wh_trun_in in = {.name = "after-migration", .kind = "sft"};
    int64_t id = 0;
    CHECK(wh_trun_begin(db, &in, &id) == TW_OK);
    CHECK(id == 1);
    wh_close(db);
    /* and again: already at version 2, nothing to do */
    CHECK(wh_open(to, &db) == TW_OK);
    CHECK_EQ_INT(wh_schema_version(db), 3);
    wh_close(db);
}

typedef struct {
    int n;
    int64_t steps[200];
    double loss[200];
} step_acc;

static int on_step(void *ctx, const wh_trun_step *s) {
    step_acc *a = ctx;
    if (a->n < 200) a->steps[a->n] = s->step, a->loss[a->n] = s->loss;
    a->n++;
    return 0;
}

typedef struct {
    int n;
    char order[256];
} eval_acc;

static int on_eval(void *ctx, const wh_trun_eval *e) {
    eval_acc *a = ctx;
    size_t len = strlen(a->order);
    snprintf(a->order + len, sizeof a->order - len, "%lld:%s=%g;", (long long)e->step, e->split,
             e->loss);
    a->n++;
    return 0;
}

static int on_run(void *ctx, const wh_trun *r) {
    int *n = ctx;
    (*n)++;
    return r->id >= 40; /* stop early: stops after the 40th run */
}

static void test_api(void) {
    char path[400];
    snprintf(path, sizeof path, "%s/api.db", tmpdir);
    wh_db *db = NULL;
    CHECK(wh_open(path, &db) == TW_OK);
    if (!db) return;
    CHECK_EQ_INT(wh_schema_version(db), 3);
    wh_trun_in in = {.name = "smol-sft", .kind = "sft", .config_json = "{\"lr\":0.0002}",
                     .base_model = "models/smollm2.gguf", .base_hash = "abc", .dataset = "ds-v1",
                     .dataset_hash = "def", .code_version = "0.1.0", .host = "box"};
    int64_t id = 0;
    CHECK(wh_trun_begin(db, &in, &id) == TW_OK);
    for (int64_t s = 0; s < 70; s++) { /* more than a page */
        wh_trun_step st = {s, 3.0 - 0.01 * (double)s, 1e-4, 0.5, 1000, 1 << 20, 0};
        CHECK(wh_trun_log_step(db, id, &st) == TW_OK);
    }
    /* resumed from step 60: steps 60..69 logged again with other losses */
    for (int64_t s = 60; s < 70; s++) {
        wh_trun_step st = {s, 1.0, 1e-4, 0.5, 1000, 1 << 20, 0};
        CHECK(wh_trun_log_step(db, id, &st) == TW_OK);
    }
    wh_trun_step nan_step = {70, NAN, 1e-4, INFINITY, 0, 0, 0};
    CHECK(wh_trun_log_step(db, id, &nan_step) == TW_OK);
    for (int64_t s = 0; s <= 70; s += 10) {
        CHECK(wh_trun_log_eval(db, id, s, "eval", 2.5 - 0.01 * (double)s, "{\"ppl\":12}") == TW_OK);
        CHECK(wh_trun_log_eval(db, id, s, "alpha", 9, NULL) == TW_OK);
    }
    CHECK(wh_trun_finish(db, id, "ok", "adapters/smol", NULL) == TW_OK);
    wh_trun r;
    CHECK(wh_trun_get(db, id, &r) == TW_OK);
    CHECK_EQ_STR(r.name, "smol-sft");
    CHECK_EQ_STR(r.kind, "sft");
    CHECK_EQ_STR(r.config_json, "{\"lr\":0.0002}");
    CHECK_EQ_STR(r.base_model, "models/smollm2.gguf");
    CHECK_EQ_STR(r.dataset_hash, "def");
    CHECK_EQ_STR(r.status, "ok");
    CHECK_EQ_STR(r.adapter_path, "adapters/smol");
    CHECK_EQ_STR(r.error, "");
    CHECK(r.finished_at >= r.started_at && r.started_at > 1.6e9);
    CHECK_EQ_INT(r.n_steps, 71);
    CHECK_EQ_INT(r.last_step, 70);
    CHECK(isnan(r.last_loss));
    CHECK_EQ_INT(r.n_evals, 16);
    CHECK_EQ_STR(r.last_eval_split, "alpha");
    CHECK_NEAR(r.last_eval_loss, 9, 0);
    wh_trun_clear(&r);
    step_acc sa = {0};
    CHECK(wh_trun_each_step(db, id, on_step, &sa) == TW_OK);
    CHECK_EQ_INT(sa.n, 71);
    int in_order = 1;
    for (int i = 0; i < 71; i++) in_order &= sa.steps[i] == i;
    CHECK(in_order);
    CHECK_NEAR(sa.loss[59], 3.0 - 0.59, 1e-12);
    CHECK_NEAR(sa.loss[60], 1.0, 0);
    CHECK(isnan(sa.loss[70]));
    eval_acc ea = {0};
    CHECK(wh_trun_each_eval(db, id, on_eval, &ea) == TW_OK);
    CHECK_EQ_INT(ea.n, 16);
    CHECK(!strncmp(ea.order, "0:alpha=9;0:eval=2.5;10:alpha=9;10:eval=2.4;", 44));

    /* a second run of the same name: find by name gives the latest, by id either */
    int64_t id2 = 0, found = 0;
    in.kind = "dpo";
    CHECK(wh_trun_begin(db, &in, &id2) == TW_OK);
    CHECK(wh_trun_find(db, "smol-sft", &found) == TW_OK);
    CHECK_EQ_INT(found, id2);
    char idtxt[32];
    snprintf(idtxt, sizeof idtxt, "%lld", (long long)id);
    CHECK(wh_trun_find(db, idtxt, &found) == TW_OK);
    CHECK_EQ_INT(found, id);
    CHECK(wh_trun_find(db, "nope", &found) == TW_ERR_NOT_FOUND);
    CHECK(strstr(tw_errmsg(), "'nope'") != NULL);
    CHECK(wh_trun_find(db, "999", &found) == TW_ERR_NOT_FOUND);
    CHECK(wh_trun_get(db, id2, &r) == TW_OK);
    CHECK_EQ_STR(r.status, "running");
    CHECK(r.finished_at == 0 && r.last_step == -1 && isnan(r.last_loss) && r.n_evals == 0);
    wh_trun_clear(&r);

    /* refusals */
    wh_trun_in bad = {.name = "x", .kind = "ppo"};
    CHECK(wh_trun_begin(db, &bad, &found) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "ppo") != NULL);
    bad.kind = "sft";
    bad.name = "";
    CHECK(wh_trun_begin(db, &bad, &found) == TW_ERR_ARG);
    wh_trun_step st = {1, 1, 1, 1, 1, 1, 0};
    CHECK(wh_trun_log_step(db, 999, &st) == TW_ERR_NOT_FOUND);
    CHECK(wh_trun_log_eval(db, 999, 1, "eval", 1, NULL) == TW_ERR_NOT_FOUND);
    CHECK(wh_trun_finish(db, id2, "done", NULL, NULL) == TW_ERR_ARG);
    CHECK(wh_trun_finish(db, 999, "ok", NULL, NULL) == TW_ERR_NOT_FOUND);

    /* each over several pages, stopping when asked */
    for (int i = 0; i < 45; i++) {
        wh_trun_in m = {.name = "many", .kind = "sft"};
        CHECK(wh_trun_begin(db, &m, &found) == TW_OK);
    }
    int count = 0;
    CHECK(wh_trun_each(db, on_run, &count) == TW_OK);
    CHECK_EQ_INT(count, 40);
    CHECK(wh_integrity_check(db) == TW_OK);
    wh_close(db);
}

/* Three runs for the CLI test: two SFT runs that differ in lr and rank, one DPO run that
 * failed. Losses follow simple formulas the shell test checks. */
static int fill(const char *path) {
    wh_db *db;
    if (wh_open(path, &db)) {
        fprintf(stderr, "%s\n", tw_errmsg());
        return 1;
    }
    struct {
        const char *name, *kind, *cfg, *status, *err;
        double lr, l0;
        int steps;
    } runs[3] = {
        {"sft-a", "sft", "{\"lr\":0.0002,\"r\":8,\"alpha\":16,\"epochs\":1}", "ok", NULL, 2e-4, 3.0, 40},
        {"sft-b", "sft", "{\"lr\":0.0001,\"r\":16,\"alpha\":16,\"epochs\":1}", "ok", NULL, 1e-4, 3.2, 30},
        {"dpo-c", "dpo", "{\"lr\":0.00005,\"beta\":0.1}", "failed", "loss diverged at step 5", 5e-5, 0.7, 6},
    };
    int rc = 0;
    for (int i = 0; i < 3 && !rc; i++) {
        wh_trun_in in = {.name = runs[i].name, .kind = runs[i].kind, .config_json = runs[i].cfg,
                         .base_model = "smollm2-135m", .base_hash = "b0b0", .dataset = "ds-1",
                         .dataset_hash = "d5d5", .code_version = "0.1.0", .host = "testhost"};
        int64_t id;
        rc |= wh_trun_begin(db, &in, &id) != TW_OK;
        for (int s = 1; s <= runs[i].steps && !rc; s++) {
            /* loss = l0 / sqrt(step): train curve; eval every 10 steps at 1.1x */
            double loss = runs[i].l0 / sqrt((double)s);
            wh_trun_step st = {s, loss, runs[i].lr, 1.0, 5000, 300 << 20, 1.7e9 + s};
            rc |= wh_trun_log_step(db, id, &st) != TW_OK;
            if (s % 10 == 0) rc |= wh_trun_log_eval(db, id, s, "eval", loss * 1.1, "{}") != TW_OK;
        }
        rc |= wh_trun_finish(db, id, runs[i].status, !strcmp(runs[i].status, "ok") ? "adapters/x" : NULL,
                             runs[i].err) != TW_OK;
    }
    if (rc) fprintf(stderr, "fill: %s\n", tw_errmsg());
    wh_close(db);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--fill")) return fill(argv[2]);
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_trun.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) return 1;
    RUN(test_migration);
    RUN(test_api);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_DONE();
}
