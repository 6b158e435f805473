/* safetensors.h: reading and writing safetensors files (the Hugging Face weight format).
 *
 * Layout (https://github.com/huggingface/safetensors, "Format"):
 *   8 bytes   N, the header length, unsigned little-endian
 *   N bytes   a UTF-8 JSON object that starts with '{' and may be padded at the end with
 *             spaces: { "__metadata__": {string: string, ...},
 *                       "<tensor name>": {"dtype": "F32", "shape": [d0, d1, ...],
 *                                         "data_offsets": [begin, end]}, ... }
 *   the rest  the data section; data_offsets count from its first byte, [begin, end).
 *
 * Reading: st_open() maps the file read-only (tw_mfile) and parses the header; tensor data
 * stays in the mapping and is never read by st_open. Every length, shape and offset is checked
 * before use: a header length beyond the file or over ST_MAX_HEADER_BYTES, a header that is
 * not UTF-8 or not one JSON object, an unknown dtype, offsets out of the data section,
 * begin > end, a byte size that is not product(shape) * dtype size (computed with overflow
 * checks), tensors that overlap, gaps or trailing bytes in the data section (the spec requires
 * it to be indexed entirely, as the reference implementation does), duplicate tensor names,
 * and non-string metadata values. Each gives TW_ERR_FORMAT with a one-line message naming the
 * file, the tensor and the field, never a crash or an allocation sized by the file.
 *
 * Shapes are stored as safetensors (and PyTorch) store them: OUTERMOST FIRST, row-major, so
 * shape[n_dims - 1] is the contiguous dimension. This is the reverse of GGUF's ne[] order
 * (gguf.h): a PyTorch nn.Linear weight of shape [out, in] here is ne = {in, out} in GGUF.
 *
 * Writing: st_writer collects metadata and tensors (data referenced, not copied), then
 * st_writer_write() writes the file atomically (tw_afile: temporary file + fsync + rename).
 * Key order in the written header: "__metadata__" first (omitted when no entry was set), its
 * entries in the order they were first set; then the tensors in the order their data is laid
 * out: by element size descending, then by name (byte-wise strcmp). Like Hugging Face's
 * library (which sorts by dtype, widest first, then name) this keeps every tensor's data
 * aligned to its element size without gaps. The header is compact JSON padded with spaces so
 * that the data section starts at a multiple of 8 bytes; Python's json and the safetensors
 * library read it.
 *
 * Byte order: safetensors is little-endian; twin runs on little-endian hosts only.
 *
 * Thread safety: an st_file is immutable after st_open and may be read from any thread. An
 * st_writer must not be shared.
 */
#ifndef TWIN_SAFETENSORS_H
#define TWIN_SAFETENSORS_H

#include "core.h"
#include "quant.h"

#define ST_MAX_DIMS 8                       /* more gives TW_ERR_UNSUPPORTED */
#define ST_MAX_HEADER_BYTES 100000000ull    /* as the reference reader: larger is refused */

/* The dtypes safetensors defines with a whole number of bytes per element. Sub-byte types
 * (F4, F6_*) and complex types are refused with TW_ERR_UNSUPPORTED naming the tensor. */
typedef enum {
    ST_DTYPE_BOOL = 0,
    ST_DTYPE_U8,
    ST_DTYPE_I8,
    ST_DTYPE_F8_E5M2,
    ST_DTYPE_F8_E4M3,
    ST_DTYPE_I16,
    ST_DTYPE_U16,
    ST_DTYPE_F16,
    ST_DTYPE_BF16,
    ST_DTYPE_I32,
    ST_DTYPE_U32,
    ST_DTYPE_F32,
    ST_DTYPE_F64,
    ST_DTYPE_I64,
    ST_DTYPE_U64,
    ST_DTYPE_COUNT
} st_dtype;

/* The spelling in the header ("F32", "BF16", ...); NULL for an out-of-range value. */
const char *st_dtype_name(st_dtype t);
/* Bytes per element (1, 2, 4 or 8); 0 for an out-of-range value. */
size_t st_dtype_size(st_dtype t);
/* Looks up a header spelling (case-sensitive, as the spec). Returns 0 and stores the dtype,
 * or -1 when the name is not one of the above. */
int st_dtype_parse(const char *name, st_dtype *out);
/* The tw_dtype with the same element layout: F32, F16, BF16, I8, I16, I32, I64, F64 map to
 * TW_DTYPE_*; the others (BOOL, U8, U16, U32, U64, F8_*) have none and give TW_DTYPE_COUNT. */
tw_dtype st_dtype_to_tw(st_dtype t);
/* The reverse: 0 and *out for the eight types above, -1 for a tw_dtype safetensors cannot
 * hold (the GGUF block-quantized types). */
int st_dtype_from_tw(tw_dtype t, st_dtype *out);

typedef struct {
    const char *name;  /* NUL-terminated; owned by the st_file */
    st_dtype st_type;  /* the dtype as the file stores it */
    tw_dtype dtype;    /* st_dtype_to_tw(st_type): TW_DTYPE_COUNT when twin has no such type */
    uint32_t n_dims;   /* 0 for a scalar */
    int64_t shape[ST_MAX_DIMS]; /* outermost first (see above); entries past n_dims are 1 */
    int64_t n_elements;         /* product of the shape (1 for a scalar) */
    uint64_t offset;   /* data_offsets[0]: from the start of the data section */
    uint64_t nbytes;   /* data_offsets[1] - data_offsets[0] == n_elements * dtype size */
    const void *data;  /* into the mapping. Not necessarily aligned to the element size when
                          the writer did not pad the header: read it with memcpy or
                          st_tensor_to_f32. Never NULL (points at the data section even when
                          nbytes is 0). */
} st_tensor;

typedef struct st_file st_file; /* opaque */

/* Maps and parses path. On failure returns NULL and sets the thread's error (TW_ERR_IO,
 * TW_ERR_FORMAT, TW_ERR_UNSUPPORTED or TW_ERR_NOMEM). Free with st_close. */
st_file *st_open(const char *path);
/* Parses an in-memory copy of a whole file (fuzzing, tests). The buffer is referenced and must
 * outlive the handle; `name` stands for the file in messages. */
st_file *st_open_memory(const void *data, size_t size, const char *name);
void st_close(st_file *f); /* NULL is a no-op */

const char *st_path(const st_file *f);     /* the path or the name given to st_open_memory */
size_t st_file_size(const st_file *f);     /* bytes of the whole file */
uint64_t st_header_size(const st_file *f); /* N, the JSON header's length */
uint64_t st_data_offset(const st_file *f); /* 8 + N: file offset of the data section */

/* Tensors in the order of their data in the file (ascending data_offsets). */
uint64_t st_n_tensors(const st_file *f);
const st_tensor *st_tensor_at(const st_file *f, uint64_t i); /* i < st_n_tensors */
/* By exact name (binary search); NULL when absent. */
const st_tensor *st_find_tensor(const st_file *f, const char *name);

/* The "__metadata__" map, in file order. Keys are unique (a duplicate key is a format error). */
uint64_t st_n_metadata(const st_file *f);
/* i < st_n_metadata: stores pointers (owned by the file) to the i-th key and value. */
void st_metadata_at(const st_file *f, uint64_t i, const char **key, const char **value);
/* The value of key, NULL when absent. Owned by the file. */
const char *st_metadata_get(const st_file *f, const char *key);

/* Converts a whole F32, F16 or BF16 tensor to f32 at dst (t->n_elements floats). Other dtypes
 * give TW_ERR_UNSUPPORTED naming the tensor and its dtype; dst is then untouched. */
tw_status st_tensor_to_f32(const st_tensor *t, float *dst);

/* ---- writer ---- */

typedef struct st_writer st_writer;

st_writer *st_writer_new(void); /* NULL (TW_ERR_NOMEM) on failure */
void st_writer_free(st_writer *w); /* NULL is a no-op */
/* Sets a "__metadata__" entry; key and value are copied and must be valid UTF-8. A key set
 * twice keeps the later value. */
tw_status st_writer_set_metadata(st_writer *w, const char *key, const char *value);
/* Adds a tensor. name is copied (valid UTF-8, not "__metadata__", not already added: else
 * TW_ERR_ARG); shape (n_dims <= ST_MAX_DIMS, outermost first, entries >= 0) is copied; data
 * (product(shape) * st_dtype_size(type) bytes) is referenced, not copied, and must stay valid
 * until st_writer_write returns. */
tw_status st_writer_add_tensor(st_writer *w, const char *name, st_dtype type, uint32_t n_dims,
                               const int64_t *shape, const void *data);
/* Writes the file atomically. The writer may be written again or freed afterwards. */
tw_status st_writer_write(st_writer *w, const char *path);

#endif
