/* gguf.c: the GGUF reader and writer (gguf.h).
 *
 * File layout (little-endian, versions 2 and 3 are the same on disk):
 *   u32 magic "GGUF", u32 version, u64 n_tensors, u64 n_kv,
 *   n_kv x { str key, u32 type, value },
 *   n_tensors x { str name, u32 n_dims, i64 ne[n_dims], u32 ggml_type, u64 offset },
 *   padding to `general.alignment` (default 32), tensor data (each tensor at its offset from
 *   the start of the data section, offsets aligned).
 *   str = u64 length + bytes (no NUL); array value = u32 elem_type, u64 count, elements.
 *
 * The reader decodes into one arena per file; string and scalar-array contents stay in the
 * mapping. A count read from the file is first checked against what the remaining bytes can
 * hold (each counted thing has a minimum encoded size), and memory then grows only with the
 * entries actually parsed (or, for string arrays, after they have been walked), so a lying
 * count costs nothing and the memory used stays within a small multiple of the file's size.
 */
#include "gguf.h"

#include <string.h>

#define GGUF_MAX_DEPTH 16      /* nesting of arrays of arrays */
#define GGUF_KV_MIN_BYTES 13   /* key length + type + a one-byte value */
#define GGUF_TINFO_MIN_BYTES 24 /* name length + n_dims + type + offset */
#define GGUF_MSG_NAME_MAX 80   /* longest key / tensor name quoted in a message */

struct gguf_file {
    tw_mfile mf; /* gguf_open only */
    const uint8_t *data;
    size_t size;
    char *name; /* for messages: the path, or the name given to gguf_open_memory */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    uint64_t n_kv;
    gguf_kv *kv;          /* tw_realloc'd, grows as entries are parsed */
    uint64_t n_tensors;
    gguf_tensor *tensors; /* likewise */
    uint64_t *kv_hash; /* open addressing: index + 1, 0 = empty; kv_hash_cap a power of 2 */
    uint64_t kv_hash_cap;
    uint64_t *t_hash;
    uint64_t t_hash_cap;
    tw_arena *arena;
};

/* ---- small helpers ------------------------------------------------------------------------- */

static uint64_t ld_u64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint32_t ld_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint16_t ld_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static float ld_f32(const uint8_t *p) {
    uint32_t u = ld_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static double ld_f64(const uint8_t *p) {
    uint64_t u = ld_u64(p);
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static uint64_t hash_bytes(const char *s, uint64_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (uint64_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return h;
}

static int str_eq_n(gguf_str s, const char *c, size_t n) {
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

int gguf_str_eq(gguf_str s, const char *c) { return str_eq_n(s, c, strlen(c)); }

/* Size of one scalar of type t in the file; 0 for STRING, ARRAY and unknown types. */
static size_t scalar_size(gguf_type t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_type_name(gguf_type t) {
    static const char *const names[GGUF_TYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
        "bool", "string", "array", "uint64", "int64", "float64"};
    return (unsigned)t < GGUF_TYPE_COUNT ? names[t] : "unknown";
}

/* Copies a key or tensor name into buf for a one-line message: non-printable bytes become
 * '?', long names are cut with "...". */
static const char *msg_name(char *buf, size_t cap, const char *s, uint64_t n) {
    size_t o = 0;
    for (uint64_t i = 0; i < n && o + 4 < cap; i++) {
        if (o >= GGUF_MSG_NAME_MAX) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char c = (unsigned char)s[i];
        buf[o++] = (c >= 0x20 && c < 0x7f && c != '\'') ? (char)c : '?';
    }
    buf[o] = 0;
    return buf;
}

/* ---- the parser ---------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p;
    size_t size;
    size_t pos;
    const char *file; /* for messages */
    char ctx[192];    /* what is being read: "metadata 5 'general.name'" */
    tw_arena *arena;
} gguf_rd;

static size_t rd_left(const gguf_rd *r) { return r->size - r->pos; }

/* n more bytes must be in the file for `what`. */
static tw_status rd_need(gguf_rd *r, uint64_t n, const char *what) {
    if (n > rd_left(r))
        return tw_error(TW_ERR_FORMAT,
                        "%s: %s: %s at offset %zu needs %llu bytes, beyond end of file (%zu bytes)",
                        r->file, r->ctx, what, r->pos, (unsigned long long)n, r->size);
    return TW_OK;
}

static tw_status rd_u32(gguf_rd *r, uint32_t *v, const char *what) {
    tw_status s = rd_need(r, 4, what);
    if (s) return s;
    *v = ld_u32(r->p + r->pos);
    r->pos += 4;
    return TW_OK;
}

static tw_status rd_u64(gguf_rd *r, uint64_t *v, const char *what) {
    tw_status s = rd_need(r, 8, what);
    if (s) return s;
    *v = ld_u64(r->p + r->pos);
    r->pos += 8;
    return TW_OK;
}

static tw_status rd_str(gguf_rd *r, gguf_str *out, const char *what) {
    uint64_t len;
    tw_status s = rd_u64(r, &len, what);
    if (s) return s;
    if (len > rd_left(r))
        return tw_error(TW_ERR_FORMAT,
                        "%s: %s: %s length %llu at offset %zu beyond end of file (%zu bytes)",
                        r->file, r->ctx, what, (unsigned long long)len, r->pos - 8, r->size);
    out->ptr = (const char *)(r->p + r->pos);
    out->len = len;
    r->pos += (size_t)len;
    return TW_OK;
}

/* Room for element `need` (0-based) in a tw_realloc'd array of capacity *cap, doubling. The
 * caller has bounded `need` by the file size, so the sizes cannot overflow. */
static tw_status rd_grow(gguf_rd *r, void **arr, uint64_t *cap, uint64_t need, size_t elem) {
    if (need < *cap) return TW_OK;
    uint64_t nc = *cap ? 2 * *cap : 16;
    while (nc <= need) nc *= 2;
    void *p = tw_realloc(*arr, (size_t)(nc * elem));
    if (!p) return tw_error(TW_ERR_NOMEM, "%s: %s: out of memory", r->file, r->ctx);
    *arr = p;
    *cap = nc;
    return TW_OK;
}

static void *rd_alloc(gguf_rd *r, uint64_t count, size_t elem) {
    /* callers bound count by the bytes left in the file, so this cannot overflow on 64-bit */
    void *p = tw_arena_alloc(r->arena, (size_t)count * elem, 8);
    if (!p) tw_error(TW_ERR_NOMEM, "%s: %s: out of memory", r->file, r->ctx);
    return p;
}

static tw_status rd_value(gguf_rd *r, gguf_type type, gguf_value *out, int depth);

static tw_status rd_array(gguf_rd *r, gguf_value *out, int depth) {
    uint32_t et;
    uint64_t count;
    tw_status s = rd_u32(r, &et, "array element type");
    if (s) return s;
    if (et >= GGUF_TYPE_COUNT)
        return tw_error(TW_ERR_FORMAT, "%s: %s: unknown array element type %u at offset %zu",
                        r->file, r->ctx, et, r->pos - 4);
    s = rd_u64(r, &count, "array count");
    if (s) return s;
    out->v.arr.elem_type = (gguf_type)et;
    out->v.arr.count = count;
    out->v.arr.data = r->p + r->pos;
    size_t es = scalar_size((gguf_type)et);
    /* the smallest encoding of one element bounds the count before anything is allocated */
    size_t min_elem = es ? es : et == GGUF_TYPE_STRING ? 8 : 12;
    if (count > rd_left(r) / min_elem)
        return tw_error(TW_ERR_FORMAT,
                        "%s: %s: array of %llu %s elements at offset %zu does not fit in the "
                        "file (%zu bytes left)",
                        r->file, r->ctx, (unsigned long long)count, gguf_type_name((gguf_type)et),
                        r->pos - 12, rd_left(r));
    if (es) {
        if (et == GGUF_TYPE_BOOL) {
            for (uint64_t i = 0; i < count; i++)
                if (r->p[r->pos + i] > 1)
                    return tw_error(TW_ERR_FORMAT, "%s: %s: bool element %llu is %u, not 0 or 1",
                                    r->file, r->ctx, (unsigned long long)i, r->p[r->pos + i]);
        }
        r->pos += (size_t)(count * es);
        return TW_OK;
    }
    if (count == 0) return TW_OK;
    if (et == GGUF_TYPE_STRING) {
        /* Walk the strings first (the hot loop of a vocabulary: a message is only formatted on
         * failure), then allocate the offsets for the count now known to be real. */
        size_t start = r->pos;
        for (uint64_t i = 0; i < count; i++) {
            uint64_t len = rd_left(r) >= 8 ? ld_u64(r->p + r->pos) : 0;
            if (rd_left(r) < 8 || len > rd_left(r) - 8) {
                char what[48];
                gguf_str tmp;
                snprintf(what, sizeof what, "string element %llu", (unsigned long long)i);
                return rd_str(r, &tmp, what);
            }
            r->pos += 8 + (size_t)len;
        }
        uint64_t *offs = rd_alloc(r, count, sizeof *offs);
        if (!offs) return TW_ERR_NOMEM;
        size_t pos = start;
        for (uint64_t i = 0; i < count; i++) {
            offs[i] = pos - start;
            pos += 8 + (size_t)ld_u64(r->p + pos);
        }
        out->v.arr.offsets = offs;
        return TW_OK;
    }
    /* ARRAY of ARRAY: elements are decoded into growing scratch arrays, then moved into the
     * arena at their real count. */
    if (depth >= GGUF_MAX_DEPTH)
        return tw_error(TW_ERR_FORMAT, "%s: %s: arrays nested deeper than %d at offset %zu",
                        r->file, r->ctx, GGUF_MAX_DEPTH, r->pos);
    gguf_value *tmp = NULL;
    uint64_t *toff = NULL, cap_v = 0, cap_o = 0;
    for (uint64_t i = 0; i < count && s == TW_OK; i++) {
        if ((s = rd_grow(r, (void **)&tmp, &cap_v, i, sizeof *tmp)) ||
            (s = rd_grow(r, (void **)&toff, &cap_o, i, sizeof *toff)))
            break;
        toff[i] = (uint64_t)(r->p + r->pos - out->v.arr.data);
        s = rd_value(r, GGUF_TYPE_ARRAY, &tmp[i], depth + 1);
    }
    gguf_value *nested = s ? NULL : rd_alloc(r, count, sizeof *nested);
    uint64_t *offs = nested ? rd_alloc(r, count, sizeof *offs) : NULL;
    if (offs) {
        memcpy(nested, tmp, (size_t)count * sizeof *nested);
        memcpy(offs, toff, (size_t)count * sizeof *offs);
        out->v.arr.nested = nested;
        out->v.arr.offsets = offs;
    } else if (!s) {
        s = TW_ERR_NOMEM;
    }
    tw_free(tmp);
    tw_free(toff);
    return s;
}

static tw_status rd_value(gguf_rd *r, gguf_type type, gguf_value *out, int depth) {
    memset(out, 0, sizeof *out);
    out->type = type;
    size_t es = scalar_size(type);
    if (es) {
        tw_status s = rd_need(r, es, gguf_type_name(type));
        if (s) return s;
        const uint8_t *p = r->p + r->pos;
        switch (type) {
        case GGUF_TYPE_UINT8: out->v.u64 = p[0]; break;
        case GGUF_TYPE_INT8: out->v.i64 = (int8_t)p[0]; break;
        case GGUF_TYPE_UINT16: out->v.u64 = ld_u16(p); break;
        case GGUF_TYPE_INT16: out->v.i64 = (int16_t)ld_u16(p); break;
        case GGUF_TYPE_UINT32: out->v.u64 = ld_u32(p); break;
        case GGUF_TYPE_INT32: out->v.i64 = (int32_t)ld_u32(p); break;
        case GGUF_TYPE_UINT64: out->v.u64 = ld_u64(p); break;
        case GGUF_TYPE_INT64: out->v.i64 = (int64_t)ld_u64(p); break;
        case GGUF_TYPE_FLOAT32: out->v.f64 = ld_f32(p); break;
        case GGUF_TYPE_FLOAT64: out->v.f64 = ld_f64(p); break;
        case GGUF_TYPE_BOOL:
            if (p[0] > 1)
                return tw_error(TW_ERR_FORMAT, "%s: %s: bool value %u at offset %zu, not 0 or 1",
                                r->file, r->ctx, p[0], r->pos);
            out->v.u64 = p[0];
            break;
        default: break;
        }
        r->pos += es;
        return TW_OK;
    }
    if (type == GGUF_TYPE_STRING) return rd_str(r, &out->v.str, "string");
    if (type == GGUF_TYPE_ARRAY) return rd_array(r, out, depth);
    return tw_error(TW_ERR_FORMAT, "%s: %s: unknown value type %u", r->file, r->ctx,
                    (unsigned)type);
}

/* Inserts index i (named s) into a hash table; returns 1 when the name is already there. */
static int hash_insert(uint64_t *tab, uint64_t cap, gguf_str s, uint64_t i,
                       gguf_str (*name_of)(const gguf_file *, uint64_t), const gguf_file *f) {
    uint64_t h = hash_bytes(s.ptr, s.len) & (cap - 1);
    while (tab[h]) {
        gguf_str o = name_of(f, tab[h] - 1);
        if (o.len == s.len && (s.len == 0 || memcmp(o.ptr, s.ptr, s.len) == 0)) return 1;
        h = (h + 1) & (cap - 1);
    }
    tab[h] = i + 1;
    return 0;
}

static gguf_str kv_name(const gguf_file *f, uint64_t i) { return f->kv[i].key; }
static gguf_str tensor_name(const gguf_file *f, uint64_t i) { return f->tensors[i].name; }

static uint64_t hash_cap_for(uint64_t n) {
    uint64_t cap = 8;
    while (cap < 2 * n) cap <<= 1;
    return cap;
}

static uint64_t hash_find(const uint64_t *tab, uint64_t cap, const char *s, size_t n,
                          gguf_str (*name_of)(const gguf_file *, uint64_t), const gguf_file *f) {
    if (!tab) return 0;
    uint64_t h = hash_bytes(s, n) & (cap - 1);
    while (tab[h]) {
        if (str_eq_n(name_of(f, tab[h] - 1), s, n)) return tab[h];
        h = (h + 1) & (cap - 1);
    }
    return 0;
}

static tw_status parse_kv(gguf_file *f, gguf_rd *r) {
    char nb[GGUF_MSG_NAME_MAX + 8];
    uint64_t cap = 0;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        snprintf(r->ctx, sizeof r->ctx, "metadata %llu", (unsigned long long)i);
        tw_status s = rd_grow(r, (void **)&f->kv, &cap, i, sizeof *f->kv);
        if (s) return s;
        gguf_kv *kv = &f->kv[i];
        memset(kv, 0, sizeof *kv);
        s = rd_str(r, &kv->key, "key");
        if (s) return s;
        snprintf(r->ctx, sizeof r->ctx, "metadata %llu '%s'", (unsigned long long)i,
                 msg_name(nb, sizeof nb, kv->key.ptr, kv->key.len));
        uint32_t type;
        s = rd_u32(r, &type, "value type");
        if (s) return s;
        if (type >= GGUF_TYPE_COUNT)
            return tw_error(TW_ERR_FORMAT, "%s: %s: unknown value type %u at offset %zu", r->file,
                            r->ctx, type, r->pos - 4);
        s = rd_value(r, (gguf_type)type, &kv->value, 0);
        if (s) return s;
        if (gguf_str_eq(kv->key, "general.alignment")) {
            const gguf_value *v = &kv->value;
            int is_uint = v->type == GGUF_TYPE_UINT8 || v->type == GGUF_TYPE_UINT16 ||
                          v->type == GGUF_TYPE_UINT32 || v->type == GGUF_TYPE_UINT64;
            int is_int = v->type == GGUF_TYPE_INT8 || v->type == GGUF_TYPE_INT16 ||
                         v->type == GGUF_TYPE_INT32 || v->type == GGUF_TYPE_INT64;
            uint64_t a = is_uint ? v->v.u64 : is_int && v->v.i64 > 0 ? (uint64_t)v->v.i64 : 0;
            if (a == 0 || a > UINT32_MAX || (a & (a - 1)) != 0)
                return tw_error(TW_ERR_FORMAT,
                                "%s: %s: alignment must be a power of two integer, not %s%s",
                                r->file, r->ctx, (is_uint || is_int) ? "" : "a ",
                                (is_uint || is_int) ? "that value" : gguf_type_name(v->type));
            f->alignment = (uint32_t)a;
        }
    }
    if (f->n_kv == 0) return TW_OK;
    f->kv_hash_cap = hash_cap_for(f->n_kv);
    f->kv_hash = rd_alloc(r, f->kv_hash_cap, sizeof *f->kv_hash);
    if (!f->kv_hash) return TW_ERR_NOMEM;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        if (hash_insert(f->kv_hash, f->kv_hash_cap, kv->key, i, kv_name, f))
            return tw_error(TW_ERR_FORMAT, "%s: metadata %llu '%s': duplicate key", r->file,
                            (unsigned long long)i,
                            msg_name(nb, sizeof nb, kv->key.ptr, kv->key.len));
    }
    return TW_OK;
}

static tw_status parse_tensor_infos(gguf_file *f, gguf_rd *r) {
    char nb[GGUF_MSG_NAME_MAX + 8];
    uint64_t cap = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        snprintf(r->ctx, sizeof r->ctx, "tensor %llu", (unsigned long long)i);
        tw_status s = rd_grow(r, (void **)&f->tensors, &cap, i, sizeof *f->tensors);
        if (s) return s;
        gguf_tensor *t = &f->tensors[i];
        memset(t, 0, sizeof *t);
        s = rd_str(r, &t->name, "name");
        if (s) return s;
        snprintf(r->ctx, sizeof r->ctx, "tensor %llu '%s'", (unsigned long long)i,
                 msg_name(nb, sizeof nb, t->name.ptr, t->name.len));
        uint32_t nd, type;
        if ((s = rd_u32(r, &nd, "n_dims"))) return s;
        if (nd > GGUF_MAX_DIMS)
            return tw_error(TW_ERR_FORMAT, "%s: %s: n_dims %u is more than %d", r->file, r->ctx,
                            nd, GGUF_MAX_DIMS);
        t->n_dims = nd;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t v;
            if ((s = rd_u64(r, &v, "dimension"))) return s;
            if (v > (uint64_t)INT64_MAX)
                return tw_error(TW_ERR_FORMAT, "%s: %s: dimension %u is negative (%lld)", r->file,
                                r->ctx, d, (long long)v);
            t->ne[d] = (int64_t)v;
        }
        if ((s = rd_u32(r, &type, "type"))) return s;
        if (type >= TW_DTYPE_COUNT || !tw_dtype_name((tw_dtype)type))
            return tw_error(TW_ERR_FORMAT, "%s: %s: unknown tensor type id %u", r->file, r->ctx,
                            type);
        t->type = (tw_dtype)type;
        if ((s = rd_u64(r, &t->offset, "data offset"))) return s;
    }
    if (f->n_tensors == 0) return TW_OK;
    f->t_hash_cap = hash_cap_for(f->n_tensors);
    f->t_hash = rd_alloc(r, f->t_hash_cap, sizeof *f->t_hash);
    if (!f->t_hash) return TW_ERR_NOMEM;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        if (hash_insert(f->t_hash, f->t_hash_cap, t->name, i, tensor_name, f))
            return tw_error(TW_ERR_FORMAT, "%s: tensor %llu '%s': duplicate tensor name",
                            r->file, (unsigned long long)i,
                            msg_name(nb, sizeof nb, t->name.ptr, t->name.len));
    }
    return TW_OK;
}

/* Sizes and places each tensor's data; needs data_offset. */
static tw_status check_tensor_data(gguf_file *f) {
    char nb[GGUF_MSG_NAME_MAX + 8];
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        const char *nm = msg_name(nb, sizeof nb, t->name.ptr, t->name.len);
        unsigned long long ti = (unsigned long long)i;
        int64_t bs = tw_dtype_block_size(t->type);
        size_t ts = tw_dtype_type_size(t->type);
        /* element count: the product of the dims must fit in int64 */
        int64_t n = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) {
            if (t->ne[d] != 0 && n > INT64_MAX / t->ne[d])
                return tw_error(TW_ERR_FORMAT,
                                "%s: tensor %llu '%s': element count overflows (shape %lld x %lld "
                                "x %lld x %lld)",
                                f->name, ti, nm, (long long)t->ne[0], (long long)t->ne[1],
                                (long long)t->ne[2], (long long)t->ne[3]);
            n *= t->ne[d];
        }
        if (t->ne[0] % bs != 0)
            return tw_error(TW_ERR_FORMAT,
                            "%s: tensor %llu '%s': row of %lld elements is not a multiple of %s's "
                            "block size %lld",
                            f->name, ti, nm, (long long)t->ne[0], tw_dtype_name(t->type),
                            (long long)bs);
        uint64_t row = (uint64_t)(t->ne[0] / bs) * ts; /* ne0/bs <= 2^63, ts < 512: fits */
        uint64_t rows = t->ne[0] ? (uint64_t)(n / t->ne[0]) : 0; /* no elements: no bytes */
        if (rows != 0 && row > UINT64_MAX / rows)
            return tw_error(TW_ERR_FORMAT, "%s: tensor %llu '%s': byte size overflows", f->name,
                            ti, nm);
        t->nbytes = row * rows;
        if (t->offset % f->alignment != 0)
            return tw_error(TW_ERR_FORMAT,
                            "%s: tensor %llu '%s': data offset %llu is not a multiple of the "
                            "alignment %u",
                            f->name, ti, nm, (unsigned long long)t->offset, f->alignment);
        uint64_t room = f->size - f->data_offset;
        if (t->offset > room)
            return tw_error(TW_ERR_FORMAT,
                            "%s: tensor %llu '%s': data offset %llu beyond end of file (%llu "
                            "bytes of tensor data)",
                            f->name, ti, nm, (unsigned long long)t->offset,
                            (unsigned long long)room);
        if (t->nbytes > room - t->offset)
            return tw_error(TW_ERR_FORMAT,
                            "%s: tensor %llu '%s': %llu bytes of data at offset %llu run past "
                            "the end of file (%llu bytes of tensor data)",
                            f->name, ti, nm, (unsigned long long)t->nbytes,
                            (unsigned long long)t->offset, (unsigned long long)room);
        t->data = f->data + f->data_offset + t->offset;
    }
    return TW_OK;
}

static tw_status parse(gguf_file *f) {
    gguf_rd r = {.p = f->data, .size = f->size, .file = f->name, .arena = f->arena};
    snprintf(r.ctx, sizeof r.ctx, "header");
    if (f->size < 8)
        return tw_error(TW_ERR_FORMAT, "%s: header: file of %zu bytes is too short for GGUF",
                        f->name, f->size);
    uint32_t magic = ld_u32(f->data);
    if (magic != GGUF_MAGIC) {
        char m[8];
        msg_name(m, sizeof m, (const char *)f->data, 4);
        return tw_error(TW_ERR_FORMAT, "%s: header: magic '%s' is not GGUF", f->name, m);
    }
    r.pos = 4;
    uint32_t version = ld_u32(f->data + 4);
    r.pos = 8;
    if (version == 1)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "%s: header: GGUF version 1 is not supported (only versions 2 and 3)",
                        f->name);
    if (version != 2 && version != 3) {
        if ((version & 0xFFFFu) == 0 && version != 0)
            return tw_error(TW_ERR_UNSUPPORTED,
                            "%s: header: version field 0x%08x looks byte-swapped (a big-endian "
                            "GGUF), which is not supported",
                            f->name, version);
        return tw_error(TW_ERR_UNSUPPORTED,
                        "%s: header: GGUF version %u is not supported (only versions 2 and 3)",
                        f->name, version);
    }
    f->version = version;
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    tw_status s;
    if ((s = rd_u64(&r, &f->n_tensors, "tensor count"))) return s;
    if ((s = rd_u64(&r, &f->n_kv, "metadata count"))) return s;
    if (f->n_kv > rd_left(&r) / GGUF_KV_MIN_BYTES)
        return tw_error(TW_ERR_FORMAT,
                        "%s: header: metadata count %llu cannot fit in the file (%zu bytes)",
                        f->name, (unsigned long long)f->n_kv, f->size);
    if ((s = parse_kv(f, &r))) return s;
    snprintf(r.ctx, sizeof r.ctx, "header");
    if (f->n_tensors > rd_left(&r) / GGUF_TINFO_MIN_BYTES)
        return tw_error(TW_ERR_FORMAT,
                        "%s: header: tensor count %llu cannot fit in the %zu bytes after the "
                        "metadata",
                        f->name, (unsigned long long)f->n_tensors, rd_left(&r));
    if ((s = parse_tensor_infos(f, &r))) return s;
    uint64_t a = f->alignment;
    f->data_offset = ((uint64_t)r.pos + a - 1) / a * a;
    if (f->data_offset > f->size) {
        /* a file without tensors may end before the padding; with tensors it is truncated */
        if (f->n_tensors)
            return tw_error(TW_ERR_FORMAT,
                            "%s: header: tensor data section at offset %llu beyond end of file "
                            "(%zu bytes)",
                            f->name, (unsigned long long)f->data_offset, f->size);
        f->data_offset = f->size;
    }
    return check_tensor_data(f);
}

static gguf_file *gguf_new(const uint8_t *data, size_t size, const char *name) {
    gguf_file *f = tw_calloc(1, sizeof *f);
    if (!f) return NULL;
    f->data = data;
    f->size = size;
    f->name = tw_strdup(name ? name : "(memory)");
    f->arena = tw_arena_new(0);
    if (!f->name || !f->arena) {
        gguf_close(f);
        tw_error(TW_ERR_NOMEM, "%s: out of memory", name ? name : "(memory)");
        return NULL;
    }
    if (parse(f) != TW_OK) {
        gguf_close(f);
        return NULL;
    }
    return f;
}

gguf_file *gguf_open_memory(const void *data, size_t size, const char *name) {
    return gguf_new(data, size, name);
}

gguf_file *gguf_open(const char *path) {
    tw_mfile mf;
    if (tw_mfile_open(&mf, path) != TW_OK) return NULL;
    gguf_file *f = gguf_new(mf.data, mf.size, path);
    if (!f) {
        tw_mfile_close(&mf);
        return NULL;
    }
    f->mf = mf;
    return f;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    tw_free(f->kv);
    tw_free(f->tensors);
    tw_arena_free(f->arena);
    tw_mfile_close(&f->mf);
    tw_free(f->name);
    tw_free(f);
}

/* ---- accessors ----------------------------------------------------------------------------- */

uint32_t gguf_version(const gguf_file *f) { return f->version; }
uint32_t gguf_alignment(const gguf_file *f) { return f->alignment; }
uint64_t gguf_data_offset(const gguf_file *f) { return f->data_offset; }
size_t gguf_file_size(const gguf_file *f) { return f->size; }
const char *gguf_path(const gguf_file *f) { return f->name; }
uint64_t gguf_n_kv(const gguf_file *f) { return f->n_kv; }
uint64_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i) {
    return i < f->n_kv ? &f->kv[i] : NULL;
}

const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i) {
    return i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_value *gguf_find(const gguf_file *f, const char *key) {
    uint64_t i = hash_find(f->kv_hash, f->kv_hash_cap, key, strlen(key), kv_name, f);
    return i ? &f->kv[i - 1].value : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    uint64_t i = hash_find(f->t_hash, f->t_hash_cap, name, strlen(name), tensor_name, f);
    return i ? &f->tensors[i - 1] : NULL;
}

static int is_unsigned_type(gguf_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 ||
           t == GGUF_TYPE_UINT64;
}

static int is_signed_type(gguf_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 ||
           t == GGUF_TYPE_INT64;
}

static tw_status get_typed(const gguf_file *f, const char *key, const gguf_value **v) {
    *v = gguf_find(f, key);
    if (!*v) return tw_error(TW_ERR_NOT_FOUND, "%s: metadata key '%s' not found", f->name, key);
    return TW_OK;
}

static tw_status type_mismatch(const gguf_file *f, const char *key, const gguf_value *v,
                               const char *want) {
    return tw_error(TW_ERR_FORMAT, "%s: metadata '%s': expected %s, found %s", f->name, key, want,
                    gguf_type_name(v->type));
}

tw_status gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out) {
    const gguf_value *v;
    tw_status s = get_typed(f, key, &v);
    if (s) return s;
    if (is_unsigned_type(v->type)) {
        *out = v->v.u64;
        return TW_OK;
    }
    if (is_signed_type(v->type) && v->v.i64 >= 0) {
        *out = (uint64_t)v->v.i64;
        return TW_OK;
    }
    return type_mismatch(f, key, v, "a non-negative integer");
}

tw_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out) {
    const gguf_value *v;
    tw_status s = get_typed(f, key, &v);
    if (s) return s;
    if (is_signed_type(v->type)) {
        *out = v->v.i64;
        return TW_OK;
    }
    if (is_unsigned_type(v->type) && v->v.u64 <= (uint64_t)INT64_MAX) {
        *out = (int64_t)v->v.u64;
        return TW_OK;
    }
    return type_mismatch(f, key, v, "an integer");
}

tw_status gguf_get_f64(const gguf_file *f, const char *key, double *out) {
    const gguf_value *v;
    tw_status s = get_typed(f, key, &v);
    if (s) return s;
    if (v->type == GGUF_TYPE_FLOAT32 || v->type == GGUF_TYPE_FLOAT64) {
        *out = v->v.f64;
        return TW_OK;
    }
    if (is_unsigned_type(v->type)) {
        *out = (double)v->v.u64;
        return TW_OK;
    }
    if (is_signed_type(v->type)) {
        *out = (double)v->v.i64;
        return TW_OK;
    }
    return type_mismatch(f, key, v, "a number");
}

tw_status gguf_get_bool(const gguf_file *f, const char *key, int *out) {
    const gguf_value *v;
    tw_status s = get_typed(f, key, &v);
    if (s) return s;
    if (v->type != GGUF_TYPE_BOOL) return type_mismatch(f, key, v, "bool");
    *out = v->v.u64 != 0;
    return TW_OK;
}

tw_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out) {
    const gguf_value *v;
    tw_status s = get_typed(f, key, &v);
    if (s) return s;
    if (v->type != GGUF_TYPE_STRING) return type_mismatch(f, key, v, "string");
    *out = v->v.str;
    return TW_OK;
}

char *gguf_get_strdup(const gguf_file *f, const char *key) {
    const gguf_value *v = gguf_find(f, key);
    if (!v || v->type != GGUF_TYPE_STRING) return NULL;
    return tw_strndup(v->v.str.ptr, (size_t)v->v.str.len);
}

gguf_str gguf_arr_str(const gguf_value *arr, uint64_t i) {
    TW_ASSERT(arr->type == GGUF_TYPE_ARRAY && i < arr->v.arr.count);
    gguf_str s = {"", 0};
    if (arr->v.arr.elem_type != GGUF_TYPE_STRING) return s;
    const uint8_t *e = arr->v.arr.data + arr->v.arr.offsets[i];
    s.len = ld_u64(e);
    s.ptr = (const char *)(e + 8);
    return s;
}

int64_t gguf_arr_i64(const gguf_value *arr, uint64_t i) {
    TW_ASSERT(arr->type == GGUF_TYPE_ARRAY && i < arr->v.arr.count);
    const uint8_t *d = arr->v.arr.data;
    switch (arr->v.arr.elem_type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: return d[i];
    case GGUF_TYPE_INT8: return (int8_t)d[i];
    case GGUF_TYPE_UINT16: return ld_u16(d + 2 * i);
    case GGUF_TYPE_INT16: return (int16_t)ld_u16(d + 2 * i);
    case GGUF_TYPE_UINT32: return ld_u32(d + 4 * i);
    case GGUF_TYPE_INT32: return (int32_t)ld_u32(d + 4 * i);
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: return (int64_t)ld_u64(d + 8 * i);
    default: return 0;
    }
}

double gguf_arr_f64(const gguf_value *arr, uint64_t i) {
    TW_ASSERT(arr->type == GGUF_TYPE_ARRAY && i < arr->v.arr.count);
    const uint8_t *d = arr->v.arr.data;
    switch (arr->v.arr.elem_type) {
    case GGUF_TYPE_FLOAT32: return ld_f32(d + 4 * i);
    case GGUF_TYPE_FLOAT64: return ld_f64(d + 8 * i);
    case GGUF_TYPE_UINT64: return (double)ld_u64(d + 8 * i);
    case GGUF_TYPE_STRING: case GGUF_TYPE_ARRAY: return 0.0;
    default: return (double)gguf_arr_i64(arr, i);
    }
}

const gguf_value *gguf_arr_elem(const gguf_value *arr, uint64_t i) {
    TW_ASSERT(arr->type == GGUF_TYPE_ARRAY && i < arr->v.arr.count);
    return arr->v.arr.nested ? &arr->v.arr.nested[i] : NULL;
}

/* ---- writer -------------------------------------------------------------------------------- */

/* Each metadata value is kept encoded exactly as it goes to disk (u32 type + payload), so
 * writing is a concatenation and a copied value keeps its bytes. */
typedef struct {
    char *key;
    tw_sb val;
} gguf_wkv;

typedef struct {
    char *name;
    tw_dtype type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
} gguf_wtensor;

struct gguf_writer {
    uint32_t version;
    uint32_t alignment; /* from general.alignment when set, else 32 */
    gguf_wkv *kv;
    size_t n_kv, cap_kv;
    gguf_wtensor *t;
    size_t n_t, cap_t;
};

#define GGUF_MAX_NAME 63 /* ggml refuses longer tensor names (GGML_MAX_NAME - 1) */

static void sb_u32(tw_sb *sb, uint32_t v) {
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
    tw_sb_append(sb, (const char *)b, 4);
}

static void sb_u64(tw_sb *sb, uint64_t v) {
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    tw_sb_append(sb, (const char *)b, 8);
}

static void sb_gstr(tw_sb *sb, const char *s, uint64_t n) {
    sb_u64(sb, n);
    tw_sb_append(sb, s, (size_t)n);
}

gguf_writer *gguf_writer_new(uint32_t version, uint32_t alignment) {
    if (version == 0) version = 3;
    if (version != 2 && version != 3) {
        tw_error(TW_ERR_ARG, "gguf writer: version %u is not 2 or 3", version);
        return NULL;
    }
    if (alignment != 0 && (alignment & (alignment - 1)) != 0) {
        tw_error(TW_ERR_ARG, "gguf writer: alignment %u is not a power of two", alignment);
        return NULL;
    }
    gguf_writer *w = tw_calloc(1, sizeof *w);
    if (!w) return NULL;
    w->version = version;
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (alignment && alignment != GGUF_DEFAULT_ALIGNMENT &&
        gguf_writer_set_u32(w, "general.alignment", alignment) != TW_OK) {
        gguf_writer_free(w);
        return NULL;
    }
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        tw_free(w->kv[i].key);
        tw_sb_free(&w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) tw_free(w->t[i].name);
    tw_free(w->kv);
    tw_free(w->t);
    tw_free(w);
}

/* Takes ownership of val (freed on failure too). */
static tw_status writer_put(gguf_writer *w, const char *key, tw_sb *val) {
    if (val->failed) {
        tw_sb_free(val);
        return tw_error(TW_ERR_NOMEM, "gguf writer: out of memory for '%s'", key);
    }
    if (!strcmp(key, "general.alignment")) {
        /* the reader takes any integer, but llama.cpp wants a u32 */
        const uint8_t *p = (const uint8_t *)val->buf;
        uint32_t a = val->len == 8 && ld_u32(p) == GGUF_TYPE_UINT32 ? ld_u32(p + 4) : 0;
        if (a == 0 || (a & (a - 1)) != 0) {
            tw_sb_free(val);
            return tw_error(TW_ERR_ARG,
                            "gguf writer: general.alignment must be a uint32 power of two");
        }
        w->alignment = a;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (!strcmp(w->kv[i].key, key)) {
            tw_sb_free(&w->kv[i].val);
            w->kv[i].val = *val;
            return TW_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        gguf_wkv *nk = tw_realloc(w->kv, cap * sizeof *nk);
        if (!nk) {
            tw_sb_free(val);
            return TW_ERR_NOMEM;
        }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = tw_strdup(key);
    if (!k) {
        tw_sb_free(val);
        return TW_ERR_NOMEM;
    }
    w->kv[w->n_kv].key = k;
    w->kv[w->n_kv].val = *val;
    w->n_kv++;
    return TW_OK;
}

static tw_status writer_put_scalar(gguf_writer *w, const char *key, gguf_type t, uint64_t bits,
                                   size_t n) {
    tw_sb sb;
    tw_sb_init(&sb);
    sb_u32(&sb, (uint32_t)t);
    uint8_t b[8];
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(bits >> (8 * i));
    tw_sb_append(&sb, (const char *)b, n);
    return writer_put(w, key, &sb);
}

tw_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    return writer_put_scalar(w, key, GGUF_TYPE_UINT32, v, 4);
}

tw_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) {
    return writer_put_scalar(w, key, GGUF_TYPE_INT32, (uint32_t)v, 4);
}

tw_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v) {
    return writer_put_scalar(w, key, GGUF_TYPE_UINT64, v, 8);
}

tw_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return writer_put_scalar(w, key, GGUF_TYPE_FLOAT32, u, 4);
}

tw_status gguf_writer_set_bool(gguf_writer *w, const char *key, int v) {
    return writer_put_scalar(w, key, GGUF_TYPE_BOOL, v ? 1 : 0, 1);
}

tw_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    tw_sb sb;
    tw_sb_init(&sb);
    sb_u32(&sb, GGUF_TYPE_STRING);
    sb_gstr(&sb, v, strlen(v));
    return writer_put(w, key, &sb);
}

/* Appends the payload of v (not its type) to sb. */
static tw_status encode_value(tw_sb *sb, const gguf_value *v, const char *key, int depth) {
    size_t es = scalar_size(v->type);
    if (es) {
        uint64_t bits = v->v.u64;
        if (v->type == GGUF_TYPE_FLOAT32) {
            float f = (float)v->v.f64;
            uint32_t u;
            memcpy(&u, &f, 4);
            bits = u;
        } else if (v->type == GGUF_TYPE_FLOAT64) {
            memcpy(&bits, &v->v.f64, 8);
        }
        uint8_t b[8];
        for (size_t i = 0; i < es; i++) b[i] = (uint8_t)(bits >> (8 * i));
        tw_sb_append(sb, (const char *)b, es);
        return TW_OK;
    }
    if (v->type == GGUF_TYPE_STRING) {
        if (!v->v.str.ptr && v->v.str.len)
            return tw_error(TW_ERR_ARG, "gguf writer: '%s': string without data", key);
        sb_gstr(sb, v->v.str.ptr, v->v.str.len);
        return TW_OK;
    }
    if (v->type != GGUF_TYPE_ARRAY)
        return tw_error(TW_ERR_ARG, "gguf writer: '%s': unknown value type %d", key, (int)v->type);
    gguf_type et = v->v.arr.elem_type;
    uint64_t n = v->v.arr.count;
    if ((unsigned)et >= GGUF_TYPE_COUNT)
        return tw_error(TW_ERR_ARG, "gguf writer: '%s': unknown array element type %d", key,
                        (int)et);
    if (depth >= GGUF_MAX_DEPTH)
        return tw_error(TW_ERR_ARG, "gguf writer: '%s': arrays nested deeper than %d", key,
                        GGUF_MAX_DEPTH);
    sb_u32(sb, (uint32_t)et);
    sb_u64(sb, n);
    size_t ees = scalar_size(et);
    if (ees) {
        if (n && !v->v.arr.data)
            return tw_error(TW_ERR_ARG, "gguf writer: '%s': array without data", key);
        if (n > SIZE_MAX / ees)
            return tw_error(TW_ERR_ARG, "gguf writer: '%s': array too big", key);
        /* elements are kept as little-endian file bytes (gguf.h) */
        tw_sb_append(sb, (const char *)v->v.arr.data, (size_t)(n * ees));
        return TW_OK;
    }
    if (et == GGUF_TYPE_STRING) {
        if (n && (!v->v.arr.data || !v->v.arr.offsets))
            return tw_error(TW_ERR_ARG, "gguf writer: '%s': string array without data", key);
        for (uint64_t i = 0; i < n && !sb->failed; i++) {
            gguf_str s = gguf_arr_str(v, i);
            sb_gstr(sb, s.ptr, s.len);
        }
        return TW_OK;
    }
    if (n && !v->v.arr.nested)
        return tw_error(TW_ERR_ARG, "gguf writer: '%s': nested array without elements", key);
    for (uint64_t i = 0; i < n && !sb->failed; i++) {
        const gguf_value *e = &v->v.arr.nested[i];
        if (e->type != GGUF_TYPE_ARRAY)
            return tw_error(TW_ERR_ARG, "gguf writer: '%s': element %llu of a nested array is "
                            "not an array", key, (unsigned long long)i);
        tw_status s = encode_value(sb, e, key, depth + 1);
        if (s) return s;
    }
    return TW_OK;
}

tw_status gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v) {
    tw_sb sb;
    tw_sb_init(&sb);
    sb_u32(&sb, (uint32_t)v->type);
    tw_status s = encode_value(&sb, v, key, 0);
    if (s) {
        tw_sb_free(&sb);
        return s;
    }
    return writer_put(w, key, &sb);
}

static void sb_arr_head(tw_sb *sb, gguf_type et, uint64_t n) {
    sb_u32(sb, GGUF_TYPE_ARRAY);
    sb_u32(sb, (uint32_t)et);
    sb_u64(sb, n);
}

tw_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v,
                                  uint64_t n) {
    tw_sb sb;
    tw_sb_init(&sb);
    sb_arr_head(&sb, GGUF_TYPE_STRING, n);
    for (uint64_t i = 0; i < n && !sb.failed; i++) sb_gstr(&sb, v[i], strlen(v[i]));
    return writer_put(w, key, &sb);
}

tw_status gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    tw_sb sb;
    tw_sb_init(&sb);
    sb_arr_head(&sb, GGUF_TYPE_INT32, n);
    for (uint64_t i = 0; i < n && !sb.failed; i++) sb_u32(&sb, (uint32_t)v[i]);
    return writer_put(w, key, &sb);
}

tw_status gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n) {
    tw_sb sb;
    tw_sb_init(&sb);
    sb_arr_head(&sb, GGUF_TYPE_FLOAT32, n);
    for (uint64_t i = 0; i < n && !sb.failed; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        sb_u32(&sb, u);
    }
    return writer_put(w, key, &sb);
}

tw_status gguf_writer_add_tensor(gguf_writer *w, const char *name, tw_dtype type,
                                 uint32_t n_dims, const int64_t *ne, const void *data) {
    size_t len = strlen(name);
    if (len == 0 || len > GGUF_MAX_NAME)
        return tw_error(TW_ERR_ARG, "gguf writer: tensor name '%s' must have 1 to %d bytes", name,
                        GGUF_MAX_NAME);
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS)
        return tw_error(TW_ERR_ARG, "gguf writer: tensor '%s': n_dims %u is not 1..%d", name,
                        n_dims, GGUF_MAX_DIMS);
    int64_t bs = tw_dtype_block_size(type);
    if (bs == 0)
        return tw_error(TW_ERR_ARG, "gguf writer: tensor '%s': unknown type id %d", name,
                        (int)type);
    gguf_wtensor t = {.type = type, .n_dims = n_dims, .data = data, .ne = {1, 1, 1, 1}};
    int64_t n = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0 || (ne[d] != 0 && n > INT64_MAX / ne[d]))
            return tw_error(TW_ERR_ARG, "gguf writer: tensor '%s': bad dimension %u (%lld)",
                            name, d, (long long)ne[d]);
        t.ne[d] = ne[d];
        n *= ne[d];
    }
    size_t row = tw_dtype_row_bytes(type, t.ne[0]);
    if (t.ne[0] % bs != 0)
        return tw_error(TW_ERR_ARG,
                        "gguf writer: tensor '%s': row of %lld is not a multiple of %s's block "
                        "size %lld",
                        name, (long long)t.ne[0], tw_dtype_name(type), (long long)bs);
    uint64_t rows = t.ne[0] ? (uint64_t)(n / t.ne[0]) : 0;
    if (rows && row > UINT64_MAX / rows)
        return tw_error(TW_ERR_ARG, "gguf writer: tensor '%s': byte size overflows", name);
    t.nbytes = row * rows;
    if (t.nbytes && !data)
        return tw_error(TW_ERR_ARG, "gguf writer: tensor '%s': no data", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return tw_error(TW_ERR_ARG, "gguf writer: duplicate tensor name '%s'", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        gguf_wtensor *nt = tw_realloc(w->t, cap * sizeof *nt);
        if (!nt) return TW_ERR_NOMEM;
        w->t = nt;
        w->cap_t = cap;
    }
    t.name = tw_strdup(name);
    if (!t.name) return TW_ERR_NOMEM;
    w->t[w->n_t++] = t;
    return TW_OK;
}

static uint64_t pad_to(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

tw_status gguf_writer_write(gguf_writer *w, const char *path) {
    /* header, metadata and tensor infos are built in memory; tensor data is streamed */
    tw_sb sb;
    tw_sb_init(&sb);
    sb_u32(&sb, GGUF_MAGIC);
    sb_u32(&sb, w->version);
    sb_u64(&sb, w->n_t);
    sb_u64(&sb, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        sb_gstr(&sb, w->kv[i].key, strlen(w->kv[i].key));
        tw_sb_append(&sb, w->kv[i].val.buf, w->kv[i].val.len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const gguf_wtensor *t = &w->t[i];
        sb_gstr(&sb, t->name, strlen(t->name));
        sb_u32(&sb, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) sb_u64(&sb, (uint64_t)t->ne[d]);
        sb_u32(&sb, (uint32_t)t->type);
        sb_u64(&sb, off);
        off = pad_to(off + t->nbytes, w->alignment);
    }
    static const char zeros[256];
    while (!sb.failed && sb.len % w->alignment) {
        size_t k = w->alignment - sb.len % w->alignment;
        tw_sb_append(&sb, zeros, k < sizeof zeros ? k : sizeof zeros);
    }
    if (sb.failed) {
        tw_sb_free(&sb);
        return tw_error(TW_ERR_NOMEM, "%s: out of memory building the GGUF header", path);
    }
    tw_afile af;
    tw_status s = tw_afile_open(&af, path);
    if (s) {
        tw_sb_free(&sb);
        return s;
    }
    s = tw_afile_write(&af, sb.buf, sb.len);
    tw_sb_free(&sb);
    for (size_t i = 0; i < w->n_t && s == TW_OK; i++) {
        const gguf_wtensor *t = &w->t[i];
        s = tw_afile_write(&af, t->data, (size_t)t->nbytes);
        uint64_t pad = pad_to(t->nbytes, w->alignment) - t->nbytes;
        while (s == TW_OK && pad) {
            size_t k = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
            s = tw_afile_write(&af, zeros, k);
            pad -= k;
        }
    }
    if (s) {
        tw_afile_abort(&af);
        return s;
    }
    return tw_afile_commit(&af);
}
