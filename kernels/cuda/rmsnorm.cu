/* rmsnorm.cu: TW_OP_RMSNORM on CUDA (kernels.h), fp32 throughout.
 *
 * Short rows (n <= 1024) get one warp each, four rows to a block: each lane sums the squares
 * of elements lane, lane+32, ...; the warp adds its lanes with butterfly shuffles, so every
 * lane ends with the row's sum and no shared memory or __syncthreads is needed. Long rows get
 * a block each: warps reduce as above, then warp 0 adds the per-warp sums from shared memory.
 * Loads are coalesced (consecutive lanes read consecutive floats); the row is read twice, the
 * second time mostly from L2.
 *
 * Precision: each lane accumulates ceil(n / threads) squares with fmaf, then at most
 * 5 (warp) + 5 (block) additions join the partial sums; the mean, sqrt and reciprocal use
 * IEEE-rounded division and sqrtf (nvcc's defaults -prec-div=true, -prec-sqrt=true). The
 * bound is in tests/gpu/test_cuda_ops.c. */
#include "cuda_common.cuh"

#define WARP 32
#define ROWS_PER_WARP_BLOCK 4
#define WARP_ROW_MAX 1024

/* Sum over the 32 lanes of a warp; every lane receives the sum. */
__device__ static inline float warp_sum(float v) {
    for (int off = WARP / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

/* y, x: (rows, n), w: (n). blockDim = (32, ROWS_PER_WARP_BLOCK); one warp per row. */
__global__ static void rmsnorm_warp_kernel(float *y, const float *x, const float *w, int rows,
                                           int n, float eps) {
    int64_t row = (int64_t)blockIdx.x * blockDim.y + threadIdx.y; /* 64-bit: rows near 2^31 */
    if (row >= rows) return; /* the whole warp leaves together: row is uniform in a warp */
    const float *xr = x + row * n;
    float *yr = y + row * n;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += WARP) ss = fmaf(xr[i], xr[i], ss);
    ss = warp_sum(ss);
    float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += WARP) yr[i] = xr[i] * scale * w[i];
}

/* y, x: (rows, n), w: (n). One block (a multiple of 32 threads, at most 1024) per row. */
__global__ static void rmsnorm_block_kernel(float *y, const float *x, const float *w, int n,
                                            float eps) {
    __shared__ float warp_sums[WARP];
    __shared__ float scale_sh;
    const float *xr = x + (int64_t)blockIdx.x * n;
    float *yr = y + (int64_t)blockIdx.x * n;
    int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, nwarps = blockDim.x / WARP;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
    ss = warp_sum(ss);
    if (lane == 0) warp_sums[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        float v = lane < nwarps ? warp_sums[lane] : 0.0f;
        v = warp_sum(v);
        if (lane == 0) scale_sh = 1.0f / sqrtf(v / (float)n + eps);
    }
    __syncthreads();
    float scale = scale_sh;
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

tw_status tw_cuda_rmsnorm_f32(cudaStream_t s, float *y, const float *x, const float *w,
                              int64_t rows, int64_t n, float eps) {
    if (n <= WARP_ROW_MAX) {
        dim3 block(WARP, ROWS_PER_WARP_BLOCK);
        unsigned grid = (unsigned)((rows + ROWS_PER_WARP_BLOCK - 1) / ROWS_PER_WARP_BLOCK);
        TW_CUDA((rmsnorm_warp_kernel<<<grid, block, 0, s>>>(y, x, w, (int)rows, (int)n, eps),
                 cudaGetLastError()));
    } else {
        int threads = n <= 8192 ? 256 : 1024;
        TW_CUDA((rmsnorm_block_kernel<<<(unsigned)rows, threads, 0, s>>>(y, x, w, (int)n, eps),
                 cudaGetLastError()));
    }
    return TW_OK;
}

tw_status tw_cuda_kernels_probe(void) {
    cudaFuncAttributes attr;
    TW_CUDA(cudaFuncGetAttributes(&attr, rmsnorm_warp_kernel));
    TW_CUDA(cudaFuncGetAttributes(&attr, rmsnorm_block_kernel));
    return TW_OK;
}
