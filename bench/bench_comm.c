/* bench_comm.c: the cost of comm.h's all-reduce algorithms on a gradient-sized buffer, beside
 * the anchor measured in the same run: MPI_Allreduce (COMM_REDUCE_NATIVE, the MPI library's
 * own tuned algorithm). Run under the launcher:
 *
 *   mpirun -np 2 build/bench_comm [--n 4600000] [--reps 20]
 *
 * Each repetition times the three algorithms on the same buffer in turn (interleaved, so a
 * shared host's load hits them alike), each after a barrier; a call's time is the mean over
 * ranks. Prints per algorithm the median and the minimum over repetitions in ms, the
 * algorithm bandwidth (buffer bytes / time) and the ratio to MPI_Allreduce's median; then
 * the cost of a plain copy of the buffer (what the ordered sum's local pass costs at least).
 * Default n: 4.6M floats, the gradient of LoRA r=16 on all seven projections of SmolLM2-135M
 * is ~4.9M.
 * Exit status 0; 1 when a collective fails; 2 on bad usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void machine_name(char *buf, size_t n) {
    snprintf(buf, n, "unknown cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        char *c = strchr(line, ':');
        if (!strncmp(line, "model name", 10) && c) {
            snprintf(buf, n, "%s", c + 2);
            buf[strcspn(buf, "\n")] = '\0';
            break;
        }
    }
    fclose(f);
}

int main(int argc, char **argv) {
    size_t n = 4600000;
    int reps = 20;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--n") && i + 1 < argc) n = (size_t)strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--n FLOATS] [--reps R]\n", argv[0]);
            return 2;
        }
    }
    if (n == 0 || reps < 1 || reps > 10000) {
        fprintf(stderr, "bench_comm: --n must be > 0 and --reps in 1..10000\n");
        return 2;
    }
    comm_ctx *c = NULL;
    if (comm_init(&c) != TW_OK) {
        fprintf(stderr, "bench_comm: %s\n", tw_errmsg());
        return 1;
    }
    int rank = comm_rank(c), size = comm_size(c);
    float *buf = tw_malloc(n * sizeof *buf), *copy = tw_malloc(n * sizeof *copy);
    double *t = tw_calloc((size_t)reps * (COMM_REDUCE_COUNT + 1), sizeof *t);
    if (!buf || !copy || !t) {
        fprintf(stderr, "bench_comm: out of memory for %zu floats\n", n);
        comm_abort(c, 1);
    }
    for (size_t i = 0; i < n; i++) buf[i] = (float)((i * 2654435761u + (size_t)rank) % 1000) * 1e-3f;
    /* warm-up: page in the scratch of every algorithm */
    for (int a = 0; a < COMM_REDUCE_COUNT; a++) {
        comm_reduce_set(c, (comm_reduce)a);
        if (comm_allreduce_sum_f32(c, buf, n) != TW_OK) goto fail;
    }
    for (int r = 0; r < reps; r++) {
        for (int a = 0; a < COMM_REDUCE_COUNT; a++) {
            comm_reduce_set(c, (comm_reduce)a);
            if (comm_barrier(c) != TW_OK) goto fail;
            double t0 = tw_now_s();
            if (comm_allreduce_sum_f32(c, buf, n) != TW_OK) goto fail;
            t[(size_t)r * (COMM_REDUCE_COUNT + 1) + (size_t)a] = tw_now_s() - t0;
            for (size_t i = 0; i < n; i += 4096) buf[i] *= 0.5f; /* keep values bounded */
        }
        double t0 = tw_now_s();
        memcpy(copy, buf, n * sizeof *buf);
        t[(size_t)r * (COMM_REDUCE_COUNT + 1) + COMM_REDUCE_COUNT] = tw_now_s() - t0;
    }
    if (comm_allreduce_sum_f64(c, t, (size_t)reps * (COMM_REDUCE_COUNT + 1)) != TW_OK) goto fail;
    if (rank == 0) {
        char cpu[256];
        machine_name(cpu, sizeof cpu);
        printf("machine: %s, %ld cores online; %d ranks (%s), %zu floats (%.1f MiB), %d reps\n",
               cpu, sysconf(_SC_NPROCESSORS_ONLN), size, comm_backend(c), n, (double)n * 4 / 1048576.0, reps);
        double med[COMM_REDUCE_COUNT + 1], mn[COMM_REDUCE_COUNT + 1];
        double *col = tw_malloc((size_t)reps * sizeof *col);
        if (!col) goto fail;
        for (int a = 0; a <= COMM_REDUCE_COUNT; a++) {
            for (int r = 0; r < reps; r++) col[r] = t[(size_t)r * (COMM_REDUCE_COUNT + 1) + (size_t)a] / size;
            qsort(col, (size_t)reps, sizeof *col, cmp_double);
            med[a] = col[reps / 2];
            mn[a] = col[0];
        }
        tw_free(col);
        for (int a = 0; a < COMM_REDUCE_COUNT; a++)
            printf("%s reduce=%-7s median_ms=%8.3f min_ms=%8.3f algbw_GBps=%6.2f vs_MPI_Allreduce=%.2fx\n",
                   a == COMM_REDUCE_NATIVE ? "mpi " : "twin", comm_reduce_name((comm_reduce)a),
                   med[a] * 1e3, mn[a] * 1e3, (double)n * 4 / med[a] / 1e9,
                   med[a] / med[COMM_REDUCE_NATIVE]);
        printf("copy (memcpy of the buffer) median_ms=%8.3f\n", med[COMM_REDUCE_COUNT] * 1e3);
    }
    tw_free(buf);
    tw_free(copy);
    tw_free(t);
    return comm_finalize(c) == TW_OK ? 0 : 1;
fail:
    fprintf(stderr, "bench_comm: rank %d: %s\n", rank, tw_errmsg());
    comm_abort(c, 1);
}
