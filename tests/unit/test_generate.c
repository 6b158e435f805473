/* test_generate.c: the generation engine.
 *
 * Text release (tw_gen_text) on chosen bytes: characters split across pushes come out whole,
 * bytes that cannot form a character come out as U+FFFD, a tail that may start a stop string
 * waits, the earliest stop string cuts the text, nothing comes after it.
 *
 * The engine on the tiny random GPT-2 of tests/data/gpt2 (f32 weights, f32 KV cache): greedy
 * continuations equal the independent numpy ones of tiny-gpt2.golden.json (where numpy's
 * top-2 margin is far above the fp32 differences); the first token's log-probability is the
 * log-softmax of numpy's logits; the golden prompts run together in one engine, submitted at
 * once or one after another between steps, in prompt chunks of 3 tokens, give exactly the
 * tokens each gives alone; a repeated prompt reuses the KV pages of the first; the event texts
 * are the token pieces, made valid UTF-8; every stop reason; cancelling; a KV cache too small
 * for two requests ends the younger; bad requests are refused. */
#include <math.h>

#include "generate.h"
#include "golden.h"

/* ---- tw_gen_text ------------------------------------------------------------------------- */

static tw_sb text_out; /* what the last push or flush released */

/* Pushes s and returns what came out (valid until the next call); *stopped as push sets it. */
static const char *push(tw_gen_text *t, const char *s, int *stopped) {
    tw_sb_clear(&text_out);
    CHECK_EQ_INT(tw_gen_text_push(t, s, strlen(s), &text_out, stopped), TW_OK);
    return tw_sb_str(&text_out);
}

static const char *flush(tw_gen_text *t) {
    tw_sb_clear(&text_out);
    CHECK_EQ_INT(tw_gen_text_flush(t, &text_out), TW_OK);
    return tw_sb_str(&text_out);
}

static void test_text_utf8(void) {
    tw_gen_text t;
    int st;
    CHECK_EQ_INT(tw_gen_text_init(&t, NULL, 0), TW_OK);
    CHECK_EQ_STR(push(&t, "ab", &st), "ab");
    CHECK_EQ_STR(push(&t, "\xC3", &st), ""); /* the first byte of é waits */
    CHECK_EQ_STR(push(&t, "\xA9x", &st), "\xC3\xA9x");
    CHECK_EQ_STR(push(&t, "\xF0", &st), ""); /* 😀 in four pushes */
    CHECK_EQ_STR(push(&t, "\x9F", &st), "");
    CHECK_EQ_STR(push(&t, "\x98", &st), "");
    CHECK_EQ_STR(push(&t, "\x80", &st), "\xF0\x9F\x98\x80");
    CHECK_EQ_STR(push(&t, "\xC3", &st), "");
    CHECK_EQ_STR(push(&t, "A", &st), "\xEF\xBF\xBD" "A"); /* a lead byte without its tail */
    CHECK_EQ_STR(push(&t, "\x80", &st), "\xEF\xBF\xBD");     /* a lone continuation byte */
    CHECK_EQ_STR(push(&t, "\xFF", &st), "\xEF\xBF\xBD");     /* never UTF-8 */
    CHECK_EQ_STR(push(&t, "\xE2\x82", &st), "");
    CHECK_EQ_STR(flush(&t), "\xEF\xBF\xBD\xEF\xBF\xBD"); /* unfinished at the end: each byte */
    CHECK_EQ_STR(flush(&t), "");
    CHECK_EQ_INT(st, 0);
    tw_gen_text_free(&t);
}

static void test_text_stop(void) {
    tw_gen_text t;
    int st;
    const char *stops[] = {"END", "###"};
    CHECK_EQ_INT(tw_gen_text_init(&t, stops, 2), TW_OK);
    CHECK_EQ_STR(push(&t, "Hello E", &st), "Hello "); /* "E" may start END */
    CHECK_EQ_STR(push(&t, "N", &st), "");
    CHECK_EQ_INT(st, 0);
    CHECK_EQ_STR(push(&t, "D and more", &st), "");
    CHECK_EQ_INT(st, 1);
    CHECK_EQ_STR(push(&t, "x", &st), ""); /* nothing after a stop */
    CHECK_EQ_INT(st, 1);
    CHECK_EQ_STR(flush(&t), "");
    tw_gen_text_free(&t);

    CHECK_EQ_INT(tw_gen_text_init(&t, stops, 2), TW_OK);
    CHECK_EQ_STR(push(&t, "a#", &st), "a");
    CHECK_EQ_STR(push(&t, "#x", &st), "##x"); /* a false start is released */
    CHECK_EQ_STR(push(&t, "E", &st), "");
    CHECK_EQ_STR(flush(&t), "E"); /* held text at the end is text */
    tw_gen_text_free(&t);

    const char *two[] = {"bc", "abcd"}; /* the earliest occurrence wins, whichever string */
    CHECK_EQ_INT(tw_gen_text_init(&t, two, 2), TW_OK);
    CHECK_EQ_STR(push(&t, "xabcd", &st), "x");
    CHECK_EQ_INT(st, 1);
    tw_gen_text_free(&t);

    const char *e_acute[] = {"\xC3\xA9"};
    CHECK_EQ_INT(tw_gen_text_init(&t, e_acute, 1), TW_OK);
    CHECK_EQ_STR(push(&t, "caf\xC3", &st), "caf");
    CHECK_EQ_STR(push(&t, "\xA9!", &st), "");
    CHECK_EQ_INT(st, 1);
    tw_gen_text_free(&t);

    const char *tag[] = {"<end>"};
    CHECK_EQ_INT(tw_gen_text_init(&t, tag, 1), TW_OK);
    CHECK_EQ_STR(push(&t, "a<e", &st), "a");
    CHECK_EQ_STR(push(&t, "nd>b", &st), "");
    CHECK_EQ_INT(st, 1);
    tw_gen_text_free(&t);

    const char *empty[] = {"ok", ""};
    CHECK_EQ_INT(tw_gen_text_init(&t, empty, 2), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "stop string 1") != NULL);
    tw_gen_text_free(&t);
}

/* ---- the engine on the tiny GPT-2 --------------------------------------------------------- */

#define MAX_EVENTS 256

/* What the events of one request said. */
typedef struct {
    int32_t tokens[MAX_EVENTS];
    float logprobs[MAX_EVENTS];
    int n_tokens;
    int n_events;
    tw_sb text;
    tw_stop_reason stop;
    tw_gen_stats stats;
    int n_final;
    int texts_valid;  /* every event's text was valid UTF-8 */
    int cancel_after; /* > 0: ask to cancel at this many tokens */
    /* staggered submission: when this request has `submit_after` tokens, submit `later` */
    int submit_after;
    tw_gen *g;
    const tw_gen_request *later;
    int32_t later_id;
} record;

static void record_init(record *r) {
    memset(r, 0, sizeof *r);
    tw_sb_init(&r->text);
    r->texts_valid = 1;
    r->later_id = -1;
}

static int on_event(void *user, const tw_gen_event *ev) {
    record *r = user;
    r->n_events++;
    if (ev->token >= 0 && r->n_tokens < MAX_EVENTS) {
        r->logprobs[r->n_tokens] = ev->logprob;
        r->tokens[r->n_tokens++] = ev->token;
    }
    if (!tw_utf8_valid(ev->text, ev->n_text)) r->texts_valid = 0;
    tw_sb_append(&r->text, ev->text, ev->n_text);
    if (ev->stop != TW_STOP_NONE) {
        r->n_final++;
        r->stop = ev->stop;
        r->stats = *ev->stats;
        CHECK(ev->stats != NULL);
    } else {
        CHECK(ev->stats == NULL);
    }
    if (r->later && r->n_tokens == r->submit_after && r->later_id < 0)
        CHECK_EQ_INT(tw_gen_submit(r->g, r->later, &r->later_id), TW_OK);
    return r->cancel_after > 0 && r->n_tokens >= r->cancel_after;
}

typedef struct {
    tw_backend *be;
    tw_model *m;
    golden gold;
    const tw_json *cases; /* the f32 model's cases */
} fixture;

static int fixture_open(fixture *f) {
    memset(f, 0, sizeof *f);
    const char *data = test_env("TWIN_TEST_DATA");
    if (!data) return -1;
    tw_sb dir, path;
    tw_sb_init(&dir);
    tw_sb_init(&path);
    tw_sb_printf(&dir, "%s/gpt2", data);
    tw_sb_printf(&path, "%s/tiny-gpt2-f32.gguf", tw_sb_str(&dir));
    int rc = -1;
    if (golden_load(&f->gold, tw_sb_str(&dir), "tiny-gpt2.golden.json") == 0 &&
        tw_backend_open("cpu", &f->be) == TW_OK && tw_model_load(tw_sb_str(&path), f->be, NULL, &f->m) == TW_OK) {
        for (const tw_json *mj = tw_json_first(tw_json_get(f->gold.doc, "models")); mj; mj = tw_json_next(mj))
            if (!strcmp(tw_json_get_str(mj, "file", ""), "tiny-gpt2-f32.gguf")) f->cases = tw_json_get(mj, "cases");
        rc = f->cases ? 0 : -1;
    }
    if (rc) fprintf(stderr, "fixture %s: %s\n", tw_sb_str(&path), tw_errmsg());
    tw_sb_free(&dir);
    tw_sb_free(&path);
    return rc;
}

static void fixture_close(fixture *f) {
    tw_model_free(f->m);
    tw_backend_free(f->be);
    golden_free(&f->gold);
}

static tw_kv_cache *kv_new(fixture *f, int32_t n_pages, int32_t page_size, int32_t n_ctx) {
    tw_kv_params kp;
    tw_kv_params_default(&kp);
    kp.n_pages = n_pages;
    kp.page_size = page_size;
    kp.type = TW_DTYPE_F32;
    kp.n_ctx = n_ctx;
    tw_kv_cache *kv = NULL;
    CHECK_EQ_INT(tw_kv_cache_new_ex(f->m, &kp, &kv), TW_OK);
    return kv;
}

static tw_gen_request greedy_request(const int32_t *prompt, int32_t n, int32_t max_tokens, record *rec) {
    tw_gen_request q;
    memset(&q, 0, sizeof q);
    q.prompt = prompt;
    q.n_prompt = n;
    tw_sampler_params_default(&q.sampling);
    q.sampling.temperature = 0.0f;
    q.max_tokens = max_tokens;
    q.ignore_eos = 1;
    q.callback = on_event;
    q.user = rec;
    return q;
}

/* The golden cases with a greedy continuation: prompts, their greedy tokens, margins. */
#define MAX_CASES 8
typedef struct {
    int32_t *tokens, *greedy;
    int32_t n, n_greedy;
    double margin;
    const float *last_logits; /* numpy's logits of the last prompt position */
} gcase;

static int load_cases(fixture *f, gcase *c) {
    int n = 0;
    for (const tw_json *j = tw_json_first(f->cases); j && n < MAX_CASES; j = tw_json_next(j)) {
        if (!tw_json_get(j, "greedy")) continue;
        gcase *k = &c[n];
        k->tokens = golden_ints(tw_json_get(j, "tokens"), &k->n);
        k->greedy = golden_ints(tw_json_get(j, "greedy"), &k->n_greedy);
        k->margin = tw_json_get_num(j, "greedy_min_margin", 0);
        int64_t rows, cols;
        const float *lg = golden_block(&f->gold, tw_json_get(j, "logits"), &rows, &cols);
        k->last_logits = lg && rows == k->n ? lg + (size_t)(rows - 1) * (size_t)cols : NULL;
        if (k->tokens && k->greedy) n++;
    }
    return n;
}

static void free_cases(gcase *c, int n) {
    for (int i = 0; i < n; i++) {
        tw_free(c[i].tokens);
        tw_free(c[i].greedy);
    }
}

/* Runs each case alone in a fresh engine over kv; rec[i] gets its events. */
static void run_alone(fixture *f, tw_kv_cache *kv, const gcase *c, int n, int32_t max_tokens,
                      int32_t max_batch, record *rec) {
    for (int i = 0; i < n; i++) {
        tw_gen_params gp = {max_batch};
        tw_gen *g;
        CHECK_EQ_INT(tw_gen_new(f->m, kv, &gp, &g), TW_OK);
        tw_gen_request q = greedy_request(c[i].tokens, c[i].n, max_tokens, &rec[i]);
        int32_t id;
        CHECK_EQ_INT(tw_gen_submit(g, &q, &id), TW_OK);
        CHECK_EQ_INT(tw_gen_run(g), TW_OK);
        CHECK_EQ_INT(tw_gen_n_active(g), 0);
        tw_gen_free(g);
    }
}

static int same_tokens(const record *a, const record *b) {
    return a->n_tokens == b->n_tokens &&
           memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof a->tokens[0]) == 0;
}

/* The text the tokens stand for, made valid UTF-8 byte by byte (the test's own rule). */
static void expected_text(const tw_tokenizer *tok, const int32_t *ids, int n, tw_sb *out) {
    tw_sb raw;
    tw_sb_init(&raw);
    for (int i = 0; i < n; i++)
        if (tw_tokenizer_token_type(tok, ids[i]) != TW_TOKTYPE_CONTROL) tw_tokenizer_piece(tok, ids[i], &raw);
    for (size_t i = 0; i < raw.len;) {
        uint32_t cp;
        int l = tw_utf8_decode((const uint8_t *)raw.buf + i, raw.len - i, &cp);
        if (cp == TW_UTF8_INVALID) {
            tw_sb_puts(out, "\xEF\xBF\xBD");
            i++;
        } else {
            tw_sb_append(out, raw.buf + i, (size_t)l);
            i += (size_t)l;
        }
    }
    tw_sb_free(&raw);
}

static void test_greedy_golden(fixture *f) {
    gcase c[MAX_CASES];
    int n = load_cases(f, c);
    CHECK(n >= 4);
    tw_kv_cache *kv = kv_new(f, 32, 16, 0);
    record rec[MAX_CASES];
    for (int i = 0; i < n; i++) record_init(&rec[i]);
    run_alone(f, kv, c, n, 16, 0, rec);
    const tw_tokenizer *tok = tw_model_tokenizer(f->m);
    int checked = 0;
    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(rec[i].n_final, 1);
        CHECK_EQ_INT(rec[i].stop, TW_STOP_MAX_TOKENS);
        CHECK_EQ_INT(rec[i].stats.n_gen, 16);
        CHECK_EQ_INT(rec[i].stats.n_prompt, c[i].n);
        CHECK_EQ_INT(rec[i].n_events, 16); /* one per token; the last is the final one */
        /* fp32 kernels differ from numpy's float64 by ~1e-5 (test_gpt2_tiny); where numpy's
         * smallest top-2 gap along the continuation is 0.01 or more, the tokens must agree */
        if (c[i].margin >= 0.01) {
            CHECK_EQ_INT(rec[i].n_tokens, c[i].n_greedy);
            CHECK(memcmp(rec[i].tokens, c[i].greedy, (size_t)c[i].n_greedy * sizeof(int32_t)) == 0);
            checked++;
        }
        if (c[i].last_logits) { /* the first token's log-probability from numpy's logits */
            int32_t nv = tw_model_n_vocab(f->m);
            double mx = -INFINITY, z = 0;
            for (int32_t v = 0; v < nv; v++) mx = fmax(mx, c[i].last_logits[v]);
            for (int32_t v = 0; v < nv; v++) z += exp(c[i].last_logits[v] - mx);
            double want = c[i].last_logits[rec[i].tokens[0]] - mx - log(z);
            CHECK_NEAR(rec[i].logprobs[0], want, 1e-3); /* fp32 logits vs float64: ~1e-5 */
            CHECK(rec[i].logprobs[0] <= 0.0f);
        }
        tw_sb want;
        tw_sb_init(&want);
        expected_text(tok, rec[i].tokens, rec[i].n_tokens, &want);
        CHECK_EQ_INT(rec[i].text.len, want.len);
        CHECK(rec[i].text.len == want.len && memcmp(tw_sb_str(&rec[i].text), tw_sb_str(&want), want.len) == 0);
        CHECK(rec[i].texts_valid);
        tw_sb_free(&want);
        tw_sb_free(&rec[i].text);
    }
    CHECK(checked >= 4);
    tw_kv_cache_free(kv);
    free_cases(c, n);
}

static void test_batched_equals_alone(fixture *f) {
    gcase c[MAX_CASES];
    int n = load_cases(f, c);
    tw_kv_cache *kv = kv_new(f, 64, 16, 0);
    record alone[MAX_CASES], together[MAX_CASES], chunked[MAX_CASES], staggered[MAX_CASES];
    for (int i = 0; i < n; i++) {
        record_init(&alone[i]);
        record_init(&together[i]);
        record_init(&chunked[i]);
        record_init(&staggered[i]);
    }
    run_alone(f, kv, c, n, 20, 0, alone);

    /* all at once */
    tw_gen *g;
    CHECK_EQ_INT(tw_gen_new(f->m, kv, NULL, &g), TW_OK);
    tw_gen_request q[MAX_CASES];
    for (int i = 0; i < n; i++) {
        q[i] = greedy_request(c[i].tokens, c[i].n, 20, &together[i]);
        int32_t id;
        CHECK_EQ_INT(tw_gen_submit(g, &q[i], &id), TW_OK);
    }
    CHECK_EQ_INT(tw_gen_n_active(g), n);
    CHECK_EQ_INT(tw_gen_step(g), TW_OK); /* one step: every prompt, one token each */
    for (int i = 0; i < n; i++) CHECK_EQ_INT(together[i].n_tokens, 1);
    CHECK_EQ_INT(tw_gen_run(g), TW_OK);
    tw_gen_free(g);

    /* prompt chunks of 3 tokens per step, shared with the generating requests */
    tw_gen_params small = {3};
    CHECK_EQ_INT(tw_gen_new(f->m, kv, &small, &g), TW_OK);
    for (int i = 0; i < n; i++) {
        q[i] = greedy_request(c[i].tokens, c[i].n, 20, &chunked[i]);
        int32_t id;
        CHECK_EQ_INT(tw_gen_submit(g, &q[i], &id), TW_OK);
    }
    CHECK_EQ_INT(tw_gen_run(g), TW_OK);
    tw_gen_free(g);

    /* continuous batching: request i+1 arrives when request i has 2 tokens */
    CHECK_EQ_INT(tw_gen_new(f->m, kv, NULL, &g), TW_OK);
    for (int i = 0; i < n; i++) {
        q[i] = greedy_request(c[i].tokens, c[i].n, 20, &staggered[i]);
        staggered[i].g = g;
        if (i + 1 < n) { /* request i submits request i + 1 from its callback */
            staggered[i].later = &q[i + 1];
            staggered[i].submit_after = 2;
        }
    }
    int32_t id;
    CHECK_EQ_INT(tw_gen_submit(g, &q[0], &id), TW_OK);
    CHECK_EQ_INT(tw_gen_run(g), TW_OK);
    tw_gen_free(g);

    for (int i = 0; i < n; i++) {
        CHECK_EQ_INT(alone[i].n_tokens, 20);
        CHECK(same_tokens(&alone[i], &together[i]));
        CHECK(same_tokens(&alone[i], &chunked[i]));
        CHECK(same_tokens(&alone[i], &staggered[i]));
        CHECK_EQ_INT(staggered[i].n_final, 1);
        if (i + 1 < n) CHECK(staggered[i].later_id > 0);
        CHECK_EQ_STR(tw_sb_str(&alone[i].text), tw_sb_str(&together[i].text));
        tw_sb_free(&alone[i].text);
        tw_sb_free(&together[i].text);
        tw_sb_free(&chunked[i].text);
        tw_sb_free(&staggered[i].text);
    }
    tw_kv_cache_free(kv);
    free_cases(c, n);
}

static void test_prefix_reuse(fixture *f) {
    gcase c[MAX_CASES];
    int n = load_cases(f, c);
    const gcase *big = NULL;
    for (int i = 0; i < n; i++)
        if (c[i].n >= 17 && (!big || c[i].n < big->n)) big = &c[i];
    CHECK(big != NULL);
    if (!big) {
        free_cases(c, n);
        return;
    }
    tw_kv_cache *kv = kv_new(f, 48, 4, 0);
    record a, b;
    record_init(&a);
    record_init(&b);
    run_alone(f, kv, big, 1, 8, 0, &a);
    run_alone(f, kv, big, 1, 8, 0, &b);
    CHECK_EQ_INT(a.stats.n_prompt_cached, 0);
    /* full pages of the prompt, leaving at least its last two tokens to compute (kv_cache.h) */
    CHECK_EQ_INT(b.stats.n_prompt_cached, (big->n - 2) / 4 * 4);
    CHECK(same_tokens(&a, &b));
    tw_kv_stats ks = tw_kv_cache_stats(kv);
    CHECK_EQ_INT(ks.n_seqs, 0); /* the engines freed their sequences */
    tw_sb_free(&a.text);
    tw_sb_free(&b.text);
    tw_kv_cache_free(kv);
    free_cases(c, n);
}

/* One request of case 0's prompt with the given changes; returns its record. */
static void run_one(fixture *f, tw_kv_cache *kv, tw_gen_request q, record *rec) {
    tw_gen *g;
    CHECK_EQ_INT(tw_gen_new(f->m, kv, NULL, &g), TW_OK);
    q.callback = on_event;
    q.user = rec;
    int32_t id;
    CHECK_EQ_INT(tw_gen_submit(g, &q, &id), TW_OK);
    CHECK_EQ_INT(tw_gen_run(g), TW_OK);
    tw_gen_free(g);
    CHECK_EQ_INT(rec->n_final, 1);
}

static void test_stop_reasons(fixture *f) {
    gcase c[MAX_CASES];
    int n = load_cases(f, c);
    const gcase *k = &c[1]; /* len5: 16 greedy tokens of several kinds */
    tw_kv_cache *kv = kv_new(f, 16, 16, 0);
    const tw_tokenizer *tok = tw_model_tokenizer(f->m);
    record base;
    record_init(&base);
    run_alone(f, kv, k, 1, 16, 0, &base);
    CHECK_EQ_INT(base.n_tokens, 16);

    /* an end token: the request's stop token ends it, with no text for it */
    record r1;
    record_init(&r1);
    tw_gen_request q = greedy_request(k->tokens, k->n, 16, &r1);
    int32_t stop_tok = base.tokens[3];
    int first = 0;
    while (base.tokens[first] != stop_tok) first++;
    q.stop_tokens = &stop_tok;
    q.n_stop_tokens = 1;
    run_one(f, kv, q, &r1);
    CHECK_EQ_INT(r1.stop, TW_STOP_EOS);
    CHECK_EQ_INT(r1.n_tokens, first + 1);
    CHECK_EQ_INT(r1.tokens[first], stop_tok);
    tw_sb want;
    tw_sb_init(&want);
    expected_text(tok, base.tokens, first, &want);
    CHECK_EQ_STR(tw_sb_str(&r1.text), tw_sb_str(&want));

    /* EOS ends it unless ignore_eos: the model's EOS made the stop token by its id */
    int32_t eos = tw_tokenizer_eos(tok);
    CHECK(eos >= 0);

    /* a stop string: the raw bytes of tokens 5 and 6; the text is everything before its first
     * occurrence in the token bytes */
    tw_sb raw;
    tw_sb_init(&raw);
    for (int i = 0; i < base.n_tokens; i++) tw_tokenizer_piece(tok, base.tokens[i], &raw);
    size_t off = 0;
    for (int i = 0; i < 5; i++) {
        tw_sb p;
        tw_sb_init(&p);
        tw_tokenizer_piece(tok, base.tokens[i], &p);
        off += p.len;
        tw_sb_free(&p);
    }
    char stop[8] = {0};
    memcpy(stop, raw.buf + off, 2);
    if (stop[0] == 0 || stop[1] == 0) stop[1] = 0; /* a NUL byte would shorten the C string */
    const char *stops[1] = {stop};
    const char *hit = memmem(raw.buf, raw.len, stop, strlen(stop));
    CHECK(hit != NULL && stop[0] != 0);
    record r2;
    record_init(&r2);
    q = greedy_request(k->tokens, k->n, 16, &r2);
    q.stop = stops;
    q.n_stop = 1;
    run_one(f, kv, q, &r2);
    CHECK_EQ_INT(r2.stop, TW_STOP_STRING);
    if (hit) {
        size_t cut = (size_t)(hit - raw.buf), acc = 0;
        int need = 0; /* tokens needed until the stop string is complete */
        while (acc < cut + strlen(stop)) {
            tw_sb p;
            tw_sb_init(&p);
            tw_tokenizer_piece(tok, base.tokens[need++], &p);
            acc += p.len;
            tw_sb_free(&p);
        }
        CHECK_EQ_INT(r2.n_tokens, need);
        tw_gen_text t;
        tw_sb out;
        tw_sb_init(&out);
        CHECK_EQ_INT(tw_gen_text_init(&t, NULL, 0), TW_OK);
        int st;
        tw_gen_text_push(&t, raw.buf, cut, &out, &st);
        tw_gen_text_flush(&t, &out);
        CHECK_EQ_INT(r2.text.len, out.len);
        CHECK_EQ_STR(tw_sb_str(&r2.text), tw_sb_str(&out));
        tw_gen_text_free(&t);
        tw_sb_free(&out);
    }

    /* max tokens */
    record r3;
    record_init(&r3);
    run_one(f, kv, greedy_request(k->tokens, k->n, 5, &r3), &r3);
    CHECK_EQ_INT(r3.stop, TW_STOP_MAX_TOKENS);
    CHECK_EQ_INT(r3.n_tokens, 5);
    CHECK(memcmp(r3.tokens, base.tokens, 5 * sizeof(int32_t)) == 0);

    /* a full context: n_ctx 9 with a 5-token prompt computes positions 0..8, so the tokens
     * sampled after positions 4..8 (five of them) are all there can be */
    tw_kv_cache *small = kv_new(f, 16, 16, 9);
    CHECK_EQ_INT(tw_kv_cache_n_ctx(small), 9);
    record r4;
    record_init(&r4);
    run_one(f, small, greedy_request(k->tokens, k->n, -1, &r4), &r4);
    CHECK_EQ_INT(r4.stop, TW_STOP_CONTEXT);
    CHECK_EQ_INT(r4.n_tokens, 5);
    CHECK(memcmp(r4.tokens, base.tokens, 5 * sizeof(int32_t)) == 0);

    /* the callback cancels after 3 tokens: a final event without a token follows */
    record r5;
    record_init(&r5);
    r5.cancel_after = 3;
    run_one(f, kv, greedy_request(k->tokens, k->n, 16, &r5), &r5);
    CHECK_EQ_INT(r5.stop, TW_STOP_CANCELLED);
    CHECK_EQ_INT(r5.n_tokens, 3);
    CHECK_EQ_INT(r5.n_events, 4);

    /* tw_gen_cancel between steps: the final event comes at once */
    record r6;
    record_init(&r6);
    tw_gen *g;
    CHECK_EQ_INT(tw_gen_new(f->m, kv, NULL, &g), TW_OK);
    q = greedy_request(k->tokens, k->n, 16, &r6);
    int32_t id;
    CHECK_EQ_INT(tw_gen_submit(g, &q, &id), TW_OK);
    CHECK_EQ_INT(tw_gen_step(g), TW_OK);
    CHECK_EQ_INT(tw_gen_step(g), TW_OK);
    tw_gen_cancel(g, id);
    CHECK_EQ_INT(r6.n_final, 1);
    CHECK_EQ_INT(r6.stop, TW_STOP_CANCELLED);
    CHECK_EQ_INT(tw_gen_n_active(g), 0);
    tw_gen_cancel(g, 12345); /* unknown: ignored */
    /* freeing an engine with a running request cancels it */
    record r7;
    record_init(&r7);
    q = greedy_request(k->tokens, k->n, 16, &r7);
    CHECK_EQ_INT(tw_gen_submit(g, &q, &id), TW_OK);
    CHECK_EQ_INT(tw_gen_step(g), TW_OK);
    tw_gen_free(g);
    CHECK_EQ_INT(r7.n_final, 1);
    CHECK_EQ_INT(r7.stop, TW_STOP_CANCELLED);
    CHECK_EQ_INT(tw_kv_cache_stats(kv).n_seqs, 0);

    CHECK_EQ_STR(tw_stop_reason_name(TW_STOP_EOS), "eos");
    CHECK_EQ_STR(tw_stop_reason_name(TW_STOP_STRING), "stop");
    CHECK_EQ_STR(tw_stop_reason_name(TW_STOP_MAX_TOKENS), "length");
    CHECK_EQ_STR(tw_stop_reason_name(TW_STOP_CONTEXT), "context");

    record *all[] = {&base, &r1, &r2, &r3, &r4, &r5, &r6, &r7};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tw_sb_free(&all[i]->text);
    tw_sb_free(&want);
    tw_sb_free(&raw);
    tw_kv_cache_free(small);
    tw_kv_cache_free(kv);
    free_cases(c, n);
}

static void test_cache_full(fixture *f) {
    /* 5 pages of 4 slots: two requests of 5 prompt + 10 new tokens need 2 x 4 pages; the
     * younger gives way (TW_STOP_CONTEXT) and the older finishes as if alone */
    gcase c[MAX_CASES];
    int n = load_cases(f, c);
    const gcase *k = &c[1];
    tw_kv_cache *kv = kv_new(f, 5, 4, 0);
    record alone, a, b;
    record_init(&alone);
    record_init(&a);
    record_init(&b);
    run_alone(f, kv, k, 1, 10, 0, &alone);
    tw_gen *g;
    CHECK_EQ_INT(tw_gen_new(f->m, kv, NULL, &g), TW_OK);
    tw_gen_request qa = greedy_request(k->tokens, k->n, 10, &a);
    tw_gen_request qb = greedy_request(k->tokens, k->n, 10, &b);
    int32_t ia, ib;
    CHECK_EQ_INT(tw_gen_submit(g, &qa, &ia), TW_OK);
    CHECK_EQ_INT(tw_gen_submit(g, &qb, &ib), TW_OK);
    CHECK_EQ_INT(tw_gen_run(g), TW_OK);
    tw_gen_free(g);
    CHECK_EQ_INT(a.stop, TW_STOP_MAX_TOKENS);
    CHECK(same_tokens(&a, &alone));
    CHECK_EQ_INT(b.stop, TW_STOP_CONTEXT);
    CHECK(b.n_tokens < 10);
    CHECK(memcmp(b.tokens, alone.tokens, (size_t)b.n_tokens * sizeof(int32_t)) == 0);
    CHECK_EQ_INT(tw_kv_cache_stats(kv).n_seqs, 0);
    tw_sb_free(&alone.text);
    tw_sb_free(&a.text);
    tw_sb_free(&b.text);
    tw_kv_cache_free(kv);
    free_cases(c, n);
}

static void test_bad_requests(fixture *f) {
    tw_kv_cache *kv = kv_new(f, 4, 4, 0); /* n_ctx 16 */
    tw_gen *g;
    CHECK_EQ_INT(tw_gen_new(f->m, kv, NULL, &g), TW_OK);
    int32_t prompt[16] = {1, 2, 3};
    record r;
    record_init(&r);
    int32_t id = -7;
    tw_gen_request q = greedy_request(prompt, 16, 4, &r);
    CHECK_EQ_INT(tw_gen_submit(g, &q, &id), TW_ERR_ARG);
    CHECK_EQ_STR(tw_errmsg(), "prompt has 16 tokens; the context holds 16");
    q = greedy_request(prompt, 0, 4, &r);
    CHECK_EQ_INT(tw_gen_submit(g, &q, &id), TW_ERR_ARG);
    q = greedy_request(prompt, 3, 0, &r);
    CHECK_EQ_INT(tw_gen_submit(g, &q, &id), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "max_tokens") != NULL);
    prompt[1] = 288;
    q = greedy_request(prompt, 3, 4, &r);
    CHECK_EQ_INT(tw_gen_submit(g, &q, &id), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "prompt token 1") != NULL);
    prompt[1] = 2;
    const char *stops[] = {""};
    q = greedy_request(prompt, 3, 4, &r);
    q.stop = stops;
    q.n_stop = 1;
    CHECK_EQ_INT(tw_gen_submit(g, &q, &id), TW_ERR_ARG);
    q = greedy_request(prompt, 3, 4, &r);
    q.sampling.top_p = 2.0f;
    CHECK_EQ_INT(tw_gen_submit(g, &q, &id), TW_ERR_ARG);
    CHECK_EQ_INT(id, -7);
    CHECK_EQ_INT(tw_gen_n_active(g), 0);
    CHECK_EQ_INT(tw_gen_step(g), TW_OK); /* nothing to do */
    CHECK_EQ_INT(r.n_events, 0);
    tw_gen_params bad = {-1};
    tw_gen *g2 = (tw_gen *)1;
    CHECK_EQ_INT(tw_gen_new(f->m, kv, &bad, &g2), TW_ERR_ARG);
    CHECK(g2 == NULL);
    tw_gen_free(g);
    tw_gen_free(NULL);
    tw_kv_cache_free(kv);
}

static fixture fx;
static void test_engine_greedy_golden(void) { test_greedy_golden(&fx); }
static void test_engine_batched_equals_alone(void) { test_batched_equals_alone(&fx); }
static void test_engine_prefix_reuse(void) { test_prefix_reuse(&fx); }
static void test_engine_stop_reasons(void) { test_stop_reasons(&fx); }
static void test_engine_cache_full(void) { test_cache_full(&fx); }
static void test_engine_bad_requests(void) { test_bad_requests(&fx); }

int main(void) {
    RUN(test_text_utf8);
    RUN(test_text_stop);
    tw_sb_free(&text_out);
    if (fixture_open(&fx) != 0) {
        fixture_close(&fx);
        fprintf(stderr, "FAIL: the tiny GPT-2 fixture (TWIN_TEST_DATA/gpt2) did not load\n");
        return 1;
    }
    RUN(test_engine_greedy_golden);
    RUN(test_engine_batched_equals_alone);
    RUN(test_engine_prefix_reuse);
    RUN(test_engine_stop_reasons);
    RUN(test_engine_cache_full);
    RUN(test_engine_bad_requests);
    fixture_close(&fx);
    tw_sb_free(&text_out);
    TEST_DONE();
}
