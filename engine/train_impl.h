/* train_impl.h: the trainer's private layout, shared by train.c (the llama layer, the loss,
 * the steps) and train_gpt2.c (the GPT-2 layer). Not a public header: only those two files
 * include it.
 *
 * The saved-activation slots (S_*) and scratch buffers (B_*) are named after the llama layer;
 * the GPT-2 layer reuses them with the meanings its file states (same widths). */
#ifndef TWIN_TRAIN_IMPL_H
#define TWIN_TRAIN_IMPL_H

#include "model_impl.h"
#include "train.h"

/* The activations one layer saves for its backward (one set per layer, or one in all with
 * recompute). LA + m: the scaled rank-r product s * x A^T of module m (n, r). */
enum {
    S_H1 = 0, /* (n, d) */
    S_Q,      /* (n, qd) after rope */
    S_K,      /* (n, kvd) after rope */
    S_V,      /* (n, kvd) */
    S_ATT,    /* (n, qd) */
    S_LSE,    /* (n, n_head) */
    S_XM,     /* (n, d) */
    S_H2,     /* (n, d) */
    S_G,      /* (n, ff) */
    S_U,      /* (n, ff) */
    S_SW,     /* (n, ff); not allocated for GPT-2 */
    S_LA,     /* 7 x (n, r) */
    S_COUNT = S_LA + LORA_N_MODULES
};

/* Scratch (gradients and temporaries), one each. */
enum {
    B_IDS = 0, B_TGT, B_POS, B_SEG, B_LOSS, /* (n) int32 / fp32 */
    B_HF,   /* (n, d) final normed hidden */
    B_DHF,  /* (n, d) its gradient (xent's dh) */
    B_T1,   /* (n, maxdim) projection output before a residual add */
    B_T2,   /* (n, maxdim) LoRA up-projection before its add */
    B_DX,   /* (n, d) gradient of the current layer's output / input */
    B_DXM,  /* (n, d) */
    B_DH,   /* (n, d) gradient of a norm's output */
    B_DT,   /* (n, d) a norm backward's dx before its residual add */
    B_DQ,   /* (n, qd) */
    B_DK,   /* (n, kvd) */
    B_DV,   /* (n, kvd) */
    B_DATT, /* (n, qd) */
    B_DG,   /* (n, ff) */
    B_DU,   /* (n, ff) */
    B_DS,   /* (n, ff) */
    B_DLA,  /* (n, r) */
    B_XD,   /* (n, maxdim) dropout(x) of a LoRA input, then dropout(dLA A); width 0 when p = 0 */
    B_COUNT
};

struct trainer {
    tw_model *m;
    lora_set *s;       /* LoRA: the adapters; NULL in full fine-tuning */
    fullft_set *f;     /* full fine-tuning: the trained weights; NULL with LoRA */
    tw_weight *fw;     /* full: ((L+1) * TW_W_COUNT) the weights the step uses (f32 views of
                          f's PARAM for trained roles, the model's for the rest); row 0:
                          model-wide roles, row l+1: layer l */
    tw_ref *fg;        /* full: the same shape, the gradient of each trained weight (none
                          elsewhere) */
    tw_backend *be;
    int64_t N; /* max tokens */
    int recompute, lora_on;
    int gpt2;  /* 1: the GPT-2 layer (train_gpt2.c), 0: the llama layer */
    int64_t d, qd, kvd, ff, nh, nkv, hd, L, r, vocab;
    float scale;
    float drop_p;       /* LoRA dropout probability (0: none) */
    uint64_t drop_seed; /* the adapters' seed: the first counter of every mask key */
    /* the dropout of the next forwards (trainer_set_dropout), and of the last forward */
    int drop_on, fwd_drop_on;
    int64_t drop_step, drop_tok0, fwd_drop_step, fwd_drop_tok0;
    tw_buffer *buf;
    size_t off_b[B_COUNT];
    size_t *off_x;    /* (L+1) layer inputs X0..XL, (N, d) each */
    size_t *off_save; /* (n_slots * S_COUNT) */
    size_t bytes;
    /* the last forward */
    int64_t n, n_ex, cap_ex;
    size_t *ex_start; /* (cap_ex + 1) */
    int have_fwd, have_grad;
    comm_ctx *comm;   /* data parallelism: NULL or one rank = alone */
    /* step scratch (host) */
    ds_batch batch;
    ds_batch share;   /* this rank's share of a global batch */
    float *tok_loss;  /* (N) */
    float *ex_scale;  /* (N) one per example at most */
    float *grad_host; /* (lora_set_n_floats) */
    int32_t *mb_tgt;  /* (N) */
};

/* The weight of role in layer l (-1: model-wide) as the step uses it, and its gradient
 * (tw_ref_none() when it is frozen: always with LoRA). */
static inline const tw_weight *trainer_w(const trainer *t, int64_t l, tw_wrole role) {
    if (t->fw) return &t->fw[(l + 1) * TW_W_COUNT + role];
    return role < TW_W_LAYER_FIRST ? &t->m->g[role] : tw_layer_w(t->m, (int32_t)l, role);
}
static inline tw_ref trainer_gw(const trainer *t, int64_t l, tw_wrole role) {
    return t->fg ? t->fg[(l + 1) * TW_W_COUNT + role] : tw_ref_none();
}

static inline tw_ref bref(const trainer *t, int which, int64_t row, int64_t width) {
    return tw_ref_at(t->buf, t->off_b[which] + (size_t)(row * width) * 4);
}
static inline tw_ref xref(const trainer *t, int64_t l) { return tw_ref_at(t->buf, t->off_x[l]); }
static inline tw_ref sref(const trainer *t, int64_t slot, int which) {
    return tw_ref_at(t->buf, t->off_save[slot * S_COUNT + which]);
}

/* y (n, out) = x (n, in) W^T (+ bias) + s * (x A^T) B^T for the weight of `role` of layer l
 * (brole: its bias role, TW_W_COUNT for none) and the set's adapter of (l, mod) when the
 * adapters are on; LA (n, r) receives s * x A^T. n = the last forward's tokens. */
tw_status trainer_proj_fwd(trainer *t, int64_t l, lora_module mod, tw_wrole role, tw_wrole brole,
                           tw_ref y, tw_ref x, tw_ref LA);
/* Its backward: dx (n, in) = (or += with accumulate) dy W + dLA A with dLA = s * dy B;
 * the adapter's gradients dB += dy^T LA, dA += dLA^T x. Uses B_DLA as scratch. With LoRA
 * dropout in the last forward, x above is dropout(x) (B_XD, recomputed from the counters) and
 * dLA A passes through the same mask. */
tw_status trainer_proj_bwd(trainer *t, int64_t l, lora_module mod, tw_wrole role, tw_ref dx,
                           tw_ref dy, tw_ref x, tw_ref LA, int accumulate);

/* The GPT-2 layer (train_gpt2.c): X(l+1) from Xl saving into slot, and its backward (B_DX
 * holds dL/dX(l+1) on entry and dL/dXl on return). */
tw_status trainer_gpt2_layer_fwd(trainer *t, int64_t l, int64_t slot);
tw_status trainer_gpt2_layer_bwd(trainer *t, int64_t l, int64_t slot);
/* GPT-2's embeddings X0 = wte[ids] + wpe[pos] (B_T1 as scratch), final LayerNorm into B_HF,
 * and that norm's backward from B_DHF into B_DX; the embeddings' backward (full fine-tuning:
 * B_DX = dL/dX0 scattered into both tables' gradients; nothing with LoRA). */
tw_status trainer_gpt2_embed(trainer *t);
tw_status trainer_gpt2_embed_bwd(trainer *t);
tw_status trainer_gpt2_final_norm(trainer *t);
tw_status trainer_gpt2_final_norm_bwd(trainer *t);

#endif
