/* kernels.h: the op table and the backend handle (ARCHITECTURE.md, "Backends").
 *
 * One op table, several backends. Engine code opens a backend, allocates its tensors in
 * buffers the backend owns, moves bytes in and out through the handle, and runs ops through
 * the handle. It never holds a raw device pointer, so the same engine code runs on the CPU
 * and on a CUDA device.
 *
 *   tw_backend_open("auto" | "cpu" | "cuda" | "cuda:N")   pick and open a backend
 *   tw_buffer_alloc / _free / _upload / _download           backend-owned memory, accounted
 *   tw_op_<name>(be, ...)                                   run one op (asynchronous on CUDA)
 *   tw_backend_sync(be)                                     wait; reports asynchronous failures
 *
 * Every op has a naive fp64-accumulating CPU reference (kernels/cpu/ref_<op>.c) that is its
 * specification; the optimized CPU kernels and every CUDA kernel are tested against it
 * (tests/unit/test_kernels_cpu.c, tests/gpu/test_cuda_ops.c).
 *
 * Adding an op: append it to tw_op (bump the pinned count), name it in backend.c, give it a
 * reference in kernels/cpu/ref_<op>.c, a case in both differential tests, then implement it in
 * the backends that can; a backend that does not list it in its `supports` answers
 * TW_ERR_UNSUPPORTED for it.
 *
 * Thread safety: a tw_backend and its buffers are used by one thread at a time (like a CUDA
 * stream); different handles may be used from different threads. The CPU backend's ops keep no
 * state, so several threads may run ops and uploads/downloads on one CPU handle at once when
 * none writes bytes another reads or writes (allocation and free stay one thread at a time). The free functions of this
 * header that take no handle (names, CPU features, device queries) are thread-safe.
 */
#ifndef TWIN_KERNELS_H
#define TWIN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "quant.h" /* tw_dtype: ggml's type ids and block layouts (weights, tables, caches) */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the op table -------------------------------------------------------------------------
 *
 * Shapes are row-major, last index fastest, and written (rows, n). Activations are fp32;
 * weights and embedding tables may be any tw_dtype the op lists (quant.h: ggml's block
 * layouts, so GGUF tensors are used where they lie); index arrays (token ids, positions,
 * slots, block tables) are int32. "dst may alias src" means exactly the same bytes
 * (in-place); partial overlaps are rejected with TW_ERR_ARG; a dst that is not said to alias
 * a source must not overlap it.
 *
 * Precision: every op has a reference (kernels/cpu/ref_<op>.c) that accumulates in fp64 and
 * rounds once; optimized kernels accumulate in fp32 and are tested against it under bounds
 * written beside the tests (tests/unit/test_kernels_cpu.c). Lines below say where an op
 * rounds by design (quantized activations, fp16 caches).
 *
 *   TW_OP_ADD        y = a + b                         a, b, y: (n). Bit-exact everywhere.
 *                    y may alias a or b.
 *   TW_OP_RMSNORM    y[r,i] = x[r,i] / sqrt(mean_i(x[r,:]^2) + eps) * w[i]
 *                    x, y: (rows, n), w: (n), eps >= 0 finite, n >= 1. y may alias x.
 *                    CPU: fp32 squares summed in fp64, as llama.cpp does.
 *   TW_OP_MUL        y = a * b elementwise             a, b, y: (n). Bit-exact. y may alias a, b.
 *   TW_OP_SCALE      y = x * s                         x, y: (n). Bit-exact. y may alias x.
 *   TW_OP_COPY       y = x                             x, y: (n) fp32, no overlap.
 *   TW_OP_GET_ROWS   y[i,:] = dequantize(table[ids[i],:])
 *                    table: (n_rows, n) of ttype (any type tw_dtype_can_dequantize, n a
 *                    multiple of its block size), ids: (n_ids) int32 in [0, n_rows), y:
 *                    (n_ids, n) fp32. Bit-exact with tw_dequantize_row. Embedding lookup and
 *                    the gather of hidden rows (ttype F32).
 *   TW_OP_MATMUL     y[i,o] = sum_k act(x)[i,k] * W[o,k] (+ bias[o])
 *                    x: (m, k) fp32, W: (n_out, k) of wtype, each row of W contiguous as GGUF
 *                    stores it (ne0 = k), bias: (n_out) fp32 or absent, y: (m, n_out) fp32.
 *                    act(x) is what llama.cpp multiplies W with, so that results stay close to
 *                    its own:
 *                      F32, F16, BF16         act(x) = x (fp32; not rounded to the weight type)
 *                      Q4_0, Q5_0, Q8_0       x quantized per 32-block to Q8_0 (scale d =
 *                                             amax/127 rounded to fp16, q = round-to-nearest-
 *                                             even(x * 127/amax)), as ggml's AVX2 quantize_row_q8_0
 *                      Q4_1, Q5_1             the same, plus the block sum s = fp16(d * sum q)
 *                                             (ggml's Q8_1) that multiplies the weights' min
 *                      Q2_K .. Q6_K           x quantized per 256-block to Q8_K (fp32 scale
 *                                             d = 1/iscale, iscale = -127/max with max the
 *                                             signed value of largest magnitude, q = min(127,
 *                                             rne(iscale * x)); bsums of 16), as ggml
 *                    Quantized products are exact integer sums per block, scaled in fp32; the
 *                    reference forms the same per-block products in fp64. CPU (AVX2): the
 *                    block sums accumulate as ggml's AVX2 dot products do, so outputs have
 *                    llama.cpp's bits where it uses those (Q4_1, Q5_1, and one-token products
 *                    of weights it does not repack; its repacked, llamafile and tiled kernels
 *                    sum in other orders). k must be a multiple
 *                    of the weight type's block size (32 or 256). y must not overlap x, W, bias.
 *   TW_OP_LAYERNORM  y[r,i] = (x[r,i] - mean(x[r,:])) / sqrt(var(x[r,:]) + eps) * w[i] + b[i]
 *                    x, y: (rows, n); w, b: (n) or absent (w absent: 1, b absent: 0); var is
 *                    the biased (1/n) variance. y may alias x.
 *   TW_OP_ROPE       rotary position embedding of each head of each token
 *                    x, y: (n_tok, n_head, head_dim), pos: (n_tok) int32 >= 0, freq_factors:
 *                    (rope_dim/2) fp32 > 0 or absent. For pair i < rope_dim/2, with
 *                      theta = pos * freq_scale * theta_base^(-2i/rope_dim) / freq_factors[i],
 *                    (a, b) -> (a cos theta - b sin theta, a sin theta + b cos theta), where
 *                    (a, b) = (x[2i], x[2i+1]) for TW_ROPE_NORM (llama GGUFs, whose Q/K rows
 *                    the converter permuted) and (x[i], x[i + rope_dim/2]) for TW_ROPE_NEOX
 *                    (qwen2, gpt-neox, HF llama without permutation). Elements from rope_dim
 *                    on are copied. rope_dim even, 2 <= rope_dim <= head_dim. freq_factors are
 *                    llama3's rope_freqs. y may alias x. CPU: the angles as llama.cpp forms
 *                    them (fp32, iterated products of powf(theta_base, -2/rope_dim)), so
 *                    within ~(2.5 i + 2) 2^-24 theta_i of the exact angle.
 *   TW_OP_KV_WRITE   k_cache[slots[t],h,:] = k[t,h,:], v_cache[slots[t],h,:] = v[t,h,:]
 *                    k, v: (n_tok, n_kv_head, head_dim) fp32; caches: (n_slots, n_kv_head,
 *                    head_dim) of cache_type F32 or F16 (round to nearest even); slots:
 *                    (n_tok) int32 in [0, n_slots), page * page_size + offset, computed by the
 *                    host's cache manager. Two tokens must not name the same slot.
 *   TW_OP_ATTENTION  causal attention over a paged KV cache, grouped-query heads
 *                    q, out: (n_tok, n_head, head_dim) fp32; caches as for KV_WRITE;
 *                    block_table: (n_seq, max_blocks) int32 page ids; tok_seq: (n_tok) int32
 *                    in [0, n_seq), the row of block_table for token t; tok_pos: (n_tok) int32
 *                    in [0, max_blocks * page_size). Token t of sequence s attends to the
 *                    positions j = 0 .. tok_pos[t] of s, whose K/V lie at slot
 *                    block_table[s, j / page_size] * page_size + j % page_size (< n_slots);
 *                    query head h reads kv head h / (n_head / n_kv_head):
 *                      out[t,h,:] = sum_j softmax_j(scale * q[t,h,:] . K_j) V_j.
 *                    Its own K/V must have been written (KV_WRITE) first. The softmax is fp32
 *                    with the maximum subtracted. Bidirectional attention (BERT): give every
 *                    token of a sequence tok_pos = its length - 1. out must not overlap
 *                    anything. CPU (AVX2): llama.cpp's arithmetic (kernels/cpu/attention.c),
 *                    bit for bit: with an f16 cache q and the normalized softmax weights are
 *                    rounded to f16 before their products (as its non-flash path does); the
 *                    sums run in the order of its batch kernels for tokens whose sequence has
 *                    >= 2 tokens in the call and of its single-token kernels otherwise, so a
 *                    sequence gets the same bits alone or in any batch.
 *   TW_OP_SWIGLU     y = silu(gate) * up = gate / (1 + exp(-gate)) * up
 *                    gate, up, y: (rows, n). y may alias gate or up.
 *   TW_OP_GELU       y = gelu(x)                       x, y: (n). y may alias x.
 *                    TW_GELU_TANH: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (GPT-2, ggml);
 *                    TW_GELU_ERF: 0.5 x (1 + erf(x / sqrt 2)) (BERT).
 *   TW_OP_SOFTMAX    y[r,:] = softmax(scale * x[r,:])  x, y: (rows, n). y may alias x.
 *   TW_OP_ARGMAX     idx[r] = the index of the largest x[r,:] (the lowest such index on ties)
 *                    x: (rows, n) fp32 without NaN, idx: (rows) int32.
 *   TW_OP_TOPK       the k largest of each row, in descending order (ties: lower index first)
 *                    x: (rows, n) fp32 without NaN, vals: (rows, k) fp32, idx: (rows, k)
 *                    int32, 1 <= k <= n. A sampler downloads k candidates, not the vocabulary;
 *                    temperature, top-p, min-p and penalties are the host's work over them.
 *
 * Ops take at most TW_OP_MAX_SRC tensor sources.
 */
typedef enum {
    TW_OP_ADD = 0,
    TW_OP_RMSNORM,
    TW_OP_MUL,
    TW_OP_SCALE,
    TW_OP_COPY,
    TW_OP_GET_ROWS,
    TW_OP_MATMUL,
    TW_OP_LAYERNORM,
    TW_OP_ROPE,
    TW_OP_KV_WRITE,
    TW_OP_ATTENTION,
    TW_OP_SWIGLU,
    TW_OP_GELU,
    TW_OP_SOFTMAX,
    TW_OP_ARGMAX,
    TW_OP_TOPK,
    /* training (issue 6) and the encoder: see the "training ops" section below */
    TW_OP_ATTN_SEG,       /* dense attention within segments (packed sequences), saves LSE */
    TW_OP_ATTN_SEG_BWD,
    TW_OP_MATMUL_DX,      /* dx (+)= dy . W          (W of any matmul type, dequantized) */
    TW_OP_MATMUL_DW,      /* dW (+)= dy^T . x        (f32) */
    TW_OP_RMSNORM_BWD,
    TW_OP_LAYERNORM_BWD,
    TW_OP_ROPE_BWD,
    TW_OP_SWIGLU_BWD,
    TW_OP_GELU_BWD,
    TW_OP_EMBED_BWD,      /* dtable[ids[i],:] += dy[i,:] */
    TW_OP_XENT,           /* fused LM head + softmax cross-entropy, forward and dh */
    TW_OP_ADAMW,
    TW_OP_DROPOUT,        /* y = x * mask / (1-p), mask from counters (LoRA dropout) */
    TW_OP_COUNT
} tw_op;

/* The pinned count: adding an op must be a conscious edit of every table indexed by tw_op
 * (names in backend.c, each backend's `supports`, the differential tests). */
#define TW_OP_COUNT_PINNED 29
#ifdef __cplusplus
static_assert(TW_OP_COUNT == TW_OP_COUNT_PINNED, "TW_OP_COUNT changed: update every op table");
#else
_Static_assert(TW_OP_COUNT == TW_OP_COUNT_PINNED, "TW_OP_COUNT changed: update every op table");
#endif

#define TW_OP_MAX_SRC 8

/* RoPE pair orderings; the values are ggml's. */
typedef enum { TW_ROPE_NORM = 0, TW_ROPE_NEOX = 2 } tw_rope_mode;

/* GELU forms. */
typedef enum { TW_GELU_TANH = 0, TW_GELU_ERF = 1 } tw_gelu_mode;

/* "add", "rmsnorm", ...; "?" for a value outside the table. Thread-safe. */
const char *tw_op_name(tw_op op);

/* ---- backends -----------------------------------------------------------------------------*/

typedef struct tw_backend tw_backend; /* an open backend (a CPU, or one CUDA device + stream) */
typedef struct tw_buffer tw_buffer;   /* memory owned by one backend */

typedef enum { TW_BACKEND_CPU = 0, TW_BACKEND_CUDA } tw_backend_kind;

/* Opens a backend by name:
 *   "cpu"     the CPU backend (optimized kernels, OpenMP over tw_threads_get() threads);
 *   "cuda"    CUDA device 0, "cuda:N" device N; fails (TW_ERR_UNSUPPORTED or TW_ERR_RUNTIME,
 *             message says why, e.g. "built without CUDA") when it cannot be used;
 *   "auto"    CUDA device 0 when one is usable, else the CPU. The first fallback in a process
 *             logs one line: "no CUDA device found (<reason>); using the CPU backend".
 * On success *out is a handle for tw_backend_free; on failure *out is NULL. Thread-safe. */
tw_status tw_backend_open(const char *name, tw_backend **out);

/* Closes the backend. Every buffer allocated from it must be freed before; a backend freed
 * with live buffers logs a warning and leaks them. NULL is a no-op. */
void tw_backend_free(tw_backend *be);

/* "cpu" or "cuda:N". Valid while the handle lives. */
const char *tw_backend_name(const tw_backend *be);
tw_backend_kind tw_backend_get_kind(const tw_backend *be);

/* 1 when the backend implements op, else 0. */
int tw_backend_supports(const tw_backend *be, tw_op op);

/* Waits for every op queued on the backend; returns the first asynchronous failure (a CUDA
 * kernel fault, for example) as a status with a message. A no-op on the CPU. */
tw_status tw_backend_sync(tw_backend *be);

/* Bytes allocated through tw_buffer_alloc on this handle: live, peak, and count. */
tw_mem_stats tw_backend_mem_stats(const tw_backend *be);

/* ---- buffers ------------------------------------------------------------------------------*/

/* Allocates nbytes (> 0) of backend memory (host memory for the CPU, device memory for CUDA),
 * aligned to at least 256 bytes on CUDA and 16 on the CPU; contents are undefined. *out is
 * for tw_buffer_free. TW_ERR_NOMEM when the backend is out of memory or the test hook
 * (tw_buffer_fail_after) says so. */
tw_status tw_buffer_alloc(tw_backend *be, size_t nbytes, tw_buffer **out);
void tw_buffer_free(tw_buffer *buf); /* NULL is a no-op */
size_t tw_buffer_size(const tw_buffer *buf);

/* Copies n bytes between host memory and buf[offset, offset+n). Both are synchronous: they
 * return once the bytes have arrived (a download first waits for the ops queued before it),
 * so the host memory may be reused at once. TW_ERR_ARG when the range is outside the buffer. */
tw_status tw_buffer_upload(tw_buffer *buf, size_t offset, const void *src, size_t n);
tw_status tw_buffer_download(const tw_buffer *buf, size_t offset, void *dst, size_t n);
/* Sets buf[offset, offset+n) to zero bytes (for fp32, +0.0f), synchronously; no host
 * allocation. TW_ERR_ARG when the range is outside the buffer. */
tw_status tw_buffer_zero(tw_buffer *buf, size_t offset, size_t n);

/* A buffer over existing host memory (n > 0 bytes at ptr, 16-byte aligned), without a copy:
 * mmap'd GGUF weights become tensors where they lie. CPU backend only (TW_ERR_UNSUPPORTED
 * elsewhere: the engine then allocates and uploads). The memory stays the caller's: it must
 * outlive the buffer, tw_buffer_free releases only the handle, and it is not counted in
 * tw_backend_mem_stats. Ops write only to their outputs, so read-only memory (a PROT_READ
 * mmap) may be wrapped for op inputs; an upload into it is the caller's bug. */
tw_status tw_buffer_wrap_host(tw_backend *be, void *ptr, size_t n, tw_buffer **out);

/* Test hook, like tw_mem_fail_after for host memory: the n-th buffer allocation from now
 * (on any backend; 1 = the next one) fails with TW_ERR_NOMEM; 0 disables. Thread-safe. */
void tw_buffer_fail_after(uint64_t n);

/* A place in a buffer: the tensor starts `offset` bytes into `buf`. Ops check that the whole
 * tensor lies inside the buffer, is aligned for its element type and belongs to the backend
 * the op runs on. */
typedef struct {
    tw_buffer *buf;
    size_t offset; /* bytes */
} tw_ref;

static inline tw_ref tw_ref_at(tw_buffer *buf, size_t offset) {
    tw_ref r;
    r.buf = buf;
    r.offset = offset;
    return r;
}

/* ---- ops ----------------------------------------------------------------------------------
 * Each checks its arguments (TW_ERR_ARG, message names the op and the argument), then queues
 * the op on the backend: on CUDA it may still be running when the call returns; the next
 * download or tw_backend_sync waits for it. TW_ERR_UNSUPPORTED when the backend lacks the op.
 * Shapes and precision: see the op table above. */

/* y = a + b.   y, a, b: (n) fp32.   n >= 0 (0 is a no-op). */
tw_status tw_op_add(tw_backend *be, tw_ref y, tw_ref a, tw_ref b, int64_t n);

/* y = rmsnorm(x) * w over each row.   y, x: (rows, n) fp32, w: (n) fp32.
 * rows >= 0 (0 is a no-op), 1 <= n <= INT32_MAX, eps finite and >= 0. */
tw_status tw_op_rmsnorm(tw_backend *be, tw_ref y, tw_ref x, tw_ref w, int64_t rows, int64_t n,
                        float eps);

/* The null ref: an absent optional tensor (a bias, freq_factors). */
static inline tw_ref tw_ref_none(void) {
    tw_ref r;
    r.buf = NULL;
    r.offset = 0;
    return r;
}

/* y = a * b elementwise.   y, a, b: (n) fp32; n >= 0. y may alias a or b. */
tw_status tw_op_mul(tw_backend *be, tw_ref y, tw_ref a, tw_ref b, int64_t n);

/* y = x * s.   y, x: (n) fp32; n >= 0; s finite. y may alias x. */
tw_status tw_op_scale(tw_backend *be, tw_ref y, tw_ref x, float s, int64_t n);

/* y = x.   y, x: (n) fp32; n >= 0; no overlap. */
tw_status tw_op_copy(tw_backend *be, tw_ref y, tw_ref x, int64_t n);

/* y[i,:] = dequantize(table[ids[i],:]).   table: (n_rows, n) of ttype; ids: (n_ids) int32;
 * y: (n_ids, n) fp32. n >= 1 a multiple of ttype's block size; n_ids >= 0; an id outside
 * [0, n_rows) is TW_ERR_ARG (checked on the host by the CPU backend; a CUDA backend writes
 * zeros for it). */
tw_status tw_op_get_rows(tw_backend *be, tw_ref y, tw_ref table, tw_dtype ttype, int64_t n_rows,
                         tw_ref ids, int64_t n_ids, int64_t n);

/* y = act(x) . W^T (+ bias).   x: (m, k) fp32; w: (n_out, k) of wtype; bias: (n_out) fp32 or
 * tw_ref_none(); y: (m, n_out) fp32. m >= 0 (0: no-op), k >= 1 a multiple of wtype's block
 * size, n_out >= 1. wtype: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
 * Q5_K, Q6_K, NF4 (k a multiple of 64; see "NF4 weights" below; others: TW_ERR_UNSUPPORTED). act(): see TW_OP_MATMUL above. The CPU backend
 * parallelizes over output rows (tw_threads_get() threads) and, for m > 1, reads each weight
 * block once for several rows of x. */
tw_status tw_op_matmul(tw_backend *be, tw_ref y, tw_ref x, tw_ref w, tw_dtype wtype, tw_ref bias,
                       int64_t m, int64_t k, int64_t n_out);

/* LayerNorm over rows.   y, x: (rows, n) fp32; w, b: (n) fp32 or tw_ref_none(). rows >= 0,
 * 1 <= n <= INT32_MAX, eps finite >= 0. y may alias x. */
tw_status tw_op_layernorm(tw_backend *be, tw_ref y, tw_ref x, tw_ref w, tw_ref b, int64_t rows,
                          int64_t n, float eps);

/* RoPE.   y, x: (n_tok, n_head, head_dim) fp32; pos: (n_tok) int32 (>= 0: a negative one is
 * TW_ERR_ARG on the CPU); freq_factors: (rope_dim/2) fp32 or tw_ref_none(). n_tok >= 0,
 * n_head >= 1, 2 <= rope_dim <= head_dim, rope_dim even; theta_base > 0 and freq_scale > 0
 * finite. y may alias x. */
tw_status tw_op_rope(tw_backend *be, tw_ref y, tw_ref x, tw_ref pos, int64_t n_tok, int64_t n_head,
                     int64_t head_dim, int64_t rope_dim, tw_rope_mode mode, float theta_base,
                     float freq_scale, tw_ref freq_factors);

/* Writes the K and V rows of n_tok tokens into one layer's caches.   k, v: (n_tok, n_kv_head,
 * head_dim) fp32; k_cache, v_cache: (n_slots, n_kv_head, head_dim) of cache_type (F32 or
 * F16); slots: (n_tok) int32, each in [0, n_slots) (TW_ERR_ARG otherwise on the CPU). */
tw_status tw_op_kv_write(tw_backend *be, tw_ref k_cache, tw_ref v_cache, tw_dtype cache_type,
                         int64_t n_slots, tw_ref k, tw_ref v, tw_ref slots, int64_t n_tok,
                         int64_t n_kv_head, int64_t head_dim);

/* Paged causal attention with grouped-query heads (TW_OP_ATTENTION above).
 * out, q: (n_tok, n_head, head_dim) fp32; k_cache, v_cache: (n_slots, n_kv_head, head_dim) of
 * cache_type (F32 or F16); block_table: (n_seq, max_blocks) int32; tok_seq, tok_pos: (n_tok)
 * int32. n_head a multiple of n_kv_head; 1 <= head_dim <= 1024 (kept on the stack); scale > 0
 * finite (usually 1/sqrt(head_dim)). On the CPU a tok_seq, tok_pos or page id out of range,
 * or a slot past n_slots, is TW_ERR_ARG before anything is written. */
tw_status tw_op_attention(tw_backend *be, tw_ref out, tw_ref q, tw_ref k_cache, tw_ref v_cache,
                          tw_dtype cache_type, int64_t n_slots, tw_ref block_table, int64_t n_seq,
                          int64_t max_blocks, int64_t page_size, tw_ref tok_seq, tw_ref tok_pos,
                          int64_t n_tok, int64_t n_head, int64_t n_kv_head, int64_t head_dim,
                          float scale);

/* y = silu(gate) * up.   y, gate, up: (rows, n) fp32. y may alias gate or up. */
tw_status tw_op_swiglu(tw_backend *be, tw_ref y, tw_ref gate, tw_ref up, int64_t rows, int64_t n);

/* y = gelu(x).   y, x: (n) fp32. y may alias x. */
tw_status tw_op_gelu(tw_backend *be, tw_ref y, tw_ref x, int64_t n, tw_gelu_mode mode);

/* y = softmax(scale * x) over each row.   y, x: (rows, n) fp32; n >= 1; scale finite. y may
 * alias x. */
tw_status tw_op_softmax(tw_backend *be, tw_ref y, tw_ref x, int64_t rows, int64_t n, float scale);

/* idx[r] = argmax x[r,:].   x: (rows, n) fp32; idx: (rows) int32; 1 <= n <= INT32_MAX. */
tw_status tw_op_argmax(tw_backend *be, tw_ref idx, tw_ref x, int64_t rows, int64_t n);

/* The k largest of each row, descending.   x: (rows, n) fp32; vals: (rows, k) fp32; idx:
 * (rows, k) int32; 1 <= k <= n <= INT32_MAX. */
tw_status tw_op_topk(tw_backend *be, tw_ref vals, tw_ref idx, tw_ref x, int64_t rows, int64_t n,
                     int64_t k);

/* ---- training ops (issue 6; ATTN_SEG also serves the encoder) --------------------------------
 * Each has a naive fp64-accumulating CPU reference with the same signature (kernels/cpu/ref_*.c)
 * and is checked against finite differences in double precision on tiny shapes
 * (tests/unit/test_kernels_train.c; the attention: tests/unit/test_kernels_attn_seg.c).
 * `accumulate` = 1 adds into the output, 0 overwrites it. */

/* Dense attention within segments (no KV cache): token t attends to tokens u of the same
 * segment (seg[u] == seg[t]) with u <= t when causal, any u of the segment when not. Tokens of
 * one segment are contiguous in the batch and in order; positions are the caller's business
 * (RoPE is applied before). Grouped-query heads: head h reads kv head h / (n_head/n_kv_head).
 *   out, q: (n_tok, n_head, head_dim); k, v: (n_tok, n_kv_head, head_dim); seg: (n_tok) int32
 *   non-decreasing; lse: (n_tok, n_head) fp32 log-sum-exp of the scaled scores (saved for the
 *   backward pass, as FlashAttention does) or tw_ref_none().  scale > 0. On the CPU a seg that
 *   decreases is TW_ERR_ARG (naming the entry) before anything is written; results have the
 *   same bits for any thread count and for a segment alone or packed with others. */
tw_status tw_op_attn_seg(tw_backend *be, tw_ref out, tw_ref lse, tw_ref q, tw_ref k, tw_ref v,
                         tw_ref seg, int64_t n_tok, int64_t n_head, int64_t n_kv_head,
                         int64_t head_dim, float scale, int causal);
/* Its backward: from dout and the saved lse (the softmax is recomputed, never stored),
 * dq (n_tok, n_head, head_dim), dk, dv (n_tok, n_kv_head, head_dim), overwritten. */
tw_status tw_op_attn_seg_bwd(tw_backend *be, tw_ref dq, tw_ref dk, tw_ref dv, tw_ref dout,
                             tw_ref out, tw_ref lse, tw_ref q, tw_ref k, tw_ref v, tw_ref seg,
                             int64_t n_tok, int64_t n_head, int64_t n_kv_head, int64_t head_dim,
                             float scale, int causal);

/* dx (+)= dy . W.   dy: (m, n_out) fp32; w: (n_out, k) of wtype (any tw_op_matmul type, NF4 too,
 * dequantized block by block: the frozen base of QLoRA stays quantized); dx: (m, k) fp32. */
tw_status tw_op_matmul_dx(tw_backend *be, tw_ref dx, tw_ref dy, tw_ref w, tw_dtype wtype,
                          int64_t m, int64_t k, int64_t n_out, int accumulate);
/* dw (+)= dy^T . x (and dbias (+)= column sums of dy when dbias is not none).
 * dy: (m, n_out) fp32; x: (m, k) fp32; dw: (n_out, k) fp32; dbias: (n_out) fp32. */
tw_status tw_op_matmul_dw(tw_backend *be, tw_ref dw, tw_ref dbias, tw_ref dy, tw_ref x,
                          int64_t m, int64_t k, int64_t n_out, int accumulate);

/* RMSNorm backward: y = x / rms(x) * w.  dx: (rows, n) overwritten; dw: (n) accumulated (+=)
 * over rows, or tw_ref_none() for a frozen w. */
tw_status tw_op_rmsnorm_bwd(tw_backend *be, tw_ref dx, tw_ref dw, tw_ref dy, tw_ref x, tw_ref w,
                            int64_t rows, int64_t n, float eps);
/* LayerNorm backward: dx overwritten; dw, db accumulated, or tw_ref_none(). */
tw_status tw_op_layernorm_bwd(tw_backend *be, tw_ref dx, tw_ref dw, tw_ref db, tw_ref dy,
                              tw_ref x, tw_ref w, int64_t rows, int64_t n, float eps);
/* RoPE backward: the inverse rotation of dy (same arguments as tw_op_rope). dx may alias dy. */
tw_status tw_op_rope_bwd(tw_backend *be, tw_ref dx, tw_ref dy, tw_ref pos, int64_t n_tok,
                         int64_t n_head, int64_t head_dim, int64_t rope_dim, tw_rope_mode mode,
                         float theta_base, float freq_scale, tw_ref freq_factors);
/* y = silu(gate) * up:  dgate, dup (rows, n) overwritten from dy, gate, up. */
tw_status tw_op_swiglu_bwd(tw_backend *be, tw_ref dgate, tw_ref dup, tw_ref dy, tw_ref gate,
                           tw_ref up, int64_t rows, int64_t n);
/* y = gelu(x):  dx (n) overwritten (may alias dy). */
tw_status tw_op_gelu_bwd(tw_backend *be, tw_ref dx, tw_ref dy, tw_ref x, int64_t n,
                         tw_gelu_mode mode);
/* dtable[ids[i],:] += dy[i,:] (fp32 table gradient; deterministic order: by i).
 * dtable: (n_rows, n); dy: (n_ids, n); ids: (n_ids) int32 in [0, n_rows). */
tw_status tw_op_embed_bwd(tw_backend *be, tw_ref dtable, tw_ref dy, tw_ref ids, int64_t n_rows,
                          int64_t n_ids, int64_t n);

/* The LM head fused with softmax cross-entropy, so that the (n_tok, n_vocab) logits never
 * exist at once (rows are processed in chunks):
 *   logits[t,:] = h[t,:] . W^T;  loss[t] = logsumexp(logits[t,:]) - logits[t,target[t]];
 *   dh[t,:] (overwritten) = grad_scale * (softmax(logits[t,:]) - onehot(target[t])) . W;
 *   dw (n_vocab, d) += the same dlogits^T . h, when dw is not none (an untied, trained head).
 * target[t] < 0: the token is ignored (loss 0, dh row 0). h: (n_tok, d) fp32; w: (n_vocab, d)
 * of any matmul type; target: (n_tok) int32; loss: (n_tok) fp32; dh: (n_tok, d) fp32 or none
 * (forward only: evaluation). grad_scale: usually 1 / (number of non-ignored tokens). */
tw_status tw_op_xent(tw_backend *be, tw_ref loss, tw_ref dh, tw_ref dw, tw_ref h, tw_ref w,
                     tw_dtype wtype, tw_ref target, int64_t n_tok, int64_t d, int64_t n_vocab,
                     float grad_scale);

/* AdamW step on n parameters (fp32 moments m, v updated in place):
 *   g' = g * grad_scale;  m = b1 m + (1-b1) g';  v = b2 v + (1-b2) g'^2;
 *   p -= lr * ( (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps) + weight_decay * p ).
 * step >= 1. Bit-identical across runs and thread counts (elementwise). */
tw_status tw_op_adamw(tw_backend *be, tw_ref p, tw_ref g, tw_ref m, tw_ref v, int64_t n,
                      float lr, float b1, float b2, float eps, float weight_decay,
                      float grad_scale, int64_t step);

/* Inverted dropout with a counter-based mask (LoRA dropout, PEFT semantics; its backward is
 * the same op applied to dy):
 *   y[r,j] = keep(key, row0 + r, j) ? x[r,j] * s : 0,   s = (float)(1 / (1 - p)) (fp32;
 *   the product rounds once, so every backend has the same bits),
 *   keep(key, t, j) = (tw_dropout_bits(key, t, j) >> 40) >= tw_dropout_threshold(p).
 * The mask is a pure function of (key, token counter, column): no RNG state, so it does not
 * depend on threads, batch splitting or what ran before (a resumed run gets the same masks).
 * The caller folds whatever identifies the call (seed, step, layer, module) into key with
 * tw_dropout_key and numbers tokens by row0 (e.g. their offset in the global batch).
 * y, x: (rows, n) fp32; rows >= 0 (0: no-op), 1 <= n <= INT32_MAX, 0 <= row0 and
 * row0 + rows <= INT64_MAX; 0 <= p < 1 (p = 0 copies x). y may alias x. */
tw_status tw_op_dropout(tw_backend *be, tw_ref y, tw_ref x, int64_t rows, int64_t n, float p,
                        uint64_t key, int64_t row0);
/* The 64 mask bits of element (t, j) under key: splitmix64's finalizer over the counters
 * (t * 0x9E3779B97F4A7C15 xor key, then + j * 0xD1B54A32D192ED03, each mixed). Pure,
 * thread-safe. */
uint64_t tw_dropout_bits(uint64_t key, uint64_t t, uint64_t j);
/* round(p * 2^24): an element whose top 24 mask bits fall below it is dropped, so the drop
 * probability is p to within 2^-25. p in [0, 1). Pure, thread-safe. */
uint32_t tw_dropout_threshold(float p);
/* A key from n counters (seed first, then e.g. step, layer, module): each is mixed in
 * turn, so (1, 2) and (2, 1) give different keys. Pure, thread-safe. */
uint64_t tw_dropout_key(const uint64_t *counters, int n);

/* ---- NF4 weights (QLoRA's frozen base) ------------------------------------------------------
 *
 * TW_DTYPE_NF4 is twin's own weight type, outside ggml's ids (>= TW_DTYPE_COUNT: tw_dtype_name
 * says NULL, GGUF readers and writers refuse it), so it is never written into or read from a
 * file: engine code makes it from loaded weights (tw_model_proj_convert). tw_op_matmul and
 * tw_op_matmul_dx take it (other ops do not: TW_ERR_ARG); act(x) = x (fp32). A W (n_out, k),
 * k a multiple of 64, is one block of bytes, 4-byte aligned, laid out as tw_nf4_layout_get
 * says (n = n_out * k elements, nb = n / 64 blocks, nb2 = ceil(nb / 256)):
 *   map      256 fp32   bitsandbytes' signed 8-bit dynamic map (qabsmax indexes it)
 *   offset   1 fp32     the mean of the blocks' absmax values
 *   absmax2  nb2 fp32   the scale of each run of 256 qabsmax codes
 *   qabsmax  nb uint8   each 64-block's absmax - offset, quantized with the map
 *   codes    n/2 uint8  two 4-bit codes per byte, element 2i in the high nibble
 * Element i of block b = i / 64 is nf4[code_i] * (map[qabsmax_b] * absmax2[b / 256] + offset),
 * each operation one fp32 rounding (bitsandbytes' dequantization; engine/nf4.h makes the codes
 * and has the 16 NF4 values). A row's blocks never straddle rows (k % 64 == 0), so kernels
 * dequantize any range of rows on its own. CPU: chunks of rows are dequantized inside the op and
 * multiplied as F32, so results have the bits of the F32 op on the dequantized matrix; CUDA:
 * not yet (TW_ERR_UNSUPPORTED, as its other matmuls). */
#define TW_DTYPE_NF4 ((tw_dtype)64)
#define TW_NF4_BLOCK 64   /* elements per absmax block */
#define TW_NF4_BLOCK2 256 /* absmax codes per absmax2 block */

typedef struct {
    size_t map, offset, absmax2, qabsmax, codes; /* byte offsets from the start */
    size_t bytes;                                /* the whole tensor */
    int64_t n_blocks, n_blocks2;
} tw_nf4_layout;

/* The 16 NF4 values, ascending, code i -> value i: bitsandbytes' published table (functional.py
 * get_4bit_type("nf4")), the one copy in twin (engine/nf4.c quantizes to it; tests/unit/
 * test_nf4.c checks it against the paper's construction). Static storage; thread-safe. */
const float *tw_nf4_values_get(void);

/* The layout of an NF4 W (n_out, k) into *out. TW_ERR_ARG (message names the shape) when
 * n_out < 1, k is not a positive multiple of 64 or n_out * k exceeds 2^40. Thread-safe. */
tw_status tw_nf4_layout_get(int64_t n_out, int64_t k, tw_nf4_layout *out);

/* ---- machine information --------------------------------------------------------------------*/

/* CPU features the optimized kernels can use, detected once at run time. Thread-safe. */
typedef struct {
    int avx2, fma, avx512f;
} tw_cpu_features;
tw_cpu_features tw_cpu_features_get(void);

/* One CUDA device, as `twin info` and the tests report it. */
typedef struct {
    int index;
    char name[256];
    int sm_count;
    int cc_major, cc_minor; /* compute capability */
    size_t mem_total, mem_free; /* bytes */
    int runtime_version, driver_version; /* 1000*major + 10*minor */
} tw_device_info;

/* 1 when this binary contains the CUDA backend. */
int tw_cuda_compiled(void);

/* "CUDA runtime 13.0, nvcc 13.0, archs 800,900" or "built without CUDA". Static string. */
const char *tw_cuda_build_info(void);

/* Number of usable CUDA devices. When there are none (or the binary has no CUDA, or the
 * driver is missing) returns TW_ERR_NOT_FOUND or TW_ERR_UNSUPPORTED with the reason as the
 * message and *count = 0. Thread-safe. */
tw_status tw_cuda_device_count(int *count);

/* Fills *info for device `index` (0-based). Thread-safe. */
tw_status tw_cuda_device_info(int index, tw_device_info *info);

#ifdef __cplusplus
}
#endif
#endif
