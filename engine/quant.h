/* quant.h: element types of tensors (ggml's numbering, so GGUF type ids map 1:1), their
 * block layouts, and conversion of rows to and from f32.
 *
 * A quantized type stores blocks of `block_size` elements in `type_size` bytes; a row of n
 * elements (n a multiple of block_size) takes n / block_size * type_size bytes.
 * Thread-safe: pure functions over caller buffers.
 */
#ifndef TWIN_QUANT_H
#define TWIN_QUANT_H

#include "core.h"

typedef enum {
    TW_DTYPE_F32 = 0,
    TW_DTYPE_F16 = 1,
    TW_DTYPE_Q4_0 = 2,
    TW_DTYPE_Q4_1 = 3,
    TW_DTYPE_Q5_0 = 6,
    TW_DTYPE_Q5_1 = 7,
    TW_DTYPE_Q8_0 = 8,
    TW_DTYPE_Q8_1 = 9,
    TW_DTYPE_Q2_K = 10,
    TW_DTYPE_Q3_K = 11,
    TW_DTYPE_Q4_K = 12,
    TW_DTYPE_Q5_K = 13,
    TW_DTYPE_Q6_K = 14,
    TW_DTYPE_Q8_K = 15,
    TW_DTYPE_I8 = 24,
    TW_DTYPE_I16 = 25,
    TW_DTYPE_I32 = 26,
    TW_DTYPE_I64 = 27,
    TW_DTYPE_F64 = 28,
    TW_DTYPE_BF16 = 30,
    TW_DTYPE_COUNT = 40 /* ids below this are known to ggml; not all are supported here */
} tw_dtype;

/* The ggml name ("f32", "q4_K", ...) or NULL for an id ggml does not define. */
const char *tw_dtype_name(tw_dtype t);
/* Layout of a type; both 0 for an unknown id. */
int64_t tw_dtype_block_size(tw_dtype t);
size_t tw_dtype_type_size(tw_dtype t);
/* Bytes of a row of n elements; 0 when n is not a multiple of the block size or the type is
 * unknown (callers treat 0 as a format error). */
size_t tw_dtype_row_bytes(tw_dtype t, int64_t n);
/* 1 when tw_dequantize_row supports the type: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K (not the IQ*, TQ*, MXFP4 or integer types). */
int tw_dtype_can_dequantize(tw_dtype t);

/* Converts n elements (a multiple of the block size) of type t at src to f32 at dst (n).
 * Returns TW_ERR_UNSUPPORTED for a type it cannot convert, TW_ERR_ARG when n is not a
 * multiple of the block size. Bit-exact with ggml's reference dequantizers. */
tw_status tw_dequantize_row(tw_dtype t, const void *src, float *dst, int64_t n);
/* Converts n f32 values to type t (F32, F16, BF16, Q8_0, Q4_0, Q4_1), byte for byte the way
 * ggml's reference quantizers round, so files we write load in llama.cpp. TW_ERR_UNSUPPORTED
 * for other types, TW_ERR_ARG when n is not a multiple of the block size. */
tw_status tw_quantize_row(tw_dtype t, const float *src, void *dst, int64_t n);

/* Scalar half conversions (IEEE binary16 and bfloat16, round to nearest even). */
float tw_f16_to_f32(uint16_t h);
uint16_t tw_f32_to_f16(float f);
float tw_bf16_to_f32(uint16_t h);
uint16_t tw_f32_to_bf16(float f);

#endif
