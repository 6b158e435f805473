/* safetensors.c: the safetensors reader and writer (safetensors.h). The JSON header goes
 * through json.h; everything the header claims is checked against the file before use. */
#include "safetensors.h"

#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (the format is little-endian)"
#endif

/* ---- dtypes ------------------------------------------------------------------------------ */

static const struct {
    const char *name;
    size_t size;
    tw_dtype tw;
} st_dtypes[ST_DTYPE_COUNT] = {
    [ST_DTYPE_BOOL] = {"BOOL", 1, TW_DTYPE_COUNT},
    [ST_DTYPE_U8] = {"U8", 1, TW_DTYPE_COUNT},
    [ST_DTYPE_I8] = {"I8", 1, TW_DTYPE_I8},
    [ST_DTYPE_F8_E5M2] = {"F8_E5M2", 1, TW_DTYPE_COUNT},
    [ST_DTYPE_F8_E4M3] = {"F8_E4M3", 1, TW_DTYPE_COUNT},
    [ST_DTYPE_I16] = {"I16", 2, TW_DTYPE_I16},
    [ST_DTYPE_U16] = {"U16", 2, TW_DTYPE_COUNT},
    [ST_DTYPE_F16] = {"F16", 2, TW_DTYPE_F16},
    [ST_DTYPE_BF16] = {"BF16", 2, TW_DTYPE_BF16},
    [ST_DTYPE_I32] = {"I32", 4, TW_DTYPE_I32},
    [ST_DTYPE_U32] = {"U32", 4, TW_DTYPE_COUNT},
    [ST_DTYPE_F32] = {"F32", 4, TW_DTYPE_F32},
    [ST_DTYPE_F64] = {"F64", 8, TW_DTYPE_F64},
    [ST_DTYPE_I64] = {"I64", 8, TW_DTYPE_I64},
    [ST_DTYPE_U64] = {"U64", 8, TW_DTYPE_COUNT},
};

/* dtypes the spec defines that twin refuses (sub-byte or complex element types). */
static const char *const st_dtypes_unsupported[] = {"F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "C64"};

const char *st_dtype_name(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? st_dtypes[t].name : NULL;
}

size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? st_dtypes[t].size : 0; }

int st_dtype_parse(const char *name, st_dtype *out) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        if (strcmp(name, st_dtypes[i].name) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    }
    return -1;
}

tw_dtype st_dtype_to_tw(st_dtype t) {
    return (unsigned)t < ST_DTYPE_COUNT ? st_dtypes[t].tw : TW_DTYPE_COUNT;
}

int st_dtype_from_tw(tw_dtype t, st_dtype *out) {
    if (t == TW_DTYPE_COUNT) return -1;
    for (int i = 0; i < ST_DTYPE_COUNT; i++) {
        if (st_dtypes[i].tw == t) {
            *out = (st_dtype)i;
            return 0;
        }
    }
    return -1;
}

/* ---- reader ------------------------------------------------------------------------------ */

typedef struct {
    const char *key;
    const char *value;
} st_meta;

struct st_file {
    tw_mfile mf;         /* zeroed for st_open_memory */
    const uint8_t *data; /* the whole file */
    size_t size;
    char *path;          /* owned: messages and st_path */
    uint64_t header_size;
    tw_arena *arena;     /* tensors, names, metadata and the lookup tables */
    st_tensor *tensors;  /* n_tensors, by data offset */
    uint64_t n_tensors;
    const st_tensor **by_name; /* n_tensors, sorted by name */
    st_meta *meta;             /* n_meta, file order */
    const st_meta **meta_by_key;
    uint64_t n_meta;
};

/* Copies a name from the file into buf for a one-line message: control bytes become '?', and
 * a name longer than the buffer is cut and ends in "...". */
static const char *st_msgname(const char *s, char *buf, size_t cap) {
    size_t n = 0;
    for (; s[n] && n + 1 < cap; n++) buf[n] = ((unsigned char)s[n] < 0x20 || s[n] == 0x7f) ? '?' : s[n];
    buf[n] = '\0';
    if (s[n] && cap >= 4) memcpy(buf + cap - 4, "...", 4);
    return buf;
}

#define ST_NAMEBUF 96

/* A JSON number that is an integer in [0, 2^53] (exact in a double, and more than any file
 * offset twin can map). Returns 0 and stores it, or -1. */
static int st_json_u53(const tw_json *j, uint64_t *out) {
    if (!tw_json_is_number(j)) return -1;
    double d = tw_json_num(j, -1.0);
    if (!(d >= 0.0) || d > 9007199254740992.0 || d != floor(d)) return -1;
    *out = (uint64_t)d;
    return 0;
}

/* Length of the JSON object that starts at s[0] == '{' (through its closing brace), or 0 when
 * it does not close within n bytes. It only balances braces and brackets outside strings;
 * tw_json_parse then checks the object itself. This is what lets the reader refuse bytes after
 * the object other than padding, which the parser would silently ignore. */
static size_t st_json_object_len(const uint8_t *s, size_t n) {
    size_t depth = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (depth == 0) return 0;
            if (--depth == 0) return i + 1;
        }
    }
    return 0;
}

static int st_cmp_tensor_offset(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes) return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int st_cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

static int st_cmp_meta_key(const void *a, const void *b) {
    return strcmp((*(const st_meta *const *)a)->key, (*(const st_meta *const *)b)->key);
}

/* Parses the "__metadata__" object j into f->meta. */
static tw_status st_parse_metadata(st_file *f, const tw_json *j) {
    const char *path = f->path;
    char nb[ST_NAMEBUF];
    if (!tw_json_is_object(j))
        return tw_error(TW_ERR_FORMAT, "%s: header: __metadata__: not an object", path);
    f->n_meta = tw_json_size(j);
    f->meta = tw_arena_alloc(f->arena, f->n_meta * sizeof *f->meta + 1, 8);
    f->meta_by_key = tw_arena_alloc(f->arena, f->n_meta * sizeof *f->meta_by_key + 1, 8);
    if (!f->meta || !f->meta_by_key) return TW_ERR_NOMEM;
    uint64_t i = 0;
    for (const tw_json *m = tw_json_first(j); m; m = tw_json_next(m), i++) {
        const char *key = tw_json_key(m), *val = tw_json_str(m);
        if (!key) key = "";
        if (!val)
            return tw_error(TW_ERR_FORMAT, "%s: header: __metadata__: key '%s': value is not a string",
                            path, st_msgname(key, nb, sizeof nb));
        f->meta[i].key = tw_arena_strndup(f->arena, key, strlen(key));
        f->meta[i].value = tw_arena_strndup(f->arena, val, strlen(val));
        if (!f->meta[i].key || !f->meta[i].value) return TW_ERR_NOMEM;
        f->meta_by_key[i] = &f->meta[i];
    }
    qsort(f->meta_by_key, f->n_meta, sizeof *f->meta_by_key, st_cmp_meta_key);
    for (i = 1; i < f->n_meta; i++) {
        if (strcmp(f->meta_by_key[i - 1]->key, f->meta_by_key[i]->key) == 0)
            return tw_error(TW_ERR_FORMAT, "%s: header: __metadata__: key '%s' appears twice", path,
                            st_msgname(f->meta_by_key[i]->key, nb, sizeof nb));
    }
    return TW_OK;
}

/* Parses one tensor entry j (named name) into t; data_size is the data section's length. */
static tw_status st_parse_tensor(st_file *f, const char *name, const tw_json *j, uint64_t data_size,
                                 st_tensor *t) {
    const char *path = f->path;
    char nb[ST_NAMEBUF];
    const char *qn = st_msgname(name, nb, sizeof nb);
    if (!tw_json_is_object(j))
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': entry is not an object", path, qn);

    /* The three fields, each exactly once; other fields are ignored (as the reference reader
     * does). */
    const tw_json *jdtype = NULL, *jshape = NULL, *joffs = NULL;
    for (const tw_json *m = tw_json_first(j); m; m = tw_json_next(m)) {
        const char *k = tw_json_key(m);
        const tw_json **slot = NULL;
        if (!k) continue;
        if (strcmp(k, "dtype") == 0) slot = &jdtype;
        else if (strcmp(k, "shape") == 0) slot = &jshape;
        else if (strcmp(k, "data_offsets") == 0) slot = &joffs;
        if (!slot) continue;
        if (*slot) return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': field '%s' appears twice", path, qn, k);
        *slot = m;
    }
    if (!jdtype) return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': field 'dtype' missing", path, qn);
    if (!jshape) return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': field 'shape' missing", path, qn);
    if (!joffs)
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': field 'data_offsets' missing", path, qn);

    const char *ds = tw_json_str(jdtype);
    if (!ds) return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': dtype: not a string", path, qn);
    if (st_dtype_parse(ds, &t->st_type) != 0) {
        char db[32];
        for (size_t i = 0; i < sizeof st_dtypes_unsupported / sizeof *st_dtypes_unsupported; i++) {
            if (strcmp(ds, st_dtypes_unsupported[i]) == 0)
                return tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': dtype %s is not supported by twin",
                                path, qn, ds);
        }
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': dtype: unknown type '%s'", path, qn,
                        st_msgname(ds, db, sizeof db));
    }
    t->dtype = st_dtype_to_tw(t->st_type);

    if (!tw_json_is_array(jshape))
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': shape: not an array", path, qn);
    size_t nd = tw_json_size(jshape);
    if (nd > ST_MAX_DIMS)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: tensor '%s': shape: %zu dimensions, twin allows %d",
                        path, qn, nd, ST_MAX_DIMS);
    t->n_dims = (uint32_t)nd;
    for (int d = 0; d < ST_MAX_DIMS; d++) t->shape[d] = 1;
    /* Element count with overflow checks: a count past the data section can never match the
     * byte size, so it is capped there rather than computed in full. */
    uint64_t n_el = 1;
    int any_zero = 0, too_big = 0;
    size_t d = 0;
    for (const tw_json *e = tw_json_first(jshape); e; e = tw_json_next(e), d++) {
        uint64_t v;
        if (st_json_u53(e, &v) != 0)
            return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': shape[%zu]: not a non-negative integer",
                            path, qn, d);
        t->shape[d] = (int64_t)v;
        if (v == 0) any_zero = 1;
        else if (!too_big && n_el > UINT64_MAX / v) too_big = 1;
        else if (!too_big) n_el *= v;
    }
    if (any_zero) n_el = 0, too_big = 0;

    if (!tw_json_is_array(joffs) || tw_json_size(joffs) != 2)
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': data_offsets: not an array of two integers",
                        path, qn);
    uint64_t begin, end;
    const tw_json *jb = tw_json_first(joffs);
    if (st_json_u53(jb, &begin) != 0 || st_json_u53(tw_json_next(jb), &end) != 0)
        return tw_error(TW_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets: not two non-negative integers", path, qn);
    if (begin > end)
        return tw_error(TW_ERR_FORMAT, "%s: tensor '%s': data_offsets: begin %llu > end %llu", path,
                        qn, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return tw_error(TW_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets: end %llu beyond the data section (%llu bytes)",
                        path, qn, (unsigned long long)end, (unsigned long long)data_size);
    size_t esz = st_dtype_size(t->st_type);
    if (too_big || n_el > UINT64_MAX / esz)
        return tw_error(TW_ERR_FORMAT,
                        "%s: tensor '%s': shape: product(shape) * %zu bytes overflows 64 bits", path,
                        qn, esz);
    if (n_el * esz != end - begin)
        return tw_error(TW_ERR_FORMAT,
                        "%s: tensor '%s': data_offsets: span %llu bytes != product(shape) %llu * %zu "
                        "bytes (%s)",
                        path, qn, (unsigned long long)(end - begin), (unsigned long long)n_el, esz,
                        st_dtypes[t->st_type].name);
    t->n_elements = (int64_t)n_el; /* <= data_size, so it fits */
    t->offset = begin;
    t->nbytes = end - begin;
    return TW_OK;
}

/* Parses f->data[0..f->size) into f. */
static tw_status st_parse(st_file *f) {
    const char *path = f->path;
    char nb[ST_NAMEBUF], nb2[ST_NAMEBUF];
    if (f->size < 8)
        return tw_error(TW_ERR_FORMAT, "%s: header length: file is %zu bytes, shorter than 8", path,
                        f->size);
    uint64_t n;
    memcpy(&n, f->data, 8);
    f->header_size = n;
    if (n == 0) return tw_error(TW_ERR_FORMAT, "%s: header length is 0", path);
    if (n > ST_MAX_HEADER_BYTES)
        return tw_error(TW_ERR_FORMAT, "%s: header length %llu exceeds the limit of %llu bytes",
                        path, (unsigned long long)n, ST_MAX_HEADER_BYTES);
    if (n > f->size - 8)
        return tw_error(TW_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes)",
                        path, (unsigned long long)n, f->size);
    const uint8_t *hdr = f->data + 8;
    const uint8_t *data = hdr + n;
    uint64_t data_size = f->size - 8 - n;
    if (hdr[0] != '{') return tw_error(TW_ERR_FORMAT, "%s: header: does not start with '{'", path);
    if (!tw_utf8_valid((const char *)hdr, (size_t)n))
        return tw_error(TW_ERR_FORMAT, "%s: header: not valid UTF-8", path);
    size_t obj_len = st_json_object_len(hdr, (size_t)n);
    if (obj_len == 0) return tw_error(TW_ERR_FORMAT, "%s: header: the JSON object is not closed", path);
    for (size_t i = obj_len; i < n; i++) {
        uint8_t c = hdr[i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return tw_error(TW_ERR_FORMAT, "%s: header: byte %zu after the JSON object is not padding",
                            path, i);
    }

    char what[4096 + 16]; /* no allocation here: the fault-injection test counts them */
    snprintf(what, sizeof what, "%s: header", path);
    tw_json *doc = tw_json_parse((const char *)hdr, obj_len, what);
    if (!doc) return tw_errcode();
    tw_status rc = TW_OK;
    if (!tw_json_is_object(doc)) {
        rc = tw_error(TW_ERR_FORMAT, "%s: header: not a JSON object", path);
        goto done;
    }

    size_t n_members = tw_json_size(doc);
    f->tensors = tw_arena_alloc(f->arena, n_members * sizeof *f->tensors + 1, 8);
    f->by_name = tw_arena_alloc(f->arena, n_members * sizeof *f->by_name + 1, 8);
    if (!f->tensors || !f->by_name) {
        rc = TW_ERR_NOMEM;
        goto done;
    }
    int seen_meta = 0;
    for (const tw_json *m = tw_json_first(doc); m; m = tw_json_next(m)) {
        const char *key = tw_json_key(m);
        if (!key) key = "";
        if (strcmp(key, "__metadata__") == 0) {
            if (seen_meta) {
                rc = tw_error(TW_ERR_FORMAT, "%s: header: __metadata__ appears twice", path);
                goto done;
            }
            seen_meta = 1;
            if ((rc = st_parse_metadata(f, m)) != TW_OK) goto done;
            continue;
        }
        st_tensor *t = &f->tensors[f->n_tensors];
        memset(t, 0, sizeof *t);
        if ((rc = st_parse_tensor(f, key, m, data_size, t)) != TW_OK) goto done;
        t->name = tw_arena_strndup(f->arena, key, strlen(key));
        if (!t->name) {
            rc = TW_ERR_NOMEM;
            goto done;
        }
        t->data = data + t->offset;
        f->n_tensors++;
    }

    /* The data section must be covered exactly: no overlap, no gap, nothing after the last
     * tensor (the spec's rule against polyglot files; the reference reader enforces it too). */
    qsort(f->tensors, f->n_tensors, sizeof *f->tensors, st_cmp_tensor_offset);
    uint64_t covered = 0;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        if (t->offset < covered) {
            const st_tensor *p = &f->tensors[i - 1];
            rc = tw_error(TW_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu] overlap tensor '%s' [%llu, %llu]",
                          path, st_msgname(t->name, nb, sizeof nb), (unsigned long long)t->offset,
                          (unsigned long long)(t->offset + t->nbytes), st_msgname(p->name, nb2, sizeof nb2),
                          (unsigned long long)p->offset, (unsigned long long)(p->offset + p->nbytes));
            goto done;
        }
        if (t->offset > covered) {
            rc = tw_error(TW_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets: begins at %llu, leaving a gap of %llu bytes "
                          "in the data section",
                          path, st_msgname(t->name, nb, sizeof nb), (unsigned long long)t->offset,
                          (unsigned long long)(t->offset - covered));
            goto done;
        }
        covered = t->offset + t->nbytes;
    }
    if (covered != data_size) {
        rc = tw_error(TW_ERR_FORMAT,
                      "%s: data section: %llu bytes, but the tensors cover only the first %llu",
                      path, (unsigned long long)data_size, (unsigned long long)covered);
        goto done;
    }
    for (uint64_t i = 0; i < f->n_tensors; i++) f->by_name[i] = &f->tensors[i];
    qsort(f->by_name, f->n_tensors, sizeof *f->by_name, st_cmp_tensor_name);
    for (uint64_t i = 1; i < f->n_tensors; i++) {
        if (strcmp(f->by_name[i - 1]->name, f->by_name[i]->name) == 0) {
            rc = tw_error(TW_ERR_FORMAT, "%s: tensor '%s': name appears twice", path,
                          st_msgname(f->by_name[i]->name, nb, sizeof nb));
            goto done;
        }
    }
done:
    tw_json_free(doc);
    return rc;
}

static st_file *st_file_new(const char *name) {
    st_file *f = tw_calloc(1, sizeof *f);
    if (!f) return NULL;
    f->path = tw_strdup(name ? name : "(memory)");
    f->arena = tw_arena_new(0);
    if (!f->path || !f->arena) {
        st_close(f);
        return NULL;
    }
    return f;
}

st_file *st_open(const char *path) {
    st_file *f = st_file_new(path);
    if (!f) return NULL;
    if (tw_mfile_open(&f->mf, path) != TW_OK) {
        st_close(f);
        return NULL;
    }
    f->data = f->mf.data;
    f->size = f->mf.size;
    if (st_parse(f) != TW_OK) {
        st_close(f);
        return NULL;
    }
    return f;
}

st_file *st_open_memory(const void *data, size_t size, const char *name) {
    st_file *f = st_file_new(name);
    if (!f) return NULL;
    f->data = data;
    f->size = data ? size : 0;
    if (st_parse(f) != TW_OK) {
        st_close(f);
        return NULL;
    }
    return f;
}

void st_close(st_file *f) {
    if (!f) return;
    tw_mfile_close(&f->mf);
    tw_arena_free(f->arena);
    tw_free(f->path);
    tw_free(f);
}

const char *st_path(const st_file *f) { return f->path; }
size_t st_file_size(const st_file *f) { return f->size; }
uint64_t st_header_size(const st_file *f) { return f->header_size; }
uint64_t st_data_offset(const st_file *f) { return 8 + f->header_size; }
uint64_t st_n_tensors(const st_file *f) { return f->n_tensors; }

const st_tensor *st_tensor_at(const st_file *f, uint64_t i) {
    TW_ASSERT(i < f->n_tensors);
    return &f->tensors[i];
}

const st_tensor *st_find_tensor(const st_file *f, const char *name) {
    uint64_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->by_name[mid]->name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

uint64_t st_n_metadata(const st_file *f) { return f->n_meta; }

void st_metadata_at(const st_file *f, uint64_t i, const char **key, const char **value) {
    TW_ASSERT(i < f->n_meta);
    *key = f->meta[i].key;
    *value = f->meta[i].value;
}

const char *st_metadata_get(const st_file *f, const char *key) {
    uint64_t lo = 0, hi = f->n_meta;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(f->meta_by_key[mid]->key, key);
        if (c == 0) return f->meta_by_key[mid]->value;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

tw_status st_tensor_to_f32(const st_tensor *t, float *dst) {
    const uint8_t *src = t->data;
    int64_t n = t->n_elements;
    switch (t->st_type) {
    case ST_DTYPE_F32: memcpy(dst, src, (size_t)t->nbytes); return TW_OK;
    case ST_DTYPE_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2); /* the mapping may be unaligned */
            dst[i] = tw_f16_to_f32(h);
        }
        return TW_OK;
    case ST_DTYPE_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = tw_bf16_to_f32(h);
        }
        return TW_OK;
    default: {
        char nb[ST_NAMEBUF];
        const char *dn = st_dtype_name(t->st_type);
        return tw_error(TW_ERR_UNSUPPORTED, "tensor '%s': dtype %s: no conversion to f32",
                        st_msgname(t->name ? t->name : "", nb, sizeof nb), dn ? dn : "?");
    }
    }
}

/* ---- writer ------------------------------------------------------------------------------ */

typedef struct {
    char *name;
    st_dtype type;
    uint32_t n_dims;
    int64_t shape[ST_MAX_DIMS];
    uint64_t nbytes;
    const void *data;
} st_wtensor;

struct st_writer {
    st_wtensor *t;
    size_t n_t, cap_t;
    st_meta *meta; /* key and value owned (tw_strdup), cast away const to free */
    size_t n_meta, cap_meta;
};

st_writer *st_writer_new(void) { return tw_calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_t; i++) tw_free(w->t[i].name);
    for (size_t i = 0; i < w->n_meta; i++) {
        tw_free((char *)w->meta[i].key);
        tw_free((char *)w->meta[i].value);
    }
    tw_free(w->t);
    tw_free(w->meta);
    tw_free(w);
}

/* Grows *arr (elements of size sz) so that it holds at least n + 1. */
static tw_status st_grow(void **arr, size_t *cap, size_t n, size_t sz) {
    if (n < *cap) return TW_OK;
    size_t nc = *cap ? *cap * 2 : 16;
    void *p = tw_realloc(*arr, nc * sz);
    if (!p) return TW_ERR_NOMEM;
    *arr = p;
    *cap = nc;
    return TW_OK;
}

tw_status st_writer_set_metadata(st_writer *w, const char *key, const char *value) {
    if (!key || !value || !tw_utf8_valid(key, strlen(key)) || !tw_utf8_valid(value, strlen(value)))
        return tw_error(TW_ERR_ARG, "safetensors writer: metadata key or value missing or not UTF-8");
    char *v = tw_strdup(value);
    if (!v) return TW_ERR_NOMEM;
    for (size_t i = 0; i < w->n_meta; i++) {
        if (strcmp(w->meta[i].key, key) == 0) {
            tw_free((char *)w->meta[i].value);
            w->meta[i].value = v;
            return TW_OK;
        }
    }
    char *k = tw_strdup(key);
    if (!k || st_grow((void **)&w->meta, &w->cap_meta, w->n_meta, sizeof *w->meta) != TW_OK) {
        tw_free(k);
        tw_free(v);
        return TW_ERR_NOMEM;
    }
    w->meta[w->n_meta].key = k;
    w->meta[w->n_meta].value = v;
    w->n_meta++;
    return TW_OK;
}

tw_status st_writer_add_tensor(st_writer *w, const char *name, st_dtype type, uint32_t n_dims,
                               const int64_t *shape, const void *data) {
    if (!name || !tw_utf8_valid(name, strlen(name)) || strcmp(name, "__metadata__") == 0)
        return tw_error(TW_ERR_ARG, "safetensors writer: tensor name missing, not UTF-8 or reserved");
    if (!st_dtype_name(type))
        return tw_error(TW_ERR_ARG, "safetensors writer: tensor '%s': bad dtype %d", name, (int)type);
    if (n_dims > ST_MAX_DIMS || (n_dims > 0 && !shape))
        return tw_error(TW_ERR_ARG, "safetensors writer: tensor '%s': %u dimensions", name, n_dims);
    uint64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (shape[d] < 0)
            return tw_error(TW_ERR_ARG, "safetensors writer: tensor '%s': shape[%u] = %lld", name,
                            d, (long long)shape[d]);
        uint64_t v = (uint64_t)shape[d];
        if (v != 0 && n_el > (uint64_t)INT64_MAX / st_dtype_size(type) / v)
            return tw_error(TW_ERR_ARG, "safetensors writer: tensor '%s': size overflows", name);
        n_el *= v;
    }
    uint64_t nbytes = n_el * st_dtype_size(type);
    if (nbytes > 0 && !data)
        return tw_error(TW_ERR_ARG, "safetensors writer: tensor '%s': no data", name);
    for (size_t i = 0; i < w->n_t; i++) {
        if (strcmp(w->t[i].name, name) == 0)
            return tw_error(TW_ERR_ARG, "safetensors writer: tensor '%s' added twice", name);
    }
    if (st_grow((void **)&w->t, &w->cap_t, w->n_t, sizeof *w->t) != TW_OK) return TW_ERR_NOMEM;
    st_wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = tw_strdup(name);
    if (!t->name) return TW_ERR_NOMEM;
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims; d++) t->shape[d] = shape[d];
    t->nbytes = nbytes;
    t->data = data;
    w->n_t++;
    return TW_OK;
}

/* Data layout order: larger elements first (so every tensor starts aligned to its element
 * size), then by name. */
static int st_cmp_wtensor(const void *a, const void *b) {
    const st_wtensor *x = *(const st_wtensor *const *)a, *y = *(const st_wtensor *const *)b;
    size_t sx = st_dtype_size(x->type), sy = st_dtype_size(y->type);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

tw_status st_writer_write(st_writer *w, const char *path) {
    const st_wtensor **order = tw_malloc((w->n_t + 1) * sizeof *order);
    if (!order) return TW_ERR_NOMEM;
    for (size_t i = 0; i < w->n_t; i++) order[i] = &w->t[i];
    qsort(order, w->n_t, sizeof *order, st_cmp_wtensor);

    tw_sb h;
    tw_sb_init(&h);
    tw_sb_putc(&h, '{');
    if (w->n_meta) {
        tw_sb_puts(&h, "\"__metadata__\":{");
        for (size_t i = 0; i < w->n_meta; i++) {
            if (i) tw_sb_putc(&h, ',');
            tw_sb_json_str(&h, w->meta[i].key, strlen(w->meta[i].key));
            tw_sb_putc(&h, ':');
            tw_sb_json_str(&h, w->meta[i].value, strlen(w->meta[i].value));
        }
        tw_sb_putc(&h, '}');
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const st_wtensor *t = order[i];
        if (i || w->n_meta) tw_sb_putc(&h, ',');
        tw_sb_json_str(&h, t->name, strlen(t->name));
        tw_sb_printf(&h, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_name(t->type));
        for (uint32_t d = 0; d < t->n_dims; d++)
            tw_sb_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        tw_sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                     (unsigned long long)(off + t->nbytes));
        off += t->nbytes;
    }
    tw_sb_putc(&h, '}');
    for (size_t pad = (8 - h.len % 8) % 8; pad > 0; pad--) tw_sb_putc(&h, ' '); /* data 8-aligned */
    if (h.failed) {
        tw_sb_free(&h);
        tw_free(order);
        return TW_ERR_NOMEM;
    }

    tw_afile af;
    tw_status rc = tw_afile_open(&af, path);
    if (rc == TW_OK) {
        uint64_t n = h.len; /* little-endian host */
        rc = tw_afile_write(&af, &n, 8);
        if (rc == TW_OK) rc = tw_afile_write(&af, h.buf, h.len);
        for (size_t i = 0; rc == TW_OK && i < w->n_t; i++) {
            if (order[i]->nbytes) rc = tw_afile_write(&af, order[i]->data, order[i]->nbytes);
        }
        if (rc == TW_OK) rc = tw_afile_commit(&af);
        else tw_afile_abort(&af);
    }
    tw_sb_free(&h);
    tw_free(order);
    return rc;
}
