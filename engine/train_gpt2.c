/* train_gpt2.c: the GPT-2 layer of the training step (train.h), forward with saved
 * activations and backward, the learned-position embeddings and the final LayerNorm; the
 * loss, the steps and the optimizer are train.c's, shared with the llama family.
 *
 * The model (per layer l, n tokens of a micro-batch, d = n_embd, ff = n_ff; multi-head
 * attention: n_kv_head = n_head, so qd = kvd = d; every matmul is trainer_proj_fwd: x W^T + b
 * plus the layer's LoRA term):
 *   X0 = wte[ids] + wpe[pos]                                        (n, d)
 *   H1 = layernorm(Xl) * ln_1.w + ln_1.b                            (n, d)   slot S_H1
 *   Q, K, V = proj_q(H1), proj_k(H1), proj_v(H1)                    (n, d)   S_Q, S_K, S_V
 *            (the row ranges [0,d), [d,2d), [2d,3d) of the fused c_attn: the loader's views)
 *   ATT, LSE = attn_seg(Q, K, V, seg, causal)   (no rotary: positions are in X0)
 *   XM = Xl + proj_o(ATT)                        (attn.c_proj)      (n, d)   S_XM
 *   H2 = layernorm(XM) * ln_2.w + ln_2.b                            (n, d)   S_H2
 *   G = proj_up(H2)                              (mlp.c_fc)         (n, ff)  S_G
 *   U = gelu_tanh(G)                             (GPT-2's GELU)     (n, ff)  S_U
 *   X(l+1) = XM + proj_down(U)                   (mlp.c_proj)       (n, d)
 *   HF = layernorm(XL) * ln_f.w + ln_f.b;  loss = xent(HF . W_out^T)  (train.c)
 * With LoRA the norms' weights, the embeddings and the head are frozen: only the adapters of
 * q, k, v, o, up, down are trained (GPT-2 has no gate). In full fine-tuning (trainer_new_full)
 * every weight is read through trainer_w (f32 copies; q, k, v are row ranges of the fused
 * c_attn, fullft.h) and gets its gradient through trainer_gw: the projections' and their
 * biases' in trainer_proj_bwd, the LayerNorms' dw and db from layernorm_bwd, the head's from
 * xent (train.c), both embedding tables' from embed_bwd (a tied wte gets the head's too).
 *
 * Backward (reverse; B_DX holds dL/dX(l+1) on entry):
 *   DU = dX(l+1) . down; DG = gelu'(G) * DU; DH = DG . up; DXM = dX(l+1) + ln_2'(DH)
 *   DATT = DXM . o; DQ, DK, DV = attn_seg'(DATT); DH = DQ.q + DK.k + DV.v;
 *   dXl = DXM + ln_1'(DH)
 * with the LoRA (or full) gradients accumulated by trainer_proj_bwd. Scratch: B_DS = DU,
 * B_DG = DG. After layer 0: d wte[ids] += dX0, d wpe[pos] += dX0 (full fine-tuning). */
#include <math.h>

#include "train_impl.h"

#define TRY(x)                                                                                \
    do {                                                                                      \
        tw_status _st = (x);                                                                  \
        if (_st != TW_OK) return _st;                                                         \
    } while (0)

/* The weight (a norm's) of role in layer l (-1: model-wide) as the step reads it, and its
 * gradient (none: frozen). */
static tw_ref lw(const trainer *t, int64_t l, tw_wrole role) { return trainer_w(t, l, role)->ref; }
static tw_ref lg(const trainer *t, int64_t l, tw_wrole role) { return trainer_gw(t, l, role); }

tw_status trainer_gpt2_embed(trainer *t) {
    const tw_weight *te = trainer_w(t, -1, TW_W_TOK_EMBD), *pe = trainer_w(t, -1, TW_W_POS_EMBD);
    const int64_t n = t->n, d = t->d;
    tw_ref X0 = xref(t, 0), P = bref(t, B_T1, 0, 0); /* (n, d) each */
    TRY(tw_op_get_rows(t->be, X0, te->ref, te->type, te->ne1, bref(t, B_IDS, 0, 0), n, d));
    TRY(tw_op_get_rows(t->be, P, pe->ref, pe->type, pe->ne1, bref(t, B_POS, 0, 0), n, d));
    return tw_op_add(t->be, X0, X0, P, n * d);
}

/* d wte[ids] += dX0 and d wpe[pos] += dX0, dX0 = B_DX (n, d); the tables' gradients are
 * (n_vocab, d) and (n_ctx_train, d). Nothing when they are frozen (LoRA). */
tw_status trainer_gpt2_embed_bwd(trainer *t) {
    const tw_ref ge = lg(t, -1, TW_W_TOK_EMBD), gp = lg(t, -1, TW_W_POS_EMBD);
    const tw_ref DX = bref(t, B_DX, 0, 0);
    if (ge.buf)
        TRY(tw_op_embed_bwd(t->be, ge, DX, bref(t, B_IDS, 0, 0), t->vocab, t->n, t->d));
    if (gp.buf)
        TRY(tw_op_embed_bwd(t->be, gp, DX, bref(t, B_POS, 0, 0),
                            trainer_w(t, -1, TW_W_POS_EMBD)->ne1, t->n, t->d));
    return TW_OK;
}

tw_status trainer_gpt2_final_norm(trainer *t) {
    return tw_op_layernorm(t->be, bref(t, B_HF, 0, 0), xref(t, t->L), lw(t, -1, TW_W_OUT_NORM),
                           lw(t, -1, TW_W_OUT_NORM_B), t->n, t->d, t->m->hp.norm_eps);
}

tw_status trainer_gpt2_final_norm_bwd(trainer *t) {
    return tw_op_layernorm_bwd(t->be, bref(t, B_DX, 0, 0), lg(t, -1, TW_W_OUT_NORM),
                               lg(t, -1, TW_W_OUT_NORM_B), bref(t, B_DHF, 0, 0), xref(t, t->L),
                               lw(t, -1, TW_W_OUT_NORM), t->n, t->d, t->m->hp.norm_eps);
}

#define LA(mod) sref(t, slot, S_LA + (mod))

tw_status trainer_gpt2_layer_fwd(trainer *t, int64_t l, int64_t slot) {
    tw_backend *be = t->be;
    const int64_t n = t->n, d = t->d;
    const float eps = t->m->hp.norm_eps;
    tw_ref X = xref(t, l), XN = xref(t, l + 1);                               /* (n, d) */
    tw_ref H1 = sref(t, slot, S_H1), XM = sref(t, slot, S_XM), H2 = sref(t, slot, S_H2);
    tw_ref Q = sref(t, slot, S_Q), K = sref(t, slot, S_K), V = sref(t, slot, S_V); /* (n, d) */
    tw_ref ATT = sref(t, slot, S_ATT), LSE = sref(t, slot, S_LSE);  /* (n, d), (n, n_head) */
    tw_ref G = sref(t, slot, S_G), U = sref(t, slot, S_U);          /* (n, ff) */
    tw_ref T1 = bref(t, B_T1, 0, 0);                                /* (n, d) */
    TRY(tw_op_layernorm(be, H1, X, lw(t, l, TW_W_ATTN_NORM), lw(t, l, TW_W_ATTN_NORM_B), n, d, eps));
    TRY(trainer_proj_fwd(t, l, LORA_Q, TW_W_Q, TW_W_Q_B, Q, H1, LA(LORA_Q)));
    TRY(trainer_proj_fwd(t, l, LORA_K, TW_W_K, TW_W_K_B, K, H1, LA(LORA_K)));
    TRY(trainer_proj_fwd(t, l, LORA_V, TW_W_V, TW_W_V_B, V, H1, LA(LORA_V)));
    TRY(tw_op_attn_seg(be, ATT, LSE, Q, K, V, bref(t, B_SEG, 0, 0), n, t->nh, t->nkv, t->hd,
                       1.0f / sqrtf((float)t->hd), 1));
    TRY(trainer_proj_fwd(t, l, LORA_O, TW_W_O, TW_W_O_B, T1, ATT, LA(LORA_O)));
    TRY(tw_op_add(be, XM, X, T1, n * d));
    TRY(tw_op_layernorm(be, H2, XM, lw(t, l, TW_W_FFN_NORM), lw(t, l, TW_W_FFN_NORM_B), n, d, eps));
    TRY(trainer_proj_fwd(t, l, LORA_UP, TW_W_UP, TW_W_UP_B, G, H2, LA(LORA_UP)));
    TRY(tw_op_gelu(be, U, G, n * t->ff, TW_GELU_TANH));
    TRY(trainer_proj_fwd(t, l, LORA_DOWN, TW_W_DOWN, TW_W_DOWN_B, T1, U, LA(LORA_DOWN)));
    return tw_op_add(be, XN, XM, T1, n * d);
}

tw_status trainer_gpt2_layer_bwd(trainer *t, int64_t l, int64_t slot) {
    tw_backend *be = t->be;
    const int64_t n = t->n, d = t->d;
    const float eps = t->m->hp.norm_eps;
    tw_ref X = xref(t, l);
    tw_ref H1 = sref(t, slot, S_H1), XM = sref(t, slot, S_XM), H2 = sref(t, slot, S_H2);
    tw_ref Q = sref(t, slot, S_Q), K = sref(t, slot, S_K), V = sref(t, slot, S_V);
    tw_ref ATT = sref(t, slot, S_ATT), LSE = sref(t, slot, S_LSE);
    tw_ref G = sref(t, slot, S_G), U = sref(t, slot, S_U);
    tw_ref DX = bref(t, B_DX, 0, 0), DXM = bref(t, B_DXM, 0, 0), DH = bref(t, B_DH, 0, 0); /* (n, d) */
    tw_ref DT = bref(t, B_DT, 0, 0), DATT = bref(t, B_DATT, 0, 0);                          /* (n, d) */
    tw_ref DQ = bref(t, B_DQ, 0, 0), DK = bref(t, B_DK, 0, 0), DV = bref(t, B_DV, 0, 0);   /* (n, d) */
    tw_ref DU = bref(t, B_DS, 0, 0), DG = bref(t, B_DG, 0, 0);                              /* (n, ff) */
    /* X(l+1) = XM + down(U): DX flows to both */
    TRY(trainer_proj_bwd(t, l, LORA_DOWN, TW_W_DOWN, DU, DX, U, LA(LORA_DOWN), 0));
    TRY(tw_op_gelu_bwd(be, DG, DU, G, n * t->ff, TW_GELU_TANH));
    TRY(trainer_proj_bwd(t, l, LORA_UP, TW_W_UP, DH, DG, H2, LA(LORA_UP), 0));
    TRY(tw_op_layernorm_bwd(be, DT, lg(t, l, TW_W_FFN_NORM), lg(t, l, TW_W_FFN_NORM_B), DH, XM,
                            lw(t, l, TW_W_FFN_NORM), n, d, eps));
    TRY(tw_op_add(be, DXM, DX, DT, n * d));
    /* XM = X + o(ATT) */
    TRY(trainer_proj_bwd(t, l, LORA_O, TW_W_O, DATT, DXM, ATT, LA(LORA_O), 0));
    TRY(tw_op_attn_seg_bwd(be, DQ, DK, DV, DATT, ATT, LSE, Q, K, V, bref(t, B_SEG, 0, 0), n, t->nh,
                           t->nkv, t->hd, 1.0f / sqrtf((float)t->hd), 1));
    TRY(trainer_proj_bwd(t, l, LORA_Q, TW_W_Q, DH, DQ, H1, LA(LORA_Q), 0));
    TRY(trainer_proj_bwd(t, l, LORA_K, TW_W_K, DH, DK, H1, LA(LORA_K), 1));
    TRY(trainer_proj_bwd(t, l, LORA_V, TW_W_V, DH, DV, H1, LA(LORA_V), 1));
    TRY(tw_op_layernorm_bwd(be, DT, lg(t, l, TW_W_ATTN_NORM), lg(t, l, TW_W_ATTN_NORM_B), DH, X,
                            lw(t, l, TW_W_ATTN_NORM), n, d, eps));
    return tw_op_add(be, DX, DXM, DT, n * d);
}

#undef LA
