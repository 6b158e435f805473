/* test_lora_smollm2: LoRA on the real SmolLM2-135M GGUF (skipped without it, exit 77).
 *   - the base as the loaded model describes it equals the one read from the GGUF alone
 *     (30 layers, 576 wide, 9/3 heads of 64, 1536 MLP, Q/K in llama.cpp's order);
 *   - an adapter on all seven modules at rank 8 has 30 * 8 * 10176 = 2,442,240 parameters;
 *   - merging a zero-B adapter (a fresh one) gives a model whose logits equal the base's: the
 *     Q4_1 weights go through dequantize + requantize, which ggml's rounding keeps exact for
 *     values already on a Q4_1 grid (within 1e-4 of the logits if not);
 *   - merging a trained-looking adapter (random B) changes the logits, and the merged model
 *     still runs (finite logits). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "golden.h"
#include "kv_cache.h"
#include "lora.h"
#include "test.h"

static int logits_of(const char *path, tw_backend *be, const int32_t *toks, int32_t n, float *out) {
    tw_model *m = NULL;
    if (tw_model_load(path, be, NULL, &m)) return -1;
    tw_kv_cache *kv = NULL;
    int32_t seq;
    int rc = tw_kv_cache_new(m, 8, 0, &kv) || run_prompt(m, kv, toks, n, 0, out, &seq) ? -1 : 0;
    tw_kv_cache_free(kv);
    tw_model_free(m);
    return rc;
}

int main(void) {
    const char *models = test_env("TWIN_MODELS");
    char path[1024];
    snprintf(path, sizeof path, "%s/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf",
             models ? models : "twin-data/models");
    if (!tw_path_exists(path)) TEST_SKIP("%s not found (twin model fetch smollm2-135m)", path);
    tw_backend *be;
    CHECK(tw_backend_open("cpu", &be) == TW_OK);
    tw_model *m = NULL;
    CHECK(tw_model_load(path, be, NULL, &m) == TW_OK);
    if (!m) return 1;
    lora_base bm, bg;
    CHECK(lora_base_from_model(m, &bm) == TW_OK);
    CHECK(lora_base_from_gguf(path, &bg) == TW_OK);
    CHECK_EQ_STR(bm.arch, "llama");
    CHECK(bm.n_layer == 30 && bm.n_embd == 576 && bm.n_head == 9 && bm.n_kv_head == 3 &&
          bm.head_dim == 64 && bm.n_ff == 1536 && bm.qk_permuted == 1);
    CHECK(bg.n_layer == bm.n_layer && bg.n_embd == bm.n_embd && bg.n_head == bm.n_head &&
          bg.n_kv_head == bm.n_kv_head && bg.head_dim == bm.head_dim && bg.n_ff == bm.n_ff &&
          bg.qk_permuted == bm.qk_permuted);
    int32_t nv = tw_model_n_vocab(m);
    tw_model_free(m);

    lora_config c;
    lora_config_default(&c);
    c.targets = LORA_ALL_MODULES;
    lora_set *s = NULL;
    CHECK(lora_set_new(be, &bg, &c, &s) == TW_OK);
    if (!s) return 1;
    CHECK_EQ_INT(lora_set_n_params(s), 2442240);
    lora_set_free(s);

    /* merge q and v only (the merged copy stays small) */
    c.targets = (1u << LORA_Q) | (1u << LORA_V);
    CHECK(lora_set_new(be, &bg, &c, &s) == TW_OK);
    const char *t = getenv("TMPDIR");
    char out[512];
    snprintf(out, sizeof out, "%s/test_lora_smollm2.%d.gguf", t && *t ? t : "/tmp", (int)getpid());
    int32_t toks[6] = {1, 504, 3458, 282, 4195, 314};
    float *base = malloc((size_t)nv * sizeof(float)), *mer = malloc((size_t)nv * sizeof(float));
    CHECK(logits_of(path, be, toks, 6, base) == 0);
    CHECK(lora_merge_gguf(path, s, out, TW_DTYPE_COUNT) == TW_OK);
    CHECK(logits_of(out, be, toks, 6, mer) == 0);
    double d = max_abs_diff(base, mer, nv);
    fprintf(stderr, "zero-B merge: max |logit diff| %g\n", d);
    CHECK(d <= 1e-4);
    /* random B: the logits move */
    size_t nf = lora_set_n_floats(s);
    float *h = malloc(nf * sizeof(float));
    lora_set_download(s, LORA_PARAM, h);
    uint64_t r = 1;
    for (int32_t i = 0; i < lora_set_n_adapters(s); i++) {
        const lora_adapter *a = lora_set_adapter(s, i);
        for (int64_t k = 0; k < a->out * a->rank; k++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            h[a->b_off + k] = (float)((double)(r >> 11) * 0x1.0p-53 - 0.5) * 0.02f;
        }
    }
    lora_set_upload(s, LORA_PARAM, h);
    CHECK(lora_merge_gguf(path, s, out, TW_DTYPE_COUNT) == TW_OK);
    CHECK(logits_of(out, be, toks, 6, mer) == 0);
    d = max_abs_diff(base, mer, nv);
    int finite = 1;
    for (int32_t i = 0; i < nv; i++) finite &= isfinite(mer[i]);
    fprintf(stderr, "random-B merge: max |logit diff| %g\n", d);
    CHECK(finite && d > 1e-2);
    remove(out);
    free(h), free(base), free(mer);
    lora_set_free(s);
    tw_backend_free(be);
    TEST_DONE();
}
