/* test_tokenizer_golden.c: twin's tokenizers against HF tokenizers on the real models.
 *
 * tests/data/tokenizer/{smollm2-135m,minilm-l6}.golden.jsonl hold the ids HF tokenizers gives
 * for ~70 texts (tools/gen_tokenizer_golden.py): "ids" without special tokens (flags 0) and
 * "ids_special" with them added and parsed (TW_TOK_ADD_SPECIAL | TW_TOK_PARSE_SPECIAL). Every
 * id must match; SmolLM2's ids must also decode back to the text. The models come from
 * $TWIN_MODELS (twin model fetch); the test skips (77) when neither is there. */
#include "test.h"
#include "tok_golden.h"
#include "tokenizer.h"

typedef struct {
    const char *model;
    tw_tokenizer *t;
    int round_trip;
    int rows, bad;
} golden_ctx;

static int same_ids(const tw_tokens *got, const tw_json *want) {
    if (!want || got->n != tw_json_size(want)) return 0;
    size_t i = 0;
    for (const tw_json *x = tw_json_first(want); x; x = tw_json_next(x), i++)
        if (got->ids[i] != (int32_t)tw_json_num(x, -1)) return 0;
    return 1;
}

static void report(const golden_ctx *g, const char *name, const char *what, const tw_tokens *got,
                   const tw_json *want) {
    fprintf(stderr, "  %s: %s: %s differs\n    want", g->model, name, what);
    int k = 0;
    for (const tw_json *x = want ? tw_json_first(want) : NULL; x && k < 40; x = tw_json_next(x), k++)
        fprintf(stderr, " %d", (int)tw_json_num(x, -1));
    fprintf(stderr, "\n    got ");
    for (size_t i = 0; i < got->n && i < 40; i++) fprintf(stderr, " %d", got->ids[i]);
    fputc('\n', stderr);
}

static void golden_row(const tw_json *row, void *ctx) {
    golden_ctx *g = ctx;
    size_t len;
    char *text = golden_text(row, &len);
    const char *name = tw_json_get_str(row, "name", "?");
    g->rows++;
    if (!text) {
        g->bad++;
        return;
    }
    static const struct {
        const char *field;
        unsigned flags;
    } variants[] = {{"ids", 0}, {"ids_special", TW_TOK_ADD_SPECIAL | TW_TOK_PARSE_SPECIAL}};
    for (size_t v = 0; v < 2; v++) {
        tw_tokens got;
        tw_tokens_init(&got);
        tw_status st = tw_tokenizer_encode(g->t, text, len, variants[v].flags, &got);
        const tw_json *want = tw_json_get(row, variants[v].field);
        if (st != TW_OK || !same_ids(&got, want)) {
            if (++g->bad <= 10) report(g, name, variants[v].field, &got, want);
        } else if (v == 0 && g->round_trip) {
            tw_sb sb;
            tw_sb_init(&sb);
            int ok = tw_tokenizer_decode(g->t, got.ids, got.n, 0, &sb) == TW_OK && sb.len == len &&
                     (len == 0 || memcmp(sb.buf, text, len) == 0);
            if (!ok && ++g->bad <= 10) fprintf(stderr, "  %s: %s: decode differs\n", g->model, name);
            tw_sb_free(&sb);
        }
        tw_tokens_free(&got);
    }
    tw_free(text);
}

/* Returns 1 when the model was there and tested. */
static int run_model(const char *models, const char *sub, const char *golden, int round_trip) {
    const char *data = test_env("TWIN_TEST_DATA");
    tw_sb mp, gp;
    tw_sb_init(&mp);
    tw_sb_init(&gp);
    tw_sb_printf(&mp, "%s/%s", models, sub);
    tw_sb_printf(&gp, "%s/tokenizer/%s", data ? data : ".", golden);
    if (!tw_path_exists(tw_sb_str(&mp))) {
        fprintf(stderr, "%s: absent, not tested\n", tw_sb_str(&mp));
        tw_sb_free(&mp);
        tw_sb_free(&gp);
        return 0;
    }
    golden_ctx g = {sub, tw_tokenizer_load(tw_sb_str(&mp)), round_trip, 0, 0};
    if (!g.t) fprintf(stderr, "%s: %s\n", tw_sb_str(&mp), tw_errmsg());
    CHECK(g.t != NULL);
    if (g.t) {
        int rows = golden_each_row(tw_sb_str(&gp), golden_row, &g);
        fprintf(stderr, "%s: %d/%d texts match HF tokenizers\n", sub, g.rows - g.bad, g.rows);
        CHECK(rows > 0);
        CHECK_EQ_INT(g.bad, 0);
    }
    tw_tokenizer_free(g.t);
    tw_sb_free(&mp);
    tw_sb_free(&gp);
    return 1;
}

int main(void) {
    const char *models = test_env("TWIN_MODELS");
    if (!models) TEST_SKIP("TWIN_MODELS is not set");
    int tested = run_model(models, "smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf",
                           "smollm2-135m.golden.jsonl", 1);
    tested += run_model(models, "minilm-l6", "minilm-l6.golden.jsonl", 0);
    if (!tested) TEST_SKIP("no models in %s (twin model fetch)", models);
    TEST_DONE();
}
