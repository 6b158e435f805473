/* add.cu: TW_OP_ADD on CUDA (kernels.h): one fp32 add per element (__fadd_rn, so the
 * compiler cannot fuse it into anything), bit-exact with the reference. Grid-stride loop over
 * 64-bit indices, so any n fits in a bounded grid. */
#include "cuda_common.cuh"

/* y, a, b: (n). */
__global__ static void add_kernel(float *y, const float *a, const float *b, int64_t n) {
    int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
        y[i] = __fadd_rn(a[i], b[i]);
}

tw_status tw_cuda_add_f32(cudaStream_t s, float *y, const float *a, const float *b, int64_t n) {
    const int threads = 256;
    int64_t blocks = (n + threads - 1) / threads;
    if (blocks > 65536) blocks = 65536; /* enough to fill any current GPU; the loop does the rest */
    TW_CUDA((add_kernel<<<(unsigned)blocks, threads, 0, s>>>(y, a, b, n), cudaGetLastError()));
    return TW_OK;
}
