/* test_batch_equivalence: sequences decoded together in ragged batches give exactly what each
 * gives alone. 8 different prompts; alone: one sequence per cache, prefill then greedy decode
 * one token per forward. Together, two schedules over one shared cache:
 *   "lockstep"   all 8 prompts prefilled in ONE batch (tokens of the 8 sequences interleaved),
 *                then every decode step is one batch of 8 tokens;
 *   "staggered"  sequence i joins at step i: its whole prompt rides in the same batch as the
 *                decode tokens of the sequences that started before it (continuous batching).
 * The greedy tokens must be identical. The logits are compared too: the CPU kernels compute
 * every output row with the same summation order whatever the number of rows in the call
 * (kernels.h: quantized matmuls are per-row integer block sums, attention is per token), so
 * they must be bit-identical; the test prints the largest difference it saw.
 *
 * Runs on the tiny GPT-2 of tests/data/gpt2 (f32 and q8_0) always, and on
 * SmolLM2-135M-Instruct Q4_1 from $TWIN_MODELS when it is there (exit 77 after the tiny part
 * when it is not). */
#include <stdint.h>
#include <stdlib.h>

#include "golden.h"

#define N_SEQ 8

static const char *const prompts[N_SEQ] = {
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def add(a, b):\n    return",
    "List three colours:",
    "The quick brown fox",
    "In 1969, the first humans",
    "Water boils at",
    "My favourite book is about a dragon who",
};

typedef struct {
    int32_t *prompt[N_SEQ];
    int32_t n_prompt[N_SEQ];
    int32_t n_new;
    int32_t *tokens[N_SEQ]; /* (n_new) greedy tokens */
    float *logits[N_SEQ];   /* (n_new, n_vocab): the logits each token was chosen from */
} run;

static void run_free(run *r) {
    for (int i = 0; i < N_SEQ; i++) {
        tw_free(r->tokens[i]);
        tw_free(r->logits[i]);
    }
}

static int run_init(run *r, const run *shape, int32_t nv) {
    memset(r, 0, sizeof *r);
    for (int i = 0; i < N_SEQ; i++) {
        r->prompt[i] = shape->prompt[i];
        r->n_prompt[i] = shape->n_prompt[i];
        r->tokens[i] = tw_calloc((size_t)shape->n_new, sizeof(int32_t));
        r->logits[i] = tw_calloc((size_t)shape->n_new * (size_t)nv, sizeof(float));
        if (!r->tokens[i] || !r->logits[i]) return 1;
    }
    r->n_new = shape->n_new;
    return 0;
}

static tw_kv_cache *new_cache(tw_model *m) {
    tw_kv_params p;
    tw_kv_params_default(&p);
    p.n_pages = 64;
    p.page_size = 16;
    tw_kv_cache *kv = NULL;
    if (tw_kv_cache_new_ex(m, &p, &kv) != TW_OK) fprintf(stderr, "kv: %s\n", tw_errmsg());
    return kv;
}

/* Each sequence alone in its own cache. */
static tw_status decode_alone(tw_model *m, run *r) {
    int32_t nv = tw_model_n_vocab(m);
    for (int i = 0; i < N_SEQ; i++) {
        tw_kv_cache *kv = new_cache(m);
        if (!kv) return TW_ERR_NOMEM;
        int32_t seq;
        float *lg = r->logits[i];
        tw_status st = run_prompt(m, kv, r->prompt[i], r->n_prompt[i], 0, lg, &seq);
        for (int32_t s = 0; s < r->n_new && st == TW_OK; s++) {
            float *cur = r->logits[i] + (size_t)s * nv;
            int32_t t = argmax_f(cur, nv);
            r->tokens[i][s] = t;
            if (s + 1 == r->n_new) break;
            tw_batch b = {1, &t, NULL, &seq, NULL};
            st = tw_model_forward(m, kv, &b, cur + nv);
        }
        tw_kv_cache_free(kv);
        if (st != TW_OK) return st;
    }
    return TW_OK;
}

/* All sequences in one cache. join[i]: the step at which sequence i's prompt is fed (0 for
 * all: lockstep). At each step, the batch holds the whole prompt of every sequence joining now
 * (interleaved token by token with the other joiners) and one decode token of every sequence
 * already running; every sequence's last token wants logits. */
static tw_status decode_together(tw_model *m, run *r, const int *join) {
    int32_t nv = tw_model_n_vocab(m);
    tw_kv_cache *kv = new_cache(m);
    if (!kv) return TW_ERR_NOMEM;
    int32_t seq[N_SEQ], done[N_SEQ], cap = 0;
    for (int i = 0; i < N_SEQ; i++) cap += r->n_prompt[i] + 1;
    int32_t *tok = tw_malloc((size_t)cap * sizeof *tok), *sq = tw_malloc((size_t)cap * sizeof *sq);
    uint8_t *want = tw_malloc((size_t)cap);
    float *lg = tw_malloc((size_t)N_SEQ * (size_t)nv * sizeof *lg);
    tw_status st = tok && sq && want && lg ? TW_OK : TW_ERR_NOMEM;
    for (int i = 0; i < N_SEQ && st == TW_OK; i++) {
        st = tw_kv_seq_new(kv, &seq[i]);
        done[i] = 0; /* tokens produced so far */
    }
    for (int step = 0; st == TW_OK; step++) {
        int32_t n = 0;
        /* joiners' prompts, interleaved */
        int32_t longest = 0;
        for (int i = 0; i < N_SEQ; i++)
            if (join[i] == step && r->n_prompt[i] > longest) longest = r->n_prompt[i];
        for (int32_t k = 0; k < longest; k++)
            for (int i = 0; i < N_SEQ; i++)
                if (join[i] == step && k < r->n_prompt[i]) {
                    tok[n] = r->prompt[i][k];
                    sq[n] = seq[i];
                    want[n++] = k == r->n_prompt[i] - 1;
                }
        /* running sequences' next tokens */
        for (int i = 0; i < N_SEQ; i++)
            if (join[i] < step && done[i] > 0 && done[i] < r->n_new) {
                tok[n] = r->tokens[i][done[i] - 1];
                sq[n] = seq[i];
                want[n++] = 1;
            }
        if (n == 0) {
            int all = 1;
            for (int i = 0; i < N_SEQ; i++) all &= done[i] == r->n_new;
            if (all) break;
            continue; /* nobody joins or runs at this step */
        }
        tw_batch b = {n, tok, NULL, sq, want};
        st = tw_model_forward(m, kv, &b, lg);
        /* logits rows come in batch order: map each wanted row back to its sequence */
        int32_t row = 0;
        for (int32_t j = 0; j < n && st == TW_OK; j++) {
            if (!want[j]) continue;
            int i = 0;
            while (seq[i] != sq[j]) i++;
            float *dst = r->logits[i] + (size_t)done[i] * nv;
            memcpy(dst, lg + (size_t)row * nv, (size_t)nv * sizeof *lg);
            r->tokens[i][done[i]] = argmax_f(dst, nv);
            done[i]++;
            row++;
        }
    }
    tw_free(tok);
    tw_free(sq);
    tw_free(want);
    tw_free(lg);
    tw_kv_cache_free(kv);
    return st;
}

static void compare(const char *what, const run *alone, const run *tog, int32_t nv) {
    double worst = 0;
    int same_tokens = 1;
    for (int i = 0; i < N_SEQ; i++) {
        if (memcmp(alone->tokens[i], tog->tokens[i], (size_t)alone->n_new * sizeof(int32_t)) != 0) {
            fprintf(stderr, "%s: sequence %d: tokens differ from its run alone\n", what, i);
            same_tokens = 0;
        }
        double d = max_abs_diff(alone->logits[i], tog->logits[i], (int64_t)alone->n_new * nv);
        if (d > worst) worst = d;
    }
    fprintf(stderr, "%s: %d sequences x %d tokens, tokens %s, max |logit diff| vs alone %.3g\n",
            what, N_SEQ, (int)alone->n_new, same_tokens ? "identical" : "DIFFER", worst);
    CHECK(same_tokens);
    CHECK(worst == 0);
}

static void check_model(const char *path, int32_t n_new, tw_backend *be) {
    tw_model *m = NULL;
    tw_model_params p;
    tw_model_params_default(&p);
    if (tw_model_load(path, be, &p, &m) != TW_OK) {
        fprintf(stderr, "load: %s\n", tw_errmsg());
        test_failures++;
        return;
    }
    int32_t nv = tw_model_n_vocab(m);
    run shape;
    memset(&shape, 0, sizeof shape);
    shape.n_new = n_new;
    tw_tokens toks[N_SEQ];
    for (int i = 0; i < N_SEQ; i++) {
        tw_tokens_init(&toks[i]);
        CHECK_EQ_INT(tw_tokenizer_encode(tw_model_tokenizer(m), prompts[i], strlen(prompts[i]), 0,
                                         &toks[i]), TW_OK);
        shape.prompt[i] = toks[i].ids;
        shape.n_prompt[i] = (int32_t)toks[i].n;
        CHECK(toks[i].n > 0);
    }
    run alone, lock, stag;
    static const int join_lock[N_SEQ] = {0, 0, 0, 0, 0, 0, 0, 0};
    static const int join_stag[N_SEQ] = {0, 1, 2, 3, 4, 5, 6, 7};
    if (run_init(&alone, &shape, nv) || run_init(&lock, &shape, nv) || run_init(&stag, &shape, nv)) {
        test_failures++;
    } else {
        CHECK_EQ_INT(decode_alone(m, &alone), TW_OK);
        CHECK_EQ_INT(decode_together(m, &lock, join_lock), TW_OK);
        CHECK_EQ_INT(decode_together(m, &stag, join_stag), TW_OK);
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        char what[256];
        snprintf(what, sizeof what, "%.200s lockstep", base);
        compare(what, &alone, &lock, nv);
        snprintf(what, sizeof what, "%.200s staggered", base);
        compare(what, &alone, &stag, nv);
    }
    run_free(&alone);
    run_free(&lock);
    run_free(&stag);
    for (int i = 0; i < N_SEQ; i++) tw_tokens_free(&toks[i]);
    tw_model_free(m);
}

int main(void) {
    tw_backend *be = NULL;
    if (tw_backend_open("cpu", &be) != TW_OK) {
        fprintf(stderr, "cpu backend: %s\n", tw_errmsg());
        return 1;
    }
    const char *data = test_env("TWIN_TEST_DATA");
    tw_sb path;
    tw_sb_init(&path);
    if (data) {
        /* 64 learned positions: the longest prompt (~45 byte tokens) + 16 new ones fit. */
        tw_sb_printf(&path, "%s/gpt2/tiny-gpt2-f32.gguf", data);
        check_model(tw_sb_str(&path), 16, be);
        tw_sb_clear(&path);
        tw_sb_printf(&path, "%s/gpt2/tiny-gpt2-q8_0.gguf", data);
        check_model(tw_sb_str(&path), 16, be);
    }
    const char *models = test_env("TWIN_MODELS");
    int skipped = 1;
    if (models) {
        tw_sb_clear(&path);
        tw_sb_printf(&path, "%s/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf", models);
        if (tw_path_exists(tw_sb_str(&path))) {
            check_model(tw_sb_str(&path), 32, be);
            skipped = 0;
        }
    }
    tw_sb_free(&path);
    tw_backend_free(be);
    if (test_failures) return 1;
    if (skipped) TEST_SKIP("SmolLM2-135M-Instruct.Q4_1.gguf not in $TWIN_MODELS/smollm2-135m (the tiny GPT-2 part passed)");
    return 0;
}
