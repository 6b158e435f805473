/* backend_cpu.c: the CPU backend: buffers are host memory from tw_malloc, ops run the
 * optimized kernels of this folder synchronously on the calling thread and its OpenMP team. */
#include "../backend_impl.h"
#include "cpu_kernels.h"

#include <string.h>

static int cpu_supports(const tw_backend *be, tw_op op) {
    switch (op) {
    case TW_OP_ADD:
    case TW_OP_RMSNORM:
        return 1;
    case TW_OP_COUNT:
        break;
    }
    return 0;
}

static tw_status cpu_mem_alloc(tw_backend *be, size_t nbytes, void **out) {
    *out = tw_malloc(nbytes);
    return *out ? TW_OK : tw_error_wrap("%s", be->name);
}

static void cpu_mem_free(tw_backend *be, void *p) { tw_free(p); }

static tw_status cpu_mem_copy(tw_backend *be, void *dst, const void *src, size_t n) {
    memcpy(dst, src, n);
    return TW_OK;
}

static tw_status cpu_op_run(tw_backend *be, const tw_op_call *c) {
    switch (c->op) {
    case TW_OP_ADD:
        tw_cpu_add_f32(c->dst, c->src[0], c->src[1], c->ne[0]);
        return TW_OK;
    case TW_OP_RMSNORM:
        tw_cpu_rmsnorm_f32(c->dst, c->src[0], c->src[1], c->ne[0], c->ne[1], c->fp[0]);
        return TW_OK;
    case TW_OP_COUNT:
        break;
    }
    return tw_error(TW_ERR_UNSUPPORTED, "%s: op %s not implemented", be->name, tw_op_name(c->op));
}

static tw_status cpu_sync(tw_backend *be) { return TW_OK; }
static void cpu_close(tw_backend *be) {}

static const tw_backend_vtbl cpu_vtbl = {
    .supports = cpu_supports,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .mem_upload = cpu_mem_copy,
    .mem_download = cpu_mem_copy,
    .op_run = cpu_op_run,
    .sync = cpu_sync,
    .close = cpu_close,
};

tw_status tw_cpu_backend_init(tw_backend *be) {
    be->vt = &cpu_vtbl;
    be->ctx = NULL;
    snprintf(be->name, sizeof be->name, "cpu");
    return TW_OK;
}
