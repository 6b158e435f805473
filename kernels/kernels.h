/* kernels.h: the op table and the backend handle (ARCHITECTURE.md, "Backends").
 *
 * One op table, several backends. Engine code opens a backend, allocates its tensors in
 * buffers the backend owns, moves bytes in and out through the handle, and runs ops through
 * the handle. It never holds a raw device pointer, so the same engine code runs on the CPU
 * and on a CUDA device.
 *
 *   tw_backend_open("auto" | "cpu" | "cuda" | "cuda:N")   pick and open a backend
 *   tw_buffer_alloc / _free / _upload / _download           backend-owned memory, accounted
 *   tw_op_<name>(be, ...)                                   run one op (asynchronous on CUDA)
 *   tw_backend_sync(be)                                     wait; reports asynchronous failures
 *
 * Every op has a naive fp64-accumulating CPU reference (kernels/cpu/ref_<op>.c) that is its
 * specification; the optimized CPU kernels and every CUDA kernel are tested against it
 * (tests/unit/test_kernels_cpu.c, tests/gpu/test_cuda_ops.c).
 *
 * Adding an op: append it to tw_op (bump the pinned count), name it in backend.c, give it a
 * reference in kernels/cpu/ref_<op>.c, a case in both differential tests, then implement it in
 * the backends that can; a backend that does not list it in its `supports` answers
 * TW_ERR_UNSUPPORTED for it.
 *
 * Thread safety: a tw_backend and its buffers are used by one thread at a time (like a CUDA
 * stream); different handles may be used from different threads. The free functions of this
 * header that take no handle (names, CPU features, device queries) are thread-safe.
 */
#ifndef TWIN_KERNELS_H
#define TWIN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the op table -------------------------------------------------------------------------
 *
 * Shapes are row-major, last index fastest, and written (rows, n). All element types are fp32
 * for now; quantized weights arrive with matmul. "dst may alias src" means exactly the same
 * bytes (in-place); partial overlaps are rejected with TW_ERR_ARG.
 *
 *   TW_OP_ADD      y = a + b                               a, b, y: (n) fp32
 *                  elementwise, one fp32 rounding per element: every backend is bit-exact
 *                  with the reference. y may alias a or b.
 *   TW_OP_RMSNORM  y[r,i] = x[r,i] / sqrt(mean_i(x[r,:]^2) + eps) * w[i]
 *                  x, y: (rows, n) fp32, w: (n) fp32, eps >= 0 finite, n >= 1.
 *                  The sum of squares accumulates in fp32 (reference: fp64), so the relative
 *                  error per element grows like n/lanes * 2^-24 in the worst case (see the
 *                  bound in the tests). y may alias x.
 *
 * Planned (the inference issue): matmul (fp32/fp16/bf16/quantized weights x fp32 activations,
 * cuBLAS(Lt) for plain GEMM), rope, softmax, attention over a paged KV cache, silu*mul, embedding
 * lookup. Ops take at most TW_OP_MAX_SRC sources.
 */
typedef enum {
    TW_OP_ADD = 0,
    TW_OP_RMSNORM,
    TW_OP_COUNT
} tw_op;

/* The pinned count: adding an op must be a conscious edit of every table indexed by tw_op
 * (names in backend.c, each backend's `supports`, the differential tests). */
#define TW_OP_COUNT_PINNED 2
#ifdef __cplusplus
static_assert(TW_OP_COUNT == TW_OP_COUNT_PINNED, "TW_OP_COUNT changed: update every op table");
#else
_Static_assert(TW_OP_COUNT == TW_OP_COUNT_PINNED, "TW_OP_COUNT changed: update every op table");
#endif

#define TW_OP_MAX_SRC 4

/* "add", "rmsnorm", ...; "?" for a value outside the table. Thread-safe. */
const char *tw_op_name(tw_op op);

/* ---- backends -----------------------------------------------------------------------------*/

typedef struct tw_backend tw_backend; /* an open backend (a CPU, or one CUDA device + stream) */
typedef struct tw_buffer tw_buffer;   /* memory owned by one backend */

typedef enum { TW_BACKEND_CPU = 0, TW_BACKEND_CUDA } tw_backend_kind;

/* Opens a backend by name:
 *   "cpu"     the CPU backend (optimized kernels, OpenMP over tw_threads_get() threads);
 *   "cuda"    CUDA device 0, "cuda:N" device N; fails (TW_ERR_UNSUPPORTED or TW_ERR_RUNTIME,
 *             message says why, e.g. "built without CUDA") when it cannot be used;
 *   "auto"    CUDA device 0 when one is usable, else the CPU. The first fallback in a process
 *             logs one line: "no CUDA device found (<reason>); using the CPU backend".
 * On success *out is a handle for tw_backend_free; on failure *out is NULL. Thread-safe. */
tw_status tw_backend_open(const char *name, tw_backend **out);

/* Closes the backend. Every buffer allocated from it must be freed before; a backend freed
 * with live buffers logs a warning and leaks them. NULL is a no-op. */
void tw_backend_free(tw_backend *be);

/* "cpu" or "cuda:N". Valid while the handle lives. */
const char *tw_backend_name(const tw_backend *be);
tw_backend_kind tw_backend_get_kind(const tw_backend *be);

/* 1 when the backend implements op, else 0. */
int tw_backend_supports(const tw_backend *be, tw_op op);

/* Waits for every op queued on the backend; returns the first asynchronous failure (a CUDA
 * kernel fault, for example) as a status with a message. A no-op on the CPU. */
tw_status tw_backend_sync(tw_backend *be);

/* Bytes allocated through tw_buffer_alloc on this handle: live, peak, and count. */
tw_mem_stats tw_backend_mem_stats(const tw_backend *be);

/* ---- buffers ------------------------------------------------------------------------------*/

/* Allocates nbytes (> 0) of backend memory (host memory for the CPU, device memory for CUDA),
 * aligned to at least 256 bytes on CUDA and 16 on the CPU; contents are undefined. *out is
 * for tw_buffer_free. TW_ERR_NOMEM when the backend is out of memory or the test hook
 * (tw_buffer_fail_after) says so. */
tw_status tw_buffer_alloc(tw_backend *be, size_t nbytes, tw_buffer **out);
void tw_buffer_free(tw_buffer *buf); /* NULL is a no-op */
size_t tw_buffer_size(const tw_buffer *buf);

/* Copies n bytes between host memory and buf[offset, offset+n). Both are synchronous: they
 * return once the bytes have arrived (a download first waits for the ops queued before it),
 * so the host memory may be reused at once. TW_ERR_ARG when the range is outside the buffer. */
tw_status tw_buffer_upload(tw_buffer *buf, size_t offset, const void *src, size_t n);
tw_status tw_buffer_download(const tw_buffer *buf, size_t offset, void *dst, size_t n);

/* Test hook, like tw_mem_fail_after for host memory: the n-th buffer allocation from now
 * (on any backend; 1 = the next one) fails with TW_ERR_NOMEM; 0 disables. Thread-safe. */
void tw_buffer_fail_after(uint64_t n);

/* A place in a buffer: the tensor starts `offset` bytes into `buf`. Ops check that the whole
 * tensor lies inside the buffer, is aligned for its element type and belongs to the backend
 * the op runs on. */
typedef struct {
    tw_buffer *buf;
    size_t offset; /* bytes */
} tw_ref;

static inline tw_ref tw_ref_at(tw_buffer *buf, size_t offset) {
    tw_ref r;
    r.buf = buf;
    r.offset = offset;
    return r;
}

/* ---- ops ----------------------------------------------------------------------------------
 * Each checks its arguments (TW_ERR_ARG, message names the op and the argument), then queues
 * the op on the backend: on CUDA it may still be running when the call returns; the next
 * download or tw_backend_sync waits for it. TW_ERR_UNSUPPORTED when the backend lacks the op.
 * Shapes and precision: see the op table above. */

/* y = a + b.   y, a, b: (n) fp32.   n >= 0 (0 is a no-op). */
tw_status tw_op_add(tw_backend *be, tw_ref y, tw_ref a, tw_ref b, int64_t n);

/* y = rmsnorm(x) * w over each row.   y, x: (rows, n) fp32, w: (n) fp32.
 * rows >= 0 (0 is a no-op), 1 <= n <= INT32_MAX, eps finite and >= 0. */
tw_status tw_op_rmsnorm(tw_backend *be, tw_ref y, tw_ref x, tw_ref w, int64_t rows, int64_t n,
                        float eps);

/* ---- machine information --------------------------------------------------------------------*/

/* CPU features the optimized kernels can use, detected once at run time. Thread-safe. */
typedef struct {
    int avx2, fma, avx512f;
} tw_cpu_features;
tw_cpu_features tw_cpu_features_get(void);

/* One CUDA device, as `twin info` and the tests report it. */
typedef struct {
    int index;
    char name[256];
    int sm_count;
    int cc_major, cc_minor; /* compute capability */
    size_t mem_total, mem_free; /* bytes */
    int runtime_version, driver_version; /* 1000*major + 10*minor */
} tw_device_info;

/* 1 when this binary contains the CUDA backend. */
int tw_cuda_compiled(void);

/* "CUDA runtime 13.0, nvcc 13.0, archs 800,900" or "built without CUDA". Static string. */
const char *tw_cuda_build_info(void);

/* Number of usable CUDA devices. When there are none (or the binary has no CUDA, or the
 * driver is missing) returns TW_ERR_NOT_FOUND or TW_ERR_UNSUPPORTED with the reason as the
 * message and *count = 0. Thread-safe. */
tw_status tw_cuda_device_count(int *count);

/* Fills *info for device `index` (0-based). Thread-safe. */
tw_status tw_cuda_device_info(int index, tw_device_info *info);

#ifdef __cplusplus
}
#endif
#endif
