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

/* A name from a file (a tensor, a module), for messages: at most n-1 bytes, control characters as '?' (a
 * name may hold any bytes; an error stays one line). */
static void safe_name(char *out, size_t n, const char *name, size_t len) {
    size_t k = 0;
    for (; k + 1 < n && k < len; k++) out[k] = (unsigned char)name[k] < 0x20 || name[k] == 0x7f ? '?' : name[k];
    out[k] = 0;
}


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

/* GPT-2 (transformers' GPT2 blocks of Conv1D modules): PEFT adapts attn.c_attn (q, k and v
 * fused, the rows [0,d) [d,2d) [2d,3d)), attn.c_proj (o), mlp.c_fc (up), mlp.c_proj (down);
 * there is no gate. In GGUF the fused weight is blk.N.attn_qkv. Our sets keep q, k, v as
 * separate adapters on the views of the fused weight (as the trainer and the forward use
 * them); the files hold them fused, exactly (see lora_save_peft / lora_save_gguf in lora.h). */
#define GPT2_MODULES                                                                          \
    ((1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V) | (1u << LORA_O) | (1u << LORA_UP) |    \
     (1u << LORA_DOWN))
static const char *const gpt2_peft_path[LORA_N_MODULES] = {"attn.c_attn", "attn.c_attn",
                                                           "attn.c_attn", "attn.c_proj", NULL,
                                                           "mlp.c_fc",    "mlp.c_proj"};

static int is_gpt2(const lora_base *b) { return !strcmp(b->arch, "gpt2"); }

unsigned lora_base_modules(const lora_base *b) {
    return is_gpt2(b) ? GPT2_MODULES : LORA_ALL_MODULES;
}

static unsigned group_lookup(const char *s, size_t n) {
    if ((n == 3 && !memcmp(s, "all", 3)) || (n == 10 && !memcmp(s, "all-linear", 10)))
        return LORA_ALL_MODULES;
    if (n == 4 && !memcmp(s, "attn", 4))
        return (1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V) | (1u << LORA_O);
    if (n == 3 && !memcmp(s, "mlp", 3)) return (1u << LORA_GATE) | (1u << LORA_UP) | (1u << LORA_DOWN);
    return 0;
}

/* lora_targets_parse with the modules `avail` of an architecture (arch, for messages): groups
 * keep only those; a module named explicitly that the architecture lacks is an error. */
static tw_status targets_parse(const char *list, unsigned avail, const char *arch,
                               unsigned *mask) {
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
        if (one >= 0 && !(avail & (1u << one)))
            return tw_error(TW_ERR_ARG,
                            "LoRA targets: '%.*s': a %s model has no %s projection (GPT-2's MLP "
                            "is c_fc, GELU, c_proj: targets q,k,v,o,up,down)",
                            (int)(n > 40 ? 40 : n), p, arch, lora_short[one]);
        m |= one >= 0 ? 1u << one : g & avail;
        p += n;
    }
    if (!m) return tw_error(TW_ERR_ARG, "LoRA targets: empty list");
    *mask = m;
    return TW_OK;
}

tw_status lora_targets_parse(const char *list, unsigned *mask) {
    return targets_parse(list, LORA_ALL_MODULES, "", mask);
}

tw_status lora_targets_parse_for(const char *list, const lora_base *b, unsigned *mask) {
    return targets_parse(list, lora_base_modules(b), b->arch, mask);
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

/* "name" is path or a suffix of it starting after a '.' (PEFT's target matching). */
static int path_suffix(const char *path, const char *name) {
    size_t np = strlen(path), nn = strlen(name);
    return nn <= np && !strcmp(path + np - nn, name) && (nn == np || path[np - nn - 1] == '.');
}

/* A PEFT target name of a GPT-2 model: the modules it adapts ("c_proj" alone is both o and
 * down; c_attn is q, k, v), 0 when it names none. */
static unsigned gpt2_target_lookup(const char *name) {
    if (!strcmp(name, "c_proj")) return (1u << LORA_O) | (1u << LORA_DOWN);
    if (path_suffix("attn.c_attn", name)) return (1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V);
    for (int m = LORA_O; m < LORA_N_MODULES; m++)
        if (gpt2_peft_path[m] && path_suffix(gpt2_peft_path[m], name)) return 1u << m;
    return 0;
}

/* lora_config_from_json; gpt2: target_modules are GPT-2's module names. */
static tw_status config_from_json(const tw_json *obj, const char *what, int gpt2,
                                  lora_config *out) {
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
            char sn[48];
            safe_name(sn, sizeof sn, s ? s : "(not a string)", s ? strlen(s) : 14);
            if (gpt2) {
                unsigned g = s ? gpt2_target_lookup(s) : 0;
                if (!g)
                    return tw_error(TW_ERR_FORMAT,
                                    "%s: field 'target_modules': '%.40s' is not a module of gpt2 "
                                    "that twin adapts (attn.c_attn, attn.c_proj, mlp.c_fc, "
                                    "mlp.c_proj)",
                                    what, sn);
                mask |= g;
                continue;
            }
            int m = s ? module_lookup(s, strlen(s)) : -1;
            if (m < 0)
                return tw_error(TW_ERR_FORMAT,
                                "%s: field 'target_modules': '%.40s' is not a module twin "
                                "adapts (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                                "down_proj)",
                                what, sn);
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

tw_status lora_config_from_json(const tw_json *obj, const char *what, lora_config *out) {
    return config_from_json(obj, what, 0, out);
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
    return !strcmp(arch, "llama") || !strcmp(arch, "qwen2") || !strcmp(arch, "gpt2");
}

static tw_status base_check(const lora_base *b, const char *what) {
    if (!arch_supported(b->arch))
        return tw_error(TW_ERR_UNSUPPORTED,
                        "%s: architecture '%s': LoRA adapters are made for the llama family "
                        "(llama, qwen2) and gpt2",
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
    if (is_gpt2(b) && (b->n_kv_head != b->n_head || b->qk_permuted ||
                       (int64_t)b->n_head * b->head_dim != b->n_embd))
        return tw_error(TW_ERR_ARG,
                        "%s: a gpt2 base has n_head * head_dim = n_embd and as many K/V heads as "
                        "heads (n_embd %d, n_head %d, n_kv_head %d, head_dim %d)",
                        what, (int)b->n_embd, (int)b->n_head, (int)b->n_kv_head, (int)b->head_dim);
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
    if (is_gpt2(out)) {
        /* blk.0.attn_qkv (ne0 n_embd, ne1 3 n_embd) and ffn_up (ne1 n_ff); MHA */
        const gguf_tensor *tqkv = gguf_find_tensor(f, "blk.0.attn_qkv.weight");
        const gguf_tensor *tu = gguf_find_tensor(f, "blk.0.ffn_up.weight");
        if (!tqkv || !tu) {
            st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s' missing", path,
                          !tqkv ? "blk.0.attn_qkv.weight" : "blk.0.ffn_up.weight");
            goto done;
        }
        if (tqkv->ne[0] < 1 || tqkv->ne[0] > (1 << 20) || tqkv->ne[1] != 3 * tqkv->ne[0] ||
            tqkv->ne[0] % (int64_t)nh || tu->ne[1] < 1 || tu->ne[1] > (1 << 22)) {
            st = tw_error(TW_ERR_FORMAT, "%s: blk.0.attn_qkv.weight / ffn_up.weight: shapes do "
                          "not fit a gpt2 model of %llu heads", path, (unsigned long long)nh);
            goto done;
        }
        out->n_embd = (int32_t)tqkv->ne[0];
        out->n_kv_head = out->n_head;
        out->head_dim = (int32_t)(tqkv->ne[0] / (int64_t)nh);
        out->n_ff = (int32_t)tu->ne[1];
        snprintf(out->name, sizeof out->name, "%s", path);
        st = base_check(out, path);
        goto done;
    }
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
    for (int m = 0; m < LORA_N_MODULES; m++)
        if ((cfg->targets & (1u << m)) && !(lora_base_modules(base) & (1u << m)))
            return tw_error(TW_ERR_ARG,
                            "LoRA target %s: a %s model has no %s projection (GPT-2: q, k, v, o, "
                            "up, down)",
                            lora_short[m], base->arch, lora_short[m]);
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
    if (!s->n_floats) return TW_OK;
    return tw_buffer_zero(s->buf, (size_t)reg * s->n_floats * sizeof(float),
                          s->n_floats * sizeof(float));
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

/* ---- GPT-2's fused c_attn -------------------------------------------------------------------
 * A set for gpt2 holds q, k, v as adapters of rank r on the row ranges of the fused weight
 * (3d, d). A file holds them as ONE adapter of the fused weight, exactly: with the targeted
 * modules m_0..m_{t-1} (in q, k, v order) and nblk >= t blocks of r,
 *   A (nblk r, d) = [A_m0; A_m1; ...; 0]       (the modules' A stacked, zero blocks after)
 *   B (3d, nblk r): rows of m_j's range, columns [j r, (j+1) r) = bscale * B_mj; zero elsewhere
 * so that B A = bscale * sum_j B_mj A_mj placed on m_j's rows: the same delta. PEFT: nblk = t,
 * bscale 1, and rank_pattern / alpha_pattern give c_attn rank t r and an alpha with the same
 * scale. GGUF (llama.cpp scales every tensor by alpha / its own rank, with one alpha): nblk is
 * t rounded up to a power of two (3 -> 4) and bscale = nblk, a power of two, so the scaled B
 * has the same bits / nblk when read back. The file says which modules are in c_attn
 * (twin.c_attn / twin.lora.qkv: "q,k,v" or a subset); a fused adapter without it (a PEFT
 * adapter trained elsewhere) is read "shared": q, k and v each get the whole A and their row
 * range of B, at the file's c_attn rank, which must then be the set's rank. */

/* The targeted ones of q, k, v in order into mods; returns how many. */
static int qkv_targets(unsigned targets, lora_module mods[3]) {
    int t = 0;
    for (int m = LORA_Q; m <= LORA_V; m++)
        if (targets & (1u << m)) mods[t++] = (lora_module)m;
    return t;
}

static void qkv_list_str(unsigned targets, char out[8]) {
    lora_module mods[3];
    int t = qkv_targets(targets, mods), k = 0;
    for (int j = 0; j < t; j++) {
        if (j) out[k++] = ',';
        out[k++] = lora_short[mods[j]][0];
    }
    out[k] = 0;
}

/* Parses "q,k,v" (a subset, in order) into a mask of q/k/v; 0 when malformed. */
static unsigned qkv_list_parse(const char *str) {
    unsigned m = 0;
    int last = -1;
    for (const char *p = str; *p;) {
        int mod = *p == 'q' ? LORA_Q : *p == 'k' ? LORA_K : *p == 'v' ? LORA_V : -1;
        if (mod <= last) return 0;
        m |= 1u << mod;
        last = mod;
        p++;
        if (*p == ',' && p[1]) p++;
        else if (*p) return 0;
    }
    return m;
}

/* Layer l's fused c_attn A (nblk r, d) and B (3d, nblk r) from the set's host params p. */
static void qkv_fuse(const lora_set *s, const float *p, int32_t l, int nblk, float bscale,
                     float *A, float *B) {
    const int64_t d = s->base.n_embd, r = s->cfg.rank, R = nblk * r;
    lora_module mods[3];
    int t = qkv_targets(s->cfg.targets, mods);
    memset(A, 0, (size_t)(R * d) * sizeof(float));
    memset(B, 0, (size_t)(3 * d * R) * sizeof(float));
    for (int j = 0; j < t; j++) {
        const lora_adapter *a = lora_set_find(s, l, mods[j]);
        memcpy(A + j * r * d, p + a->a_off, (size_t)(r * d) * sizeof(float));
        const int64_t row0 = (int64_t)(mods[j] - LORA_Q) * d;
        for (int64_t o = 0; o < d; o++)
            for (int64_t k = 0; k < r; k++)
                B[(row0 + o) * R + j * r + k] = bscale * p[a->b_off + (size_t)(o * r + k)];
    }
}

/* The reverse, reading a file's fused A (R, d), B (3d, R) into layer l's q, k, v adapters of
 * host (the set's layout): twin's layout (shared 0: R = nblk r, blocks as qkv_fuse writes
 * them, every other entry zero, B divided by bdiv) or shared (R = r: each module gets A whole
 * and its row range of B). TW_ERR_FORMAT naming what and tname when the layout does not hold. */
static tw_status qkv_split(const lora_set *s, float *host, int32_t l, const float *A,
                           const float *B, int64_t R, int shared, float bdiv, const char *what,
                           const char *tname) {
    const int64_t d = s->base.n_embd, r = s->cfg.rank;
    lora_module mods[3];
    int t = qkv_targets(s->cfg.targets, mods);
    for (int j = 0; j < t; j++) {
        const lora_adapter *a = lora_set_find(s, l, mods[j]);
        const int64_t row0 = (int64_t)(mods[j] - LORA_Q) * d, c0 = shared ? 0 : j * r;
        memcpy(host + a->a_off, A + c0 * d, (size_t)(r * d) * sizeof(float));
        for (int64_t o = 0; o < d; o++)
            for (int64_t k = 0; k < r; k++)
                host[a->b_off + (size_t)(o * r + k)] = B[(row0 + o) * R + c0 + k] / bdiv;
    }
    if (shared) return TW_OK;
    /* everything outside the blocks is zero: A rows past t r, B outside the diagonal blocks */
    for (int64_t i = (int64_t)t * r * d; i < R * d; i++)
        if (A[i] != 0)
            return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': rows past the %d fused modules' "
                            "blocks are not zero (not twin's c_attn layout)", what, tname, t);
    for (int64_t row = 0; row < 3 * d; row++) {
        int j = -1;
        for (int k = 0; k < t; k++)
            if ((int64_t)(mods[k] - LORA_Q) == row / d) j = k;
        for (int64_t c = 0; c < R; c++)
            if ((j < 0 || c / r != j) && B[row * R + c] != 0)
                return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': entry (%lld, %lld) outside the "
                                "block diagonal is not zero (not twin's c_attn layout)", what,
                                tname, (long long)row, (long long)c);
    }
    return TW_OK;
}

/* GGUF's block count for t fused modules: t rounded up to a power of two. */
static int qkv_gguf_blocks(int t) { return t == 3 ? 4 : t; }

/* One tensor of an adapter file: (rows, cols) floats, row-major, in the file's order. */
typedef struct {
    char name[160];
    int64_t rows, cols;
    const float *data;
} lora_ftensor;

/* Floats fused needs for a gpt2 set's files (every layer's c_attn A and B, 4 blocks at most). */
static size_t fused_floats(const lora_set *s) {
    if (!is_gpt2(&s->base)) return 1;
    const size_t d = (size_t)s->base.n_embd, R = 4 * (size_t)s->cfg.rank;
    return (size_t)s->base.n_layer * (R * d + 3 * d * R);
}

/* The tensors of s's file (gguf 0: PEFT names and HF row order; 1: llama.cpp's GGUF names and
 * order) into out (2 * n_ad entries at most), from the host params p; B copies that need
 * reordering go to bcopy (n_floats), gpt2's fused c_attn to fused (fused_floats). Returns the
 * count. */
static int file_tensors(const lora_set *s, const float *p, float *bcopy, float *fused, int gguf,
                        lora_ftensor *out) {
    int n = 0;
    const int gpt2 = is_gpt2(&s->base);
    lora_module mods[3];
    const int t = gpt2 ? qkv_targets(s->cfg.targets, mods) : 0;
    const int nblk = gguf ? qkv_gguf_blocks(t) : t;
    const int64_t d = s->base.n_embd, R = (int64_t)nblk * s->cfg.rank;
    for (int32_t i = 0; i < s->n_ad; i++) {
        const lora_adapter *a = &s->ad[i];
        if (gpt2 && a->module <= LORA_V) {
            if (a->module != mods[0]) continue; /* one fused tensor pair per layer */
            float *A = fused, *B = fused + R * d;
            fused += R * d + 3 * d * R;
            qkv_fuse(s, p, a->layer, nblk, gguf ? (float)nblk : 1.0f, A, B);
            for (int k = 0; k < 2; k++, n++) {
                if (gguf)
                    snprintf(out[n].name, sizeof out[n].name, "blk.%d.attn_qkv.weight.lora_%c",
                             (int)a->layer, k ? 'b' : 'a');
                else
                    snprintf(out[n].name, sizeof out[n].name,
                             "base_model.model.transformer.h.%d.attn.c_attn.lora_%c.weight",
                             (int)a->layer, k ? 'B' : 'A');
                out[n].rows = k ? 3 * d : R;
                out[n].cols = k ? R : d;
                out[n].data = k ? B : A;
            }
            continue;
        }
        for (int k = 0; k < 2; k++, n++) {
            lora_ftensor *f = &out[n];
            if (gguf)
                snprintf(f->name, sizeof f->name, "blk.%d.%s.weight.lora_%c", (int)a->layer,
                         lora_gguf[a->module], k ? 'b' : 'a');
            else if (gpt2)
                snprintf(f->name, sizeof f->name, "base_model.model.transformer.h.%d.%s.lora_%c.weight",
                         (int)a->layer, gpt2_peft_path[a->module], k ? 'B' : 'A');
            else
                snprintf(f->name, sizeof f->name, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight",
                         (int)a->layer, lora_peft_parent[a->module], lora_peft[a->module],
                         k ? 'B' : 'A');
            f->rows = k ? a->out : a->rank;
            f->cols = k ? a->rank : a->in;
            f->data = k ? b_in_order(s, a, p, bcopy + a->b_off, gguf) : p + a->a_off;
        }
    }
    return n;
}

/* ---- PEFT ----------------------------------------------------------------------------------- */

static void peft_tensor_name(char *out, size_t n, int gpt2, int32_t layer, lora_module m,
                             char ab) {
    if (gpt2)
        snprintf(out, n, "base_model.model.transformer.h.%d.%s.lora_%c.weight", (int)layer,
                 gpt2_peft_path[m], ab);
    else
        snprintf(out, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", (int)layer,
                 lora_peft_parent[m], lora_peft[m], ab);
}

#define QKV_MASK ((1u << LORA_Q) | (1u << LORA_K) | (1u << LORA_V))

/* GPT-2 PEFT: the rank_pattern / alpha_pattern entries of c_attn (0 when absent); any other
 * entry is refused. */
static tw_status gpt2_patterns(const tw_json *doc, const char *what, int64_t *rank,
                               double *alpha) {
    *rank = 0;
    *alpha = 0;
    const char *keys[2] = {"rank_pattern", "alpha_pattern"};
    for (int k = 0; k < 2; k++)
        for (const tw_json *e = tw_json_first(tw_json_get(doc, keys[k])); e; e = tw_json_next(e)) {
            const char *key = tw_json_key(e);
            double v = tw_json_num(e, -1);
            if (!key || gpt2_target_lookup(key) != QKV_MASK || !(v > 0) || v > 1e9 ||
                (k == 0 && v != floor(v))) {
                char kn[48];
                safe_name(kn, sizeof kn, key ? key : "?", key ? strlen(key) : 1);
                return tw_error(TW_ERR_UNSUPPORTED, "%s: %s entry '%s': only a positive value "
                                "for c_attn is supported", what, keys[k], kn);
            }
            if (k == 0) *rank = (int64_t)v;
            else *alpha = v;
        }
    return TW_OK;
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
    float *fused = tw_malloc(fused_floats(s) * sizeof(float));
    lora_ftensor *ft = tw_malloc((size_t)(2 * s->n_ad + 1) * sizeof *ft);
    st_writer *w = st_writer_new();
    char *cfg_path = path_join(dir, "adapter_config.json");
    char *st_path = path_join(dir, "adapter_model.safetensors");
    const int gpt2 = is_gpt2(&s->base);
    lora_module qkv[3];
    const int t_qkv = gpt2 ? qkv_targets(s->cfg.targets, qkv) : 0;
    tw_sb sb;
    tw_sb_init(&sb);
    if (!p || !bcopy || !fused || !ft || !w || !cfg_path || !st_path) {
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
    char qkv_s[8];
    qkv_list_str(s->cfg.targets, qkv_s);
    if (t_qkv) st_writer_set_metadata(w, "twin.c_attn", qkv_s);
    int n_ft = file_tensors(s, p, bcopy, fused, 0, ft);
    for (int i = 0; !st && i < n_ft; i++) {
        int64_t shape[2] = {ft[i].rows, ft[i].cols};
        st = st_writer_add_tensor(w, ft[i].name, ST_DTYPE_F32, 2, shape, ft[i].data);
    }
    if (st) goto done;
    /* adapter_config.json: PEFT's LoraConfig fields (its from_pretrained reads them). GPT-2:
     * the fused c_attn has rank t r and an alpha giving the same scale (rank_pattern,
     * alpha_pattern), and Conv1D modules take fan_in_fan_out. */
    tw_sb_puts(&sb, "{\n  \"alpha_pattern\": {");
    if (t_qkv > 1)
        tw_sb_printf(&sb, "\"c_attn\": %.9g",
                     s->cfg.use_rslora ? (double)s->cfg.alpha * sqrt((double)t_qkv)
                                       : (double)s->cfg.alpha * t_qkv);
    tw_sb_puts(&sb, "},\n  \"base_model_name_or_path\": ");
    tw_sb_json_str(&sb, s->base.name, strlen(s->base.name));
    tw_sb_printf(&sb,
                 ",\n  \"bias\": \"none\",\n  \"fan_in_fan_out\": %s,\n"
                 "  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n"
                 "  \"layers_pattern\": null,\n  \"layers_to_transform\": null,\n"
                 "  \"lora_alpha\": %.9g,\n  \"lora_dropout\": %.9g,\n"
                 "  \"modules_to_save\": null,\n  \"peft_type\": \"LORA\",\n  \"r\": %d,\n"
                 "  \"rank_pattern\": {",
                 gpt2 ? "true" : "false", (double)s->cfg.alpha, (double)s->cfg.dropout,
                 (int)s->cfg.rank);
    if (t_qkv > 1) tw_sb_printf(&sb, "\"c_attn\": %d", t_qkv * (int)s->cfg.rank);
    tw_sb_puts(&sb, "},\n  \"revision\": null,\n  \"target_modules\": [");
    int first = 1;
    for (int m = 0; m < LORA_N_MODULES; m++)
        if ((s->cfg.targets & (1u << m)) && (!gpt2 || m > LORA_V)) {
            tw_sb_printf(&sb, "%s\"%s\"", first ? "" : ", ", gpt2 ? gpt2_peft_path[m] : lora_peft[m]);
            first = 0;
        }
    if (t_qkv) tw_sb_printf(&sb, "%s\"attn.c_attn\"", first ? "" : ", ");
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
    tw_free(fused);
    tw_free(ft);
    return st;
}

/* A tensor name past the first of the n prefixes it starts with (PEFT's, or GGUF's "blk.") and
 * past "N." (N a layer number up to 10^6, into *layer); NULL when no prefix matches or no layer
 * number and dot follow. */
static const char *name_layer_skip(const char *name, const char *const *prefixes, size_t n,
                                   int32_t *layer) {
    const char *p = NULL;
    for (size_t i = 0; i < n && !p; i++)
        if (!strncmp(name, prefixes[i], strlen(prefixes[i]))) p = name + strlen(prefixes[i]);
    if (!p || *p < '0' || *p > '9') return NULL;
    long l = 0;
    while (*p >= '0' && *p <= '9') {
        l = l * 10 + (*p - '0');
        if (l > 1000000) return NULL;
        p++;
    }
    if (*p++ != '.') return NULL;
    *layer = (int32_t)l;
    return p;
}

/* Parses "layers.N.<parent>.<module>.lora_X.weight" after the PEFT prefix. */
static int peft_parse_name(const char *name, int32_t *layer, int *module, char *ab) {
    static const char *prefixes[] = {"base_model.model.model.layers.", "base_model.model.layers.",
                                     "model.layers."};
    int32_t l;
    const char *p = name_layer_skip(name, prefixes, sizeof prefixes / sizeof *prefixes, &l);
    if (!p) return -1;
    for (int m = 0; m < LORA_N_MODULES; m++) {
        size_t np = strlen(lora_peft_parent[m]), nm = strlen(lora_peft[m]);
        if (strncmp(p, lora_peft_parent[m], np) || p[np] != '.') continue;
        const char *q = p + np + 1;
        if (strncmp(q, lora_peft[m], nm)) continue;
        q += nm;
        if (!strcmp(q, ".lora_A.weight") || !strcmp(q, ".lora_B.weight")) {
            *layer = l;
            *module = m;
            *ab = q[6];
            return 0;
        }
    }
    return -1;
}

/* GPT-2 under PEFT: "<prefix>N.<attn.c_attn|attn.c_proj|mlp.c_fc|mlp.c_proj>.lora_X.weight"
 * with the prefix base_model.model.transformer.h. (GPT2LMHeadModel) or a shorter one;
 * *module is LORA_N_MODULES for the fused c_attn. */
static int peft_parse_name_gpt2(const char *name, int32_t *layer, int *module, char *ab) {
    static const char *prefixes[] = {"base_model.model.transformer.h.", "base_model.model.h.",
                                     "transformer.h.", "h."};
    static const struct {
        const char *path;
        int module;
    } mods[] = {{"attn.c_attn", LORA_N_MODULES},
                {"attn.c_proj", LORA_O},
                {"mlp.c_fc", LORA_UP},
                {"mlp.c_proj", LORA_DOWN}};
    int32_t l;
    const char *p = name_layer_skip(name, prefixes, sizeof prefixes / sizeof *prefixes, &l);
    if (!p) return -1;
    for (size_t m = 0; m < sizeof mods / sizeof *mods; m++) {
        size_t n = strlen(mods[m].path);
        if (strncmp(p, mods[m].path, n)) continue;
        if (!strcmp(p + n, ".lora_A.weight") || !strcmp(p + n, ".lora_B.weight")) {
            *layer = l;
            *module = mods[m].module;
            *ab = p[n + 6];
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
    float *host = NULL, *tmp = NULL, *fused = NULL; /* fused: gpt2's c_attn A, B per layer */
    uint8_t *seen = NULL, *fseen = NULL;
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
    const int gpt2 = is_gpt2(base);
    int64_t cattn_rank = 0, R = 0; /* c_attn: the pattern's rank, the file's rank */
    double cattn_alpha = 0;
    int shared = 0;
    if (tw_json_get_bool(doc, "use_dora", 0) ||
        (!gpt2 && (tw_json_size(tw_json_get(doc, "rank_pattern")) ||
                   tw_json_size(tw_json_get(doc, "alpha_pattern"))))) {
        st = tw_error(TW_ERR_UNSUPPORTED,
                      "%s: DoRA and per-module rank/alpha patterns are not supported", cfg_path);
        goto done;
    }
    /* the stored identity first: an adapter for another model is named as such, before its
     * module names (another architecture's) are parsed */
    if (!(f = st_open(st_path))) {
        st = tw_errcode();
        goto done;
    }
    const char *n_layer_s = st_metadata_get(f, "twin.n_layer");
    if ((st = check_identity(base, st_path, st_metadata_get(f, "twin.arch"),
                             n_layer_s ? atoll(n_layer_s) : 0,
                             st_metadata_get(f, "twin.base_sha256"))))
        goto done;
    if (gpt2 && (st = gpt2_patterns(doc, cfg_path, &cattn_rank, &cattn_alpha))) goto done;
    lora_config cfg;
    if ((st = config_from_json(doc, cfg_path, gpt2, &cfg))) goto done;
    if (gpt2 && (cfg.targets & QKV_MASK)) {
        /* the fused c_attn: twin's block layout (twin.c_attn names its modules) or shared */
        const char *qs = st_metadata_get(f, "twin.c_attn");
        if (qs) {
            unsigned qm = qkv_list_parse(qs);
            if (!qm) {
                char qn[24];
                safe_name(qn, sizeof qn, qs, strlen(qs));
                st = tw_error(TW_ERR_FORMAT, "%s: metadata twin.c_attn '%s': expected q,k,v "
                              "or a subset in that order", st_path, qn);
                goto done;
            }
            cfg.targets = (cfg.targets & ~QKV_MASK) | qm;
            lora_module mods[3];
            R = (int64_t)qkv_targets(qm, mods) * cfg.rank;
        } else {
            shared = 1;
            R = cattn_rank ? cattn_rank : cfg.rank;
            if (!(cfg.targets & ~QKV_MASK)) { /* c_attn alone: its rank and alpha are the set's */
                cfg.rank = (int32_t)R;
                if (cattn_alpha > 0) cfg.alpha = (float)cattn_alpha;
            }
        }
        double want_alpha = cfg.alpha, have_alpha = cattn_alpha > 0 ? cattn_alpha : cfg.alpha;
        if (!shared && R != cfg.rank)
            want_alpha = cfg.use_rslora ? cfg.alpha * sqrt((double)R / cfg.rank)
                                        : (double)cfg.alpha * (double)R / cfg.rank;
        if ((cattn_rank && cattn_rank != R) || (!cattn_rank && R != cfg.rank) ||
            (shared && R != cfg.rank) || fabs(have_alpha - want_alpha) > 1e-6 * want_alpha) {
            st = tw_error(TW_ERR_UNSUPPORTED,
                          "%s: c_attn has rank %lld and alpha %g, the other modules rank %d and "
                          "alpha %g: twin sets have one rank and scale for every module",
                          cfg_path, (long long)(cattn_rank ? cattn_rank : cfg.rank), have_alpha,
                          (int)cfg.rank, (double)cfg.alpha);
            goto done;
        }
    }
    if ((st = set_layout(base, &cfg, &s))) {
        if (st == TW_ERR_ARG) st = tw_error(TW_ERR_RUNTIME, "%s: %s", cfg_path, tw_errmsg());
        goto done;
    }
    const int64_t d = base->n_embd;
    if (gpt2) {
        fused = tw_calloc((size_t)base->n_layer * (size_t)(R * d + 3 * d * R) + 1, sizeof(float));
        fseen = tw_calloc((size_t)base->n_layer * 2 + 1, 1);
        if (!fused || !fseen) {
            st = tw_error(TW_ERR_NOMEM, "%s: out of memory", st_path);
            goto done;
        }
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
        char tname[128];
        safe_name(tname, sizeof tname, ti->name, strlen(ti->name));
        int32_t layer;
        int m;
        char ab;
        if (gpt2 ? peft_parse_name_gpt2(ti->name, &layer, &m, &ab)
                 : peft_parse_name(ti->name, &layer, &m, &ab)) {
            st = tw_error(TW_ERR_FORMAT,
                          "%s: tensor '%s' is not a LoRA A/B of a module twin adapts",
                          st_path, tname);
            break;
        }
        if (layer >= base->n_layer) {
            st = tw_error(TW_ERR_RUNTIME,
                          "%s: tensor '%s' is for layer %d, the base model has %d layers",
                          st_path, tname, (int)layer, (int)base->n_layer);
            break;
        }
        int64_t rows = ti->n_dims == 2 ? ti->shape[0] : -1, cols = ti->n_dims == 2 ? ti->shape[1] : -1;
        if (m == LORA_N_MODULES) { /* gpt2's fused c_attn: A (R, d), B (3d, R) */
            if (!(cfg.targets & QKV_MASK)) {
                st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s': c_attn is not in "
                              "target_modules", st_path, tname);
                break;
            }
            if ((st = check_shape(st_path, tname, rows, cols, ab == 'A' ? R : 3 * d,
                                  ab == 'A' ? d : R)))
                break;
            if (fseen[layer * 2 + (ab == 'B')]) {
                st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s' twice", st_path, tname);
                break;
            }
            fseen[layer * 2 + (ab == 'B')] = 1;
            float *dst = fused + (size_t)layer * (size_t)(R * d + 3 * d * R) +
                         (ab == 'B' ? (size_t)(R * d) : 0);
            if ((st = st_tensor_to_f32(ti, dst))) break;
            if ((st = check_finite(st_path, tname, dst, rows * cols))) break;
            continue;
        }
        const lora_adapter *a = lora_set_find(s, layer, (lora_module)m);
        if (!a) {
            st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s': module %s is not in target_modules",
                          st_path, tname, gpt2 ? gpt2_peft_path[m] : lora_peft[m]);
            break;
        }
        if (ab == 'A')
            st = check_shape(st_path, tname, rows, cols, a->rank, a->in);
        else
            st = check_shape(st_path, tname, rows, cols, a->out, a->rank);
        if (st) break;
        size_t k = (size_t)(a - s->ad) * 2 + (ab == 'B');
        if (seen[k]) {
            st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s' twice", st_path, tname);
            break;
        }
        seen[k] = 1;
        float *dst = ab == 'A' ? host + a->a_off : tmp;
        if ((st = st_tensor_to_f32(ti, dst))) break;
        if ((st = check_finite(st_path, tname, dst, rows * cols))) break;
        if (ab == 'B') b_from_file(s, a, tmp, host + a->b_off, 0);
    }
    for (int32_t l = 0; !st && gpt2 && (cfg.targets & QKV_MASK) && l < base->n_layer; l++) {
        char name[160];
        for (int k = 0; k < 2 && !st; k++)
            if (!fseen[l * 2 + k]) {
                peft_tensor_name(name, sizeof name, 1, l, LORA_Q, k ? 'B' : 'A');
                st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s' missing", st_path, name);
            }
        if (st) break;
        peft_tensor_name(name, sizeof name, 1, l, LORA_Q, 'B');
        const float *A = fused + (size_t)l * (size_t)(R * d + 3 * d * R);
        st = qkv_split(s, host, l, A, A + R * d, R, shared, 1.0f, st_path, name);
        for (int mq = LORA_Q; mq <= LORA_V; mq++) {
            const lora_adapter *a = lora_set_find(s, l, (lora_module)mq);
            if (a) seen[(size_t)(a - s->ad) * 2] = seen[(size_t)(a - s->ad) * 2 + 1] = 1;
        }
    }
    for (int32_t i = 0; !st && i < s->n_ad; i++)
        for (int k = 0; k < 2 && !st; k++)
            if (!seen[(size_t)i * 2 + (size_t)k]) {
                char name[160];
                peft_tensor_name(name, sizeof name, gpt2, s->ad[i].layer, s->ad[i].module,
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
    tw_free(fused);
    tw_free(fseen);
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
    float *fused = tw_malloc(fused_floats(s) * sizeof(float));
    lora_ftensor *ft = tw_malloc((size_t)(2 * s->n_ad + 1) * sizeof *ft);
    uint8_t *q = NULL;
    gguf_writer *w = gguf_writer_new(3, 0);
    if (!p || !bcopy || !fused || !ft || !w) {
        st = tw_error(TW_ERR_NOMEM, "%s: out of memory saving the adapter", path);
        goto done;
    }
    if ((st = lora_set_download(s, LORA_PARAM, p))) goto done;
    const int n_ft = file_tensors(s, p, bcopy, fused, 1, ft);
    /* Converted tensors: each at its own offset in q (row bytes * rows per tensor). */
    size_t qbytes = 0;
    for (int i = 0; i < n_ft; i++) {
        size_t rb = tw_dtype_row_bytes(type, ft[i].cols);
        if (!rb) {
            st = tw_error(TW_ERR_ARG, "%s: %s: rows of %lld values do not split into %s blocks",
                          path, ft[i].name, (long long)ft[i].cols, tw_dtype_name(type));
            goto done;
        }
        qbytes += rb * (size_t)ft[i].rows;
    }
    q = tw_malloc(qbytes ? qbytes : 1);
    if (!q) {
        st = tw_error(TW_ERR_NOMEM, "%s: out of memory saving the adapter", path);
        goto done;
    }
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
    char qkv_s[8];
    qkv_list_str(s->cfg.targets, qkv_s);
    if (!st && is_gpt2(&s->base) && qkv_s[0]) st = gguf_writer_set_str(w, "twin.lora.qkv", qkv_s);
    size_t qoff = 0;
    for (int i = 0; !st && i < n_ft; i++) {
        const lora_ftensor *f = &ft[i];
        const void *data = f->data;
        if (type != TW_DTYPE_F32) {
            size_t rbytes = tw_dtype_row_bytes(type, f->cols);
            for (int64_t r = 0; !st && r < f->rows; r++)
                st = tw_quantize_row(type, f->data + r * f->cols, q + qoff + (size_t)r * rbytes,
                                     f->cols);
            data = q + qoff;
            qoff += rbytes * (size_t)f->rows;
        }
        int64_t ne[2] = {f->cols, f->rows};
        if (!st) st = gguf_writer_add_tensor(w, f->name, type, 2, ne, data);
    }
    if (!st) st = gguf_writer_write(w, path);
done:
    gguf_writer_free(w);
    tw_free(p);
    tw_free(bcopy);
    tw_free(fused);
    tw_free(ft);
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

/* "blk.N.<gguf module>.weight.lora_a|b"; gpt2 (fused): "blk.N.attn_qkv.weight.lora_a|b" gives
 * *module LORA_N_MODULES. */
static int gguf_parse_name(gguf_str nm, int gpt2, int32_t *layer, int *module, char *ab) {
    char name[80];
    if (nm.len >= sizeof name) return -1;
    memcpy(name, nm.ptr, nm.len);
    name[nm.len] = 0;
    static const char *const blk[1] = {"blk."};
    int32_t l;
    const char *p = name_layer_skip(name, blk, 1, &l);
    if (!p) return -1;
    for (int m = 0; m <= LORA_N_MODULES; m++) {
        const char *mn = m < LORA_N_MODULES ? lora_gguf[m] : gpt2 ? "attn_qkv" : NULL;
        if (!mn || (gpt2 && m <= LORA_V)) continue; /* gpt2 has no separate q, k, v weights */
        size_t nm2 = strlen(mn);
        if (strncmp(p, mn, nm2)) continue;
        const char *q = p + nm2;
        if (!strcmp(q, ".weight.lora_a") || !strcmp(q, ".weight.lora_b")) {
            *layer = l;
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
    float *host = NULL, *tmp = NULL, *fused = NULL; /* fused: gpt2's attn_qkv a, b per layer */
    uint8_t *seen = NULL, *fseen = NULL;
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
    const int gpt2 = is_gpt2(base);
    int64_t R = 0; /* gpt2: the fused attn_qkv adapter's rank */
    int nblk = 1, shared = 0;
    for (uint64_t t = 0; t < gguf_n_tensors(f); t++) {
        const gguf_tensor *ti = gguf_tensor_at(f, t);
        int32_t layer;
        int m;
        char ab;
        if (gguf_parse_name(ti->name, gpt2, &layer, &m, &ab)) {
            char tn[84];
            safe_name(tn, sizeof tn, ti->name.ptr, ti->name.len);
            st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s' is not a LoRA a/b of a module twin adapts",
                          path, tn);
            goto done;
        }
        int64_t r = ab == 'a' ? ti->ne[1] : ti->ne[0];
        if (m == LORA_N_MODULES) {
            if (ti->n_dims != 2 || r < 1 || r > 4 * 65536 || (R && r != R)) {
                st = tw_error(TW_ERR_FORMAT, "%s: tensor '%.*s': rank %lld differs from %lld",
                              path, (int)ti->name.len, ti->name.ptr, (long long)r, (long long)R);
                goto done;
            }
            R = r;
            cfg.targets |= QKV_MASK;
            continue;
        }
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
    if (R) { /* gpt2's attn_qkv: twin's block layout (twin.lora.qkv) or shared */
        char qs[16];
        if ((st = gguf_str_copy(f, "twin.lora.qkv", qs, sizeof qs))) goto done;
        if (qs[0]) {
            unsigned qm = qkv_list_parse(qs);
            lora_module mods[3];
            if (!qm) {
                char qn[24];
                safe_name(qn, sizeof qn, qs, strlen(qs));
                st = tw_error(TW_ERR_FORMAT, "%s: twin.lora.qkv '%s': expected q,k,v or a subset "
                              "in that order", path, qn);
                goto done;
            }
            cfg.targets = (cfg.targets & ~QKV_MASK) | qm;
            nblk = qkv_gguf_blocks(qkv_targets(qm, mods));
        } else {
            shared = 1;
        }
        if (!cfg.rank) cfg.rank = (int32_t)(R / nblk);
        if (R != (int64_t)nblk * cfg.rank) {
            st = tw_error(TW_ERR_UNSUPPORTED, "%s: attn_qkv has rank %lld, the other modules "
                          "%d: twin sets have one rank for every module", path, (long long)R,
                          (int)cfg.rank);
            goto done;
        }
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
    const int64_t d = base->n_embd;
    if (R) {
        fused = tw_calloc((size_t)base->n_layer * (size_t)(R * d + 3 * d * R) + 1, sizeof(float));
        fseen = tw_calloc((size_t)base->n_layer * 2 + 1, 1);
    }
    if (!host || !seen || !tmp || (R && (!fused || !fseen))) {
        st = tw_error(TW_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (uint64_t t = 0; !st && t < gguf_n_tensors(f); t++) {
        const gguf_tensor *ti = gguf_tensor_at(f, t);
        int32_t layer;
        int m;
        char ab;
        gguf_parse_name(ti->name, gpt2, &layer, &m, &ab); /* checked above */
        char tname[96];
        snprintf(tname, sizeof tname, "%.*s", (int)ti->name.len, ti->name.ptr);
        if (layer >= base->n_layer) {
            st = tw_error(TW_ERR_RUNTIME, "%s: tensor '%s' is for layer %d, the base has %d layers",
                          path, tname, (int)layer, (int)base->n_layer);
            break;
        }
        if (m == LORA_N_MODULES) { /* gpt2's attn_qkv: lora_a {d, R}, lora_b {R, 3d} */
            if ((st = check_shape(path, tname, ti->ne[1], ti->ne[0], ab == 'a' ? R : 3 * d,
                                  ab == 'a' ? d : R)))
                break;
            if (!tw_dtype_can_dequantize(ti->type)) {
                st = tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': type %s", path, tname,
                              tw_dtype_name(ti->type) ? tw_dtype_name(ti->type) : "?");
                break;
            }
            if (fseen[layer * 2 + (ab == 'b')]) {
                st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s' twice", path, tname);
                break;
            }
            fseen[layer * 2 + (ab == 'b')] = 1;
            float *dst = fused + (size_t)layer * (size_t)(R * d + 3 * d * R) +
                         (ab == 'b' ? (size_t)(R * d) : 0);
            size_t rb = tw_dtype_row_bytes(ti->type, ti->ne[0]);
            for (int64_t r = 0; !st && r < ti->ne[1]; r++)
                st = tw_dequantize_row(ti->type, (const uint8_t *)ti->data + (size_t)r * rb,
                                       dst + r * ti->ne[0], ti->ne[0]);
            if (!st) st = check_finite(path, tname, dst, ti->ne[0] * ti->ne[1]);
            continue;
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
    for (int32_t l = 0; !st && R && l < base->n_layer; l++) {
        char name[96];
        for (int k = 0; k < 2 && !st; k++)
            if (!fseen[l * 2 + k]) {
                snprintf(name, sizeof name, "blk.%d.attn_qkv.weight.lora_%c", (int)l, k ? 'b' : 'a');
                st = tw_error(TW_ERR_FORMAT, "%s: tensor '%s' missing", path, name);
            }
        if (st) break;
        snprintf(name, sizeof name, "blk.%d.attn_qkv.weight.lora_b", (int)l);
        const float *A = fused + (size_t)l * (size_t)(R * d + 3 * d * R);
        st = qkv_split(s, host, l, A, A + R * d, R, shared, (float)nblk, path, name);
        for (int mq = LORA_Q; mq <= LORA_V; mq++) {
            const lora_adapter *a = lora_set_find(s, l, (lora_module)mq);
            if (a) seen[(size_t)(a - s->ad) * 2] = seen[(size_t)(a - s->ad) * 2 + 1] = 1;
        }
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
    tw_free(fused);
    tw_free(fseen);
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
    const int gpt2 = is_gpt2(sb);
    for (uint64_t t = 0; !st && t < gguf_n_tensors(f); t++) {
        const gguf_tensor *ti = gguf_tensor_at(f, t);
        char name[80];
        snprintf(name, sizeof name, "%.*s", (int)(ti->name.len > 79 ? 79 : ti->name.len),
                 ti->name.ptr);
        const lora_adapter *a = NULL;
        int layer;
        char mod[32];
        int used = 0;
        /* gpt2's fused attn_qkv (3d, d): rows [j d, (j+1) d) take the adapter of q, k, v */
        int qkv = 0;
        int64_t out_rows = 0;
        if (sscanf(name, "blk.%d.%31[a-z_].weight%n", &layer, mod, &used) == 2 &&
            (size_t)used == strlen(name)) {
            int m = module_lookup(mod, strlen(mod));
            if (m >= 0 && !strcmp(mod, lora_gguf[m]) && (!gpt2 || m > LORA_V)) {
                a = lora_set_find(s, layer, (lora_module)m);
                if (a) out_rows = a->out;
            } else if (gpt2 && !strcmp(mod, "attn_qkv")) {
                for (int mq = LORA_Q; mq <= LORA_V && !a; mq++)
                    a = lora_set_find(s, layer, (lora_module)mq);
                qkv = a != NULL;
                out_rows = 3 * (int64_t)sb->n_embd;
            }
        }
        if (!a) {
            st = gguf_writer_add_tensor(w, name, ti->type, ti->n_dims, ti->ne, ti->data);
            continue;
        }
        if (ti->ne[0] != a->in || ti->ne[1] != out_rows || ti->n_dims != 2) {
            st = tw_error(TW_ERR_RUNTIME, "%s: tensor '%s' is [%lld, %lld], the adapter needs "
                                          "[%lld, %lld]",
                          base_path, name, (long long)ti->ne[1], (long long)ti->ne[0],
                          (long long)out_rows, (long long)a->in);
            break;
        }
        if (!tw_dtype_can_dequantize(ti->type)) {
            st = tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': type %s cannot be merged into",
                          base_path, name, tw_dtype_name(ti->type) ? tw_dtype_name(ti->type) : "?");
            break;
        }
        tw_dtype ot = merge_type(type, ti->type, a->in);
        size_t in_rb = tw_dtype_row_bytes(ti->type, a->in), out_rb = tw_dtype_row_bytes(ot, a->in);
        outs[t] = tw_malloc(out_rb * (size_t)out_rows);
        if (!outs[t]) {
            st = tw_error(TW_ERR_NOMEM, "%s: out of memory merging '%s'", base_path, name);
            break;
        }
        for (int64_t o = 0; !st && o < out_rows; o++) {
            st = tw_dequantize_row(ti->type, (const uint8_t *)ti->data + (size_t)o * in_rb, row,
                                   a->in);
            if (st) break;
            const lora_adapter *ra = a; /* the adapter of this row, and its row in B */
            int64_t ro = o;
            if (qkv) {
                ra = lora_set_find(s, layer, (lora_module)(LORA_Q + o / sb->n_embd));
                ro = o % sb->n_embd;
            }
            if (ra) {
                /* B in the file's row order (llama GGUF: permuted Q/K); gpt2: as the set's */
                const float *B = qkv ? p + ra->b_off : b_in_order(s, ra, p, bperm + ra->b_off,
                                                                  fb.qk_permuted);
                const float *A = p + ra->a_off;
                /* row += scale * B[ro,:] . A: the rank-r product, one row at a time. */
                for (int64_t k = 0; k < ra->rank; k++) {
                    float c = scale * B[ro * ra->rank + k];
                    const float *ak = A + k * ra->in;
                    for (int64_t j = 0; j < ra->in; j++) row[j] += c * ak[j];
                }
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
