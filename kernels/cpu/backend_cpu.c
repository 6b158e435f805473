/* backend_cpu.c: the CPU backend: buffers are host memory from tw_malloc, ops run the
 * optimized kernels of this folder synchronously on the calling thread and its OpenMP team. */
#include "../backend_impl.h"
#include "cpu_kernels.h"
#include "nf4_kernels.h"
#include "dropout.h"

#include <string.h>

static int cpu_supports(const tw_backend *be, tw_op op) {
    switch (op) {
    case TW_OP_ADD:
    case TW_OP_RMSNORM:
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
        return 1;
    case TW_OP_COUNT:
        break;
    }
    return 0;
}

static tw_status cpu_mem_alloc(tw_backend *be, size_t nbytes, void **out) {
    *out = tw_malloc(nbytes);
    return *out ? TW_OK : tw_error_wrap("%s", be->name);
}

static void cpu_mem_free(tw_backend *be, void *p) { tw_free(p); }

static tw_status cpu_mem_copy(tw_backend *be, void *dst, const void *src, size_t n) {
    memcpy(dst, src, n);
    return TW_OK;
}

/* ---- index checks: the CPU reads index arrays on the host, so it checks them first ------ */

/* Every v[i] (n of them) in [0, lim); else TW_ERR_ARG naming the op, the array and the entry. */
static tw_status index_check(tw_op op, const char *arg, const int32_t *v, int64_t n, int64_t lim) {
    for (int64_t i = 0; i < n; i++)
        if (v[i] < 0 || v[i] >= lim)
            return tw_error(TW_ERR_ARG, "%s: %s[%lld] = %d is outside [0, %lld)", tw_op_name(op),
                            arg, (long long)i, (int)v[i], (long long)lim);
    return TW_OK;
}

/* Segment attention: seg (n_tok) must be non-decreasing (each segment contiguous). */
static tw_status seg_check(tw_op op, const int32_t *seg, int64_t n_tok) {
    for (int64_t t = 1; t < n_tok; t++)
        if (seg[t] < seg[t - 1])
            return tw_error(TW_ERR_ARG, "%s: seg[%lld] = %d is below seg[%lld] = %d (segments "
                            "must be contiguous, in non-decreasing order)", tw_op_name(op),
                            (long long)t, (int)seg[t], (long long)(t - 1), (int)seg[t - 1]);
    return TW_OK;
}

/* XENT: every target[t] < n_vocab (negative ones are ignored tokens). */
static tw_status target_check(const int32_t *target, int64_t n_tok, int64_t n_vocab) {
    for (int64_t t = 0; t < n_tok; t++)
        if (target[t] >= n_vocab)
            return tw_error(TW_ERR_ARG, "xent: target[%lld] = %d is not below n_vocab = %lld "
                            "(negative: ignored)", (long long)t, (int)target[t],
                            (long long)n_vocab);
    return TW_OK;
}

/* Attention: sequences, positions, and the pages each token reads. */
static tw_status attention_check(const tw_op_call *c) {
    const tw_op op = TW_OP_ATTENTION;
    int64_t n_slots = c->ne[0], n_seq = c->ne[1], max_blocks = c->ne[2], page = c->ne[3];
    int64_t n_tok = c->ne[4];
    const int32_t *bt = c->src[3], *seq = c->src[4], *pos = c->src[5];
    tw_status st;
    if ((st = index_check(op, "tok_seq", seq, n_tok, n_seq)) ||
        (st = index_check(op, "tok_pos", pos, n_tok, max_blocks * page)))
        return st;
    for (int64_t t = 0; t < n_tok; t++) {
        const int32_t *row = bt + (int64_t)seq[t] * max_blocks;
        int64_t used = (int64_t)pos[t] / page + 1;
        for (int64_t b = 0; b < used; b++) {
            int64_t last = b == used - 1 ? (int64_t)pos[t] % page : page - 1; /* offsets read */
            if (row[b] < 0 || (int64_t)row[b] * page + last >= n_slots)
                return tw_error(TW_ERR_ARG, "attention: block_table[%d][%lld] = %d: page outside "
                                "the cache of %lld slots (token %lld)", (int)seq[t], (long long)b,
                                (int)row[b], (long long)n_slots, (long long)t);
        }
    }
    return TW_OK;
}

static tw_status cpu_op_run(tw_backend *be, const tw_op_call *c) {
    const int64_t *ne = c->ne;
    tw_status st;
    switch (c->op) {
    case TW_OP_ADD:
        tw_cpu_add_f32(c->dst, c->src[0], c->src[1], ne[0]);
        return TW_OK;
    case TW_OP_RMSNORM:
        tw_cpu_rmsnorm_f32(c->dst, c->src[0], c->src[1], ne[0], ne[1], c->fp[0]);
        return TW_OK;
    case TW_OP_MUL:
        tw_cpu_mul_f32(c->dst, c->src[0], c->src[1], ne[0]);
        return TW_OK;
    case TW_OP_SCALE:
        tw_cpu_scale_f32(c->dst, c->src[0], c->fp[0], ne[0]);
        return TW_OK;
    case TW_OP_COPY:
        memcpy(c->dst, c->src[0], (size_t)ne[0] * sizeof(float));
        return TW_OK;
    case TW_OP_GET_ROWS:
        if ((st = index_check(c->op, "ids", c->src[1], ne[1], ne[0]))) return st;
        tw_cpu_get_rows(c->dst, c->src[0], c->type, c->src[1], ne[1], ne[2]);
        return TW_OK;
    case TW_OP_MATMUL:
        if (c->type == TW_DTYPE_NF4)
            return tw_cpu_matmul_nf4(c->dst, c->src[0], c->src[1], c->src[2], ne[0], ne[1], ne[2], 0);
        return tw_cpu_matmul(c->dst, c->src[0], c->src[1], c->type, c->src[2], ne[0], ne[1], ne[2]);
    case TW_OP_LAYERNORM:
        tw_cpu_layernorm_f32(c->dst, c->src[0], c->src[1], c->src[2], ne[0], ne[1], c->fp[0]);
        return TW_OK;
    case TW_OP_ROPE:
        if ((st = index_check(c->op, "pos", c->src[1], ne[0], INT32_MAX))) return st;
        tw_cpu_rope_f32(c->dst, c->src[0], c->src[1], ne[0], ne[1], ne[2], ne[3], (int)ne[4],
                        c->fp[0], c->fp[1], c->src[2]);
        return TW_OK;
    case TW_OP_KV_WRITE:
        if ((st = index_check(c->op, "slots", c->src[2], ne[1], ne[0]))) return st;
        tw_cpu_kv_write(c->dst, c->dst2, c->type, c->src[0], c->src[1], c->src[2], ne[1], ne[2],
                        ne[3]);
        return TW_OK;
    case TW_OP_ATTENTION: {
        if ((st = attention_check(c))) return st;
        tw_attn_shape s = {.max_blocks = ne[2], .page_size = ne[3], .n_tok = ne[4],
                           .n_head = ne[5], .n_kv_head = ne[6], .head_dim = ne[7],
                           .scale = c->fp[0], .ct = c->type};
        tw_cpu_attention(c->dst, c->src[0], c->src[1], c->src[2], c->src[3], c->src[4], c->src[5],
                         &s);
        return TW_OK;
    }
    case TW_OP_SWIGLU:
        tw_cpu_swiglu_f32(c->dst, c->src[0], c->src[1], ne[0] * ne[1]);
        return TW_OK;
    case TW_OP_GELU:
        tw_cpu_gelu_f32(c->dst, c->src[0], ne[0], (int)ne[1]);
        return TW_OK;
    case TW_OP_SOFTMAX:
        tw_cpu_softmax_f32(c->dst, c->src[0], ne[0], ne[1], c->fp[0]);
        return TW_OK;
    case TW_OP_ARGMAX:
        tw_cpu_argmax_f32(c->dst, c->src[0], ne[0], ne[1]);
        return TW_OK;
    case TW_OP_TOPK:
        return tw_cpu_topk_f32(c->dst, c->dst2, c->src[0], ne[0], ne[1], ne[2]);
    case TW_OP_ATTN_SEG: {
        if ((st = seg_check(c->op, c->src[3], ne[0]))) return st;
        tw_attn_seg_shape s = {.n_tok = ne[0], .n_head = ne[1], .n_kv_head = ne[2],
                               .head_dim = ne[3], .scale = c->fp[0], .causal = (int)ne[4]};
        return tw_cpu_attn_seg_f32(c->dst, c->dst2, c->src[0], c->src[1], c->src[2], c->src[3],
                                   &s);
    }
    case TW_OP_ATTN_SEG_BWD: {
        if ((st = seg_check(c->op, c->src[6], ne[0]))) return st;
        tw_attn_seg_shape s = {.n_tok = ne[0], .n_head = ne[1], .n_kv_head = ne[2],
                               .head_dim = ne[3], .scale = c->fp[0], .causal = (int)ne[4]};
        return tw_cpu_attn_seg_bwd_f32(c->dst, c->dst2, c->dst3, c->src[0], c->src[1], c->src[2],
                                       c->src[3], c->src[4], c->src[5], c->src[6], &s);
    }
    case TW_OP_MATMUL_DX:
        if (c->type == TW_DTYPE_NF4)
            return tw_cpu_matmul_dx_nf4(c->dst, c->src[0], c->src[1], ne[0], ne[1], ne[2],
                                        (int)ne[3], 0);
        return tw_cpu_matmul_dx(c->dst, c->src[0], c->src[1], c->type, ne[0], ne[1], ne[2],
                                (int)ne[3]);
    case TW_OP_MATMUL_DW:
        return tw_cpu_matmul_dw(c->dst, c->dst2, c->src[0], c->src[1], ne[0], ne[1], ne[2],
                                (int)ne[3]);
    case TW_OP_RMSNORM_BWD:
        return tw_cpu_rmsnorm_bwd_f32(c->dst, c->dst2, c->src[0], c->src[1], c->src[2], ne[0],
                                      ne[1], c->fp[0]);
    case TW_OP_LAYERNORM_BWD:
        return tw_cpu_layernorm_bwd_f32(c->dst, c->dst2, c->dst3, c->src[0], c->src[1], c->src[2],
                                        ne[0], ne[1], c->fp[0]);
    case TW_OP_ROPE_BWD:
        if ((st = index_check(c->op, "pos", c->src[1], ne[0], INT32_MAX))) return st;
        tw_cpu_rope_bwd_f32(c->dst, c->src[0], c->src[1], ne[0], ne[1], ne[2], ne[3], (int)ne[4],
                            c->fp[0], c->fp[1], c->src[2]);
        return TW_OK;
    case TW_OP_SWIGLU_BWD:
        tw_cpu_swiglu_bwd_f32(c->dst, c->dst2, c->src[0], c->src[1], c->src[2], ne[0] * ne[1]);
        return TW_OK;
    case TW_OP_GELU_BWD:
        tw_cpu_gelu_bwd_f32(c->dst, c->src[0], c->src[1], ne[0], (int)ne[1]);
        return TW_OK;
    case TW_OP_EMBED_BWD:
        if ((st = index_check(c->op, "ids", c->src[1], ne[1], ne[0]))) return st;
        tw_cpu_embed_bwd_f32(c->dst, c->src[0], c->src[1], ne[1], ne[2]);
        return TW_OK;
    case TW_OP_XENT:
        if ((st = target_check(c->src[2], ne[0], ne[2]))) return st;
        return tw_cpu_xent(c->dst, c->dst2, c->dst3, c->src[0], c->src[1], c->type, c->src[2],
                           ne[0], ne[1], ne[2], c->fp[0]);
    case TW_OP_ADAMW:
        tw_cpu_adamw_f32(c->dst, c->src[0], c->dst2, c->dst3, ne[0], c->fp[0], c->fp[1], c->fp[2],
                         c->fp[3], c->fp[4], c->fp[5], ne[1]);
        return TW_OK;
    case TW_OP_DROPOUT:
        tw_cpu_dropout_f32(c->dst, c->src[0], ne[0], ne[1], c->fp[0], (uint64_t)ne[3], ne[2]);
        return TW_OK;
    case TW_OP_COUNT:
        break;
    }
    return tw_error(TW_ERR_UNSUPPORTED, "%s: op %s not implemented", be->name, tw_op_name(c->op));
}

static tw_status cpu_sync(tw_backend *be) { return TW_OK; }
static void cpu_close(tw_backend *be) {}

static const tw_backend_vtbl cpu_vtbl = {
    .supports = cpu_supports,
    .mem_alloc = cpu_mem_alloc,
    .mem_free = cpu_mem_free,
    .mem_upload = cpu_mem_copy,
    .mem_download = cpu_mem_copy,
    .op_run = cpu_op_run,
    .sync = cpu_sync,
    .close = cpu_close,
};

tw_status tw_cpu_backend_init(tw_backend *be) {
    be->vt = &cpu_vtbl;
    be->ctx = NULL;
    snprintf(be->name, sizeof be->name, "cpu");
    return TW_OK;
}
