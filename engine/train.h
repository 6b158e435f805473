/* train.h: the training step of the llama family (llama, mistral, smollm2, qwen2) and GPT-2
 * with LoRA adapters on a frozen base: forward saving what the backward needs, backward in
 * reverse, written out by hand as llm.c does, through the op table only (kernels.h); SFT and
 * DPO losses; AdamW with clipping; evaluation. The llama layer is described below; GPT-2's
 * (learned positions, LayerNorms with biases, q/k/v on the fused c_attn, GELU MLP, LoRA on q,
 * k, v, o, up, down) in engine/train_gpt2.c.
 *
 * The model (per layer l, n tokens of a micro-batch, d = n_embd, qd = n_head*head_dim,
 * kvd = n_kv_head*head_dim, ff = n_ff; every matmul below is proj(), see after):
 *   X0 = embed(ids)                                   (n, d)   get_rows of the base's table
 *   H1 = rmsnorm(Xl) * attn_norm                      (n, d)
 *   Q = rope(proj_q(H1)), K = rope(proj_k(H1))        (n, qd), (n, kvd)
 *   V = proj_v(H1)                                    (n, kvd)
 *   ATT, LSE = attn_seg(Q, K, V, seg, causal)         (n, qd), (n, n_head)
 *   XM = Xl + proj_o(ATT)                             (n, d)
 *   H2 = rmsnorm(XM) * ffn_norm                       (n, d)
 *   G = proj_gate(H2), U = proj_up(H2)                (n, ff)
 *   SW = silu(G) * U                                  (n, ff)
 *   X(l+1) = XM + proj_down(SW)                       (n, d)
 *   HF = rmsnorm(XL) * output_norm; loss[t] = xent(HF . W_out^T, target[t])
 * where proj(x) = x W^T (+ bias) + (s * (x A^T)) B^T for an adapted module (A (r, in),
 * B (out, r), s = lora_set_scale): the rank-r product LA = s * x A^T (n, r) is formed first
 * and saved, never a full delta. W stays in its stored type (F32 ... Q4_1 ...: the "native"
 * QLoRA mode); it is frozen: the backward passes through it with matmul_dx only.
 *
 * Backward (reverse order; LoRA gradients accumulate (+=) into the set's GRAD region):
 *   dB += dy^T . LA;  dLA = s * dy . B;  dA += dLA^T . x;  dx (+)= dy . W + dLA . A
 * and the matching backward ops of rmsnorm (frozen weights: no dw), rope, attn_seg, swiglu.
 * Token losses are averaged by the caller's scales: the xent gradient of example e is
 * multiplied by ex_scale[e] (SFT: 1 / loss tokens of the whole optimizer batch, so gradient
 * accumulation over micro-batches gives the gradient of the batch's mean; DPO: the
 * derivative of the DPO loss with respect to the example's summed token loss).
 *
 * Memory (one backend buffer per trainer): for max_tokens tokens, the inputs, one saved
 * activation set per layer (or one in all with recompute: only the layer inputs X0..XL are
 * kept and each layer's activations are recomputed just before its backward), and the
 * gradient scratch; trainer_act_bytes says how much.
 *
 * Determinism: every op is bit-identical across runs and thread counts (kernels.h), and the
 * step reads no clock or unseeded randomness, so a seed and a data order give the same bits.
 *
 * Full fine-tuning (trainer_new_full) trains every weight instead: the same step with f32
 * copies of the weights and their gradients (see there).
 *
 * An NF4 base (QLoRA: tw_model_proj_convert(m, TW_DTYPE_NF4) before trainer_new) needs
 * nothing here: its matmuls dequantize chunks of rows inside the op (kernels.h, NF4 weights).
 *
 * Limits (TW_ERR_UNSUPPORTED): architectures other than the llama family and GPT-2 (full
 * fine-tuning covers both).
 *
 * Thread safety: a trainer belongs to its model's backend thread; one call at a time.
 */
#ifndef TWIN_TRAIN_H
#define TWIN_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "comm.h"
#include "core.h"
#include "dataset.h"
#include "fullft.h"
#include "kernels.h"
#include "lora.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct trainer trainer;

typedef struct {
    int64_t max_tokens; /* tokens of the largest micro-batch (activations are sized for it) */
    int recompute;      /* 1: keep only layer inputs, recompute each layer in the backward */
} trainer_opts;

/* Makes a trainer for model m (llama family or GPT-2) and adapter set s (made for m's dimensions, on
 * m's backend). Both must outlive the trainer. TW_ERR_ARG (max_tokens < 1, a set for other
 * dimensions), TW_ERR_UNSUPPORTED (see Limits), TW_ERR_NOMEM. *out is for trainer_free. */
tw_status trainer_new(tw_model *m, lora_set *s, const trainer_opts *o, trainer **out);
void trainer_free(trainer *t); /* NULL is a no-op */

/* Full fine-tuning (fullft.h): a trainer for model m (llama family or GPT-2) that trains every
 * weight of f (made from m; both must outlive the trainer) instead of adapters: the forward
 * reads f's fp32 weights, the backward adds each weight's gradient to f's GRAD region
 * (matmul_dw with the bias, rmsnorm_bwd's dw, layernorm_bwd's dw and db, the head's dW from
 * xent, the embedding's scatter from embed_bwd, GPT-2's learned positions' too; a tied table
 * receives both the head's and the embedding's; GPT-2's q, k, v gradients land in their rows
 * of the fused attn_qkv) and trainer_step runs AdamW over f. trainer_set_lora_enabled has no
 * effect; trainer_ref_logps uses the current weights (call it before the first step for DPO's
 * references). */
tw_status trainer_new_full(tw_model *m, fullft_set *f, const trainer_opts *o, trainer **out);

/* Bytes of the trainer's activation buffer. */
size_t trainer_act_bytes(const trainer *t);
/* LoRA dropout (PEFT semantics, the set's config->dropout = p): in a training forward each
 * adapted module's LoRA input is dropout(x) = x * mask / (1 - p) (the base path sees x); the
 * backward uses the same mask. The mask of module (layer l, module mod) for token i of the
 * forward is tw_op_dropout's with key tw_dropout_key({seed, step, l, mod}) and token counter
 * tok0 + i: a pure function of those counters, so it is the same for any thread count, any
 * micro-batch size, any number of ranks (trainer_step numbers tokens by their offset in the
 * global batch) and after a resume. on = 0 (the default; evaluation, references): no dropout.
 * Read by the next trainer_forward calls (a backward uses its forward's setting). */
void trainer_set_dropout(trainer *t, int on, int64_t step, int64_t tok0);
/* 1: adapters apply (default); 0: the forward is the base model's (DPO references). */
void trainer_set_lora_enabled(trainer *t, int on);
/* Data parallelism (comm.h): with c of more than one rank, trainer_step works on this rank's
 * share of each global batch (comm_split_batch) and all-reduces the GRAD region and the
 * step's sums before the norm and AdamW, so every rank makes the same update. NULL (the
 * default) or one rank: the whole batch here. c must outlive its use. */
void trainer_set_comm(trainer *t, comm_ctx *c);

/* A micro-batch (host arrays of n tokens): examples contiguous, each with its own segment id
 * (non-decreasing), positions restarting at 0 per example. */
typedef struct {
    int64_t n;
    const int32_t *tokens;  /* (n) */
    const int32_t *targets; /* (n) next-token label, -1: no loss on this token */
    const int32_t *pos;     /* (n) */
    const int32_t *seg;     /* (n) */
    int64_t n_ex;           /* examples */
    const size_t *ex_start; /* (n_ex + 1) token offsets, ex_start[n_ex] = n */
} trainer_batch;

/* Runs the forward over b and keeps what the backward needs (the batch is remembered: the
 * next trainer_loss / trainer_backward refer to it). TW_ERR_ARG: n outside [1, max_tokens], a
 * token or target out of the vocabulary, segments or example offsets inconsistent. */
tw_status trainer_forward(trainer *t, const trainer_batch *b);
/* The LM head and cross-entropy of the last forward: tok_loss (n) host receives each
 * token's loss (0 where target < 0); with ex_scale (n_ex) not NULL the head's gradient for
 * the backward is formed too, example e's scaled by ex_scale[e]; with NULL nothing is kept
 * for a backward (evaluation, DPO's first pass). */
tw_status trainer_loss(trainer *t, const float *ex_scale, float *tok_loss);
/* Backward of the last forward from the gradient of the last trainer_loss with scales: adds
 * the LoRA gradients to the set's GRAD region. TW_ERR_ARG when no such loss preceded it. */
tw_status trainer_backward(trainer *t);

/* ---- steps over a dataset ----------------------------------------------------------------- */

typedef struct {
    size_t batch_tokens; /* tokens per optimizer step (whole examples; >= one example) */
    size_t micro_tokens; /* tokens per micro-batch (gradient accumulation); <= max_tokens */
    double lr;           /* this step's learning rate */
    float beta1, beta2, eps, weight_decay;
    double max_grad_norm; /* <= 0: no clipping */
    float dpo_beta;       /* DPO only */
} trainer_step_opts;

/* AdamW defaults (0.9, 0.999, 1e-8, weight decay 0), clipping 1.0, dpo beta 0.1. */
void trainer_step_opts_default(trainer_step_opts *o);

typedef struct {
    double loss;           /* mean token loss (SFT) or mean DPO loss of the batch */
    double grad_norm;      /* before clipping */
    double clip_scale;     /* applied to the gradients */
    int64_t n_tokens, n_loss_tokens, n_examples, n_micro;
    int skipped;           /* 1: non-finite loss or gradient: no update was made */
    /* DPO: mean rewards beta*(logp - ref_logp), margin and accuracy over the pairs */
    double reward_chosen, reward_rejected, reward_margin, accuracy;
} trainer_step_stats;

/* Reference log-probabilities of the preference dataset's pairs under the base model (the
 * adapters switched off), for DPO: ref (2 * ds_count(split)) receives [2i] chosen, [2i+1]
 * rejected of example i (ds_example_get order). Reads the whole split in micro-batches of
 * micro_tokens, then puts its position back where it was. */
tw_status trainer_ref_logps(trainer *t, ds_dataset *ds, ds_split split, size_t micro_tokens,
                            double *ref);

/* One optimizer step: the next batch of the dataset's train split (ds_next_batch with
 * batch_tokens), in micro-batches of at most micro_tokens, gradients accumulated, the global
 * norm clipped, one AdamW update (step = optimizer steps taken before + 1). SFT or DPO as the
 * dataset's kind says (DPO needs ref from trainer_ref_logps of the train split). A
 * non-finite loss or gradient skips the update (stats->skipped) and returns TW_ERR_RUNTIME
 * with the reason. */
tw_status trainer_step(trainer *t, ds_dataset *ds, const trainer_step_opts *o, int64_t step,
                       const double *ref, trainer_step_stats *stats);

/* The mean loss over the whole eval split (SFT: token loss; DPO: DPO loss with ref of the eval
 * split, and the reward figures in *stats). stats may be NULL. */
tw_status trainer_eval(trainer *t, ds_dataset *ds, size_t micro_tokens, float dpo_beta,
                       const double *ref, double *loss, trainer_step_stats *stats);

/* The DPO loss of one pair and its derivatives with respect to the summed token losses of
 * the chosen (d_lc) and rejected (d_lr) sequences (the log-probs are minus those sums):
 *   z = beta * ((pc - rc) - (pr - rr));  loss = -log sigmoid(z) = softplus(-z)
 * Pure; thread-safe. */
double trainer_dpo_loss(double pc, double pr, double rc, double rr, double beta, double *d_lc,
                        double *d_lr);

#ifdef __cplusplus
}
#endif
#endif
