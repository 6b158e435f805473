/* golden.h: reading the "twin golden logits" files that tools/gen_gpt2_golden.py and
 * tools/gen_llama_golden.py write (a JSON index + a TWGL .bin of f32 blocks; the format is
 * described at the top of those scripts), and the helpers the model tests share: running a
 * token list through a model, comparing logits, greedy decoding. */
#ifndef TWIN_TEST_GOLDEN_H
#define TWIN_TEST_GOLDEN_H

#include <stdint.h>
#include <string.h>

#include "json.h"
#include "kv_cache.h"
#include "model.h"
#include "test.h"

typedef struct {
    tw_json *doc;
    char *bin;
    size_t bin_len;
    const float *values; /* first f32 after the header */
    size_t n_values;
} golden;

/* Loads dir/json_name and the .bin it names. 0 on success; 1 (message printed) otherwise. */
static inline int golden_load(golden *g, const char *dir, const char *json_name) {
    memset(g, 0, sizeof *g);
    tw_sb path;
    tw_sb_init(&path);
    tw_sb_printf(&path, "%s/%s", dir, json_name);
    g->doc = tw_json_parse_file(tw_sb_str(&path));
    if (!g->doc) {
        fprintf(stderr, "golden: %s\n", tw_errmsg());
        tw_sb_free(&path);
        return 1;
    }
    const char *bin = tw_json_get_str(g->doc, "bin", NULL);
    if (!bin || strcmp(tw_json_get_str(g->doc, "format", ""), "twin-golden-logits-1") != 0) {
        fprintf(stderr, "golden: %s: not a twin-golden-logits-1 index\n", tw_sb_str(&path));
        tw_sb_free(&path);
        return 1;
    }
    tw_sb_clear(&path);
    tw_sb_printf(&path, "%s/%s", dir, bin);
    if (tw_file_read(tw_sb_str(&path), &g->bin, &g->bin_len) != TW_OK) {
        fprintf(stderr, "golden: %s\n", tw_errmsg());
        tw_sb_free(&path);
        return 1;
    }
    uint32_t h[4] = {0, 0, 0, 0};
    if (g->bin_len >= 16) memcpy(h, g->bin, 16);
    if (g->bin_len < 16 || memcmp(g->bin, "TWGL", 4) != 0 || h[1] != 1 || h[2] != 16 ||
        (size_t)h[3] != (g->bin_len - 16) / 4) {
        fprintf(stderr, "golden: %s: bad TWGL header\n", tw_sb_str(&path));
        tw_sb_free(&path);
        return 1;
    }
    tw_sb_free(&path);
    g->values = (const float *)(const void *)(g->bin + 16);
    g->n_values = h[3];
    return 0;
}

static inline void golden_free(golden *g) {
    tw_json_free(g->doc);
    tw_free(g->bin);
    memset(g, 0, sizeof *g);
}

/* The f32 block that a {"offset", "rows", "cols"} object names; NULL when out of range. */
static inline const float *golden_block(const golden *g, const tw_json *blk, int64_t *rows, int64_t *cols) {
    double off = tw_json_get_num(blk, "offset", -1);
    *rows = (int64_t)tw_json_get_num(blk, "rows", -1);
    *cols = (int64_t)tw_json_get_num(blk, "cols", -1);
    if (off < 16 || *rows < 1 || *cols < 1 || ((int64_t)off - 16) % 4) return NULL;
    size_t first = (size_t)((int64_t)off - 16) / 4;
    if (first + (size_t)(*rows * *cols) > g->n_values) return NULL;
    return g->values + first;
}

/* An array of integers as int32 (tw_malloc'd, *n entries); NULL when not an array. */
static inline int32_t *golden_ints(const tw_json *arr, int32_t *n) {
    *n = 0;
    if (!tw_json_is_array(arr)) return NULL;
    int32_t *v = tw_malloc((tw_json_size(arr) + 1) * sizeof *v);
    if (!v) return NULL;
    for (const tw_json *e = tw_json_first(arr); e; e = tw_json_next(e)) v[(*n)++] = (int32_t)tw_json_num(e, -1);
    return v;
}

/* Largest |a - b| over n values, and the first index where the argmax differs. */
static inline double max_abs_diff(const float *a, const float *b, int64_t n) {
    double d = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d)) d = e; /* NaN propagates as the largest */
    }
    return d;
}

static inline int32_t argmax_f(const float *x, int64_t n) {
    int32_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best]) best = (int32_t)i;
    return best;
}

/* The k best ids of x, best first (ties: lower id first). out holds k. */
static inline void topk_ids(const float *x, int64_t n, int k, int32_t *out) {
    for (int j = 0; j < k; j++) {
        int32_t best = -1;
        for (int64_t i = 0; i < n; i++) {
            int taken = 0;
            for (int t = 0; t < j; t++) taken |= out[t] == (int32_t)i;
            if (taken) continue;
            if (best < 0 || x[i] > x[best]) best = (int32_t)i;
        }
        out[j] = best;
    }
}

/* Runs tokens[0..n) as one new sequence of kv; writes the logits of every position
 * (want_all) or of the last one only into logits. Returns the status; *seq_out the sequence
 * (left live for continuing, or -1 on failure). */
static inline tw_status run_prompt(tw_model *m, tw_kv_cache *kv, const int32_t *tokens, int32_t n,
                            int want_all, float *logits, int32_t *seq_out) {
    int32_t seq = -1;
    *seq_out = -1;
    tw_status st = tw_kv_seq_new(kv, &seq);
    if (st != TW_OK) return st;
    int32_t *seqs = tw_malloc((size_t)n * sizeof *seqs);
    uint8_t *want = tw_malloc((size_t)n);
    if (!seqs || !want) {
        tw_free(seqs);
        tw_free(want);
        return TW_ERR_NOMEM;
    }
    for (int32_t i = 0; i < n; i++) {
        seqs[i] = seq;
        want[i] = want_all || i == n - 1;
    }
    tw_batch b = {n, tokens, NULL, seqs, want};
    st = tw_model_forward(m, kv, &b, logits);
    tw_free(seqs);
    tw_free(want);
    if (st != TW_OK) {
        tw_kv_seq_free(kv, seq);
        return st;
    }
    *seq_out = seq;
    return TW_OK;
}

/* Greedy continuation of sequence seq (whose last logits are in logits, n_vocab floats):
 * n_new tokens into out, one forward of one token per step. */
static inline tw_status greedy_continue(tw_model *m, tw_kv_cache *kv, int32_t seq, float *logits,
                                 int32_t n_new, int32_t *out) {
    int32_t nv = tw_model_n_vocab(m);
    for (int32_t s = 0; s < n_new; s++) {
        int32_t t = argmax_f(logits, nv);
        out[s] = t;
        if (s == n_new - 1) break;
        tw_batch b = {1, &t, NULL, &seq, NULL};
        tw_status st = tw_model_forward(m, kv, &b, logits);
        if (st != TW_OK) return st;
    }
    return TW_OK;
}

#endif
