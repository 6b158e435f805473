/* retrieval.c: the warehouse's chunks in the HNSW index (retrieval.h). */
#include "retrieval.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct retrieval {
    tw_encoder *enc;
    hnsw_index *ix;
    char *dir;
    char *path;   /* <dir>/<safe model id>.hnsw */
    char *model;  /* tw_encoder_id, the warehouse's key for embeddings */
    int32_t dim;
};

int32_t retrieval_day_of(const char *s) {
    if (!s) return INT32_MIN;
    int y, m, d;
    char c1, c2;
    if (sscanf(s, "%4d%c%2d%c%2d", &y, &c1, &m, &c2, &d) != 5 || c1 != '-' || c2 != '-')
        return INT32_MIN;
    if (y < 1 || m < 1 || m > 12 || d < 1 || d > 31) return INT32_MIN;
    /* Days from civil (proleptic Gregorian), era-based so it is exact for any year. */
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return (int32_t)(era * 146097 + doe - 719468);
}

/* The index file name of a model id: characters outside [A-Za-z0-9._-] become '_'. */
static char *index_file_for(const char *dir, const char *model) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/", dir);
    for (const char *p = model; *p; p++) {
        char c = *p;
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '.' || c == '_' || c == '-';
        tw_sb_putc(&sb, ok ? c : '_');
    }
    tw_sb_puts(&sb, ".hnsw");
    return tw_sb_take(&sb);
}

tw_status retrieval_open(const char *index_dir, tw_encoder *enc, retrieval **out) {
    *out = NULL;
    if (!index_dir || !enc) return tw_error(TW_ERR_ARG, "retrieval_open: NULL index_dir or encoder");
    tw_status st = tw_mkdir_p(index_dir);
    if (st) return st;
    retrieval *r = tw_calloc(1, sizeof *r);
    if (!r) return TW_ERR_NOMEM;
    r->enc = enc;
    r->dim = tw_encoder_dim(enc);
    r->dir = tw_strdup(index_dir);
    r->model = tw_strdup(tw_encoder_id(enc));
    if (!r->dir || !r->model) {
        retrieval_free(r);
        return TW_ERR_NOMEM;
    }
    r->path = index_file_for(index_dir, r->model);
    if (!r->path) {
        retrieval_free(r);
        return TW_ERR_NOMEM;
    }
    if (tw_path_exists(r->path)) {
        st = hnsw_load(r->path, &r->ix);
        if (!st && hnsw_dim(r->ix) != r->dim)
            st = tw_error(TW_ERR_FORMAT, "%s: index dimension %d but model %s gives %d", r->path,
                          hnsw_dim(r->ix), r->model, r->dim);
        if (!st && hnsw_get_metric(r->ix) != HNSW_COSINE)
            st = tw_error(TW_ERR_FORMAT, "%s: index metric is not cosine", r->path);
    } else {
        hnsw_params p;
        hnsw_params_default(&p, r->dim, HNSW_COSINE);
        st = hnsw_new(&p, &r->ix);
    }
    if (st) {
        retrieval_free(r);
        return st;
    }
    *out = r;
    return TW_OK;
}

void retrieval_free(retrieval *r) {
    if (!r) return;
    hnsw_free(r->ix);
    tw_free(r->dir);
    tw_free(r->path);
    tw_free(r->model);
    tw_free(r);
}

hnsw_index *retrieval_index(retrieval *r) { return r->ix; }
const char *retrieval_index_path(const retrieval *r) { return r->path; }

/* ---- sync ---------------------------------------------------------------------------------- */

static void payload_of(const wh_chunk *c, hnsw_payload *p) {
    p->author_id = c->author_id;
    p->platform = (int32_t)c->platform;
    p->doc_type = (c->kind && !strcmp(c->kind, "code")) ? 1 : 0;
    p->published_day = retrieval_day_of(c->published_at);
}

typedef struct {
    retrieval *r;
    wh_db *db;
    const retrieval_sync_opts *o;
    retrieval_sync_stats *stats;
    int64_t total;      /* chunks to embed, counted first (for progress) */
    int64_t done;
    /* the batch being filled: (n) texts (owned), ids, payloads */
    int32_t n, cap;
    char **texts;
    int64_t *ids;
    hnsw_payload *pay;
    float *vecs;        /* (cap, dim) */
    /* ids added to the index but not yet saved and recorded */
    int64_t *pending;
    size_t n_pending, cap_pending;
    double last_save;
    tw_status st;
} sync_state;

/* Saves the index, then records the pending chunks as embedded (that order: see the header). */
static tw_status sync_flush(sync_state *s) {
    tw_status st = hnsw_save(s->r->ix, s->r->path);
    if (st) return st;
    if (s->n_pending) {
        st = wh_embeddings_mark(s->db, s->r->model, s->r->dim, s->pending, s->n_pending);
        if (st) return st;
        s->stats->embedded += (int64_t)s->n_pending;
        s->n_pending = 0;
    }
    s->last_save = tw_now_s();
    return TW_OK;
}

static tw_status sync_embed_batch(sync_state *s) {
    if (s->n == 0) return TW_OK;
    int32_t trunc = 0;
    tw_status st = tw_encoder_embed(s->r->enc, (const char *const *)s->texts, NULL, s->n, s->vecs,
                                    &trunc);
    if (st) return st;
    s->stats->truncated += trunc;
    for (int32_t i = 0; i < s->n; i++) {
        st = hnsw_add(s->r->ix, s->ids[i], s->vecs + (size_t)i * s->r->dim, &s->pay[i]);
        if (st) return st;
        if (s->n_pending == s->cap_pending) {
            size_t nc = s->cap_pending ? s->cap_pending * 2 : 256;
            int64_t *np = tw_realloc(s->pending, nc * sizeof *np);
            if (!np) return TW_ERR_NOMEM;
            s->pending = np;
            s->cap_pending = nc;
        }
        s->pending[s->n_pending++] = s->ids[i];
    }
    for (int32_t i = 0; i < s->n; i++) {
        tw_free(s->texts[i]);
        s->texts[i] = NULL;
    }
    s->done += s->n;
    s->n = 0;
    if (s->o->progress) s->o->progress(s->o->progress_ctx, s->done, s->total);
    double every = s->o->save_every_s > 0 ? s->o->save_every_s : 30.0;
    if (tw_now_s() - s->last_save >= every) return sync_flush(s);
    return TW_OK;
}

static int count_chunk(void *ctx, const wh_chunk *c) {
    (void)c;
    ++*(int64_t *)ctx;
    return 0;
}

static int collect_chunk(void *ctx, const wh_chunk *c) {
    sync_state *s = ctx;
    /* Headings carry meaning the chunk text may lack ("## Why I left Google"): embed them. */
    tw_sb sb;
    tw_sb_init(&sb);
    if (c->heading && c->heading[0] && strstr(c->text, c->heading) == NULL)
        tw_sb_printf(&sb, "%s\n\n", c->heading);
    tw_sb_puts(&sb, c->text);
    char *t = tw_sb_take(&sb);
    if (!t) {
        s->st = TW_ERR_NOMEM;
        return 1;
    }
    s->texts[s->n] = t;
    s->ids[s->n] = c->id;
    payload_of(c, &s->pay[s->n]);
    s->n++;
    if (s->n == s->cap) {
        s->st = sync_embed_batch(s);
        if (s->st) return 1;
    }
    return 0;
}

typedef struct {
    hnsw_index *ix;
    int64_t removed, upto;
    tw_status st;
} tomb_state;

static int drop_tombstone(void *ctx, int64_t id) {
    tomb_state *t = ctx;
    if (hnsw_contains(t->ix, id)) {
        t->st = hnsw_remove(t->ix, id);
        if (t->st) return 1;
        t->removed++;
    }
    t->upto = id;
    return 0;
}

/* Removes the index files of other models in the folder (their embeddings were forgotten). */
static void remove_other_indexes(const retrieval *r) {
    DIR *d = opendir(r->dir);
    if (!d) return;
    const char *mine = strrchr(r->path, '/');
    mine = mine ? mine + 1 : r->path;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 5 && !strcmp(e->d_name + n - 5, ".hnsw") && strcmp(e->d_name, mine)) {
            tw_sb p;
            tw_sb_init(&p);
            tw_sb_printf(&p, "%s/%s", r->dir, e->d_name);
            if (unlink(tw_sb_str(&p)) == 0)
                tw_log_info("removed %s (an index of another embedding model)", tw_sb_str(&p));
            tw_sb_free(&p);
        }
    }
    closedir(d);
}

tw_status retrieval_sync(retrieval *r, wh_db *db, const retrieval_sync_opts *opts,
                         retrieval_sync_stats *stats) {
    retrieval_sync_opts o0 = {0};
    retrieval_sync_stats st0;
    if (!opts) opts = &o0;
    if (!stats) stats = &st0;
    memset(stats, 0, sizeof *stats);

    /* A model change: the warehouse forgets the other models' embeddings. Their chunks are then
     * "unembedded" for this model and are embedded below. */
    tw_status st = wh_embeddings_reset_except(db, r->model);
    if (st) return st;
    remove_other_indexes(r);

    /* Deleted chunks first, so that a changed document's old vectors never outlive its sync. */
    tomb_state ts = {r->ix, 0, 0, TW_OK};
    st = wh_tombstones_each(db, drop_tombstone, &ts);
    if (!st) st = ts.st;
    if (st) return st;
    stats->removed = ts.removed;

    sync_state s;
    memset(&s, 0, sizeof s);
    s.r = r;
    s.db = db;
    s.o = opts;
    s.stats = stats;
    s.cap = opts->batch > 0 ? opts->batch : 64;
    s.last_save = tw_now_s();
    st = wh_chunk_each_unembedded(db, r->model, count_chunk, &s.total);
    if (st) return st;
    s.texts = tw_calloc((size_t)s.cap, sizeof *s.texts);
    s.ids = tw_calloc((size_t)s.cap, sizeof *s.ids);
    s.pay = tw_calloc((size_t)s.cap, sizeof *s.pay);
    s.vecs = tw_calloc((size_t)s.cap * (size_t)r->dim, sizeof *s.vecs);
    if (!s.texts || !s.ids || !s.pay || !s.vecs) st = TW_ERR_NOMEM;
    if (!st && s.total > 0) {
        st = wh_chunk_each_unembedded(db, r->model, collect_chunk, &s);
        if (!st) st = s.st;
        if (!st) st = sync_embed_batch(&s);
    }
    /* Save whenever something changed (also when only tombstones were removed), then record. */
    if (!st && (s.n_pending || ts.removed || !tw_path_exists(r->path))) st = sync_flush(&s);
    if (!st && ts.upto) st = wh_tombstones_clear(db, ts.upto);
    for (int32_t i = 0; i < s.n; i++) tw_free(s.texts[i]);
    tw_free(s.texts);
    tw_free(s.ids);
    tw_free(s.pay);
    tw_free(s.vecs);
    tw_free(s.pending);
    stats->total = hnsw_count(r->ix);
    return st;
}

/* ---- search ------------------------------------------------------------------------------- */

static int is_blank(const char *s) {
    for (; *s; s++)
        if (!(*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v'))
            return 0;
    return 1;
}

tw_status retrieval_search(retrieval *r, wh_db *db, const char *query, int32_t k,
                           const hnsw_filter *filter, retrieval_hit **hits, int32_t *n) {
    *hits = NULL;
    *n = 0;
    if (!query) return tw_error(TW_ERR_ARG, "retrieval_search: NULL query");
    if (k < 0) return tw_error(TW_ERR_ARG, "retrieval_search: k = %d must be >= 0", k);
    if (k == 0 || is_blank(query) || hnsw_count(r->ix) == 0) return TW_OK;
    float *q = tw_malloc((size_t)r->dim * sizeof *q);
    if (!q) return TW_ERR_NOMEM;
    int32_t trunc = 0;
    const char *texts[1] = {query};
    tw_status st = tw_encoder_embed(r->enc, texts, NULL, 1, q, &trunc);
    /* A query over the model's limit keeps its start; the encoder logs the truncation. */
    (void)trunc;
    /* Ask for a few more than k: hits whose chunk left the warehouse since the last sync are
     * dropped below. */
    int32_t want = k + 8;
    hnsw_hit *raw = st ? NULL : tw_calloc((size_t)want, sizeof *raw);
    int32_t found = 0;
    if (!st && !raw) st = TW_ERR_NOMEM;
    if (!st) st = hnsw_search(r->ix, q, want, 0, filter, raw, &found);
    retrieval_hit *out = NULL;
    int32_t m = 0;
    if (!st && found) {
        out = tw_calloc((size_t)k, sizeof *out);
        if (!out) st = TW_ERR_NOMEM;
        for (int32_t i = 0; !st && i < found && m < k; i++) {
            tw_status gs = wh_chunk_get(db, raw[i].id, &out[m].chunk);
            if (gs == TW_ERR_NOT_FOUND) continue; /* deleted since the last sync */
            if (gs) {
                st = gs;
                break;
            }
            out[m].score = raw[i].score;
            m++;
        }
    }
    tw_free(q);
    tw_free(raw);
    if (st) {
        retrieval_hits_free(out, m);
        return st;
    }
    *hits = out;
    *n = m;
    return TW_OK;
}

void retrieval_hits_free(retrieval_hit *hits, int32_t n) {
    if (!hits) return;
    for (int32_t i = 0; i < n; i++) wh_chunk_clear(&hits[i].chunk);
    tw_free(hits);
}
