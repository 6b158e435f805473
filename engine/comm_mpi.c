/* comm_mpi.c: the MPI transport of comm.h (comm_impl.h); the only file that includes mpi.h.
 *
 * The job's collectives run on a duplicate of MPI_COMM_WORLD owned by the context, with
 * MPI_ERRORS_RETURN, so a failed call comes back as a tw_status carrying MPI's error string
 * instead of aborting inside the library.
 *
 * Reductions (comm.h says why ORDERED is the default): every algorithm works on pieces of at
 * most PIECE elements so that MPI's int counts and displacements never overflow; a piece is
 * reduced independently, which does not change any element's order of addition.
 *
 * Measured (bench/bench_comm.c, 2 ranks on the 2-core development VM (AMD EPYC) while other
 * jobs kept its load near 20, Open MPI 4.1.4, shared-memory btl with CMA, 4.6M floats = the
 * LoRA r=16 gradient of SmolLM2 on all seven projections; medians of 30-40 calls, 4 runs):
 *     ordered  77-85 ms   1.04-1.25x MPI_Allreduce
 *     root    117-146 ms  1.9-2.3x
 *     native   61-74 ms   (MPI_Allreduce)
 * So the fixed order costs ~10-20 ms per optimizer step over the library's algorithm, against
 * steps of seconds on this machine (<1%), and buys results that do not depend on the MPI
 * library, its version or its tuning. ROOT funnels everything through rank 0 and is kept only
 * as the simple reference that must give the same bits.
 */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "comm_impl.h"

/* Elements per piece: 64 Mi (256 MiB of floats) keeps every count and displacement of an
 * N-rank exchange far below INT_MAX while making a piece large enough that its latency is
 * paid once for any real gradient. */
#define PIECE ((size_t)1 << 26)

struct comm_net {
    MPI_Comm comm;
    int have_comm; /* comm was duplicated and must be freed */
    int rank, size;
    int owns_init;       /* comm_net_init called MPI_Init_thread: finalize calls MPI_Finalize */
    void *scratch;       /* reused between calls */
    size_t scratch_bytes;
    int *counts, *displs; /* (size) each */
};

int comm_net_available(void) { return 1; }

static tw_status mpi_fail(int rc, const char *call) {
    char msg[MPI_MAX_ERROR_STRING + 1];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS || len <= 0) {
        snprintf(msg, sizeof msg, "MPI error %d", rc);
    } else {
        msg[len < MPI_MAX_ERROR_STRING ? len : MPI_MAX_ERROR_STRING] = '\0';
    }
    return tw_error(TW_ERR_RUNTIME, "comm: %s failed: %s", call, msg);
}

#define MPI_TRY(call, name)                                                                    \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != MPI_SUCCESS) return mpi_fail(rc_, name);                                    \
    } while (0)

tw_status comm_net_init(comm_net **out, int *rank, int *size) {
    *out = NULL;
    int inited = 0, finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized)
        return tw_error(TW_ERR_RUNTIME, "comm: MPI was already finalised in this process (one "
                                        "comm_init per process)");
    MPI_Initialized(&inited);
    int provided = MPI_THREAD_SINGLE;
    if (!inited) {
        MPI_TRY(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    } else {
        MPI_TRY(MPI_Query_thread(&provided), "MPI_Query_thread");
    }
    if (provided < MPI_THREAD_FUNNELED) {
        if (!inited) MPI_Finalize();
        return tw_error(TW_ERR_UNSUPPORTED,
                        "comm: the MPI library provides thread level %d, below MPI_THREAD_FUNNELED",
                        provided);
    }
    comm_net *net = tw_calloc(1, sizeof *net);
    if (!net) {
        if (!inited) MPI_Finalize();
        return TW_ERR_NOMEM;
    }
    net->owns_init = !inited;
    int rc = MPI_Comm_dup(MPI_COMM_WORLD, &net->comm);
    net->have_comm = rc == MPI_SUCCESS;
    if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(net->comm, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(net->comm, &net->rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(net->comm, &net->size);
    tw_status st = rc == MPI_SUCCESS ? TW_OK : mpi_fail(rc, "MPI_Comm_dup/rank/size");
    if (st == TW_OK) {
        net->counts = tw_calloc((size_t)net->size, sizeof *net->counts);
        net->displs = tw_calloc((size_t)net->size, sizeof *net->displs);
        if (!net->counts || !net->displs) st = TW_ERR_NOMEM;
    }
    if (st) {
        comm_net_finalize(net);
        return st;
    }
    *rank = net->rank;
    *size = net->size;
    *out = net;
    return TW_OK;
}

tw_status comm_net_finalize(comm_net *net) {
    if (!net) return TW_OK;
    int rc = MPI_SUCCESS;
    if (net->have_comm) rc = MPI_Comm_free(&net->comm);
    tw_status st = rc == MPI_SUCCESS ? TW_OK : mpi_fail(rc, "MPI_Comm_free");
    if (net->owns_init) {
        rc = MPI_Finalize();
        if (rc != MPI_SUCCESS && st == TW_OK) st = mpi_fail(rc, "MPI_Finalize");
    }
    tw_free(net->scratch);
    tw_free(net->counts);
    tw_free(net->displs);
    tw_free(net);
    return st;
}

void comm_net_abort(comm_net *net, int code) {
    MPI_Abort(net->have_comm ? net->comm : MPI_COMM_WORLD, code);
    exit(code); /* MPI_Abort does not return; should it, end this rank anyway */
}

static void *scratch_get(comm_net *net, size_t bytes) {
    if (bytes > net->scratch_bytes) {
        tw_free(net->scratch);
        net->scratch = tw_malloc(bytes);
        net->scratch_bytes = net->scratch ? bytes : 0;
    }
    return net->scratch;
}

/* dst (c) = row 0 + row 1 + ... + row n-1, element by element, left to right; row q may be
 * dst itself (each element is read before it is written). Blocks of 512 keep the partial sums
 * in cache whatever n is. */
static void sum_rows_at(void *dst, const void *const *rows, int n, size_t c, comm_dtype t) {
    enum { BLK = 512 };
    for (size_t j0 = 0; j0 < c; j0 += BLK) {
        size_t m = c - j0 < BLK ? c - j0 : BLK;
        if (t == COMM_F32) {
            float acc[BLK];
            memcpy(acc, (const float *)rows[0] + j0, m * sizeof *acc);
            for (int r = 1; r < n; r++) {
                const float *x = (const float *)rows[r] + j0;
                for (size_t j = 0; j < m; j++) acc[j] += x[j];
            }
            memcpy((float *)dst + j0, acc, m * sizeof *acc);
        } else {
            double acc[BLK];
            memcpy(acc, (const double *)rows[0] + j0, m * sizeof *acc);
            for (int r = 1; r < n; r++) {
                const double *x = (const double *)rows[r] + j0;
                for (size_t j = 0; j < m; j++) acc[j] += x[j];
            }
            memcpy((double *)dst + j0, acc, m * sizeof *acc);
        }
    }
}

/* Reduce-scatter (Alltoallv of chunk q of every other rank to rank q; its own chunk stays in
 * place), rank-order sums, all-gather. */
static tw_status reduce_ordered(comm_net *net, char *buf, size_t m, MPI_Datatype dt, size_t esz,
                                comm_dtype t) {
    int n = net->size, q = net->rank;
    size_t base = m / (size_t)n, extra = m % (size_t)n, off = 0;
    for (int r = 0; r < n; r++) {
        net->counts[r] = (int)(base + ((size_t)r < extra));
        net->displs[r] = (int)off;
        off += (size_t)net->counts[r];
    }
    size_t cq = (size_t)net->counts[q];
    char *in = scratch_get(net, ((size_t)n - 1) * (cq ? cq : 1) * esz);
    /* per rank: send count, receive count, receive offset; then the rows of the sum */
    int *ints = tw_malloc(3 * (size_t)n * sizeof *ints);
    const void **rows = tw_malloc((size_t)n * sizeof *rows);
    if (!in || !ints || !rows) {
        tw_free(ints);
        tw_free(rows);
        return tw_error(TW_ERR_NOMEM, "comm: no scratch for a %zu-element reduction", m);
    }
    int *scounts = ints, *rcounts = ints + n, *rdispls = ints + 2 * n;
    for (int r = 0; r < n; r++) {
        size_t slot = (size_t)(r < q ? r : r - 1); /* rank r's chunk q in the scratch */
        scounts[r] = r == q ? 0 : net->counts[r];
        rcounts[r] = r == q ? 0 : (int)cq;
        rdispls[r] = r == q ? 0 : (int)(slot * cq);
        rows[r] = r == q ? (const void *)(buf + (size_t)net->displs[q] * esz) : in + slot * cq * esz;
    }
    int rc = MPI_Alltoallv(buf, scounts, net->displs, dt, in, rcounts, rdispls, dt, net->comm);
    if (rc == MPI_SUCCESS && cq) sum_rows_at(buf + (size_t)net->displs[q] * esz, rows, n, cq, t);
    tw_free(ints);
    tw_free(rows);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Alltoallv");
    MPI_TRY(MPI_Allgatherv(MPI_IN_PLACE, 0, dt, buf, net->counts, net->displs, dt, net->comm),
            "MPI_Allgatherv");
    return TW_OK;
}

/* Gather everything to rank 0, sum in rank order there, broadcast. */
static tw_status reduce_root(comm_net *net, char *buf, size_t m, MPI_Datatype dt, size_t esz,
                             comm_dtype t) {
    char *in = NULL;
    if (net->rank == 0) {
        in = scratch_get(net, (size_t)net->size * m * esz);
        if (!in) return tw_error(TW_ERR_NOMEM, "comm: no scratch for a %zu-element reduction", m);
    }
    MPI_TRY(MPI_Gather(buf, (int)m, dt, in, (int)m, dt, 0, net->comm), "MPI_Gather");
    if (net->rank == 0) {
        const void **rows = tw_malloc((size_t)net->size * sizeof *rows);
        if (!rows) return tw_error(TW_ERR_NOMEM, "comm: out of memory");
        for (int r = 0; r < net->size; r++) rows[r] = in + (size_t)r * m * esz;
        sum_rows_at(buf, rows, net->size, m, t);
        tw_free(rows);
    }
    MPI_TRY(MPI_Bcast(buf, (int)m, dt, 0, net->comm), "MPI_Bcast");
    return TW_OK;
}

tw_status comm_net_allreduce_sum(comm_net *net, void *buf, size_t n, comm_dtype t, comm_reduce r) {
    MPI_Datatype dt = t == COMM_F32 ? MPI_FLOAT : MPI_DOUBLE;
    size_t esz = t == COMM_F32 ? sizeof(float) : sizeof(double);
    /* ROOT holds size pieces on rank 0 at once: shrink its piece so that stays PIECE. */
    size_t piece = r == COMM_REDUCE_ROOT ? PIECE / (size_t)net->size : PIECE;
    if (piece == 0) piece = 1;
    for (size_t at = 0; at < n; at += piece) {
        size_t m = n - at < piece ? n - at : piece;
        char *p = (char *)buf + at * esz;
        tw_status st = TW_OK;
        switch (r) {
        case COMM_REDUCE_ORDERED: st = reduce_ordered(net, p, m, dt, esz, t); break;
        case COMM_REDUCE_ROOT: st = reduce_root(net, p, m, dt, esz, t); break;
        case COMM_REDUCE_NATIVE: {
            int rc = MPI_Allreduce(MPI_IN_PLACE, p, (int)m, dt, MPI_SUM, net->comm);
            if (rc != MPI_SUCCESS) st = mpi_fail(rc, "MPI_Allreduce");
            break;
        }
        default: TW_ASSERT(!"unknown comm_reduce");
        }
        if (st) return st;
    }
    return TW_OK;
}

tw_status comm_net_broadcast(comm_net *net, void *buf, size_t nbytes, int root) {
    for (size_t at = 0; at < nbytes; at += PIECE) {
        size_t m = nbytes - at < PIECE ? nbytes - at : PIECE;
        MPI_TRY(MPI_Bcast((char *)buf + at, (int)m, MPI_BYTE, root, net->comm), "MPI_Bcast");
    }
    return TW_OK;
}

tw_status comm_net_barrier(comm_net *net) {
    MPI_TRY(MPI_Barrier(net->comm), "MPI_Barrier");
    return TW_OK;
}
