/* cpu_kernels.h: private to kernels/ and its tests: the CPU kernels on plain host pointers.
 *
 * For every op there is
 *   tw_ref_<op>_f32        the naive reference (ref_<op>.c): fp64 accumulation, one thread,
 *                          written for clarity; it is the op's specification;
 *   tw_cpu_<op>_f32        the optimized kernel the CPU backend runs: picks the best variant
 *                          this machine supports, OpenMP over rows (tw_threads_get() threads);
 *   tw_cpu_<op>_f32_<isa>  each variant on its own (portable C, avx2 = AVX2+FMA), one thread,
 *                          so the tests check every variant whatever the dispatcher picks.
 * All have the same arguments. Shapes as in kernels.h; arguments are not checked here
 * (backend.c checks them). Thread-safe: they write only their outputs.
 */
#ifndef TWIN_CPU_KERNELS_H
#define TWIN_CPU_KERNELS_H

#include <stdint.h>

#include "kernels.h"

/* 1 when the AVX2+FMA variants can run on this machine (and TWIN_CPU_PORTABLE is not set). */
int tw_cpu_has_avx2_fma(void);

/* y = a + b.   y, a, b: (n); y may alias a or b. */
void tw_ref_add_f32(float *y, const float *a, const float *b, int64_t n);
void tw_cpu_add_f32(float *y, const float *a, const float *b, int64_t n);
void tw_cpu_add_f32_portable(float *y, const float *a, const float *b, int64_t n);
void tw_cpu_add_f32_avx2(float *y, const float *a, const float *b, int64_t n);

/* y[r,:] = x[r,:] / sqrt(mean(x[r,:]^2) + eps) * w.   y, x: (rows, n), w: (n); y may alias x. */
void tw_ref_rmsnorm_f32(float *y, const float *x, const float *w, int64_t rows, int64_t n,
                        float eps);
void tw_cpu_rmsnorm_f32(float *y, const float *x, const float *w, int64_t rows, int64_t n,
                        float eps);
void tw_cpu_rmsnorm_f32_portable(float *y, const float *x, const float *w, int64_t rows,
                                 int64_t n, float eps);
void tw_cpu_rmsnorm_f32_avx2(float *y, const float *x, const float *w, int64_t rows, int64_t n,
                             float eps);



/* ---- the ops of the inference engine (kernels.h) ------------------------------------------
 * Same scheme: tw_ref_* is the specification (ref_<op>.c), tw_cpu_* the dispatched kernel.
 * Kernels that need scratch memory return a tw_status (TW_ERR_NOMEM); the others cannot fail.
 * Index arguments (ids, slots, positions, block tables) are assumed in range here: the CPU
 * backend checks them on the host first (backend_cpu.c). */

/* y = a * b, y = x * s, y = x.   (n) */
void tw_ref_mul_f32(float *y, const float *a, const float *b, int64_t n);
void tw_cpu_mul_f32(float *y, const float *a, const float *b, int64_t n);
void tw_ref_scale_f32(float *y, const float *x, float s, int64_t n);
void tw_cpu_scale_f32(float *y, const float *x, float s, int64_t n);

/* y[i,:] = dequantize(table[ids[i],:]).   y: (n_ids, n), table: (n_rows, n) of t. */
void tw_ref_get_rows(float *y, const void *table, tw_dtype t, const int32_t *ids, int64_t n_ids,
                     int64_t n);
void tw_cpu_get_rows(float *y, const void *table, tw_dtype t, const int32_t *ids, int64_t n_ids,
                     int64_t n);

/* Activation blocks of the quantized matmul (kernels.h, TW_OP_MATMUL, act()). Private layouts
 * (not ggml's bytes: scales are fp32 here, holding the fp16-rounded value ggml stores). */
#define TW_QK8 32  /* elements per Q8_0/Q8_1 activation block */
#define TW_QKK 256 /* elements per Q8_K activation block */
typedef struct {
    float d;        /* fp16-rounded amax / 127 */
    float s;        /* fp16-rounded d * sum(qs): the Q8_1 sum, for the weights' min term */
    int8_t qs[TW_QK8];
} tw_q8a_block;
typedef struct {
    float d;                     /* 1 / iscale (fp32, as ggml's block_q8_K) */
    int16_t bsums[TW_QKK / 16];  /* sums of qs over groups of 16 */
    int8_t qs[TW_QKK];
} tw_q8k_block;

/* What act() is for weights of type t. */
typedef enum { TW_ACT_F32 = 0, TW_ACT_Q8A, TW_ACT_Q8K } tw_act_kind;
tw_act_kind tw_cpu_act_kind(tw_dtype t);

/* x: (k) -> k/32 (or k/256) blocks. k a multiple of the block. All variants are bit-identical
 * (round to nearest even in both). */
void tw_cpu_quantize_q8a(const float *x, tw_q8a_block *y, int64_t k);
void tw_cpu_quantize_q8a_portable(const float *x, tw_q8a_block *y, int64_t k);
void tw_cpu_quantize_q8a_avx2(const float *x, tw_q8a_block *y, int64_t k);
void tw_cpu_quantize_q8k(const float *x, tw_q8k_block *y, int64_t k);

/* y = act(x) . W^T (+ bias).   x: (m, k), w: (n_out, k) of wt, bias: (n_out) or NULL,
 * y: (m, n_out). tw_ref_matmul follows kernels.h exactly; tw_ref_matmul_dense is the plain
 * product of x (not quantized) with the dequantized weights, for loose sanity checks. */
void tw_ref_matmul(float *y, const float *x, const void *w, tw_dtype wt, const float *bias,
                   int64_t m, int64_t k, int64_t n_out);
void tw_ref_matmul_dense(float *y, const float *x, const void *w, tw_dtype wt, const float *bias,
                         int64_t m, int64_t k, int64_t n_out);
/* The optimized matmul. TW_ERR_NOMEM when its scratch memory cannot be had. force_portable:
 * 1 runs the portable C variant even on an AVX2 machine (the tests check both). */
tw_status tw_cpu_matmul(float *y, const float *x, const void *w, tw_dtype wt, const float *bias,
                        int64_t m, int64_t k, int64_t n_out);
tw_status tw_cpu_matmul_variant(float *y, const float *x, const void *w, tw_dtype wt,
                                const float *bias, int64_t m, int64_t k, int64_t n_out,
                                int force_portable);
/* The kernels behind it (matmul_q.c, matmul_f.c), same arguments; wt of their family. */
tw_status tw_cpu_matmul_q(float *y, const float *x, const void *w, tw_dtype wt, const float *bias,
                          int64_t m, int64_t k, int64_t n_out, int force_portable);
tw_status tw_cpu_matmul_f(float *y, const float *x, const void *w, tw_dtype wt, const float *bias,
                          int64_t m, int64_t k, int64_t n_out, int force_portable);
/* Q4_K and Q6_K with AVX2 (matmul_k.c); tw_cpu_matmul_k_supported says when it can run. */
int tw_cpu_matmul_k_supported(tw_dtype wt);
tw_status tw_cpu_matmul_k(float *y, const float *x, const void *w, tw_dtype wt, const float *bias,
                          int64_t m, int64_t k, int64_t n_out);

/* LayerNorm.   y, x: (rows, n); w, b: (n) or NULL. */
void tw_ref_layernorm_f32(float *y, const float *x, const float *w, const float *b, int64_t rows,
                          int64_t n, float eps);
void tw_cpu_layernorm_f32(float *y, const float *x, const float *w, const float *b, int64_t rows,
                          int64_t n, float eps);

/* RoPE.   y, x: (n_tok, n_head, head_dim); pos: (n_tok); ff: (rope_dim/2) or NULL. */
void tw_ref_rope_f32(float *y, const float *x, const int32_t *pos, int64_t n_tok, int64_t n_head,
                     int64_t head_dim, int64_t rope_dim, int mode, float theta_base,
                     float freq_scale, const float *ff);
void tw_cpu_rope_f32(float *y, const float *x, const int32_t *pos, int64_t n_tok, int64_t n_head,
                     int64_t head_dim, int64_t rope_dim, int mode, float theta_base,
                     float freq_scale, const float *ff);

/* KV write.   caches: (n_slots, n_kv_head, head_dim) of ct (F32/F16); k, v: (n_tok, n_kv_head,
 * head_dim); slots: (n_tok). */
void tw_ref_kv_write(void *k_cache, void *v_cache, tw_dtype ct, const float *k, const float *v,
                     const int32_t *slots, int64_t n_tok, int64_t n_kv_head, int64_t head_dim);
void tw_cpu_kv_write(void *k_cache, void *v_cache, tw_dtype ct, const float *k, const float *v,
                     const int32_t *slots, int64_t n_tok, int64_t n_kv_head, int64_t head_dim);

/* Paged attention (kernels.h, TW_OP_ATTENTION).   out, q: (n_tok, n_head, head_dim); caches:
 * (n_slots, n_kv_head, head_dim) of ct; block_table: (n_seq, max_blocks); tok_seq, tok_pos:
 * (n_tok). */
typedef struct {
    int64_t max_blocks, page_size, n_tok, n_head, n_kv_head, head_dim;
    float scale;
    tw_dtype ct;
} tw_attn_shape;
void tw_ref_attention(float *out, const float *q, const void *k_cache, const void *v_cache,
                      const int32_t *block_table, const int32_t *tok_seq, const int32_t *tok_pos,
                      const tw_attn_shape *s);
void tw_cpu_attention(float *out, const float *q, const void *k_cache, const void *v_cache,
                      const int32_t *block_table, const int32_t *tok_seq, const int32_t *tok_pos,
                      const tw_attn_shape *s);
/* variant: TW_ATTN_DISPATCH (what tw_cpu_attention runs), TW_ATTN_PORTABLE (the portable C
 * kernel even where AVX2 is available), TW_ATTN_PER_TOKEN (AVX2, one token at a time: the
 * untiled kernel, the same bits as the tiled one; for tests and bench/bench_attention.c). */
enum { TW_ATTN_DISPATCH = 0, TW_ATTN_PORTABLE = 1, TW_ATTN_PER_TOKEN = 2 };
void tw_cpu_attention_variant(float *out, const float *q, const void *k_cache,
                              const void *v_cache, const int32_t *block_table,
                              const int32_t *tok_seq, const int32_t *tok_pos,
                              const tw_attn_shape *s, int variant);

/* y = silu(gate) * up over (n) elements (rows * n of the op). */
void tw_ref_swiglu_f32(float *y, const float *gate, const float *up, int64_t n);
void tw_cpu_swiglu_f32(float *y, const float *gate, const float *up, int64_t n);
void tw_cpu_swiglu_f32_portable(float *y, const float *gate, const float *up, int64_t n);
void tw_cpu_swiglu_f32_avx2(float *y, const float *gate, const float *up, int64_t n);

/* y = e^x with the AVX2 exponential of the kernels (simd_avx2.h: within 2 ulp on
 * [-87.3, 88.3], 0 below, +inf above). y may alias x. */
void tw_cpu_exp_f32_avx2(float *y, const float *x, int64_t n);

/* y = gelu(x), mode a tw_gelu_mode.   (n) */
void tw_ref_gelu_f32(float *y, const float *x, int64_t n, int mode);
void tw_cpu_gelu_f32(float *y, const float *x, int64_t n, int mode);
/* The erf form's variants (TW_GELU_ERF), one thread. */
void tw_cpu_gelu_erf_f32_portable(float *y, const float *x, int64_t n);
void tw_cpu_gelu_erf_f32_avx2(float *y, const float *x, int64_t n);

/* y[r,:] = softmax(scale * x[r,:]).   (rows, n) */
void tw_ref_softmax_f32(float *y, const float *x, int64_t rows, int64_t n, float scale);
void tw_cpu_softmax_f32(float *y, const float *x, int64_t rows, int64_t n, float scale);

/* idx[r] = argmax x[r,:].   x: (rows, n), idx: (rows) */
void tw_ref_argmax_f32(int32_t *idx, const float *x, int64_t rows, int64_t n);
void tw_cpu_argmax_f32(int32_t *idx, const float *x, int64_t rows, int64_t n);

/* The k largest per row, descending, ties by lower index.   x: (rows, n); vals, idx: (rows, k).
 * The optimized one needs scratch (TW_ERR_NOMEM). */
void tw_ref_topk_f32(float *vals, int32_t *idx, const float *x, int64_t rows, int64_t n,
                     int64_t k);
tw_status tw_cpu_topk_f32(float *vals, int32_t *idx, const float *x, int64_t rows, int64_t n,
                          int64_t k);

/* ---- training ops (kernels.h, "training ops"; ref_train.c, train_gemm.c, train_ops.c) -----
 * `accumulate` 1 adds into the output, 0 overwrites it. Kernels with scratch return a status
 * (TW_ERR_NOMEM). Index arrays (ids, targets < n_vocab) are assumed in range (backend_cpu.c
 * checks them). Every optimized kernel gives the same bits for any thread count. */

/* dx (+)= dy . dequantize(W).   dy: (m, n_out), w: (n_out, k) of wt (any tw_op_matmul type),
 * dx: (m, k). force_portable: the plain C micro-kernel even where AVX2 is available. */
tw_status tw_ref_matmul_dx(float *dx, const float *dy, const void *w, tw_dtype wt, int64_t m,
                           int64_t k, int64_t n_out, int accumulate);
tw_status tw_cpu_matmul_dx(float *dx, const float *dy, const void *w, tw_dtype wt, int64_t m,
                           int64_t k, int64_t n_out, int accumulate);
tw_status tw_cpu_matmul_dx_variant(float *dx, const float *dy, const void *w, tw_dtype wt,
                                   int64_t m, int64_t k, int64_t n_out, int accumulate,
                                   int force_portable);

/* dw (+)= dy^T . x, dbias (+)= column sums of dy (when not NULL).   dy: (m, n_out), x: (m, k),
 * dw: (n_out, k), dbias: (n_out). m may be 0 (then dw, dbias = 0 unless accumulating). */
void tw_ref_matmul_dw(float *dw, float *dbias, const float *dy, const float *x, int64_t m,
                      int64_t k, int64_t n_out, int accumulate);
tw_status tw_cpu_matmul_dw(float *dw, float *dbias, const float *dy, const float *x, int64_t m,
                           int64_t k, int64_t n_out, int accumulate);
tw_status tw_cpu_matmul_dw_variant(float *dw, float *dbias, const float *dy, const float *x,
                                   int64_t m, int64_t k, int64_t n_out, int accumulate,
                                   int force_portable);

/* RMSNorm backward.   dx, dy, x: (rows, n), w: (n); dx overwritten, dw (n) += or NULL. */
tw_status tw_ref_rmsnorm_bwd_f32(float *dx, float *dw, const float *dy, const float *x,
                                 const float *w, int64_t rows, int64_t n, float eps);
tw_status tw_cpu_rmsnorm_bwd_f32(float *dx, float *dw, const float *dy, const float *x,
                                 const float *w, int64_t rows, int64_t n, float eps);

/* LayerNorm backward.   dx, dy, x: (rows, n); w: (n) or NULL (1); dw, db: (n) += or NULL. */
tw_status tw_ref_layernorm_bwd_f32(float *dx, float *dw, float *db, const float *dy,
                                   const float *x, const float *w, int64_t rows, int64_t n,
                                   float eps);
tw_status tw_cpu_layernorm_bwd_f32(float *dx, float *dw, float *db, const float *dy,
                                   const float *x, const float *w, int64_t rows, int64_t n,
                                   float eps);

/* RoPE backward (the inverse rotation).   dx, dy: (n_tok, n_head, head_dim); the rest as
 * tw_cpu_rope_f32. dx may alias dy. */
void tw_ref_rope_bwd_f32(float *dx, const float *dy, const int32_t *pos, int64_t n_tok,
                         int64_t n_head, int64_t head_dim, int64_t rope_dim, int mode,
                         float theta_base, float freq_scale, const float *ff);
void tw_cpu_rope_bwd_f32(float *dx, const float *dy, const int32_t *pos, int64_t n_tok,
                         int64_t n_head, int64_t head_dim, int64_t rope_dim, int mode,
                         float theta_base, float freq_scale, const float *ff);

/* SwiGLU backward over (n) elements (rows * n of the op): dgate, dup overwritten. */
void tw_ref_swiglu_bwd_f32(float *dgate, float *dup, const float *dy, const float *gate,
                           const float *up, int64_t n);
void tw_cpu_swiglu_bwd_f32(float *dgate, float *dup, const float *dy, const float *gate,
                           const float *up, int64_t n);
void tw_cpu_swiglu_bwd_f32_portable(float *dgate, float *dup, const float *dy, const float *gate,
                                    const float *up, int64_t n);
void tw_cpu_swiglu_bwd_f32_avx2(float *dgate, float *dup, const float *dy, const float *gate,
                                const float *up, int64_t n);

/* GELU backward, mode a tw_gelu_mode.   dx, dy, x: (n); dx may alias dy. */
void tw_ref_gelu_bwd_f32(float *dx, const float *dy, const float *x, int64_t n, int mode);
void tw_cpu_gelu_bwd_f32(float *dx, const float *dy, const float *x, int64_t n, int mode);

/* dtable[ids[i],:] += dy[i,:] in order of i (bit-exact everywhere).   dtable: (n_rows, n),
 * dy: (n_ids, n), ids: (n_ids). */
void tw_ref_embed_bwd_f32(float *dtable, const float *dy, const int32_t *ids, int64_t n_ids,
                          int64_t n);
void tw_cpu_embed_bwd_f32(float *dtable, const float *dy, const int32_t *ids, int64_t n_ids,
                          int64_t n);

/* LM head + softmax cross-entropy.   h: (n_tok, d), w: (n_vocab, d) of wt, target: (n_tok)
 * (< 0: ignored), loss: (n_tok), dh: (n_tok, d) or NULL, dw: (n_vocab, d) += or NULL. */
tw_status tw_ref_xent(float *loss, float *dh, float *dw, const float *h, const void *w,
                      tw_dtype wt, const int32_t *target, int64_t n_tok, int64_t d,
                      int64_t n_vocab, float grad_scale);
tw_status tw_cpu_xent(float *loss, float *dh, float *dw, const float *h, const void *w,
                      tw_dtype wt, const int32_t *target, int64_t n_tok, int64_t d,
                      int64_t n_vocab, float grad_scale);

/* One AdamW step.   p, g, m, v: (n). */
void tw_ref_adamw_f32(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                      float b1, float b2, float eps, float weight_decay, float grad_scale,
                      int64_t step);
void tw_cpu_adamw_f32(float *p, const float *g, float *m, float *v, int64_t n, float lr,
                      float b1, float b2, float eps, float weight_decay, float grad_scale,
                      int64_t step);

/* Segment attention (kernels.h, TW_OP_ATTN_SEG and its backward), dense within segments.
 *   out, q, dout, dq: (n_tok, n_head, head_dim); k, v, dk, dv: (n_tok, n_kv_head, head_dim);
 *   lse: (n_tok, n_head) (NULL: not written, forward only); seg: (n_tok) non-decreasing (the
 *   CPU backend checks it first). The optimized kernels (attn_seg.c) need scratch memory
 *   (TW_ERR_NOMEM) and give the same bits for any thread count; the references
 *   (ref_attn_seg.c) accumulate in fp64 and allocate nothing. The backward recomputes the
 *   softmax from the given lse and uses D = rowsum(dout * out) of the given out. */
typedef struct {
    int64_t n_tok, n_head, n_kv_head, head_dim;
    float scale;
    int causal;
} tw_attn_seg_shape;
void tw_ref_attn_seg_f32(float *out, float *lse, const float *q, const float *k, const float *v,
                         const int32_t *seg, const tw_attn_seg_shape *s);
tw_status tw_cpu_attn_seg_f32(float *out, float *lse, const float *q, const float *k,
                              const float *v, const int32_t *seg, const tw_attn_seg_shape *s);
/* force_portable: 1 runs the portable C variant even where AVX2 is available. */
tw_status tw_cpu_attn_seg_f32_variant(float *out, float *lse, const float *q, const float *k,
                                      const float *v, const int32_t *seg,
                                      const tw_attn_seg_shape *s, int force_portable);
void tw_ref_attn_seg_bwd_f32(float *dq, float *dk, float *dv, const float *dout, const float *out,
                             const float *lse, const float *q, const float *k, const float *v,
                             const int32_t *seg, const tw_attn_seg_shape *s);
tw_status tw_cpu_attn_seg_bwd_f32(float *dq, float *dk, float *dv, const float *dout,
                                  const float *out, const float *lse, const float *q,
                                  const float *k, const float *v, const int32_t *seg,
                                  const tw_attn_seg_shape *s);
/* force_portable: bit 0 (1) the portable variant; bit 1 (2) dQ's pass recomputes P and dS
 * instead of reading the dS kept by the dK/dV pass (what long segments do; the same bits). */
tw_status tw_cpu_attn_seg_bwd_f32_variant(float *dq, float *dk, float *dv, const float *dout,
                                          const float *out, const float *lse, const float *q,
                                          const float *k, const float *v, const int32_t *seg,
                                          const tw_attn_seg_shape *s, int force_portable);
#endif
