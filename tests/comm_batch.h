/* comm_batch.h: what the data-parallel tests share (tests/unit/test_comm.c,
 * tests/integration/test_comm_mpi_prog.c): seeded global batches laid out exactly as
 * ds_next_batch lays them out (dataset.c: rows, examples, pos, seg, targets), and a toy
 * model whose loss and gradient are a sum over tokens, to check comm.h's scaling rule: the
 * shares' scaled sums add up to the one-rank mean and gradient. */
#ifndef TWIN_COMM_BATCH_H
#define TWIN_COMM_BATCH_H

#include <math.h>
#include <string.h>

#include "comm.h"
#include "dataset.h"
#include "kernel_inputs.h"

/* A random global batch of n_examples examples (preference: n_examples/2 pairs, chosen then
 * rejected, each its own row; else with pack, examples share rows of up to max_len tokens),
 * lengths in [2, max_len], ids in [0, vocab), masks 1 on a random tail of each example, as
 * dataset.c's batch_add writes them. b from ds_batch_init; ds_batch_free frees it. 0 on
 * success. */
static inline int cb_batch_make(ds_batch *b, kin_rng *r, size_t n_examples, int preference,
                                int pack, size_t max_len, int vocab) {
    size_t lens_total = 0;
    size_t *lens = (size_t *)tw_malloc((n_examples ? n_examples : 1) * sizeof *lens);
    if (!lens) return -1;
    for (size_t e = 0; e < n_examples; e++) {
        lens[e] = 2 + (size_t)(kin_next(r) % (max_len - 1));
        lens_total += lens[e];
    }
    size_t cap_t = lens_total ? lens_total : 1, cap_e = n_examples + 1;
    b->tokens = (int32_t *)tw_malloc(cap_t * sizeof(int32_t));
    b->mask = (uint8_t *)tw_malloc(cap_t);
    b->targets = (int32_t *)tw_malloc(cap_t * sizeof(int32_t));
    b->pos = (int32_t *)tw_malloc(cap_t * sizeof(int32_t));
    b->seg = (int32_t *)tw_malloc(cap_t * sizeof(int32_t));
    b->row_start = (size_t *)tw_malloc(cap_e * sizeof(size_t));
    b->ex_start = (size_t *)tw_malloc(cap_e * sizeof(size_t));
    b->ex_index = (size_t *)tw_malloc(cap_e * sizeof(size_t));
    b->ex_side = (int8_t *)tw_malloc(cap_e);
    b->cap_t = cap_t;
    b->cap_r = b->cap_e = cap_e;
    if (!b->tokens || !b->mask || !b->targets || !b->pos || !b->seg || !b->row_start ||
        !b->ex_start || !b->ex_index || !b->ex_side) {
        tw_free(lens);
        return -1;
    }
    b->n_tokens = b->n_rows = b->n_examples = 0;
    size_t row_len = 0;
    for (size_t e = 0; e < n_examples; e++) {
        size_t n = lens[e], t0 = b->n_tokens;
        int new_row = preference || !pack || b->n_rows == 0 || row_len + n > max_len;
        if (new_row) b->row_start[b->n_rows++] = t0;
        row_len = new_row ? n : row_len + n;
        b->ex_start[e] = t0;
        b->ex_index[e] = preference ? e / 2 : e;
        b->ex_side[e] = (int8_t)(preference ? (int)(e % 2) : -1);
        size_t prompt = 1 + (size_t)(kin_next(r) % (n - 1)); /* mask 0 on [0, prompt) */
        for (size_t t = 0; t < n; t++) {
            b->tokens[t0 + t] = (int32_t)(kin_next(r) % (uint64_t)vocab);
            b->mask[t0 + t] = t >= prompt;
            b->pos[t0 + t] = (int32_t)t;
            b->seg[t0 + t] = (int32_t)e;
        }
        for (size_t t = 0; t < n; t++)
            b->targets[t0 + t] = t + 1 < n && b->mask[t0 + t + 1] ? b->tokens[t0 + t + 1] : -1;
        b->n_tokens += n;
        b->n_examples++;
    }
    b->row_start[b->n_rows] = b->n_tokens;
    b->ex_start[b->n_examples] = b->n_tokens;
    tw_free(lens);
    return 0;
}

/* The toy model: a bigram table W (V, V) of logits; token t predicts targets[t] with
 * softmax(W[tokens[t]]). Adds scale * d(sum of CE over b's loss tokens)/dW to grad (V, V), in
 * token order, and returns scale * (that sum), accumulated in double. */
static inline double cb_bigram_loss_grad(const ds_batch *b, const float *w, int vocab,
                                         double scale, float *grad) {
    double loss = 0.0;
    float p[256];
    TW_ASSERT(vocab <= 256);
    for (size_t t = 0; t < b->n_tokens; t++) {
        int32_t y = b->targets[t];
        if (y < 0) continue;
        const float *row = w + (size_t)b->tokens[t] * (size_t)vocab;
        float mx = row[0];
        for (int j = 1; j < vocab; j++) mx = row[j] > mx ? row[j] : mx;
        double z = 0.0;
        for (int j = 0; j < vocab; j++) z += exp((double)(row[j] - mx));
        for (int j = 0; j < vocab; j++) p[j] = (float)(exp((double)(row[j] - mx)) / z);
        loss += (log(z) + mx - row[y]) * scale;
        float *g = grad + (size_t)b->tokens[t] * (size_t)vocab;
        for (int j = 0; j < vocab; j++) g[j] += (float)scale * (p[j] - (j == y ? 1.0f : 0.0f));
    }
    return loss;
}

#endif
