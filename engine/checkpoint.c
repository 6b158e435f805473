/* checkpoint.c: training checkpoint files (checkpoint.h). */
#include "checkpoint.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CKPT_FIXED 32      /* magic, version, flags, H, P */
#define CKPT_ALIGN 64
#define CKPT_SUM 32        /* the trailing sha256 */
#define CKPT_MAX_BLOBS 4096
#define CKPT_MAX_NAME 64

static uint64_t align64(uint64_t n) { return (n + CKPT_ALIGN - 1) / CKPT_ALIGN * CKPT_ALIGN; }

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint64_t get_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* The members of a JSON object text without its braces, for splicing into the header. Checks
 * that text is an object. */
static tw_status object_inner(const char *text, const char *what, const char **b, size_t *n) {
    size_t len = strlen(text);
    tw_json *j = tw_json_parse(text, len, what);
    if (!j) return tw_error(TW_ERR_ARG, "%s", tw_errmsg());
    int ok = tw_json_is_object(j);
    tw_json_free(j);
    if (!ok) return tw_error(TW_ERR_ARG, "%s: not a JSON object", what);
    const char *s = strchr(text, '{'), *e = strrchr(text, '}');
    s++;
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r')) s++;
    *b = s;
    *n = (size_t)(e - s);
    return TW_OK;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

tw_status ckpt_write(const char *path, const ckpt_meta *meta, const char *extra_json,
                     const ckpt_blob *blobs, size_t n_blobs) {
    if (!path || !meta || (n_blobs && !blobs))
        return tw_error(TW_ERR_ARG, "ckpt_write: NULL argument");
    if (n_blobs > CKPT_MAX_BLOBS)
        return tw_error(TW_ERR_ARG, "%s: %zu blobs (at most %d)", path, n_blobs, CKPT_MAX_BLOBS);
    for (size_t i = 0; i < n_blobs; i++) {
        size_t nl = blobs[i].name ? strlen(blobs[i].name) : 0;
        if (nl == 0 || nl > CKPT_MAX_NAME || (!blobs[i].data && blobs[i].nbytes))
            return tw_error(TW_ERR_ARG, "%s: blob %zu: name must be 1..%d bytes, data set", path,
                            i, CKPT_MAX_NAME);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(blobs[i].name, blobs[k].name))
                return tw_error(TW_ERR_ARG, "%s: blob '%s' twice", path, blobs[i].name);
    }
    const char *cfg = meta->config_json ? meta->config_json : "{}";
    /* The config is checked to be an object, then stored as a JSON string (so that a reader
     * gets its exact text back: json.h has no writer). */
    const char *inner = NULL;
    size_t inner_n = 0;
    tw_status st = object_inner(cfg, "checkpoint config", &inner, &inner_n);
    if (st) return st;
    const char *extra = NULL;
    size_t extra_n = 0;
    if (extra_json && (st = object_inner(extra_json, "checkpoint extra header", &extra, &extra_n)))
        return st;

    tw_sb h;
    tw_sb_init(&h);
    tw_sb_printf(&h, "{\"step\":%lld,\"data_pos\":%llu,\"rng\":[", (long long)meta->step,
                 (unsigned long long)meta->data_pos);
    for (int i = 0; i < 4; i++)
        tw_sb_printf(&h, "%s\"%016llx\"", i ? "," : "", (unsigned long long)meta->rng[i]);
    tw_sb_puts(&h, "],\"base_sha256\":");
    tw_sb_json_str(&h, meta->base_sha256, strnlen(meta->base_sha256, 64));
    tw_sb_printf(&h, ",\"saved_at\":%.3f,\"config\":", wall_now());
    tw_sb_json_str(&h, cfg, strlen(cfg));
    tw_sb_puts(&h, ",\"blobs\":[");
    uint64_t off = 0;
    for (size_t i = 0; i < n_blobs; i++) {
        tw_sb_printf(&h, "%s{\"name\":", i ? "," : "");
        tw_sb_json_str(&h, blobs[i].name, strlen(blobs[i].name));
        tw_sb_printf(&h, ",\"offset\":%llu,\"nbytes\":%llu}", (unsigned long long)off,
                     (unsigned long long)blobs[i].nbytes);
        off = align64(off + blobs[i].nbytes);
    }
    tw_sb_puts(&h, "]");
    if (extra_n) {
        tw_sb_putc(&h, ',');
        tw_sb_append(&h, extra, extra_n);
    }
    tw_sb_puts(&h, "}");
    if (h.failed) {
        tw_sb_free(&h);
        return tw_error(TW_ERR_NOMEM, "%s: out of memory", path);
    }
    uint64_t payload = off;
    uint8_t fixed[CKPT_FIXED];
    memcpy(fixed, CKPT_MAGIC, 8);
    put_u32(fixed + 8, CKPT_VERSION);
    put_u32(fixed + 12, 0);
    put_u64(fixed + 16, h.len);
    put_u64(fixed + 24, payload);
    static const uint8_t zeros[CKPT_ALIGN] = {0};

    tw_sha256_ctx sum;
    tw_sha256_init(&sum);
    tw_afile af;
    st = tw_afile_open(&af, path);
    if (st) {
        tw_sb_free(&h);
        return st;
    }
#define PUT(p, n)                                                                             \
    do {                                                                                      \
        if (!st && (n)) {                                                                     \
            tw_sha256_update(&sum, (p), (n));                                                 \
            st = tw_afile_write(&af, (p), (n));                                               \
        }                                                                                     \
    } while (0)
    PUT(fixed, sizeof fixed);
    PUT(h.buf, h.len);
    PUT(zeros, (size_t)(align64(CKPT_FIXED + h.len) - (CKPT_FIXED + h.len)));
    off = 0;
    for (size_t i = 0; i < n_blobs; i++) {
        PUT(blobs[i].data, blobs[i].nbytes);
        uint64_t next = align64(off + blobs[i].nbytes);
        PUT(zeros, (size_t)(next - off - blobs[i].nbytes));
        off = next;
    }
#undef PUT
    uint8_t dig[32];
    tw_sha256_final(&sum, dig);
    if (!st) st = tw_afile_write(&af, dig, sizeof dig);
    if (!st) st = tw_afile_commit(&af);
    else tw_afile_abort(&af);
    tw_sb_free(&h);
    return st;
}

/* ---- reading -------------------------------------------------------------------------------- */

struct ckpt {
    tw_mfile mf;          /* ckpt_open's mapping (zeroed for ckpt_open_memory) */
    char *name;
    tw_json *doc;
    ckpt_meta meta;
    ckpt_blob *blobs;
    size_t n_blobs;
};

void ckpt_close(ckpt *c) {
    if (!c) return;
    tw_json_free(c->doc);
    tw_free(c->blobs);
    tw_free(c->name);
    tw_mfile_close(&c->mf);
    tw_free(c);
}

/* A non-negative integer that a double holds exactly. */
static int json_u64(const tw_json *j, uint64_t *out) {
    if (!tw_json_is_number(j)) return -1;
    double v = tw_json_num(j, -1);
    if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v)) return -1;
    *out = (uint64_t)v;
    return 0;
}

static int hex_u64(const char *s, uint64_t *out) {
    if (!s || strlen(s) != 16) return -1;
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

static tw_status parse(ckpt *c, const uint8_t *data, size_t size) {
    const char *nm = c->name;
    if (size < CKPT_FIXED + CKPT_SUM)
        return tw_error(TW_ERR_FORMAT, "%s: %zu bytes: too short for a checkpoint", nm, size);
    if (memcmp(data, CKPT_MAGIC, 8))
        return tw_error(TW_ERR_FORMAT, "%s: not a twin checkpoint (bad magic)", nm);
    uint32_t ver = get_u32(data + 8);
    if (ver != CKPT_VERSION)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: checkpoint version %u (this build reads %u)", nm,
                        ver, CKPT_VERSION);
    uint64_t hn = get_u64(data + 16), pn = get_u64(data + 24);
    if (hn > CKPT_MAX_HEADER || hn > size)
        return tw_error(TW_ERR_FORMAT, "%s: header size %llu out of range (file %zu bytes)", nm,
                        (unsigned long long)hn, size);
    uint64_t d = align64(CKPT_FIXED + hn);
    if (pn > size || d + pn + CKPT_SUM != size)
        return tw_error(TW_ERR_FORMAT,
                        "%s: sizes say %llu bytes, the file has %zu (truncated or extended)", nm,
                        (unsigned long long)(pn > size ? pn : d + pn + CKPT_SUM), size);
    uint8_t dig[32];
    tw_sha256(data, size - CKPT_SUM, dig);
    if (memcmp(dig, data + size - CKPT_SUM, CKPT_SUM))
        return tw_error(TW_ERR_FORMAT, "%s: checksum mismatch (the file is damaged)", nm);
    c->doc = tw_json_parse((const char *)data + CKPT_FIXED, (size_t)hn, nm);
    if (!c->doc) return tw_errcode();
    const tw_json *h = c->doc;
    if (!tw_json_is_object(h)) return tw_error(TW_ERR_FORMAT, "%s: header is not an object", nm);
    uint64_t u;
    const tw_json *step = tw_json_get(h, "step");
    if (json_u64(step, &u)) return tw_error(TW_ERR_FORMAT, "%s: header field 'step' missing or bad", nm);
    c->meta.step = (int64_t)u;
    if (json_u64(tw_json_get(h, "data_pos"), &c->meta.data_pos))
        return tw_error(TW_ERR_FORMAT, "%s: header field 'data_pos' missing or bad", nm);
    const tw_json *rng = tw_json_get(h, "rng");
    if (!tw_json_is_array(rng) || tw_json_size(rng) != 4)
        return tw_error(TW_ERR_FORMAT, "%s: header field 'rng': expected 4 hex strings", nm);
    int i = 0;
    for (const tw_json *e = tw_json_first(rng); e; e = tw_json_next(e), i++)
        if (hex_u64(tw_json_str(e), &c->meta.rng[i]))
            return tw_error(TW_ERR_FORMAT, "%s: header field 'rng' [%d]: expected 16 hex digits",
                            nm, i);
    const char *sha = tw_json_get_str(h, "base_sha256", NULL);
    if (!sha || (strlen(sha) != 0 && strlen(sha) != 64))
        return tw_error(TW_ERR_FORMAT, "%s: header field 'base_sha256' missing or bad", nm);
    memcpy(c->meta.base_sha256, sha, strlen(sha) + 1);
    c->meta.config_json = tw_json_get_str(h, "config", NULL);
    if (!c->meta.config_json)
        return tw_error(TW_ERR_FORMAT, "%s: header field 'config' missing or not a string", nm);
    const tw_json *bl = tw_json_get(h, "blobs");
    if (!tw_json_is_array(bl) || tw_json_size(bl) > CKPT_MAX_BLOBS)
        return tw_error(TW_ERR_FORMAT, "%s: header field 'blobs' missing or bad", nm);
    c->n_blobs = tw_json_size(bl);
    c->blobs = tw_calloc(c->n_blobs ? c->n_blobs : 1, sizeof *c->blobs);
    if (!c->blobs) return tw_error(TW_ERR_NOMEM, "%s: out of memory", nm);
    const uint8_t *payload = data + d;
    uint64_t end_prev = 0;
    i = 0;
    for (const tw_json *e = tw_json_first(bl); e; e = tw_json_next(e), i++) {
        const char *bn = tw_json_get_str(e, "name", NULL);
        uint64_t off, nb;
        if (!bn || !*bn || strlen(bn) > CKPT_MAX_NAME || json_u64(tw_json_get(e, "offset"), &off) ||
            json_u64(tw_json_get(e, "nbytes"), &nb))
            return tw_error(TW_ERR_FORMAT, "%s: blob %d: name, offset or nbytes missing or bad",
                            nm, i);
        /* In order, aligned, inside the payload, not overlapping. */
        if (off % CKPT_ALIGN || off < end_prev || off > pn || nb > pn - off)
            return tw_error(TW_ERR_FORMAT, "%s: blob '%s': range [%llu, +%llu) outside the payload "
                                           "of %llu bytes or out of order",
                            nm, bn, (unsigned long long)off, (unsigned long long)nb,
                            (unsigned long long)pn);
        for (int k = 0; k < i; k++)
            if (!strcmp(c->blobs[k].name, bn))
                return tw_error(TW_ERR_FORMAT, "%s: blob '%s' twice", nm, bn);
        end_prev = off + nb;
        c->blobs[i].name = bn;
        c->blobs[i].data = payload + off;
        c->blobs[i].nbytes = (size_t)nb;
    }
    return TW_OK;
}

static tw_status open_common(ckpt *c, const uint8_t *data, size_t size, ckpt **out) {
    tw_status st = parse(c, data, size);
    if (st) {
        ckpt_close(c);
        return st;
    }
    *out = c;
    return TW_OK;
}

tw_status ckpt_open_memory(const void *data, size_t size, const char *name, ckpt **out) {
    if (!out) return tw_error(TW_ERR_ARG, "ckpt_open_memory: out is NULL");
    *out = NULL;
    ckpt *c = tw_calloc(1, sizeof *c);
    if (!c || !(c->name = tw_strdup(name ? name : "checkpoint"))) {
        tw_free(c);
        return tw_error(TW_ERR_NOMEM, "checkpoint: out of memory");
    }
    if (!data && size) {
        ckpt_close(c);
        return tw_error(TW_ERR_ARG, "ckpt_open_memory: NULL data");
    }
    return open_common(c, data, size, out);
}

tw_status ckpt_open(const char *path, ckpt **out) {
    if (!out) return tw_error(TW_ERR_ARG, "ckpt_open: out is NULL");
    *out = NULL;
    ckpt *c = tw_calloc(1, sizeof *c);
    if (!c || !(c->name = tw_strdup(path))) {
        tw_free(c);
        return tw_error(TW_ERR_NOMEM, "%s: out of memory", path);
    }
    tw_status st = tw_mfile_open(&c->mf, path);
    if (st) {
        ckpt_close(c);
        return st;
    }
    return open_common(c, c->mf.data, c->mf.size, out);
}

const ckpt_meta *ckpt_get_meta(const ckpt *c) { return &c->meta; }
const tw_json *ckpt_header(const ckpt *c) { return c->doc; }
size_t ckpt_n_blobs(const ckpt *c) { return c->n_blobs; }
const ckpt_blob *ckpt_blob_at(const ckpt *c, size_t i) {
    TW_ASSERT(i < c->n_blobs);
    return &c->blobs[i];
}
const ckpt_blob *ckpt_find_blob(const ckpt *c, const char *name) {
    for (size_t i = 0; i < c->n_blobs; i++)
        if (!strcmp(c->blobs[i].name, name)) return &c->blobs[i];
    return NULL;
}

/* ---- a run's folder ------------------------------------------------------------------------- */

/* 1 and the step when name is "ckpt-<digits>.twck". */
static int ckpt_name_step(const char *name, int64_t *step) {
    size_t n = strlen(name);
    if (n < 11 || strncmp(name, "ckpt-", 5) || strcmp(name + n - 5, ".twck")) return 0;
    int64_t v = 0;
    for (size_t i = 5; i < n - 5; i++) {
        if (name[i] < '0' || name[i] > '9' || v > INT64_MAX / 10 - 9) return 0;
        v = v * 10 + (name[i] - '0');
    }
    *step = v;
    return 1;
}

/* Steps of the checkpoints in dir, ascending (tw_free). */
static tw_status list_steps(const char *dir, int64_t **steps, size_t *n) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return tw_error(TW_ERR_NOT_FOUND, "%s: no checkpoint folder", dir);
    size_t cap = 0;
    struct dirent *e;
    tw_status st = TW_OK;
    while ((e = readdir(d))) {
        int64_t s;
        if (!ckpt_name_step(e->d_name, &s)) continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            int64_t *ns = tw_realloc(*steps, nc * sizeof *ns);
            if (!ns) {
                st = tw_error(TW_ERR_NOMEM, "%s: out of memory", dir);
                break;
            }
            *steps = ns, cap = nc;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    /* insertion sort: a run keeps a handful */
    for (size_t i = 1; i < *n; i++)
        for (size_t k = i; k > 0 && (*steps)[k - 1] > (*steps)[k]; k--) {
            int64_t t = (*steps)[k];
            (*steps)[k] = (*steps)[k - 1];
            (*steps)[k - 1] = t;
        }
    return st;
}

static char *step_path(const char *dir, int64_t step) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/ckpt-%010lld.twck", dir, (long long)step);
    if (sb.failed) {
        tw_sb_free(&sb);
        tw_error(TW_ERR_NOMEM, "%s: out of memory", dir);
        return NULL;
    }
    return tw_sb_take(&sb);
}

tw_status ckpt_latest(const char *dir, char **path_out) {
    *path_out = NULL;
    int64_t *steps;
    size_t n;
    tw_status st = list_steps(dir, &steps, &n);
    if (!st && n == 0) st = tw_error(TW_ERR_NOT_FOUND, "%s: no checkpoint", dir);
    if (!st && !(*path_out = step_path(dir, steps[n - 1]))) st = TW_ERR_NOMEM;
    tw_free(steps);
    return st;
}

tw_status ckpt_prune(const char *dir, int keep) {
    if (keep < 1) return tw_error(TW_ERR_ARG, "ckpt_prune: keep %d must be >= 1", keep);
    int64_t *steps;
    size_t n;
    tw_status st = list_steps(dir, &steps, &n);
    for (size_t i = 0; !st && i + (size_t)keep < n; i++) {
        char *p = step_path(dir, steps[i]);
        if (!p) {
            st = TW_ERR_NOMEM;
            break;
        }
        if (unlink(p)) st = tw_error(TW_ERR_IO, "%s: cannot remove", p);
        tw_free(p);
    }
    tw_free(steps);
    return st;
}

/* ---- the three regions of a trainer (parameters and AdamW moments) -------------------------- */

/* The start of saving nf floats per region: dir created, *host (3 * nf floats: param, adam_m,
 * adam_v) and *path (the step's file) allocated; the caller tw_frees both, also on failure. */
static tw_status save_begin(const char *dir, const ckpt_meta *meta, size_t nf, float **host,
                            char **path) {
    *host = NULL;
    *path = NULL;
    tw_status st = tw_mkdir_p(dir);
    if (st) return st;
    *host = tw_malloc((nf ? nf : 1) * 3 * sizeof(float));
    *path = step_path(dir, meta->step);
    if (!*host || !*path)
        return tw_error(TW_ERR_NOMEM, "%s: out of memory saving a checkpoint", dir);
    return TW_OK;
}

/* The end of a save: host (3 * nf) written to *path as the blobs names[0..2] under the header
 * members extra, then the steps older than the last keep pruned (keep > 0); on success *path
 * moves to *path_out (when not NULL). */
static tw_status save_finish(const char *dir, char **path, const ckpt_meta *meta,
                             const tw_sb *extra, const char *const names[3], const float *host,
                             size_t nf, int keep, char **path_out) {
    if (extra->failed) return tw_error(TW_ERR_NOMEM, "%s: out of memory", dir);
    ckpt_blob blobs[3];
    for (int i = 0; i < 3; i++)
        blobs[i] = (ckpt_blob){names[i], host + (size_t)i * nf, nf * sizeof(float)};
    tw_status st = ckpt_write(*path, meta, tw_sb_str(extra), blobs, 3);
    if (!st && keep > 0) st = ckpt_prune(dir, keep);
    if (!st && path_out) {
        *path_out = *path;
        *path = NULL;
    }
    return st;
}

/* The blob called name, which must hold nb bytes, copied into host (nb; the mapping may be
 * unaligned for floats in memory mode). TW_ERR_FORMAT naming the blob when it is missing or
 * of another size. */
static tw_status blob_read(const ckpt *c, const char *name, size_t nb, float *host) {
    const ckpt_blob *b = ckpt_find_blob(c, name);
    if (!b || b->nbytes != nb)
        return tw_error(TW_ERR_FORMAT, "%s: blob '%s' %s (expected %zu bytes)", c->name, name,
                        b ? "has the wrong size" : "missing", nb);
    memcpy(host, b->data, nb);
    return TW_OK;
}

/* ---- LoRA ------------------------------------------------------------------------------------ */

static const char *const lora_blobs[3] = {"lora.param", "lora.adam_m", "lora.adam_v"};

tw_status ckpt_save_lora(const char *dir, const ckpt_meta *meta, const lora_set *s, int keep,
                         char **path_out) {
    if (path_out) *path_out = NULL;
    size_t nf = lora_set_n_floats(s);
    float *host;
    char *path;
    tw_sb extra;
    tw_sb_init(&extra);
    tw_status st = save_begin(dir, meta, nf, &host, &path);
    if (st) goto done;
    static const lora_region regs[3] = {LORA_PARAM, LORA_ADAM_M, LORA_ADAM_V};
    for (int i = 0; !st && i < 3; i++) st = lora_set_download(s, regs[i], host + (size_t)i * nf);
    if (st) goto done;
    const lora_base *b = lora_set_base(s);
    tw_sb_puts(&extra, "{\"lora\":");
    if ((st = lora_config_to_json(lora_set_config(s), &extra))) goto done;
    tw_sb_printf(&extra,
                 ",\"lora_base\":{\"arch\":\"%s\",\"n_layer\":%d,\"n_embd\":%d,\"n_head\":%d,"
                 "\"n_kv_head\":%d,\"head_dim\":%d,\"n_ff\":%d,\"qk_permuted\":%d},"
                 "\"lora_n_floats\":%zu}",
                 b->arch, (int)b->n_layer, (int)b->n_embd, (int)b->n_head, (int)b->n_kv_head,
                 (int)b->head_dim, (int)b->n_ff, b->qk_permuted, nf);
    ckpt_meta m = *meta;
    if (!m.base_sha256[0]) memcpy(m.base_sha256, b->sha256, sizeof m.base_sha256);
    st = save_finish(dir, &path, &m, &extra, lora_blobs, host, nf, keep, path_out);
done:
    tw_sb_free(&extra);
    tw_free(host);
    tw_free(path);
    return st;
}

tw_status ckpt_restore_lora(const ckpt *c, tw_backend *be, const lora_base *base, lora_set **out) {
    *out = NULL;
    const char *nm = c->name;
    lora_config cfg;
    const tw_json *lj = tw_json_get(c->doc, "lora");
    if (!lj) return tw_error(TW_ERR_FORMAT, "%s: not a LoRA checkpoint (no 'lora' header)", nm);
    tw_status st = lora_config_from_json(lj, nm, &cfg);
    if (st) return st;
    const tw_json *bj = tw_json_get(c->doc, "lora_base");
    const char *arch = tw_json_get_str(bj, "arch", "");
    static const char *const dims[] = {"n_layer", "n_embd", "n_head", "n_kv_head", "head_dim",
                                       "n_ff", "qk_permuted"};
    const int32_t have[] = {base->n_layer, base->n_embd, base->n_head, base->n_kv_head,
                            base->head_dim, base->n_ff, base->qk_permuted};
    if (strcmp(arch, base->arch))
        return tw_error(TW_ERR_RUNTIME, "%s: checkpoint of a '%s' model, the base is '%s'", nm,
                        arch, base->arch);
    for (int i = 0; i < 7; i++) {
        double v = tw_json_get_num(bj, dims[i], -1);
        if (v != have[i])
            return tw_error(TW_ERR_RUNTIME, "%s: checkpoint has %s %g, the base model %d", nm,
                            dims[i], v, (int)have[i]);
    }
    if (c->meta.base_sha256[0] && base->sha256[0] && strcmp(c->meta.base_sha256, base->sha256))
        return tw_error(TW_ERR_RUNTIME,
                        "%s: checkpoint of base model sha256 %.16s..., this base is %.16s...", nm,
                        c->meta.base_sha256, base->sha256);
    lora_set *s;
    if ((st = lora_set_new(be, base, &cfg, &s))) return st;
    size_t nb = lora_set_n_floats(s) * sizeof(float);
    static const lora_region regs[3] = {LORA_PARAM, LORA_ADAM_M, LORA_ADAM_V};
    float *host = tw_malloc(nb ? nb : 1);
    if (!host) st = tw_error(TW_ERR_NOMEM, "%s: out of memory", nm);
    for (int i = 0; !st && i < 3; i++)
        if (!(st = blob_read(c, lora_blobs[i], nb, host))) st = lora_set_upload(s, regs[i], host);
    if (!st) st = lora_set_zero(s, LORA_GRAD);
    tw_free(host);
    if (st) {
        lora_set_free(s);
        return st;
    }
    *out = s;
    return TW_OK;
}

/* ---- full fine-tuning ---------------------------------------------------------------------- */

static const char *const full_blobs[3] = {"full.param", "full.adam_m", "full.adam_v"};
static const fullft_region full_regs[3] = {FULLFT_PARAM, FULLFT_ADAM_M, FULLFT_ADAM_V};

tw_status ckpt_save_full(const char *dir, const ckpt_meta *meta, const fullft_set *f, int keep,
                         char **path_out) {
    if (path_out) *path_out = NULL;
    size_t nf = fullft_n_floats(f);
    float *host;
    char *path;
    tw_sb extra;
    tw_sb_init(&extra);
    tw_status st = save_begin(dir, meta, nf, &host, &path);
    if (st) goto done;
    for (int i = 0; !st && i < 3; i++) st = fullft_download(f, full_regs[i], host + (size_t)i * nf);
    if (st) goto done;
    tw_sb_printf(&extra, "{\"full\":{\"n_floats\":%zu,\"tied\":%d,\"tensors\":[", nf, fullft_tied(f));
    for (int32_t i = 0; i < fullft_n_tensors(f); i++) {
        const fullft_tensor *t = fullft_tensor_at(f, i);
        tw_sb_printf(&extra, "%s[\"%s\",%lld,%lld,%zu]", i ? "," : "", t->name, (long long)t->ne0,
                     (long long)t->ne1, t->off);
    }
    tw_sb_puts(&extra, "]}}");
    st = save_finish(dir, &path, meta, &extra, full_blobs, host, nf, keep, path_out);
done:
    tw_sb_free(&extra);
    tw_free(host);
    tw_free(path);
    return st;
}

tw_status ckpt_restore_full(const ckpt *c, fullft_set *f) {
    const char *nm = c->name;
    const tw_json *fj = tw_json_get(c->doc, "full");
    if (!fj) return tw_error(TW_ERR_FORMAT, "%s: not a full fine-tuning checkpoint (no 'full' header)", nm);
    size_t nf = fullft_n_floats(f);
    if (tw_json_get_num(fj, "n_floats", -1) != (double)nf ||
        tw_json_get_num(fj, "tied", -1) != (double)fullft_tied(f))
        return tw_error(TW_ERR_RUNTIME, "%s: made for another model (%g floats, tied %g; this model "
                        "%zu, %d)", nm, tw_json_get_num(fj, "n_floats", -1),
                        tw_json_get_num(fj, "tied", -1), nf, fullft_tied(f));
    const tw_json *e = tw_json_first(tw_json_get(fj, "tensors"));
    for (int32_t i = 0; i < fullft_n_tensors(f); i++, e = tw_json_next(e)) {
        const fullft_tensor *t = fullft_tensor_at(f, i);
        const tw_json *v0 = tw_json_first(e), *v1 = tw_json_next(v0), *v2 = tw_json_next(v1),
                      *v3 = tw_json_next(v2);
        const char *name = v0 && tw_json_str(v0) ? tw_json_str(v0) : "";
        if (!e || strcmp(name, t->name) || tw_json_num(v1, -1) != (double)t->ne0 ||
            tw_json_num(v2, -1) != (double)t->ne1 || tw_json_num(v3, -1) != (double)t->off)
            return tw_error(TW_ERR_RUNTIME, "%s: tensor %d is %s in the checkpoint, %s (%lld x %lld) "
                            "in this model", nm, (int)i, e ? name : "missing", t->name,
                            (long long)t->ne1, (long long)t->ne0);
    }
    if (e) return tw_error(TW_ERR_RUNTIME, "%s: holds more tensors than this model trains", nm);
    size_t nb = nf * sizeof(float);
    float *host = tw_malloc(nb ? nb : 1);
    tw_status st = host ? TW_OK : tw_error(TW_ERR_NOMEM, "%s: out of memory", nm);
    for (int i = 0; !st && i < 3; i++)
        if (!(st = blob_read(c, full_blobs[i], nb, host))) st = fullft_upload(f, full_regs[i], host);
    if (!st) st = fullft_zero(f, FULLFT_GRAD);
    tw_free(host);
    return st;
}
