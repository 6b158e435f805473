/* backend_impl.h: private to kernels/: the backend struct and the function table each backend
 * fills in. kernels/backend.c owns the struct, checks every argument of every op and resolves
 * tensor references to backend addresses; a backend only computes. Included by C and by the
 * CUDA (C++) sources, so it uses the common subset of both. */
#ifndef TWIN_BACKEND_IMPL_H
#define TWIN_BACKEND_IMPL_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One checked op call, with every tensor resolved to an address in the backend's own memory
 * space (host pointers for the CPU, device pointers for CUDA). The meaning of ne[] and fp[]
 * is the op's (kernels.h): ADD ne = {n}; RMSNORM ne = {rows, n}, fp = {eps}. */
typedef struct {
    tw_op op;
    void *dst;
    const void *src[TW_OP_MAX_SRC];
    int64_t ne[4];
    float fp[4];
} tw_op_call;

typedef struct tw_backend_vtbl {
    /* 1 when the backend implements op. */
    int (*supports)(const tw_backend *be, tw_op op);
    /* Backend memory: nbytes > 0; on failure return a status with a message. */
    tw_status (*mem_alloc)(tw_backend *be, size_t nbytes, void **out);
    void (*mem_free)(tw_backend *be, void *p);
    tw_status (*mem_upload)(tw_backend *be, void *dst, const void *src, size_t n);
    tw_status (*mem_download)(tw_backend *be, void *dst, const void *src, size_t n);
    /* Runs (or queues) a call that backend.c has already checked. */
    tw_status (*op_run)(tw_backend *be, const tw_op_call *call);
    tw_status (*sync)(tw_backend *be);
    /* Releases ctx (not the tw_backend struct, which backend.c frees). */
    void (*close)(tw_backend *be);
} tw_backend_vtbl;

struct tw_backend {
    const tw_backend_vtbl *vt;
    void *ctx; /* the backend's own state */
    tw_backend_kind kind;
    char name[32];
    /* Accounting of tw_buffer_alloc on this handle (the handle is single-threaded). */
    size_t mem_current, mem_peak;
    uint64_t n_allocs;
    uint64_t n_live;
};

struct tw_buffer {
    tw_backend *be;
    void *ptr; /* backend address */
    size_t size;
};

/* Fill be->vt, be->ctx and be->name; on failure leave be->ctx NULL and return a status with
 * a message. tw_cuda_backend_init lives in kernels/cuda/ (or no_cuda.c). */
tw_status tw_cpu_backend_init(tw_backend *be);
tw_status tw_cuda_backend_init(tw_backend *be, int device);

#ifdef __cplusplus
}
#endif
#endif
