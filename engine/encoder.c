/* encoder.c: sentence embeddings from a BERT encoder (encoder.h).
 *
 * The weights load through the model loader (model.c) with the "bert" descriptor of
 * model_arch.c, from an HF folder or a BERT GGUF; this file adds what sentence-transformers
 * puts beside the weights (max_seq_length, the pooling and the Normalize module) and runs the
 * encoder's forward through the op table.
 *
 * Batches are ragged and packed: the texts of a call are sorted by token count and cut into
 * batches of at most max_batch tokens (texts of similar length together); the tokens of a
 * batch are laid end to end, so no padding is ever computed. Matmuls, norms and GELU run over
 * all the batch's rows at once; attention keeps each token inside its own text with the
 * segment attention op (kernels.h, TW_OP_ATTN_SEG, bidirectional): text s of the batch is
 * segment s. Every op computes a row from that row alone (matmul, layernorm, elementwise) or
 * from its own text (attention), so a text gets the same bits alone or in any batch, with any
 * thread count.
 *
 *   X    (T, n_embd)            the residual stream
 *   H    (T, n_embd)            embedding lookups, attention / MLP outputs
 *   Q    (T, n_head, head_dim)  K, V the same
 *   ATT  (T, n_head, head_dim)  attention output
 *   G    (T, n_ff)              MLP hidden
 *   IDS, POS, TYP, SEQ (T) int32: token ids, positions, token types, the text of each token
 * with T = max_batch tokens. Pooling runs on the host over the downloaded X (a reduction over
 * ragged rows of n_embd floats each: a few microseconds per text, fp64 sums).
 */
#include "encoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "model_impl.h"

#include <omp.h>

#define ENC_BATCH_TOKENS 1024 /* tokens per forward batch (at least max_tokens) */
#define ENC_MIN_SPLIT 128     /* fewest tokens per batch when a call is split for threads */
#define ENC_MAX_WORKERS 64    /* batches in flight at once */

typedef enum { ENC_POOL_MEAN = 0, ENC_POOL_CLS, ENC_POOL_MAX, ENC_POOL_MEAN_SQRT } enc_pool;
static const char *const pool_names[] = {"mean", "cls", "max", "mean_sqrt_len"};

enum {
    ENC_X = 0, ENC_H, ENC_Q, ENC_K, ENC_V, ENC_ATT, ENC_G, ENC_IDS, ENC_POS, ENC_TYP, ENC_SEQ,
    ENC_COUNT
};

/* What one batch in flight needs: the backend activations and host scratch. Several workers
 * run batches at once on a CPU backend (see tw_encoder_embed). */
typedef struct {
    tw_buffer *act;
    int32_t *h_ids, *h_pos, *h_seq; /* (T) each */
    float *h_x;                     /* (T, n_embd) */
} enc_work;

struct tw_encoder {
    tw_model *m;           /* weights, hyper-parameters, tokenizer */
    tw_backend *be;
    int32_t max_tokens;    /* per text, [CLS]/[SEP] included */
    enc_pool pool;
    int normalize;
    int32_t cls, sep;
    char id[160];

    int32_t T;             /* tokens per batch */
    int32_t max_seqs;      /* texts per batch: T / 2 (every text has [CLS] and [SEP]) */
    size_t off[ENC_COUNT]; /* of each activation in a worker's buffer */
    size_t act_bytes;
    int n_work;            /* workers allocated (1 at load, more on the first parallel call) */
    enc_work work[ENC_MAX_WORKERS];
};

int32_t tw_encoder_dim(const tw_encoder *e) { return e->m->hp.n_embd; }
int32_t tw_encoder_max_tokens(const tw_encoder *e) { return e->max_tokens; }
const tw_tokenizer *tw_encoder_tokenizer(const tw_encoder *e) { return tw_model_tokenizer(e->m); }
const char *tw_encoder_id(const tw_encoder *e) { return e->id; }

void tw_encoder_free(tw_encoder *e) {
    if (!e) return;
    for (int w = 0; w < e->n_work; w++) {
        enc_work *wk = &e->work[w];
        tw_buffer_free(wk->act);
        tw_free(wk->h_ids);
        tw_free(wk->h_pos);
        tw_free(wk->h_seq);
        tw_free(wk->h_x);
    }
    tw_model_free(e->m);
    tw_free(e);
}

/* ---- sentence-transformers configuration ---- */

static char *join(const char *dir, const char *name) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_puts(&sb, dir);
    if (sb.len && sb.buf[sb.len - 1] != '/') tw_sb_putc(&sb, '/');
    tw_sb_puts(&sb, name);
    if (sb.failed) {
        tw_sb_free(&sb);
        tw_error(TW_ERR_NOMEM, "out of memory");
        return NULL;
    }
    return tw_sb_take(&sb);
}

/* Parses <dir>/<rel> when it exists: *doc is NULL when the file is absent. */
static tw_status json_opt(const char *dir, const char *rel, tw_json **doc, char **path) {
    *doc = NULL;
    *path = join(dir, rel);
    if (!*path) return TW_ERR_NOMEM;
    if (!tw_path_exists(*path)) return TW_OK;
    *doc = tw_json_parse_file(*path);
    return *doc ? TW_OK : tw_errcode();
}

/* A pooling config.json: exactly one mode (sentence-transformers concatenates several, which
 * changes the dimension: refused). word_embedding_dimension must be the model's width. */
static tw_status read_pooling(tw_encoder *e, const char *path, const tw_json *doc) {
    if (!tw_json_is_object(doc))
        return tw_error(TW_ERR_FORMAT, "%s: expected a JSON object", path);
    double dim = tw_json_get_num(doc, "word_embedding_dimension", -1);
    if (dim != -1 && dim != (double)e->m->hp.n_embd)
        return tw_error(TW_ERR_FORMAT, "%s: word_embedding_dimension %g differs from the model's "
                        "hidden size %d", path, dim, (int)e->m->hp.n_embd);
    const char *mode = tw_json_get_str(doc, "pooling_mode", NULL); /* newer files */
    if (mode) {
        for (int p = 0; p < 4; p++)
            if (!strcmp(mode, pool_names[p]) || (p == ENC_POOL_MEAN_SQRT && !strcmp(mode, "mean_sqrt_len_tokens"))) {
                e->pool = (enc_pool)p;
                return TW_OK;
            }
        return tw_error(TW_ERR_UNSUPPORTED, "%s: pooling_mode '%s' is not supported (mean, cls, "
                        "max, mean_sqrt_len)", path, mode);
    }
    static const char *const keys[] = {"pooling_mode_mean_tokens", "pooling_mode_cls_token",
                                       "pooling_mode_max_tokens",
                                       "pooling_mode_mean_sqrt_len_tokens"};
    int n_on = 0;
    for (int p = 0; p < 4; p++) {
        tw_json *v = tw_json_get(doc, keys[p]);
        if (v && !tw_json_is_bool(v))
            return tw_error(TW_ERR_FORMAT, "%s: %s is not a boolean", path, keys[p]);
        if (tw_json_bool(v, 0)) {
            e->pool = (enc_pool)p;
            n_on++;
        }
    }
    static const char *const others[] = {"pooling_mode_weightedmean_tokens",
                                         "pooling_mode_lasttoken"};
    for (int i = 0; i < 2; i++)
        if (tw_json_get_bool(doc, others[i], 0))
            return tw_error(TW_ERR_UNSUPPORTED, "%s: %s is not supported (mean, cls, max, "
                            "mean_sqrt_len)", path, others[i]);
    if (n_on > 1)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: %d pooling modes at once (their concatenation) "
                        "are not supported", path, n_on);
    if (n_on == 0) e->pool = ENC_POOL_MEAN; /* the Pooling module's default */
    return TW_OK;
}

/* modules.json (Transformer, Pooling, Normalize), <pooling>/config.json and
 * sentence_bert_config.json of an HF folder. Without modules.json: mean pooling (or what
 * 1_Pooling/config.json says), no normalisation, as sentence-transformers wraps a plain model. */
static tw_status read_st_config(tw_encoder *e, const char *dir) {
    tw_json *doc = NULL;
    char *path = NULL, *pool_rel = NULL;
    tw_status st = json_opt(dir, "modules.json", &doc, &path);
    if (st == TW_OK && doc) {
        if (!tw_json_is_array(doc)) st = tw_error(TW_ERR_FORMAT, "%s: expected an array", path);
        for (tw_json *mod = doc ? tw_json_first(doc) : NULL; mod && st == TW_OK; mod = tw_json_next(mod)) {
            const char *type = tw_json_get_str(mod, "type", NULL);
            const char *rel = tw_json_get_str(mod, "path", "");
            if (!type) {
                st = tw_error(TW_ERR_FORMAT, "%s: a module without a \"type\" string", path);
                break;
            }
            const char *dot = strrchr(type, '.');
            const char *kind = dot ? dot + 1 : type;
            if (!strcmp(kind, "Transformer")) continue;
            if (!strcmp(kind, "Normalize")) {
                e->normalize = 1;
            } else if (!strcmp(kind, "Pooling")) {
                if (strstr(rel, "..") || rel[0] == '/') {
                    st = tw_error(TW_ERR_FORMAT, "%s: module path '%s' leaves the folder", path, rel);
                    break;
                }
                tw_free(pool_rel);
                if (!(pool_rel = join(rel, "config.json"))) st = TW_ERR_NOMEM;
            } else {
                st = tw_error(TW_ERR_UNSUPPORTED, "%s: module '%s' is not supported (Transformer, "
                              "Pooling, Normalize)", path, type);
            }
        }
    }
    tw_json_free(doc);
    tw_free(path);
    doc = NULL;
    path = NULL;
    if (st == TW_OK) {
        st = json_opt(dir, pool_rel ? pool_rel : "1_Pooling/config.json", &doc, &path);
        if (st == TW_OK && doc) st = read_pooling(e, path, doc);
        else if (st == TW_OK && pool_rel)
            st = tw_error(TW_ERR_NOT_FOUND, "%s: named by modules.json but absent", path);
        tw_json_free(doc);
        tw_free(path);
        doc = NULL;
        path = NULL;
    }
    tw_free(pool_rel);
    if (st == TW_OK) st = json_opt(dir, "sentence_bert_config.json", &doc, &path);
    if (st == TW_OK && doc) {
        tw_json *v = tw_json_get(doc, "max_seq_length");
        double n = tw_json_num(v, -1);
        if (v && !tw_json_is_null(v)) {
            if (!(n >= 2 && n <= 1e6 && n == floor(n)))
                st = tw_error(TW_ERR_FORMAT, "%s: max_seq_length must be an integer >= 2", path);
            else
                e->max_tokens = (int32_t)n;
        }
    }
    tw_json_free(doc);
    tw_free(path);
    return st;
}

/* A BERT GGUF: bert.pooling_type (llama.cpp: 1 mean, 2 cls; absent or 0 "none": mean), always
 * normalised (GGUF has no Normalize module; llama.cpp's embedding example normalises too), max
 * tokens = the position table. */
static tw_status read_gguf_config(tw_encoder *e) {
    int64_t v = 1;
    tw_status st = gguf_get_i64(e->m->gguf, "bert.pooling_type", &v);
    if (st == TW_ERR_NOT_FOUND) {
        tw_error_clear();
        v = 1;
    } else if (st != TW_OK) {
        return st;
    }
    if (v == 0 || v == 1) e->pool = ENC_POOL_MEAN;
    else if (v == 2) e->pool = ENC_POOL_CLS;
    else
        return tw_error(TW_ERR_UNSUPPORTED, "%s: bert.pooling_type %lld is not supported (1 mean, "
                        "2 cls)", e->m->path, (long long)v);
    e->normalize = 1;
    return TW_OK;
}

/* The identity: the folder or file name (without .gguf) @ 16 hex digits of the sha256 of the
 * weight files' sha256 digests and the pooling settings. */
static tw_status make_id(tw_encoder *e, const char *path) {
    tw_sha256_ctx c;
    tw_sha256_init(&c);
    const tw_model *m = e->m;
    int n_files = m->gguf ? 1 : m->n_st;
    for (int i = 0; i < n_files; i++) {
        /* Each weight file's digest, read from its record when the file is unchanged (a full
         * read of the weights at every load made each `twin search` pay for it). */
        char fh[65];
        tw_status st = tw_sha256_file_cached(m->gguf ? m->path : st_path(m->st[i]), fh);
        if (st != TW_OK) return st;
        tw_sha256_update(&c, fh, 64);
    }
    char cfg[96];
    int n = snprintf(cfg, sizeof cfg, "pool=%s;normalize=%d;max_tokens=%d", pool_names[e->pool],
                     e->normalize, (int)e->max_tokens);
    tw_sha256_update(&c, cfg, (size_t)n);
    uint8_t h[32];
    tw_sha256_final(&c, h);
    char hex[65];
    tw_hex(h, 32, hex);
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/') start--;
    size_t nl = len - start;
    if (nl > 5 && !strncmp(path + len - 5, ".gguf", 5)) nl -= 5;
    if (nl > 100) nl = 100;
    snprintf(e->id, sizeof e->id, "%.*s@%.16s", (int)nl, path + start, hex);
    return TW_OK;
}

/* Lays out the activations of one batch (e->off, e->act_bytes). */
static void layout_batch(tw_encoder *e) {
    const tw_model_hparams *hp = &e->m->hp;
    e->T = ENC_BATCH_TOKENS > e->max_tokens ? ENC_BATCH_TOKENS : e->max_tokens;
    e->max_seqs = e->T / 2;
    size_t T = (size_t)e->T, E = (size_t)hp->n_embd;
    size_t nq = (size_t)hp->n_head * (size_t)hp->head_dim;
    size_t bytes[ENC_COUNT] = {
        [ENC_X] = T * E * 4, [ENC_H] = T * E * 4, [ENC_Q] = T * nq * 4, [ENC_K] = T * nq * 4,
        [ENC_V] = T * nq * 4, [ENC_ATT] = T * nq * 4, [ENC_G] = T * (size_t)hp->n_ff * 4,
        [ENC_IDS] = T * 4, [ENC_POS] = T * 4, [ENC_TYP] = T * 4, [ENC_SEQ] = T * 4,
    };
    size_t total = 0;
    for (int a = 0; a < ENC_COUNT; a++) {
        e->off[a] = total;
        total += (bytes[a] + 255) & ~(size_t)255;
    }
    e->act_bytes = total;
}

/* Allocates workers until there are n (on the calling thread: buffers are allocated one thread
 * at a time). A worker that cannot be had leaves e->n_work at what succeeded. */
static tw_status workers_ensure(tw_encoder *e, int n) {
    const size_t T = (size_t)e->T, E = (size_t)e->m->hp.n_embd;
    while (e->n_work < n) {
        enc_work *wk = &e->work[e->n_work];
        memset(wk, 0, sizeof *wk);
        tw_status st = tw_buffer_alloc(e->be, e->act_bytes, &wk->act);
        if (st != TW_OK)
            return tw_error_wrap("%s: encoder activations for %zu tokens (%zu bytes)", e->m->path,
                                 T, e->act_bytes);
        wk->h_ids = tw_malloc(T * 4);
        wk->h_pos = tw_malloc(T * 4);
        wk->h_seq = tw_malloc(T * 4);
        wk->h_x = tw_malloc(T * E * 4);
        e->n_work++; /* from here tw_encoder_free releases it */
        if (!wk->h_ids || !wk->h_pos || !wk->h_seq || !wk->h_x)
            return tw_error(TW_ERR_NOMEM, "%s: encoder host scratch", e->m->path);
        /* token types: all 0 (one segment), uploaded once */
        memset(wk->h_ids, 0, T * 4);
        if ((st = tw_buffer_upload(wk->act, e->off[ENC_TYP], wk->h_ids, T * 4)) != TW_OK) return st;
    }
    return TW_OK;
}

tw_status tw_encoder_load(const char *path, tw_backend *be, tw_encoder **out) {
    if (!out) return tw_error(TW_ERR_ARG, "tw_encoder_load: out is NULL");
    *out = NULL;
    if (!path || !be) return tw_error(TW_ERR_ARG, "tw_encoder_load: path and backend are required");
    tw_encoder *e = tw_calloc(1, sizeof *e);
    if (!e) return TW_ERR_NOMEM;
    e->be = be;
    tw_status st = tw_model_load(path, be, NULL, &e->m);
    if (st != TW_OK) {
        tw_free(e);
        return st;
    }
    const tw_model_hparams *hp = &e->m->hp;
    if (!e->m->arch->encoder_only) {
        st = tw_error(TW_ERR_UNSUPPORTED, "%s: architecture %s is not a sentence encoder (bert)",
                      path, hp->arch);
        goto fail;
    }
    e->max_tokens = hp->n_ctx_train;
    e->pool = ENC_POOL_MEAN;
    st = e->m->gguf ? read_gguf_config(e) : read_st_config(e, path);
    if (st != TW_OK) goto fail;
    if (e->max_tokens > hp->n_ctx_train) {
        tw_log_warn("%s: max_seq_length %d exceeds the %d positions of the model; using %d", path,
                    (int)e->max_tokens, (int)hp->n_ctx_train, (int)hp->n_ctx_train);
        e->max_tokens = hp->n_ctx_train;
    }
    if (e->max_tokens < 2) {
        st = tw_error(TW_ERR_FORMAT, "%s: the model has %d positions; [CLS] and [SEP] need 2",
                      path, (int)e->max_tokens);
        goto fail;
    }
    const tw_tokenizer *tok = tw_model_tokenizer(e->m);
    e->cls = tw_tokenizer_cls(tok);
    e->sep = tw_tokenizer_sep(tok);
    if (e->cls < 0 || e->sep < 0 || e->cls >= hp->n_vocab || e->sep >= hp->n_vocab) {
        st = tw_error(TW_ERR_FORMAT, "%s: the tokenizer has no [CLS] or [SEP] token", path);
        goto fail;
    }
    layout_batch(e);
    if ((st = make_id(e, path)) || (st = workers_ensure(e, 1))) goto fail;
    *out = e;
    return TW_OK;
fail:
    tw_encoder_free(e);
    return st;
}

/* ---- forward ---- */

#define TRY(call)                                                                             \
    do {                                                                                      \
        tw_status _st = (call);                                                               \
        if (_st != TW_OK) return _st;                                                         \
    } while (0)

static tw_ref A(const tw_encoder *e, const enc_work *wk, int a) {
    return tw_ref_at(wk->act, e->off[a]);
}

static tw_status mm(const tw_encoder *e, tw_ref y, tw_ref x, const tw_weight *w,
                    const tw_weight *b, int64_t rows) {
    return tw_op_matmul(e->be, y, x, w->ref, w->type, b->ref, rows, w->ne0, w->ne1);
}

/* The encoder over one packed batch of n tokens in worker wk, whose host arrays h_ids, h_pos,
 * h_seq are filled. Leaves the last hidden states in wk->h_x (n, n_embd). */
static tw_status batch_run(const tw_encoder *e, enc_work *wk, int32_t n) {
    const tw_model *m = e->m;
    const tw_model_hparams *hp = &m->hp;
    tw_backend *be = e->be;
    const int64_t d = hp->n_embd, n4 = (int64_t)n * 4;
    TRY(tw_buffer_upload(wk->act, e->off[ENC_IDS], wk->h_ids, (size_t)n4));
    TRY(tw_buffer_upload(wk->act, e->off[ENC_POS], wk->h_pos, (size_t)n4));
    TRY(tw_buffer_upload(wk->act, e->off[ENC_SEQ], wk->h_seq, (size_t)n4));
    tw_ref X = A(e, wk, ENC_X), H = A(e, wk, ENC_H), Q = A(e, wk, ENC_Q), K = A(e, wk, ENC_K);
    tw_ref V = A(e, wk, ENC_V), ATT = A(e, wk, ENC_ATT), G = A(e, wk, ENC_G);
    const tw_weight *g = m->g;
    /* embeddings: word + token type + position (HF's order of additions), LayerNorm */
    TRY(tw_op_get_rows(be, X, g[TW_W_TOK_EMBD].ref, g[TW_W_TOK_EMBD].type, g[TW_W_TOK_EMBD].ne1,
                       A(e, wk, ENC_IDS), n, d));
    TRY(tw_op_get_rows(be, H, g[TW_W_TYPE_EMBD].ref, g[TW_W_TYPE_EMBD].type,
                       g[TW_W_TYPE_EMBD].ne1, A(e, wk, ENC_TYP), n, d));
    TRY(tw_op_add(be, X, X, H, n * d));
    TRY(tw_op_get_rows(be, H, g[TW_W_POS_EMBD].ref, g[TW_W_POS_EMBD].type, g[TW_W_POS_EMBD].ne1,
                       A(e, wk, ENC_POS), n, d));
    TRY(tw_op_add(be, X, X, H, n * d));
    TRY(tw_op_layernorm(be, X, X, g[TW_W_EMBD_NORM].ref, g[TW_W_EMBD_NORM_B].ref, n, d,
                        hp->norm_eps));
    const float scale = 1.0f / sqrtf((float)hp->head_dim);
    for (int32_t l = 0; l < hp->n_layer; l++) {
#define W(role) tw_layer_w(m, l, role)
        TRY(mm(e, Q, X, W(TW_W_Q), W(TW_W_Q_B), n));
        TRY(mm(e, K, X, W(TW_W_K), W(TW_W_K_B), n));
        TRY(mm(e, V, X, W(TW_W_V), W(TW_W_V_B), n));
        TRY(tw_op_attn_seg(be, ATT, tw_ref_none(), Q, K, V, A(e, wk, ENC_SEQ), n, hp->n_head,
                           hp->n_kv_head, hp->head_dim, scale, 0));
        TRY(mm(e, H, ATT, W(TW_W_O), W(TW_W_O_B), n));
        TRY(tw_op_add(be, X, X, H, n * d));
        TRY(tw_op_layernorm(be, X, X, W(TW_W_ATTN_NORM)->ref, W(TW_W_ATTN_NORM_B)->ref, n, d,
                            hp->norm_eps));
        TRY(mm(e, G, X, W(TW_W_UP), W(TW_W_UP_B), n));
        TRY(tw_op_gelu(be, G, G, n * hp->n_ff, TW_GELU_ERF));
        TRY(mm(e, H, G, W(TW_W_DOWN), W(TW_W_DOWN_B), n));
        TRY(tw_op_add(be, X, X, H, n * d));
        TRY(tw_op_layernorm(be, X, X, W(TW_W_FFN_NORM)->ref, W(TW_W_FFN_NORM_B)->ref, n, d,
                            hp->norm_eps));
#undef W
    }
    return tw_buffer_download(wk->act, e->off[ENC_X], wk->h_x, (size_t)n * (size_t)d * 4);
}

/* Pools the len rows x (len, d) of one text into out (d), then normalises when asked. */
static void pool_rows(const tw_encoder *e, const float *x, int32_t len, int32_t d, float *out) {
    for (int32_t j = 0; j < d; j++) {
        double acc;
        if (e->pool == ENC_POOL_CLS) {
            acc = x[j];
        } else if (e->pool == ENC_POOL_MAX) {
            acc = x[j];
            for (int32_t r = 1; r < len; r++) acc = fmax(acc, x[(size_t)r * d + j]);
        } else {
            acc = 0;
            for (int32_t r = 0; r < len; r++) acc += x[(size_t)r * d + j];
            acc = e->pool == ENC_POOL_MEAN ? acc / len : acc / sqrt((double)len);
        }
        out[j] = (float)acc;
    }
    if (!e->normalize) return;
    double ss = 0;
    for (int32_t j = 0; j < d; j++) ss += (double)out[j] * out[j];
    double norm = sqrt(ss);
    if (norm < 1e-12) norm = 1e-12; /* torch.nn.functional.normalize's eps */
    for (int32_t j = 0; j < d; j++) out[j] = (float)(out[j] / norm);
}

/* Sort key: token count, then the text's index (a stable order, so runs are reproducible). */
typedef struct {
    int32_t len, idx;
} enc_item;

static int item_cmp(const void *a, const void *b) {
    const enc_item *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* A batch: texts items[b0 .. b1) of the sorted list, ntok tokens. */
typedef struct {
    int32_t b0, b1, ntok;
} enc_batch;

/* Runs batch b in worker wk and pools each text into its row of out (n, dim). */
static tw_status batch_embed(const tw_encoder *e, enc_work *wk, const enc_batch *b,
                             const enc_item *items, const int64_t *start, const tw_tokens *all,
                             float *out) {
    const int32_t d = e->m->hp.n_embd;
    for (int32_t s = 0, t = 0; s < b->b1 - b->b0; s++) {
        const enc_item *it = &items[b->b0 + s];
        memcpy(wk->h_ids + t, all->ids + start[it->idx], (size_t)it->len * 4);
        for (int32_t j = 0; j < it->len; j++) {
            wk->h_pos[t + j] = j;
            wk->h_seq[t + j] = s;
        }
        t += it->len;
    }
    tw_status st = batch_run(e, wk, b->ntok);
    for (int32_t s = 0, r = 0; s < b->b1 - b->b0 && st == TW_OK; s++) {
        const enc_item *it = &items[b->b0 + s];
        pool_rows(e, wk->h_x + (size_t)r * (size_t)d, it->len, d, out + (size_t)it->idx * (size_t)d);
        r += it->len;
    }
    return st;
}

tw_status tw_encoder_embed(tw_encoder *e, const char *const *texts, const size_t *lens, int32_t n,
                           float *out, int32_t *n_truncated) {
    if (n_truncated) *n_truncated = 0;
    if (!e || n < 0 || (n > 0 && (!texts || !out)))
        return tw_error(TW_ERR_ARG, "tw_encoder_embed: %s", !e ? "encoder is NULL"
                        : n < 0 ? "n < 0" : "texts and out are required");
    if (n == 0) return TW_OK;
    for (int32_t i = 0; i < n; i++)
        if (!texts[i]) return tw_error(TW_ERR_ARG, "tw_encoder_embed: texts[%d] is NULL", (int)i);
    const tw_tokenizer *tok = tw_model_tokenizer(e->m);
    const int32_t body = e->max_tokens - 2;
    /* Token ids of every text, [CLS] body [SEP], end to end: ids[start[i] .. start[i] + len). */
    enc_item *items = tw_malloc((size_t)n * sizeof *items);
    int64_t *start = tw_malloc((size_t)n * sizeof *start);
    tw_tokens all, one;
    tw_tokens_init(&all);
    tw_tokens_init(&one);
    tw_status st = items && start ? TW_OK : tw_error(TW_ERR_NOMEM, "tw_encoder_embed: out of memory");
    int32_t truncated = 0;
    for (int32_t i = 0; i < n && st == TW_OK; i++) {
        size_t len = lens ? lens[i] : strlen(texts[i]);
        one.n = 0;
        st = tw_tokenizer_encode(tok, texts[i], len, 0, &one);
        if (st != TW_OK) {
            tw_error_wrap("tw_encoder_embed: text %d", (int)i);
            break;
        }
        size_t keep = one.n;
        if (keep > (size_t)body) {
            keep = (size_t)body;
            truncated++;
        }
        start[i] = (int64_t)all.n;
        items[i].len = (int32_t)keep + 2;
        items[i].idx = i;
        st = tw_tokens_push(&all, e->cls);
        for (size_t k = 0; k < keep && st == TW_OK; k++) st = tw_tokens_push(&all, one.ids[k]);
        if (st == TW_OK) st = tw_tokens_push(&all, e->sep);
    }
    tw_tokens_free(&one);
    if (st == TW_OK && truncated)
        tw_log_warn("encoder %s: %d of %d texts truncated at %d tokens", e->id, (int)truncated,
                    (int)n, (int)e->max_tokens);
    if (st == TW_OK) qsort(items, (size_t)n, sizeof *items, item_cmp);
    /* Batches of consecutive texts in length order, at most `cap` tokens (at least one text)
     * and max_seqs texts. */
    int nt = tw_threads_get(), n_batch = 0;
    int64_t total = (int64_t)all.n;
    int32_t cap = e->T;
    if (nt > 1 && total < (int64_t)nt * e->T) { /* split small calls so that threads get work */
        int64_t c = (total + nt - 1) / nt;
        cap = (int32_t)(c < ENC_MIN_SPLIT ? ENC_MIN_SPLIT : c < e->T ? c : e->T);
    }
    enc_batch *batches = st == TW_OK ? tw_malloc((size_t)n * sizeof *batches) : NULL;
    if (st == TW_OK && !batches) st = tw_error(TW_ERR_NOMEM, "tw_encoder_embed: out of memory");
    for (int32_t b0 = 0; b0 < n && st == TW_OK; n_batch++) {
        int32_t b1 = b0, ntok = 0;
        while (b1 < n && b1 - b0 < e->max_seqs && (b1 == b0 || ntok + items[b1].len <= cap))
            ntok += items[b1++].len;
        batches[n_batch] = (enc_batch){b0, b1, ntok};
        b0 = b1;
    }
    /* Batches run one after the other with the kernels' threads inside each op, or, on the CPU
     * backend with several batches, several at once (one per thread, each op then on its
     * thread alone: no barrier per op, so no thread waits for a descheduled one; kernels.h
     * allows concurrent CPU ops on disjoint outputs). Nested OpenMP must be off for the
     * latter (it is by default), else every op would start threads of its own. */
    int nw = nt < n_batch ? nt : n_batch;
    if (nw > ENC_MAX_WORKERS) nw = ENC_MAX_WORKERS;
    if (nw > 1 && (tw_backend_get_kind(e->be) != TW_BACKEND_CPU || omp_get_max_active_levels() > 1))
        nw = 1;
    if (st == TW_OK && nw > 1 && workers_ensure(e, nw) != TW_OK) {
        tw_log_warn("encoder %s: %s; running %d batches at once", e->id, tw_errmsg(), e->n_work);
        tw_error_clear();
        nw = e->n_work;
    }
    if (st == TW_OK && nw <= 1) {
        for (int b = 0; b < n_batch && st == TW_OK; b++)
            st = batch_embed(e, &e->work[0], &batches[b], items, start, &all, out);
    } else if (st == TW_OK) {
        /* a worker's error message is its thread's: the first is kept to raise here */
        tw_status first = TW_OK;
        char msg[512] = "";
#pragma omp parallel for schedule(dynamic, 1) num_threads(nw)
        for (int b = 0; b < n_batch; b++) {
            tw_status f;
#pragma omp atomic read
            f = first;
            if (f != TW_OK) continue;
            tw_status bs = batch_embed(e, &e->work[omp_get_thread_num()], &batches[b], items,
                                       start, &all, out);
            if (bs != TW_OK) {
#pragma omp critical(tw_encoder_error)
                if (first == TW_OK) {
                    snprintf(msg, sizeof msg, "%s", tw_errmsg());
#pragma omp atomic write
                    first = bs;
                }
            }
        }
        if (first != TW_OK) st = tw_error(first, "%s", msg);
    }
    tw_free(batches);
    tw_tokens_free(&all);
    tw_free(items);
    tw_free(start);
    if (st == TW_OK && n_truncated) *n_truncated = truncated;
    return st;
}
