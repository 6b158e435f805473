/* model.c: loading a model (model.h) from a GGUF file or an HF folder through an architecture
 * descriptor (model_arch.c): hyper-parameters, the weight table checked tensor by tensor
 * against them, placement of the weights on the backend, the tokenizer and the chat template.
 *
 * Placement. On the CPU backend each source file's mapping is wrapped once
 * (tw_buffer_wrap_host) and weights are views into it, in the type the file stores: the model
 * costs no memory beyond the pages the OS maps in. Everything else goes into ONE owned backend
 * buffer: on CUDA all weights (uploaded from the mapping), and on any backend the few tensors
 * that need work at load (norms/biases stored in a half type, converted to f32; HF GPT-2's
 * Conv1D matrices, transposed; llama3 frequency factors computed from config.json; a tensor
 * whose address is not aligned for its type). */
#include "model_impl.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "hfconfig.h"
#include "json.h"
#include "kv_cache.h"

#define TW_MAX_LAYERS 4096
#define TW_MAX_DIM (1 << 24) /* embedding, head, ff widths: far above any real model */
#define TW_PI 3.14159265358979323846

void tw_model_params_default(tw_model_params *p) {
    memset(p, 0, sizeof *p);
    p->max_batch_tokens = 512;
    p->max_logit_rows = 64;
}

/* ---- accessors ---- */

const tw_tokenizer *tw_model_tokenizer(const tw_model *m) { return m->tok; }
const tw_model_hparams *tw_model_get_hparams(const tw_model *m) { return &m->hp; }
int32_t tw_model_n_vocab(const tw_model *m) { return m->hp.n_vocab; }
int32_t tw_model_n_ctx_train(const tw_model *m) { return m->hp.n_ctx_train; }
const char *tw_model_arch_name(const tw_model *m) { return m->arch->name; }
const char *tw_model_chat_template(const tw_model *m) { return m->chat_template; }
tw_backend *tw_model_backend(const tw_model *m) { return m->be; }
const char *tw_model_path(const tw_model *m) { return m->path; }
size_t tw_model_weight_bytes(const tw_model *m) { return m->weight_bytes; }

void tw_model_free(tw_model *m) {
    if (!m) return;
    tw_forward_free(m);
    tw_buffer_free(m->owned);
    for (int i = 0; i < m->n_wrapped; i++) tw_buffer_free(m->wrapped[i]);
    tw_free(m->wrapped);
    gguf_close(m->gguf);
    for (int i = 0; i < m->n_st; i++) st_close(m->st[i]);
    tw_free(m->st);
    tw_tokenizer_free(m->tok);
    tw_free(m->chat_template);
    tw_free(m->layers);
    tw_free(m->path);
    tw_free(m);
}

/* ---- source tensors (GGUF or safetensors, in GGUF dimension order) ---- */

typedef struct {
    const char *name;
    tw_dtype type;       /* TW_DTYPE_COUNT: a type twin has no tw_dtype for */
    const char *st_type; /* safetensors dtype name, for messages */
    int n_dims;
    int64_t ne[8];       /* ne[0] contiguous */
    const uint8_t *data;
    size_t nbytes;
    int file;            /* index of its source file (wrapped buffer) */
    const uint8_t *file_base; /* start of that file's mapping */
} src_tensor;

/* Finds a tensor by name in the model's files; 0 when absent. */
static int src_find(const tw_model *m, const char *name, src_tensor *out) {
    memset(out, 0, sizeof *out);
    if (m->gguf) {
        const gguf_tensor *t = gguf_find_tensor(m->gguf, name);
        if (!t) return 0;
        out->name = name;
        out->type = t->type;
        out->n_dims = (int)t->n_dims;
        for (int i = 0; i < GGUF_MAX_DIMS; i++) out->ne[i] = t->ne[i];
        for (int i = GGUF_MAX_DIMS; i < 8; i++) out->ne[i] = 1;
        out->data = t->data;
        out->nbytes = (size_t)t->nbytes;
        out->file = 0;
        out->file_base = (const uint8_t *)t->data - t->offset - gguf_data_offset(m->gguf);
        return 1;
    }
    for (int s = 0; s < m->n_st; s++) {
        const st_tensor *t = st_find_tensor(m->st[s], name);
        if (!t) continue;
        out->name = name;
        out->type = t->dtype;
        out->st_type = st_dtype_name(t->st_type);
        out->n_dims = (int)t->n_dims;
        for (int i = 0; i < 8; i++) out->ne[i] = 1;
        for (uint32_t i = 0; i < t->n_dims; i++) out->ne[i] = t->shape[t->n_dims - 1 - i];
        out->data = t->data;
        out->nbytes = (size_t)t->nbytes;
        out->file = s;
        out->file_base = (const uint8_t *)t->data - t->offset - st_data_offset(m->st[s]);
        return 1;
    }
    return 0;
}

static int64_t dim_value(const tw_model_hparams *hp, tw_dimx d) {
    switch (d) {
    case TW_D_ONE: return 1;
    case TW_D_EMBD: return hp->n_embd;
    case TW_D_VOCAB: return hp->n_vocab;
    case TW_D_Q: return (int64_t)hp->n_head * hp->head_dim;
    case TW_D_KV: return (int64_t)hp->n_kv_head * hp->head_dim;
    case TW_D_QKV: return (int64_t)(hp->n_head + 2 * hp->n_kv_head) * hp->head_dim;
    case TW_D_FF: return hp->n_ff;
    case TW_D_CTX: return hp->n_ctx_train;
    case TW_D_ROPE_HALF: return hp->rope_dim / 2;
    case TW_D_TYPES: return hp->n_type_vocab;
    }
    return -1;
}

/* The types tw_op_matmul takes for W (kernels.h). */
static int matmul_type_ok(tw_dtype t) {
    switch (t) {
    case TW_DTYPE_F32: case TW_DTYPE_F16: case TW_DTYPE_BF16: case TW_DTYPE_Q4_0:
    case TW_DTYPE_Q4_1: case TW_DTYPE_Q5_0: case TW_DTYPE_Q5_1: case TW_DTYPE_Q8_0:
    case TW_DTYPE_Q2_K: case TW_DTYPE_Q3_K: case TW_DTYPE_Q4_K: case TW_DTYPE_Q5_K:
    case TW_DTYPE_Q6_K:
        return 1;
    default:
        return 0;
    }
}

/* Alignment the ops need for a tensor of type t (backend.c: element size for plain types, 2
 * for block types whose scales are fp16). */
static size_t type_align(tw_dtype t) { return t == TW_DTYPE_F32 ? 4 : 2; }

static const char *type_name(const src_tensor *s) {
    if (s->st_type) return s->st_type;
    const char *n = tw_dtype_name(s->type);
    return n ? n : "?";
}

/* ---- placement ---- */

typedef struct {
    tw_weight *dst;
    const void *src;  /* bytes to upload (the mapping or tmp) */
    void *tmp;        /* host memory made at load (converted/transposed), tw_free */
    size_t nbytes;
    size_t off;       /* in the owned buffer */
} placement;

typedef struct {
    placement *items;
    int n, cap;
    size_t owned_bytes;
} placer;

static tw_status placer_push(placer *pl, tw_weight *dst, const void *src, void *tmp, size_t nbytes) {
    if (pl->n == pl->cap) {
        int cap = pl->cap ? pl->cap * 2 : 256;
        placement *it = tw_realloc(pl->items, (size_t)cap * sizeof *it);
        if (!it) {
            tw_free(tmp);
            return tw_error(TW_ERR_NOMEM, "model: out of memory while placing weights");
        }
        pl->items = it;
        pl->cap = cap;
    }
    placement *p = &pl->items[pl->n++];
    p->dst = dst;
    p->src = src;
    p->tmp = tmp;
    p->nbytes = nbytes;
    p->off = pl->owned_bytes;
    pl->owned_bytes += (nbytes + 255) & ~(size_t)255; /* CUDA-friendly alignment */
    return TW_OK;
}

static void placer_free(placer *pl) {
    for (int i = 0; i < pl->n; i++) tw_free(pl->items[i].tmp);
    tw_free(pl->items);
    memset(pl, 0, sizeof *pl);
}

/* The zero-copy buffer over source file `file` (created on first use); NULL when the backend
 * cannot wrap host memory (then the caller uploads). */
static tw_buffer *wrap_file(tw_model *m, const src_tensor *s) {
    if (tw_backend_get_kind(m->be) != TW_BACKEND_CPU || m->params.no_mmap_weights) return NULL;
    if (!m->wrapped) {
        int n = m->gguf ? 1 : m->n_st;
        m->wrapped = tw_calloc((size_t)n, sizeof *m->wrapped);
        if (!m->wrapped) return NULL;
        m->n_wrapped = n;
    }
    if (s->file >= m->n_wrapped) return NULL;
    if (!m->wrapped[s->file]) {
        size_t size = m->gguf ? gguf_file_size(m->gguf) : st_file_size(m->st[s->file]);
        if (tw_buffer_wrap_host(m->be, (void *)(uintptr_t)s->file_base, size,
                                &m->wrapped[s->file]) != TW_OK) {
            tw_error_clear();
            return NULL;
        }
    }
    return m->wrapped[s->file];
}

/* Converts the whole tensor to f32 host memory (tw_free). */
static tw_status to_f32(const tw_model *m, const src_tensor *s, int64_t n, float **out) {
    *out = NULL;
    if (!tw_dtype_can_dequantize(s->type))
        return tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': type %s cannot be converted to f32",
                        m->path, s->name, type_name(s));
    float *f = tw_malloc((size_t)n * sizeof *f);
    if (!f) return tw_error(TW_ERR_NOMEM, "%s: tensor '%s': out of memory", m->path, s->name);
    tw_status st = tw_dequantize_row(s->type, s->data, f, n);
    if (st != TW_OK) {
        tw_free(f);
        return tw_error_wrap("%s: tensor '%s'", m->path, s->name);
    }
    *out = f;
    return TW_OK;
}

/* HF Conv1D weight (in, out) -> (out, in) rows, same element type (2 or 4 bytes). */
static tw_status transpose_conv1d(const tw_model *m, const src_tensor *s, void **out) {
    *out = NULL;
    size_t es = s->type == TW_DTYPE_F32 ? 4 : (s->type == TW_DTYPE_F16 || s->type == TW_DTYPE_BF16) ? 2 : 0;
    if (!es)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': type %s (a Conv1D weight must be F32, F16 or BF16)",
                        m->path, s->name, type_name(s));
    int64_t cols = s->ne[0], rows = s->ne[1]; /* file: (in = rows, out = cols) */
    uint8_t *t = tw_malloc(s->nbytes);
    if (!t) return tw_error(TW_ERR_NOMEM, "%s: tensor '%s': out of memory", m->path, s->name);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < cols; j++)
            memcpy(t + ((size_t)j * (size_t)rows + (size_t)i) * es,
                   s->data + ((size_t)i * (size_t)cols + (size_t)j) * es, es);
    *out = t;
    return TW_OK;
}

/* Resolves one weight of the table: finds it, checks shape and type against the descriptor,
 * and decides where it lives. */
static tw_status place_weight(tw_model *m, placer *pl, const tw_wdesc *d, int layer, tw_weight *w) {
    char name[160];
    const char *pattern = m->gguf ? d->gguf : d->hf;
    memset(w, 0, sizeof *w);
    if (!pattern) return TW_OK; /* not stored in this format (computed, or absent) */
    snprintf(name, sizeof name, pattern, layer);
    src_tensor s;
    int found = src_find(m, name, &s);
    /* GPT2LMHeadModel keeps the body under "transformer.", BertFor* under "bert." */
    static const char *const prefixes[] = {"transformer.", "bert."};
    for (int p = 0; !found && !m->gguf && p < 2; p++) {
        char alt[180];
        snprintf(alt, sizeof alt, "%s%s", prefixes[p], name);
        found = src_find(m, alt, &s);
        if (found) memcpy(name, alt, sizeof name - 1), name[sizeof name - 1] = 0;
    }
    if (!found) {
        if (d->flags & TW_WF_OPTIONAL) return TW_OK;
        return tw_error(TW_ERR_NOT_FOUND, "%s: tensor '%s' is missing (architecture %s)", m->path,
                        name, m->arch->name);
    }
    s.name = name;
    const int hf_conv = !m->gguf && (d->flags & TW_WF_HF_CONV1D);
    int64_t e0 = dim_value(&m->hp, d->ne0), e1 = dim_value(&m->hp, d->ne1);
    int64_t f0 = hf_conv ? e1 : e0, f1 = hf_conv ? e0 : e1; /* expected as the file stores it */
    int want_dims = d->ne1 == TW_D_ONE ? 1 : 2;
    int ok = s.ne[0] == f0 && s.ne[1] == f1 && s.n_dims <= 2 && s.n_dims >= 1;
    for (int i = 2; i < 8; i++) ok = ok && s.ne[i] == 1;
    if (want_dims == 1 && s.n_dims != 1) ok = 0;
    if (!ok) {
        char found_s[96];
        int k = 0;
        for (int i = 0; i < (s.n_dims > 0 ? s.n_dims : 1) && i < 8; i++) {
            /* GGUF shapes read ne0 first (as gguf info prints them); safetensors outermost
             * first, as the file and PyTorch write them. */
            int64_t v = m->gguf ? s.ne[i] : s.ne[s.n_dims - 1 - i];
            k += snprintf(found_s + k, sizeof found_s - (size_t)k, "%s%lld", i ? ", " : "", (long long)v);
            if (k >= (int)sizeof found_s) break;
        }
        if (want_dims == 1)
            return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': expected shape [%lld], found [%s]",
                            m->path, name, (long long)f0, found_s);
        if (m->gguf)
            return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': expected shape [%lld, %lld], found [%s]",
                            m->path, name, (long long)f0, (long long)f1, found_s);
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': expected shape [%lld, %lld], found [%s]",
                        m->path, name, (long long)f1, (long long)f0, found_s);
    }
    if (s.type == TW_DTYPE_COUNT || !tw_dtype_name(s.type))
        return tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': type %s is not supported", m->path,
                        name, type_name(&s));
    w->ne0 = e0;
    w->ne1 = e1;
    int64_t n_el = e0 * e1;

    if ((d->flags & TW_WF_F32) && s.type != TW_DTYPE_F32) {
        float *f = NULL;
        tw_status st = to_f32(m, &s, n_el, &f);
        if (st != TW_OK) return st;
        w->type = TW_DTYPE_F32;
        return placer_push(pl, w, f, f, (size_t)n_el * sizeof(float));
    }
    if ((d->flags & TW_WF_MATMUL) && !matmul_type_ok(s.type))
        return tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': type %s is not supported by matmul",
                        m->path, name, type_name(&s));
    if (d->role == TW_W_TOK_EMBD || d->role == TW_W_POS_EMBD || d->role == TW_W_TYPE_EMBD) {
        if (!tw_dtype_can_dequantize(s.type))
            return tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': type %s is not supported by get_rows",
                            m->path, name, type_name(&s));
    }
    w->type = s.type;
    if (hf_conv) {
        void *t = NULL;
        tw_status st = transpose_conv1d(m, &s, &t);
        if (st != TW_OK) return st;
        return placer_push(pl, w, t, t, s.nbytes);
    }
    tw_buffer *wb = ((uintptr_t)s.data % type_align(s.type)) == 0 ? wrap_file(m, &s) : NULL;
    if (wb) {
        w->ref = tw_ref_at(wb, (size_t)(s.data - s.file_base));
        return TW_OK;
    }
    return placer_push(pl, w, s.data, NULL, s.nbytes);
}

/* Llama 3.1 rope frequency factors from config.json's rope_scaling (as llama.cpp's converter
 * computes rope_freqs.weight): for each pair i, with wavelength 2 pi / theta^(-2i/d),
 * 1 at short wavelengths, `factor` at long ones, and a smooth blend in between. */
static tw_status llama3_freq_factors(const tw_model *m, const hf_config *c, float **out) {
    int32_t half = m->hp.rope_dim / 2;
    float *f = tw_malloc((size_t)half * sizeof *f);
    if (!f) return tw_error(TW_ERR_NOMEM, "%s: out of memory", m->path);
    double factor = c->rope_scaling.factor, lo = c->rope_scaling.low_freq_factor;
    double hi = c->rope_scaling.high_freq_factor;
    double old_ctx = (double)c->rope_scaling.original_max_position_embeddings;
    double lo_wavelen = old_ctx / lo, hi_wavelen = old_ctx / hi;
    for (int32_t i = 0; i < half; i++) {
        double freq = pow(m->hp.rope_theta, -2.0 * i / m->hp.rope_dim);
        double wavelen = 2 * TW_PI / freq;
        double r;
        if (wavelen < hi_wavelen) r = 1;
        else if (wavelen > lo_wavelen) r = factor;
        else {
            double smooth = (old_ctx / wavelen - lo) / (hi - lo);
            r = 1 / ((1 - smooth) / factor + smooth);
        }
        f[i] = (float)r;
    }
    *out = f;
    return TW_OK;
}

/* Checks the hyper-parameters a file gave before they size anything. */
static tw_status check_hparams(tw_model *m) {
    tw_model_hparams *hp = &m->hp;
    const char *bad = NULL;
    if (hp->n_layer <= 0 || hp->n_layer > TW_MAX_LAYERS) bad = "block count";
    else if (hp->n_embd <= 0 || hp->n_embd > TW_MAX_DIM) bad = "embedding length";
    else if (hp->n_head <= 0 || hp->n_head > 4096) bad = "head count";
    else if (hp->n_kv_head <= 0 || hp->n_kv_head > hp->n_head || hp->n_head % hp->n_kv_head)
        bad = "kv head count (must divide the head count)";
    else if (hp->head_dim <= 0 || hp->head_dim > 1024) bad = "head dimension";
    else if (hp->n_ff <= 0 || hp->n_ff > TW_MAX_DIM) bad = "feed-forward length";
    else if (hp->n_vocab <= 0 || hp->n_vocab > TW_MAX_DIM) bad = "vocabulary size";
    else if (hp->n_ctx_train <= 0) bad = "context length";
    else if (!m->arch->learned_pos &&
             (hp->rope_dim < 2 || hp->rope_dim > hp->head_dim || hp->rope_dim % 2))
        bad = "rope dimension count";
    else if (!(hp->norm_eps >= 0) || !isfinite(hp->norm_eps)) bad = "norm epsilon";
    else if (!m->arch->learned_pos && (!(hp->rope_theta > 0) || !isfinite(hp->rope_theta)))
        bad = "rope base";
    else if (!(hp->rope_freq_scale > 0) || !isfinite(hp->rope_freq_scale)) bad = "rope scaling";
    else if (m->arch->learned_pos && hp->n_ctx_train > TW_MAX_DIM) bad = "context length";
    else if (m->arch->encoder_only && (hp->n_type_vocab <= 0 || hp->n_type_vocab > 1024))
        bad = "token type count";
    if (bad)
        return tw_error(TW_ERR_FORMAT,
                        "%s: bad %s (layers %d, embd %d, heads %d/%d, head dim %d, ff %d, vocab %d, ctx %d, rope dim %d)",
                        m->path, bad, (int)hp->n_layer, (int)hp->n_embd, (int)hp->n_head,
                        (int)hp->n_kv_head, (int)hp->head_dim, (int)hp->n_ff, (int)hp->n_vocab,
                        (int)hp->n_ctx_train, (int)hp->rope_dim);
    return TW_OK;
}

/* ---- GGUF ---- */

/* Reads "<arch>.<key>" as an int32 > 0 (or >= 0); missing: dflt, or an error when dflt < 0. */
static tw_status gguf_hp_int(tw_model *m, const char *arch, const char *key, int64_t dflt,
                             int32_t *out) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int64_t v;
    tw_status st = gguf_get_i64(m->gguf, k, &v);
    if (st == TW_ERR_NOT_FOUND && dflt >= 0) {
        tw_error_clear();
        v = dflt;
    } else if (st != TW_OK) {
        return st; /* the message names the file and key */
    }
    if (v < 0 || v > INT32_MAX)
        return tw_error(TW_ERR_FORMAT, "%s: %s = %lld is out of range", m->path, k, (long long)v);
    *out = (int32_t)v;
    return TW_OK;
}

static tw_status gguf_hp_float(tw_model *m, const char *arch, const char *key, double dflt,
                               float *out) {
    char k[128];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    double v;
    tw_status st = gguf_get_f64(m->gguf, k, &v);
    if (st == TW_ERR_NOT_FOUND) {
        tw_error_clear();
        v = dflt;
    } else if (st != TW_OK) {
        return st;
    }
    *out = (float)v;
    return TW_OK;
}

static tw_status load_gguf_meta(tw_model *m) {
    char *arch = gguf_get_strdup(m->gguf, "general.architecture");
    if (!arch)
        return tw_error(TW_ERR_FORMAT, "%s: general.architecture is missing or not a string", m->path);
    m->arch = tw_arch_find_gguf(arch);
    if (!m->arch) {
        tw_status st = tw_error(TW_ERR_UNSUPPORTED,
                                "%s: architecture '%s' is not supported (llama, mistral, qwen2, gpt2, bert)",
                                m->path, arch);
        tw_free(arch);
        return st;
    }
    tw_model_hparams *hp = &m->hp;
    snprintf(hp->arch, sizeof hp->arch, "%s", m->arch->name);
    tw_status st;
    int32_t key_len = 0, rope_dim = 0;
    float scale_factor = 0, scale_linear = 0;
    char k[128];
    if ((st = gguf_hp_int(m, arch, "block_count", -1, &hp->n_layer)) ||
        (st = gguf_hp_int(m, arch, "embedding_length", -1, &hp->n_embd)) ||
        (st = gguf_hp_int(m, arch, "feed_forward_length", -1, &hp->n_ff)) ||
        (st = gguf_hp_int(m, arch, "attention.head_count", -1, &hp->n_head)) ||
        (st = gguf_hp_int(m, arch, "context_length", -1, &hp->n_ctx_train)) ||
        (st = gguf_hp_int(m, arch, "attention.head_count_kv", hp->n_head, &hp->n_kv_head)) ||
        (st = gguf_hp_int(m, arch, "attention.key_length", 0, &key_len)) ||
        (st = gguf_hp_int(m, arch, "vocab_size", 0, &hp->n_vocab)) ||
        (st = gguf_hp_float(m, arch, m->arch->eps_key, m->arch->eps_default, &hp->norm_eps)))
        goto done;
    hp->head_dim = key_len ? key_len : (hp->n_head > 0 ? hp->n_embd / hp->n_head : 0);
    if (!key_len && hp->n_head > 0 && hp->n_embd % hp->n_head) {
        st = tw_error(TW_ERR_FORMAT, "%s: %s.embedding_length %d is not a multiple of the head count %d",
                      m->path, arch, (int)hp->n_embd, (int)hp->n_head);
        goto done;
    }
    hp->rope_freq_scale = 1;
    if (!m->arch->learned_pos) {
        if ((st = gguf_hp_float(m, arch, "rope.freq_base", 10000.0, &hp->rope_theta)) ||
            (st = gguf_hp_int(m, arch, "rope.dimension_count", hp->head_dim, &rope_dim)) ||
            (st = gguf_hp_float(m, arch, "rope.scaling.factor", 0, &scale_factor)) ||
            (st = gguf_hp_float(m, arch, "rope.scale_linear", 0, &scale_linear)))
            goto done;
        hp->rope_dim = rope_dim;
        snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
        char *stype = gguf_get_strdup(m->gguf, k);
        if (stype && strcmp(stype, "linear") == 0 && scale_factor > 0)
            hp->rope_freq_scale = 1.0f / scale_factor;
        else if (stype && strcmp(stype, "none") != 0 && strcmp(stype, "linear") != 0) {
            /* yarn and friends change more than the frequencies */
            st = tw_error(TW_ERR_UNSUPPORTED, "%s: %s = '%s' is not supported (none, linear)",
                          m->path, k, stype);
            tw_free(stype);
            goto done;
        }
        tw_free(stype);
        if (scale_linear > 0) hp->rope_freq_scale = 1.0f / scale_linear;
        m->rope_mode = m->arch->rope_gguf;
    }
    if (hp->n_vocab == 0) { /* most files: the tokenizer's size, as llama.cpp takes it */
        const gguf_value *tv = gguf_find(m->gguf, "tokenizer.ggml.tokens");
        const gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
        if (tv && tv->type == GGUF_TYPE_ARRAY && tv->v.arr.count <= INT32_MAX) {
            hp->n_vocab = (int32_t)tv->v.arr.count;
            if (te && te->n_dims == 2 && te->ne[0] == hp->n_embd && te->ne[1] != hp->n_vocab) {
                st = tw_error(TW_ERR_FORMAT,
                              "%s: vocabulary mismatch: the tokenizer has %d tokens, token_embd.weight %lld rows",
                              m->path, (int)hp->n_vocab, (long long)te->ne[1]);
                goto done;
            }
        }
    }
    if (hp->n_vocab == 0) { /* no tokenizer in the file: the embedding's rows */
        const gguf_tensor *te = gguf_find_tensor(m->gguf, "token_embd.weight");
        if (te && te->n_dims == 2 && te->ne[1] <= INT32_MAX) hp->n_vocab = (int32_t)te->ne[1];
    }
    if (m->arch->encoder_only) { /* llama.cpp writes no key for it: the table's rows */
        const gguf_tensor *tt = gguf_find_tensor(m->gguf, "token_types.weight");
        hp->n_type_vocab = tt && tt->n_dims == 2 && tt->ne[1] <= 1024 ? (int32_t)tt->ne[1] : 2;
    }
    st = check_hparams(m);
    if (st == TW_OK) m->chat_template = gguf_get_strdup(m->gguf, "tokenizer.chat_template");
done:
    tw_free(arch);
    return st;
}

/* ---- HF folder ---- */

static char *path_join(const char *dir, const char *name) {
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

static tw_status st_add(tw_model *m, const char *dir, const char *file) {
    for (int i = 0; i < m->n_st; i++) { /* an index names each shard many times */
        const char *p = st_path(m->st[i]);
        size_t lp = strlen(p), lf = strlen(file);
        if (lp >= lf && strcmp(p + lp - lf, file) == 0 && (lp == lf || p[lp - lf - 1] == '/'))
            return TW_OK;
    }
    if (strchr(file, '/') || strstr(file, ".."))
        return tw_error(TW_ERR_FORMAT, "%s: shard name '%s' is not a plain file name", dir, file);
    char *path = path_join(dir, file);
    if (!path) return TW_ERR_NOMEM;
    st_file *f = st_open(path);
    tw_free(path);
    if (!f) return tw_errcode();
    st_file **a = tw_realloc(m->st, (size_t)(m->n_st + 1) * sizeof *a);
    if (!a) {
        st_close(f);
        return tw_error(TW_ERR_NOMEM, "out of memory");
    }
    m->st = a;
    m->st[m->n_st++] = f;
    return TW_OK;
}

static tw_status open_shards(tw_model *m, const char *dir) {
    char *single = path_join(dir, "model.safetensors");
    if (!single) return TW_ERR_NOMEM;
    int have_single = tw_path_exists(single);
    tw_free(single);
    if (have_single) return st_add(m, dir, "model.safetensors");
    char *index = path_join(dir, "model.safetensors.index.json");
    if (!index) return TW_ERR_NOMEM;
    tw_json *doc = tw_path_exists(index) ? tw_json_parse_file(index) : NULL;
    if (!doc) {
        tw_status st = tw_path_exists(index)
                           ? tw_errcode()
                           : tw_error(TW_ERR_NOT_FOUND,
                                      "%s: no model.safetensors or model.safetensors.index.json",
                                      dir);
        tw_free(index);
        return st;
    }
    tw_status st = TW_OK;
    tw_json *map = tw_json_get(doc, "weight_map");
    if (!tw_json_is_object(map))
        st = tw_error(TW_ERR_FORMAT, "%s: weight_map is missing or not an object", index);
    for (tw_json *e = map ? tw_json_first(map) : NULL; e && st == TW_OK; e = tw_json_next(e)) {
        const char *file = tw_json_str(e);
        if (!file) st = tw_error(TW_ERR_FORMAT, "%s: weight_map['%s'] is not a string", index, tw_json_key(e));
        else st = st_add(m, dir, file);
    }
    if (st == TW_OK && m->n_st == 0) st = tw_error(TW_ERR_FORMAT, "%s: weight_map is empty", index);
    tw_json_free(doc);
    tw_free(index);
    return st;
}

/* tokenizer_config.json's chat_template: a string, or a list of {name, template} (the one
 * named "default", else the first). Absent file or key: no template. */
static tw_status hf_chat_template(tw_model *m, const char *dir) {
    char *p = path_join(dir, "tokenizer_config.json");
    if (!p) return TW_ERR_NOMEM;
    if (!tw_path_exists(p)) {
        tw_free(p);
        return TW_OK;
    }
    tw_json *doc = tw_json_parse_file(p);
    tw_free(p);
    if (!doc) return tw_errcode();
    tw_json *t = tw_json_get(doc, "chat_template");
    const char *s = tw_json_str(t);
    if (!s && tw_json_is_array(t)) {
        for (tw_json *e = tw_json_first(t); e; e = tw_json_next(e)) {
            const char *tmpl = tw_json_get_str(e, "template", NULL);
            if (!tmpl) continue;
            if (!s) s = tmpl;
            if (strcmp(tw_json_get_str(e, "name", ""), "default") == 0) {
                s = tmpl;
                break;
            }
        }
    }
    tw_status st = TW_OK;
    if (s && !(m->chat_template = tw_strdup(s))) st = tw_error(TW_ERR_NOMEM, "out of memory");
    tw_json_free(doc);
    return st;
}

static tw_status load_hf_meta(tw_model *m, const char *dir, hf_config *c) {
    char *cfg = path_join(dir, "config.json");
    if (!cfg) return TW_ERR_NOMEM;
    tw_status st = hf_config_load(cfg, c);
    tw_free(cfg);
    if (st != TW_OK) return st;
    m->arch = tw_arch_find_hf(c->arch);
    if (!m->arch)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "%s/config.json: model_type '%s' is not an architecture twin runs (llama, mistral, qwen2, gpt2, bert)",
                        dir, c->model_type);
    hf_act want = m->arch->ffn == TW_FFN_GELU       ? HF_ACT_GELU_TANH
                  : m->arch->ffn == TW_FFN_GELU_ERF ? HF_ACT_GELU
                                                    : HF_ACT_SILU;
    if (c->act != want)
        return tw_error(TW_ERR_UNSUPPORTED, "%s/config.json: activation '%s' is not supported for %s",
                        dir, c->act_name, c->model_type);
    if (c->sliding_window > 0 && c->sliding_window < c->max_position_embeddings)
        tw_log_warn("%s: sliding window %lld is not applied (full attention)", dir,
                    (long long)c->sliding_window);
    tw_model_hparams *hp = &m->hp;
    snprintf(hp->arch, sizeof hp->arch, "%s", m->arch->name);
    const int64_t v[] = {c->n_layers, c->hidden_size, c->n_heads, c->n_kv_heads, c->head_dim,
                         c->intermediate_size, c->vocab_size, c->max_position_embeddings};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] < 0 || v[i] > INT32_MAX)
            return tw_error(TW_ERR_FORMAT, "%s/config.json: a dimension is out of range (%lld)", dir,
                            (long long)v[i]);
    hp->n_layer = (int32_t)c->n_layers;
    hp->n_embd = (int32_t)c->hidden_size;
    hp->n_head = (int32_t)c->n_heads;
    hp->n_kv_head = (int32_t)c->n_kv_heads;
    hp->head_dim = (int32_t)c->head_dim;
    hp->n_ff = (int32_t)c->intermediate_size;
    hp->n_vocab = (int32_t)c->vocab_size;
    hp->n_ctx_train = (int32_t)c->max_position_embeddings;
    hp->norm_eps = (float)c->norm_eps;
    if (m->arch->encoder_only) hp->n_type_vocab = c->type_vocab_size > 1024 ? -1 : (int32_t)c->type_vocab_size;
    hp->rope_freq_scale = 1;
    if (!m->arch->learned_pos) {
        hp->rope_theta = (float)c->rope_theta;
        hp->rope_dim = hp->head_dim;
        if (c->rope_scaling.type == HF_ROPE_SCALING_LINEAR && c->rope_scaling.factor > 0)
            hp->rope_freq_scale = (float)(1.0 / c->rope_scaling.factor);
        m->rope_mode = m->arch->rope_hf;
    }
    return check_hparams(m);
}

/* ---- load ---- */

static tw_status load_weights(tw_model *m, const hf_config *hfc) {
    const tw_arch_desc *a = m->arch;
    m->layers = tw_calloc((size_t)m->hp.n_layer, sizeof *m->layers);
    if (!m->layers) return tw_error(TW_ERR_NOMEM, "%s: out of memory", m->path);
    placer pl;
    memset(&pl, 0, sizeof pl);
    tw_status st = TW_OK;
    for (int i = 0; i < a->n_weights && st == TW_OK; i++) {
        const tw_wdesc *d = &a->weights[i];
        if (d->role < TW_W_LAYER_FIRST) {
            st = place_weight(m, &pl, d, 0, &m->g[d->role]);
        } else {
            for (int32_t l = 0; l < m->hp.n_layer && st == TW_OK; l++)
                st = place_weight(m, &pl, d, l, &m->layers[l].w[d->role - TW_W_LAYER_FIRST]);
        }
    }
    /* llama3 frequency factors from config.json (GGUF files carry rope_freqs.weight). */
    if (st == TW_OK && hfc && hfc->rope_scaling.type == HF_ROPE_SCALING_LLAMA3 &&
        !a->learned_pos) {
        float *f = NULL;
        st = llama3_freq_factors(m, hfc, &f);
        if (st == TW_OK) {
            tw_weight *w = &m->g[TW_W_ROPE_FREQS];
            w->type = TW_DTYPE_F32;
            w->ne0 = m->hp.rope_dim / 2;
            w->ne1 = 1;
            st = placer_push(&pl, w, f, f, (size_t)w->ne0 * sizeof(float));
        }
    }
    if (st == TW_OK && pl.owned_bytes > 0) {
        st = tw_buffer_alloc(m->be, pl.owned_bytes, &m->owned);
        if (st != TW_OK) tw_error_wrap("%s: weights (%zu bytes)", m->path, pl.owned_bytes);
    }
    for (int i = 0; i < pl.n && st == TW_OK; i++) {
        placement *p = &pl.items[i];
        st = tw_buffer_upload(m->owned, p->off, p->src, p->nbytes);
        p->dst->ref = tw_ref_at(m->owned, p->off);
        tw_free(p->tmp);
        p->tmp = NULL;
    }
    placer_free(&pl);
    if (st != TW_OK) return st;

    /* Weight bytes as stored (shared views counted once). */
    size_t total = 0;
    for (int i = 0; i < TW_W_LAYER_FIRST; i++)
        if (m->g[i].ref.buf) total += tw_dtype_row_bytes(m->g[i].type, m->g[i].ne0) * (size_t)m->g[i].ne1;
    for (int32_t l = 0; l < m->hp.n_layer; l++)
        for (int r = 0; r < TW_W_COUNT - TW_W_LAYER_FIRST; r++) {
            const tw_weight *w = &m->layers[l].w[r];
            if (w->ref.buf) total += tw_dtype_row_bytes(w->type, w->ne0) * (size_t)w->ne1;
        }
    m->weight_bytes = total;

    /* Fused Q/K/V: views of consecutive row ranges of the fused matrix and bias. */
    for (int32_t l = 0; l < m->hp.n_layer; l++) {
        tw_layer_weights *L = &m->layers[l];
        tw_weight *qkv = &L->w[TW_W_QKV - TW_W_LAYER_FIRST];
        if (!qkv->ref.buf) continue;
        int64_t nq = (int64_t)m->hp.n_head * m->hp.head_dim, nkv = (int64_t)m->hp.n_kv_head * m->hp.head_dim;
        size_t rb = tw_dtype_row_bytes(qkv->type, qkv->ne0);
        tw_weight *q = &L->w[TW_W_Q - TW_W_LAYER_FIRST], *k = &L->w[TW_W_K - TW_W_LAYER_FIRST],
                  *v = &L->w[TW_W_V - TW_W_LAYER_FIRST];
        *q = *qkv, *k = *qkv, *v = *qkv;
        q->ne1 = nq, k->ne1 = nkv, v->ne1 = nkv;
        k->ref.offset += (size_t)nq * rb;
        v->ref.offset += (size_t)(nq + nkv) * rb;
        tw_weight *qkvb = &L->w[TW_W_QKV_B - TW_W_LAYER_FIRST];
        if (qkvb->ref.buf) {
            tw_weight *qb = &L->w[TW_W_Q_B - TW_W_LAYER_FIRST], *kb = &L->w[TW_W_K_B - TW_W_LAYER_FIRST],
                      *vb = &L->w[TW_W_V_B - TW_W_LAYER_FIRST];
            *qb = *qkvb, *kb = *qkvb, *vb = *qkvb;
            qb->ne0 = nq, kb->ne0 = nkv, vb->ne0 = nkv;
            kb->ref.offset += (size_t)nq * sizeof(float);
            vb->ref.offset += (size_t)(nq + nkv) * sizeof(float);
        }
    }
    /* Tied head: the token embedding is the output matrix (an encoder has no head). */
    if (!m->g[TW_W_OUTPUT].ref.buf && !a->encoder_only) {
        m->g[TW_W_OUTPUT] = m->g[TW_W_TOK_EMBD];
        if (!matmul_type_ok(m->g[TW_W_OUTPUT].type))
            return tw_error(TW_ERR_UNSUPPORTED,
                            "%s: output.weight is absent and the tied token embedding's type %s is not supported by matmul",
                            m->path, tw_dtype_name(m->g[TW_W_OUTPUT].type));
    }
    return TW_OK;
}

static tw_status load_tokenizer(tw_model *m, const char *dir) {
    if (m->gguf) {
        m->tok = tw_tokenizer_from_gguf(m->gguf);
    } else {
        char *p = path_join(dir, "tokenizer.json");
        if (!p) return TW_ERR_NOMEM;
        m->tok = tw_tokenizer_from_hf(p);
        tw_free(p);
    }
    if (!m->tok) return tw_error_wrap("%s: tokenizer", m->path);
    int32_t tv = tw_tokenizer_n_vocab(m->tok);
    /* GGUF converters pad the token list to the embedding's rows, so the two must agree. An
     * HF tokenizer.json may have fewer entries than the embedding (models pad their
     * embedding to a multiple of 64 or 128), never more. */
    if (m->gguf ? tv != m->hp.n_vocab : tv > m->hp.n_vocab)
        return tw_error(TW_ERR_FORMAT,
                        "%s: vocabulary mismatch: the tokenizer has %d tokens, the model's embedding %d",
                        m->path, (int)tv, (int)m->hp.n_vocab);
    return TW_OK;
}

tw_status tw_model_load(const char *path, tw_backend *be, const tw_model_params *p,
                        tw_model **out) {
    *out = NULL;
    if (!path || !be) return tw_error(TW_ERR_ARG, "tw_model_load: path and backend are required");
    if (!tw_path_exists(path)) return tw_error(TW_ERR_NOT_FOUND, "%s: no such file or folder", path);
    tw_model *m = tw_calloc(1, sizeof *m);
    if (!m) return TW_ERR_NOMEM;
    m->be = be;
    tw_model_params_default(&m->params);
    if (p) {
        if (p->max_batch_tokens < 0 || p->max_logit_rows < 0) {
            tw_free(m);
            return tw_error(TW_ERR_ARG, "tw_model_load: max_batch_tokens and max_logit_rows must be >= 0");
        }
        if (p->max_batch_tokens) m->params.max_batch_tokens = p->max_batch_tokens;
        if (p->max_logit_rows) m->params.max_logit_rows = p->max_logit_rows;
        m->params.no_mmap_weights = p->no_mmap_weights;
    }
    /* A chunk must hold 3 tokens (and 3 logit rows) of one sequence so that chunking never
     * leaves a lone token of a prompt (forward.c, chunk_end). */
    if (m->params.max_batch_tokens < 3) m->params.max_batch_tokens = 3;
    if (m->params.max_logit_rows < 3) m->params.max_logit_rows = 3;
    if (m->params.max_logit_rows > m->params.max_batch_tokens)
        m->params.max_logit_rows = m->params.max_batch_tokens;
    tw_status st;
    hf_config hfc;
    int is_dir = tw_is_dir(path);
    if (!(m->path = tw_strdup(path))) {
        st = tw_error(TW_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (is_dir) {
        if ((st = load_hf_meta(m, path, &hfc)) || (st = open_shards(m, path)) ||
            (st = hf_chat_template(m, path)))
            goto fail;
    } else {
        m->gguf = gguf_open(path);
        if (!m->gguf) {
            st = tw_errcode();
            goto fail;
        }
        if ((st = load_gguf_meta(m))) goto fail;
    }
    if ((st = load_weights(m, is_dir ? &hfc : NULL)) || (st = load_tokenizer(m, path)) ||
        (!m->arch->encoder_only && (st = tw_forward_alloc(m))))
        goto fail;
    *out = m;
    return TW_OK;
fail:
    tw_model_free(m);
    return st ? st : TW_ERR_RUNTIME;
}
