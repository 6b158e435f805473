/* test_llama_logits: SmolLM2-135M-Instruct Q4_1 against llama.cpp on the same file
 * (tests/data/llama/smollm2-135m.golden.*, written by tools/gen_llama_golden.py through
 * llama-cpp-python with one thread, f16 KV cache, no flash attention).
 *
 * For every prompt of the golden file:
 *   - twin's tokenizer gives llama.cpp's ids (parse_special as the case says);
 *   - the logits of the last prompt token: max |twin - llama.cpp| <= BOUND; the top-10 ids:
 *     every id of llama.cpp's top 10 that leads llama.cpp's 11th by more than 2 * BOUND is in
 *     twin's top 10, and every id of twin's top 10 is within 2 * BOUND of llama.cpp's 10th
 *     (the sets are also reported; they are identical on the committed data);
 *   - the 32-token greedy continuation (one token per forward, as llama.cpp did) is
 *     llama.cpp's up to its first end-of-sequence token, or up to a step where the two
 *     engines' choices are within the noise: there llama.cpp's token must be within BOUND of
 *     twin's best logit (then the texts legitimately part, and the comparison stops);
 *   - the longest prompt run in chunks of 64 tokens gives the same logits as in one pass.
 * Exit 77 when the model ($TWIN_MODELS/smollm2-135m/...) or the golden data is absent.
 *
 * BOUND, and why exact agreement is not expected. For a one-token prompt twin's logits are
 * llama.cpp's bit for bit (the matmuls quantize activations to Q8_1 with ggml's rounding and
 * sum in ggml's order). From the second position on, attention and rope are computed
 * differently (twin: fp32 Q and probabilities, fp64 rope angles; llama.cpp: Q and softmax
 * probabilities rounded to f16 for its f16 matmuls, fp32 iterated angles), and this model
 * amplifies any such difference: a value that moves by an ulp can land on the other side of a
 * Q8_1 rounding step, and 30 layers compound the flips. Measured on these prompts:
 *   the same numpy forward in float32 vs float64 (ggml's Q8_1 rounding emulated): 0.77;
 *   the same numpy forward without activation quantization, float32 vs float64: 0.003;
 *   llama.cpp against itself, flash attention on vs off: 0.49 .. 1.07, and its greedy
 *     continuations part at steps 14, 2, 30 and 4 of the capital, story, numbers and hello
 *     prompts (full agreement on the other three);
 *   twin vs llama.cpp (the line printed per case): 0.4 .. 1.2, parting at similar steps.
 * So BOUND is 2.0 (logits span 8 .. 34 here): above llama.cpp's own variation, far below what
 * a real error does (a wrong rope pairing moves logits by ~8, see test_model_hf). */
#include <stdint.h>
#include <stdlib.h>

#include "golden.h"

#define BOUND 2.0
#define N_GREEDY 32

static void check_case(tw_model *m, tw_model *mc, const golden *g, const tw_json *c, double *worst,
                       int *n_greedy_equal) {
    const char *name = tw_json_get_str(c, "name", "?");
    const char *prompt = tw_json_get_str(c, "prompt", "");
    int special = tw_json_get_bool(c, "parse_special", 0);
    int32_t n = 0, ng = 0, eos_at = (int32_t)tw_json_get_num(c, "eos_at", -1);
    int32_t *toks = golden_ints(tw_json_get(c, "tokens"), &n);
    int32_t *gre = golden_ints(tw_json_get(c, "greedy"), &ng);
    int32_t n10 = 0;
    int32_t *top10 = golden_ints(tw_json_get(c, "top10"), &n10);
    int64_t rows = 0, cols = 0;
    const float *ref = golden_block(g, tw_json_get(c, "logits"), &rows, &cols);
    const int32_t nv = tw_model_n_vocab(m);
    CHECK(toks && gre && top10 && ref && n > 0 && ng == N_GREEDY && n10 == 10 && rows == 1 && cols == nv);
    if (!toks || !gre || !top10 || !ref || n <= 0 || ng != N_GREEDY || n10 != 10 || rows != 1 || cols != nv)
        goto out;

    /* tokenizer */
    tw_tokens t;
    tw_tokens_init(&t);
    unsigned flags = TW_TOK_ADD_SPECIAL | (special ? TW_TOK_PARSE_SPECIAL : 0);
    CHECK_EQ_INT(tw_tokenizer_encode(tw_model_tokenizer(m), prompt, strlen(prompt), flags, &t), TW_OK);
    int same_ids = t.n == (size_t)n && memcmp(t.ids, toks, (size_t)n * sizeof *toks) == 0;
    if (!same_ids) fprintf(stderr, "%s: twin's tokens differ from llama.cpp's\n", name);
    CHECK(same_ids);
    tw_tokens_free(&t);

    /* last-token logits (llama.cpp's ids, so a tokenizer slip cannot hide a model error) */
    tw_kv_params kp;
    tw_kv_params_default(&kp);
    kp.n_pages = 128;
    tw_kv_cache *kv = NULL, *kvc = NULL;
    CHECK_EQ_INT(tw_kv_cache_new_ex(m, &kp, &kv), TW_OK);
    CHECK_EQ_INT(tw_kv_cache_new_ex(mc, &kp, &kvc), TW_OK);
    float *lg = tw_malloc((size_t)nv * sizeof *lg), *lc = tw_malloc((size_t)nv * sizeof *lc);
    int32_t seq = -1, seqc = -1;
    if (kv && kvc && lg && lc && run_prompt(m, kv, toks, n, 0, lg, &seq) == TW_OK) {
        double d = max_abs_diff(lg, ref, nv);
        if (d > *worst) *worst = d;
        int32_t mine[10], ref11[11];
        topk_ids(lg, nv, 10, mine);
        topk_ids(ref, nv, 11, ref11);
        int set_same = 1, set_ok = 1;
        for (int i = 0; i < 10; i++) {
            int found = 0, in_ref = 0;
            for (int j = 0; j < 10; j++) found |= mine[j] == top10[i], in_ref |= top10[j] == mine[i];
            set_same &= found;
            if (!found && ref[top10[i]] - ref[ref11[10]] > 2 * BOUND) set_ok = 0;
            if (!in_ref && ref[mine[i]] < ref[top10[9]] - 2 * BOUND) set_ok = 0;
        }
        CHECK_EQ_INT(ref11[0], top10[0]); /* the golden's own top list is its logits' */
        /* greedy, one token per forward */
        int32_t upto = eos_at >= 0 ? eos_at + 1 : N_GREEDY, agree = 0, parted_ok = 1;
        for (; agree < upto; agree++) {
            int32_t tk = argmax_f(lg, nv);
            if (tk != gre[agree]) {
                /* the engines part here: legitimate only if llama.cpp's token is a near tie */
                parted_ok = lg[gre[agree]] >= lg[tk] - BOUND;
                fprintf(stderr, "%-8s greedy parts at step %d: twin %d (%.3f), llama.cpp %d (%.3f under twin)\n",
                        name, (int)agree, (int)tk, (double)lg[tk], (int)gre[agree], (double)lg[gre[agree]]);
                break;
            }
            if (agree + 1 == upto) {
                agree++;
                break;
            }
            tw_batch b = {1, &tk, NULL, &seq, NULL};
            if (tw_model_forward(m, kv, &b, lg) != TW_OK) {
                fprintf(stderr, "%s: %s\n", name, tw_errmsg());
                test_failures++;
                break;
            }
        }
        fprintf(stderr, "%-8s %3d tokens: max|logit diff| %.4f (logits %.1f..%.1f), top-10 %s, "
                        "greedy agrees %d/%d (llama.cpp min margin %.3f)\n",
                name, (int)n, d, (double)ref[top10[9]], (double)ref[top10[0]],
                set_same ? "same set" : (set_ok ? "same up to near ties" : "DIFFERENT"),
                (int)agree, (int)upto, tw_json_get_num(c, "greedy_min_margin", 0));
        CHECK(d <= BOUND);
        CHECK(set_ok);
        CHECK(parted_ok);
        *n_greedy_equal += agree == upto;
        /* chunked prefill: same logits as one pass */
        if (run_prompt(mc, kvc, toks, n, 0, lc, &seqc) == TW_OK) {
            run_prompt(m, kv, toks, n, 0, lg, &seq) == TW_OK ? (void)0 : (void)test_failures++;
            CHECK(max_abs_diff(lg, lc, nv) == 0);
        } else {
            fprintf(stderr, "%s chunked: %s\n", name, tw_errmsg());
            test_failures++;
        }
    } else {
        fprintf(stderr, "%s: %s\n", name, tw_errmsg());
        test_failures++;
    }
    tw_free(lg);
    tw_free(lc);
    tw_kv_cache_free(kv);
    tw_kv_cache_free(kvc);
out:
    tw_free(toks);
    tw_free(gre);
    tw_free(top10);
}

int main(void) {
    const char *data = test_env("TWIN_TEST_DATA"), *models = test_env("TWIN_MODELS");
    if (!data || !models) TEST_SKIP("TWIN_TEST_DATA or TWIN_MODELS is not set");
    tw_sb path, gdir;
    tw_sb_init(&path);
    tw_sb_init(&gdir);
    tw_sb_printf(&path, "%s/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf", models);
    tw_sb_printf(&gdir, "%s/llama", data);
    tw_sb gjson;
    tw_sb_init(&gjson);
    tw_sb_printf(&gjson, "%s/smollm2-135m.golden.json", tw_sb_str(&gdir));
    if (!tw_path_exists(tw_sb_str(&path)) || !tw_path_exists(tw_sb_str(&gjson))) {
        fprintf(stderr, "SKIP: %s or %s is absent\n", tw_sb_str(&path), tw_sb_str(&gjson));
        return 77;
    }
    golden g;
    if (golden_load(&g, tw_sb_str(&gdir), "smollm2-135m.golden.json")) return 1;
    char hex[65];
    CHECK_EQ_INT(tw_sha256_file(tw_sb_str(&path), hex), TW_OK);
    const char *want = tw_json_get_str(tw_json_get(g.doc, "model"), "sha256", "");
    if (strcmp(hex, want) != 0) {
        fprintf(stderr, "%s: sha256 %s, the golden data was made from %s\n", tw_sb_str(&path), hex, want);
        return 1;
    }
    tw_backend *be = NULL;
    if (tw_backend_open("cpu", &be) != TW_OK) return 1;
    tw_model *m = NULL, *mc = NULL;
    tw_model_params p;
    tw_model_params_default(&p);
    CHECK_EQ_INT(tw_model_load(tw_sb_str(&path), be, &p, &m), TW_OK);
    p.max_batch_tokens = 64;
    CHECK_EQ_INT(tw_model_load(tw_sb_str(&path), be, &p, &mc), TW_OK);
    if (!m || !mc) {
        fprintf(stderr, "load: %s\n", tw_errmsg());
        return 1;
    }
    CHECK_EQ_INT(tw_model_n_vocab(m), (int64_t)tw_json_get_num(tw_json_get(g.doc, "model"), "n_vocab", -1));
    double worst = 0;
    int n_cases = 0, n_greedy = 0;
    for (const tw_json *c = tw_json_first(tw_json_get(g.doc, "cases")); c; c = tw_json_next(c)) {
        check_case(m, mc, &g, c, &worst, &n_greedy);
        n_cases++;
    }
    fprintf(stderr, "%d prompts: max |logit - llama.cpp| %.4f (bound %.2f), %d greedy continuations equal\n",
            n_cases, worst, BOUND, n_greedy);
    CHECK(n_cases >= 5);
    tw_model_free(m);
    tw_model_free(mc);
    tw_backend_free(be);
    golden_free(&g);
    tw_sb_free(&path);
    tw_sb_free(&gdir);
    tw_sb_free(&gjson);
    TEST_DONE();
}
