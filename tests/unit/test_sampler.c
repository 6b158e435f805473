/* test_sampler.c: the sampling chain on tiny distributions with exact expectations: the RNG
 * against independently computed values, top-k/top-p/min-p keep exactly the expected ids,
 * greedy ties, llama.cpp repetition penalty and OpenAI presence/frequency penalties, seeded
 * draws that are a fixed sequence, temperature sampling frequencies (chi-square with a fixed
 * seed), raw-distribution log-probabilities, the candidate-list entry point, bad parameters. */
#include "sampler.h"
#include "test.h"

#include <math.h>

/* A sampler with every truncation off: plain sampling at temperature t. */
static tw_sampler_params plain(float t, uint64_t seed) {
    tw_sampler_params p;
    tw_sampler_params_default(&p);
    p.temperature = t;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.seed = seed;
    return p;
}

static void logits_of(const double *probs, int n, float *out) {
    for (int i = 0; i < n; i++) out[i] = (float)log(probs[i]);
}

static void test_rng(void) {
    /* splitmix64's first output from state 0 is the published 0xe220a8397b1dcdaf; it is the
     * first word of the xoshiro state seeded with 0. The next three values of seed 42 come from
     * a separate Python implementation of splitmix64 + xoshiro256** (their reference
     * definitions). */
    tw_rng r;
    tw_rng_seed(&r, 0);
    CHECK(r.s[0] == 0xe220a8397b1dcdafull);
    tw_rng_seed(&r, 42);
    CHECK(tw_rng_next(&r) == 0x15780b2e0c2ec716ull);
    CHECK(tw_rng_next(&r) == 0x6104d9866d113a7eull);
    CHECK(tw_rng_next(&r) == 0xae17533239e499a1ull);
    for (int i = 0; i < 1000; i++) {
        double u = tw_rng_uniform(&r);
        CHECK(u >= 0.0 && u < 1.0);
    }
}

static void test_top_k(void) {
    tw_candidate c[5] = {{0, 1.0f}, {1, 3.0f}, {2, 2.0f}, {3, 3.0f}, {4, 0.0f}};
    int n = tw_sampler_cand_top_k(c, 5, 2);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(c[0].id, 1); /* equal logits: smaller id first */
    CHECK_EQ_INT(c[1].id, 3);
    tw_candidate d[5] = {{0, 1.0f}, {1, 3.0f}, {2, 2.0f}, {3, 3.0f}, {4, 0.0f}};
    n = tw_sampler_cand_top_k(d, 5, 0); /* off: all, sorted */
    CHECK_EQ_INT(n, 5);
    int want[5] = {1, 3, 2, 0, 4};
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(d[i].id, want[i]);
}

static void test_top_p(void) {
    double probs[4] = {0.15, 0.5, 0.05, 0.3}; /* ids by probability: 1, 3, 0, 2 */
    float lg[4];
    logits_of(probs, 4, lg);
    struct {
        float p;
        int keep;
        int ids[4];
    } cases[] = {
        {0.9f, 3, {1, 3, 0}}, /* 0.5 + 0.3 = 0.8 < 0.9, + 0.15 = 0.95: the crossing one stays */
        {0.79f, 2, {1, 3}},
        {0.3f, 1, {1}},
        {0.96f, 4, {1, 3, 0, 2}},
        {1.0f, 4, {0, 1, 2, 3}}, /* off: untouched */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tw_candidate c[4];
        for (int i = 0; i < 4; i++) c[i] = (tw_candidate){i, lg[i]};
        int n = tw_sampler_cand_top_p(c, 4, cases[k].p, 0);
        CHECK_EQ_INT(n, cases[k].keep);
        for (int i = 0; i < n && i < cases[k].keep; i++) CHECK_EQ_INT(c[i].id, cases[k].ids[i]);
    }
    /* The growing partial sort gives what a full sort gives, on a vocabulary-sized list. */
    enum { N = 20000 };
    static tw_candidate a[N], b[N];
    tw_rng r;
    tw_rng_seed(&r, 5);
    for (int i = 0; i < N; i++) {
        float l = (float)(tw_rng_uniform(&r) * 12.0);
        a[i] = b[i] = (tw_candidate){i, l};
    }
    int na = tw_sampler_cand_top_p(a, N, 0.9f, 0);
    tw_sampler_cand_top_k(b, N, 0);
    int nb = tw_sampler_cand_top_p(b, N, 0.9f, 1);
    CHECK_EQ_INT(na, nb);
    CHECK(na > 512); /* the list needed more than the first rounds of 64 and 512 */
    int same = 1;
    for (int i = 0; i < na && i < nb; i++) same &= a[i].id == b[i].id;
    CHECK(same);
}

static void test_min_p(void) {
    double probs[4] = {0.15, 0.5, 0.05, 0.3};
    float lg[4];
    logits_of(probs, 4, lg);
    tw_candidate c[4];
    for (int i = 0; i < 4; i++) c[i] = (tw_candidate){i, lg[i]};
    int n = tw_sampler_cand_min_p(c, 4, 0.2f); /* keeps p >= 0.1: ids 0, 1, 3 in order */
    CHECK_EQ_INT(n, 3);
    CHECK(n == 3 && c[0].id == 0 && c[1].id == 1 && c[2].id == 3);
    for (int i = 0; i < 4; i++) c[i] = (tw_candidate){i, lg[i]};
    n = tw_sampler_cand_min_p(c, 4, 0.5f); /* p >= 0.25: ids 1, 3 */
    CHECK(n == 2 && c[0].id == 1 && c[1].id == 3);
    n = tw_sampler_cand_min_p(c, 2, 0.0f);
    CHECK_EQ_INT(n, 2);
}

static int32_t pick(tw_sampler *s, const float *lg) {
    tw_sample out = {-1, 0};
    CHECK_EQ_INT(tw_sampler_sample(s, lg, &out), TW_OK);
    return out.token;
}

static void test_greedy(void) {
    tw_sampler_params p = plain(0.0f, 1);
    tw_sampler *s;
    CHECK_EQ_INT(tw_sampler_new(&p, 5, &s), TW_OK);
    float lg[5] = {0.5f, 2.0f, -1.0f, 2.0f, 1.0f};
    CHECK_EQ_INT(pick(s, lg), 1); /* tie between 1 and 3: the smaller id */
    for (int i = 0; i < 10; i++) CHECK_EQ_INT(pick(s, lg), 1); /* greedy: always the same */
    tw_sampler_free(s);
}

static void test_repeat_penalty(void) {
    tw_sampler_params p = plain(0.0f, 1);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 2;
    tw_sampler *s;
    CHECK_EQ_INT(tw_sampler_new(&p, 4, &s), TW_OK);
    float lg[4] = {2.0f, -2.0f, 1.5f, 0.5f};
    CHECK_EQ_INT(pick(s, lg), 0);
    tw_sampler_accept(s, 0, 0); /* a prompt token counts: 2 / 2 = 1 < 1.5 */
    CHECK_EQ_INT(pick(s, lg), 2);
    tw_sampler_accept(s, 0, 1); /* twice in the window is still one division */
    CHECK_EQ_INT(pick(s, lg), 2);
    tw_sampler_accept(s, 3, 1);
    tw_sampler_accept(s, 2, 1); /* window (last 2) is {3, 2}: 0 is back to 2.0, 2 -> 0.75 */
    CHECK_EQ_INT(pick(s, lg), 0);
    tw_sampler_free(s);

    /* negative logits are multiplied: -1 * 2 = -2 < -1.5 */
    p.repeat_last_n = -1;
    CHECK_EQ_INT(tw_sampler_new(&p, 3, &s), TW_OK);
    float neg[3] = {-1.0f, -1.5f, -5.0f};
    CHECK_EQ_INT(pick(s, neg), 0);
    tw_sampler_accept(s, 0, 0);
    for (int i = 0; i < 100; i++) tw_sampler_accept(s, 2, 0); /* -1: the whole history */
    CHECK_EQ_INT(pick(s, neg), 1);
    tw_sampler_reset(s);
    CHECK_EQ_INT(pick(s, neg), 0);
    tw_sampler_free(s);
}

static void test_presence_frequency(void) {
    float lg[3] = {3.0f, 2.5f, 0.0f};
    struct {
        float presence, frequency;
        int generated; /* 0 twice as generated (1) or as prompt (0) */
        int want;
    } cases[] = {
        {0.0f, 0.3f, 1, 1}, /* 3 - 2 * 0.3 = 2.4 < 2.5 */
        {0.0f, 0.2f, 1, 0}, /* 3 - 0.4 = 2.6 */
        {0.6f, 0.0f, 1, 1}, /* 3 - 0.6: presence counts once */
        {0.4f, 0.0f, 1, 0}, /* 2.6 */
        {1.0f, 1.0f, 0, 0}, /* prompt tokens are not "generated": no penalty */
        {-1.0f, 0.0f, 1, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tw_sampler_params p = plain(0.0f, 1);
        p.presence_penalty = cases[k].presence;
        p.frequency_penalty = cases[k].frequency;
        tw_sampler *s;
        CHECK_EQ_INT(tw_sampler_new(&p, 3, &s), TW_OK);
        tw_sampler_accept(s, 0, cases[k].generated);
        tw_sampler_accept(s, 0, cases[k].generated);
        CHECK_EQ_INT(pick(s, lg), cases[k].want);
        tw_sampler_free(s);
    }
    /* many distinct generated tokens (the count table grows) still count right */
    tw_sampler_params p = plain(0.0f, 1);
    p.frequency_penalty = 0.01f;
    tw_sampler *s;
    CHECK_EQ_INT(tw_sampler_new(&p, 1000, &s), TW_OK);
    for (int i = 0; i < 1000; i++) tw_sampler_accept(s, i, 1);
    for (int i = 0; i < 60; i++) tw_sampler_accept(s, 7, 1); /* 7 generated 61 times */
    float *big = tw_malloc(1000 * sizeof *big);
    for (int i = 0; i < 1000; i++) big[i] = 0.0f;
    big[7] = 0.55f; /* 0.55 - 0.61 = -0.06; the others 0 - 0.01: 7 loses to id 0 */
    CHECK_EQ_INT(pick(s, big), 0);
    big[7] = 0.65f; /* 0.04 > -0.01 */
    CHECK_EQ_INT(pick(s, big), 7);
    tw_free(big);
    tw_sampler_free(s);
}

static void test_seeded_sequence(void) {
    double probs[4] = {0.5, 0.25, 0.15, 0.1};
    float lg[4];
    logits_of(probs, 4, lg);
    /* Seed 42 at temperature 1 with no truncation: this exact sequence, computed by a separate
     * Python implementation of the RNG and the cumulative walk. */
    int want[20] = {0, 0, 1, 3, 3, 2, 1, 2, 2, 1, 1, 0, 2, 0, 1, 2, 1, 2, 1, 1};
    tw_sampler_params p = plain(1.0f, 42);
    tw_sampler *s, *s2, *s3;
    CHECK_EQ_INT(tw_sampler_new(&p, 4, &s), TW_OK);
    CHECK_EQ_INT(tw_sampler_new(&p, 4, &s2), TW_OK);
    p.seed = 43;
    CHECK_EQ_INT(tw_sampler_new(&p, 4, &s3), TW_OK);
    int differ = 0;
    for (int i = 0; i < 20; i++) {
        int a = pick(s, lg);
        CHECK_EQ_INT(a, want[i]);
        CHECK_EQ_INT(pick(s2, lg), a);
        differ |= pick(s3, lg) != a;
    }
    CHECK(differ);
    tw_sampler_reset(s); /* the same seed again from the start */
    for (int i = 0; i < 20; i++) CHECK_EQ_INT(pick(s, lg), want[i]);
    tw_sampler_free(s);
    tw_sampler_free(s2);
    tw_sampler_free(s3);
}

/* Pearson's chi-square of counts against expected probabilities. */
static double chi_square(const long *count, const double *p, int n, long total) {
    double x = 0.0;
    for (int i = 0; i < n; i++) {
        double e = p[i] * (double)total;
        x += ((double)count[i] - e) * ((double)count[i] - e) / e;
    }
    return x;
}

static void test_temperature_frequencies(void) {
    double probs[4] = {0.5, 0.25, 0.15, 0.1};
    float lg[4];
    logits_of(probs, 4, lg);
    float temps[3] = {1.0f, 0.5f, 2.0f};
    for (int t = 0; t < 3; t++) {
        /* at temperature T the distribution is p^(1/T), renormalised */
        double q[4], z = 0.0;
        for (int i = 0; i < 4; i++) z += q[i] = pow(probs[i], 1.0 / temps[t]);
        for (int i = 0; i < 4; i++) q[i] /= z;
        tw_sampler_params p = plain(temps[t], 7);
        tw_sampler *s;
        CHECK_EQ_INT(tw_sampler_new(&p, 4, &s), TW_OK);
        long count[4] = {0}, total = 50000;
        for (long k = 0; k < total; k++) count[pick(s, lg)]++;
        double x = chi_square(count, q, 4, total);
        /* 3 degrees of freedom: 16.27 is the 0.999 quantile. The seed is fixed, so this is
         * deterministic; a wrong temperature (e.g. T applied as a multiplier) gives values in
         * the thousands at 50000 draws. */
        if (!(x < 16.27))
            fprintf(stderr, "T=%g: chi2 %.2f counts %ld %ld %ld %ld\n", (double)temps[t], x,
                    count[0], count[1], count[2], count[3]);
        CHECK(x < 16.27);
        tw_sampler_free(s);
    }
    /* top-k 2 at T=1: only ids 0 and 1, in ratio 2:1 */
    tw_sampler_params p = plain(1.0f, 9);
    p.top_k = 2;
    tw_sampler *s;
    CHECK_EQ_INT(tw_sampler_new(&p, 4, &s), TW_OK);
    long count[4] = {0}, total = 30000;
    for (long k = 0; k < total; k++) count[pick(s, lg)]++;
    CHECK(count[2] == 0 && count[3] == 0);
    double q[4] = {2.0 / 3.0, 1.0 / 3.0, 1.0, 1.0};
    CHECK(chi_square(count, q, 2, total) < 10.83); /* 1 dof, 0.999 */
    tw_sampler_free(s);
}

static void test_logprob(void) {
    /* raw distribution (0.1, 0.2, 0.7): the chosen token's log-probability is from it even
     * when a penalty and a truncation changed the choice */
    double probs[3] = {0.1, 0.2, 0.7};
    float lg[3];
    logits_of(probs, 3, lg);
    tw_sampler_params p = plain(0.0f, 1);
    p.presence_penalty = 5.0f;
    tw_sampler *s;
    CHECK_EQ_INT(tw_sampler_new(&p, 3, &s), TW_OK);
    tw_sample out;
    CHECK_EQ_INT(tw_sampler_sample(s, lg, &out), TW_OK);
    CHECK_EQ_INT(out.token, 2);
    CHECK_NEAR(out.logprob, log(0.7), 1e-6); /* float logits: about 1e-7 relative */
    tw_sampler_accept(s, 2, 1);
    CHECK_EQ_INT(tw_sampler_sample(s, lg, &out), TW_OK);
    CHECK_EQ_INT(out.token, 1);
    CHECK_NEAR(out.logprob, log(0.2), 1e-6);
    tw_sampler_free(s);
}

static void test_candidates(void) {
    /* the candidate path: the 3 best of a 6-token vocabulary with the full logsumexp */
    float full[6] = {0.0f, 1.0f, 4.0f, 3.0f, 2.0f, -1.0f};
    double z = 0.0;
    for (int i = 0; i < 6; i++) z += exp((double)full[i]);
    tw_candidate c[3] = {{3, 3.0f}, {2, 4.0f}, {4, 2.0f}};
    tw_sampler_params p = plain(0.0f, 1);
    p.repeat_penalty = 4.0f; /* 4 / 4 = 1 < 3 */
    tw_sampler *s;
    CHECK_EQ_INT(tw_sampler_new(&p, 6, &s), TW_OK);
    tw_sampler_accept(s, 2, 0);
    tw_sample out;
    CHECK_EQ_INT(tw_sampler_sample_candidates(s, c, 3, log(z), &out), TW_OK);
    CHECK_EQ_INT(out.token, 3);
    CHECK_NEAR(out.logprob, 3.0 - log(z), 1e-6);
    /* NAN: relative to the candidates */
    tw_candidate d[2] = {{0, 0.0f}, {1, 0.0f}};
    CHECK_EQ_INT(tw_sampler_sample_candidates(s, d, 2, NAN, &out), TW_OK);
    CHECK_EQ_INT(out.token, 0);
    CHECK_NEAR(out.logprob, log(0.5), 1e-6);
    tw_candidate bad[1] = {{6, 0.0f}};
    CHECK_EQ_INT(tw_sampler_sample_candidates(s, bad, 1, NAN, &out), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "id 6") != NULL);
    tw_sampler_free(s);
}

static void test_bad_input(void) {
    tw_sampler_params p;
    tw_sampler *s = (tw_sampler *)&p;
    tw_sampler_params_default(&p);
    CHECK_EQ_INT(tw_sampler_params_check(&p), TW_OK);
    p.top_p = 0.0f;
    CHECK_EQ_INT(tw_sampler_new(&p, 4, &s), TW_ERR_ARG);
    CHECK(s == NULL);
    CHECK(strstr(tw_errmsg(), "top_p") != NULL);
    tw_sampler_params_default(&p);
    p.min_p = 1.5f;
    CHECK_EQ_INT(tw_sampler_params_check(&p), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "min_p") != NULL);
    tw_sampler_params_default(&p);
    p.repeat_penalty = 0.0f;
    CHECK_EQ_INT(tw_sampler_params_check(&p), TW_ERR_ARG);
    tw_sampler_params_default(&p);
    p.temperature = NAN;
    CHECK_EQ_INT(tw_sampler_params_check(&p), TW_ERR_ARG);
    tw_sampler_params_default(&p);
    p.repeat_last_n = -2;
    CHECK_EQ_INT(tw_sampler_params_check(&p), TW_ERR_ARG);
    tw_sampler_params_default(&p);
    CHECK_EQ_INT(tw_sampler_new(&p, 0, &s), TW_ERR_ARG);

    CHECK_EQ_INT(tw_sampler_new(&p, 3, &s), TW_OK);
    float lg[3] = {0.0f, NAN, 1.0f};
    tw_sample out;
    CHECK_EQ_INT(tw_sampler_sample(s, lg, &out), TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "token 1") != NULL);
    float inf[3] = {-INFINITY, -INFINITY, 0.0f}; /* masked tokens are fine */
    CHECK_EQ_INT(tw_sampler_sample(s, inf, &out), TW_OK);
    CHECK_EQ_INT(out.token, 2);
    tw_sampler_accept(s, 99, 1); /* out of range: ignored */
    tw_sampler_free(s);
    tw_sampler_free(NULL);

    /* allocation failures while making a sampler are reported, not crashed on */
    for (uint64_t k = 1; k <= 3; k++) {
        tw_mem_fail_after(k);
        tw_status st = tw_sampler_new(&p, 3, &s);
        tw_mem_fail_after(0);
        if (st == TW_OK) tw_sampler_free(s);
        else CHECK_EQ_INT(st, TW_ERR_NOMEM);
    }
}

int main(void) {
    RUN(test_rng);
    RUN(test_top_k);
    RUN(test_top_p);
    RUN(test_min_p);
    RUN(test_greedy);
    RUN(test_repeat_penalty);
    RUN(test_presence_frequency);
    RUN(test_seeded_sequence);
    RUN(test_temperature_frequencies);
    RUN(test_logprob);
    RUN(test_candidates);
    RUN(test_bad_input);
    TEST_DONE();
}
