/* nf4.h: 4-bit NormalFloat (NF4) with double quantization, QLoRA's storage for the frozen base
 * weights, laid out and rounded as bitsandbytes does (quantize_4bit(quant_type="nf4",
 * blocksize=64, compress_statistics=True)), so a base quantized here holds the same codes as
 * one quantized by bitsandbytes' CUDA kernel.
 *
 * The format (Dettmers et al. 2023, "QLoRA", section 3, and bitsandbytes functional.py /
 * csrc/kernels.cu):
 *   - codes: the 16 values of tw_nf4_values_get() (kernels.h): 8 positive quantiles and 7
 *     negative ones of N(0,1) at probabilities linspace(0.9677083, 0.5, 9)[:-1] and
 *     linspace(0.9677083, 0.5, 8)[:-1], plus an exact 0, normalised by the largest to [-1, 1] (nf4_code_values_build
 *     redoes this construction; the table is the one bitsandbytes publishes);
 *   - blocks of 64 consecutive elements (the last one may be shorter) scaled by their absmax:
 *     code = nearest NF4 value to x * (1/absmax) (float32 product, as the kernel computes it;
 *     ties between two codes go to the lower one: bitsandbytes' decision tree compares with
 *     strict '>' against the 15 midpoints);
 *   - packing: two codes per byte, element 2i in the HIGH nibble and element 2i+1 in the low
 *     one (bitsandbytes' order); an odd count leaves the last low nibble 0;
 *   - double quantization (bitsandbytes' compress_statistics, NOT the linear int8 that the
 *     paper's text suggests): offset = mean of all block absmax values (float32, summed in
 *     double here), then absmax - offset is quantized blockwise (256 values per block, their
 *     own float32 absmax2) to 8 bits with bitsandbytes' signed DYNAMIC map
 *     (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)), choosing the code
 *     as the CUDA kernel's binary search (dQuantize<0>) does;
 *   - dequantization: absmax_b = map[qabsmax_b] * absmax2_{b/256} + offset, then
 *     x = nf4[code] * absmax_b, every step one float32 operation as in bitsandbytes.
 * Memory: 4 bits + 8/64 + 32/(64*256) bits per element = 4.127 bits (plus 4 bytes of offset).
 *
 * Blocks where every value is 0 (absmax 0, or every absmax equal): bitsandbytes multiplies by
 * 1/0 = inf and its tree maps the NaN to code 0 (-1.0); twin stores the code of 0.0 instead.
 * Both dequantize to 0; only those bits differ.
 *
 * Thread safety: everything here is pure or writes only its outputs; a quantized tensor is
 * read-only after nf4_quantize, so many threads may dequantize it. Products with an NF4 W are
 * the op table's (kernels.h, TW_DTYPE_NF4: nf4_tensor_pack, then tw_op_matmul / _dx).
 */
#ifndef TWIN_NF4_H
#define TWIN_NF4_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NF4_BLOCK 64   /* elements per absmax block */
#define NF4_BLOCK2 256 /* absmax values per double-quantization block */

/* Recomputes the 16 values from the paper's construction (inverse normal CDF of float32
 * linspace probabilities, in double, rounded to float32, divided by the largest in float32);
 * for checking the table. */
void nf4_code_values_build(float out[16]);
/* bitsandbytes' signed 8-bit dynamic map (256 ascending values in [-1, 1], 0 and 1 included),
 * built as create_dynamic_map does it in float32. */
void nf4_dynamic_map_build(float out[256]);

/* The 4-bit code of a value already divided by its absmax (bitsandbytes' dQuantizeNF4). */
uint8_t nf4_quantize_value(float x);
/* The 8-bit code of x in a sorted 256-value map (bitsandbytes' dQuantize<0>: a binary search
 * then the nearest of its last three candidates). */
uint8_t nf4_map_quantize_value(const float map[256], float x);

/* A quantized tensor: a flat run of n elements (a weight (rows, cols) row-major is n =
 * rows*cols; blocks run on across rows when cols % 64 != 0). All arrays are views into `mem`,
 * one allocation; free with nf4_tensor_free. */
typedef struct {
    uint64_t n;         /* elements */
    uint64_t n_blocks;  /* ceil(n / 64) */
    uint64_t n_blocks2; /* ceil(n_blocks / 256) with double quantization, else 0 */
    int double_quant;   /* 1: qabsmax/absmax2/offset/map; 0: absmax in float32 */
    uint8_t *q;         /* (ceil(n/2)) packed codes, element 2i in the high nibble */
    uint8_t *qabsmax;   /* (n_blocks) dynamic-map codes of absmax - offset; NULL without dq */
    float *absmax2;     /* (n_blocks2) scale of each 256-block of qabsmax; NULL without dq */
    float offset;       /* mean of the block absmax values; 0 without dq */
    float *absmax;      /* (n_blocks) float32 absmax without dq; NULL with dq */
    float *map;         /* (256) the dynamic map qabsmax indexes; NULL without dq */
    void *mem;          /* owner of every array above */
} nf4_tensor;

/* Quantizes x (n) into *out (zeroed first; the caller frees it with nf4_tensor_free).
 * double_quant: 1 for QLoRA's double quantization, 0 to keep float32 absmax values.
 * TW_ERR_ARG for n == 0, a NULL x, or a NaN/inf element (the message names its index);
 * TW_ERR_NOMEM. Nothing is allocated on failure. Tensors of 1024 blocks or more are split over
 * tw_threads_get() OpenMP threads (the bytes do not depend on the count). */
tw_status nf4_quantize(const float *x, uint64_t n, int double_quant, nf4_tensor *out);
void nf4_tensor_free(nf4_tensor *t); /* NULL or a zeroed struct is a no-op; zeroes it */

/* Storage of the tensor in bytes (codes + block statistics + offset; the 1 KiB map is shared
 * by all tensors in bitsandbytes and not counted) and per element in bits (about 4.127 with
 * double quantization, 4.5 without, for large n). */
uint64_t nf4_tensor_bytes(const nf4_tensor *t);
double nf4_bits_per_param(const nf4_tensor *t);

/* The float32 absmax of every block: absmax (n_blocks). */
void nf4_absmax_dequantize(const nf4_tensor *t, float *absmax);
/* Elements [start, start + count) of the tensor: out (count). absmax: (n_blocks) from
 * nf4_absmax_dequantize. start + count <= t->n (asserted). */
void nf4_dequantize_range(const nf4_tensor *t, const float *absmax, uint64_t start,
                          uint64_t count, float *out);
/* One block (for a fused matmul): out (min(64, n - 64*block)); returns that count. */
size_t nf4_dequantize_block(const nf4_tensor *t, uint64_t block, float block_absmax, float *out);
/* The whole tensor: out (n). TW_ERR_NOMEM (the absmax scratch). */
tw_status nf4_dequantize(const nf4_tensor *t, float *out);

/* Writes t, a matrix (n_out, k) quantized with double quantization, into dst in the op table's
 * one-buffer layout (kernels.h, TW_DTYPE_NF4: map, offset, absmax2, qabsmax, codes), so that a
 * tw_ref at dst is an NF4 weight for tw_op_matmul / tw_op_matmul_dx. dst_bytes must be the
 * layout's size (tw_nf4_layout_get). TW_ERR_ARG for a tensor without double quantization, a
 * shape that is not t->n or not a layout (k a multiple of 64), or a dst_bytes that differs.
 * Nothing is written on failure. */
tw_status nf4_tensor_pack(const nf4_tensor *t, int64_t n_out, int64_t k, void *dst,
                          size_t dst_bytes);

#ifdef __cplusplus
}
#endif
#endif
