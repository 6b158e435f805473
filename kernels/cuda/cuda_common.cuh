/* cuda_common.cuh: private to kernels/cuda/: the one check macro for CUDA runtime, cuBLAS and
 * cuBLASLt calls and kernel launches, and the kernel launchers the backend calls.
 *
 *   TW_CUDA(cudaMalloc(&p, n));                                  a runtime or library call
 *   TW_CUDA((my_kernel<<<grid, block, 0, stream>>>(args), cudaGetLastError()));   a launch
 *
 * On failure the enclosing function returns a tw_status (never aborts) and leaves a message
 * naming the call, the error and the place: "cudaMalloc(&p, n) failed: cudaErrorMemoryAllocation
 * (out of memory) at kernels/cuda/backend_cuda.cu:80". A launch reports configuration errors
 * at once; faults while a kernel runs surface at the next synchronizing call (download, sync).
 * Functions that cannot return a status (destructors) call a helper that uses the macro and
 * log what it returns.
 */
#ifndef TWIN_CUDA_COMMON_CUH
#define TWIN_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "../backend_impl.h"

/* Overloads that let one macro check every kind of status. */
static inline bool tw_cuda_ok(cudaError_t e) { return e == cudaSuccess; }
static inline bool tw_cuda_ok(cublasStatus_t s) { return s == CUBLAS_STATUS_SUCCESS; }
static inline const char *tw_cuda_err_name(cudaError_t e) { return cudaGetErrorName(e); }
static inline const char *tw_cuda_err_name(cublasStatus_t s) { return cublasGetStatusName(s); }
static inline const char *tw_cuda_err_text(cudaError_t e) { return cudaGetErrorString(e); }
static inline const char *tw_cuda_err_text(cublasStatus_t s) { return cublasGetStatusString(s); }
static inline tw_status tw_cuda_err_code(cudaError_t e) {
    switch (e) {
    case cudaErrorMemoryAllocation: return TW_ERR_NOMEM;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice: return TW_ERR_NOT_FOUND;
    default: return TW_ERR_RUNTIME;
    }
}
static inline tw_status tw_cuda_err_code(cublasStatus_t s) {
    return s == CUBLAS_STATUS_ALLOC_FAILED ? TW_ERR_NOMEM : TW_ERR_RUNTIME;
}

/* Records the failure (tw_error) and returns its status. Clears a non-sticky CUDA error so
 * that it is not reported again by the next unrelated call. Defined in backend_cuda.cu. */
tw_status tw_cuda_fail(tw_status code, const char *call, const char *name, const char *text,
                       const char *file, int line);

#define TW_CUDA(...)                                                                          \
    do {                                                                                      \
        auto tw_rc_ = (__VA_ARGS__);                                                          \
        if (!tw_cuda_ok(tw_rc_))                                                              \
            return tw_cuda_fail(tw_cuda_err_code(tw_rc_), #__VA_ARGS__, tw_cuda_err_name(tw_rc_), \
                                tw_cuda_err_text(tw_rc_), __FILE__, __LINE__);                \
    } while (0)

/* ---- launchers (one per op; arguments already checked by backend.c) ---- */

/* y = a + b.   y, a, b: (n) fp32 device memory; n >= 1. */
tw_status tw_cuda_add_f32(cudaStream_t s, float *y, const float *a, const float *b, int64_t n);

/* rmsnorm over rows.   y, x: (rows, n), w: (n) fp32 device memory; 1 <= rows, n < 2^31. */
tw_status tw_cuda_rmsnorm_f32(cudaStream_t s, float *y, const float *x, const float *w,
                              int64_t rows, int64_t n, float eps);

/* Fails (cudaErrorNoKernelImageForDevice, for example) when the current device cannot run
 * this binary's kernels, so that "auto" can fall back before any op runs. */
tw_status tw_cuda_kernels_probe(void);

#endif
