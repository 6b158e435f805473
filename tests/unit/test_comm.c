/* test_comm: comm.h on one rank (no launcher in the environment): every collective is the
 * identity and argument errors are caught; launcher detection and its hostile values; the
 * batch split (coverage, contiguity, balance within the longest unit, each boundary the
 * nearest to its target, pairs kept together) on seeded random batches; slices that put the
 * batch back together; the loss scale; and the scaling rule on a toy model: shares' scaled
 * sums, added in rank order, give the one-rank mean loss and gradient. */
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "comm_batch.h"
#include "test.h"

static const char *const launcher_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"};

static void env_clear(void) {
    for (size_t i = 0; i < sizeof launcher_vars / sizeof launcher_vars[0]; i++)
        unsetenv(launcher_vars[i]);
}

static void test_reduce_names(void) {
    for (int r = 0; r < COMM_REDUCE_COUNT; r++) {
        comm_reduce back = COMM_REDUCE_COUNT;
        CHECK(comm_reduce_parse(comm_reduce_name((comm_reduce)r), &back) == TW_OK);
        CHECK_EQ_INT(back, r);
    }
    comm_reduce x;
    CHECK(comm_reduce_parse("ring", &x) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "'ring'") != NULL);
    CHECK(comm_reduce_name(COMM_REDUCE_COUNT) == NULL);
}

static void test_launch_detect(void) {
    int size = -1;
    const char *var = "x";
    env_clear();
    CHECK(comm_launch_detect(&size, &var) == TW_OK);
    CHECK_EQ_INT(size, 1);
    CHECK(var == NULL);

    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    CHECK(comm_launch_detect(&size, &var) == TW_OK);
    CHECK_EQ_INT(size, 4);
    CHECK_EQ_STR(var, "OMPI_COMM_WORLD_SIZE");
    env_clear();

    setenv("PMI_SIZE", "2", 1);
    CHECK(comm_launch_detect(&size, &var) == TW_OK);
    CHECK_EQ_INT(size, 2);
    CHECK_EQ_STR(var, "PMI_SIZE");
    env_clear();

    setenv("PMIX_RANK", "0", 1);
    CHECK(comm_launch_detect(&size, &var) == TW_OK);
    CHECK_EQ_INT(size, 0); /* launched; the size is MPI's to tell */
    CHECK_EQ_STR(var, "PMIX_RANK");
    env_clear();

    const char *bad[] = {"0", "-2", "", "abc", "3x", " 3", "99999999999", "+2", "2 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("OMPI_COMM_WORLD_SIZE", bad[i], 1);
        size = -1;
        CHECK(comm_launch_detect(&size, &var) == TW_ERR_ARG);
        CHECK(strstr(tw_errmsg(), "OMPI_COMM_WORLD_SIZE") != NULL);
    }
    env_clear();
}

static void test_single_rank(void) {
    env_clear();
    comm_ctx *c = NULL;
    CHECK(comm_init(&c) == TW_OK);
    if (!c) return;
    CHECK_EQ_INT(comm_rank(c), 0);
    CHECK_EQ_INT(comm_size(c), 1);
    CHECK_EQ_STR(comm_backend(c), "single");
    CHECK_EQ_INT(comm_reduce_get(c), COMM_REDUCE_ORDERED);

    kin_rng r = {11};
    float f[37], f0[37];
    kin_fill(&r, f, 37, 3.0f);
    memcpy(f0, f, sizeof f);
    double d[3] = {1.5, -2.25, 1e300}, d0[3];
    memcpy(d0, d, sizeof d);
    for (int a = 0; a < COMM_REDUCE_COUNT; a++) {
        comm_reduce_set(c, (comm_reduce)a);
        CHECK(comm_allreduce_sum_f32(c, f, 37) == TW_OK);
        CHECK(memcmp(f, f0, sizeof f) == 0);
        CHECK(comm_allreduce_sum_f64(c, d, 3) == TW_OK);
        CHECK(memcmp(d, d0, sizeof d) == 0);
    }
    CHECK(comm_allreduce_sum_f32(c, NULL, 0) == TW_OK);
    CHECK(comm_broadcast(c, f, sizeof f, 0) == TW_OK);
    CHECK(memcmp(f, f0, sizeof f) == 0);
    CHECK(comm_broadcast(c, f, sizeof f, 1) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "root 1") != NULL);
    CHECK(comm_broadcast(c, f, sizeof f, -1) == TW_ERR_ARG);
    CHECK(comm_barrier(c) == TW_OK);
    CHECK(comm_allreduce_sum_f32(NULL, f, 37) == TW_ERR_ARG);
    CHECK(comm_finalize(c) == TW_OK);
    CHECK(comm_finalize(NULL) == TW_OK);
}

/* A launcher's variables without an MPI build: one rank is fine, more is refused (N copies
 * training alone would overwrite each other's outputs). With MPI this would start MPI, which
 * the integration test does under mpirun. */
static void test_launch_without_mpi(void) {
    if (comm_have_mpi()) {
        fprintf(stderr, "  (MPI build: launches are checked by test_comm_mpi.sh)\n");
        return;
    }
    comm_ctx *c = NULL;
    setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
    CHECK(comm_init(&c) == TW_OK);
    CHECK(c && comm_size(c) == 1);
    comm_finalize(c);
    setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
    c = (comm_ctx *)&c;
    CHECK(comm_init(&c) == TW_ERR_UNSUPPORTED);
    CHECK(c == NULL);
    CHECK(strstr(tw_errmsg(), "without MPI") != NULL);
    CHECK(strstr(tw_errmsg(), "OMPI_COMM_WORLD_SIZE") != NULL);
    setenv("OMPI_COMM_WORLD_SIZE", "x", 1);
    CHECK(comm_init(&c) == TW_ERR_ARG);
    env_clear();
}

static uint64_t dist(const size_t *s, size_t i, uint64_t n_ranks, uint64_t target) {
    uint64_t v = (uint64_t)(s[i] - s[0]) * n_ranks;
    return v > target ? v - target : target - v;
}

static void test_split_units_hand(void) {
    size_t b[6];
    const size_t s1[] = {0, 3, 5, 9, 10};
    CHECK(comm_split_units(s1, 4, 2, b) == TW_OK);
    CHECK(b[0] == 0 && b[1] == 2 && b[2] == 4); /* 5 = 10/2 exactly at unit 2 */
    CHECK(comm_split_units(s1, 4, 1, b) == TW_OK);
    CHECK(b[0] == 0 && b[1] == 4);
    CHECK(comm_split_units(s1, 4, 5, b) == TW_OK); /* targets 2, 4, 6, 8: 3, 3 or 5, 5, 9 */
    CHECK(b[0] == 0 && b[1] == 1 && b[2] == 1 && b[3] == 2 && b[4] == 3 && b[5] == 4);
    const size_t s2[] = {0, 1, 3, 4}; /* target 2 lies halfway between 1 and 3: the lower */
    CHECK(comm_split_units(s2, 3, 2, b) == TW_OK);
    CHECK(b[1] == 1);
    const size_t s3[] = {7, 7, 7}; /* no tokens: everything on the first boundary */
    CHECK(comm_split_units(s3, 2, 3, b) == TW_OK);
    CHECK(b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 2);
    CHECK(comm_split_units(NULL, 0, 3, b) == TW_OK);
    CHECK(b[0] == 0 && b[3] == 0);
    const size_t bad[] = {0, 5, 4};
    CHECK(comm_split_units(bad, 2, 2, b) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "unit 1") != NULL);
    CHECK(comm_split_units(s1, 4, 0, b) == TW_ERR_ARG);
    const size_t huge[] = {0, SIZE_MAX / 2};
    CHECK(comm_split_units(huge, 1, 4, b) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "overflow") != NULL);
}

/* On random unit lengths (zero included): coverage, order, every boundary the nearest one to
 * its target (ties to the lower index, by brute force), loads within the longest unit of
 * T/N, and the same answer twice. */
static void test_split_units_random(void) {
    kin_rng r = {2024};
    size_t starts[65], b[12], b2[12];
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = (size_t)(kin_next(&r) % 65);
        int nr = 1 + (int)(kin_next(&r) % 11);
        uint64_t umax = 0;
        starts[0] = (size_t)(kin_next(&r) % 1000);
        int zeros = (int)(kin_next(&r) % 3) == 0;
        for (size_t u = 0; u < n; u++) {
            uint64_t len = zeros ? kin_next(&r) % 4 : 1 + kin_next(&r) % 300;
            if (kin_next(&r) % 17 == 0) len *= 20; /* an occasional long example */
            starts[u + 1] = starts[u] + (size_t)len;
            umax = len > umax ? len : umax;
        }
        int bad = 0;
        CHECK(comm_split_units(starts, n, nr, b) == TW_OK);
        CHECK(comm_split_units(starts, n, nr, b2) == TW_OK);
        bad |= memcmp(b, b2, ((size_t)nr + 1) * sizeof *b) != 0;
        bad |= b[0] != 0 || b[nr] != n;
        uint64_t total = n ? starts[n] - starts[0] : 0;
        for (int k = 0; k < nr; k++) {
            bad |= b[k] > b[k + 1];
            uint64_t load = (uint64_t)(starts[b[k + 1]] - starts[b[k]]);
            uint64_t nl = load * (uint64_t)nr;
            uint64_t off = nl > total ? nl - total : total - nl;
            if (off > umax * (uint64_t)nr) { /* |load - T/N| <= longest unit */
                fprintf(stderr, "  share %d: %llu tokens, T %llu, longest %llu\n", k,
                        (unsigned long long)load, (unsigned long long)total,
                        (unsigned long long)umax);
                bad = 1;
            }
        }
        for (int k = 1; k < nr && n; k++) {
            uint64_t target = (uint64_t)k * total;
            size_t best = 0;
            for (size_t i = 1; i <= n; i++)
                if (dist(starts, i, (uint64_t)nr, target) < dist(starts, best, (uint64_t)nr, target))
                    best = i;
            if (b[k] != best) {
                fprintf(stderr, "  boundary %d: %zu, nearest %zu\n", k, b[k], best);
                bad = 1;
            }
        }
        if (bad) {
            fprintf(stderr, "  split failed: iter %d, %zu units, %d ranks\n", iter, n, nr);
            CHECK(!bad);
            return;
        }
    }
}

/* Shares of real-looking batches: examples covered once, in order, tokens matching ex_start;
 * preference pairs never cut; an odd preference batch refused. */
static void test_split_batch(void) {
    kin_rng r = {77};
    for (int iter = 0; iter < 300; iter++) {
        int pref = (int)(kin_next(&r) % 2);
        size_t ne = (size_t)(kin_next(&r) % 40);
        if (pref) ne -= ne % 2;
        int nr = 1 + (int)(kin_next(&r) % 8);
        ds_batch b;
        ds_batch_init(&b);
        CHECK(cb_batch_make(&b, &r, ne, pref, (int)(kin_next(&r) % 2), 64, 50) == 0);
        comm_range out[8];
        CHECK(comm_split_batch(&b, nr, out) == TW_OK);
        int bad = 0;
        size_t at = 0, tok = 0;
        for (int k = 0; k < nr; k++) {
            bad |= out[k].ex_begin != at || out[k].ex_end < out[k].ex_begin;
            bad |= out[k].tok_begin != tok || (ne && out[k].tok_end != b.ex_start[out[k].ex_end]);
            bad |= pref && (out[k].ex_begin % 2 || out[k].ex_end % 2);
            at = out[k].ex_end;
            tok = out[k].tok_end;
        }
        bad |= at != ne || tok != b.n_tokens;
        if (bad) {
            fprintf(stderr, "  split_batch failed: iter %d\n", iter);
            CHECK(!bad);
        }
        if (pref && ne >= 2) { /* drop the last rejected: an odd preference batch */
            b.n_examples--;
            b.n_tokens = b.ex_start[b.n_examples];
            CHECK(comm_split_batch(&b, nr, out) == TW_ERR_ARG);
            CHECK(strstr(tw_errmsg(), "odd") != NULL);
        }
        ds_batch_free(&b);
    }
}

/* Slices put back together give the batch: contents, seg and offsets re-based, rows clipped
 * at share edges only. */
static void test_slice(void) {
    kin_rng r = {5};
    ds_batch s;
    ds_batch_init(&s); /* reused across every slice: capacities grow and shrink */
    for (int iter = 0; iter < 200; iter++) {
        int pref = (int)(kin_next(&r) % 3 == 0), pack = (int)(kin_next(&r) % 2);
        size_t ne = 1 + (size_t)(kin_next(&r) % 30);
        if (pref) ne += ne % 2;
        int nr = 1 + (int)(kin_next(&r) % 6);
        ds_batch b;
        ds_batch_init(&b);
        CHECK(cb_batch_make(&b, &r, ne, pref, pack, 48, 40) == 0);
        b.epoch_end = iter % 2;
        b.start.epoch = 3;
        b.start.index = (uint64_t)iter;
        comm_range out[6];
        CHECK(comm_split_batch(&b, nr, out) == TW_OK);
        int bad = 0;
        for (int k = 0; k < nr; k++) {
            CHECK(comm_batch_slice(&b, &out[k], &s) == TW_OK);
            size_t tb = out[k].tok_begin, eb = out[k].ex_begin;
            bad |= s.n_tokens != out[k].tok_end - tb || s.n_examples != out[k].ex_end - eb;
            bad |= s.epoch_end != b.epoch_end || s.start.index != b.start.index || s.start.epoch != 3;
            for (size_t t = 0; t < s.n_tokens && !bad; t++) {
                bad |= s.tokens[t] != b.tokens[tb + t] || s.mask[t] != b.mask[tb + t];
                bad |= s.targets[t] != b.targets[tb + t] || s.pos[t] != b.pos[tb + t];
                bad |= s.seg[t] != b.seg[tb + t] - (int32_t)eb || s.seg[t] < 0;
            }
            for (size_t e = 0; e <= s.n_examples && !bad; e++) {
                bad |= s.ex_start[e] != b.ex_start[eb + e] - tb;
                if (e < s.n_examples)
                    bad |= s.ex_index[e] != b.ex_index[eb + e] || s.ex_side[e] != b.ex_side[eb + e];
            }
            /* rows: start at 0, end at n_tokens, increase, and every inner start is a row start of
             * the batch */
            bad |= s.row_start[s.n_rows] != s.n_tokens || (s.n_tokens && s.row_start[0] != 0);
            for (size_t j = 1; j < s.n_rows && !bad; j++) {
                int found = 0;
                for (size_t i = 0; i < b.n_rows; i++) found |= b.row_start[i] == s.row_start[j] + tb;
                bad |= !found || s.row_start[j] <= s.row_start[j - 1];
            }
            if (!pack || pref) bad |= s.n_rows != s.n_examples; /* one example per row */
        }
        if (bad) {
            fprintf(stderr, "  slice failed: iter %d\n", iter);
            CHECK(!bad);
            ds_batch_free(&b);
            break;
        }
        /* a range off the example boundaries, and one past the end */
        if (b.n_examples >= 1 && b.ex_start[1] > 1) {
            comm_range off = {0, 1, 0, b.ex_start[1] - 1};
            CHECK(comm_batch_slice(&b, &off, &s) == TW_ERR_ARG);
            CHECK(s.n_tokens == 0);
        }
        comm_range past = {0, b.n_examples + 1, 0, b.n_tokens};
        CHECK(comm_batch_slice(&b, &past, &s) == TW_ERR_ARG);
        ds_batch_free(&b);
    }
    ds_batch_free(&s);
}

static void test_slice_nomem(void) {
    kin_rng r = {9};
    ds_batch b, s;
    ds_batch_init(&b);
    ds_batch_init(&s);
    CHECK(cb_batch_make(&b, &r, 6, 0, 1, 32, 20) == 0);
    comm_range all = {0, 6, 0, b.n_tokens};
    int failed = 0;
    for (uint64_t n = 1; n < 12; n++) { /* every allocation of a fresh slice fails once */
        ds_batch_free(&s);
        tw_mem_fail_after(n);
        tw_status st = comm_batch_slice(&b, &all, &s);
        tw_mem_fail_after(0);
        if (st == TW_ERR_NOMEM) {
            failed++;
            CHECK(s.n_tokens == 0 && s.n_examples == 0);
        } else {
            CHECK(st == TW_OK && s.n_tokens == b.n_tokens);
        }
    }
    CHECK(failed >= 9); /* nine arrays */
    ds_batch_free(&s);
    ds_batch_free(&b);
}

static void test_loss_scale(void) {
    kin_rng r = {31};
    ds_batch b;
    ds_batch_init(&b);
    CHECK(cb_batch_make(&b, &r, 9, 0, 1, 40, 30) == 0);
    size_t n = 0;
    for (size_t t = 0; t < b.n_tokens; t++) n += b.targets[t] >= 0;
    CHECK(n > 0);
    CHECK(comm_batch_loss_scale(&b) == 1.0 / (double)n);
    for (size_t t = 0; t < b.n_tokens; t++) b.targets[t] = -1;
    CHECK(comm_batch_loss_scale(&b) == 0.0);
    ds_batch_free(&b);
    ds_batch_init(&b);
    CHECK(cb_batch_make(&b, &r, 10, 1, 0, 40, 30) == 0);
    CHECK(comm_batch_loss_scale(&b) == 1.0 / 5.0);
    ds_batch_free(&b);
    CHECK(comm_batch_loss_scale(NULL) == 0.0);
}

/* The scaling rule on the toy bigram model: for N = 1..6 shares, summing the shares' scaled
 * losses and gradients in rank order gives the one-rank mean and gradient within float
 * rounding: the one-rank gradient adds ~n_loss_tokens terms of size <= scale per element in
 * a different order, so |diff| <= n * eps32 * scale * (a few) = a few eps32; we allow 1e-5
 * absolute on gradients of magnitude <= 1. The loss is accumulated in double: 1e-12. */
static void test_scaling_rule(void) {
    enum { V = 24 };
    kin_rng r = {404};
    ds_batch b, s;
    ds_batch_init(&b);
    ds_batch_init(&s);
    CHECK(cb_batch_make(&b, &r, 17, 0, 1, 60, V) == 0);
    float w[V * V], g1[V * V], gn[V * V], gk[V * V];
    kin_fill(&r, w, V * V, 1.0f);
    double scale = comm_batch_loss_scale(&b);
    memset(g1, 0, sizeof g1);
    double l1 = cb_bigram_loss_grad(&b, w, V, scale, g1);
    CHECK(l1 > 0.5 && l1 < 10.0);
    for (int nr = 1; nr <= 6; nr++) {
        comm_range out[6];
        CHECK(comm_split_batch(&b, nr, out) == TW_OK);
        memset(gn, 0, sizeof gn);
        double ln = 0.0;
        for (int k = 0; k < nr; k++) {
            CHECK(comm_batch_slice(&b, &out[k], &s) == TW_OK);
            memset(gk, 0, sizeof gk);
            ln += cb_bigram_loss_grad(&s, w, V, scale, gk);
            for (int i = 0; i < V * V; i++) gn[i] += gk[i]; /* the ORDERED reduction's order */
        }
        CHECK_NEAR(ln, l1, 1e-12);
        double md = 0.0;
        for (int i = 0; i < V * V; i++) md = fmax(md, fabs((double)gn[i] - g1[i]));
        CHECK(md <= 1e-5);
        if (nr == 1) CHECK(memcmp(gn, g1, sizeof g1) == 0); /* one share: the same bits */
    }
    /* The wrong rule (mean of per-share means) is measurably different: the test can fail. */
    comm_range out[3];
    CHECK(comm_split_batch(&b, 3, out) == TW_OK);
    double wrong = 0.0;
    for (int k = 0; k < 3; k++) {
        CHECK(comm_batch_slice(&b, &out[k], &s) == TW_OK);
        memset(gk, 0, sizeof gk);
        wrong += cb_bigram_loss_grad(&s, w, V, comm_batch_loss_scale(&s), gk) / 3.0;
    }
    CHECK(fabs(wrong - l1) > 1e-6);
    ds_batch_free(&s);
    ds_batch_free(&b);
}

int main(void) {
    RUN(test_reduce_names);
    RUN(test_launch_detect);
    RUN(test_single_rank);
    RUN(test_launch_without_mpi);
    RUN(test_split_units_hand);
    RUN(test_split_units_random);
    RUN(test_split_batch);
    RUN(test_slice);
    RUN(test_slice_nomem);
    RUN(test_loss_scale);
    RUN(test_scaling_rule);
    TEST_DONE();
}
