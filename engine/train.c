/* train.c: the llama-family training step with LoRA (train.h): forward with saved activations,
 * backward in reverse, SFT and DPO losses over dataset batches, AdamW, evaluation. The GPT-2
 * layer, embeddings and final norm are in train_gpt2.c (the trainer's layout: train_impl.h).
 *
 * This file reads the loaded model's layout (model_impl.h: weights, hyper-parameters, rope
 * mode), as forward.c does; it computes only through the op table. */
#include "train.h"

#include <math.h>
#include <string.h>

#include "comm.h"
#include "train_impl.h"
#include "train_util.h"

#define TRY(x)                                                                                \
    do {                                                                                      \
        tw_status _st = (x);                                                                  \
        if (_st != TW_OK) return _st;                                                         \
    } while (0)

static size_t align64(size_t x) { return (x + 63) & ~(size_t)63; }

void trainer_step_opts_default(trainer_step_opts *o) {
    memset(o, 0, sizeof *o);
    o->batch_tokens = 2048;
    o->micro_tokens = 2048;
    o->lr = 2e-4;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->weight_decay = 0.0f;
    o->max_grad_norm = 1.0;
    o->dpo_beta = 0.1f;
}

static tw_status trainer_make(tw_model *m, lora_set *s, fullft_set *f, const trainer_opts *o,
                              trainer **out);

tw_status trainer_new(tw_model *m, lora_set *s, const trainer_opts *o, trainer **out) {
    *out = NULL;
    if (!m || !s || !o) return tw_error(TW_ERR_ARG, "trainer: model, adapters and options are required");
    return trainer_make(m, s, NULL, o, out);
}

/* The weights the full step uses (trainer_w / trainer_gw): the model's, with f's fp32 copies
 * and gradients in place of every trained role. */
static tw_status full_weights(trainer *t) {
    const int64_t rows = t->L + 1;
    t->fw = tw_calloc((size_t)(rows * TW_W_COUNT), sizeof *t->fw);
    t->fg = tw_calloc((size_t)(rows * TW_W_COUNT), sizeof *t->fg);
    if (!t->fw || !t->fg) return tw_error(TW_ERR_NOMEM, "trainer: out of memory");
    for (int64_t l = -1; l < t->L; l++)
        for (int r = l < 0 ? 0 : TW_W_LAYER_FIRST; r < (l < 0 ? TW_W_LAYER_FIRST : TW_W_COUNT); r++) {
            const size_t i = (size_t)((l + 1) * TW_W_COUNT + r);
            t->fw[i] = l < 0 ? t->m->g[r] : *tw_layer_w(t->m, (int32_t)l, (tw_wrole)r);
            t->fg[i] = tw_ref_none();
            const fullft_tensor *ft = fullft_find(t->f, (int32_t)l, r);
            if (!ft) continue;
            t->fw[i].ref = fullft_ref(t->f, FULLFT_PARAM, ft->off);
            t->fw[i].type = TW_DTYPE_F32;
            t->fw[i].ne0 = ft->ne0;
            t->fw[i].ne1 = ft->ne1;
            t->fg[i] = fullft_ref(t->f, FULLFT_GRAD, ft->off);
        }
    return TW_OK;
}

tw_status trainer_new_full(tw_model *m, fullft_set *f, const trainer_opts *o, trainer **out) {
    *out = NULL;
    if (!m || !f || !o) return tw_error(TW_ERR_ARG, "trainer: model, weights and options are required");
    return trainer_make(m, NULL, f, o, out);
}

static tw_status trainer_make(tw_model *m, lora_set *s, fullft_set *f, const trainer_opts *o,
                              trainer **out) {
    if (o->max_tokens < 1) return tw_error(TW_ERR_ARG, "trainer: max_tokens %lld < 1", (long long)o->max_tokens);
    const tw_model_hparams *hp = &m->hp;
    const int llama = tw_train_family(m) == TW_TRAIN_LLAMA, gpt2 = tw_train_family(m) == TW_TRAIN_GPT2;
    if (!llama && !gpt2)
        return tw_error(TW_ERR_UNSUPPORTED, "trainer: %s: architecture '%s' is neither of the "
                        "llama family (RMSNorm, rotary positions, SwiGLU) nor GPT-2", m->path,
                        m->arch->name);
    if (f && (fullft_n_tensors(f) < 1 || fullft_find(f, -1, TW_W_TOK_EMBD) == NULL ||
              fullft_find(f, (int32_t)hp->n_layer - 1, TW_W_Q) == NULL))
        return tw_error(TW_ERR_ARG, "trainer: the full fine-tuning weights were not made for %s",
                        m->path);
    if (s && lora_set_backend(s) != m->be)
        return tw_error(TW_ERR_ARG, "trainer: the adapters live on another backend than the model");
    const lora_base *lb = s ? lora_set_base(s) : NULL;
    if (lb && (lb->n_layer != hp->n_layer || lb->n_embd != hp->n_embd || lb->n_head != hp->n_head ||
        lb->n_kv_head != hp->n_kv_head || lb->head_dim != hp->head_dim || lb->n_ff != hp->n_ff))
        return tw_error(TW_ERR_ARG, "trainer: the adapters were made for other dimensions than "
                        "%s (layers %d/%d, n_embd %d/%d, n_ff %d/%d)", m->path, (int)lb->n_layer,
                        (int)hp->n_layer, (int)lb->n_embd, (int)hp->n_embd, (int)lb->n_ff,
                        (int)hp->n_ff);
    lora_config none;
    memset(&none, 0, sizeof none);
    const lora_config *lc = s ? lora_set_config(s) : &none;
    if (!(lc->dropout >= 0 && lc->dropout < 1))
        return tw_error(TW_ERR_ARG, "trainer: lora dropout %g outside [0, 1)", (double)lc->dropout);
    trainer *t = tw_calloc(1, sizeof *t);
    if (!t) return tw_error(TW_ERR_NOMEM, "trainer: out of memory");
    t->m = m;
    t->s = s;
    t->f = f;
    t->be = m->be;
    t->N = o->max_tokens;
    t->recompute = o->recompute ? 1 : 0;
    t->lora_on = 1;
    t->gpt2 = gpt2;
    t->d = hp->n_embd;
    t->nh = hp->n_head;
    t->nkv = hp->n_kv_head;
    t->hd = hp->head_dim;
    t->qd = t->nh * t->hd;
    t->kvd = t->nkv * t->hd;
    t->ff = hp->n_ff;
    t->L = hp->n_layer;
    t->r = lc->rank;
    t->vocab = hp->n_vocab;
    t->scale = s ? lora_set_scale(s) : 0.0f;
    t->drop_p = lc->dropout;
    t->drop_seed = lc->seed;
    ds_batch_init(&t->batch);
    ds_batch_init(&t->share);

    const int64_t N = t->N;
    int64_t maxdim = t->d;
    if (t->qd > maxdim) maxdim = t->qd;
    if (t->kvd > maxdim) maxdim = t->kvd;
    if (t->ff > maxdim) maxdim = t->ff;
    const int64_t bw[B_COUNT] = {1, 1, 1, 1, 1, t->d, t->d, maxdim, maxdim, t->d, t->d, t->d, t->d,
                                 t->qd, t->kvd, t->kvd, t->qd, t->ff, t->ff, t->ff, t->r,
                                 t->drop_p > 0 ? maxdim : 0};
    /* GPT-2 saves no S_SW (its MLP output is S_U, train_gpt2.c) */
    const int64_t sw[S_COUNT] = {t->d, t->qd, t->kvd, t->kvd, t->qd, t->nh, t->d, t->d,
                                 t->ff, t->ff, t->gpt2 ? 0 : t->ff, t->r, t->r, t->r, t->r, t->r,
                                 t->r, t->r};
    const int64_t n_slots = t->recompute ? 1 : t->L;
    t->off_x = tw_calloc((size_t)(t->L + 1), sizeof *t->off_x);
    t->off_save = tw_calloc((size_t)(n_slots * S_COUNT), sizeof *t->off_save);
    t->ex_start = tw_calloc((size_t)N + 1, sizeof *t->ex_start);
    t->cap_ex = N;
    t->tok_loss = tw_calloc((size_t)N, sizeof(float));
    t->ex_scale = tw_calloc((size_t)N, sizeof(float));
    t->mb_tgt = tw_calloc((size_t)N, sizeof(int32_t));
    size_t nf = s ? lora_set_n_floats(s) : fullft_n_floats(f);
    t->grad_host = tw_calloc(nf ? nf : 1, sizeof(float));
    if (f && full_weights(t) != TW_OK) {
        trainer_free(t);
        return tw_error(TW_ERR_NOMEM, "trainer: out of memory");
    }
    if (!t->off_x || !t->off_save || !t->ex_start || !t->tok_loss || !t->ex_scale || !t->mb_tgt ||
        !t->grad_host) {
        trainer_free(t);
        return tw_error(TW_ERR_NOMEM, "trainer: out of memory");
    }
    size_t off = 0;
    for (int i = 0; i < B_COUNT; i++) {
        t->off_b[i] = off;
        off = align64(off + (size_t)(N * bw[i]) * 4);
    }
    for (int64_t l = 0; l <= t->L; l++) {
        t->off_x[l] = off;
        off = align64(off + (size_t)(N * t->d) * 4);
    }
    for (int64_t sl = 0; sl < n_slots; sl++)
        for (int i = 0; i < S_COUNT; i++) {
            t->off_save[sl * S_COUNT + i] = off;
            off = align64(off + (size_t)(N * sw[i]) * 4);
        }
    t->bytes = off;
    tw_status st = tw_buffer_alloc(t->be, off, &t->buf);
    if (st != TW_OK) {
        trainer_free(t);
        return tw_error_wrap("trainer: activations for %lld tokens (%.1f MiB)", (long long)N,
                             (double)off / 1048576.0);
    }
    *out = t;
    return TW_OK;
}

void trainer_free(trainer *t) {
    if (!t) return;
    tw_buffer_free(t->buf);
    tw_free(t->off_x);
    tw_free(t->off_save);
    tw_free(t->ex_start);
    tw_free(t->tok_loss);
    tw_free(t->ex_scale);
    tw_free(t->mb_tgt);
    tw_free(t->grad_host);
    tw_free(t->fw);
    tw_free(t->fg);
    ds_batch_free(&t->batch);
    ds_batch_free(&t->share);
    tw_free(t);
}

size_t trainer_act_bytes(const trainer *t) { return t ? t->bytes : 0; }
void trainer_set_lora_enabled(trainer *t, int on) { t->lora_on = on ? 1 : 0; }
void trainer_set_comm(trainer *t, comm_ctx *c) { t->comm = c; }
void trainer_set_dropout(trainer *t, int on, int64_t step, int64_t tok0) {
    t->drop_on = on ? 1 : 0;
    t->drop_step = step;
    t->drop_tok0 = tok0;
}

/* ---- one projection and its backward ---------------------------------------------------- */

static const lora_adapter *adapter(const trainer *t, int64_t l, lora_module mod) {
    return t->s && t->lora_on ? lora_set_find(t->s, (int32_t)l, mod) : NULL;
}

/* The bias role of a projection's weight role; TW_W_COUNT for none. */
static tw_wrole bias_role(tw_wrole role) {
    switch (role) {
    case TW_W_Q: return TW_W_Q_B;
    case TW_W_K: return TW_W_K_B;
    case TW_W_V: return TW_W_V_B;
    case TW_W_O: return TW_W_O_B;
    case TW_W_UP: return TW_W_UP_B;
    case TW_W_DOWN: return TW_W_DOWN_B;
    default: return TW_W_COUNT;
    }
}

/* LoRA input dropout (train.h, "Dropout") in the last forward: y (n, in) = dropout(x) with
 * the mask of (seed, step, layer, module) over the tokens' counters fwd_drop_tok0 + i. */
static int drop_active(const trainer *t) { return t->fwd_drop_on && t->drop_p > 0; }
static tw_status drop_apply(trainer *t, int64_t l, lora_module mod, tw_ref y, tw_ref x, int64_t in) {
    const uint64_t c[4] = {t->drop_seed, (uint64_t)t->fwd_drop_step, (uint64_t)l, (uint64_t)mod};
    return tw_op_dropout(t->be, y, x, t->n, in, t->drop_p, tw_dropout_key(c, 4), t->fwd_drop_tok0);
}

/* y (n, out) = x (n, in) W^T (+ bias) + s * (dropout(x) A^T) B^T; LA (n, r) receives
 * s * dropout(x) A^T (dropout only in training forwards with p > 0). */
tw_status trainer_proj_fwd(trainer *t, int64_t l, lora_module mod, tw_wrole role, tw_wrole brole,
                           tw_ref y, tw_ref x, tw_ref LA) {
    const tw_weight *w = trainer_w(t, l, role);
    tw_ref bias = brole == TW_W_COUNT ? tw_ref_none() : trainer_w(t, l, brole)->ref;
    const int64_t n = t->n, in = w->ne0, out = w->ne1;
    TRY(tw_op_matmul(t->be, y, x, w->ref, w->type, bias, n, in, out));
    const lora_adapter *a = adapter(t, l, mod);
    if (!a) return TW_OK;
    tw_ref A = lora_set_ref(t->s, LORA_PARAM, a->a_off), B = lora_set_ref(t->s, LORA_PARAM, a->b_off);
    tw_ref T2 = bref(t, B_T2, 0, 0), xa = x;
    if (drop_active(t)) {
        xa = bref(t, B_XD, 0, 0);
        TRY(drop_apply(t, l, mod, xa, x, in));
    }
    TRY(tw_op_matmul(t->be, LA, xa, A, TW_DTYPE_F32, tw_ref_none(), n, in, t->r));
    TRY(tw_op_scale(t->be, LA, LA, t->scale, n * t->r));
    TRY(tw_op_matmul(t->be, T2, LA, B, TW_DTYPE_F32, tw_ref_none(), n, t->r, out));
    return tw_op_add(t->be, y, y, T2, n * out);
}

/* dx (n, in) (+)= dy W + dropout(dLA A), with dLA = s * dy B; dB += dy^T LA,
 * dA += dLA^T dropout(x) (the forward's mask, recomputed from the counters). */
tw_status trainer_proj_bwd(trainer *t, int64_t l, lora_module mod, tw_wrole role, tw_ref dx,
                           tw_ref dy, tw_ref x, tw_ref LA, int accumulate) {
    const tw_weight *w = trainer_w(t, l, role);
    const int64_t n = t->n, in = w->ne0, out = w->ne1;
    TRY(tw_op_matmul_dx(t->be, dx, dy, w->ref, w->type, n, in, out, accumulate));
    tw_ref gw = trainer_gw(t, l, role);
    if (gw.buf) {
        /* full fine-tuning: dW += dy^T x, dbias += column sums of dy */
        tw_wrole br = bias_role(role);
        tw_ref gb = br == TW_W_COUNT ? tw_ref_none() : trainer_gw(t, l, br);
        TRY(tw_op_matmul_dw(t->be, gw, gb, dy, x, n, in, out, 1));
    }
    const lora_adapter *a = adapter(t, l, mod);
    if (!a) return TW_OK;
    tw_ref A = lora_set_ref(t->s, LORA_PARAM, a->a_off), B = lora_set_ref(t->s, LORA_PARAM, a->b_off);
    tw_ref gA = lora_set_ref(t->s, LORA_GRAD, a->a_off), gB = lora_set_ref(t->s, LORA_GRAD, a->b_off);
    tw_ref DLA = bref(t, B_DLA, 0, 0);
    const int64_t r = t->r;
    TRY(tw_op_matmul_dw(t->be, gB, tw_ref_none(), dy, LA, n, r, out, 1));
    TRY(tw_op_matmul_dx(t->be, DLA, dy, B, TW_DTYPE_F32, n, r, out, 0));
    TRY(tw_op_scale(t->be, DLA, DLA, t->scale, n * r));
    if (drop_active(t)) {
        tw_ref XD = bref(t, B_XD, 0, 0);
        TRY(drop_apply(t, l, mod, XD, x, in));
        TRY(tw_op_matmul_dw(t->be, gA, tw_ref_none(), DLA, XD, n, in, r, 1));
        TRY(tw_op_matmul_dx(t->be, XD, DLA, A, TW_DTYPE_F32, n, in, r, 0));
        TRY(drop_apply(t, l, mod, XD, XD, in));
        return tw_op_add(t->be, dx, dx, XD, n * in);
    }
    TRY(tw_op_matmul_dw(t->be, gA, tw_ref_none(), DLA, x, n, in, r, 1));
    return tw_op_matmul_dx(t->be, dx, DLA, A, TW_DTYPE_F32, n, in, r, 1);
}

/* ---- a layer -------------------------------------------------------------------------------- */

static tw_status rope(trainer *t, tw_ref y, tw_ref x, int64_t heads, int bwd) {
    const tw_model *m = t->m;
    const tw_model_hparams *hp = &m->hp;
    tw_ref pos = bref(t, B_POS, 0, 0), ff = m->g[TW_W_ROPE_FREQS].ref;
    if (bwd)
        return tw_op_rope_bwd(t->be, y, x, pos, t->n, heads, t->hd, hp->rope_dim, m->rope_mode,
                              hp->rope_theta, hp->rope_freq_scale, ff);
    return tw_op_rope(t->be, y, x, pos, t->n, heads, t->hd, hp->rope_dim, m->rope_mode,
                      hp->rope_theta, hp->rope_freq_scale, ff);
}

static tw_ref norm_w(const trainer *t, int64_t l, tw_wrole role) {
    return trainer_w(t, l, role)->ref;
}

/* Layer l: X(l+1) from Xl, saving into slot. */
static tw_status layer_fwd(trainer *t, int64_t l, int64_t slot) {
    tw_backend *be = t->be;
    const int64_t n = t->n, d = t->d;
    const float eps = t->m->hp.norm_eps;
    tw_ref X = xref(t, l), XN = xref(t, l + 1);
    tw_ref H1 = sref(t, slot, S_H1), Q = sref(t, slot, S_Q), K = sref(t, slot, S_K);
    tw_ref V = sref(t, slot, S_V), ATT = sref(t, slot, S_ATT), LSE = sref(t, slot, S_LSE);
    tw_ref XM = sref(t, slot, S_XM), H2 = sref(t, slot, S_H2), G = sref(t, slot, S_G);
    tw_ref U = sref(t, slot, S_U), SW = sref(t, slot, S_SW), T1 = bref(t, B_T1, 0, 0);
#define LA(mod) sref(t, slot, S_LA + (mod))
    TRY(tw_op_rmsnorm(be, H1, X, norm_w(t, l, TW_W_ATTN_NORM), n, d, eps));
    TRY(trainer_proj_fwd(t, l, LORA_Q, TW_W_Q, TW_W_Q_B, Q, H1, LA(LORA_Q)));
    TRY(trainer_proj_fwd(t, l, LORA_K, TW_W_K, TW_W_K_B, K, H1, LA(LORA_K)));
    TRY(trainer_proj_fwd(t, l, LORA_V, TW_W_V, TW_W_V_B, V, H1, LA(LORA_V)));
    TRY(rope(t, Q, Q, t->nh, 0));
    TRY(rope(t, K, K, t->nkv, 0));
    TRY(tw_op_attn_seg(be, ATT, LSE, Q, K, V, bref(t, B_SEG, 0, 0), n, t->nh, t->nkv, t->hd,
                       1.0f / sqrtf((float)t->hd), 1));
    TRY(trainer_proj_fwd(t, l, LORA_O, TW_W_O, TW_W_O_B, T1, ATT, LA(LORA_O)));
    TRY(tw_op_add(be, XM, X, T1, n * d));
    TRY(tw_op_rmsnorm(be, H2, XM, norm_w(t, l, TW_W_FFN_NORM), n, d, eps));
    TRY(trainer_proj_fwd(t, l, LORA_GATE, TW_W_GATE, TW_W_COUNT, G, H2, LA(LORA_GATE)));
    TRY(trainer_proj_fwd(t, l, LORA_UP, TW_W_UP, TW_W_UP_B, U, H2, LA(LORA_UP)));
    TRY(tw_op_swiglu(be, SW, G, U, n, t->ff));
    TRY(trainer_proj_fwd(t, l, LORA_DOWN, TW_W_DOWN, TW_W_DOWN_B, T1, SW, LA(LORA_DOWN)));
    return tw_op_add(be, XN, XM, T1, n * d);
}

/* Layer l's backward: DX holds dL/dX(l+1) on entry and dL/dXl on return. */
static tw_status layer_bwd(trainer *t, int64_t l, int64_t slot) {
    tw_backend *be = t->be;
    const int64_t n = t->n, d = t->d;
    const float eps = t->m->hp.norm_eps;
    tw_ref X = xref(t, l);
    tw_ref H1 = sref(t, slot, S_H1), Q = sref(t, slot, S_Q), K = sref(t, slot, S_K);
    tw_ref V = sref(t, slot, S_V), ATT = sref(t, slot, S_ATT), LSE = sref(t, slot, S_LSE);
    tw_ref XM = sref(t, slot, S_XM), H2 = sref(t, slot, S_H2), G = sref(t, slot, S_G);
    tw_ref U = sref(t, slot, S_U), SW = sref(t, slot, S_SW);
    tw_ref DX = bref(t, B_DX, 0, 0), DXM = bref(t, B_DXM, 0, 0), DH = bref(t, B_DH, 0, 0);
    tw_ref DT = bref(t, B_DT, 0, 0), DQ = bref(t, B_DQ, 0, 0), DK = bref(t, B_DK, 0, 0);
    tw_ref DV = bref(t, B_DV, 0, 0), DATT = bref(t, B_DATT, 0, 0), DG = bref(t, B_DG, 0, 0);
    tw_ref DU = bref(t, B_DU, 0, 0), DS = bref(t, B_DS, 0, 0);
    /* X(l+1) = XM + down(SW): DX flows to both */
    TRY(trainer_proj_bwd(t, l, LORA_DOWN, TW_W_DOWN, DS, DX, SW, LA(LORA_DOWN), 0));
    TRY(tw_op_swiglu_bwd(be, DG, DU, DS, G, U, n, t->ff));
    TRY(trainer_proj_bwd(t, l, LORA_GATE, TW_W_GATE, DH, DG, H2, LA(LORA_GATE), 0));
    TRY(trainer_proj_bwd(t, l, LORA_UP, TW_W_UP, DH, DU, H2, LA(LORA_UP), 1));
    TRY(tw_op_rmsnorm_bwd(be, DT, trainer_gw(t, l, TW_W_FFN_NORM), DH, XM,
                          norm_w(t, l, TW_W_FFN_NORM), n, d, eps));
    TRY(tw_op_add(be, DXM, DX, DT, n * d));
    /* XM = X + o(ATT) */
    TRY(trainer_proj_bwd(t, l, LORA_O, TW_W_O, DATT, DXM, ATT, LA(LORA_O), 0));
    TRY(tw_op_attn_seg_bwd(be, DQ, DK, DV, DATT, ATT, LSE, Q, K, V, bref(t, B_SEG, 0, 0), n, t->nh,
                           t->nkv, t->hd, 1.0f / sqrtf((float)t->hd), 1));
    TRY(rope(t, DQ, DQ, t->nh, 1));
    TRY(rope(t, DK, DK, t->nkv, 1));
    TRY(trainer_proj_bwd(t, l, LORA_Q, TW_W_Q, DH, DQ, H1, LA(LORA_Q), 0));
    TRY(trainer_proj_bwd(t, l, LORA_K, TW_W_K, DH, DK, H1, LA(LORA_K), 1));
    TRY(trainer_proj_bwd(t, l, LORA_V, TW_W_V, DH, DV, H1, LA(LORA_V), 1));
    TRY(tw_op_rmsnorm_bwd(be, DT, trainer_gw(t, l, TW_W_ATTN_NORM), DH, X,
                          norm_w(t, l, TW_W_ATTN_NORM), n, d, eps));
    return tw_op_add(be, DX, DXM, DT, n * d);
#undef LA
}

/* ---- forward, loss, backward ------------------------------------------------------------ */

tw_status trainer_forward(trainer *t, const trainer_batch *b) {
    t->have_fwd = t->have_grad = 0;
    if (!b || b->n < 1 || b->n > t->N)
        return tw_error(TW_ERR_ARG, "trainer: batch of %lld tokens (1..%lld)",
                        b ? (long long)b->n : 0LL, (long long)t->N);
    const int64_t n = b->n;
    if (!b->tokens || !b->targets || !b->pos || !b->seg || !b->ex_start || b->n_ex < 1 ||
        b->n_ex > n)
        return tw_error(TW_ERR_ARG, "trainer: batch arrays missing or %lld examples for %lld tokens",
                        (long long)b->n_ex, (long long)n);
    if (b->ex_start[0] != 0 || b->ex_start[b->n_ex] != (size_t)n)
        return tw_error(TW_ERR_ARG, "trainer: example offsets do not cover the %lld tokens", (long long)n);
    for (int64_t e = 0; e < b->n_ex; e++) {
        if (b->ex_start[e + 1] <= b->ex_start[e])
            return tw_error(TW_ERR_ARG, "trainer: example %lld is empty or out of order", (long long)e);
        for (size_t i = b->ex_start[e]; i < b->ex_start[e + 1]; i++)
            if (b->seg[i] != b->seg[b->ex_start[e]])
                return tw_error(TW_ERR_ARG, "trainer: token %zu: segment differs within example %lld",
                                i, (long long)e);
        if (e > 0 && b->seg[b->ex_start[e]] <= b->seg[b->ex_start[e] - 1])
            return tw_error(TW_ERR_ARG, "trainer: example %lld: segment ids must increase", (long long)e);
    }
    for (int64_t i = 0; i < n; i++) {
        if (b->tokens[i] < 0 || b->tokens[i] >= t->vocab)
            return tw_error(TW_ERR_ARG, "trainer: token %lld: id %d outside the vocabulary (%lld)",
                            (long long)i, (int)b->tokens[i], (long long)t->vocab);
        if (b->targets[i] < -1 || b->targets[i] >= t->vocab)
            return tw_error(TW_ERR_ARG, "trainer: token %lld: target %d outside the vocabulary",
                            (long long)i, (int)b->targets[i]);
        if (b->pos[i] < 0 || (t->gpt2 && b->pos[i] >= t->m->hp.n_ctx_train))
            return tw_error(TW_ERR_ARG, "trainer: token %lld: position %d%s", (long long)i,
                            (int)b->pos[i], b->pos[i] < 0 ? "" : " past the learned positions");
    }
    const size_t n4 = (size_t)n * 4;
    TRY(tw_buffer_upload(t->buf, t->off_b[B_IDS], b->tokens, n4));
    TRY(tw_buffer_upload(t->buf, t->off_b[B_TGT], b->targets, n4));
    TRY(tw_buffer_upload(t->buf, t->off_b[B_POS], b->pos, n4));
    TRY(tw_buffer_upload(t->buf, t->off_b[B_SEG], b->seg, n4));
    memcpy(t->ex_start, b->ex_start, (size_t)(b->n_ex + 1) * sizeof *t->ex_start);
    t->n = n;
    t->n_ex = b->n_ex;
    t->fwd_drop_on = t->drop_on;
    t->fwd_drop_step = t->drop_step;
    t->fwd_drop_tok0 = t->drop_tok0;
    if (t->gpt2) {
        TRY(trainer_gpt2_embed(t));
        for (int64_t l = 0; l < t->L; l++) TRY(trainer_gpt2_layer_fwd(t, l, t->recompute ? 0 : l));
        TRY(trainer_gpt2_final_norm(t));
        t->have_fwd = 1;
        return TW_OK;
    }
    const tw_weight *te = trainer_w(t, -1, TW_W_TOK_EMBD);
    TRY(tw_op_get_rows(t->be, xref(t, 0), te->ref, te->type, te->ne1, bref(t, B_IDS, 0, 0), n, t->d));
    for (int64_t l = 0; l < t->L; l++) TRY(layer_fwd(t, l, t->recompute ? 0 : l));
    TRY(tw_op_rmsnorm(t->be, bref(t, B_HF, 0, 0), xref(t, t->L), norm_w(t, -1, TW_W_OUT_NORM), n,
                      t->d, t->m->hp.norm_eps));
    t->have_fwd = 1;
    return TW_OK;
}

tw_status trainer_loss(trainer *t, const float *ex_scale, float *tok_loss) {
    if (!t->have_fwd) return tw_error(TW_ERR_ARG, "trainer: loss without a forward");
    t->have_grad = 0;
    const tw_weight *wo = trainer_w(t, -1, TW_W_OUTPUT);
    /* full fine-tuning: the head's dW (+=; the embedding's when tied) */
    const tw_ref gwo = trainer_gw(t, -1, TW_W_OUTPUT);
    const int64_t d = t->d;
    if (!ex_scale) {
        TRY(tw_op_xent(t->be, bref(t, B_LOSS, 0, 1), tw_ref_none(), tw_ref_none(), bref(t, B_HF, 0, d),
                       wo->ref, wo->type, bref(t, B_TGT, 0, 1), t->n, d, t->vocab, 1.0f));
    } else {
        /* runs of examples with equal scales share one call (SFT: one call in all) */
        for (int64_t e0 = 0; e0 < t->n_ex;) {
            int64_t e1 = e0 + 1;
            while (e1 < t->n_ex && ex_scale[e1] == ex_scale[e0]) e1++;
            const int64_t r0 = (int64_t)t->ex_start[e0], rows = (int64_t)t->ex_start[e1] - r0;
            TRY(tw_op_xent(t->be, bref(t, B_LOSS, r0, 1), bref(t, B_DHF, r0, d), gwo,
                           bref(t, B_HF, r0, d), wo->ref, wo->type, bref(t, B_TGT, r0, 1), rows, d,
                           t->vocab, ex_scale[e0]));
            e0 = e1;
        }
    }
    if (tok_loss) TRY(tw_buffer_download(t->buf, t->off_b[B_LOSS], tok_loss, (size_t)t->n * 4));
    t->have_grad = ex_scale != NULL;
    return TW_OK;
}

tw_status trainer_backward(trainer *t) {
    if (!t->have_fwd || !t->have_grad)
        return tw_error(TW_ERR_ARG, "trainer: backward without a forward and a loss with scales");
    t->have_grad = 0;
    if (t->gpt2) {
        TRY(trainer_gpt2_final_norm_bwd(t));
        for (int64_t l = t->L - 1; l >= 0; l--) {
            if (t->recompute) TRY(trainer_gpt2_layer_fwd(t, l, 0));
            TRY(trainer_gpt2_layer_bwd(t, l, t->recompute ? 0 : l));
        }
        return trainer_gpt2_embed_bwd(t);
    }
    TRY(tw_op_rmsnorm_bwd(t->be, bref(t, B_DX, 0, 0), trainer_gw(t, -1, TW_W_OUT_NORM),
                          bref(t, B_DHF, 0, 0), xref(t, t->L), norm_w(t, -1, TW_W_OUT_NORM), t->n,
                          t->d, t->m->hp.norm_eps));
    for (int64_t l = t->L - 1; l >= 0; l--) {
        if (t->recompute) TRY(layer_fwd(t, l, 0));
        TRY(layer_bwd(t, l, t->recompute ? 0 : l));
    }
    tw_ref ge = trainer_gw(t, -1, TW_W_TOK_EMBD);
    if (ge.buf) /* full fine-tuning: the embedding rows of the batch's tokens */
        TRY(tw_op_embed_bwd(t->be, ge, bref(t, B_DX, 0, 0), bref(t, B_IDS, 0, 0), t->vocab, t->n, t->d));
    return TW_OK;
}

/* ---- DPO ------------------------------------------------------------------------------------ */

/* log(1 + exp(x)) without overflow */
static double softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

double trainer_dpo_loss(double pc, double pr, double rc, double rr, double beta, double *d_lc,
                        double *d_lr) {
    double z = beta * ((pc - rc) - (pr - rr));
    double sig_neg = 1.0 / (1.0 + exp(z)); /* sigmoid(-z) = -d loss / dz */
    /* pc = -(sum of chosen token losses): d loss / d lc = -(d loss / d pc) = beta sigmoid(-z) */
    if (d_lc) *d_lc = beta * sig_neg;
    if (d_lr) *d_lr = -beta * sig_neg;
    return softplus(-z);
}

/* ---- micro-batches from a dataset batch ------------------------------------------------------ */

/* The micro-batch of rows [r0, r1) of b as a trainer_batch, its example offsets rebased
 * into ex_buf (which must hold b->n_examples + 1); *e0_out receives its first example's index
 * in b. */
static void micro_make(const ds_batch *b, size_t r0, size_t r1, size_t *ex_buf, trainer_batch *tb,
                       size_t *e0_out) {
    size_t t0 = b->row_start[r0], t1 = b->row_start[r1];
    size_t e0 = 0;
    while (b->ex_start[e0] < t0) e0++;
    size_t e1 = e0;
    while (e1 < b->n_examples && b->ex_start[e1] < t1) e1++;
    for (size_t e = e0; e <= e1; e++) ex_buf[e - e0] = b->ex_start[e] - t0;
    tb->n = (int64_t)(t1 - t0);
    tb->tokens = b->tokens + t0;
    tb->targets = b->targets + t0;
    tb->pos = b->pos + t0;
    tb->seg = b->seg + t0;
    tb->n_ex = (int64_t)(e1 - e0);
    tb->ex_start = ex_buf;
    *e0_out = e0;
}

/* Where the micro-batch starting at row r0 ends: rows (SFT) or row pairs (preference) while
 * the tokens stay within micro_tokens (at least one unit). */
static size_t micro_end(const ds_batch *b, size_t r0, size_t micro_tokens, int pairs) {
    size_t unit = pairs ? 2 : 1, r1 = r0 + unit;
    while (r1 + unit <= b->n_rows && b->row_start[r1 + unit] - b->row_start[r0] <= micro_tokens)
        r1 += unit;
    return r1;
}

static tw_status check_micro(const trainer *t, const trainer_batch *tb) {
    if (tb->n > t->N)
        return tw_error(TW_ERR_ARG, "trainer: a micro-batch of %lld tokens (one example or pair) "
                        "exceeds the %lld tokens the trainer was made for", (long long)tb->n,
                        (long long)t->N);
    return TW_OK;
}

/* Sum of token losses of each example of the last forward into ex_sum (n_ex). */
static void example_sums(const trainer *t, const float *tok_loss, double *ex_sum) {
    for (int64_t e = 0; e < t->n_ex; e++) {
        double s = 0;
        for (size_t i = t->ex_start[e]; i < t->ex_start[e + 1]; i++) s += tok_loss[i];
        ex_sum[e] = s;
    }
}

tw_status trainer_ref_logps(trainer *t, ds_dataset *ds, ds_split split, size_t micro_tokens,
                            double *ref) {
    if (ds_get_kind(ds) != DS_KIND_PREFERENCE)
        return tw_error(TW_ERR_ARG, "trainer: reference log-probs need a preference dataset");
    size_t count = ds_count(ds, split);
    if (count == 0) return TW_OK;
    ds_position saved, zero = {0, 0};
    ds_position_get(ds, split, &saved);
    TRY(ds_position_set(ds, split, &zero));
    int was_on = t->lora_on;
    t->lora_on = 0;
    tw_status st = TW_OK;
    size_t cap = 0, *exb = NULL;
    double *sums = tw_calloc((size_t)t->N, sizeof *sums);
    if (!sums) st = tw_error(TW_ERR_NOMEM, "trainer: out of memory");
    for (int done = 0; st == TW_OK && !done;) {
        st = ds_next_batch(ds, split, micro_tokens, 0, &t->batch);
        if (st != TW_OK) break;
        done = t->batch.epoch_end;
        if (t->batch.n_examples + 1 > cap) {
            tw_free(exb);
            cap = t->batch.n_examples + 1;
            exb = tw_malloc(cap * sizeof *exb);
            if (!exb) {
                st = tw_error(TW_ERR_NOMEM, "trainer: out of memory");
                break;
            }
        }
        trainer_batch tb;
        size_t e0;
        micro_make(&t->batch, 0, t->batch.n_rows, exb, &tb, &e0);
        st = check_micro(t, &tb);
        if (st == TW_OK) st = trainer_forward(t, &tb);
        if (st == TW_OK) st = trainer_loss(t, NULL, t->tok_loss);
        if (st == TW_OK) {
            example_sums(t, t->tok_loss, sums);
            for (int64_t e = 0; e < tb.n_ex; e++) {
                size_t ei = t->batch.ex_index[e];
                int side = t->batch.ex_side[e];
                ref[2 * ei + (side == 1)] = -sums[e];
            }
        }
    }
    tw_free(exb);
    tw_free(sums);
    t->lora_on = was_on;
    tw_status st2 = ds_position_set(ds, split, &saved);
    return st != TW_OK ? st : st2;
}

/* Forward + loss (+ backward with scales) of the micro-batch tb whose examples are batch
 * examples e0.. of b. SFT (ref NULL): scales inv_n. DPO: the pair losses with ref; sums into
 * *acc. grad 0: evaluation only. */
typedef struct {
    double loss_sum;  /* SFT: summed token loss; DPO: summed pair loss */
    double rc, rr, margin, acc;
    int64_t n_pairs, n_loss_tokens;
} step_acc;

static tw_status micro_run(trainer *t, const ds_batch *b, trainer_batch *tb, size_t e0, int dpo,
                           double inv_n, double beta, const double *ref, int grad, step_acc *acc) {
    TRY(check_micro(t, tb));
    TRY(trainer_forward(t, tb));
    for (int64_t i = 0; i < tb->n; i++) acc->n_loss_tokens += tb->targets[i] >= 0;
    if (!dpo) {
        for (int64_t e = 0; e < tb->n_ex; e++) t->ex_scale[e] = (float)inv_n;
        TRY(trainer_loss(t, grad ? t->ex_scale : NULL, t->tok_loss));
        for (int64_t i = 0; i < tb->n; i++) acc->loss_sum += t->tok_loss[i];
    } else {
        TRY(trainer_loss(t, NULL, t->tok_loss));
        double sums[2];
        for (int64_t e = 0; e + 1 < tb->n_ex; e += 2) {
            for (int k = 0; k < 2; k++) {
                double s = 0;
                for (size_t i = tb->ex_start[e + k]; i < tb->ex_start[e + k + 1]; i++) s += t->tok_loss[i];
                sums[k] = s;
            }
            size_t ei = b->ex_index[e0 + (size_t)e];
            if (b->ex_side[e0 + (size_t)e] != 0 || b->ex_side[e0 + (size_t)e + 1] != 1 ||
                b->ex_index[e0 + (size_t)e + 1] != ei)
                return tw_error(TW_ERR_RUNTIME, "trainer: preference batch rows are not chosen/rejected pairs");
            double pc = -sums[0], pr = -sums[1], rc = ref[2 * ei], rr = ref[2 * ei + 1], dc, dr;
            double l = trainer_dpo_loss(pc, pr, rc, rr, beta, &dc, &dr);
            acc->loss_sum += l;
            acc->rc += beta * (pc - rc);
            acc->rr += beta * (pr - rr);
            acc->margin += beta * ((pc - rc) - (pr - rr));
            acc->acc += (pc - rc) > (pr - rr);
            acc->n_pairs++;
            t->ex_scale[e] = (float)(dc * inv_n);
            t->ex_scale[e + 1] = (float)(dr * inv_n);
        }
        if (grad) TRY(trainer_loss(t, t->ex_scale, NULL));
    }
    if (grad) TRY(trainer_backward(t));
    return TW_OK;
}

static void acc_stats(const step_acc *a, int dpo, trainer_step_stats *s) {
    if (dpo) {
        double np = a->n_pairs ? (double)a->n_pairs : 1.0;
        s->loss = a->loss_sum / np;
        s->reward_chosen = a->rc / np;
        s->reward_rejected = a->rr / np;
        s->reward_margin = a->margin / np;
        s->accuracy = a->acc / np;
    } else {
        s->loss = a->n_loss_tokens ? a->loss_sum / (double)a->n_loss_tokens : 0.0;
    }
    s->n_loss_tokens = a->n_loss_tokens;
}

/* The trained parameters (the adapters' regions, or full fine-tuning's): floats per region and
 * a view of region reg (LORA_* and FULLFT_* share the order PARAM, GRAD, ADAM_M, ADAM_V). */
static size_t p_floats(const trainer *t) {
    return t->s ? lora_set_n_floats(t->s) : fullft_n_floats(t->f);
}
static tw_ref p_ref(const trainer *t, int reg) {
    return t->s ? lora_set_ref(t->s, (lora_region)reg, 0) : fullft_ref(t->f, (fullft_region)reg, 0);
}
_Static_assert((int)LORA_GRAD == (int)FULLFT_GRAD && (int)LORA_ADAM_V == (int)FULLFT_ADAM_V,
               "lora.h's and fullft.h's regions are in the same order");

tw_status trainer_step(trainer *t, ds_dataset *ds, const trainer_step_opts *o, int64_t step,
                       const double *ref, trainer_step_stats *stats) {
    memset(stats, 0, sizeof *stats);
    const int dpo = ds_get_kind(ds) == DS_KIND_PREFERENCE;
    if (dpo && !ref) return tw_error(TW_ERR_ARG, "trainer: DPO needs the reference log-probs");
    if (o->micro_tokens < 1 || o->batch_tokens < 1)
        return tw_error(TW_ERR_ARG, "trainer: batch and micro-batch tokens must be >= 1");
    TRY(t->s ? lora_set_zero(t->s, LORA_GRAD) : fullft_zero(t->f, FULLFT_GRAD));
    ds_batch *g = &t->batch;
    TRY(ds_next_batch(ds, DS_SPLIT_TRAIN, o->batch_tokens, 0, g));
    /* SFT: the mean over the global batch's loss tokens; DPO: over its pairs (comm.h's
     * scaling rule: every rank scales its share's sums by the global count) */
    double inv_n = comm_batch_loss_scale(g);
    const int n_ranks = t->comm ? comm_size(t->comm) : 1;
    const ds_batch *b = g;
    size_t tok_base = 0; /* this share's first token in the global batch (dropout counters) */
    if (n_ranks > 1) {
        comm_range ranges[256];
        if (n_ranks > 256) return tw_error(TW_ERR_UNSUPPORTED, "trainer: more than 256 ranks");
        TRY(comm_split_batch(g, n_ranks, ranges));
        TRY(comm_batch_slice(g, &ranges[comm_rank(t->comm)], &t->share));
        b = &t->share;
        tok_base = ranges[comm_rank(t->comm)].tok_begin;
    }
    step_acc acc;
    memset(&acc, 0, sizeof acc);
    size_t *exb = tw_malloc((b->n_examples + 1) * sizeof *exb);
    if (!exb) return tw_error(TW_ERR_NOMEM, "trainer: out of memory");
    tw_status st = TW_OK;
    for (size_t r0 = 0; r0 < b->n_rows && b->n_tokens > 0 && st == TW_OK;) {
        size_t r1 = micro_end(b, r0, o->micro_tokens, dpo), e0;
        trainer_batch tb;
        micro_make(b, r0, r1, exb, &tb, &e0);
        trainer_set_dropout(t, 1, step, (int64_t)(tok_base + b->row_start[r0]));
        st = micro_run(t, b, &tb, e0, dpo, inv_n, o->dpo_beta, ref, 1, &acc);
        trainer_set_dropout(t, 0, 0, 0);
        stats->n_micro++;
        r0 = r1;
    }
    tw_free(exb);
    TRY(st);
    size_t nf = p_floats(t);
    TRY(t->s ? lora_set_download(t->s, LORA_GRAD, t->grad_host)
             : fullft_download(t->f, FULLFT_GRAD, t->grad_host));
    if (n_ranks > 1) {
        /* one all-reduce of the whole GRAD region (comm.h: fixed rank order, same bits on
         * every rank), and one of the step's sums */
        double sums[7] = {acc.loss_sum, acc.rc, acc.rr, acc.margin, acc.acc, (double)acc.n_pairs,
                          (double)acc.n_loss_tokens};
        TRY(comm_allreduce_sum_f32(t->comm, t->grad_host, nf));
        TRY(comm_allreduce_sum_f64(t->comm, sums, 7));
        TRY(t->s ? lora_set_upload(t->s, LORA_GRAD, t->grad_host)
                 : fullft_upload(t->f, FULLFT_GRAD, t->grad_host));
        acc.loss_sum = sums[0];
        acc.rc = sums[1];
        acc.rr = sums[2];
        acc.margin = sums[3];
        acc.acc = sums[4];
        acc.n_pairs = (int64_t)sums[5];
        acc.n_loss_tokens = (int64_t)sums[6];
    }
    acc_stats(&acc, dpo, stats);
    stats->n_tokens = (int64_t)g->n_tokens;
    stats->n_examples = (int64_t)g->n_examples;
    stats->grad_norm = train_grad_norm(t->grad_host, nf);
    stats->clip_scale = train_clip_scale(stats->grad_norm, o->max_grad_norm);
    if (!isfinite(stats->loss) || !isfinite(stats->grad_norm)) {
        stats->skipped = 1;
        return tw_error(TW_ERR_RUNTIME, "step %lld: %s is not finite (loss %g, gradient norm %g)",
                        (long long)step + 1, isfinite(stats->loss) ? "the gradient norm" : "the loss",
                        stats->loss, stats->grad_norm);
    }
    return tw_op_adamw(t->be, p_ref(t, LORA_PARAM), p_ref(t, LORA_GRAD), p_ref(t, LORA_ADAM_M),
                       p_ref(t, LORA_ADAM_V), (int64_t)nf, (float)o->lr, o->beta1, o->beta2, o->eps,
                       o->weight_decay, (float)stats->clip_scale, step + 1);
}

tw_status trainer_eval(trainer *t, ds_dataset *ds, size_t micro_tokens, float dpo_beta,
                       const double *ref, double *loss, trainer_step_stats *stats) {
    const int dpo = ds_get_kind(ds) == DS_KIND_PREFERENCE;
    *loss = NAN;
    if (dpo && !ref) return tw_error(TW_ERR_ARG, "trainer: DPO evaluation needs reference log-probs");
    if (ds_count(ds, DS_SPLIT_EVAL) == 0) return tw_error(TW_ERR_NOT_FOUND, "trainer: the eval split is empty");
    ds_position saved, zero = {0, 0};
    ds_position_get(ds, DS_SPLIT_EVAL, &saved);
    TRY(ds_position_set(ds, DS_SPLIT_EVAL, &zero));
    step_acc acc;
    memset(&acc, 0, sizeof acc);
    size_t cap = 0, *exb = NULL;
    tw_status st = TW_OK;
    for (int done = 0; st == TW_OK && !done;) {
        st = ds_next_batch(ds, DS_SPLIT_EVAL, micro_tokens, 0, &t->batch);
        if (st != TW_OK) break;
        done = t->batch.epoch_end;
        if (t->batch.n_examples + 1 > cap) {
            tw_free(exb);
            cap = t->batch.n_examples + 1;
            exb = tw_malloc(cap * sizeof *exb);
            if (!exb) {
                st = tw_error(TW_ERR_NOMEM, "trainer: out of memory");
                break;
            }
        }
        trainer_batch tb;
        size_t e0;
        micro_make(&t->batch, 0, t->batch.n_rows, exb, &tb, &e0);
        st = micro_run(t, &t->batch, &tb, e0, dpo, 1.0, dpo_beta, ref, 0, &acc);
    }
    tw_free(exb);
    tw_status st2 = ds_position_set(ds, DS_SPLIT_EVAL, &saved);
    TRY(st);
    TRY(st2);
    trainer_step_stats s;
    memset(&s, 0, sizeof s);
    acc_stats(&acc, dpo, &s);
    *loss = s.loss;
    if (stats) *stats = s;
    return TW_OK;
}
