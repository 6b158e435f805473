/* fullft.c: full fine-tuning's trainable weights (fullft.h): fp32 copies of a llama-family or
 * GPT-2 model's weights in one backend buffer of four regions, and the trained GGUF.
 *
 * Reads the loaded model's layout (model_impl.h: the architecture's weight table gives every
 * weight's role and GGUF name), as train.c does. GPT-2's table names the fused attn_qkv
 * (TW_W_QKV, TW_W_QKV_B), which is what the set holds and saves; its Q/K/V roles, which the
 * step multiplies with, are views of the fused tensor's row ranges (the set's `v`), as the
 * loader's are of the model's (model.c). */
#include "fullft.h"

#include <string.h>

#include "gguf.h"
#include "model_impl.h"
#include "quant.h"

struct fullft_set {
    tw_model *m;
    tw_backend *be;
    tw_buffer *buf;
    fullft_tensor *t; /* (n) */
    int32_t n;
    fullft_tensor *v; /* (nv) GPT-2: per layer Q, K, V and their biases inside the fused ones */
    int32_t nv;
    int tied;
    size_t n_floats;
    int64_t n_params;
};

static size_t align64f(size_t x) { return (x + 63) & ~(size_t)63; }

/* The architectures train.c's step covers (model_impl.h). */
static int trainable(const tw_model *m) { return tw_train_family(m) != TW_TRAIN_NONE; }

static const tw_weight *model_w(const tw_model *m, int32_t layer, int role) {
    return role < TW_W_LAYER_FIRST ? &m->g[role] : tw_layer_w(m, layer, (tw_wrole)role);
}

static int head_tied(const tw_model *m) {
    const tw_weight *o = &m->g[TW_W_OUTPUT], *e = &m->g[TW_W_TOK_EMBD];
    return o->ref.buf == e->ref.buf && o->ref.offset == e->ref.offset;
}

/* Calls fn for every weight the set trains, in the architecture table's order (model-wide
 * weights first, then layer by layer). */
typedef void (*weight_fn)(void *ctx, const tw_wdesc *wd, int32_t layer, const tw_weight *w);
static void for_each_weight(const tw_model *m, weight_fn fn, void *ctx) {
    const tw_arch_desc *a = m->arch;
    for (int pass = 0; pass < 2; pass++)
        for (int32_t l = pass ? 0 : -1; l < (pass ? m->hp.n_layer : 0); l++)
            for (int i = 0; i < a->n_weights; i++) {
                const tw_wdesc *wd = &a->weights[i];
                int layer_role = wd->role >= TW_W_LAYER_FIRST;
                if (layer_role != pass || wd->role == TW_W_ROPE_FREQS) continue;
                const tw_weight *w = model_w(m, l, wd->role);
                if (!w->ref.buf) continue;
                if (wd->role == TW_W_OUTPUT && head_tied(m)) continue;
                fn(ctx, wd, l, w);
            }
}

static void count_fn(void *ctx, const tw_wdesc *wd, int32_t layer, const tw_weight *w) {
    (void)wd, (void)layer;
    *(int64_t *)ctx += w->ne0 * w->ne1;
}

int64_t fullft_count_params(const tw_model *m) {
    if (!trainable(m)) return -1;
    int64_t n = 0;
    for_each_weight(m, count_fn, &n);
    return n;
}

typedef struct {
    fullft_set *s;
    size_t off;
} layout_ctx;

static void layout_fn(void *ctx, const tw_wdesc *wd, int32_t layer, const tw_weight *w) {
    layout_ctx *c = ctx;
    fullft_tensor *t = &c->s->t[c->s->n++];
    snprintf(t->name, sizeof t->name, wd->gguf, (int)layer);
    t->layer = layer;
    t->role = wd->role;
    t->ne0 = w->ne0;
    t->ne1 = w->ne1;
    t->off = c->off;
    c->off = align64f(c->off + (size_t)(w->ne0 * w->ne1));
    c->s->n_params += w->ne0 * w->ne1;
}

/* The views of every fused attn_qkv in the set (none for the llama family, whose table names
 * Q, K and V): Q rows [0, nq), K [nq, nq + nkv), V [nq + nkv, nq + 2 nkv) of the weight
 * (ne0 = n_embd floats a row) and the same ranges of the bias. A view's name is the fused
 * tensor's; it is found by fullft_find only, not listed by fullft_tensor_at. */
static void add_qkv_views(fullft_set *s) {
    const tw_model_hparams *hp = &s->m->hp;
    const int64_t nq = (int64_t)hp->n_head * hp->head_dim, nkv = (int64_t)hp->n_kv_head * hp->head_dim;
    const int64_t start[3] = {0, nq, nq + nkv}, rows[3] = {nq, nkv, nkv};
    static const int wrole[3] = {TW_W_Q, TW_W_K, TW_W_V}, brole[3] = {TW_W_Q_B, TW_W_K_B, TW_W_V_B};
    for (int32_t i = 0; i < s->n; i++) {
        const fullft_tensor *f = &s->t[i];
        if (f->role != TW_W_QKV && f->role != TW_W_QKV_B) continue;
        const int bias = f->role == TW_W_QKV_B;
        for (int j = 0; j < 3; j++) {
            fullft_tensor *v = &s->v[s->nv++];
            *v = *f;
            v->role = bias ? brole[j] : wrole[j];
            if (bias) {
                v->ne0 = rows[j];
                v->off = f->off + (size_t)start[j];
            } else {
                v->ne1 = rows[j];
                v->off = f->off + (size_t)(start[j] * f->ne0);
            }
        }
    }
}

tw_status fullft_set_new(tw_model *m, fullft_set **out) {
    *out = NULL;
    if (!trainable(m))
        return tw_error(TW_ERR_UNSUPPORTED, "full fine-tuning: %s: architecture '%s' is neither "
                        "of the llama family nor GPT-2", m->path, m->arch->name);
    int64_t np = fullft_count_params(m);
    if (np > FULLFT_MAX_PARAMS)
        return tw_error(TW_ERR_RUNTIME, "full fine-tuning: %s has %lld trainable parameters; it "
                        "would need about %.1f GiB for fp32 weights, gradients and AdamW moments "
                        "(20 bytes each, activations not counted); the limit is %lld parameters: "
                        "use LoRA", m->path, (long long)np, (double)np * 20.0 / 1073741824.0,
                        (long long)FULLFT_MAX_PARAMS);
    fullft_set *s = tw_calloc(1, sizeof *s);
    int cap = m->arch->n_weights * (int)(m->hp.n_layer + 1);
    if (s) s->t = tw_calloc((size_t)cap, sizeof *s->t);
    if (s) s->v = tw_calloc((size_t)(6 * m->hp.n_layer + 1), sizeof *s->v);
    if (!s || !s->t || !s->v) {
        fullft_set_free(s);
        return tw_error(TW_ERR_NOMEM, "full fine-tuning: out of memory");
    }
    s->m = m;
    s->be = m->be;
    s->tied = head_tied(m);
    layout_ctx lc = {s, 0};
    for_each_weight(m, layout_fn, &lc);
    s->n_floats = lc.off;
    add_qkv_views(s);
    tw_status st = tw_buffer_alloc(s->be, s->n_floats * FULLFT_N_REGIONS * sizeof(float), &s->buf);
    if (st) {
        fullft_set_free(s);
        return tw_error_wrap("full fine-tuning: %lld parameters (%.1f MiB)", (long long)np,
                             (double)lc.off * 16.0 / 1048576.0);
    }
    /* PARAM: each weight dequantized row by row (host scratch of one weight); the rest zero */
    float *host = tw_calloc(s->n_floats ? s->n_floats : 1, sizeof(float));
    if (!host) st = tw_error(TW_ERR_NOMEM, "full fine-tuning: out of memory");
    for (int32_t i = 0; !st && i < s->n; i++) {
        const fullft_tensor *t = &s->t[i];
        const tw_weight *w = model_w(m, t->layer, t->role);
        size_t rb = tw_dtype_row_bytes(w->type, w->ne0);
        if (!tw_dtype_can_dequantize(w->type) || rb == 0) {
            st = tw_error(TW_ERR_UNSUPPORTED, "full fine-tuning: %s: %s of type %s cannot be "
                          "dequantized", m->path, t->name, tw_dtype_name(w->type));
            break;
        }
        void *raw = tw_malloc(rb * (size_t)w->ne1);
        if (!raw) {
            st = tw_error(TW_ERR_NOMEM, "full fine-tuning: out of memory");
            break;
        }
        st = tw_buffer_download(w->ref.buf, w->ref.offset, raw, rb * (size_t)w->ne1);
        for (int64_t r = 0; !st && r < w->ne1; r++)
            st = tw_dequantize_row(w->type, (const char *)raw + (size_t)r * rb,
                                   host + t->off + (size_t)(r * w->ne0), w->ne0);
        tw_free(raw);
    }
    if (!st) st = fullft_upload(s, FULLFT_PARAM, host);
    tw_free(host);
    for (int r = FULLFT_GRAD; !st && r < FULLFT_N_REGIONS; r++) st = fullft_zero(s, (fullft_region)r);
    if (st) {
        fullft_set_free(s);
        return st;
    }
    *out = s;
    return TW_OK;
}

void fullft_set_free(fullft_set *s) {
    if (!s) return;
    tw_buffer_free(s->buf);
    tw_free(s->t);
    tw_free(s->v);
    tw_free(s);
}

int64_t fullft_n_params(const fullft_set *s) { return s->n_params; }
size_t fullft_n_floats(const fullft_set *s) { return s->n_floats; }
int32_t fullft_n_tensors(const fullft_set *s) { return s->n; }
const fullft_tensor *fullft_tensor_at(const fullft_set *s, int32_t i) {
    return i >= 0 && i < s->n ? &s->t[i] : NULL;
}
int fullft_tied(const fullft_set *s) { return s->tied; }

const fullft_tensor *fullft_find(const fullft_set *s, int32_t layer, int role) {
    if (role == TW_W_OUTPUT && s->tied) role = TW_W_TOK_EMBD;
    for (int32_t i = 0; i < s->n; i++)
        if (s->t[i].layer == layer && s->t[i].role == role) return &s->t[i];
    for (int32_t i = 0; i < s->nv; i++)
        if (s->v[i].layer == layer && s->v[i].role == role) return &s->v[i];
    return NULL;
}

tw_ref fullft_ref(const fullft_set *s, fullft_region reg, size_t off) {
    return tw_ref_at(s->buf, ((size_t)reg * s->n_floats + off) * sizeof(float));
}

tw_status fullft_download(const fullft_set *s, fullft_region reg, float *host) {
    if (!s->n_floats) return TW_OK;
    return tw_buffer_download(s->buf, (size_t)reg * s->n_floats * 4, host, s->n_floats * 4);
}

tw_status fullft_upload(fullft_set *s, fullft_region reg, const float *host) {
    if (!s->n_floats) return TW_OK;
    return tw_buffer_upload(s->buf, (size_t)reg * s->n_floats * 4, host, s->n_floats * 4);
}

/* Uploads of zeros, not a scale by 0: fresh backend memory (and a gradient after a
 * non-finite step) may hold NaN, and 0 * NaN is NaN. From one 1 MiB block, so a step's
 * clearing of the gradients does not map (and fault in) a region-sized host buffer. */
tw_status fullft_zero(fullft_set *s, fullft_region reg) {
    if (!s->n_floats) return TW_OK;
    return tw_buffer_zero(s->buf, (size_t)reg * s->n_floats * sizeof(float),
                          s->n_floats * sizeof(float));
}

/* ---- the trained GGUF ------------------------------------------------------------------------ */

static const fullft_tensor *find_name(const fullft_set *s, const char *name) {
    for (int32_t i = 0; i < s->n; i++)
        if (!strcmp(s->t[i].name, name)) return &s->t[i];
    return NULL;
}

tw_status fullft_save_gguf(const fullft_set *s, const char *base_path, const char *out_path,
                           tw_dtype type) {
    if (type != TW_DTYPE_F32 && type != TW_DTYPE_F16)
        return tw_error(TW_ERR_ARG, "full fine-tuning: output type %s: expected f32 or f16",
                        tw_dtype_name(type) ? tw_dtype_name(type) : "?");
    gguf_file *f = gguf_open(base_path);
    if (!f) return tw_errcode();
    float *host = tw_malloc((s->n_floats ? s->n_floats : 1) * sizeof(float));
    uint8_t *conv = NULL; /* trained tensors in the output type, one after another */
    size_t conv_bytes = 0;
    for (int32_t i = 0; i < s->n; i++)
        conv_bytes += (s->t[i].ne1 > 1 ? tw_dtype_row_bytes(type, s->t[i].ne0) : 4 * (size_t)s->t[i].ne0) *
                      (size_t)s->t[i].ne1;
    conv = tw_malloc(conv_bytes ? conv_bytes : 1);
    gguf_writer *w = gguf_writer_new(gguf_version(f) >= 3 ? 3 : gguf_version(f), gguf_alignment(f));
    tw_status st = TW_OK;
    if (!host || !conv || !w) st = tw_error(TW_ERR_NOMEM, "%s: out of memory", out_path);
    if (!st) st = fullft_download(s, FULLFT_PARAM, host);
    for (uint64_t i = 0; !st && i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        if (!strcmp(key, "general.file_type") || !strcmp(key, "twin.full_ft")) continue;
        st = gguf_writer_set_value(w, key, &kv->value);
    }
    /* llama.cpp's LLAMA_FTYPE: 0 all f32, 1 mostly f16 */
    if (!st) st = gguf_writer_set_u32(w, "general.file_type", type == TW_DTYPE_F16 ? 1u : 0u);
    if (!st) st = gguf_writer_set_bool(w, "twin.full_ft", 1);
    int32_t written = 0;
    size_t at = 0;
    for (uint64_t i = 0; !st && i < gguf_n_tensors(f); i++) {
        const gguf_tensor *ti = gguf_tensor_at(f, i);
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)ti->name.len, ti->name.ptr);
        const fullft_tensor *t = find_name(s, name);
        if (!t) {
            st = gguf_writer_add_tensor(w, name, ti->type, ti->n_dims, ti->ne, ti->data);
            continue;
        }
        if (ti->ne[0] != t->ne0 || (ti->n_dims > 1 ? ti->ne[1] : 1) != t->ne1) {
            st = tw_error(TW_ERR_RUNTIME, "%s: tensor %s has another shape than the trained one",
                          base_path, name);
            break;
        }
        tw_dtype ot = t->ne1 > 1 ? type : TW_DTYPE_F32;
        size_t rb = tw_dtype_row_bytes(ot, t->ne0);
        uint8_t *dst = conv + at;
        for (int64_t r = 0; !st && r < t->ne1; r++)
            st = tw_quantize_row(ot, host + t->off + (size_t)(r * t->ne0), dst + (size_t)r * rb, t->ne0);
        at += rb * (size_t)t->ne1;
        if (!st) st = gguf_writer_add_tensor(w, name, ot, ti->n_dims, ti->ne, dst);
        written++;
    }
    if (!st && written != s->n)
        st = tw_error(TW_ERR_RUNTIME, "%s: holds %d of the %d trained tensors (not the model the "
                      "set was made from?)", base_path, (int)written, (int)s->n);
    if (!st) st = gguf_writer_write(w, out_path);
    gguf_writer_free(w);
    tw_free(conv);
    tw_free(host);
    gguf_close(f);
    return st;
}
