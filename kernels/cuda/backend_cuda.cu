/* backend_cuda.cu: the CUDA backend: one device, one non-blocking stream, a cuBLAS and a
 * cuBLASLt handle (for the GEMMs to come) per tw_backend; buffers are cudaMalloc'd device
 * memory; ops are queued on the stream. Also the device queries of kernels.h.
 *
 * Every call into CUDA goes through TW_CUDA (cuda_common.cuh) and every entry point makes its
 * device current first, so handles on different devices may be used from one thread. */
#include <stdio.h>
#include <string.h>

#include "cuda_common.cuh"

#define TW_STR_(...) #__VA_ARGS__
#define TW_STR(...) TW_STR_(__VA_ARGS__)

/* The machine's path to the source is no business of an error message: keep "kernels/...". */
static const char *short_file(const char *file) {
    const char *k = strstr(file, "kernels/");
    return k ? k : file;
}

tw_status tw_cuda_fail(tw_status code, const char *call, const char *name, const char *text,
                       const char *file, int line) {
    /* Runtime errors that are not sticky stay in the thread's "last error" slot; reading it
     * clears it, so the next launch check does not report this failure again. */
    (void)cudaGetLastError();
    return tw_error(code, "%s failed: %s (%s) at %s:%d", call, name ? name : "?",
                    text ? text : "?", short_file(file), line);
}

extern "C" int tw_cuda_compiled(void) { return 1; }

/* The text is made once (a function-local static: C++ initializes it exactly once, even when
 * threads race) and never changes. __CUDA_ARCH_LIST__ lists the architectures nvcc compiled
 * for, e.g. 800,900 (an "a" variant such as sm_90a shows as 900). */
struct build_info_text {
    char s[160];
    build_info_text() {
        snprintf(s, sizeof s, "CUDA runtime %d.%d, nvcc %d.%d, archs %s", CUDART_VERSION / 1000,
                 CUDART_VERSION % 1000 / 10, __CUDACC_VER_MAJOR__, __CUDACC_VER_MINOR__,
                 TW_STR(__CUDA_ARCH_LIST__));
    }
};

extern "C" const char *tw_cuda_build_info(void) {
    static const build_info_text text;
    return text.s;
}

static tw_status device_count(int *count) {
    int n = 0;
    TW_CUDA(cudaGetDeviceCount(&n));
    if (n <= 0) return tw_error(TW_ERR_NOT_FOUND, "cudaGetDeviceCount reports no devices");
    *count = n;
    return TW_OK;
}

extern "C" tw_status tw_cuda_device_count(int *count) {
    *count = 0;
    return device_count(count);
}

static tw_status device_info(int index, tw_device_info *info) {
    cudaDeviceProp p;
    TW_CUDA(cudaGetDeviceProperties(&p, index));
    info->index = index;
    snprintf(info->name, sizeof info->name, "%s", p.name);
    info->sm_count = p.multiProcessorCount;
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->mem_total = p.totalGlobalMem;
    TW_CUDA(cudaRuntimeGetVersion(&info->runtime_version));
    TW_CUDA(cudaDriverGetVersion(&info->driver_version));
    /* Free memory needs a context on the device; keep the caller's current device. */
    int prev = 0;
    TW_CUDA(cudaGetDevice(&prev));
    TW_CUDA(cudaSetDevice(index));
    size_t free_b = 0, total_b = 0;
    cudaError_t e = cudaMemGetInfo(&free_b, &total_b);
    TW_CUDA(cudaSetDevice(prev));
    TW_CUDA(e);
    info->mem_free = free_b;
    return TW_OK;
}

extern "C" tw_status tw_cuda_device_info(int index, tw_device_info *info) {
    memset(info, 0, sizeof *info);
    int n = 0;
    tw_status st = device_count(&n);
    if (st == TW_OK && (index < 0 || index >= n))
        st = tw_error(TW_ERR_NOT_FOUND, "no such device (%d present)", n);
    if (st == TW_OK) st = device_info(index, info);
    return st == TW_OK ? st : tw_error_wrap("cuda:%d", index);
}

/* ---- the backend ------------------------------------------------------------------------- */

typedef struct {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cublasLtHandle_t blaslt;
} cuda_ctx;

static cuda_ctx *ctx_of(const tw_backend *be) { return (cuda_ctx *)be->ctx; }

static int cuda_supports(const tw_backend *be, tw_op op) {
    switch (op) {
    case TW_OP_ADD:
    case TW_OP_RMSNORM: return 1;
    /* Not yet on CUDA: the engine runs these on the CPU backend (TW_ERR_UNSUPPORTED here). */
    case TW_OP_MUL:
    case TW_OP_SCALE:
    case TW_OP_COPY:
    case TW_OP_GET_ROWS:
    case TW_OP_MATMUL:
    case TW_OP_LAYERNORM:
    case TW_OP_ROPE:
    case TW_OP_KV_WRITE:
    case TW_OP_ATTENTION:
    case TW_OP_SWIGLU:
    case TW_OP_GELU:
    case TW_OP_SOFTMAX:
    case TW_OP_ARGMAX:
    case TW_OP_TOPK:
    case TW_OP_ATTN_SEG:
    case TW_OP_ATTN_SEG_BWD:
    case TW_OP_MATMUL_DX:
    case TW_OP_MATMUL_DW:
    case TW_OP_RMSNORM_BWD:
    case TW_OP_LAYERNORM_BWD:
    case TW_OP_ROPE_BWD:
    case TW_OP_SWIGLU_BWD:
    case TW_OP_GELU_BWD:
    case TW_OP_EMBED_BWD:
    case TW_OP_XENT:
    case TW_OP_ADAMW:
    case TW_OP_DROPOUT:
        return 0;
    case TW_OP_COUNT: break;
    }
    return 0;
}

static tw_status cuda_mem_alloc(tw_backend *be, size_t nbytes, void **out) {
    cuda_ctx *c = ctx_of(be);
    *out = NULL;
    tw_status st = [&]() -> tw_status {
        TW_CUDA(cudaSetDevice(c->device));
        TW_CUDA(cudaMalloc(out, nbytes));
        return TW_OK;
    }();
    return st == TW_OK ? st : tw_error_wrap("%s: buffer of %zu bytes", be->name, nbytes);
}

static tw_status cuda_free_checked(int device, void *p) {
    TW_CUDA(cudaSetDevice(device));
    TW_CUDA(cudaFree(p));
    return TW_OK;
}

static void cuda_mem_free(tw_backend *be, void *p) {
    if (cuda_free_checked(ctx_of(be)->device, p) != TW_OK)
        tw_log_warn("%s: %s", be->name, tw_errmsg());
}

static tw_status cuda_copy(tw_backend *be, void *dst, const void *src, size_t n,
                           cudaMemcpyKind kind) {
    cuda_ctx *c = ctx_of(be);
    tw_status st = [&]() -> tw_status {
        TW_CUDA(cudaSetDevice(c->device));
        TW_CUDA(cudaMemcpyAsync(dst, src, n, kind, c->stream));
        TW_CUDA(cudaStreamSynchronize(c->stream));
        return TW_OK;
    }();
    return st == TW_OK ? st : tw_error_wrap("%s", be->name);
}

static tw_status cuda_upload(tw_backend *be, void *dst, const void *src, size_t n) {
    return cuda_copy(be, dst, src, n, cudaMemcpyHostToDevice);
}

static tw_status cuda_download(tw_backend *be, void *dst, const void *src, size_t n) {
    return cuda_copy(be, dst, src, n, cudaMemcpyDeviceToHost);
}

static tw_status cuda_run(cuda_ctx *c, const tw_op_call *k) {
    TW_CUDA(cudaSetDevice(c->device));
    switch (k->op) {
    case TW_OP_ADD:
        return tw_cuda_add_f32(c->stream, (float *)k->dst, (const float *)k->src[0],
                               (const float *)k->src[1], k->ne[0]);
    case TW_OP_RMSNORM:
        return tw_cuda_rmsnorm_f32(c->stream, (float *)k->dst, (const float *)k->src[0],
                                   (const float *)k->src[1], k->ne[0], k->ne[1], k->fp[0]);
    default: break; /* cuda_supports says 0: backend.c never calls with these */
    }
    return tw_error(TW_ERR_UNSUPPORTED, "op %s not implemented", tw_op_name(k->op));
}

static tw_status cuda_op_run(tw_backend *be, const tw_op_call *k) {
    tw_status st = cuda_run(ctx_of(be), k);
    return st == TW_OK ? st : tw_error_wrap("%s: %s", be->name, tw_op_name(k->op));
}

static tw_status cuda_sync_ctx(cuda_ctx *c) {
    TW_CUDA(cudaSetDevice(c->device));
    TW_CUDA(cudaStreamSynchronize(c->stream));
    return TW_OK;
}

static tw_status cuda_sync(tw_backend *be) {
    tw_status st = cuda_sync_ctx(ctx_of(be));
    return st == TW_OK ? st : tw_error_wrap("%s", be->name);
}

/* Releases what ctx_open made (zeroed members are skipped), reporting the first failure. */
static tw_status ctx_close(cuda_ctx *c) {
    TW_CUDA(cudaSetDevice(c->device));
    if (c->blaslt) TW_CUDA(cublasLtDestroy(c->blaslt));
    c->blaslt = NULL;
    if (c->blas) TW_CUDA(cublasDestroy(c->blas));
    c->blas = NULL;
    if (c->stream) TW_CUDA(cudaStreamDestroy(c->stream));
    c->stream = NULL;
    return TW_OK;
}

static void cuda_close(tw_backend *be) {
    cuda_ctx *c = ctx_of(be);
    if (!c) return;
    if (ctx_close(c) != TW_OK) tw_log_warn("%s: closing: %s", be->name, tw_errmsg());
    tw_free(c);
    be->ctx = NULL;
}

static tw_status ctx_open(cuda_ctx *c, int device) {
    c->device = device;
    TW_CUDA(cudaSetDevice(device));
    tw_status st = tw_cuda_kernels_probe();
    if (st != TW_OK) return st;
    TW_CUDA(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    TW_CUDA(cublasCreate(&c->blas));
    TW_CUDA(cublasSetStream(c->blas, c->stream));
    TW_CUDA(cublasLtCreate(&c->blaslt));
    return TW_OK;
}

/* Positional: C++17 has no designated initializers. Order as in backend_impl.h. */
static const tw_backend_vtbl cuda_vtbl = {
    cuda_supports, cuda_mem_alloc, cuda_mem_free, cuda_upload,
    cuda_download, cuda_op_run,    cuda_sync,     cuda_close,
};

extern "C" tw_status tw_cuda_backend_init(tw_backend *be, int device) {
    int n = 0;
    tw_status st = device_count(&n);
    if (st == TW_OK && (device < 0 || device >= n))
        st = tw_error(TW_ERR_NOT_FOUND, "no such device (%d present)", n);
    if (st != TW_OK) return tw_error_wrap("cuda:%d", device);
    cuda_ctx *c = (cuda_ctx *)tw_calloc(1, sizeof *c);
    if (!c) return tw_error_wrap("cuda:%d", device);
    st = ctx_open(c, device);
    if (st != TW_OK) {
        char why[1024];
        snprintf(why, sizeof why, "%s", tw_errmsg());
        if (ctx_close(c) != TW_OK) tw_log_warn("cuda:%d: cleanup: %s", device, tw_errmsg());
        tw_free(c);
        tw_error(st, "cuda:%d: %s", device, why);
        return st;
    }
    be->vt = &cuda_vtbl;
    be->ctx = c;
    snprintf(be->name, sizeof be->name, "cuda:%d", device);
    return TW_OK;
}
