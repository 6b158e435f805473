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
    be->mem_current += nbytes;
    if (be->mem_current > be->mem_peak) be->mem_peak = be->mem_current;
    be->n_allocs++;
    be->n_live++;
    *out = b;
    return TW_OK;
}

void tw_buffer_free(tw_buffer *buf) {
    if (!buf) return;
    tw_backend *be = buf->be;
    be->vt->mem_free(be, buf->ptr);
    be->mem_current -= buf->size;
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

/* ---- op argument checks ------------------------------------------------------------------ */

/* One tensor argument of an op, resolved. */
typedef struct {
    const char *arg; /* its name in the op's signature, for messages */
    tw_ref ref;
    size_t bytes;
    void *addr;
} op_tensor;

/* Checks that `t` (count elements of elem_size bytes) lies in a buffer of `be`, aligned, and
 * resolves its address. */
static tw_status tensor_check(tw_backend *be, tw_op op, op_tensor *t, int64_t count,
                              size_t elem_size) {
    const char *opn = tw_op_name(op);
    tw_buffer *b = t->ref.buf;
    if (!b) return tw_error(TW_ERR_ARG, "%s: %s: buffer is NULL", opn, t->arg);
    if (b->be != be)
        return tw_error(TW_ERR_ARG, "%s: %s: the buffer belongs to backend %s, the op runs on %s",
                        opn, t->arg, b->be->name, be->name);
    if (t->ref.offset % elem_size)
        return tw_error(TW_ERR_ARG, "%s: %s: offset %zu is not a multiple of %zu bytes", opn,
                        t->arg, t->ref.offset, elem_size);
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
