/* gguf.h: reading and writing GGUF files (versions 2 and 3), the llama.cpp model format.
 *
 * Reading: gguf_open() maps the file read-only and parses the header, the metadata and the
 * tensor infos; tensor data stays in the mapping and is never read by gguf_open (so `twin
 * gguf info` is fast on any size of file). Every count, length, offset and size is checked
 * against the file length before use: a truncated, corrupt or hostile file gives TW_ERR_FORMAT
 * with a message naming the file and the field, never a crash or a huge allocation. Refused:
 * GGUF v1 and other versions (TW_ERR_UNSUPPORTED), big-endian files, duplicate keys or tensor
 * names, bools other than 0/1, arrays nested deeper than 16, n_dims > 4, negative dims,
 * element counts that overflow int64, unknown tensor types, rows that are not a whole number
 * of blocks, general.alignment that is not a power-of-two integer, tensor offsets that are
 * not aligned, and tensor data outside the file. A file without tensors may end before the
 * data section's padding (vocab-only files do).
 *
 * Writing: gguf_writer collects metadata and tensors, then gguf_writer_write() writes the file
 * atomically (temporary file + rename). A written file reads back identically.
 *
 * Thread safety: a gguf_file is immutable after gguf_open and may be read from any thread.
 * A gguf_writer must not be shared.
 */
#ifndef TWIN_GGUF_H
#define TWIN_GGUF_H

#include "core.h"
#include "quant.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

typedef struct {
    const char *ptr; /* NOT NUL-terminated: points into the mapping (or writer storage) */
    uint64_t len;
} gguf_str;

/* A metadata value. Scalars are decoded; strings point into the mapping; arrays keep their
 * element type, count and a pointer to the raw little-endian elements in the file (for
 * arrays of scalars) so a 150k-entry vocabulary costs nothing until it is read. Arrays of
 * strings and nested arrays are walked with gguf_arr_* below. */
typedef struct gguf_value {
    gguf_type type;
    union {
        uint64_t u64; /* UINT8..UINT64, BOOL (0/1) */
        int64_t i64;  /* INT8..INT64 */
        double f64;   /* FLOAT32, FLOAT64 */
        gguf_str str;
        struct {
            gguf_type elem_type;
            uint64_t count;
            const uint8_t *data;        /* first element's bytes in the file */
            const uint64_t *offsets;    /* STRING/ARRAY elements: offset of each element's
                                           encoding (a string's u64 length prefix) from
                                           `data` (count entries); NULL for scalars and
                                           empty arrays */
            const struct gguf_value *nested; /* ARRAY of ARRAY: decoded elements, else NULL */
        } arr;
    } v;
} gguf_value;

typedef struct {
    gguf_str key;
    gguf_value value;
} gguf_kv;

typedef struct {
    gguf_str name;
    tw_dtype type;
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the innermost (contiguous) dimension; unused = 1 */
    uint64_t offset;           /* from the start of the data section */
    uint64_t nbytes;
    const void *data;          /* into the mapping; NULL in a writer before write */
} gguf_tensor;

typedef struct gguf_file gguf_file; /* opaque */

/* Opens and parses path. On failure returns NULL and sets the thread's error. */
gguf_file *gguf_open(const char *path);
/* Parses an in-memory buffer (for fuzzing and tests); the buffer must outlive the handle.
 * `name` is used in messages. */
gguf_file *gguf_open_memory(const void *data, size_t size, const char *name);
void gguf_close(gguf_file *f); /* NULL is a no-op */

uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
uint64_t gguf_data_offset(const gguf_file *f); /* file offset of the tensor data section */
size_t gguf_file_size(const gguf_file *f);
const char *gguf_path(const gguf_file *f);

uint64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, uint64_t i);
const gguf_value *gguf_find(const gguf_file *f, const char *key); /* NULL when missing */

/* Typed getters: TW_OK, or TW_ERR_NOT_FOUND when missing, TW_ERR_FORMAT when the type does
 * not fit (integers of any width convert when the value fits; gguf_get_f64 takes floats of
 * either width and integers). Both errors leave a message naming the file and key. */
tw_status gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out);
tw_status gguf_get_i64(const gguf_file *f, const char *key, int64_t *out);
tw_status gguf_get_f64(const gguf_file *f, const char *key, double *out);
tw_status gguf_get_bool(const gguf_file *f, const char *key, int *out);
tw_status gguf_get_str(const gguf_file *f, const char *key, gguf_str *out);
/* Returns a NUL-terminated heap copy (tw_free), or NULL when missing or not a string. */
char *gguf_get_strdup(const gguf_file *f, const char *key);

/* Array access. gguf_arr_str: the i-th element of an array of strings ("" for another
 * element type). gguf_arr_i64: the i-th element of an array of any integer type or bool
 * (uint64 values above INT64_MAX wrap; 0 for floats, strings, arrays). gguf_arr_f64: the
 * i-th element of an array of floats or integers (0 for strings, arrays). gguf_arr_elem: the
 * i-th element of an array of arrays (NULL for another element type). arr must be an ARRAY
 * and i < its count (asserted). Check arr->v.arr.elem_type before trusting a file's types. */
gguf_str gguf_arr_str(const gguf_value *arr, uint64_t i);
int64_t gguf_arr_i64(const gguf_value *arr, uint64_t i);
double gguf_arr_f64(const gguf_value *arr, uint64_t i);
const gguf_value *gguf_arr_elem(const gguf_value *arr, uint64_t i);

uint64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, uint64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);

const char *gguf_type_name(gguf_type t);
/* Compares a gguf_str with a C string. */
int gguf_str_eq(gguf_str s, const char *c);

/* ---- writer ---- */

typedef struct gguf_writer gguf_writer;

/* version 2 or 3 (0: 3). An alignment other than 0/32 (a power of two) is written as a
 * general.alignment uint32 key; setting that key (any setter, also by copying it from a read
 * file) sets the alignment of the written tensors; it must be a uint32 power of two.
 * NULL with TW_ERR_ARG for a bad version or alignment. */
gguf_writer *gguf_writer_new(uint32_t version /* 3 */, uint32_t alignment /* 0: 32 */);
void gguf_writer_free(gguf_writer *w);
/* Metadata setters copy key and value. A key set twice replaces the earlier value. */
tw_status gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
tw_status gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
tw_status gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
tw_status gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
tw_status gguf_writer_set_bool(gguf_writer *w, const char *key, int v);
tw_status gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Copies any value (scalar, string, array of anything, nested) from a read file, keeping its
 * type and bytes. A value built by hand must follow gguf_value's layout: scalar array
 * elements as little-endian bytes at arr.data, string/nested arrays with offsets/nested. */
tw_status gguf_writer_set_value(gguf_writer *w, const char *key, const gguf_value *v);
tw_status gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v,
                                  uint64_t n);
tw_status gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
tw_status gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n);
/* Adds a tensor; `data` (nbytes = tw_dtype_row_bytes(type, ne[0]) * rows) is referenced, not
 * copied, and must stay valid until gguf_writer_write returns. TW_ERR_ARG for a name that is
 * empty, longer than 63 bytes (ggml's limit) or already added, n_dims outside 1..4, negative
 * dims, an unknown type, or a row that is not a whole number of blocks. Tensors are laid out
 * in the order added, each padded to the alignment, as ggml writes them. */
tw_status gguf_writer_add_tensor(gguf_writer *w, const char *name, tw_dtype type,
                                 uint32_t n_dims, const int64_t *ne, const void *data);
/* Writes the file atomically (tw_afile: temporary + fsync + rename). The writer stays usable. */
tw_status gguf_writer_write(gguf_writer *w, const char *path);

#endif
