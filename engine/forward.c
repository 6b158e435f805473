/* forward.c: the forward pass over a ragged batch (tw_model_forward in model.h), for every
 * architecture descriptor, through the op table only.
 *
 * One pass per chunk of at most T = max_batch_tokens tokens (and R = max_logit_rows tokens
 * that want logits). Activations live in one backend buffer sized for a chunk at load:
 *
 *   X    (T, n_embd)   the residual stream
 *   H    (T, n_embd)   normed input of a block; also the attention and MLP outputs
 *   Q    (T, n_head, head_dim)        K, V (T, n_kv_head, head_dim)
 *   ATT  (T, n_head, head_dim)        attention output
 *   G, U (T, n_ff)     MLP gate and up (GELU MLPs use G only)
 *   XO, XN (R, n_embd) the last layer works on the rows whose logits are wanted only: their
 *                      residual rows and the attention / MLP outputs added to them
 *   LOG  (R, n_vocab)  logits
 *   IDS, POS, SLOT, SEQ (T) int32; WANT (R) int32
 *
 * Every token's K/V go into its sequence's pages (slots computed on the host by the cache
 * manager) before attention reads them, so tokens of one sequence in the same chunk see each
 * other causally, and chunks see the chunks before them through the cache: a batch gives the
 * same result in one chunk or many.
 *
 * LoRA (tw_model_set_lora): after each adapted matmul y = x W^T the adapter's rank-r product
 * is added, LA = scale * (x A^T) (rows, r) then LB = LA B^T (rows, out), y += LB, with LA and
 * LB in their own scratch buffer (the adapted outputs Q, K, V, H, G, U, XN must stay intact
 * while it runs). f32 matmuls whose rows do not depend on the other rows, so a sequence gets
 * the same bits alone or in a batch with an adapter too.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kv_cache_impl.h"
#include "lora.h"
#include "model_impl.h"

enum {
    TW_A_X = 0, TW_A_H, TW_A_Q, TW_A_K, TW_A_V, TW_A_ATT, TW_A_G, TW_A_U, TW_A_XO, TW_A_XN,
    TW_A_LOG, TW_A_IDS, TW_A_POS, TW_A_SLOT, TW_A_SEQ, TW_A_WANT, TW_A_COUNT
};

static tw_ref act(const tw_model *m, int a) { return tw_ref_at(m->act, m->act_off[a]); }

tw_status tw_forward_alloc(tw_model *m) {
    const tw_model_hparams *hp = &m->hp;
    size_t T = (size_t)m->params.max_batch_tokens, R = (size_t)m->params.max_logit_rows;
    size_t nq = (size_t)hp->n_head * (size_t)hp->head_dim;
    size_t nkv = (size_t)hp->n_kv_head * (size_t)hp->head_dim;
    size_t bytes[TW_A_COUNT] = {
        [TW_A_X] = T * (size_t)hp->n_embd * 4, [TW_A_H] = T * (size_t)hp->n_embd * 4,
        [TW_A_Q] = T * nq * 4, [TW_A_K] = T * nkv * 4, [TW_A_V] = T * nkv * 4,
        [TW_A_ATT] = T * nq * 4, [TW_A_G] = T * (size_t)hp->n_ff * 4,
        [TW_A_U] = m->arch->ffn == TW_FFN_SWIGLU ? T * (size_t)hp->n_ff * 4 : 0,
        [TW_A_XO] = R * (size_t)hp->n_embd * 4, [TW_A_XN] = R * (size_t)hp->n_embd * 4,
        [TW_A_LOG] = R * (size_t)hp->n_vocab * 4, [TW_A_IDS] = T * 4, [TW_A_POS] = T * 4,
        [TW_A_SLOT] = T * 4, [TW_A_SEQ] = T * 4, [TW_A_WANT] = R * 4,
    };
    size_t total = 0;
    for (int a = 0; a < TW_A_COUNT; a++) {
        m->act_off[a] = total;
        total += (bytes[a] + 255) & ~(size_t)255;
    }
    tw_status st = tw_buffer_alloc(m->be, total, &m->act);
    if (st != TW_OK)
        return tw_error_wrap("%s: activations for %zu tokens (%zu bytes)", m->path, T, total);
    return TW_OK;
}

void tw_forward_free(tw_model *m) {
    tw_buffer_free(m->act);
    tw_buffer_free(m->bt);
    tw_buffer_free(m->lora_act);
    m->act = m->bt = m->lora_act = NULL;
    m->lora = NULL;
}

int32_t tw_batch_n_logits(const tw_batch *b) {
    if (!b || b->n <= 0) return 0;
    if (!b->want_logits) return 1;
    int32_t k = 0;
    for (int32_t i = 0; i < b->n; i++) k += b->want_logits[i] != 0;
    return k;
}

void tw_model_logits(const tw_model *m, tw_ref *out, int32_t *n_rows) {
    *out = act(m, TW_A_LOG);
    *n_rows = m->logit_rows;
}

static int batch_wants(const tw_batch *b, int32_t i) {
    return b->want_logits ? b->want_logits[i] != 0 : i == b->n - 1;
}

#define TRY(call)                                                                             \
    do {                                                                                      \
        tw_status _st = (call);                                                               \
        if (_st != TW_OK) return _st;                                                         \
    } while (0)

static tw_status norm(const tw_model *m, tw_ref y, tw_ref x, const tw_weight *w,
                      const tw_weight *b, int64_t rows) {
    if (m->arch->norm == TW_NORM_RMS)
        return tw_op_rmsnorm(m->be, y, x, w->ref, rows, m->hp.n_embd, m->hp.norm_eps);
    return tw_op_layernorm(m->be, y, x, w->ref, b->ref, rows, m->hp.n_embd, m->hp.norm_eps);
}

static tw_status matmul(const tw_model *m, tw_ref y, tw_ref x, const tw_weight *w,
                        const tw_weight *bias, int64_t rows) {
    return tw_op_matmul(m->be, y, x, w->ref, w->type, bias ? bias->ref : tw_ref_none(), rows,
                        w->ne0, w->ne1);
}

/* y (rows, out) += scale * ((x A^T) B^T) with the attached set's adapter of (layer l, module
 * mod); nothing when there is no set or it does not adapt that layer. x: (rows, in) the matmul's
 * input, y: its output; A (r, in), B (out, r) f32 views of the set's PARAM region; LA (rows, r)
 * and LB (rows, out) in m->lora_act. */
static tw_status lora_add(const tw_model *m, tw_ref y, tw_ref x, int32_t l, lora_module mod,
                          int64_t rows) {
    if (!m->lora || rows == 0) return TW_OK;
    const lora_adapter *a = lora_set_find(m->lora, l, mod);
    if (!a) return TW_OK;
    tw_ref LA = tw_ref_at(m->lora_act, 0), LB = tw_ref_at(m->lora_act, m->lora_lb_off);
    TRY(tw_op_matmul(m->be, LA, x, lora_set_ref(m->lora, LORA_PARAM, a->a_off), TW_DTYPE_F32,
                     tw_ref_none(), rows, a->in, a->rank));
    /* the scale on the (rows, r) product: r multiplies instead of out per row */
    TRY(tw_op_scale(m->be, LA, LA, lora_set_scale(m->lora), rows * a->rank));
    TRY(tw_op_matmul(m->be, LB, LA, lora_set_ref(m->lora, LORA_PARAM, a->b_off), TW_DTYPE_F32,
                     tw_ref_none(), rows, a->rank, a->out));
    return tw_op_add(m->be, y, y, LB, rows * a->out);
}

/* Host-side description of one chunk: n tokens of the batch (in the forward's processing
 * order, see tw_model_forward). */
typedef struct {
    int32_t n;           /* tokens */
    const int32_t *tok;  /* (n) token ids */
    const int32_t *seq;  /* (n) sequence ids */
    const int32_t *pos;  /* (n) positions */
    const int32_t *slot; /* (n) cache slots */
    int32_t *tok_row;    /* (n) row of the block table for each token */
    int32_t *want;       /* (n_want) chunk indices of the tokens whose logits are wanted */
    int32_t n_want;
    int32_t n_rows, max_blocks; /* block table shape */
} chunk;

/* Builds and uploads the chunk's indices and block table. row_of_seq (max_seqs, all -1) and
 * row_seq (n) are host scratch; row_of_seq is all -1 again on return. */
static tw_status chunk_upload(tw_model *m, const tw_kv_cache *kv, chunk *c, int32_t *row_of_seq,
                              int32_t *row_seq) {
    c->n_rows = 0;
    c->max_blocks = 1;
    for (int32_t i = 0; i < c->n; i++) {
        int32_t s = c->seq[i];
        if (row_of_seq[s] < 0) {
            row_of_seq[s] = c->n_rows;
            row_seq[c->n_rows++] = s;
            if (kv->seqs[s].n_pages > c->max_blocks) c->max_blocks = kv->seqs[s].n_pages;
        }
        c->tok_row[i] = row_of_seq[s];
    }
    size_t n_bt = (size_t)c->n_rows * (size_t)c->max_blocks;
    int32_t *bt = tw_calloc(n_bt, sizeof *bt); /* rows shorter than max_blocks pad with page 0 */
    if (!bt) return tw_error(TW_ERR_NOMEM, "forward: out of memory for the block table");
    for (int32_t r = 0; r < c->n_rows; r++) {
        const kv_seq *s = &kv->seqs[row_seq[r]];
        memcpy(bt + (size_t)r * (size_t)c->max_blocks, s->pages, (size_t)s->n_pages * sizeof *bt);
        row_of_seq[row_seq[r]] = -1;
    }
    tw_status st = TW_OK;
    size_t bt_bytes = n_bt * sizeof *bt;
    if (bt_bytes > m->bt_bytes) {
        tw_buffer_free(m->bt);
        m->bt = NULL;
        m->bt_bytes = 0;
        size_t cap = bt_bytes < 4096 ? 4096 : bt_bytes * 2;
        st = tw_buffer_alloc(m->be, cap, &m->bt);
        if (st == TW_OK) m->bt_bytes = cap;
    }
    if (st == TW_OK) st = tw_buffer_upload(m->bt, 0, bt, bt_bytes);
    tw_free(bt);
    const size_t n4 = (size_t)c->n * sizeof(int32_t);
    if (st == TW_OK) st = tw_buffer_upload(m->act, m->act_off[TW_A_IDS], c->tok, n4);
    if (st == TW_OK) st = tw_buffer_upload(m->act, m->act_off[TW_A_POS], c->pos, n4);
    if (st == TW_OK) st = tw_buffer_upload(m->act, m->act_off[TW_A_SLOT], c->slot, n4);
    if (st == TW_OK) st = tw_buffer_upload(m->act, m->act_off[TW_A_SEQ], c->tok_row, n4);
    if (st == TW_OK && c->n_want)
        st = tw_buffer_upload(m->act, m->act_off[TW_A_WANT], c->want,
                              (size_t)c->n_want * sizeof(int32_t));
    return st;
}

/* One transformer block over the chunk's tokens. Every layer but the last updates X (n rows) in
 * place. The last layer (last = 1) only needs the rows whose logits are wanted: after writing
 * every token's K/V it stops when there are none, and otherwise gathers the wanted rows of X
 * and of the attention output after the output projection (where llama.cpp gathers them too)
 * and finishes the block on those rows in XO; *out is where the final hidden rows are: X (all
 * rows wanted) or XO (n_want rows). */
static tw_status block_run(const tw_model *m, const tw_kv_cache *kv, const chunk *c, int32_t l,
                           int last, tw_ref *out) {
    const tw_model_hparams *hp = &m->hp;
    tw_backend *be = m->be;
    const int64_t n = c->n, d = hp->n_embd;
    tw_ref X = act(m, TW_A_X), H = act(m, TW_A_H), Q = act(m, TW_A_Q), K = act(m, TW_A_K);
    tw_ref V = act(m, TW_A_V), ATT = act(m, TW_A_ATT), G = act(m, TW_A_G), U = act(m, TW_A_U);
    tw_ref POS = act(m, TW_A_POS);
#define W(role) tw_layer_w(m, l, role)
    TRY(norm(m, H, X, W(TW_W_ATTN_NORM), W(TW_W_ATTN_NORM_B), n));
    TRY(matmul(m, Q, H, W(TW_W_Q), W(TW_W_Q_B), n));
    TRY(lora_add(m, Q, H, l, LORA_Q, n));
    TRY(matmul(m, K, H, W(TW_W_K), W(TW_W_K_B), n));
    TRY(lora_add(m, K, H, l, LORA_K, n));
    TRY(matmul(m, V, H, W(TW_W_V), W(TW_W_V_B), n));
    TRY(lora_add(m, V, H, l, LORA_V, n));
    if (!m->arch->learned_pos) {
        tw_ref ff = m->g[TW_W_ROPE_FREQS].ref;
        TRY(tw_op_rope(be, Q, Q, POS, n, hp->n_head, hp->head_dim, hp->rope_dim, m->rope_mode,
                       hp->rope_theta, hp->rope_freq_scale, ff));
        TRY(tw_op_rope(be, K, K, POS, n, hp->n_kv_head, hp->head_dim, hp->rope_dim, m->rope_mode,
                       hp->rope_theta, hp->rope_freq_scale, ff));
    }
    const int64_t n_slots = (int64_t)kv->n_pages * kv->page_size;
    tw_ref kc = kv_cache_k(kv, l), vc = kv_cache_v(kv, l);
    TRY(tw_op_kv_write(be, kc, vc, kv->type, n_slots, K, V, act(m, TW_A_SLOT), n, hp->n_kv_head,
                       hp->head_dim));
    *out = X;
    if (last && c->n_want == 0) return TW_OK; /* nothing reads this layer's output */
    TRY(tw_op_attention(be, ATT, Q, kc, vc, kv->type, n_slots, tw_ref_at(m->bt, 0), c->n_rows,
                        c->max_blocks, kv->page_size, act(m, TW_A_SEQ), POS, n, hp->n_head,
                        hp->n_kv_head, hp->head_dim, 1.0f / sqrtf((float)hp->head_dim)));
    TRY(matmul(m, H, ATT, W(TW_W_O), W(TW_W_O_B), n));
    TRY(lora_add(m, H, ATT, l, LORA_O, n));
    int64_t rows = n;
    tw_ref R = X, A = H; /* residual rows and the rows added to them */
    if (last && c->n_want < n) {
        tw_ref WANT = act(m, TW_A_WANT);
        R = act(m, TW_A_XO);
        A = act(m, TW_A_XN);
        rows = c->n_want;
        TRY(tw_op_get_rows(be, R, X, TW_DTYPE_F32, n, WANT, rows, d));
        TRY(tw_op_get_rows(be, A, H, TW_DTYPE_F32, n, WANT, rows, d));
    }
    TRY(tw_op_add(be, R, R, A, rows * d));
    TRY(norm(m, A, R, W(TW_W_FFN_NORM), W(TW_W_FFN_NORM_B), rows));
    if (m->arch->ffn == TW_FFN_SWIGLU) {
        TRY(matmul(m, G, A, W(TW_W_GATE), NULL, rows));
        TRY(lora_add(m, G, A, l, LORA_GATE, rows));
        TRY(matmul(m, U, A, W(TW_W_UP), W(TW_W_UP_B), rows));
        TRY(lora_add(m, U, A, l, LORA_UP, rows));
        TRY(tw_op_swiglu(be, G, G, U, rows, hp->n_ff));
    } else {
        TRY(matmul(m, G, A, W(TW_W_UP), W(TW_W_UP_B), rows));
        TRY(lora_add(m, G, A, l, LORA_UP, rows));
        TRY(tw_op_gelu(be, G, G, rows * hp->n_ff, TW_GELU_TANH));
    }
    TRY(matmul(m, A, G, W(TW_W_DOWN), W(TW_W_DOWN_B), rows));
    TRY(lora_add(m, A, G, l, LORA_DOWN, rows));
    TRY(tw_op_add(be, R, R, A, rows * d));
    *out = R;
#undef W
    return TW_OK;
}

/* The whole chunk: embeddings, blocks, and the logits of its wanted rows. Row r of the chunk's
 * logits goes to logits + out_row[r] * n_vocab (host memory), or stays on the backend when
 * logits is NULL. */
static tw_status chunk_run(tw_model *m, const tw_kv_cache *kv, const chunk *c, float *logits,
                           const int32_t *out_row) {
    const tw_model_hparams *hp = &m->hp;
    tw_backend *be = m->be;
    const int64_t n = c->n, d = hp->n_embd;
    tw_ref X = act(m, TW_A_X), H = act(m, TW_A_H);
    const tw_weight *te = &m->g[TW_W_TOK_EMBD];
    TRY(tw_op_get_rows(be, X, te->ref, te->type, te->ne1, act(m, TW_A_IDS), n, d));
    if (m->arch->learned_pos) {
        const tw_weight *pe = &m->g[TW_W_POS_EMBD];
        TRY(tw_op_get_rows(be, H, pe->ref, pe->type, pe->ne1, act(m, TW_A_POS), n, d));
        TRY(tw_op_add(be, X, X, H, n * d));
    }
    tw_ref hid = X;
    for (int32_t l = 0; l < hp->n_layer; l++) TRY(block_run(m, kv, c, l, l == hp->n_layer - 1, &hid));
    m->logit_rows = 0;
    if (c->n_want == 0) return TW_OK;
    /* hid: the wanted rows (c->n_want of them, in chunk order) in X (all) or XO (gathered) */
    tw_ref XN = act(m, TW_A_XN), LOG = act(m, TW_A_LOG);
    TRY(norm(m, XN, hid, &m->g[TW_W_OUT_NORM], &m->g[TW_W_OUT_NORM_B], c->n_want));
    TRY(matmul(m, LOG, XN, &m->g[TW_W_OUTPUT], NULL, c->n_want));
    m->logit_rows = c->n_want;
    if (!logits) return TW_OK;
    const size_t row = (size_t)hp->n_vocab * sizeof(float);
    for (int32_t r = 0; r < c->n_want;) { /* one download per run of consecutive rows */
        int32_t k = 1;
        while (r + k < c->n_want && out_row[r + k] == out_row[r] + k) k++;
        TRY(tw_buffer_download(m->act, m->act_off[TW_A_LOG] + (size_t)r * row,
                               logits + (size_t)out_row[r] * hp->n_vocab, (size_t)k * row));
        r += k;
    }
    return TW_OK;
}

/* Where the chunk that starts at `start` of the processing order ends (exclusive): at most T
 * tokens and R wanted logits, and no sequence split so that one of its tokens is alone in a
 * chunk while it has more tokens in the batch. Why: the attention kernel sums in one order for
 * a sequence with several tokens in the call (a prompt) and in another for a lone token (a
 * decode step), as llama.cpp does (kernels.h); keeping every multi-token sequence at >= 2
 * tokens per chunk gives a chunked batch the bits of one pass. In the processing order the
 * tokens of a sequence are contiguous, so with T, R >= 3 a boundary always exists. seq, want:
 * (n) in processing order; total: tokens of each sequence in the batch; done: in earlier
 * chunks; cnt: all zero, left all zero. */
static int32_t chunk_end(int32_t n, const int32_t *seq, const uint8_t *want, int32_t start,
                         int32_t T, int32_t R, const int32_t *total, const int32_t *done,
                         int32_t *cnt) {
    int32_t end = start, n_want = 0;
    while (end < n && end - start < T) {
        if (want[end] && n_want == R) break;
        n_want += want[end];
        end++;
    }
    while (end - start > 1 && end < n) {
        int bad = 0;
        for (int32_t i = start; i < end; i++) cnt[seq[i]]++;
        for (int32_t i = start; i < end; i++) {
            int32_t s = seq[i];
            if (cnt[s] <= 0) continue; /* seen */
            int32_t rest = total[s] - done[s] - cnt[s];
            if (total[s] >= 2 && (cnt[s] == 1 || rest == 1)) bad = 1;
            cnt[s] = -cnt[s];
        }
        for (int32_t i = start; i < end; i++) cnt[seq[i]] = 0;
        if (!bad) break;
        end--;
    }
    return end;
}

tw_status tw_model_forward(tw_model *m, tw_kv_cache *kv, const tw_batch *b, float *logits) {
    if (!m || !kv || !b) return tw_error(TW_ERR_ARG, "forward: model, cache and batch are required");
    if (m->arch->encoder_only)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: %s is an encoder (embeddings: encoder.h), not a "
                        "generative model", m->path, m->arch->name);
    if (kv->be != m->be || kv->n_layer != m->hp.n_layer || kv->n_kv_head != m->hp.n_kv_head ||
        kv->head_dim != m->hp.head_dim)
        return tw_error(TW_ERR_ARG, "forward: the KV cache was not made for this model");
    m->logit_rows = 0;
    if (b->n < 0) return tw_error(TW_ERR_ARG, "forward: batch size %d", (int)b->n);
    if (b->n == 0) return TW_OK;
    if (!b->token || !b->seq) return tw_error(TW_ERR_ARG, "forward: batch token and seq arrays are required");
    const int32_t n = b->n, ms = kv->max_seqs;
    /* host scratch (int32): pos, rows, tok_row, want, row_seq, toks, order, perm,
     * out_row, tok_p, seq_p, pos_p, slot_p (n each); old_len, next_pos, row_of_seq, done, cnt,
     * total (max_seqs each); want_p (n bytes). */
    int32_t *scratch = tw_malloc(((size_t)n * 13 + (size_t)ms * 6) * sizeof(int32_t) + (size_t)n);
    if (!scratch) return tw_error(TW_ERR_NOMEM, "forward: out of memory for a batch of %d", (int)n);
    int32_t *pos = scratch, *rows = pos + n, *tok_row = rows + n, *want = tok_row + n;
    int32_t *row_seq = want + n, *toks = row_seq + n, *order = toks + n, *perm = order + n;
    int32_t *out_row = perm + n, *tok_p = out_row + n, *seq_p = tok_p + n, *pos_p = seq_p + n;
    int32_t *slot_p = pos_p + n, *old_len = slot_p + n, *next_pos = old_len + ms;
    int32_t *row_of_seq = next_pos + ms, *done = row_of_seq + ms, *cnt = done + ms, *total = cnt + ms;
    uint8_t *want_p = (uint8_t *)(total + ms);
    for (int32_t s = 0; s < ms; s++) old_len[s] = row_of_seq[s] = -1, done[s] = cnt[s] = 0;
    int32_t n_order = 0, n_touched = 0;
    tw_status st = TW_OK;

    /* Check the whole batch before anything changes. */
    for (int32_t i = 0; i < n && st == TW_OK; i++) {
        int32_t s = b->seq[i], t = b->token[i];
        if (!kv_seq_live(kv, s)) {
            st = tw_error(TW_ERR_ARG, "forward: batch[%d]: sequence %d is not live", (int)i, (int)s);
            break;
        }
        if (t < 0 || t >= m->hp.n_vocab) {
            st = tw_error(TW_ERR_ARG, "forward: batch[%d]: token id %d is outside the vocabulary (%d)",
                          (int)i, (int)t, (int)m->hp.n_vocab);
            break;
        }
        if (old_len[s] < 0) {
            old_len[s] = next_pos[s] = kv->seqs[s].len;
            order[n_order++] = s;
        }
        int32_t p = next_pos[s]++;
        if (b->pos && b->pos[i] != p) {
            st = tw_error(TW_ERR_ARG,
                          "forward: batch[%d]: position %d does not extend sequence %d (expected %d)",
                          (int)i, (int)b->pos[i], (int)s, (int)p);
            break;
        }
        if (m->arch->learned_pos && p >= m->hp.n_ctx_train) {
            st = tw_error(TW_ERR_ARG,
                          "forward: batch[%d]: position %d is past the model's %d learned positions",
                          (int)i, (int)p, (int)m->hp.n_ctx_train);
            break;
        }
        if (p >= kv->n_ctx) {
            st = tw_error(TW_ERR_ARG, "forward: batch[%d]: position %d is past the context of %d",
                          (int)i, (int)p, (int)kv->n_ctx);
            break;
        }
        pos[i] = p;
    }
    /* Reserve the pages of every sequence (nothing written yet: a full cache changes nothing). */
    for (int32_t k = 0; k < n_order && st == TW_OK; k++) {
        int32_t s = order[k], n_s = 0;
        for (int32_t i = 0; i < n; i++)
            if (b->seq[i] == s) toks[n_s++] = b->token[i];
        total[s] = n_s;
        st = kv_seq_append(kv, s, toks, n_s);
        if (st == TW_OK) n_touched = k + 1;
    }
    if (st == TW_OK) {
        /* Processing order: the batch order when it fits in one chunk; otherwise the tokens
         * grouped by sequence (in order of first appearance, each sequence's tokens in batch
         * order), so that chunk boundaries cut one sequence at a time (chunk_end). Sequences
         * do not see each other, so the order changes no result; logits rows still come out
         * in batch order. */
        const int32_t T = m->params.max_batch_tokens, R = m->params.max_logit_rows;
        int32_t n_want_all = 0;
        for (int32_t i = 0; i < n; i++) {
            out_row[i] = batch_wants(b, i) ? n_want_all : -1;
            n_want_all += batch_wants(b, i);
        }
        if (n <= T && n_want_all <= R) {
            for (int32_t i = 0; i < n; i++) perm[i] = i;
        } else {
            /* counting sort by the rank of each sequence in `order` (cnt: the rank; toks, free
             * after the reservation: each rank's next place) */
            for (int32_t r = 0; r < n_order; r++) cnt[order[r]] = r;
            int32_t *offs = toks, acc = 0;
            for (int32_t r = 0; r < n_order; r++) {
                offs[r] = acc;
                acc += total[order[r]];
            }
            for (int32_t i = 0; i < n; i++) perm[offs[cnt[b->seq[i]]]++] = i;
            for (int32_t r = 0; r < n_order; r++) cnt[order[r]] = 0;
        }
        for (int32_t j = 0; j < n; j++) {
            int32_t i = perm[j];
            tok_p[j] = b->token[i];
            seq_p[j] = b->seq[i];
            pos_p[j] = pos[i];
            slot_p[j] = kv_seq_slot(kv, b->seq[i], pos[i]);
            want_p[j] = (uint8_t)batch_wants(b, i);
        }
        for (int32_t start = 0; start < n && st == TW_OK;) {
            int32_t end = chunk_end(n, seq_p, want_p, start, T, R, total, done, cnt);
            chunk c;
            memset(&c, 0, sizeof c);
            c.n = end - start;
            c.tok = tok_p + start;
            c.seq = seq_p + start;
            c.pos = pos_p + start;
            c.slot = slot_p + start;
            c.tok_row = tok_row;
            c.want = want;
            for (int32_t j = start; j < end; j++) { /* rows: where each logits row goes */
                if (want_p[j]) {
                    rows[c.n_want] = out_row[perm[j]];
                    want[c.n_want++] = j - start;
                }
                done[seq_p[j]]++;
            }
            st = chunk_upload(m, kv, &c, row_of_seq, row_seq);
            if (st == TW_OK) st = chunk_run(m, kv, &c, logits, rows);
            start = end;
        }
    }
    if (st == TW_OK) {
        for (int32_t k = 0; k < n_order; k++) kv_seq_publish(kv, order[k]);
    } else {
        /* Undo: every sequence back to its length before the call (pages released). */
        tw_status keep = tw_errcode();
        char msg[512];
        snprintf(msg, sizeof msg, "%s", tw_errmsg());
        for (int32_t k = 0; k < n_touched; k++) tw_kv_seq_truncate(kv, order[k], old_len[order[k]]);
        tw_error(keep, "%s", msg);
        m->logit_rows = 0;
    }
    tw_free(scratch);
    return st;
}

/* ---- LoRA attachment (model.h) ---------------------------------------------------------- */

tw_status tw_model_set_lora(tw_model *m, const struct lora_set *s) {
    if (!m) return tw_error(TW_ERR_ARG, "lora: the model is NULL");
    if (!s) {
        tw_buffer_free(m->lora_act);
        m->lora_act = NULL;
        m->lora = NULL;
        return TW_OK;
    }
    if (lora_set_backend(s) != m->be)
        return tw_error(TW_ERR_ARG, "%s: the adapter set lives on another backend than the model",
                        m->path);
    lora_base mb;
    TRY(lora_base_from_model(m, &mb));
    const lora_base *sb = lora_set_base(s);
    if (strcmp(sb->arch, mb.arch) != 0)
        return tw_error(TW_ERR_ARG, "%s: the adapter is for architecture %s, the model is %s",
                        m->path, sb->arch, mb.arch);
    const struct {
        const char *name;
        int32_t set, model;
    } f[] = {
        {"n_layer", sb->n_layer, mb.n_layer},       {"n_embd", sb->n_embd, mb.n_embd},
        {"n_head", sb->n_head, mb.n_head},          {"n_kv_head", sb->n_kv_head, mb.n_kv_head},
        {"head_dim", sb->head_dim, mb.head_dim},    {"n_ff", sb->n_ff, mb.n_ff},
        {"Q/K row order (1: llama.cpp's permuted GGUF order, 0: HF)", sb->qk_permuted,
         mb.qk_permuted},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].set != f[i].model)
            return tw_error(TW_ERR_ARG, "%s: the adapter was made for another model: %s %d, the "
                            "model's is %d", m->path, f[i].name, (int)f[i].set, (int)f[i].model);
    int64_t max_r = 1, max_out = 1;
    for (int32_t i = 0; i < lora_set_n_adapters(s); i++) {
        const lora_adapter *a = lora_set_adapter(s, i);
        if (a->rank > max_r) max_r = a->rank;
        if (a->out > max_out) max_out = a->out;
    }
    size_t T = (size_t)m->params.max_batch_tokens;
    size_t la = (T * (size_t)max_r * 4 + 255) & ~(size_t)255;
    tw_buffer *buf = NULL;
    if (tw_buffer_alloc(m->be, la + T * (size_t)max_out * 4, &buf) != TW_OK)
        return tw_error_wrap("%s: LoRA scratch for %zu tokens", m->path, T);
    tw_buffer_free(m->lora_act);
    m->lora_act = buf;
    m->lora_lb_off = la;
    m->lora = s;
    return TW_OK;
}

const struct lora_set *tw_model_get_lora(const tw_model *m) { return m ? m->lora : NULL; }
