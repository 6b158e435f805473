/* fuzz_gguf.c: the GGUF reader on arbitrary bytes. Each input goes through gguf_open_memory;
 * a refused input must leave a one-line message naming the file; an accepted one is walked
 * completely (every key and value, every element of every array, nested ones too, every
 * tensor) with the reader's invariants checked, and the first row of each small tensor is
 * dequantized. A broken invariant aborts, which the fuzzer reports as a crash.
 *
 * Seeds (corpus/fuzz_gguf/) were written by gguf_writer: every metadata type with f32/q8_0/f16
 * tensors (v3), quantized tensors with alignment 64 (v2), a vocabulary-only file, and nested
 * arrays. */
#include "gguf.h"

#include <stdlib.h>
#include <string.h>

#define FUZZ_ROW_MAX 4096 /* elements of a first row that get dequantized */

static volatile uint64_t fuzz_sink;

static void fuzz_require(int cond) {
    if (!cond) abort();
}

/* Touches every byte of s (so ASan sees any read outside the input). */
static uint64_t fuzz_touch(gguf_str s) {
    uint64_t h = s.len;
    for (uint64_t i = 0; i < s.len; i++) h = h * 31 + (uint8_t)s.ptr[i];
    return h;
}

static uint64_t fuzz_walk_value(const gguf_value *v, int depth) {
    fuzz_require(depth <= 64);
    fuzz_require((unsigned)v->type < GGUF_TYPE_COUNT);
    if (v->type == GGUF_TYPE_STRING) return fuzz_touch(v->v.str);
    if (v->type != GGUF_TYPE_ARRAY) return v->v.u64;
    uint64_t h = v->v.arr.count;
    fuzz_require((unsigned)v->v.arr.elem_type < GGUF_TYPE_COUNT);
    for (uint64_t i = 0; i < v->v.arr.count; i++) {
        switch (v->v.arr.elem_type) {
        case GGUF_TYPE_STRING: h += fuzz_touch(gguf_arr_str(v, i)); break;
        case GGUF_TYPE_ARRAY: {
            const gguf_value *e = gguf_arr_elem(v, i);
            fuzz_require(e != NULL && e->type == GGUF_TYPE_ARRAY);
            h += fuzz_walk_value(e, depth + 1);
            break;
        }
        case GGUF_TYPE_FLOAT32:
        case GGUF_TYPE_FLOAT64: {
            double d = gguf_arr_f64(v, i);
            h += d == d ? 1 : 2;
            break;
        }
        default: h += (uint64_t)gguf_arr_i64(v, i); break;
        }
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char name[] = "fuzz.gguf";
    gguf_file *f = gguf_open_memory(data, size, name);
    if (!f) {
        const char *m = tw_errmsg();
        fuzz_require(strncmp(m, "fuzz.gguf: ", 11) == 0);
        fuzz_require(strchr(m, '\n') == NULL);
        return 0;
    }
    uint32_t align = gguf_alignment(f);
    fuzz_require(align && (align & (align - 1)) == 0);
    fuzz_require(gguf_data_offset(f) <= size);
    uint64_t h = 0;
    char key[256];
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        fuzz_require(kv != NULL);
        h += fuzz_touch(kv->key) + fuzz_walk_value(&kv->value, 0);
        /* keys are unique, so a lookup by name finds this very entry */
        if (kv->key.len < sizeof key && !memchr(kv->key.ptr, 0, (size_t)kv->key.len)) {
            memcpy(key, kv->key.ptr, (size_t)kv->key.len);
            key[kv->key.len] = 0;
            fuzz_require(gguf_find(f, key) == &kv->value);
        }
    }
    fuzz_require(gguf_kv_at(f, gguf_n_kv(f)) == NULL);
    float *row = malloc(FUZZ_ROW_MAX * sizeof(float));
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        fuzz_require(t != NULL && t->n_dims <= GGUF_MAX_DIMS);
        h += fuzz_touch(t->name);
        const uint8_t *p = t->data;
        fuzz_require(p >= data + gguf_data_offset(f) && t->nbytes <= (uint64_t)(data + size - p));
        fuzz_require(t->offset % align == 0);
        if (t->name.len < sizeof key && !memchr(t->name.ptr, 0, (size_t)t->name.len)) {
            memcpy(key, t->name.ptr, (size_t)t->name.len);
            key[t->name.len] = 0;
            fuzz_require(gguf_find_tensor(f, key) == t);
        }
        int64_t n0 = t->ne[0];
        size_t rb = tw_dtype_row_bytes(t->type, n0);
        if (row && n0 > 0 && n0 <= FUZZ_ROW_MAX && rb <= t->nbytes &&
            tw_dtype_can_dequantize(t->type)) {
            fuzz_require(tw_dequantize_row(t->type, t->data, row, n0) == TW_OK);
            for (int64_t j = 0; j < n0; j++) h += row[j] == row[j];
        }
    }
    free(row);
    fuzz_require(gguf_tensor_at(f, gguf_n_tensors(f)) == NULL);
    gguf_close(f);
    fuzz_sink = h; /* keeps the walk from being optimized away */
    return 0;
}
