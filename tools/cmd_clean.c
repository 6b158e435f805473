/* cmd_clean.c: twin clean [--author NAME] [--all]: raw documents -> cleaned text, with exact and
 * near duplicates marked across each author's documents.
 *
 * Which documents: those whose cleaned text is missing or stale (the raw content changed
 * since), or every one with --all. Each is cleaned by its content type (clean_document), then
 * compared with the author's other documents that are cleaned and not duplicates:
 *   exact: the same cleaned text (sha256), similarity 1;
 *   near:  estimated Jaccard of 5-word shingles >= DEDUP_NEAR_THRESHOLD (clean.h's MinHash +
 *          LSH index, built from those documents first).
 * Of two duplicates the older document (smaller id) is the original: a document cleaned now
 * that an existing newer one duplicates becomes the original, and the newer one is stored
 * again as its duplicate (wh_cleaned_put drops its chunks). Documents cleaned in this run are
 * compared with each other too, in id order. A text with no 5-word shingle is never a near
 * duplicate; an empty text is never a duplicate.
 *
 * With --all, a document whose cleaned text and duplicate status come out as stored is left
 * untouched and counted "unchanged". Nothing else is written, so a second run changes nothing.
 *
 * stderr: a progress line (rewritten in place on a terminal; every 2 s otherwise).
 * stdout: the summary: counts, then one line per failed document with its reason.
 * Exit: 0 all done, 1 a document could not be cleaned or the warehouse failed, 2 bad usage. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_warehouse.h"
#include "pipelines/clean.h"

#define CMD "clean"

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin clean [--author NAME] [--all]\n\n"
            "Cleans the raw documents of the warehouse into the text that chunking and datasets\n"
            "read (HTML main content, Markdown without front matter, code verbatim; Unicode NFC,\n"
            "whitespace normalised), and marks duplicates across each author's documents: exact\n"
            "(same cleaned text) and near (MinHash estimate of 5-word shingle Jaccard >= %.2f).\n"
            "Of two duplicates the older document is the original; duplicates are not chunked.\n\n"
            "  --author NAME   only this author's documents\n"
            "  --all           redo every document, not only new and changed ones (those that\n"
            "                  come out the same are left as they are)\n\n"
            "output: progress on stderr; a summary on stdout (cleaned, unchanged, exact and near\n"
            "duplicates, failed, with one line per failed document and its reason)\n\n"
            "exit status: 0 done, 1 a document could not be cleaned or a warehouse error,\n"
            "2 bad usage\n",
            DEDUP_NEAR_THRESHOLD);
}

/* A document to clean (from the first walk). */
typedef struct {
    int64_t id, author_id;
    int had_text;       /* --all: it had current cleaned text ... */
    int was_original;   /* ... and was not a duplicate */
    char prev_hash[65]; /* sha256 of that text */
} job;

/* A document that others may duplicate: cleaned, not a duplicate. */
typedef struct {
    int64_t id;
    char hash[65];
    dedup_sig sig;
    int retired; /* became a duplicate of an older document in this run */
} cand;

typedef struct {
    job *jobs;
    size_t n_jobs, cap_jobs;
    cand *cands;
    size_t n_cands, cap_cands;
    int oom;
    int64_t author_id; /* the author being deduplicated */
    int collect_originals; /* walk mode: 1 candidates (non-duplicates), 0 previous hashes */
} clean_state;

typedef struct {
    int64_t cleaned, unchanged, exact, near, failed;
} clean_counts;

static int grow(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap * 2 : 64;
    while (c < need) c *= 2;
    void *q = tw_realloc(*p, c * sz);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

static void hash_text(const char *s, size_t n, char out[65]) {
    uint8_t h[32];
    tw_sha256(s, n, h);
    tw_hex(h, 32, out);
}

static int collect_job(void *ctx, const wh_doc *d) {
    clean_state *s = ctx;
    if (grow((void **)&s->jobs, &s->cap_jobs, s->n_jobs + 1, sizeof(job))) return s->oom = 1;
    job *j = &s->jobs[s->n_jobs++];
    memset(j, 0, sizeof *j);
    j->id = d->id;
    j->author_id = d->author_id;
    return 0;
}

static int job_cmp(const void *a, const void *b) {
    const job *x = a, *y = b;
    if (x->author_id != y->author_id) return x->author_id < y->author_id ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The job of document id among jobs[lo, hi) (sorted by id), or NULL. */
static job *job_find(job *jobs, size_t lo, size_t hi, int64_t id) {
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (jobs[mid].id == id) return &jobs[mid];
        if (jobs[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

typedef struct {
    clean_state *s;
    size_t lo, hi; /* this author's jobs */
} walk_ctx;

static int cand_add(clean_state *s, int64_t id, const char *hash, const dedup_sig *sig) {
    if (grow((void **)&s->cands, &s->cap_cands, s->n_cands + 1, sizeof(cand))) return -1;
    cand *c = &s->cands[s->n_cands++];
    c->id = id;
    memcpy(c->hash, hash, 65);
    c->sig = *sig;
    c->retired = 0;
    return 0;
}

/* Walk of the author's current cleaned texts: candidates (documents not cleaned again now) and,
 * for documents cleaned again (--all), what they had. */
static int on_cleaned(void *ctx, const wh_doc *d) {
    walk_ctx *w = ctx;
    clean_state *s = w->s;
    job *j = job_find(s->jobs, w->lo, w->hi, d->id);
    char h[65];
    hash_text(d->content, d->content_len, h);
    if (j) {
        j->had_text = 1;
        memcpy(j->prev_hash, h, 65);
        if (s->collect_originals) j->was_original = 1;
        return 0;
    }
    if (!s->collect_originals) return 0;
    dedup_sig sig;
    dedup_signature(d->content, d->content_len, &sig);
    if (cand_add(s, d->id, h, &sig)) return s->oom = 1;
    return 0;
}

/* The original that document id (cleaned text hash h, signature sig) duplicates among the
 * candidates: exact first, then near. *c NULL when none. */
static tw_status find_original(clean_state *s, dedup_index **ix, int *ix_stale, int64_t id,
                               const char *h, const dedup_sig *sig, cand **c, double *sim) {
    *c = NULL;
    *sim = 0;
    /* Exact: a linear scan of the hashes (an author's documents number thousands at most;
     * the MinHash index below is what keeps near-duplicate search sub-quadratic). */
    for (size_t i = 0; i < s->n_cands; i++) {
        cand *k = &s->cands[i];
        if (k->retired || k->id == id || strcmp(k->hash, h)) continue;
        if (!*c || k->id < (*c)->id) *c = k;
    }
    if (*c) {
        *sim = 1.0;
        return TW_OK;
    }
    if (sig->n_shingles == 0) return TW_OK;
    if (*ix_stale) { /* rebuilt without the retired ones */
        dedup_index_free(*ix);
        *ix = NULL;
        tw_status st = dedup_index_new(ix);
        for (size_t i = 0; st == TW_OK && i < s->n_cands; i++)
            if (!s->cands[i].retired && s->cands[i].sig.n_shingles > 0)
                st = dedup_index_add(*ix, s->cands[i].id, &s->cands[i].sig);
        if (st != TW_OK) return st;
        *ix_stale = 0;
    }
    int64_t mid = 0;
    double msim = 0;
    tw_status st = dedup_index_query(*ix, sig, DEDUP_NEAR_THRESHOLD, &mid, &msim);
    if (st != TW_OK || mid == 0) return st;
    for (size_t i = 0; i < s->n_cands; i++)
        if (s->cands[i].id == mid && !s->cands[i].retired) {
            *c = &s->cands[i];
            *sim = msim;
        }
    return TW_OK;
}

typedef struct {
    int tty;
    double last;
    size_t done, total;
} progress;

static void progress_show(progress *p, const clean_counts *c, int final) {
    double now = tw_now_s();
    if (!final && !p->tty && now - p->last < 2.0) return;
    if (!final && p->tty && now - p->last < 0.1) return;
    p->last = now;
    char line[256];
    snprintf(line, sizeof line,
             "clean [%zu/%zu] cleaned %lld, unchanged %lld, exact duplicates %lld, near "
             "duplicates %lld, failed %lld",
             p->done, p->total, (long long)c->cleaned, (long long)c->unchanged,
             (long long)c->exact, (long long)c->near, (long long)c->failed);
    if (p->tty) fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
    else fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

/* Stores document m again as a duplicate of the older document `orig`. */
static tw_status demote(wh_db *db, int64_t m, int64_t orig, double sim) {
    wh_doc d;
    memset(&d, 0, sizeof d);
    tw_status st = wh_doc_get(db, m, WH_DOC_CLEANED, &d);
    if (st == TW_OK)
        st = wh_cleaned_put(db, m, d.content_hash, d.content, d.content_len, orig, sim, NULL);
    wh_doc_clear(&d);
    return st;
}

/* Cleans and deduplicates one author's jobs [lo, hi). Per-document failures are reported
 * into *failures and counted; a warehouse error returns its status. */
static tw_status clean_author(wh_db *db, clean_state *s, size_t lo, size_t hi, int all,
                              clean_counts *cnt, tw_sb *failures, progress *pg) {
    s->n_cands = 0;
    s->author_id = s->jobs[lo].author_id;
    walk_ctx w = {s, lo, hi};
    wh_doc_filter f = {s->author_id, -1, 0, 0, 1};
    s->collect_originals = 1;
    tw_status st = wh_doc_each(db, &f, WH_DOC_CLEANED, on_cleaned, &w);
    if (st == TW_OK && all && !s->oom) { /* duplicates' texts, to know what they had */
        f.skip_duplicates = 0;
        s->collect_originals = 0;
        st = wh_doc_each(db, &f, WH_DOC_CLEANED, on_cleaned, &w);
    }
    if (st == TW_OK && s->oom) st = tw_error(TW_ERR_NOMEM, "out of memory listing documents");
    if (st != TW_OK) return st;

    dedup_index *ix = NULL;
    int ix_stale = 1;
    tw_sb text;
    tw_sb_init(&text);
    for (size_t k = lo; k < hi && st == TW_OK; k++) {
        job *j = &s->jobs[k];
        pg->done++;
        wh_doc d;
        memset(&d, 0, sizeof d);
        st = wh_doc_get(db, j->id, WH_DOC_RAW, &d);
        if (st != TW_OK) break;
        tw_sb_clear(&text);
        tw_status cs = clean_document(d.content_type, d.content, d.content_len, &text);
        if (cs == TW_OK && text.failed) cs = tw_error(TW_ERR_NOMEM, "out of memory");
        if (cs != TW_OK) {
            tw_sb_printf(failures, "  document %lld (%s): %s\n", (long long)d.id, d.url,
                         tw_errmsg());
            cnt->failed++;
            wh_doc_clear(&d);
            progress_show(pg, cnt, 0);
            continue;
        }
        const char *t = tw_sb_str(&text);
        char h[65];
        hash_text(t, text.len, h);
        dedup_sig sig;
        dedup_signature(t, text.len, &sig);
        cand *m = NULL;
        double sim = 0;
        if (text.len > 0) st = find_original(s, &ix, &ix_stale, j->id, h, &sig, &m, &sim);
        int64_t dup_of = 0;
        if (st == TW_OK && m && m->id < j->id) {
            dup_of = m->id;
        } else if (st == TW_OK && m) { /* the match is newer: it becomes the duplicate */
            st = demote(db, m->id, j->id, sim);
            m->retired = 1;
            ix_stale = 1;
            if (sim >= 1.0) cnt->exact++;
            else cnt->near++;
        }
        if (st == TW_OK) {
            int same = all && j->had_text && !strcmp(j->prev_hash, h) &&
                       j->was_original == (dup_of == 0);
            if (dup_of) {
                if (sim >= 1.0) cnt->exact++;
                else cnt->near++;
            } else if (same) {
                cnt->unchanged++;
            } else {
                cnt->cleaned++;
            }
            /* An unchanged original is left as it is; a duplicate is stored again (its
             * original may have changed). */
            if (!(same && dup_of == 0))
                st = wh_cleaned_put(db, j->id, d.content_hash, t, text.len, dup_of, sim, NULL);
            if (st == TW_OK && dup_of == 0 && text.len > 0) {
                if (cand_add(s, j->id, h, &sig)) st = tw_error(TW_ERR_NOMEM, "out of memory");
                else if (!ix_stale && sig.n_shingles > 0) st = dedup_index_add(ix, j->id, &sig);
            }
        }
        wh_doc_clear(&d);
        progress_show(pg, cnt, 0);
    }
    tw_sb_free(&text);
    dedup_index_free(ix);
    return st;
}

int cmd_clean(int argc, char **argv) {
    const char *author = NULL;
    int all = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "--author", &v)) {
            if (!v || !*v) return cli_fail(CLI_USAGE, CMD, "--author needs a name");
            author = v;
        } else if (cli_flag(argv, i, "--all")) {
            all = 1;
        } else {
            return cli_fail(CLI_USAGE, CMD, "unknown argument '%s' (see twin clean --help)",
                            argv[i]);
        }
    }
    wh_db *db;
    int rc = cli_warehouse_open(CMD, &db);
    if (rc) return rc;
    int64_t author_id = 0;
    if (author && wh_author_find(db, author, &author_id)) {
        wh_close(db);
        return cli_fail(CLI_ERR, CMD, "--author '%s': no such author", author);
    }

    clean_state s;
    memset(&s, 0, sizeof s);
    wh_doc_filter f = {author_id, -1, 0, !all, 0};
    tw_status st = wh_doc_each(db, &f, WH_DOC_NONE, collect_job, &s);
    if (st == TW_OK && s.oom) st = tw_error(TW_ERR_NOMEM, "out of memory listing documents");
    clean_counts cnt = {0, 0, 0, 0, 0};
    tw_sb failures;
    tw_sb_init(&failures);
    progress pg = {isatty(STDERR_FILENO), 0, 0, s.n_jobs};
    if (st == TW_OK) {
        if (s.n_jobs) qsort(s.jobs, s.n_jobs, sizeof(job), job_cmp);
        for (size_t lo = 0; lo < s.n_jobs && st == TW_OK;) {
            size_t hi = lo;
            while (hi < s.n_jobs && s.jobs[hi].author_id == s.jobs[lo].author_id) hi++;
            st = clean_author(db, &s, lo, hi, all, &cnt, &failures, &pg);
            lo = hi;
        }
    }
    if (s.n_jobs) progress_show(&pg, &cnt, 1);
    if (st != TW_OK) {
        rc = cli_fail_status(CMD);
    } else {
        printf("clean: %zu documents: %lld cleaned, %lld unchanged, %lld exact duplicates, "
               "%lld near duplicates, %lld failed\n",
               s.n_jobs, (long long)cnt.cleaned, (long long)cnt.unchanged, (long long)cnt.exact,
               (long long)cnt.near, (long long)cnt.failed);
        if (cnt.failed) {
            printf("failed:\n%s", tw_sb_str(&failures));
            rc = CLI_ERR;
        }
        if (fflush(stdout) != 0 || ferror(stdout))
            rc = cli_fail(CLI_ERR, CMD, "standard output: write failed");
    }
    tw_sb_free(&failures);
    tw_free(s.jobs);
    tw_free(s.cands);
    wh_close(db);
    return rc;
}
