/* nf4_kernels.h: the CPU kernels of TW_OP_MATMUL and TW_OP_MATMUL_DX for NF4 weights
 * (kernels.h, TW_DTYPE_NF4; the buffer layout is tw_nf4_layout's): the optimized ones
 * (matmul_nf4.c) and the references (ref_nf4.c). Private to kernels/ and its tests.
 *
 * Every W (n_out, k) here is one NF4 tensor in the layout of tw_nf4_layout_get (k a multiple
 * of 64, so that the 64-blocks of a row never straddle two rows), 4-byte aligned. Arguments
 * are not checked (backend.c does). Thread-safe: they write only their outputs. */
#ifndef TWIN_CPU_NF4_KERNELS_H
#define TWIN_CPU_NF4_KERNELS_H

#include <stdint.h>

#include "kernels.h"

/* Rows [r0, r0 + nr) of the NF4 matrix w (n_out, k) as fp32: out (nr, k). Each element is
 * nf4[code] * absmax_b with absmax_b = map[qabsmax_b] * absmax2[b / 256] + offset, every step
 * one fp32 rounding (no fused multiply-add), as bitsandbytes and engine/nf4.c dequantize: the
 * result has the same bits as nf4_dequantize. The _portable and _avx2 variants give the same
 * bits; tw_cpu_nf4_dequantize_rows picks one (force_portable: the plain C one). One thread. */
void tw_cpu_nf4_dequantize_rows(const void *w, int64_t k, int64_t n_out, int64_t r0, int64_t nr,
                                float *out, int force_portable);

/* Columns [j0, j0 + nc) of row r of w as fp32: out (nc); j0 and nc multiples of 64 (asserted).
 * The same values as tw_cpu_nf4_dequantize_rows; for the packed GEMM's panels (train_gemm.c). */
void tw_cpu_nf4_dequantize_cols(const void *w, int64_t k, int64_t n_out, int64_t r, int64_t j0,
                                int64_t nc, float *out, int force_portable);

/* y = x . dequantize(W)^T (+ bias).   x: (m, k), w: (n_out, k) NF4, bias: (n_out) or NULL,
 * y: (m, n_out). Chunks of 24 output rows of W are dequantized (never the whole matrix) and
 * multiplied by the F32 kernel of matmul_f.c, so y has exactly the bits of tw_cpu_matmul with
 * the F32 matrix that nf4_dequantize gives (same arithmetic per output; batch-invariant and
 * thread-count-invariant as that kernel). force_portable: its portable C variant.
 * TW_ERR_NOMEM for the scratch (per thread one chunk of W in fp32 and one of y). */
tw_status tw_cpu_matmul_nf4(float *y, const float *x, const void *w, const float *bias,
                            int64_t m, int64_t k, int64_t n_out, int force_portable);

/* dx (+)= dy . dequantize(W).   dy: (m, n_out), w: (n_out, k) NF4, dx: (m, k). The packed
 * GEMM of train_gemm.c (tw_cpu_matmul_dx_variant with TW_DTYPE_NF4), whose B panels are
 * dequantized as they are packed: each dx element is the same chain of fp32 fused
 * multiply-adds as with the dequantized F32 matrix, so the bits are equal to it.
 * TW_ERR_NOMEM for the GEMM's scratch. */
tw_status tw_cpu_matmul_dx_nf4(float *dx, const float *dy, const void *w, int64_t m, int64_t k,
                               int64_t n_out, int accumulate, int force_portable);

/* The references: the dequantized W from the formula above, element by element, then the
 * textbook sums in fp64, one rounding per output (accumulate: old + fp64 sum, rounded once).
 * TW_ERR_NOMEM (a row of scratch). */
tw_status tw_ref_matmul_nf4(float *y, const float *x, const void *w, const float *bias,
                            int64_t m, int64_t k, int64_t n_out);
tw_status tw_ref_matmul_dx_nf4(float *dx, const float *dy, const void *w, int64_t m, int64_t k,
                               int64_t n_out, int accumulate);

#endif
