/* backend_impl.h: private to kernels/: the backend struct and the function table each backend
 * fills in. kernels/backend.c owns the struct, checks every argument of every op and resolves
 * tensor references to backend addresses; a backend only computes. Included by C and by the
 * CUDA (C++) sources, so it uses the common subset of both. */
#ifndef TWIN_BACKEND_IMPL_H
#define TWIN_BACKEND_IMPL_H

#include "kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One checked op call, with every tensor resolved to an address in the backend's own memory
 * space (host pointers for the CPU, device pointers for CUDA); an absent optional tensor is
 * NULL. The meaning of dst, dst2, src[], ne[], fp[] and type is the op's (kernels.h), in the
 * order of its tw_op_<name> arguments:
 *   ADD, MUL        dst y, src {a, b}, ne {n}
 *   SCALE           dst y, src {x}, ne {n}, fp {s}
 *   COPY            dst y, src {x}, ne {n}
 *   RMSNORM         dst y, src {x, w}, ne {rows, n}, fp {eps}
 *   GET_ROWS        dst y, src {table, ids}, ne {n_rows, n_ids, n}, type ttype
 *   MATMUL          dst y, src {x, w, bias}, ne {m, k, n_out}, type wtype
 *   LAYERNORM       dst y, src {x, w, b}, ne {rows, n}, fp {eps}
 *   ROPE            dst y, src {x, pos, freq_factors}, ne {n_tok, n_head, head_dim, rope_dim,
 *                   mode}, fp {theta_base, freq_scale}
 *   KV_WRITE        dst k_cache, dst2 v_cache, src {k, v, slots}, ne {n_slots, n_tok,
 *                   n_kv_head, head_dim}, type cache_type
 *   ATTENTION       dst out, src {q, k_cache, v_cache, block_table, tok_seq, tok_pos},
 *                   ne {n_slots, n_seq, max_blocks, page_size, n_tok, n_head, n_kv_head,
 *                   head_dim}, fp {scale}, type cache_type
 *   SWIGLU          dst y, src {gate, up}, ne {rows, n}
 *   GELU            dst y, src {x}, ne {n, mode}
 *   SOFTMAX         dst y, src {x}, ne {rows, n}, fp {scale}
 *   ARGMAX          dst idx, src {x}, ne {rows, n}
 *   TOPK            dst vals, dst2 idx, src {x}, ne {rows, n, k}
 *   ATTN_SEG        dst out, dst2 lse (NULL when not asked), src {q, k, v, seg},
 *                   ne {n_tok, n_head, n_kv_head, head_dim, causal}, fp {scale}
 *   ATTN_SEG_BWD    dst dq, dst2 dk, dst3 dv, src {dout, out, lse, q, k, v, seg},
 *                   ne {n_tok, n_head, n_kv_head, head_dim, causal}, fp {scale}
 *   MATMUL_DX       dst dx, src {dy, w}, ne {m, k, n_out, accumulate}, type wtype
 *   MATMUL_DW       dst dw, dst2 dbias, src {dy, x}, ne {m, k, n_out, accumulate}
 *   RMSNORM_BWD     dst dx, dst2 dw, src {dy, x, w}, ne {rows, n}, fp {eps}
 *   LAYERNORM_BWD   dst dx, dst2 dw, dst3 db, src {dy, x, w}, ne {rows, n}, fp {eps}
 *   ROPE_BWD        dst dx, src {dy, pos, freq_factors}, ne and fp as ROPE
 *   SWIGLU_BWD      dst dgate, dst2 dup, src {dy, gate, up}, ne {rows, n}
 *   GELU_BWD        dst dx, src {dy, x}, ne {n, mode}
 *   EMBED_BWD       dst dtable, src {dy, ids}, ne {n_rows, n_ids, n}
 *   XENT            dst loss, dst2 dh, dst3 dw, src {h, w, target}, ne {n_tok, d, n_vocab},
 *                   fp {grad_scale}, type wtype
 *   ADAMW           dst p, dst2 m, dst3 v, src {g}, ne {n, step}, fp {lr, b1, b2, eps,
 *                   weight_decay, grad_scale} */
typedef struct {
    tw_op op;
    void *dst;
    void *dst2;
    void *dst3; /* ops with three outputs (ATTN_SEG_BWD, LAYERNORM_BWD) */
    const void *src[TW_OP_MAX_SRC];
    int64_t ne[8];
    float fp[8]; /* ADAMW has six */
    tw_dtype type;
} tw_op_call;

typedef struct tw_backend_vtbl {
    /* 1 when the backend implements op. */
    int (*supports)(const tw_backend *be, tw_op op);
    /* Backend memory: nbytes > 0; on failure return a status with a message. */
    tw_status (*mem_alloc)(tw_backend *be, size_t nbytes, void **out);
    void (*mem_free)(tw_backend *be, void *p);
    tw_status (*mem_upload)(tw_backend *be, void *dst, const void *src, size_t n);
    tw_status (*mem_download)(tw_backend *be, void *dst, const void *src, size_t n);
    /* Runs (or queues) a call that backend.c has already checked. */
    tw_status (*op_run)(tw_backend *be, const tw_op_call *call);
    tw_status (*sync)(tw_backend *be);
    /* Releases ctx (not the tw_backend struct, which backend.c frees). */
    void (*close)(tw_backend *be);
} tw_backend_vtbl;

struct tw_backend {
    const tw_backend_vtbl *vt;
    void *ctx; /* the backend's own state */
    tw_backend_kind kind;
    char name[32];
    /* Accounting of tw_buffer_alloc on this handle (the handle is single-threaded). */
    size_t mem_current, mem_peak;
    uint64_t n_allocs;
    uint64_t n_live;
};

struct tw_buffer {
    tw_backend *be;
    void *ptr; /* backend address */
    size_t size;
    int wrapped; /* tw_buffer_wrap_host: the memory is the caller's (not freed, not counted) */
};

/* Fill be->vt, be->ctx and be->name; on failure leave be->ctx NULL and return a status with
 * a message. tw_cuda_backend_init lives in kernels/cuda/ (or no_cuda.c). */
tw_status tw_cpu_backend_init(tw_backend *be);
tw_status tw_cuda_backend_init(tw_backend *be, int device);

#ifdef __cplusplus
}
#endif
#endif
