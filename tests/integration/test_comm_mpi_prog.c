/* test_comm_mpi_prog: comm.h across the ranks of a real job. Run by test_comm_mpi.sh under
 * `mpirun -np N` (N = 2, 3); run alone (as ctest does too) it is the same checks on one rank.
 * Every rank runs every collective in the same order whatever its checks find, and the
 * failures of all ranks are summed at the end, so one rank's failure fails every rank.
 *
 * Checks: the world size matches the launcher's; broadcast of a config from the first and the
 * last rank; f64 sums exact; for each reduction and odd sizes (smaller than the rank count,
 * not divisible by it, 2e5+3), the f32 sum against the rank-order sum every rank recomputes
 * from the seeds: ORDERED and ROOT bit for bit, NATIVE within the float bound; the result's
 * sha256 equal on every rank; that order matters for these inputs (with 3+ ranks the reversed
 * order differs somewhere, so the bit checks can fail); every rank computing the same split;
 * and data-parallel SGD of a toy bigram model on 6 global batches (comm_batch.h) whose loss
 * curve equals the one-rank curve every rank also computes, within float reduction-order
 * tolerance, with bit-identical weights on all ranks.
 *
 * Modes for the script's negative checks:
 *   --have-mpi       exit 0 when this build has MPI, 3 when not (nothing else)
 *   --corrupt R      rank R flips the last bit of one reduced element: must fail
 *   --abort R        rank R calls comm_abort(3) while the others wait in a barrier: mpirun
 *                    must end every rank with a failure instead of hanging
 */
#include <stdlib.h>
#include <string.h>

#include "comm.h"
#include "comm_batch.h"
#include "test.h"

static comm_ctx *C;
static int R, N;

/* Rank r's input for a reduction: seeded by (tag, r), magnitudes spread over 2^-3..2^1 times
 * 2^(0..12) so that the order of float additions changes the result. */
static void fill_input(float *x, size_t n, uint64_t tag, int r) {
    kin_rng g = {tag * 200003u + (uint64_t)r};
    kin_fill(&g, x, (int64_t)n, 1.0f);
    for (size_t i = 0; i < n; i++) x[i] *= (float)(1u << (kin_next(&g) % 13));
}

/* sha256 of buf equal on every rank (rank 0's digest broadcast and compared). */
static int same_on_all_ranks(const void *buf, size_t nbytes) {
    uint8_t mine[32], root[32];
    tw_sha256(buf, nbytes, mine);
    memcpy(root, mine, 32);
    CHECK(comm_broadcast(C, root, 32, 0) == TW_OK);
    return memcmp(mine, root, 32) == 0;
}

static void test_world(void) {
    const char *v = getenv("OMPI_COMM_WORLD_SIZE");
    if (v) CHECK_EQ_INT(N, atoi(v));
    CHECK(R >= 0 && R < N);
    CHECK_EQ_STR(comm_backend(C), N > 1 || v ? "mpi" : "single");
    int rank_sum_ok;
    double s = (double)R + 1.0;
    CHECK(comm_allreduce_sum_f64(C, &s, 1) == TW_OK);
    rank_sum_ok = s == (double)N * (N + 1) / 2.0; /* small integers: exact in any order */
    CHECK(rank_sum_ok);
    CHECK(comm_barrier(C) == TW_OK);
}

static void test_broadcast(void) {
    struct {
        uint64_t seed;
        double lr;
        char name[20];
    } cfg, want = {0xC0FFEEull, 2e-4, "twin-dp"};
    for (int root = 0; root < N; root += N > 1 ? N - 1 : 1) {
        memset(&cfg, 0, sizeof cfg);
        if (R == root) cfg = want;
        CHECK(comm_broadcast(C, &cfg, sizeof cfg, root) == TW_OK);
        CHECK(cfg.seed == want.seed && cfg.lr == want.lr && strcmp(cfg.name, want.name) == 0);
    }
    CHECK(comm_broadcast(C, &cfg, sizeof cfg, N) == TW_ERR_ARG); /* checked before any MPI */
}

/* f64 with values whose sum depends on the order: the rank-order sum, exactly. */
static void test_f64(void) {
    double x[3] = {R == 0 ? 1e16 : 1.0, 0.1 * (R + 1), -(double)R};
    double want[3] = {0, 0, 0};
    for (int r = 0; r < N; r++) {
        double y[3] = {r == 0 ? 1e16 : 1.0, 0.1 * (r + 1), -(double)r};
        for (int i = 0; i < 3; i++) want[i] = r == 0 ? y[i] : want[i] + y[i];
    }
    for (int a = 0; a < COMM_REDUCE_NATIVE; a++) {
        double y[3];
        memcpy(y, x, sizeof y);
        comm_reduce_set(C, (comm_reduce)a);
        CHECK(comm_allreduce_sum_f64(C, y, 3) == TW_OK);
        CHECK(memcmp(y, want, sizeof y) == 0);
    }
    comm_reduce_set(C, COMM_REDUCE_ORDERED);
}

static int corrupt_rank = -1;

static void test_f32(void) {
    const size_t sizes[] = {1, (size_t)(N > 1 ? N - 1 : 0), 7, 200003};
    for (int a = 0; a < COMM_REDUCE_COUNT; a++) {
        comm_reduce_set(C, (comm_reduce)a);
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            size_t n = sizes[si];
            uint64_t tag = (uint64_t)(a * 16 + (int)si + 1);
            float *x = kin_floats((int64_t)n), *want = kin_floats((int64_t)n), *y = kin_floats((int64_t)n);
            float *rev = kin_floats((int64_t)n);
            double *mag = (double *)tw_calloc(n ? n : 1, sizeof(double));
            TW_ASSERT(mag);
            for (int r = 0; r < N; r++) { /* the rank-order sum, from every rank's seed */
                fill_input(y, n, tag, r);
                for (size_t i = 0; i < n; i++) {
                    want[i] = r == 0 ? y[i] : want[i] + y[i];
                    mag[i] += fabs((double)y[i]);
                }
            }
            for (int r = N - 1; r >= 0; r--) { /* the reversed order */
                fill_input(y, n, tag, r);
                for (size_t i = 0; i < n; i++) rev[i] = r == N - 1 ? y[i] : rev[i] + y[i];
            }
            fill_input(x, n, tag, R);
            CHECK(comm_allreduce_sum_f32(C, x, n) == TW_OK);
            if (R == corrupt_rank && n > 7) {
                uint32_t u;
                memcpy(&u, &x[n / 2], 4);
                u ^= 1u;
                memcpy(&x[n / 2], &u, 4);
            }
            int exact = memcmp(x, want, n * sizeof *x) == 0;
            if (a == COMM_REDUCE_NATIVE) {
                /* Any order of N float additions is within (N-1) eps32 sum|x_r| of the exact sum,
                 * and so is the rank-order sum: twice that bounds their difference. */
                double worst = 0.0;
                for (size_t i = 0; i < n; i++) {
                    double d = fabs((double)x[i] - want[i]) / (2.0 * (N - 1) * 0x1p-24 * mag[i] + 1e-30);
                    worst = d > worst ? d : worst;
                }
                CHECK(worst <= 1.0);
            } else {
                if (!exact) fprintf(stderr, "rank %d: %s n=%zu differs from the rank-order sum\n", R,
                                    comm_reduce_name((comm_reduce)a), n);
                CHECK(exact);
            }
            int same = same_on_all_ranks(x, n * sizeof *x);
            if (!same) fprintf(stderr, "rank %d: %s n=%zu: not the same bits as rank 0\n", R,
                               comm_reduce_name((comm_reduce)a), n);
            CHECK(same);
            if (N >= 3 && n == 200003 && a == COMM_REDUCE_ORDERED)
                CHECK(memcmp(rev, want, n * sizeof *rev) != 0); /* order matters here */
            tw_free(x);
            tw_free(want);
            tw_free(y);
            tw_free(rev);
            tw_free(mag);
        }
    }
    comm_reduce_set(C, COMM_REDUCE_ORDERED);
}

/* Data-parallel SGD of the toy bigram model vs one rank, on the same global batches. */
static void test_data_parallel(void) {
    enum { V = 32, STEPS = 6 };
    uint64_t seed = 0;
    if (R == 0) seed = 0x5EEDull; /* the rank-0 seed, as twin train broadcasts it */
    CHECK(comm_broadcast(C, &seed, sizeof seed, 0) == TW_OK);
    kin_rng g = {seed};
    float *w1 = kin_floats(V * V), *wn = kin_floats(V * V), *g1 = kin_floats(V * V), *gn = kin_floats(V * V);
    kin_fill(&g, w1, V * V, 0.5f);
    memcpy(wn, w1, V * V * sizeof(float));
    ds_batch b, s;
    ds_batch_init(&s);
    const float lr = 0.5f;
    double worst = 0.0;
    for (int step = 0; step < STEPS; step++) {
        ds_batch_init(&b);
        CHECK(cb_batch_make(&b, &g, 5 + (size_t)step * 3, 0, step % 2, 80, V) == 0);
        double scale = comm_batch_loss_scale(&b);
        /* one rank: the whole batch */
        memset(g1, 0, V * V * sizeof(float));
        double l1 = cb_bigram_loss_grad(&b, w1, V, scale, g1);
        /* this rank's share */
        comm_range *shares = (comm_range *)tw_malloc((size_t)N * sizeof *shares);
        TW_ASSERT(shares);
        CHECK(comm_split_batch(&b, N, shares) == TW_OK);
        CHECK(same_on_all_ranks(shares, (size_t)N * sizeof *shares));
        CHECK(comm_batch_slice(&b, &shares[R], &s) == TW_OK);
        memset(gn, 0, V * V * sizeof(float));
        double ln = cb_bigram_loss_grad(&s, wn, V, scale, gn);
        CHECK(comm_allreduce_sum_f32(C, gn, V * V) == TW_OK);
        CHECK(comm_allreduce_sum_f64(C, &ln, 1) == TW_OK);
        /* The same weights give the same loss up to the order of double additions; the
         * weights drift apart only by float rounding of the gradients (|g| <= 1, ~tokens
         * terms each): 1e-5 relative on the loss over 6 steps of lr 0.5. */
        double rel = fabs(ln - l1) / l1;
        worst = rel > worst ? rel : worst;
        if (R == 0) fprintf(stderr, "  step %d: loss 1 rank %.9f, %d ranks %.9f\n", step, l1, N, ln);
        for (int i = 0; i < V * V; i++) {
            w1[i] -= lr * g1[i];
            wn[i] -= lr * gn[i];
        }
        tw_free(shares);
        ds_batch_free(&b);
    }
    CHECK(worst <= 1e-5);
    CHECK(same_on_all_ranks(wn, V * V * sizeof(float)));
    ds_batch_free(&s);
    tw_free(w1);
    tw_free(wn);
    tw_free(g1);
    tw_free(gn);
}

int main(int argc, char **argv) {
    int abort_rank = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--have-mpi") == 0) return comm_have_mpi() ? 0 : 3;
        if (strcmp(argv[i], "--corrupt") == 0 && i + 1 < argc) corrupt_rank = atoi(argv[++i]);
        else if (strcmp(argv[i], "--abort") == 0 && i + 1 < argc) abort_rank = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--have-mpi | --corrupt RANK | --abort RANK]\n", argv[0]);
            return 2;
        }
    }
    if (comm_init(&C) != TW_OK) {
        fprintf(stderr, "comm_init: %s\n", tw_errmsg());
        return 1;
    }
    R = comm_rank(C);
    N = comm_size(C);
    if (abort_rank >= 0) {
        if (R == abort_rank) comm_abort(C, 3);
        comm_barrier(C); /* never returns for the others: the abort ends them */
        comm_finalize(C);
        return 0;
    }
    RUN(test_world);
    RUN(test_broadcast);
    RUN(test_f64);
    RUN(test_f32);
    RUN(test_data_parallel);
    double failures = (double)test_failures;
    if (comm_allreduce_sum_f64(C, &failures, 1) != TW_OK) failures += 1.0;
    tw_status st = comm_finalize(C);
    if (st) fprintf(stderr, "comm_finalize: %s\n", tw_errmsg());
    fprintf(stderr, "rank %d of %d: %s (%g failed checks on all ranks)\n", R, N,
            failures == 0.0 && st == TW_OK ? "ok" : "FAIL", failures);
    return failures == 0.0 && st == TW_OK ? 0 : 1;
}
