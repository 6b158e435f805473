/* backend.c: the backend-independent half of kernels.h: the op names, opening a backend by
 * name (with the CPU fallback), backend-owned buffers with accounting and a fault hook, and
 * the op entry points, which check every argument once so that backends only compute. */
#include "backend_impl.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- op names ---------------------------------------------------------------------------- */

static const char *const op_names[] = {
    [TW_OP_ADD] = "add",
    [TW_OP_RMSNORM] = "rmsnorm",
    [TW_OP_MUL] = "mul",
    [TW_OP_SCALE] = "scale",
    [TW_OP_COPY] = "copy",
    [TW_OP_GET_ROWS] = "get_rows",
    [TW_OP_MATMUL] = "matmul",
    [TW_OP_LAYERNORM] = "layernorm",
    [TW_OP_ROPE] = "rope",
    [TW_OP_KV_WRITE] = "kv_write",
    [TW_OP_ATTENTION] = "attention",
    [TW_OP_SWIGLU] = "swiglu",
    [TW_OP_GELU] = "gelu",
    [TW_OP_SOFTMAX] = "softmax",
    [TW_OP_ARGMAX] = "argmax",
    [TW_OP_TOPK] = "topk",
    [TW_OP_ATTN_SEG] = "attn_seg",
    [TW_OP_ATTN_SEG_BWD] = "attn_seg_bwd",
    [TW_OP_MATMUL_DX] = "matmul_dx",
    [TW_OP_MATMUL_DW] = "matmul_dw",
    [TW_OP_RMSNORM_BWD] = "rmsnorm_bwd",
    [TW_OP_LAYERNORM_BWD] = "layernorm_bwd",
    [TW_OP_ROPE_BWD] = "rope_bwd",
    [TW_OP_SWIGLU_BWD] = "swiglu_bwd",
    [TW_OP_GELU_BWD] = "gelu_bwd",
    [TW_OP_EMBED_BWD] = "embed_bwd",
    [TW_OP_XENT] = "xent",
    [TW_OP_ADAMW] = "adamw",
    [TW_OP_DROPOUT] = "dropout",
};
_Static_assert(sizeof op_names / sizeof op_names[0] == TW_OP_COUNT,
               "op_names must name every op of tw_op");

const char *tw_op_name(tw_op op) {
    return (unsigned)op < TW_OP_COUNT && op_names[op] ? op_names[op] : "?";
}

/* ---- opening ----------------------------------------------------------------------------- */

/* Set by the first "auto" fallback of the process, so the line is logged once (a one-time
 * flag, STYLE.md 8). */
static atomic_flag fallback_logged = ATOMIC_FLAG_INIT;

static tw_status backend_new(tw_backend_kind kind, int device, tw_backend **out) {
    tw_backend *be = tw_calloc(1, sizeof *be);
    if (!be) return tw_errcode();
    be->kind = kind;
    tw_status st = kind == TW_BACKEND_CPU ? tw_cpu_backend_init(be)
                                          : tw_cuda_backend_init(be, device);
    if (st != TW_OK) {
        tw_free(be);
        return st;
    }
    *out = be;
    return TW_OK;
}

/* Parses "cuda" / "cuda:N" into a device index; -1 when name is something else. */
static int parse_cuda_name(const char *name) {
    if (strcmp(name, "cuda") == 0) return 0;
    if (strncmp(name, "cuda:", 5) != 0 || name[5] < '0' || name[5] > '9') return -1;
    char *end;
    long d = strtol(name + 5, &end, 10);
    return *end || d > 1024 ? -1 : (int)d;
}

tw_status tw_backend_open(const char *name, tw_backend **out) {
    if (!out) return tw_error(TW_ERR_ARG, "tw_backend_open: out is NULL");
    *out = NULL;
    if (!name) name = "auto";
    if (strcmp(name, "cpu") == 0) return backend_new(TW_BACKEND_CPU, -1, out);
    int dev = parse_cuda_name(name);
    if (dev >= 0) return backend_new(TW_BACKEND_CUDA, dev, out);
    if (strcmp(name, "auto") != 0)
        return tw_error(TW_ERR_ARG, "backend '%s': expected auto, cpu, cuda or cuda:N", name);

    int count = 0;
    tw_status st = tw_cuda_device_count(&count);
    char reason[512];
    if (st == TW_OK && count > 0) {
        st = backend_new(TW_BACKEND_CUDA, 0, out);
        if (st == TW_OK) return TW_OK;
        snprintf(reason, sizeof reason, "cuda:0 could not be opened: %s", tw_errmsg());
    } else {
        snprintf(reason, sizeof reason, "%s", tw_errmsg());
    }
    if (!atomic_flag_test_and_set(&fallback_logged))
        tw_log_info("no CUDA device found (%s); using the CPU backend", reason);
    tw_error_clear();
    return backend_new(TW_BACKEND_CPU, -1, out);
}

void tw_backend_free(tw_backend *be) {
    if (!be) return;
    if (be->n_live)
        tw_log_warn("backend %s freed with %" PRIu64 " live buffers (%zu bytes); they leak",
                    be->name, be->n_live, be->mem_current);
    if (be->vt && be->vt->close) be->vt->close(be);
    tw_free(be);
}

const char *tw_backend_name(const tw_backend *be) { return be->name; }
tw_backend_kind tw_backend_get_kind(const tw_backend *be) { return be->kind; }

int tw_backend_supports(const tw_backend *be, tw_op op) {
    return (unsigned)op < TW_OP_COUNT && be->vt->supports(be, op);
}

tw_status tw_backend_sync(tw_backend *be) { return be->vt->sync(be); }

tw_mem_stats tw_backend_mem_stats(const tw_backend *be) {
    tw_mem_stats st = {be->mem_current, be->mem_peak, be->n_allocs};
    return st;
}

/* ---- buffers ----------------------------------------------------------------------------- */

static _Atomic uint64_t buf_fail_countdown; /* test hook: 0 off; k: the k-th next alloc fails */

void tw_buffer_fail_after(uint64_t n) { atomic_store(&buf_fail_countdown, n); }

static int buf_should_fail(void) {
    uint64_t c = atomic_load(&buf_fail_countdown);
    while (c != 0)
        if (atomic_compare_exchange_weak(&buf_fail_countdown, &c, c - 1)) return c == 1;
    return 0;
}

tw_status tw_buffer_alloc(tw_backend *be, size_t nbytes, tw_buffer **out) {
    if (!be || !out) return tw_error(TW_ERR_ARG, "tw_buffer_alloc: NULL backend or out");
    *out = NULL;
    if (nbytes == 0) return tw_error(TW_ERR_ARG, "%s: buffer of 0 bytes", be->name);
    if (buf_should_fail())
        return tw_error(TW_ERR_NOMEM, "%s: out of memory allocating a buffer of %zu bytes "
                        "(test hook)", be->name, nbytes);
    tw_buffer *b = tw_malloc(sizeof *b);
    if (!b) return tw_errcode();
    tw_status st = be->vt->mem_alloc(be, nbytes, &b->ptr);
    if (st != TW_OK) {
        tw_free(b);
        return st;
    }
    b->be = be;
    b->size = nbytes;
    b->wrapped = 0;
    be->mem_current += nbytes;
    if (be->mem_current > be->mem_peak) be->mem_peak = be->mem_current;
    be->n_allocs++;
    be->n_live++;
    *out = b;
    return TW_OK;
}

tw_status tw_buffer_wrap_host(tw_backend *be, void *ptr, size_t n, tw_buffer **out) {
    if (!be || !out) return tw_error(TW_ERR_ARG, "tw_buffer_wrap_host: NULL backend or out");
    *out = NULL;
    if (be->kind != TW_BACKEND_CPU)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: host memory cannot be wrapped as a buffer "
                        "(allocate and upload instead)", be->name);
    if (!ptr || n == 0)
        return tw_error(TW_ERR_ARG, "%s: wrapping %s", be->name, ptr ? "0 bytes" : "NULL");
    if ((uintptr_t)ptr % 16)
        return tw_error(TW_ERR_ARG, "%s: wrapped memory at %p is not 16-byte aligned", be->name,
                        ptr);
    tw_buffer *b = tw_malloc(sizeof *b);
    if (!b) return tw_errcode();
    b->be = be;
    b->ptr = ptr;
    b->size = n;
    b->wrapped = 1;
    be->n_live++;
    *out = b;
    return TW_OK;
}

void tw_buffer_free(tw_buffer *buf) {
    if (!buf) return;
    tw_backend *be = buf->be;
    if (!buf->wrapped) {
        be->vt->mem_free(be, buf->ptr);
        be->mem_current -= buf->size;
    }
    be->n_live--;
    tw_free(buf);
}

size_t tw_buffer_size(const tw_buffer *buf) { return buf->size; }

static tw_status range_check(const tw_buffer *buf, const char *what, size_t offset, size_t n) {
    if (!buf) return tw_error(TW_ERR_ARG, "%s: buffer is NULL", what);
    if (offset > buf->size || n > buf->size - offset)
        return tw_error(TW_ERR_ARG, "%s: bytes [%zu, %zu + %zu) outside the buffer of %zu bytes",
                        what, offset, offset, n, buf->size);
    return TW_OK;
}

tw_status tw_buffer_upload(tw_buffer *buf, size_t offset, const void *src, size_t n) {
    tw_status st = range_check(buf, "tw_buffer_upload", offset, n);
    if (st != TW_OK || n == 0) return st;
    return buf->be->vt->mem_upload(buf->be, (char *)buf->ptr + offset, src, n);
}

tw_status tw_buffer_download(const tw_buffer *buf, size_t offset, void *dst, size_t n) {
    tw_status st = range_check(buf, "tw_buffer_download", offset, n);
    if (st != TW_OK || n == 0) return st;
    return buf->be->vt->mem_download(buf->be, dst, (const char *)buf->ptr + offset, n);
}

tw_status tw_buffer_zero(tw_buffer *buf, size_t offset, size_t n) {
    static const char zeros[1 << 16]; /* uploaded in pieces: works on every backend */
    tw_status st = range_check(buf, "tw_buffer_zero", offset, n);
    for (size_t at = 0; st == TW_OK && at < n; at += sizeof zeros) {
        size_t k = n - at < sizeof zeros ? n - at : sizeof zeros;
        st = buf->be->vt->mem_upload(buf->be, (char *)buf->ptr + offset + at, zeros, k);
    }
    return st;
}

/* ---- op argument checks ------------------------------------------------------------------ */

/* One tensor argument of an op, resolved. */
typedef struct {
    const char *arg; /* its name in the op's signature, for messages */
    tw_ref ref;
    size_t bytes;
    void *addr;
} op_tensor;

/* Checks that `t` (count elements of elem_size bytes, its offset a multiple of align) lies in
 * a buffer of `be` and resolves its address. */
static tw_status tensor_check_aligned(tw_backend *be, tw_op op, op_tensor *t, int64_t count,
                                      size_t elem_size, size_t align) {
    const char *opn = tw_op_name(op);
    tw_buffer *b = t->ref.buf;
    if (!b) return tw_error(TW_ERR_ARG, "%s: %s: buffer is NULL", opn, t->arg);
    if (b->be != be)
        return tw_error(TW_ERR_ARG, "%s: %s: the buffer belongs to backend %s, the op runs on %s",
                        opn, t->arg, b->be->name, be->name);
    if (t->ref.offset % align)
        return tw_error(TW_ERR_ARG, "%s: %s: offset %zu is not a multiple of %zu bytes", opn,
                        t->arg, t->ref.offset, align);
    if (count < 0 || (uint64_t)count > SIZE_MAX / elem_size)
        return tw_error(TW_ERR_ARG, "%s: %s: %" PRId64 " elements is out of range", opn, t->arg,
                        count);
    t->bytes = (size_t)count * elem_size;
    if (t->ref.offset > b->size || t->bytes > b->size - t->ref.offset)
        return tw_error(TW_ERR_ARG,
                        "%s: %s: needs bytes [%zu, %zu + %zu) but its buffer holds %zu bytes", opn,
                        t->arg, t->ref.offset, t->ref.offset, t->bytes, b->size);
    t->addr = (char *)b->ptr + t->ref.offset;
    return TW_OK;
}

static tw_status tensor_check(tw_backend *be, tw_op op, op_tensor *t, int64_t count,
                              size_t elem_size) {
    return tensor_check_aligned(be, op, t, count, elem_size, elem_size);
}

/* An optional tensor: absent (buf NULL: addr NULL, 0 bytes) or checked as tensor_check. */
static tw_status tensor_check_opt(tw_backend *be, tw_op op, op_tensor *t, int64_t count,
                                  size_t elem_size) {
    if (!t->ref.buf) {
        t->bytes = 0;
        t->addr = NULL;
        return TW_OK;
    }
    return tensor_check(be, op, t, count, elem_size);
}

/* Bytes of `rows` rows of n elements of type t, with the type and n checked for the op:
 * the type must be one of `allowed` (a -1 terminated list) and n a multiple of its block. */
static tw_status dtype_rows_check(tw_op op, const char *arg, tw_dtype t, const int *allowed,
                                  int64_t rows, int64_t n, int64_t *bytes) {
    const char *opn = tw_op_name(op), *tn = tw_dtype_name(t);
    int ok = 0;
    for (const int *a = allowed; *a >= 0; a++) ok |= *a == (int)t;
    if (!ok)
        return tw_error((unsigned)t < TW_DTYPE_COUNT && tn ? TW_ERR_UNSUPPORTED : TW_ERR_ARG,
                        "%s: %s: type %s (%d) is not supported", opn, arg, tn ? tn : "?", (int)t);
    int64_t bs = tw_dtype_block_size(t);
    if (n % bs)
        return tw_error(TW_ERR_ARG, "%s: %s: rows of %" PRId64 " elements are not a multiple "
                        "of the %s block size %" PRId64, opn, arg, n, tn, bs);
    size_t rb = tw_dtype_row_bytes(t, n);
    if (rb == 0 || (rows > 0 && (uint64_t)rows > (uint64_t)INT64_MAX / rb))
        return tw_error(TW_ERR_ARG, "%s: %s: %" PRId64 " rows of %" PRId64 " is out of range",
                        opn, arg, rows, n);
    *bytes = rows * (int64_t)rb;
    return TW_OK;
}

/* The bytes of a matmul weight W (n_out, k) of type t: NF4's layout (kernels.h: k a multiple
 * of 64), else dtype_rows_check's rows of a type in `allowed`. */
static tw_status w_bytes_check(tw_op op, tw_dtype t, const int *allowed, int64_t n_out,
                               int64_t k, int64_t *bytes) {
    if (t != TW_DTYPE_NF4) return dtype_rows_check(op, "w", t, allowed, n_out, k, bytes);
    tw_nf4_layout L;
    if (tw_nf4_layout_get(n_out, k, &L) != TW_OK)
        return tw_error_wrap("%s: w", tw_op_name(op));
    *bytes = (int64_t)L.bytes;
    return TW_OK;
}

/* Alignment a tensor of type t needs: its scalar size for plain types, 2 for the block types
 * (whose scales are fp16; the kernels load the rest unaligned), 4 for NF4 (fp32 map first). */
static size_t dtype_align(tw_dtype t) {
    if (t == TW_DTYPE_NF4) return 4;
    switch (t) {
    case TW_DTYPE_F32: return 4;
    case TW_DTYPE_F16:
    case TW_DTYPE_BF16: return 2;
    default: return 2;
    }
}

/* dst and src must be the same bytes (in-place, when allow_same) or not overlap at all. */
static tw_status overlap_check(tw_op op, const op_tensor *dst, const op_tensor *src,
                               int allow_same) {
    if (dst->ref.buf != src->ref.buf || dst->bytes == 0 || src->bytes == 0) return TW_OK;
    size_t d0 = dst->ref.offset, d1 = d0 + dst->bytes;
    size_t s0 = src->ref.offset, s1 = s0 + src->bytes;
    if (d1 <= s0 || s1 <= d0) return TW_OK;
    if (allow_same && d0 == s0 && d1 == s1) return TW_OK;
    return tw_error(TW_ERR_ARG, "%s: %s overlaps %s%s", tw_op_name(op), dst->arg, src->arg,
                    allow_same ? " (only the exact same bytes are allowed)" : "");
}

static tw_status op_dispatch(tw_backend *be, const tw_op_call *call) {
    if (!be->vt->supports(be, call->op))
        return tw_error(TW_ERR_UNSUPPORTED, "%s: op not supported by backend %s",
                        tw_op_name(call->op), be->name);
    return be->vt->op_run(be, call);
}

/* ---- ops --------------------------------------------------------------------------------- */

tw_status tw_op_add(tw_backend *be, tw_ref y, tw_ref a, tw_ref b, int64_t n) {
    if (!be) return tw_error(TW_ERR_ARG, "add: backend is NULL");
    if (n < 0) return tw_error(TW_ERR_ARG, "add: n = %" PRId64 " is negative", n);
    op_tensor ty = {"y", y, 0, NULL}, ta = {"a", a, 0, NULL}, tb = {"b", b, 0, NULL};
    tw_status st;
    if ((st = tensor_check(be, TW_OP_ADD, &ty, n, sizeof(float))) ||
        (st = tensor_check(be, TW_OP_ADD, &ta, n, sizeof(float))) ||
        (st = tensor_check(be, TW_OP_ADD, &tb, n, sizeof(float))) ||
        (st = overlap_check(TW_OP_ADD, &ty, &ta, 1)) || (st = overlap_check(TW_OP_ADD, &ty, &tb, 1)))
        return st;
    if (n == 0) return TW_OK;
    tw_op_call c = {.op = TW_OP_ADD, .dst = ty.addr, .src = {ta.addr, tb.addr}, .ne = {n}};
    return op_dispatch(be, &c);
}

tw_status tw_op_rmsnorm(tw_backend *be, tw_ref y, tw_ref x, tw_ref w, int64_t rows, int64_t n,
                        float eps) {
    if (!be) return tw_error(TW_ERR_ARG, "rmsnorm: backend is NULL");
    if (rows < 0 || rows > INT32_MAX)
        return tw_error(TW_ERR_ARG, "rmsnorm: rows = %" PRId64 " is outside [0, 2^31)", rows);
    if (n < 1 || n > INT32_MAX)
        return tw_error(TW_ERR_ARG, "rmsnorm: n = %" PRId64 " is outside [1, 2^31)", n);
    if (!isfinite(eps) || eps < 0)
        return tw_error(TW_ERR_ARG, "rmsnorm: eps = %g must be finite and >= 0", (double)eps);
    if (rows > INT64_MAX / n)
        return tw_error(TW_ERR_ARG, "rmsnorm: rows x n overflows");
    op_tensor ty = {"y", y, 0, NULL}, tx = {"x", x, 0, NULL}, tw = {"w", w, 0, NULL};
    tw_status st;
    if ((st = tensor_check(be, TW_OP_RMSNORM, &ty, rows * n, sizeof(float))) ||
        (st = tensor_check(be, TW_OP_RMSNORM, &tx, rows * n, sizeof(float))) ||
        (st = tensor_check(be, TW_OP_RMSNORM, &tw, n, sizeof(float))) ||
        (st = overlap_check(TW_OP_RMSNORM, &ty, &tx, 1)) ||
        (st = overlap_check(TW_OP_RMSNORM, &ty, &tw, 0)))
        return st;
    if (rows == 0) return TW_OK;
    tw_op_call c = {.op = TW_OP_RMSNORM,
                    .dst = ty.addr,
                    .src = {tx.addr, tw.addr},
                    .ne = {rows, n},
                    .fp = {eps}};
    return op_dispatch(be, &c);
}

/* ---- helpers for the ops below ----------------------------------------------------------- */

/* lo <= v <= hi, or TW_ERR_ARG naming the op and the argument. */
static tw_status range_arg(tw_op op, const char *arg, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return tw_error(TW_ERR_ARG, "%s: %s = %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]",
                        tw_op_name(op), arg, v, lo, hi);
    return TW_OK;
}

/* a * b without overflow past INT64_MAX (both >= 0). */
static tw_status mul_arg(tw_op op, const char *what, int64_t a, int64_t b, int64_t *out) {
    if (a > 0 && b > INT64_MAX / a)
        return tw_error(TW_ERR_ARG, "%s: %s overflows", tw_op_name(op), what);
    *out = a * b;
    return TW_OK;
}

static tw_status backend_arg(tw_op op, tw_backend *be) {
    return be ? TW_OK : tw_error(TW_ERR_ARG, "%s: backend is NULL", tw_op_name(op));
}

/* Elementwise ops over (n) fp32: y = f(a, b) or y = f(a) (b->ref.buf NULL and !has_b). */
static tw_status elementwise(tw_backend *be, tw_op op, tw_ref y, tw_ref a, tw_ref b, int has_b,
                             int64_t n, int allow_alias, tw_op_call *c) {
    tw_status st;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "n", n, 0, INT64_MAX))) return st;
    op_tensor ty = {"y", y, 0, NULL}, ta = {has_b ? "a" : "x", a, 0, NULL},
              tb = {"b", b, 0, NULL};
    if ((st = tensor_check(be, op, &ty, n, sizeof(float))) ||
        (st = tensor_check(be, op, &ta, n, sizeof(float))) ||
        (has_b && (st = tensor_check(be, op, &tb, n, sizeof(float)))) ||
        (st = overlap_check(op, &ty, &ta, allow_alias)) ||
        (has_b && (st = overlap_check(op, &ty, &tb, allow_alias))))
        return st;
    c->op = op;
    c->dst = ty.addr;
    c->src[0] = ta.addr;
    c->src[1] = has_b ? tb.addr : NULL;
    c->ne[0] = n;
    return TW_OK;
}

tw_status tw_op_mul(tw_backend *be, tw_ref y, tw_ref a, tw_ref b, int64_t n) {
    tw_op_call c = {.op = TW_OP_MUL};
    tw_status st = elementwise(be, TW_OP_MUL, y, a, b, 1, n, 1, &c);
    if (st != TW_OK || n == 0) return st;
    return op_dispatch(be, &c);
}

tw_status tw_op_scale(tw_backend *be, tw_ref y, tw_ref x, float s, int64_t n) {
    if (!isfinite(s)) return tw_error(TW_ERR_ARG, "scale: s = %g is not finite", (double)s);
    tw_op_call c = {.op = TW_OP_SCALE};
    tw_status st = elementwise(be, TW_OP_SCALE, y, x, tw_ref_none(), 0, n, 1, &c);
    if (st != TW_OK || n == 0) return st;
    c.fp[0] = s;
    return op_dispatch(be, &c);
}

tw_status tw_op_copy(tw_backend *be, tw_ref y, tw_ref x, int64_t n) {
    tw_op_call c = {.op = TW_OP_COPY};
    tw_status st = elementwise(be, TW_OP_COPY, y, x, tw_ref_none(), 0, n, 0, &c);
    if (st != TW_OK || n == 0) return st;
    return op_dispatch(be, &c);
}

tw_status tw_op_get_rows(tw_backend *be, tw_ref y, tw_ref table, tw_dtype ttype, int64_t n_rows,
                         tw_ref ids, int64_t n_ids, int64_t n) {
    static const int types[] = {TW_DTYPE_F32,  TW_DTYPE_F16,  TW_DTYPE_BF16, TW_DTYPE_Q4_0,
                                TW_DTYPE_Q4_1, TW_DTYPE_Q5_0, TW_DTYPE_Q5_1, TW_DTYPE_Q8_0,
                                TW_DTYPE_Q8_1, TW_DTYPE_Q2_K, TW_DTYPE_Q3_K, TW_DTYPE_Q4_K,
                                TW_DTYPE_Q5_K, TW_DTYPE_Q6_K, TW_DTYPE_Q8_K, -1};
    const tw_op op = TW_OP_GET_ROWS;
    tw_status st;
    int64_t tbytes = 0, ny = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "n", n, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_rows", n_rows, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_ids", n_ids, 0, INT32_MAX)) ||
        (st = dtype_rows_check(op, "table", ttype, types, n_rows, n, &tbytes)) ||
        (st = mul_arg(op, "n_ids x n", n_ids, n, &ny)))
        return st;
    op_tensor ty = {"y", y, 0, NULL}, tt = {"table", table, 0, NULL}, ti = {"ids", ids, 0, NULL};
    if ((st = tensor_check(be, op, &ty, ny, sizeof(float))) ||
        (st = tensor_check_aligned(be, op, &tt, tbytes, 1, dtype_align(ttype))) ||
        (st = tensor_check(be, op, &ti, n_ids, sizeof(int32_t))) ||
        (st = overlap_check(op, &ty, &tt, 0)) || (st = overlap_check(op, &ty, &ti, 0)))
        return st;
    if (n_ids == 0) return TW_OK;
    tw_op_call c = {.op = op,
                    .dst = ty.addr,
                    .src = {tt.addr, ti.addr},
                    .ne = {n_rows, n_ids, n},
                    .type = ttype};
    return op_dispatch(be, &c);
}

tw_status tw_op_matmul(tw_backend *be, tw_ref y, tw_ref x, tw_ref w, tw_dtype wtype, tw_ref bias,
                       int64_t m, int64_t k, int64_t n_out) {
    static const int types[] = {TW_DTYPE_F32,  TW_DTYPE_F16,  TW_DTYPE_BF16, TW_DTYPE_Q4_0,
                                TW_DTYPE_Q4_1, TW_DTYPE_Q5_0, TW_DTYPE_Q5_1, TW_DTYPE_Q8_0,
                                TW_DTYPE_Q2_K, TW_DTYPE_Q3_K, TW_DTYPE_Q4_K, TW_DTYPE_Q5_K,
                                TW_DTYPE_Q6_K, -1};
    const tw_op op = TW_OP_MATMUL;
    tw_status st;
    int64_t wbytes = 0, nx = 0, ny = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "m", m, 0, INT32_MAX)) ||
        (st = range_arg(op, "k", k, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_out", n_out, 1, INT32_MAX)) ||
        (st = w_bytes_check(op, wtype, types, n_out, k, &wbytes)) ||
        (st = mul_arg(op, "m x k", m, k, &nx)) || (st = mul_arg(op, "m x n_out", m, n_out, &ny)))
        return st;
    op_tensor ty = {"y", y, 0, NULL}, tx = {"x", x, 0, NULL}, tw = {"w", w, 0, NULL},
              tb = {"bias", bias, 0, NULL};
    if ((st = tensor_check(be, op, &ty, ny, sizeof(float))) ||
        (st = tensor_check(be, op, &tx, nx, sizeof(float))) ||
        (st = tensor_check_aligned(be, op, &tw, wbytes, 1, dtype_align(wtype))) ||
        (st = tensor_check_opt(be, op, &tb, n_out, sizeof(float))) ||
        (st = overlap_check(op, &ty, &tx, 0)) || (st = overlap_check(op, &ty, &tw, 0)) ||
        (st = overlap_check(op, &ty, &tb, 0)))
        return st;
    if (m == 0) return TW_OK;
    tw_op_call c = {.op = op,
                    .dst = ty.addr,
                    .src = {tx.addr, tw.addr, tb.addr},
                    .ne = {m, k, n_out},
                    .type = wtype};
    return op_dispatch(be, &c);
}

tw_status tw_op_layernorm(tw_backend *be, tw_ref y, tw_ref x, tw_ref w, tw_ref b, int64_t rows,
                          int64_t n, float eps) {
    const tw_op op = TW_OP_LAYERNORM;
    tw_status st;
    int64_t nx = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "rows", rows, 0, INT32_MAX)) ||
        (st = range_arg(op, "n", n, 1, INT32_MAX)) || (st = mul_arg(op, "rows x n", rows, n, &nx)))
        return st;
    if (!isfinite(eps) || eps < 0)
        return tw_error(TW_ERR_ARG, "layernorm: eps = %g must be finite and >= 0", (double)eps);
    op_tensor ty = {"y", y, 0, NULL}, tx = {"x", x, 0, NULL}, tw = {"w", w, 0, NULL},
              tb = {"b", b, 0, NULL};
    if ((st = tensor_check(be, op, &ty, nx, sizeof(float))) ||
        (st = tensor_check(be, op, &tx, nx, sizeof(float))) ||
        (st = tensor_check_opt(be, op, &tw, n, sizeof(float))) ||
        (st = tensor_check_opt(be, op, &tb, n, sizeof(float))) ||
        (st = overlap_check(op, &ty, &tx, 1)) || (st = overlap_check(op, &ty, &tw, 0)) ||
        (st = overlap_check(op, &ty, &tb, 0)))
        return st;
    if (rows == 0) return TW_OK;
    tw_op_call c = {.op = op,
                    .dst = ty.addr,
                    .src = {tx.addr, tw.addr, tb.addr},
                    .ne = {rows, n},
                    .fp = {eps}};
    return op_dispatch(be, &c);
}

static tw_status finite_arg(tw_op op, const char *arg, float v, double lo, int lo_open);

/* RoPE and its backward (the inverse rotation) take the same arguments: one check and call
 * layout for both. out/in are y/x for TW_OP_ROPE and dx/dy for TW_OP_ROPE_BWD. */
static tw_status rope_op(tw_backend *be, tw_op op, const char *out_name, tw_ref out,
                         const char *in_name, tw_ref in, tw_ref pos, int64_t n_tok, int64_t n_head,
                         int64_t head_dim, int64_t rope_dim, tw_rope_mode mode, float theta_base,
                         float freq_scale, tw_ref freq_factors) {
    tw_status st;
    int64_t nx = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "n_tok", n_tok, 0, INT32_MAX)) ||
        (st = range_arg(op, "n_head", n_head, 1, INT32_MAX)) ||
        (st = range_arg(op, "head_dim", head_dim, 2, INT32_MAX)) ||
        (st = range_arg(op, "rope_dim", rope_dim, 2, head_dim)) ||
        (st = mul_arg(op, "n_head x head_dim", n_head, head_dim, &nx)) ||
        (st = mul_arg(op, "n_tok x n_head x head_dim", n_tok, nx, &nx)) ||
        (st = finite_arg(op, "theta_base", theta_base, 0, 1)) ||
        (st = finite_arg(op, "freq_scale", freq_scale, 0, 1)))
        return st;
    if (rope_dim % 2)
        return tw_error(TW_ERR_ARG, "%s: rope_dim = %" PRId64 " is odd", tw_op_name(op), rope_dim);
    if (mode != TW_ROPE_NORM && mode != TW_ROPE_NEOX)
        return tw_error(TW_ERR_ARG, "%s: mode = %d is neither TW_ROPE_NORM nor TW_ROPE_NEOX",
                        tw_op_name(op), (int)mode);
    op_tensor to = {out_name, out, 0, NULL}, ti = {in_name, in, 0, NULL},
              tp = {"pos", pos, 0, NULL}, tf = {"freq_factors", freq_factors, 0, NULL};
    if ((st = tensor_check(be, op, &to, nx, sizeof(float))) ||
        (st = tensor_check(be, op, &ti, nx, sizeof(float))) ||
        (st = tensor_check(be, op, &tp, n_tok, sizeof(int32_t))) ||
        (st = tensor_check_opt(be, op, &tf, rope_dim / 2, sizeof(float))) ||
        (st = overlap_check(op, &to, &ti, 1)) || (st = overlap_check(op, &to, &tp, 0)) ||
        (st = overlap_check(op, &to, &tf, 0)))
        return st;
    if (n_tok == 0) return TW_OK;
    tw_op_call c = {.op = op,
                    .dst = to.addr,
                    .src = {ti.addr, tp.addr, tf.addr},
                    .ne = {n_tok, n_head, head_dim, rope_dim, mode},
                    .fp = {theta_base, freq_scale}};
    return op_dispatch(be, &c);
}

tw_status tw_op_rope(tw_backend *be, tw_ref y, tw_ref x, tw_ref pos, int64_t n_tok, int64_t n_head,
                     int64_t head_dim, int64_t rope_dim, tw_rope_mode mode, float theta_base,
                     float freq_scale, tw_ref freq_factors) {
    return rope_op(be, TW_OP_ROPE, "y", y, "x", x, pos, n_tok, n_head, head_dim, rope_dim, mode,
                   theta_base, freq_scale, freq_factors);
}

static const int cache_types[] = {TW_DTYPE_F32, TW_DTYPE_F16, -1};

tw_status tw_op_kv_write(tw_backend *be, tw_ref k_cache, tw_ref v_cache, tw_dtype cache_type,
                         int64_t n_slots, tw_ref k, tw_ref v, tw_ref slots, int64_t n_tok,
                         int64_t n_kv_head, int64_t head_dim) {
    const tw_op op = TW_OP_KV_WRITE;
    tw_status st;
    int64_t row = 0, cbytes = 0, nkv = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "n_slots", n_slots, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_tok", n_tok, 0, INT32_MAX)) ||
        (st = range_arg(op, "n_kv_head", n_kv_head, 1, INT32_MAX)) ||
        (st = range_arg(op, "head_dim", head_dim, 1, INT32_MAX)) ||
        (st = mul_arg(op, "n_kv_head x head_dim", n_kv_head, head_dim, &row)) ||
        (st = dtype_rows_check(op, "cache", cache_type, cache_types, n_slots, row, &cbytes)) ||
        (st = mul_arg(op, "n_tok x n_kv_head x head_dim", n_tok, row, &nkv)))
        return st;
    size_t al = dtype_align(cache_type);
    op_tensor tkc = {"k_cache", k_cache, 0, NULL}, tvc = {"v_cache", v_cache, 0, NULL},
              tk = {"k", k, 0, NULL}, tv = {"v", v, 0, NULL}, ts = {"slots", slots, 0, NULL};
    if ((st = tensor_check_aligned(be, op, &tkc, cbytes, 1, al)) ||
        (st = tensor_check_aligned(be, op, &tvc, cbytes, 1, al)) ||
        (st = tensor_check(be, op, &tk, nkv, sizeof(float))) ||
        (st = tensor_check(be, op, &tv, nkv, sizeof(float))) ||
        (st = tensor_check(be, op, &ts, n_tok, sizeof(int32_t))) ||
        (st = overlap_check(op, &tkc, &tvc, 0)) || (st = overlap_check(op, &tkc, &tk, 0)) ||
        (st = overlap_check(op, &tkc, &tv, 0)) || (st = overlap_check(op, &tkc, &ts, 0)) ||
        (st = overlap_check(op, &tvc, &tk, 0)) || (st = overlap_check(op, &tvc, &tv, 0)) ||
        (st = overlap_check(op, &tvc, &ts, 0)))
        return st;
    if (n_tok == 0) return TW_OK;
    tw_op_call c = {.op = op,
                    .dst = tkc.addr,
                    .dst2 = tvc.addr,
                    .src = {tk.addr, tv.addr, ts.addr},
                    .ne = {n_slots, n_tok, n_kv_head, head_dim},
                    .type = cache_type};
    return op_dispatch(be, &c);
}

tw_status tw_op_attention(tw_backend *be, tw_ref out, tw_ref q, tw_ref k_cache, tw_ref v_cache,
                          tw_dtype cache_type, int64_t n_slots, tw_ref block_table, int64_t n_seq,
                          int64_t max_blocks, int64_t page_size, tw_ref tok_seq, tw_ref tok_pos,
                          int64_t n_tok, int64_t n_head, int64_t n_kv_head, int64_t head_dim,
                          float scale) {
    const tw_op op = TW_OP_ATTENTION;
    tw_status st;
    int64_t row = 0, cbytes = 0, nq = 0, nbt = 0, span = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "n_slots", n_slots, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_seq", n_seq, 1, INT32_MAX)) ||
        (st = range_arg(op, "max_blocks", max_blocks, 1, INT32_MAX)) ||
        (st = range_arg(op, "page_size", page_size, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_tok", n_tok, 0, INT32_MAX)) ||
        (st = range_arg(op, "n_kv_head", n_kv_head, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_head", n_head, n_kv_head, INT32_MAX)) ||
        (st = range_arg(op, "head_dim", head_dim, 1, 1024)) ||
        (st = mul_arg(op, "n_kv_head x head_dim", n_kv_head, head_dim, &row)) ||
        (st = dtype_rows_check(op, "cache", cache_type, cache_types, n_slots, row, &cbytes)) ||
        (st = mul_arg(op, "n_head x head_dim", n_head, head_dim, &nq)) ||
        (st = mul_arg(op, "n_tok x n_head x head_dim", n_tok, nq, &nq)) ||
        (st = mul_arg(op, "n_seq x max_blocks", n_seq, max_blocks, &nbt)) ||
        (st = mul_arg(op, "max_blocks x page_size", max_blocks, page_size, &span)))
        return st;
    if (n_head % n_kv_head)
        return tw_error(TW_ERR_ARG, "attention: n_head = %" PRId64 " is not a multiple of "
                        "n_kv_head = %" PRId64, n_head, n_kv_head);
    if (!isfinite(scale) || scale <= 0)
        return tw_error(TW_ERR_ARG, "attention: scale = %g must be finite and > 0", (double)scale);
    size_t al = dtype_align(cache_type);
    op_tensor to = {"out", out, 0, NULL}, tq = {"q", q, 0, NULL},
              tkc = {"k_cache", k_cache, 0, NULL}, tvc = {"v_cache", v_cache, 0, NULL},
              tbt = {"block_table", block_table, 0, NULL}, ts = {"tok_seq", tok_seq, 0, NULL},
              tp = {"tok_pos", tok_pos, 0, NULL};
    if ((st = tensor_check(be, op, &to, nq, sizeof(float))) ||
        (st = tensor_check(be, op, &tq, nq, sizeof(float))) ||
        (st = tensor_check_aligned(be, op, &tkc, cbytes, 1, al)) ||
        (st = tensor_check_aligned(be, op, &tvc, cbytes, 1, al)) ||
        (st = tensor_check(be, op, &tbt, nbt, sizeof(int32_t))) ||
        (st = tensor_check(be, op, &ts, n_tok, sizeof(int32_t))) ||
        (st = tensor_check(be, op, &tp, n_tok, sizeof(int32_t))) ||
        (st = overlap_check(op, &to, &tq, 0)) || (st = overlap_check(op, &to, &tkc, 0)) ||
        (st = overlap_check(op, &to, &tvc, 0)) || (st = overlap_check(op, &to, &tbt, 0)) ||
        (st = overlap_check(op, &to, &ts, 0)) || (st = overlap_check(op, &to, &tp, 0)))
        return st;
    if (n_tok == 0) return TW_OK;
    tw_op_call c = {.op = op,
                    .dst = to.addr,
                    .src = {tq.addr, tkc.addr, tvc.addr, tbt.addr, ts.addr, tp.addr},
                    .ne = {n_slots, n_seq, max_blocks, page_size, n_tok, n_head, n_kv_head,
                           head_dim},
                    .fp = {scale},
                    .type = cache_type};
    return op_dispatch(be, &c);
}

/* Row ops over (rows, n) fp32 with one or two sources: y may alias each source. */
static tw_status rowwise(tw_backend *be, tw_op op, tw_ref y, tw_ref a, const char *aname,
                         tw_ref b, const char *bname, int64_t rows, int64_t n, tw_op_call *c) {
    tw_status st;
    int64_t nx = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "rows", rows, 0, INT32_MAX)) ||
        (st = range_arg(op, "n", n, 1, INT32_MAX)) || (st = mul_arg(op, "rows x n", rows, n, &nx)))
        return st;
    op_tensor ty = {"y", y, 0, NULL}, ta = {aname, a, 0, NULL}, tb = {bname, b, 0, NULL};
    if ((st = tensor_check(be, op, &ty, nx, sizeof(float))) ||
        (st = tensor_check(be, op, &ta, nx, sizeof(float))) ||
        (bname && (st = tensor_check(be, op, &tb, nx, sizeof(float)))) ||
        (st = overlap_check(op, &ty, &ta, 1)) || (bname && (st = overlap_check(op, &ty, &tb, 1))))
        return st;
    c->op = op;
    c->dst = ty.addr;
    c->src[0] = ta.addr;
    c->src[1] = bname ? tb.addr : NULL;
    c->ne[0] = rows;
    c->ne[1] = n;
    return TW_OK;
}

tw_status tw_op_swiglu(tw_backend *be, tw_ref y, tw_ref gate, tw_ref up, int64_t rows, int64_t n) {
    tw_op_call c = {.op = TW_OP_SWIGLU};
    tw_status st = rowwise(be, TW_OP_SWIGLU, y, gate, "gate", up, "up", rows, n, &c);
    if (st != TW_OK || rows == 0) return st;
    return op_dispatch(be, &c);
}

tw_status tw_op_gelu(tw_backend *be, tw_ref y, tw_ref x, int64_t n, tw_gelu_mode mode) {
    if (mode != TW_GELU_TANH && mode != TW_GELU_ERF)
        return tw_error(TW_ERR_ARG, "gelu: mode = %d is neither TW_GELU_TANH nor TW_GELU_ERF",
                        (int)mode);
    tw_op_call c = {.op = TW_OP_GELU};
    tw_status st = elementwise(be, TW_OP_GELU, y, x, tw_ref_none(), 0, n, 1, &c);
    if (st != TW_OK || n == 0) return st;
    c.ne[1] = mode;
    return op_dispatch(be, &c);
}

tw_status tw_op_softmax(tw_backend *be, tw_ref y, tw_ref x, int64_t rows, int64_t n, float scale) {
    if (!isfinite(scale))
        return tw_error(TW_ERR_ARG, "softmax: scale = %g is not finite", (double)scale);
    tw_op_call c = {.op = TW_OP_SOFTMAX};
    tw_status st = rowwise(be, TW_OP_SOFTMAX, y, x, "x", tw_ref_none(), NULL, rows, n, &c);
    if (st != TW_OK || rows == 0) return st;
    c.fp[0] = scale;
    return op_dispatch(be, &c);
}

tw_status tw_op_argmax(tw_backend *be, tw_ref idx, tw_ref x, int64_t rows, int64_t n) {
    const tw_op op = TW_OP_ARGMAX;
    tw_status st;
    int64_t nx = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "rows", rows, 0, INT32_MAX)) ||
        (st = range_arg(op, "n", n, 1, INT32_MAX)) || (st = mul_arg(op, "rows x n", rows, n, &nx)))
        return st;
    op_tensor ti = {"idx", idx, 0, NULL}, tx = {"x", x, 0, NULL};
    if ((st = tensor_check(be, op, &ti, rows, sizeof(int32_t))) ||
        (st = tensor_check(be, op, &tx, nx, sizeof(float))) || (st = overlap_check(op, &ti, &tx, 0)))
        return st;
    if (rows == 0) return TW_OK;
    tw_op_call c = {.op = op, .dst = ti.addr, .src = {tx.addr}, .ne = {rows, n}};
    return op_dispatch(be, &c);
}

tw_status tw_op_topk(tw_backend *be, tw_ref vals, tw_ref idx, tw_ref x, int64_t rows, int64_t n,
                     int64_t k) {
    const tw_op op = TW_OP_TOPK;
    tw_status st;
    int64_t nx = 0, nk = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "rows", rows, 0, INT32_MAX)) ||
        (st = range_arg(op, "n", n, 1, INT32_MAX)) || (st = range_arg(op, "k", k, 1, n)) ||
        (st = mul_arg(op, "rows x n", rows, n, &nx)) || (st = mul_arg(op, "rows x k", rows, k, &nk)))
        return st;
    op_tensor tv = {"vals", vals, 0, NULL}, ti = {"idx", idx, 0, NULL}, tx = {"x", x, 0, NULL};
    if ((st = tensor_check(be, op, &tv, nk, sizeof(float))) ||
        (st = tensor_check(be, op, &ti, nk, sizeof(int32_t))) ||
        (st = tensor_check(be, op, &tx, nx, sizeof(float))) || (st = overlap_check(op, &tv, &ti, 0)) ||
        (st = overlap_check(op, &tv, &tx, 0)) || (st = overlap_check(op, &ti, &tx, 0)))
        return st;
    if (rows == 0) return TW_OK;
    tw_op_call c = {
        .op = op, .dst = tv.addr, .dst2 = ti.addr, .src = {tx.addr}, .ne = {rows, n, k}};
    return op_dispatch(be, &c);
}

/* ---- segment attention (training ops) ---------------------------------------------------- */

/* The shape arguments shared by ATTN_SEG and its backward; *nq, *nkv: elements of a q-shaped
 * and a k-shaped tensor, *nl: of lse. */
static tw_status attn_seg_shape_check(tw_op op, int64_t n_tok, int64_t n_head, int64_t n_kv_head,
                                      int64_t head_dim, float scale, int causal, int64_t *nq,
                                      int64_t *nkv, int64_t *nl) {
    tw_status st;
    if ((st = range_arg(op, "n_tok", n_tok, 0, INT32_MAX)) ||
        (st = range_arg(op, "n_kv_head", n_kv_head, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_head", n_head, n_kv_head, INT32_MAX)) ||
        (st = range_arg(op, "head_dim", head_dim, 1, 1024)) ||
        (st = mul_arg(op, "n_tok x n_head", n_tok, n_head, nl)) ||
        (st = mul_arg(op, "n_tok x n_head x head_dim", *nl, head_dim, nq)) ||
        (st = mul_arg(op, "n_tok x n_kv_head", n_tok, n_kv_head, nkv)) ||
        (st = mul_arg(op, "n_tok x n_kv_head x head_dim", *nkv, head_dim, nkv)))
        return st;
    if (n_head % n_kv_head)
        return tw_error(TW_ERR_ARG, "%s: n_head = %" PRId64 " is not a multiple of n_kv_head = %"
                        PRId64, tw_op_name(op), n_head, n_kv_head);
    if (!isfinite(scale) || scale <= 0)
        return tw_error(TW_ERR_ARG, "%s: scale = %g must be finite and > 0", tw_op_name(op),
                        (double)scale);
    if (causal != 0 && causal != 1)
        return tw_error(TW_ERR_ARG, "%s: causal = %d must be 0 or 1", tw_op_name(op), causal);
    return TW_OK;
}

tw_status tw_op_attn_seg(tw_backend *be, tw_ref out, tw_ref lse, tw_ref q, tw_ref k, tw_ref v,
                         tw_ref seg, int64_t n_tok, int64_t n_head, int64_t n_kv_head,
                         int64_t head_dim, float scale, int causal) {
    const tw_op op = TW_OP_ATTN_SEG;
    tw_status st;
    int64_t nq = 0, nkv = 0, nl = 0;
    if ((st = backend_arg(op, be)) ||
        (st = attn_seg_shape_check(op, n_tok, n_head, n_kv_head, head_dim, scale, causal, &nq,
                                   &nkv, &nl)))
        return st;
    op_tensor to = {"out", out, 0, NULL}, tl = {"lse", lse, 0, NULL}, tq = {"q", q, 0, NULL},
              tk = {"k", k, 0, NULL}, tv = {"v", v, 0, NULL}, ts = {"seg", seg, 0, NULL};
    const op_tensor *srcs[] = {&tq, &tk, &tv, &ts};
    if ((st = tensor_check(be, op, &to, nq, sizeof(float))) ||
        (st = tensor_check_opt(be, op, &tl, nl, sizeof(float))) ||
        (st = tensor_check(be, op, &tq, nq, sizeof(float))) ||
        (st = tensor_check(be, op, &tk, nkv, sizeof(float))) ||
        (st = tensor_check(be, op, &tv, nkv, sizeof(float))) ||
        (st = tensor_check(be, op, &ts, n_tok, sizeof(int32_t))) ||
        (st = overlap_check(op, &to, &tl, 0)))
        return st;
    for (int i = 0; i < 4; i++)
        if ((st = overlap_check(op, &to, srcs[i], 0)) || (st = overlap_check(op, &tl, srcs[i], 0)))
            return st;
    if (n_tok == 0) return TW_OK;
    tw_op_call c = {.op = op,
                    .dst = to.addr,
                    .dst2 = tl.addr,
                    .src = {tq.addr, tk.addr, tv.addr, ts.addr},
                    .ne = {n_tok, n_head, n_kv_head, head_dim, causal},
                    .fp = {scale}};
    return op_dispatch(be, &c);
}

tw_status tw_op_attn_seg_bwd(tw_backend *be, tw_ref dq, tw_ref dk, tw_ref dv, tw_ref dout,
                             tw_ref out, tw_ref lse, tw_ref q, tw_ref k, tw_ref v, tw_ref seg,
                             int64_t n_tok, int64_t n_head, int64_t n_kv_head, int64_t head_dim,
                             float scale, int causal) {
    const tw_op op = TW_OP_ATTN_SEG_BWD;
    tw_status st;
    int64_t nq = 0, nkv = 0, nl = 0;
    if ((st = backend_arg(op, be)) ||
        (st = attn_seg_shape_check(op, n_tok, n_head, n_kv_head, head_dim, scale, causal, &nq,
                                   &nkv, &nl)))
        return st;
    op_tensor tdq = {"dq", dq, 0, NULL}, tdk = {"dk", dk, 0, NULL}, tdv = {"dv", dv, 0, NULL},
              tdo = {"dout", dout, 0, NULL}, to = {"out", out, 0, NULL},
              tl = {"lse", lse, 0, NULL}, tq = {"q", q, 0, NULL}, tk = {"k", k, 0, NULL},
              tv = {"v", v, 0, NULL}, ts = {"seg", seg, 0, NULL};
    if ((st = tensor_check(be, op, &tdq, nq, sizeof(float))) ||
        (st = tensor_check(be, op, &tdk, nkv, sizeof(float))) ||
        (st = tensor_check(be, op, &tdv, nkv, sizeof(float))) ||
        (st = tensor_check(be, op, &tdo, nq, sizeof(float))) ||
        (st = tensor_check(be, op, &to, nq, sizeof(float))) ||
        (st = tensor_check(be, op, &tl, nl, sizeof(float))) ||
        (st = tensor_check(be, op, &tq, nq, sizeof(float))) ||
        (st = tensor_check(be, op, &tk, nkv, sizeof(float))) ||
        (st = tensor_check(be, op, &tv, nkv, sizeof(float))) ||
        (st = tensor_check(be, op, &ts, n_tok, sizeof(int32_t))))
        return st;
    const op_tensor *dsts[] = {&tdq, &tdk, &tdv};
    const op_tensor *srcs[] = {&tdo, &to, &tl, &tq, &tk, &tv, &ts};
    for (int i = 0; i < 3; i++) {
        for (int j = i + 1; j < 3; j++)
            if ((st = overlap_check(op, dsts[i], dsts[j], 0))) return st;
        for (int j = 0; j < 7; j++)
            if ((st = overlap_check(op, dsts[i], srcs[j], 0))) return st;
    }
    if (n_tok == 0) return TW_OK;
    tw_op_call c = {.op = op,
                    .dst = tdq.addr,
                    .dst2 = tdk.addr,
                    .dst3 = tdv.addr,
                    .src = {tdo.addr, to.addr, tl.addr, tq.addr, tk.addr, tv.addr, ts.addr},
                    .ne = {n_tok, n_head, n_kv_head, head_dim, causal},
                    .fp = {scale}};
    return op_dispatch(be, &c);
}

/* ---- training ops: backward passes, fused cross-entropy, AdamW ---------------------------- */

static tw_status flag_arg(tw_op op, const char *arg, int v) {
    return v == 0 || v == 1 ? TW_OK
                            : tw_error(TW_ERR_ARG, "%s: %s = %d must be 0 or 1", tw_op_name(op),
                                       arg, v);
}

static tw_status finite_arg(tw_op op, const char *arg, float v, double lo, int lo_open) {
    if (!isfinite(v) || v < lo || (lo_open && v == lo))
        return tw_error(TW_ERR_ARG, "%s: %s = %g must be finite and %s %g", tw_op_name(op), arg,
                        (double)v, lo_open ? ">" : ">=", lo);
    return TW_OK;
}

/* No overlap between any output of outs (n_outs) and any other tensor of all (n_all). Absent
 * tensors (0 bytes) never overlap. */
static tw_status overlaps_check(tw_op op, op_tensor *const *outs, int n_outs,
                                op_tensor *const *all, int n_all) {
    tw_status st;
    for (int i = 0; i < n_outs; i++)
        for (int j = 0; j < n_all; j++)
            if (outs[i] != all[j] && (st = overlap_check(op, outs[i], all[j], 0))) return st;
    return TW_OK;
}

static const int matmul_types[] = {TW_DTYPE_F32,  TW_DTYPE_F16,  TW_DTYPE_BF16, TW_DTYPE_Q4_0,
                                   TW_DTYPE_Q4_1, TW_DTYPE_Q5_0, TW_DTYPE_Q5_1, TW_DTYPE_Q8_0,
                                   TW_DTYPE_Q2_K, TW_DTYPE_Q3_K, TW_DTYPE_Q4_K, TW_DTYPE_Q5_K,
                                   TW_DTYPE_Q6_K, -1};

tw_status tw_op_matmul_dx(tw_backend *be, tw_ref dx, tw_ref dy, tw_ref w, tw_dtype wtype,
                          int64_t m, int64_t k, int64_t n_out, int accumulate) {
    const tw_op op = TW_OP_MATMUL_DX;
    tw_status st;
    int64_t wbytes = 0, nx = 0, ny = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "m", m, 0, INT32_MAX)) ||
        (st = range_arg(op, "k", k, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_out", n_out, 1, INT32_MAX)) ||
        (st = flag_arg(op, "accumulate", accumulate)) ||
        (st = w_bytes_check(op, wtype, matmul_types, n_out, k, &wbytes)) ||
        (st = mul_arg(op, "m x k", m, k, &nx)) || (st = mul_arg(op, "m x n_out", m, n_out, &ny)))
        return st;
    op_tensor tdx = {"dx", dx, 0, NULL}, tdy = {"dy", dy, 0, NULL}, tw = {"w", w, 0, NULL};
    if ((st = tensor_check(be, op, &tdx, nx, sizeof(float))) ||
        (st = tensor_check(be, op, &tdy, ny, sizeof(float))) ||
        (st = tensor_check_aligned(be, op, &tw, wbytes, 1, dtype_align(wtype))) ||
        (st = overlap_check(op, &tdx, &tdy, 0)) || (st = overlap_check(op, &tdx, &tw, 0)))
        return st;
    if (m == 0) return TW_OK;
    tw_op_call c = {.op = op, .dst = tdx.addr, .src = {tdy.addr, tw.addr},
                    .ne = {m, k, n_out, accumulate}, .type = wtype};
    return op_dispatch(be, &c);
}

tw_status tw_op_matmul_dw(tw_backend *be, tw_ref dw, tw_ref dbias, tw_ref dy, tw_ref x,
                          int64_t m, int64_t k, int64_t n_out, int accumulate) {
    const tw_op op = TW_OP_MATMUL_DW;
    tw_status st;
    int64_t nw = 0, nx = 0, ny = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "m", m, 0, INT32_MAX)) ||
        (st = range_arg(op, "k", k, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_out", n_out, 1, INT32_MAX)) ||
        (st = flag_arg(op, "accumulate", accumulate)) ||
        (st = mul_arg(op, "n_out x k", n_out, k, &nw)) || (st = mul_arg(op, "m x k", m, k, &nx)) ||
        (st = mul_arg(op, "m x n_out", m, n_out, &ny)))
        return st;
    op_tensor tdw = {"dw", dw, 0, NULL}, tdb = {"dbias", dbias, 0, NULL},
              tdy = {"dy", dy, 0, NULL}, tx = {"x", x, 0, NULL};
    op_tensor *outs[] = {&tdw, &tdb}, *all[] = {&tdw, &tdb, &tdy, &tx};
    if ((st = tensor_check(be, op, &tdw, nw, sizeof(float))) ||
        (st = tensor_check_opt(be, op, &tdb, n_out, sizeof(float))) ||
        (st = tensor_check(be, op, &tdy, ny, sizeof(float))) ||
        (st = tensor_check(be, op, &tx, nx, sizeof(float))) ||
        (st = overlaps_check(op, outs, 2, all, 4)))
        return st;
    if (m == 0 && accumulate) return TW_OK; /* m = 0 and overwrite: the outputs become 0 */
    tw_op_call c = {.op = op, .dst = tdw.addr, .dst2 = tdb.addr, .src = {tdy.addr, tx.addr},
                    .ne = {m, k, n_out, accumulate}};
    return op_dispatch(be, &c);
}

/* The norms' backward: dx (rows, n) overwritten; dw, db (n) accumulated or absent; w (n)
 * required (rmsnorm) or optional (layernorm). */
static tw_status norm_bwd(tw_backend *be, tw_op op, tw_ref dx, tw_ref dw, tw_ref db, tw_ref dy,
                          tw_ref x, tw_ref w, int w_required, int64_t rows, int64_t n, float eps,
                          tw_op_call *c) {
    tw_status st;
    int64_t nx = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "rows", rows, 0, INT32_MAX)) ||
        (st = range_arg(op, "n", n, 1, INT32_MAX)) || (st = mul_arg(op, "rows x n", rows, n, &nx)) ||
        (st = finite_arg(op, "eps", eps, 0, 0)))
        return st;
    op_tensor tdx = {"dx", dx, 0, NULL}, tdw = {"dw", dw, 0, NULL}, tdb = {"db", db, 0, NULL},
              tdy = {"dy", dy, 0, NULL}, tx = {"x", x, 0, NULL}, tw = {"w", w, 0, NULL};
    op_tensor *outs[] = {&tdx, &tdw, &tdb}, *all[] = {&tdx, &tdw, &tdb, &tdy, &tx, &tw};
    if ((st = tensor_check(be, op, &tdx, nx, sizeof(float))) ||
        (st = tensor_check_opt(be, op, &tdw, n, sizeof(float))) ||
        (st = tensor_check_opt(be, op, &tdb, n, sizeof(float))) ||
        (st = tensor_check(be, op, &tdy, nx, sizeof(float))) ||
        (st = tensor_check(be, op, &tx, nx, sizeof(float))) ||
        (st = (w_required ? tensor_check : tensor_check_opt)(be, op, &tw, n, sizeof(float))) ||
        (st = overlaps_check(op, outs, 3, all, 6)))
        return st;
    *c = (tw_op_call){.op = op, .dst = tdx.addr, .dst2 = tdw.addr, .dst3 = tdb.addr,
                      .src = {tdy.addr, tx.addr, tw.addr}, .ne = {rows, n}, .fp = {eps}};
    return TW_OK;
}

tw_status tw_op_rmsnorm_bwd(tw_backend *be, tw_ref dx, tw_ref dw, tw_ref dy, tw_ref x, tw_ref w,
                            int64_t rows, int64_t n, float eps) {
    tw_op_call c;
    tw_status st = norm_bwd(be, TW_OP_RMSNORM_BWD, dx, dw, tw_ref_none(), dy, x, w, 1, rows, n,
                            eps, &c);
    return st != TW_OK || rows == 0 ? st : op_dispatch(be, &c);
}

tw_status tw_op_layernorm_bwd(tw_backend *be, tw_ref dx, tw_ref dw, tw_ref db, tw_ref dy,
                              tw_ref x, tw_ref w, int64_t rows, int64_t n, float eps) {
    tw_op_call c;
    tw_status st = norm_bwd(be, TW_OP_LAYERNORM_BWD, dx, dw, db, dy, x, w, 0, rows, n, eps, &c);
    return st != TW_OK || rows == 0 ? st : op_dispatch(be, &c);
}

tw_status tw_op_rope_bwd(tw_backend *be, tw_ref dx, tw_ref dy, tw_ref pos, int64_t n_tok,
                         int64_t n_head, int64_t head_dim, int64_t rope_dim, tw_rope_mode mode,
                         float theta_base, float freq_scale, tw_ref freq_factors) {
    return rope_op(be, TW_OP_ROPE_BWD, "dx", dx, "dy", dy, pos, n_tok, n_head, head_dim, rope_dim,
                   mode, theta_base, freq_scale, freq_factors);
}

tw_status tw_op_swiglu_bwd(tw_backend *be, tw_ref dgate, tw_ref dup, tw_ref dy, tw_ref gate,
                           tw_ref up, int64_t rows, int64_t n) {
    const tw_op op = TW_OP_SWIGLU_BWD;
    tw_status st;
    int64_t nx = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "rows", rows, 0, INT32_MAX)) ||
        (st = range_arg(op, "n", n, 1, INT32_MAX)) || (st = mul_arg(op, "rows x n", rows, n, &nx)))
        return st;
    op_tensor tdg = {"dgate", dgate, 0, NULL}, tdu = {"dup", dup, 0, NULL},
              tdy = {"dy", dy, 0, NULL}, tg = {"gate", gate, 0, NULL}, tu = {"up", up, 0, NULL};
    op_tensor *outs[] = {&tdg, &tdu}, *all[] = {&tdg, &tdu, &tdy, &tg, &tu};
    for (int i = 0; i < 5; i++)
        if ((st = tensor_check(be, op, all[i], nx, sizeof(float)))) return st;
    if ((st = overlaps_check(op, outs, 2, all, 5))) return st;
    if (rows == 0) return TW_OK;
    tw_op_call c = {.op = op, .dst = tdg.addr, .dst2 = tdu.addr,
                    .src = {tdy.addr, tg.addr, tu.addr}, .ne = {rows, n}};
    return op_dispatch(be, &c);
}

tw_status tw_op_gelu_bwd(tw_backend *be, tw_ref dx, tw_ref dy, tw_ref x, int64_t n,
                         tw_gelu_mode mode) {
    const tw_op op = TW_OP_GELU_BWD;
    tw_status st;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "n", n, 0, INT64_MAX))) return st;
    if (mode != TW_GELU_TANH && mode != TW_GELU_ERF)
        return tw_error(TW_ERR_ARG, "gelu_bwd: mode = %d is neither TW_GELU_TANH nor TW_GELU_ERF",
                        (int)mode);
    op_tensor tdx = {"dx", dx, 0, NULL}, tdy = {"dy", dy, 0, NULL}, tx = {"x", x, 0, NULL};
    if ((st = tensor_check(be, op, &tdx, n, sizeof(float))) ||
        (st = tensor_check(be, op, &tdy, n, sizeof(float))) ||
        (st = tensor_check(be, op, &tx, n, sizeof(float))) ||
        (st = overlap_check(op, &tdx, &tdy, 1)) || (st = overlap_check(op, &tdx, &tx, 0)))
        return st;
    if (n == 0) return TW_OK;
    tw_op_call c = {.op = op, .dst = tdx.addr, .src = {tdy.addr, tx.addr}, .ne = {n, mode}};
    return op_dispatch(be, &c);
}

tw_status tw_op_embed_bwd(tw_backend *be, tw_ref dtable, tw_ref dy, tw_ref ids, int64_t n_rows,
                          int64_t n_ids, int64_t n) {
    const tw_op op = TW_OP_EMBED_BWD;
    tw_status st;
    int64_t nt = 0, ny = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "n_rows", n_rows, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_ids", n_ids, 0, INT32_MAX)) ||
        (st = range_arg(op, "n", n, 1, INT32_MAX)) ||
        (st = mul_arg(op, "n_rows x n", n_rows, n, &nt)) || (st = mul_arg(op, "n_ids x n", n_ids, n, &ny)))
        return st;
    op_tensor tt = {"dtable", dtable, 0, NULL}, tdy = {"dy", dy, 0, NULL},
              ti = {"ids", ids, 0, NULL};
    if ((st = tensor_check(be, op, &tt, nt, sizeof(float))) ||
        (st = tensor_check(be, op, &tdy, ny, sizeof(float))) ||
        (st = tensor_check(be, op, &ti, n_ids, sizeof(int32_t))) ||
        (st = overlap_check(op, &tt, &tdy, 0)) || (st = overlap_check(op, &tt, &ti, 0)))
        return st;
    if (n_ids == 0) return TW_OK;
    tw_op_call c = {.op = op, .dst = tt.addr, .src = {tdy.addr, ti.addr}, .ne = {n_rows, n_ids, n}};
    return op_dispatch(be, &c);
}

tw_status tw_op_xent(tw_backend *be, tw_ref loss, tw_ref dh, tw_ref dw, tw_ref h, tw_ref w,
                     tw_dtype wtype, tw_ref target, int64_t n_tok, int64_t d, int64_t n_vocab,
                     float grad_scale) {
    const tw_op op = TW_OP_XENT;
    tw_status st;
    int64_t wbytes = 0, nh = 0, nw = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "n_tok", n_tok, 0, INT32_MAX)) ||
        (st = range_arg(op, "d", d, 1, INT32_MAX)) ||
        (st = range_arg(op, "n_vocab", n_vocab, 1, INT32_MAX)) ||
        (st = dtype_rows_check(op, "w", wtype, matmul_types, n_vocab, d, &wbytes)) ||
        (st = mul_arg(op, "n_tok x d", n_tok, d, &nh)) ||
        (st = mul_arg(op, "n_vocab x d", n_vocab, d, &nw)))
        return st;
    if (!isfinite(grad_scale))
        return tw_error(TW_ERR_ARG, "xent: grad_scale = %g is not finite", (double)grad_scale);
    op_tensor tl = {"loss", loss, 0, NULL}, tdh = {"dh", dh, 0, NULL}, tdw = {"dw", dw, 0, NULL},
              th = {"h", h, 0, NULL}, tw = {"w", w, 0, NULL}, tt = {"target", target, 0, NULL};
    op_tensor *outs[] = {&tl, &tdh, &tdw}, *all[] = {&tl, &tdh, &tdw, &th, &tw, &tt};
    if ((st = tensor_check(be, op, &tl, n_tok, sizeof(float))) ||
        (st = tensor_check_opt(be, op, &tdh, nh, sizeof(float))) ||
        (st = tensor_check_opt(be, op, &tdw, nw, sizeof(float))) ||
        (st = tensor_check(be, op, &th, nh, sizeof(float))) ||
        (st = tensor_check_aligned(be, op, &tw, wbytes, 1, dtype_align(wtype))) ||
        (st = tensor_check(be, op, &tt, n_tok, sizeof(int32_t))) ||
        (st = overlaps_check(op, outs, 3, all, 6)))
        return st;
    if (n_tok == 0) return TW_OK;
    tw_op_call c = {.op = op, .dst = tl.addr, .dst2 = tdh.addr, .dst3 = tdw.addr,
                    .src = {th.addr, tw.addr, tt.addr}, .ne = {n_tok, d, n_vocab},
                    .fp = {grad_scale}, .type = wtype};
    return op_dispatch(be, &c);
}

tw_status tw_op_adamw(tw_backend *be, tw_ref p, tw_ref g, tw_ref m, tw_ref v, int64_t n,
                      float lr, float b1, float b2, float eps, float weight_decay,
                      float grad_scale, int64_t step) {
    const tw_op op = TW_OP_ADAMW;
    tw_status st;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "n", n, 0, INT64_MAX)) ||
        (st = range_arg(op, "step", step, 1, INT64_MAX)) || (st = finite_arg(op, "lr", lr, 0, 0)) ||
        (st = finite_arg(op, "b1", b1, 0, 0)) || (st = finite_arg(op, "b2", b2, 0, 0)) ||
        (st = finite_arg(op, "eps", eps, 0, 1)) ||
        (st = finite_arg(op, "weight_decay", weight_decay, 0, 0)))
        return st;
    if (b1 >= 1 || b2 >= 1)
        return tw_error(TW_ERR_ARG, "adamw: b1 = %g and b2 = %g must be below 1", (double)b1,
                        (double)b2);
    if (!isfinite(grad_scale))
        return tw_error(TW_ERR_ARG, "adamw: grad_scale = %g is not finite", (double)grad_scale);
    op_tensor tp = {"p", p, 0, NULL}, tg = {"g", g, 0, NULL}, tm = {"m", m, 0, NULL},
              tv = {"v", v, 0, NULL};
    op_tensor *outs[] = {&tp, &tm, &tv}, *all[] = {&tp, &tg, &tm, &tv};
    for (int i = 0; i < 4; i++)
        if ((st = tensor_check(be, op, all[i], n, sizeof(float)))) return st;
    if ((st = overlaps_check(op, outs, 3, all, 4))) return st;
    if (n == 0) return TW_OK;
    tw_op_call c = {.op = op, .dst = tp.addr, .dst2 = tm.addr, .dst3 = tv.addr, .src = {tg.addr},
                    .ne = {n, step}, .fp = {lr, b1, b2, eps, weight_decay, grad_scale}};
    return op_dispatch(be, &c);
}

tw_status tw_op_dropout(tw_backend *be, tw_ref y, tw_ref x, int64_t rows, int64_t n, float p,
                        uint64_t key, int64_t row0) {
    const tw_op op = TW_OP_DROPOUT;
    tw_status st;
    int64_t nx = 0;
    if ((st = backend_arg(op, be)) || (st = range_arg(op, "rows", rows, 0, INT64_MAX)) ||
        (st = range_arg(op, "n", n, 1, INT32_MAX)) ||
        (st = range_arg(op, "row0", row0, 0, INT64_MAX - rows)) ||
        (st = mul_arg(op, "rows x n", rows, n, &nx)) || (st = finite_arg(op, "p", p, 0, 0)))
        return st;
    if (!(p < 1)) return tw_error(TW_ERR_ARG, "dropout: p = %g must be below 1", (double)p);
    op_tensor ty = {"y", y, 0, NULL}, tx = {"x", x, 0, NULL};
    if ((st = tensor_check(be, op, &ty, nx, sizeof(float))) ||
        (st = tensor_check(be, op, &tx, nx, sizeof(float))) || (st = overlap_check(op, &ty, &tx, 1)))
        return st;
    if (rows == 0) return TW_OK;
    tw_op_call c = {.op = op, .dst = ty.addr, .src = {tx.addr},
                    .ne = {rows, n, row0, (int64_t)key}, .fp = {p}};
    return op_dispatch(be, &c);
}
