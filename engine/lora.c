/* lora.c: LoRA adapter sets, their PEFT and GGUF files, and merging (lora.h).
 *
 * Layout of this file: names and configs, the base description, the set (one backend buffer,
 * four regions), Q/K row order, PEFT save/load, GGUF save/load, merge. */
#include "lora.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "safetensors.h"

#define LORA_ALIGN_FLOATS 64 /* 256 bytes: every A and B starts on a CUDA-friendly boundary */

/* ---- names and configs ---------------------------------------------------------------------- */

static const char *const lora_short[LORA_N_MODULES] = {"q", "k", "v", "o", "gate", "up", "down"};
static const char *const lora_peft[LORA_N_MODULES] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                      "gate_proj", "up_proj", "down_proj"};
static const char *const lora_gguf[LORA_N_MODULES] = {"attn_q", "attn_k", "attn_v",
                                                      "attn_output", "ffn_gate", "ffn_up",
                                                      "ffn_down"};
/* PEFT's parent module of each: self_attn or mlp. */
static const char *const lora_peft_parent[LORA_N_MODULES] = {
    "self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"};

const char *lora_module_name(lora_module m) {
    return (int)m >= 0 && m < LORA_N_MODULES ? lora_short[m] : "?";
}
const char *lora_module_peft_name(lora_module m) {
    return (int)m >= 0 && m < LORA_N_MODULES ? lora_peft[m] : "?";
}
const char *lora_module_gguf_name(lora_module m) {
    return (int)m >= 0 && m < LORA_N_MODULES ? lora_gguf[m] : "?";
}

/* The module named by s[0..n) in any of the three spellings, -1 when none. */
static int module_lookup(const char *s, size_t n) {
    for (int m = 0; m < LORA_N_MODULES; m++) {
        const char *names[3] = {lora_short[m], lora_peft[m], lora_gguf[m]};
        for (int k = 0; k < 3; k++)
            if (strlen(names[k]) == n && !memcmp(names[k], s, n)) return m;
    }
    return -1;
}

static unsigned group_lookup(const char *s, size_t n) {
    if ((n == 3 && !memcmp(s, "all", 3)) || (n == 10 && !memcmp(s, "all-linear", 10)))
        return LORA_ALL_MODULES;
    if (n == 4 && !memcmp(s, "attn", 4))
        return (1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V) | (1u << LORA_O);
    if (n == 3 && !memcmp(s, "mlp", 3)) return (1u << LORA_GATE) | (1u << LORA_UP) | (1u << LORA_DOWN);
    return 0;
}

tw_status lora_targets_parse(const char *list, unsigned *mask) {
    unsigned m = 0;
    if (!list) return tw_error(TW_ERR_ARG, "LoRA targets: empty list");
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',') p++;
        if (!*p) break;
        size_t n = strcspn(p, ", ");
        int one = module_lookup(p, n);
        unsigned g = group_lookup(p, n);
        if (one < 0 && !g)
            return tw_error(TW_ERR_ARG,
                            "LoRA targets: unknown module '%.*s' (expected q,k,v,o,gate,up,down, "
                            "their q_proj/attn_q names, attn, mlp or all)",
                            (int)(n > 40 ? 40 : n), p);
        m |= one >= 0 ? 1u << one : g;
        p += n;
    }
    if (!m) return tw_error(TW_ERR_ARG, "LoRA targets: empty list");
    *mask = m;
    return TW_OK;
}

void lora_config_default(lora_config *c) {
    memset(c, 0, sizeof *c);
    c->rank = 8;
    c->alpha = 16.0f;
    c->dropout = 0.05f;
    c->use_rslora = 0;
    c->targets = (1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V) | (1u << LORA_O);
    c->seed = 42;
}

float lora_config_scale(const lora_config *c) {
    if (c->rank <= 0) return 0.0f;
    return c->use_rslora ? (float)(c->alpha / sqrt((double)c->rank))
                         : (float)((double)c->alpha / c->rank);
}

static tw_status config_check(const lora_config *c, const char *what) {
    if (c->rank < 1 || c->rank > 65536)
        return tw_error(TW_ERR_ARG, "%s: LoRA rank %d must be between 1 and 65536", what,
                        (int)c->rank);
    if (!isfinite(c->alpha) || c->alpha <= 0)
        return tw_error(TW_ERR_ARG, "%s: lora_alpha %g must be a positive number", what,
                        (double)c->alpha);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return tw_error(TW_ERR_ARG, "%s: lora_dropout %g must be in [0, 1)", what,
                        (double)c->dropout);
    if (!(c->targets & LORA_ALL_MODULES) || (c->targets & ~LORA_ALL_MODULES))
        return tw_error(TW_ERR_ARG, "%s: no valid LoRA target module", what);
    return TW_OK;
}

tw_status lora_config_to_json(const lora_config *c, tw_sb *sb) {
    tw_sb_printf(sb, "{\"r\":%d,\"lora_alpha\":%.9g,\"lora_dropout\":%.9g,\"use_rslora\":%s,"
                     "\"target_modules\":[",
                 (int)c->rank, (double)c->alpha, (double)c->dropout,
                 c->use_rslora ? "true" : "false");
    int first = 1;
    for (int m = 0; m < LORA_N_MODULES; m++) {
        if (!(c->targets & (1u << m))) continue;
        tw_sb_printf(sb, "%s\"%s\"", first ? "" : ",", lora_peft[m]);
        first = 0;
    }
    tw_sb_printf(sb, "],\"seed\":%llu}", (unsigned long long)c->seed);
    return sb->failed ? tw_error(TW_ERR_NOMEM, "LoRA config: out of memory") : TW_OK;
}

tw_status lora_config_from_json(const tw_json *obj, const char *what, lora_config *out) {
    lora_config c;
    lora_config_default(&c);
    if (!tw_json_is_object(obj)) return tw_error(TW_ERR_FORMAT, "%s: not a JSON object", what);
    const tw_json *r = tw_json_get(obj, "r");
    double rv = tw_json_num(r, -1);
    if (!tw_json_is_number(r) || rv != floor(rv) || rv < 1 || rv > 65536)
        return tw_error(TW_ERR_FORMAT, "%s: field 'r': expected an integer between 1 and 65536",
                        what);
    c.rank = (int32_t)rv;
    const tw_json *a = tw_json_get(obj, "lora_alpha");
    if (!tw_json_is_number(a))
        return tw_error(TW_ERR_FORMAT, "%s: field 'lora_alpha': expected a number", what);
    c.alpha = (float)tw_json_num(a, 0);
    const tw_json *d = tw_json_get(obj, "lora_dropout");
    if (d && !tw_json_is_number(d))
        return tw_error(TW_ERR_FORMAT, "%s: field 'lora_dropout': expected a number", what);
    c.dropout = (float)tw_json_num(d, 0);
    const tw_json *rs = tw_json_get(obj, "use_rslora");
    if (rs && !tw_json_is_bool(rs) && !tw_json_is_null(rs))
        return tw_error(TW_ERR_FORMAT, "%s: field 'use_rslora': expected true or false", what);
    c.use_rslora = tw_json_bool(rs, 0);
    const tw_json *t = tw_json_get(obj, "target_modules");
    unsigned mask = 0;
    if (tw_json_is_string(t)) {
        if (lora_targets_parse(tw_json_str(t), &mask))
            return tw_error(TW_ERR_FORMAT, "%s: field 'target_modules': %s", what, tw_errmsg());
    } else if (tw_json_is_array(t)) {
        for (const tw_json *e = tw_json_first(t); e; e = tw_json_next(e)) {
            const char *s = tw_json_str(e);
            int m = s ? module_lookup(s, strlen(s)) : -1;
            if (m < 0)
                return tw_error(TW_ERR_FORMAT,
                                "%s: field 'target_modules': '%.40s' is not a module twin "
                                "adapts (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                                "down_proj)",
                                what, s ? s : "(not a string)");
            mask |= 1u << m;
        }
    } else {
        return tw_error(TW_ERR_FORMAT, "%s: field 'target_modules': expected a list of names",
                        what);
    }
    c.targets = mask;
    const tw_json *seed = tw_json_get(obj, "seed");
    if (tw_json_is_number(seed) && tw_json_num(seed, 0) >= 0 && tw_json_num(seed, 0) < 9.007e15)
        c.seed = (uint64_t)tw_json_num(seed, 0);
    tw_status st = config_check(&c, what);
    if (st) return tw_error(TW_ERR_FORMAT, "%s", tw_errmsg());
    *out = c;
    return TW_OK;
}

/* ---- the base ------------------------------------------------------------------------------ */

void lora_base_dims(const lora_base *b, lora_module m, int64_t *out_dim, int64_t *in_dim) {
    int64_t q = (int64_t)b->n_head * b->head_dim, kv = (int64_t)b->n_kv_head * b->head_dim;
    int64_t o = 0, i = 0;
    switch (m) {
    case LORA_Q: o = q, i = b->n_embd; break;
    case LORA_K:
    case LORA_V: o = kv, i = b->n_embd; break;
    case LORA_O: o = b->n_embd, i = q; break;
    case LORA_GATE:
    case LORA_UP: o = b->n_ff, i = b->n_embd; break;
    case LORA_DOWN: o = b->n_embd, i = b->n_ff; break;
    default: break;
    }
    *out_dim = o;
    *in_dim = i;
}

static int arch_supported(const char *arch) {
    return !strcmp(arch, "llama") || !strcmp(arch, "qwen2");
}

static tw_status base_check(const lora_base *b, const char *what) {
    if (!arch_supported(b->arch))
        return tw_error(TW_ERR_UNSUPPORTED,
                        "%s: architecture '%s': LoRA adapters are made for the llama family "
                        "(llama, qwen2)",
                        what, b->arch);
    if (b->n_layer < 1 || b->n_embd < 1 || b->n_head < 1 || b->n_kv_head < 1 ||
        b->head_dim < 1 || b->n_ff < 1 || b->n_head % b->n_kv_head ||
        (b->qk_permuted && b->head_dim % 2) || b->n_layer > 100000 || b->n_embd > (1 << 20) ||
        b->n_ff > (1 << 22) || (int64_t)b->n_head * b->head_dim > (1 << 22))
        return tw_error(TW_ERR_ARG,
                        "%s: base dimensions out of range (n_layer %d, n_embd %d, n_head %d, "
                        "n_kv_head %d, head_dim %d, n_ff %d)",
                        what, (int)b->n_layer, (int)b->n_embd, (int)b->n_head,
                        (int)b->n_kv_head, (int)b->head_dim, (int)b->n_ff);
    return TW_OK;
}

tw_status lora_base_from_model(const tw_model *m, lora_base *out) {
    memset(out, 0, sizeof *out);
    const tw_model_hparams *hp = tw_model_get_hparams(m);
    snprintf(out->arch, sizeof out->arch, "%s", hp->arch);
    out->n_layer = hp->n_layer;
    out->n_embd = hp->n_embd;
    out->n_head = hp->n_head;
    out->n_kv_head = hp->n_kv_head;
    out->head_dim = hp->head_dim;
    out->n_ff = hp->n_ff;
    const char *path = tw_model_path(m);
    /* llama.cpp's converter permutes Q/K of "llama" GGUFs only (qwen2 keeps HF order). */
    out->qk_permuted = !tw_is_dir(path) && !strcmp(hp->arch, "llama");
    snprintf(out->name, sizeof out->name, "%s", path);
    return base_check(out, path);
}

tw_status lora_base_from_gguf(const char *path, lora_base *out) {
    memset(out, 0, sizeof *out);
    gguf_file *f = gguf_open(path);
    if (!f) return tw_errcode();
    tw_status st = TW_OK;
    gguf_str arch;
    char key[96];
    uint64_t nl = 0, nh = 0, nkv = 0;
    if ((st = gguf_get_str(f, "general.architecture", &arch))) goto done;
    if (arch.len == 0 || arch.len >= sizeof out->arch) {
        st = tw_error(TW_ERR_FORMAT, "%s: general.architecture: bad length", path);
        goto done;
    }
    memcpy(out->arch, arch.ptr, arch.len);
    out->arch[arch.len] = 0;
    if (!arch_supported(out->arch)) {
        st = base_check(out, path);
        goto done;
    }
    snprintf(key, sizeof key, "%s.block_count", out->arch);
    if ((st = gguf_get_u64(f, key, &nl))) goto done;
    snprintf(key, sizeof key, "%s.attention.head_count", out->arch);
    if ((st = gguf_get_u64(f, key, &nh))) goto done;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", out->arch);
    if (gguf_get_u64(f, key, &nkv)) nkv = nh;
    tw_error_clear();
    if (nl > 100000 || nh < 1 || nh > 65536 || nkv < 1 || nkv > 65536) {
        st = tw_error(TW_ERR_FORMAT, "%s: layer or head count out of range", path);
        goto done;
    }
    out->n_layer = (int32_t)nl;
    out->n_head = (int32_t)nh;
    out->n_kv_head = (int32_t)nkv;
    /* Dimensions from blk.0's shapes: q (ne0 n_embd, ne1 n_head*head_dim), k, gate (ne1 n_ff). */
    const gguf_tensor *tq = gguf_find_tensor(f, "blk.0.attn_q.weight");
    const gguf_tensor *tk = gguf_find_tensor(f, "blk.0.attn_k.weight");
    const gguf_tensor *tg = gguf_find_tensor(f, "blk.0.ffn_gate.weight");
    if (!tq || !tk || !tg) {
        st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s' missing", path,
                      !tq ? "blk.0.attn_q.weight"
                          : !tk ? "blk.0.attn_k.weight" : "blk.0.ffn_gate.weight");
        goto done;
    }
    if (tq->ne[1] % (int64_t)nh || tq->ne[0] > (1 << 20) || tg->ne[1] > (1 << 22)) {
        st = tw_error(TW_ERR_FORMAT, "%s: blk.0.attn_q.weight: rows not a multiple of %llu heads",
                      path, (unsigned long long)nh);
        goto done;
    }
    out->n_embd = (int32_t)tq->ne[0];
    out->head_dim = (int32_t)(tq->ne[1] / (int64_t)nh);
    out->n_ff = (int32_t)tg->ne[1];
    if (tk->ne[1] != (int64_t)nkv * out->head_dim) {
        st = tw_error(TW_ERR_FORMAT, "%s: blk.0.attn_k.weight: %lld rows, expected %lld", path,
                      (long long)tk->ne[1], (long long)nkv * out->head_dim);
        goto done;
    }
    out->qk_permuted = !strcmp(out->arch, "llama");
    snprintf(out->name, sizeof out->name, "%s", path);
    st = base_check(out, path);
done:
    gguf_close(f);
    return st;
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

tw_status lora_model_hash(const char *path, char hex[65]) {
    if (!tw_is_dir(path)) return tw_sha256_file_cached(path, hex);
    DIR *d = opendir(path);
    if (!d) return tw_error(TW_ERR_IO, "%s: cannot list the folder", path);
    char **names = NULL;
    size_t n = 0, cap = 0;
    tw_status st = TW_OK;
    struct dirent *e;
    while (!st && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 12 || strcmp(e->d_name + len - 12, ".safetensors")) continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            char **nn = tw_realloc(names, nc * sizeof *nn);
            if (!nn) {
                st = TW_ERR_NOMEM;
                break;
            }
            names = nn, cap = nc;
        }
        if (!(names[n] = tw_strdup(e->d_name))) st = TW_ERR_NOMEM;
        else n++;
    }
    closedir(d);
    if (!st && n == 0) st = tw_error(TW_ERR_NOT_FOUND, "%s: no .safetensors file to hash", path);
    if (!st) qsort(names, n, sizeof *names, name_cmp);
    tw_sha256_ctx c;
    tw_sha256_init(&c);
    for (size_t i = 0; !st && i < n; i++) {
        tw_sb p;
        tw_sb_init(&p);
        tw_sb_printf(&p, "%s/%s", path, names[i]);
        char h[65];
        st = p.failed ? TW_ERR_NOMEM : tw_sha256_file_cached(tw_sb_str(&p), h);
        tw_sb_free(&p);
        if (st) break;
        tw_sha256_update(&c, names[i], strlen(names[i]));
        tw_sha256_update(&c, " ", 1);
        tw_sha256_update(&c, h, 64);
        tw_sha256_update(&c, "\n", 1);
    }
    for (size_t i = 0; i < n; i++) tw_free(names[i]);
    tw_free(names);
    if (st == TW_ERR_NOMEM && !*tw_errmsg()) tw_error(st, "%s: out of memory hashing", path);
    if (st) return st;
    uint8_t dig[32];
    tw_sha256_final(&c, dig);
    tw_hex(dig, 32, hex);
    return TW_OK;
}

/* ---- the set -------------------------------------------------------------------------------- */

struct lora_set {
    tw_backend *be;
    lora_base base;
    lora_config cfg;
    lora_adapter *ad; /* (n_ad) by layer, then module */
    int32_t n_ad;
    int32_t *index;   /* (n_layer * LORA_N_MODULES): adapter index or -1 */
    size_t n_floats;  /* per region */
    int64_t n_params;
    tw_buffer *buf;   /* LORA_N_REGIONS * n_floats floats */
};

static size_t align_up(size_t n) {
    return (n + LORA_ALIGN_FLOATS - 1) / LORA_ALIGN_FLOATS * LORA_ALIGN_FLOATS;
}

static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Fills a (rows, in) with U(-1/sqrt(in), 1/sqrt(in)): kaiming_uniform_(a=sqrt(5)) has gain
 * sqrt(2/(1+5)) and bound gain*sqrt(3/fan_in) = 1/sqrt(fan_in). Stream per (layer, module). */
static void init_a(float *a, int64_t rows, int64_t in, uint64_t seed, int32_t layer, int m) {
    uint64_t s = seed ^ (0xD1B54A32D192ED03ull * (uint64_t)(layer * LORA_N_MODULES + m + 1));
    splitmix64(&s);
    double bound = 1.0 / sqrt((double)in);
    for (int64_t i = 0; i < rows * in; i++) {
        double u = (double)(splitmix64(&s) >> 11) * 0x1.0p-53; /* [0, 1) */
        a[i] = (float)((2.0 * u - 1.0) * bound);
    }
}

/* Builds the layout (no buffer) of a set; shared by lora_set_new and the loaders. */
static tw_status set_layout(const lora_base *base, const lora_config *cfg, lora_set **out) {
    *out = NULL;
    tw_status st = base_check(base, "LoRA base");
    if (!st) st = config_check(cfg, "LoRA config");
    if (st) return st;
    for (int m = 0; m < LORA_N_MODULES; m++) {
        if (!(cfg->targets & (1u << m))) continue;
        int64_t o, i;
        lora_base_dims(base, (lora_module)m, &o, &i);
        if (cfg->rank > o || cfg->rank > i)
            return tw_error(TW_ERR_ARG,
                            "LoRA rank %d is larger than layer 0's %s (%lld x %lld): the rank "
                            "must not exceed the smaller side",
                            (int)cfg->rank, lora_short[m], (long long)o, (long long)i);
    }
    lora_set *s = tw_calloc(1, sizeof *s);
    if (!s) return tw_error(TW_ERR_NOMEM, "LoRA set: out of memory");
    s->base = *base;
    s->cfg = *cfg;
    int nt = 0;
    for (int m = 0; m < LORA_N_MODULES; m++) nt += !!(cfg->targets & (1u << m));
    s->n_ad = base->n_layer * nt;
    s->ad = tw_calloc((size_t)s->n_ad, sizeof *s->ad);
    s->index = tw_calloc((size_t)base->n_layer * LORA_N_MODULES, sizeof *s->index);
    if (!s->ad || !s->index) {
        tw_free(s->ad);
        tw_free(s->index);
        tw_free(s);
        return tw_error(TW_ERR_NOMEM, "LoRA set: out of memory");
    }
    size_t off = 0;
    int32_t k = 0;
    for (int32_t l = 0; l < base->n_layer; l++) {
        for (int m = 0; m < LORA_N_MODULES; m++) {
            s->index[l * LORA_N_MODULES + m] = -1;
            if (!(cfg->targets & (1u << m))) continue;
            lora_adapter *a = &s->ad[k];
            a->layer = l;
            a->module = (lora_module)m;
            lora_base_dims(base, (lora_module)m, &a->out, &a->in);
            a->rank = cfg->rank;
            a->a_off = off;
            off = align_up(off + (size_t)(a->rank * a->in));
            a->b_off = off;
            off = align_up(off + (size_t)(a->out * a->rank));
            s->n_params += a->rank * (a->in + a->out);
            s->index[l * LORA_N_MODULES + m] = k++;
        }
    }
    s->n_floats = off;
    *out = s;
    return TW_OK;
}

static tw_status set_alloc(tw_backend *be, lora_set *s) {
    s->be = be;
    size_t bytes = s->n_floats * sizeof(float) * LORA_N_REGIONS;
    tw_status st = tw_buffer_alloc(be, bytes, &s->buf);
    if (st) return tw_error_wrap("LoRA set (%zu bytes)", bytes);
    return TW_OK;
}

void lora_set_free(lora_set *s) {
    if (!s) return;
    tw_buffer_free(s->buf);
    tw_free(s->ad);
    tw_free(s->index);
    tw_free(s);
}

tw_status lora_set_new(tw_backend *be, const lora_base *base, const lora_config *cfg,
                       lora_set **out) {
    if (!out) return tw_error(TW_ERR_ARG, "lora_set_new: out is NULL");
    *out = NULL;
    if (!be || !base || !cfg) return tw_error(TW_ERR_ARG, "lora_set_new: NULL argument");
    lora_set *s;
    tw_status st = set_layout(base, cfg, &s);
    if (st) return st;
    if ((st = set_alloc(be, s))) {
        lora_set_free(s);
        return st;
    }
    float *host = tw_calloc(s->n_floats ? s->n_floats : 1, sizeof(float));
    if (!host) {
        lora_set_free(s);
        return tw_error(TW_ERR_NOMEM, "LoRA set: out of memory");
    }
    for (int32_t i = 0; i < s->n_ad; i++) {
        const lora_adapter *a = &s->ad[i];
        init_a(host + a->a_off, a->rank, a->in, cfg->seed, a->layer, a->module);
    }
    st = lora_set_upload(s, LORA_PARAM, host);
    memset(host, 0, s->n_floats * sizeof(float));
    for (int r = LORA_GRAD; !st && r < LORA_N_REGIONS; r++)
        st = lora_set_upload(s, (lora_region)r, host);
    tw_free(host);
    if (st) {
        lora_set_free(s);
        return st;
    }
    *out = s;
    return TW_OK;
}

const lora_config *lora_set_config(const lora_set *s) { return &s->cfg; }
const lora_base *lora_set_base(const lora_set *s) { return &s->base; }
float lora_set_scale(const lora_set *s) { return lora_config_scale(&s->cfg); }
int32_t lora_set_n_adapters(const lora_set *s) { return s->n_ad; }
const lora_adapter *lora_set_adapter(const lora_set *s, int32_t i) {
    TW_ASSERT(i >= 0 && i < s->n_ad);
    return &s->ad[i];
}
const lora_adapter *lora_set_find(const lora_set *s, int32_t layer, lora_module m) {
    if (layer < 0 || layer >= s->base.n_layer || (int)m < 0 || m >= LORA_N_MODULES) return NULL;
    int32_t k = s->index[layer * LORA_N_MODULES + m];
    return k < 0 ? NULL : &s->ad[k];
}
int64_t lora_set_n_params(const lora_set *s) { return s->n_params; }
size_t lora_set_n_floats(const lora_set *s) { return s->n_floats; }
tw_buffer *lora_set_buffer(const lora_set *s) { return s->buf; }
tw_backend *lora_set_backend(const lora_set *s) { return s->be; }

tw_ref lora_set_ref(const lora_set *s, lora_region reg, size_t off) {
    TW_ASSERT((int)reg >= 0 && reg < LORA_N_REGIONS && off <= s->n_floats);
    return tw_ref_at(s->buf, ((size_t)reg * s->n_floats + off) * sizeof(float));
}

tw_status lora_set_download(const lora_set *s, lora_region reg, float *host) {
    if (!s->n_floats) return TW_OK;
    return tw_buffer_download(s->buf, (size_t)reg * s->n_floats * sizeof(float), host,
                              s->n_floats * sizeof(float));
}

tw_status lora_set_upload(lora_set *s, lora_region reg, const float *host) {
    if (!s->n_floats) return TW_OK;
    return tw_buffer_upload(s->buf, (size_t)reg * s->n_floats * sizeof(float), host,
                            s->n_floats * sizeof(float));
}

tw_status lora_set_zero(lora_set *s, lora_region reg) {
    float *z = tw_calloc(s->n_floats ? s->n_floats : 1, sizeof(float));
    if (!z) return tw_error(TW_ERR_NOMEM, "LoRA set: out of memory");
    tw_status st = lora_set_upload(s, reg, z);
    tw_free(z);
    return st;
}

/* ---- Q/K row order -------------------------------------------------------------------------- */

/* llama.cpp's converter (convert_hf_to_gguf.py, LlamaModel.permute) reorders the rows of each
 * head of Q (n_head heads) and K (n_kv_head heads): HF row h*hd + s*(hd/2) + i becomes GGUF row
 * h*hd + 2i + s. Applies to B's rows (out, rank); A is unchanged (convert_lora_to_gguf.py). */
static void permute_rows(float *dst, const float *src, int64_t n_heads, int64_t hd, int64_t cols,
                         int to_gguf) {
    int64_t half = hd / 2;
    for (int64_t h = 0; h < n_heads; h++)
        for (int64_t s = 0; s < 2; s++)
            for (int64_t i = 0; i < half; i++) {
                int64_t hf = h * hd + s * half + i, gg = h * hd + 2 * i + s;
                int64_t from = to_gguf ? hf : gg, to = to_gguf ? gg : hf;
                memcpy(dst + to * cols, src + from * cols, (size_t)cols * sizeof(float));
            }
}

/* Heads whose rows need reordering when going from the set's order to `want_permuted`; 0 when
 * no change is needed. */
static int64_t reorder_heads(const lora_base *b, lora_module m, int want_permuted) {
    if (b->qk_permuted == want_permuted) return 0;
    if (m == LORA_Q) return b->n_head;
    if (m == LORA_K) return b->n_kv_head;
    return 0;
}

/* B of adapter a in the file order `want_permuted`, from the set's host copy p: a pointer into
 * p, or into tmp (out*rank floats) after reordering. */
static const float *b_in_order(const lora_set *s, const lora_adapter *a, const float *p,
                               float *tmp, int want_permuted) {
    int64_t heads = reorder_heads(&s->base, a->module, want_permuted);
    if (!heads) return p + a->b_off;
    permute_rows(tmp, p + a->b_off, heads, s->base.head_dim, a->rank, want_permuted);
    return tmp;
}

/* The reverse, when reading: B given in file order `file_permuted` into the set's order. */
static void b_from_file(const lora_set *s, const lora_adapter *a, const float *src, float *dst,
                        int file_permuted) {
    int64_t heads = reorder_heads(&s->base, a->module, file_permuted);
    if (!heads) {
        memcpy(dst, src, (size_t)(a->out * a->rank) * sizeof(float));
        return;
    }
    /* The set wants !file_permuted: going to GGUF order iff the set is permuted. */
    permute_rows(dst, src, heads, s->base.head_dim, a->rank, s->base.qk_permuted);
}

/* ---- PEFT ----------------------------------------------------------------------------------- */

static void peft_tensor_name(char *out, size_t n, int32_t layer, lora_module m, char ab) {
    snprintf(out, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", (int)layer,
             lora_peft_parent[m], lora_peft[m], ab);
}

static char *path_join(const char *dir, const char *name) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/%s", dir, name);
    if (sb.failed) {
        tw_sb_free(&sb);
        tw_error(TW_ERR_NOMEM, "%s: out of memory", dir);
        return NULL;
    }
    return tw_sb_take(&sb);
}

tw_status lora_save_peft(const lora_set *s, const char *dir) {
    tw_status st = tw_mkdir_p(dir);
    if (st) return st;
    float *p = tw_malloc((s->n_floats ? s->n_floats : 1) * sizeof(float));
    /* B tensors in HF order may need their own copies (Q and K of a permuted base). */
    float *bcopy = tw_malloc((s->n_floats ? s->n_floats : 1) * sizeof(float));
    st_writer *w = st_writer_new();
    char *cfg_path = path_join(dir, "adapter_config.json");
    char *st_path = path_join(dir, "adapter_model.safetensors");
    tw_sb sb;
    tw_sb_init(&sb);
    if (!p || !bcopy || !w || !cfg_path || !st_path) {
        st = tw_error(TW_ERR_NOMEM, "%s: out of memory saving the adapter", dir);
        goto done;
    }
    if ((st = lora_set_download(s, LORA_PARAM, p))) goto done;
    char num[32];
    st_writer_set_metadata(w, "format", "pt");
    st_writer_set_metadata(w, "twin.arch", s->base.arch);
    snprintf(num, sizeof num, "%d", (int)s->base.n_layer);
    st_writer_set_metadata(w, "twin.n_layer", num);
    if (s->base.sha256[0]) st_writer_set_metadata(w, "twin.base_sha256", s->base.sha256);
    for (int32_t i = 0; !st && i < s->n_ad; i++) {
        const lora_adapter *a = &s->ad[i];
        char name[160];
        int64_t shape_a[2] = {a->rank, a->in}, shape_b[2] = {a->out, a->rank};
        peft_tensor_name(name, sizeof name, a->layer, a->module, 'A');
        st = st_writer_add_tensor(w, name, ST_DTYPE_F32, 2, shape_a, p + a->a_off);
        if (st) break;
        const float *b = b_in_order(s, a, p, bcopy + a->b_off, 0);
        peft_tensor_name(name, sizeof name, a->layer, a->module, 'B');
        st = st_writer_add_tensor(w, name, ST_DTYPE_F32, 2, shape_b, b);
    }
    if (st) goto done;
    /* adapter_config.json: PEFT's LoraConfig fields (its from_pretrained reads them). */
    tw_sb_puts(&sb, "{\n  \"alpha_pattern\": {},\n  \"base_model_name_or_path\": ");
    tw_sb_json_str(&sb, s->base.name, strlen(s->base.name));
    tw_sb_printf(&sb,
                 ",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": false,\n"
                 "  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n"
                 "  \"layers_pattern\": null,\n  \"layers_to_transform\": null,\n"
                 "  \"lora_alpha\": %.9g,\n  \"lora_dropout\": %.9g,\n"
                 "  \"modules_to_save\": null,\n  \"peft_type\": \"LORA\",\n  \"r\": %d,\n"
                 "  \"rank_pattern\": {},\n  \"revision\": null,\n  \"target_modules\": [",
                 (double)s->cfg.alpha, (double)s->cfg.dropout, (int)s->cfg.rank);
    int first = 1;
    for (int m = 0; m < LORA_N_MODULES; m++)
        if (s->cfg.targets & (1u << m)) {
            tw_sb_printf(&sb, "%s\"%s\"", first ? "" : ", ", lora_peft[m]);
            first = 0;
        }
    tw_sb_printf(&sb,
                 "],\n  \"task_type\": \"CAUSAL_LM\",\n  \"use_dora\": false,\n"
                 "  \"use_rslora\": %s,\n  \"seed\": %llu\n}\n",
                 s->cfg.use_rslora ? "true" : "false", (unsigned long long)s->cfg.seed);
    if (sb.failed) {
        st = tw_error(TW_ERR_NOMEM, "%s: out of memory", cfg_path);
        goto done;
    }
    if ((st = st_writer_write(w, st_path))) goto done;
    st = tw_file_write_atomic(cfg_path, sb.buf, sb.len);
done:
    tw_sb_free(&sb);
    st_writer_free(w);
    tw_free(cfg_path);
    tw_free(st_path);
    tw_free(p);
    tw_free(bcopy);
    return st;
}

/* Parses "layers.N.<parent>.<module>.lora_X.weight" after the PEFT prefix. */
static int peft_parse_name(const char *name, int32_t *layer, int *module, char *ab) {
    static const char *prefixes[] = {"base_model.model.model.layers.", "base_model.model.layers.",
                                     "model.layers."};
    const char *p = NULL;
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes && !p; i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i]))) p = name + strlen(prefixes[i]);
    if (!p || *p < '0' || *p > '9') return -1;
    long l = 0;
    while (*p >= '0' && *p <= '9') {
        l = l * 10 + (*p - '0');
        if (l > 1000000) return -1;
        p++;
    }
    if (*p++ != '.') return -1;
    for (int m = 0; m < LORA_N_MODULES; m++) {
        size_t np = strlen(lora_peft_parent[m]), nm = strlen(lora_peft[m]);
        if (strncmp(p, lora_peft_parent[m], np) || p[np] != '.') continue;
        const char *q = p + np + 1;
        if (strncmp(q, lora_peft[m], nm)) continue;
        q += nm;
        if (!strcmp(q, ".lora_A.weight") || !strcmp(q, ".lora_B.weight")) {
            *layer = (int32_t)l;
            *module = m;
            *ab = q[6];
            return 0;
        }
    }
    return -1;
}

/* Checks a stored architecture / layer count / hash against the base. `what` is the file. */
static tw_status check_identity(const lora_base *base, const char *what, const char *arch,
                                int64_t n_layer, const char *sha) {
    if (arch && *arch && strcmp(arch, base->arch))
        return tw_error(TW_ERR_RUNTIME,
                        "%s: the adapter is for architecture '%s', the base model is '%s'", what,
                        arch, base->arch);
    if (n_layer > 0 && n_layer != base->n_layer)
        return tw_error(TW_ERR_RUNTIME,
                        "%s: the adapter is for a model of %lld layers, the base model has %d",
                        what, (long long)n_layer, (int)base->n_layer);
    if (sha && *sha && base->sha256[0] && strcmp(sha, base->sha256))
        return tw_error(TW_ERR_RUNTIME,
                        "%s: the adapter was made for base model sha256 %.16s..., this base is "
                        "%.16s...",
                        what, sha, base->sha256);
    return TW_OK;
}

/* Checks a tensor's (rows, cols) against what the set expects. */
static tw_status check_shape(const char *what, const char *tname, int64_t rows, int64_t cols,
                             int64_t want_rows, int64_t want_cols) {
    if (rows == want_rows && cols == want_cols) return TW_OK;
    return tw_error(TW_ERR_RUNTIME,
                    "%s: tensor '%s' has shape [%lld, %lld], the base model needs [%lld, %lld] "
                    "(an adapter for another model?)",
                    what, tname, (long long)rows, (long long)cols, (long long)want_rows,
                    (long long)want_cols);
}

static tw_status check_finite(const char *what, const char *tname, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': value %lld is not finite", what,
                            tname, (long long)i);
    return TW_OK;
}

static tw_status load_peft(tw_backend *be, const char *dir, const lora_base *base,
                           lora_set **out) {
    char *cfg_path = path_join(dir, "adapter_config.json");
    char *st_path = path_join(dir, "adapter_model.safetensors");
    tw_json *doc = NULL;
    st_file *f = NULL;
    lora_set *s = NULL;
    float *host = NULL, *tmp = NULL;
    uint8_t *seen = NULL;
    tw_status st = TW_OK;
    if (!cfg_path || !st_path) {
        st = TW_ERR_NOMEM;
        goto done;
    }
    if (!tw_path_exists(cfg_path)) {
        st = tw_error(TW_ERR_NOT_FOUND, "%s: no adapter_config.json (not a PEFT adapter folder)",
                      dir);
        goto done;
    }
    if (!(doc = tw_json_parse_file(cfg_path))) {
        st = tw_errcode();
        goto done;
    }
    const char *pt = tw_json_get_str(doc, "peft_type", "LORA");
    if (strcmp(pt, "LORA")) {
        st = tw_error(TW_ERR_UNSUPPORTED, "%s: peft_type '%.32s': only LORA adapters are read",
                      cfg_path, pt);
        goto done;
    }
    if (tw_json_get_bool(doc, "use_dora", 0) ||
        tw_json_size(tw_json_get(doc, "rank_pattern")) ||
        tw_json_size(tw_json_get(doc, "alpha_pattern"))) {
        st = tw_error(TW_ERR_UNSUPPORTED,
                      "%s: DoRA and per-module rank/alpha patterns are not supported", cfg_path);
        goto done;
    }
    lora_config cfg;
    if ((st = lora_config_from_json(doc, cfg_path, &cfg))) goto done;
    if (!(f = st_open(st_path))) {
        st = tw_errcode();
        goto done;
    }
    const char *n_layer_s = st_metadata_get(f, "twin.n_layer");
    if ((st = check_identity(base, st_path, st_metadata_get(f, "twin.arch"),
                             n_layer_s ? atoll(n_layer_s) : 0,
                             st_metadata_get(f, "twin.base_sha256"))))
        goto done;
    if ((st = set_layout(base, &cfg, &s))) {
        if (st == TW_ERR_ARG) st = tw_error(TW_ERR_RUNTIME, "%s: %s", cfg_path, tw_errmsg());
        goto done;
    }
    host = tw_calloc(s->n_floats ? s->n_floats : 1, sizeof(float));
    seen = tw_calloc((size_t)s->n_ad * 2 + 1, 1);
    size_t tmp_n = 1;
    for (int32_t i = 0; i < s->n_ad; i++)
        if ((size_t)(s->ad[i].out * s->ad[i].rank) > tmp_n)
            tmp_n = (size_t)(s->ad[i].out * s->ad[i].rank);
    tmp = tw_malloc(tmp_n * sizeof(float));
    if (!host || !seen || !tmp) {
        st = tw_error(TW_ERR_NOMEM, "%s: out of memory", st_path);
        goto done;
    }
    for (uint64_t t = 0; !st && t < st_n_tensors(f); t++) {
        const st_tensor *ti = st_tensor_at(f, t);
        int32_t layer;
        int m;
        char ab;
        if (peft_parse_name(ti->name, &layer, &m, &ab)) {
            st = tw_error(TW_ERR_FORMAT,
                          "%s: tensor '%.120s' is not a LoRA A/B of a module twin adapts",
                          st_path, ti->name);
            break;
        }
        if (layer >= base->n_layer) {
            st = tw_error(TW_ERR_RUNTIME,
                          "%s: tensor '%.120s' is for layer %d, the base model has %d layers",
                          st_path, ti->name, (int)layer, (int)base->n_layer);
            break;
        }
        const lora_adapter *a = lora_set_find(s, layer, (lora_module)m);
        if (!a) {
            st = tw_error(TW_ERR_FORMAT, "%s: tensor '%.120s': module %s is not in target_modules",
                          st_path, ti->name, lora_peft[m]);
            break;
        }
        int64_t rows = ti->n_dims == 2 ? ti->shape[0] : -1, cols = ti->n_dims == 2 ? ti->shape[1] : -1;
        if (ab == 'A')
            st = check_shape(st_path, ti->name, rows, cols, a->rank, a->in);
        else
            st = check_shape(st_path, ti->name, rows, cols, a->out, a->rank);
        if (st) break;
        size_t k = (size_t)(a - s->ad) * 2 + (ab == 'B');
        if (seen[k]) {
            st = tw_error(TW_ERR_FORMAT, "%s: tensor '%.120s' twice", st_path, ti->name);
            break;
        }
        seen[k] = 1;
        float *dst = ab == 'A' ? host + a->a_off : tmp;
        if ((st = st_tensor_to_f32(ti, dst))) break;
        if ((st = check_finite(st_path, ti->name, dst, rows * cols))) break;
        if (ab == 'B') b_from_file(s, a, tmp, host + a->b_off, 0);
    }
    for (int32_t i = 0; !st && i < s->n_ad; i++)
        for (int k = 0; k < 2 && !st; k++)
            if (!seen[(size_t)i * 2 + (size_t)k]) {
                char name[160];
                peft_tensor_name(name, sizeof name, s->ad[i].layer, s->ad[i].module,
                                 k ? 'B' : 'A');
                st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s' missing", st_path, name);
            }
    if (st) goto done;
    const char *bn = tw_json_get_str(doc, "base_model_name_or_path", "");
    snprintf(s->base.name, sizeof s->base.name, "%s", bn);
    const char *sha = st_metadata_get(f, "twin.base_sha256");
    if (sha && strlen(sha) == 64 && !s->base.sha256[0]) memcpy(s->base.sha256, sha, 65);
    if ((st = set_alloc(be, s))) goto done;
    st = lora_set_upload(s, LORA_PARAM, host);
    memset(host, 0, s->n_floats * sizeof(float));
    for (int r = LORA_GRAD; !st && r < LORA_N_REGIONS; r++)
        st = lora_set_upload(s, (lora_region)r, host);
done:
    if (st == TW_ERR_NOMEM && !*tw_errmsg()) tw_error(st, "%s: out of memory", dir);
    if (st) lora_set_free(s);
    else *out = s;
    st_close(f);
    tw_json_free(doc);
    tw_free(cfg_path);
    tw_free(st_path);
    tw_free(host);
    tw_free(tmp);
    tw_free(seen);
    return st;
}

/* ---- GGUF ----------------------------------------------------------------------------------- */

static void gguf_tensor_name(char *out, size_t n, int32_t layer, lora_module m, char ab) {
    snprintf(out, n, "blk.%d.%s.weight.lora_%c", (int)layer, lora_gguf[m], ab);
}

tw_status lora_save_gguf(const lora_set *s, const char *path, tw_dtype type) {
    if (type != TW_DTYPE_F32 && type != TW_DTYPE_F16 && type != TW_DTYPE_BF16 &&
        type != TW_DTYPE_Q8_0)
        return tw_error(TW_ERR_ARG, "%s: adapter tensor type %s: expected f32, f16, bf16 or q8_0",
                        path, tw_dtype_name(type) ? tw_dtype_name(type) : "?");
    tw_status st = TW_OK;
    float *p = tw_malloc((s->n_floats ? s->n_floats : 1) * sizeof(float));
    float *bcopy = tw_malloc((s->n_floats ? s->n_floats : 1) * sizeof(float));
    uint8_t *q = NULL;
    gguf_writer *w = gguf_writer_new(3, 0);
    /* Converted tensors: each at its own offset in q (row bytes * rows per tensor). */
    size_t qbytes = 0;
    for (int32_t i = 0; i < s->n_ad; i++) {
        const lora_adapter *a = &s->ad[i];
        size_t ra = tw_dtype_row_bytes(type, a->in), rb = tw_dtype_row_bytes(type, a->rank);
        if (!ra || !rb) {
            st = tw_error(TW_ERR_ARG,
                          "%s: %s rows of %lld or %lld values do not split into %s blocks", path,
                          tw_dtype_name(type), (long long)a->in, (long long)a->rank,
                          tw_dtype_name(type));
            goto done;
        }
        qbytes += ra * (size_t)a->rank + rb * (size_t)a->out;
    }
    q = tw_malloc(qbytes ? qbytes : 1);
    if (!p || !bcopy || !w || !q) {
        st = tw_error(TW_ERR_NOMEM, "%s: out of memory saving the adapter", path);
        goto done;
    }
    if ((st = lora_set_download(s, LORA_PARAM, p))) goto done;
    float alpha_gguf = s->cfg.use_rslora ? (float)(s->cfg.alpha * sqrt((double)s->cfg.rank))
                                         : s->cfg.alpha;
    st = gguf_writer_set_str(w, "general.architecture", s->base.arch);
    if (!st) st = gguf_writer_set_str(w, "general.type", "adapter");
    if (!st) st = gguf_writer_set_str(w, "general.name", "twin LoRA adapter");
    if (!st) st = gguf_writer_set_str(w, "adapter.type", "lora");
    if (!st) st = gguf_writer_set_f32(w, "adapter.lora.alpha", alpha_gguf);
    if (!st) st = gguf_writer_set_f32(w, "twin.lora.alpha", s->cfg.alpha);
    if (!st) st = gguf_writer_set_bool(w, "twin.lora.use_rslora", s->cfg.use_rslora);
    if (!st) st = gguf_writer_set_f32(w, "twin.lora.dropout", s->cfg.dropout);
    if (!st) st = gguf_writer_set_u32(w, "twin.n_layer", (uint32_t)s->base.n_layer);
    if (!st && s->base.name[0]) st = gguf_writer_set_str(w, "twin.base_name", s->base.name);
    if (!st && s->base.sha256[0]) st = gguf_writer_set_str(w, "twin.base_sha256", s->base.sha256);
    size_t qoff = 0;
    for (int32_t i = 0; !st && i < s->n_ad; i++) {
        const lora_adapter *a = &s->ad[i];
        char name[96];
        const float *b = b_in_order(s, a, p, bcopy + a->b_off, 1);
        const float *src[2] = {p + a->a_off, b};
        int64_t cols[2] = {a->in, a->rank}, rows[2] = {a->rank, a->out};
        for (int k = 0; k < 2 && !st; k++) {
            const void *data = src[k];
            if (type != TW_DTYPE_F32) {
                size_t rbytes = tw_dtype_row_bytes(type, cols[k]);
                for (int64_t r = 0; !st && r < rows[k]; r++)
                    st = tw_quantize_row(type, src[k] + r * cols[k], q + qoff + (size_t)r * rbytes,
                                         cols[k]);
                data = q + qoff;
                qoff += rbytes * (size_t)rows[k];
            }
            int64_t ne[2] = {cols[k], rows[k]};
            gguf_tensor_name(name, sizeof name, a->layer, a->module, k ? 'b' : 'a');
            if (!st) st = gguf_writer_add_tensor(w, name, type, 2, ne, data);
        }
    }
    if (!st) st = gguf_writer_write(w, path);
done:
    gguf_writer_free(w);
    tw_free(p);
    tw_free(bcopy);
    tw_free(q);
    return st;
}

static tw_status gguf_str_copy(const gguf_file *f, const char *key, char *out, size_t n) {
    gguf_str s;
    out[0] = 0;
    if (!gguf_find(f, key)) return TW_OK;
    tw_status st = gguf_get_str(f, key, &s);
    if (st) return st;
    if (s.len >= n) return tw_error(TW_ERR_FORMAT, "%s: %s: too long", gguf_path(f), key);
    memcpy(out, s.ptr, s.len);
    out[s.len] = 0;
    return TW_OK;
}

/* "blk.N.<gguf module>.weight.lora_a|b" */
static int gguf_parse_name(gguf_str nm, int32_t *layer, int *module, char *ab) {
    char name[80];
    if (nm.len >= sizeof name) return -1;
    memcpy(name, nm.ptr, nm.len);
    name[nm.len] = 0;
    if (strncmp(name, "blk.", 4)) return -1;
    const char *p = name + 4;
    if (*p < '0' || *p > '9') return -1;
    long l = 0;
    while (*p >= '0' && *p <= '9') {
        l = l * 10 + (*p - '0');
        if (l > 1000000) return -1;
        p++;
    }
    if (*p++ != '.') return -1;
    for (int m = 0; m < LORA_N_MODULES; m++) {
        size_t nm2 = strlen(lora_gguf[m]);
        if (strncmp(p, lora_gguf[m], nm2)) continue;
        const char *q = p + nm2;
        if (!strcmp(q, ".weight.lora_a") || !strcmp(q, ".weight.lora_b")) {
            *layer = (int32_t)l;
            *module = m;
            *ab = q[13];
            return 0;
        }
    }
    return -1;
}

static tw_status load_gguf(tw_backend *be, const char *path, const lora_base *base,
                           lora_set **out) {
    gguf_file *f = gguf_open(path);
    if (!f) return tw_errcode();
    lora_set *s = NULL;
    float *host = NULL, *tmp = NULL;
    uint8_t *seen = NULL;
    char buf[256];
    tw_status st = TW_OK;
    if ((st = gguf_str_copy(f, "general.type", buf, sizeof buf))) goto done;
    if (strcmp(buf, "adapter")) {
        st = tw_error(TW_ERR_FORMAT, "%s: general.type is '%s', not 'adapter' (a model, not a LoRA?)",
                      path, buf);
        goto done;
    }
    if ((st = gguf_str_copy(f, "adapter.type", buf, sizeof buf))) goto done;
    if (strcmp(buf, "lora")) {
        st = tw_error(TW_ERR_UNSUPPORTED, "%s: adapter.type '%s': only LoRA adapters are read",
                      path, buf);
        goto done;
    }
    char arch[64];
    if ((st = gguf_str_copy(f, "general.architecture", arch, sizeof arch))) goto done;
    uint64_t nl = 0;
    if (gguf_find(f, "twin.n_layer") && (st = gguf_get_u64(f, "twin.n_layer", &nl))) goto done;
    char sha[80];
    if ((st = gguf_str_copy(f, "twin.base_sha256", sha, sizeof sha))) goto done;
    if ((st = check_identity(base, path, arch[0] ? arch : "?", (int64_t)nl, sha))) goto done;

    /* The config: rank and targets from the tensors, alpha from the keys. */
    lora_config cfg;
    lora_config_default(&cfg);
    cfg.targets = 0;
    cfg.rank = 0;
    cfg.dropout = 0;
    for (uint64_t t = 0; t < gguf_n_tensors(f); t++) {
        const gguf_tensor *ti = gguf_tensor_at(f, t);
        int32_t layer;
        int m;
        char ab;
        if (gguf_parse_name(ti->name, &layer, &m, &ab)) {
            st = tw_error(TW_ERR_FORMAT, "%s: tensor '%.*s' is not a LoRA a/b of a module twin adapts",
                          path, (int)(ti->name.len > 80 ? 80 : ti->name.len), ti->name.ptr);
            goto done;
        }
        int64_t r = ab == 'a' ? ti->ne[1] : ti->ne[0];
        if (ti->n_dims != 2 || r < 1 || (cfg.rank && r != cfg.rank)) {
            st = tw_error(TW_ERR_FORMAT,
                          "%s: tensor '%.*s': rank %lld differs from %d (one rank per adapter set)",
                          path, (int)ti->name.len, ti->name.ptr, (long long)r, (int)cfg.rank);
            goto done;
        }
        if (r > 65536) {
            st = tw_error(TW_ERR_FORMAT, "%s: rank %lld out of range", path, (long long)r);
            goto done;
        }
        cfg.rank = (int32_t)r;
        cfg.targets |= 1u << m;
    }
    if (!cfg.targets) {
        st = tw_error(TW_ERR_FORMAT, "%s: no LoRA tensors", path);
        goto done;
    }
    double alpha = 0;
    if (gguf_find(f, "twin.lora.alpha")) {
        if ((st = gguf_get_f64(f, "twin.lora.alpha", &alpha))) goto done;
        int rs = 0;
        if (gguf_find(f, "twin.lora.use_rslora") && (st = gguf_get_bool(f, "twin.lora.use_rslora", &rs)))
            goto done;
        cfg.use_rslora = rs;
        double d = 0;
        if (gguf_find(f, "twin.lora.dropout") && (st = gguf_get_f64(f, "twin.lora.dropout", &d)))
            goto done;
        cfg.dropout = (float)d;
    } else if (gguf_find(f, "adapter.lora.alpha")) {
        if ((st = gguf_get_f64(f, "adapter.lora.alpha", &alpha))) goto done;
    } else {
        alpha = cfg.rank; /* llama.cpp: no alpha means scale 1 */
    }
    cfg.alpha = (float)alpha;
    if ((st = config_check(&cfg, path))) {
        st = tw_error(TW_ERR_FORMAT, "%s", tw_errmsg());
        goto done;
    }
    if ((st = set_layout(base, &cfg, &s))) {
        if (st == TW_ERR_ARG) st = tw_error(TW_ERR_RUNTIME, "%s: %s", path, tw_errmsg());
        goto done;
    }
    host = tw_calloc(s->n_floats ? s->n_floats : 1, sizeof(float));
    seen = tw_calloc((size_t)s->n_ad * 2 + 1, 1);
    size_t tmp_n = 1;
    for (int32_t i = 0; i < s->n_ad; i++)
        if ((size_t)(s->ad[i].out * s->ad[i].rank) > tmp_n)
            tmp_n = (size_t)(s->ad[i].out * s->ad[i].rank);
    tmp = tw_malloc(tmp_n * sizeof(float));
    if (!host || !seen || !tmp) {
        st = tw_error(TW_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (uint64_t t = 0; !st && t < gguf_n_tensors(f); t++) {
        const gguf_tensor *ti = gguf_tensor_at(f, t);
        int32_t layer;
        int m;
        char ab;
        gguf_parse_name(ti->name, &layer, &m, &ab); /* checked above */
        char tname[96];
        snprintf(tname, sizeof tname, "%.*s", (int)ti->name.len, ti->name.ptr);
        if (layer >= base->n_layer) {
            st = tw_error(TW_ERR_RUNTIME, "%s: tensor '%s' is for layer %d, the base has %d layers",
                          path, tname, (int)layer, (int)base->n_layer);
            break;
        }
        const lora_adapter *a = lora_set_find(s, layer, (lora_module)m);
        /* GGUF ne is (cols, rows): lora_a {in, r}, lora_b {r, out}. */
        if (ab == 'a')
            st = check_shape(path, tname, ti->ne[1], ti->ne[0], a->rank, a->in);
        else
            st = check_shape(path, tname, ti->ne[1], ti->ne[0], a->out, a->rank);
        if (st) break;
        if (!tw_dtype_can_dequantize(ti->type)) {
            st = tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': type %s", path, tname,
                          tw_dtype_name(ti->type) ? tw_dtype_name(ti->type) : "?");
            break;
        }
        size_t k = (size_t)(a - s->ad) * 2 + (ab == 'b');
        if (seen[k]) {
            st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s' twice", path, tname);
            break;
        }
        seen[k] = 1;
        float *dst = ab == 'a' ? host + a->a_off : tmp;
        size_t rb = tw_dtype_row_bytes(ti->type, ti->ne[0]);
        for (int64_t r = 0; !st && r < ti->ne[1]; r++)
            st = tw_dequantize_row(ti->type, (const uint8_t *)ti->data + (size_t)r * rb,
                                   dst + r * ti->ne[0], ti->ne[0]);
        if (!st) st = check_finite(path, tname, dst, ti->ne[0] * ti->ne[1]);
        if (!st && ab == 'b') b_from_file(s, a, tmp, host + a->b_off, 1);
    }
    for (int32_t i = 0; !st && i < s->n_ad; i++)
        for (int k = 0; k < 2 && !st; k++)
            if (!seen[(size_t)i * 2 + (size_t)k]) {
                char name[96];
                gguf_tensor_name(name, sizeof name, s->ad[i].layer, s->ad[i].module,
                                 k ? 'b' : 'a');
                st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s' missing", path, name);
            }
    if (st) goto done;
    if ((st = gguf_str_copy(f, "twin.base_name", s->base.name, sizeof s->base.name))) goto done;
    if (strlen(sha) == 64 && !s->base.sha256[0]) memcpy(s->base.sha256, sha, 65);
    if ((st = set_alloc(be, s))) goto done;
    st = lora_set_upload(s, LORA_PARAM, host);
    memset(host, 0, s->n_floats * sizeof(float));
    for (int r = LORA_GRAD; !st && r < LORA_N_REGIONS; r++)
        st = lora_set_upload(s, (lora_region)r, host);
done:
    if (st) lora_set_free(s);
    else *out = s;
    gguf_close(f);
    tw_free(host);
    tw_free(tmp);
    tw_free(seen);
    return st;
}

tw_status lora_load(tw_backend *be, const char *path, const lora_base *base, lora_set **out) {
    if (!out) return tw_error(TW_ERR_ARG, "lora_load: out is NULL");
    *out = NULL;
    if (!be || !path || !base) return tw_error(TW_ERR_ARG, "lora_load: NULL argument");
    tw_status st = base_check(base, path);
    if (st) return st;
    if (tw_is_dir(path)) return load_peft(be, path, base, out);
    if (!tw_path_exists(path)) return tw_error(TW_ERR_NOT_FOUND, "%s: no such adapter", path);
    return load_gguf(be, path, base, out);
}

/* ---- merge ---------------------------------------------------------------------------------- */

/* The type a merged weight is written in. */
static tw_dtype merge_type(tw_dtype want, tw_dtype have, int64_t cols) {
    tw_dtype t = want != TW_DTYPE_COUNT ? want : have;
    switch (t) {
    case TW_DTYPE_F32:
    case TW_DTYPE_F16:
    case TW_DTYPE_BF16:
        return t;
    case TW_DTYPE_Q8_0:
    case TW_DTYPE_Q4_0:
    case TW_DTYPE_Q4_1:
        if (cols % 32 == 0) return t;
        return TW_DTYPE_F16;
    default:
        return cols % 32 == 0 ? TW_DTYPE_Q8_0 : TW_DTYPE_F16;
    }
}

tw_status lora_merge_gguf(const char *base_path, const lora_set *s, const char *out_path,
                          tw_dtype type) {
    if (type != TW_DTYPE_COUNT && type != TW_DTYPE_F32 && type != TW_DTYPE_F16 &&
        type != TW_DTYPE_BF16 && type != TW_DTYPE_Q8_0 && type != TW_DTYPE_Q4_0 &&
        type != TW_DTYPE_Q4_1)
        return tw_error(TW_ERR_ARG, "merge: type %s: expected f32, f16, bf16, q8_0, q4_0 or q4_1",
                        tw_dtype_name(type) ? tw_dtype_name(type) : "?");
    lora_base fb;
    tw_status st = lora_base_from_gguf(base_path, &fb);
    if (st) return st;
    const lora_base *sb = &s->base;
    if ((st = check_identity(&fb, "merge", sb->arch, sb->n_layer, NULL))) return st;
    if (fb.n_embd != sb->n_embd || fb.n_head != sb->n_head || fb.n_kv_head != sb->n_kv_head ||
        fb.head_dim != sb->head_dim || fb.n_ff != sb->n_ff)
        return tw_error(TW_ERR_RUNTIME,
                        "%s: the adapter's base has n_embd %d, heads %d/%d, head_dim %d, n_ff %d; "
                        "this file has %d, %d/%d, %d, %d",
                        base_path, (int)sb->n_embd, (int)sb->n_head, (int)sb->n_kv_head,
                        (int)sb->head_dim, (int)sb->n_ff, (int)fb.n_embd, (int)fb.n_head,
                        (int)fb.n_kv_head, (int)fb.head_dim, (int)fb.n_ff);
    if (sb->sha256[0]) {
        char h[65];
        if ((st = lora_model_hash(base_path, h))) return st;
        if (strcmp(h, sb->sha256))
            return tw_error(TW_ERR_RUNTIME,
                            "%s: sha256 %.16s... differs from the adapter's base %.16s...",
                            base_path, h, sb->sha256);
    }
    gguf_file *f = gguf_open(base_path);
    if (!f) return tw_errcode();
    gguf_writer *w = gguf_writer_new(gguf_version(f) >= 3 ? 3 : gguf_version(f), gguf_alignment(f));
    float *p = tw_malloc((s->n_floats ? s->n_floats : 1) * sizeof(float));
    float *bperm = tw_malloc((s->n_floats ? s->n_floats : 1) * sizeof(float));
    uint8_t **outs = tw_calloc(gguf_n_tensors(f) + 1, sizeof *outs);
    float *row = NULL;
    int64_t max_cols = 1;
    for (uint64_t t = 0; t < gguf_n_tensors(f); t++)
        if (gguf_tensor_at(f, t)->ne[0] > max_cols) max_cols = gguf_tensor_at(f, t)->ne[0];
    row = tw_malloc((size_t)max_cols * sizeof(float));
    if (!w || !p || !bperm || !outs || !row) {
        st = tw_error(TW_ERR_NOMEM, "%s: out of memory merging", base_path);
        goto done;
    }
    if ((st = lora_set_download(s, LORA_PARAM, p))) goto done;
    for (uint64_t i = 0; !st && i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(kv->key.len > 255 ? 255 : kv->key.len),
                 kv->key.ptr);
        st = gguf_writer_set_value(w, key, &kv->value);
    }
    float scale = lora_set_scale(s);
    for (uint64_t t = 0; !st && t < gguf_n_tensors(f); t++) {
        const gguf_tensor *ti = gguf_tensor_at(f, t);
        char name[80];
        snprintf(name, sizeof name, "%.*s", (int)(ti->name.len > 79 ? 79 : ti->name.len),
                 ti->name.ptr);
        const lora_adapter *a = NULL;
        int layer;
        char mod[32];
        int used = 0;
        if (sscanf(name, "blk.%d.%31[a-z_].weight%n", &layer, mod, &used) == 2 &&
            (size_t)used == strlen(name)) {
            int m = module_lookup(mod, strlen(mod));
            if (m >= 0 && !strcmp(mod, lora_gguf[m])) a = lora_set_find(s, layer, (lora_module)m);
        }
        if (!a) {
            st = gguf_writer_add_tensor(w, name, ti->type, ti->n_dims, ti->ne, ti->data);
            continue;
        }
        if (ti->ne[0] != a->in || ti->ne[1] != a->out || ti->n_dims != 2) {
            st = tw_error(TW_ERR_RUNTIME, "%s: tensor '%s' is [%lld, %lld], the adapter needs "
                                          "[%lld, %lld]",
                          base_path, name, (long long)ti->ne[1], (long long)ti->ne[0],
                          (long long)a->out, (long long)a->in);
            break;
        }
        if (!tw_dtype_can_dequantize(ti->type)) {
            st = tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': type %s cannot be merged into",
                          base_path, name, tw_dtype_name(ti->type) ? tw_dtype_name(ti->type) : "?");
            break;
        }
        tw_dtype ot = merge_type(type, ti->type, a->in);
        size_t in_rb = tw_dtype_row_bytes(ti->type, a->in), out_rb = tw_dtype_row_bytes(ot, a->in);
        outs[t] = tw_malloc(out_rb * (size_t)a->out);
        if (!outs[t]) {
            st = tw_error(TW_ERR_NOMEM, "%s: out of memory merging '%s'", base_path, name);
            break;
        }
        /* B in the file's row order (llama GGUF: permuted Q/K). */
        const float *B = b_in_order(s, a, p, bperm + a->b_off, fb.qk_permuted);
        const float *A = p + a->a_off;
        for (int64_t o = 0; !st && o < a->out; o++) {
            st = tw_dequantize_row(ti->type, (const uint8_t *)ti->data + (size_t)o * in_rb, row,
                                   a->in);
            if (st) break;
            /* row += scale * B[o,:] . A: the rank-r product, one row at a time. */
            for (int64_t k = 0; k < a->rank; k++) {
                float c = scale * B[o * a->rank + k];
                const float *ak = A + k * a->in;
                for (int64_t j = 0; j < a->in; j++) row[j] += c * ak[j];
            }
            st = tw_quantize_row(ot, row, outs[t] + (size_t)o * out_rb, a->in);
        }
        if (!st) st = gguf_writer_add_tensor(w, name, ot, 2, ti->ne, outs[t]);
    }
    if (!st) st = gguf_writer_write(w, out_path);
done:
    if (outs)
        for (uint64_t t = 0; t < gguf_n_tensors(f); t++) tw_free(outs[t]);
    tw_free(outs);
    tw_free(row);
    tw_free(p);
    tw_free(bperm);
    gguf_writer_free(w);
    gguf_close(f);
    return st;
}
