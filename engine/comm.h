/* comm.h: data-parallel communication for training: the ranks of one job, the collectives the
 * trainer needs (all-reduce of gradients and scalars, broadcast, barrier), and the pure
 * functions that split a global batch across ranks and scale its loss so that N ranks
 * train like one.
 *
 * Launch. `mpirun -np N twin train ...` starts N processes; comm_init sees the launcher's
 * environment (OMPI_COMM_WORLD_SIZE from Open MPI; PMI_SIZE from MPICH/Hydra and Slurm PMI-1;
 * PMIX_RANK from a PMIx launcher such as srun --mpi=pmix) and only then calls
 * MPI_Init_thread (MPI_THREAD_FUNNELED: OpenMP workers never call MPI). Without a launcher it
 * is a single rank and never touches MPI, so `twin train` without mpirun needs no MPI runtime
 * set up. A build without MPI (CMake TWIN_MPI=OFF, or MPI not found) is always one rank and
 * refuses a launch of more than one rank (N copies each training alone would write the same
 * outputs). The MPI backend is engine/comm_mpi.c (the only file that includes mpi.h); the
 * build without it uses engine/comm_single.c. NCCL will be a third backend behind the same
 * calls.
 *
 * Reductions. Every rank must get the same bits (replicas that drift apart are no longer
 * data parallel), and a run must be reproducible, so the default reduction has a fixed,
 * documented order: COMM_REDUCE_ORDERED computes, for every element i,
 *     out[i] = ((x_0[i] + x_1[i]) + x_2[i]) + ... + x_{N-1}[i]      (x_r: rank r's buffer)
 * in the buffer's type (float adds for f32, double adds for f64), whatever the buffer size.
 * It runs as a reduce-scatter + all-gather: the buffer is cut into N contiguous chunks, rank q
 * receives chunk q of every rank (MPI_Alltoallv), sums them in rank order, and the sums are
 * gathered back to everyone (MPI_Allgatherv); each rank sends and receives 2(N-1)/N of the
 * buffer, as a ring all-reduce does. COMM_REDUCE_ROOT gives the same bits by gathering
 * everything to rank 0, summing there in rank order and broadcasting (simple, but rank 0
 * receives N-1 buffers). COMM_REDUCE_NATIVE is MPI_Allreduce: the MPI library chooses the
 * algorithm and its order by message size and rank count (bits are the same on every rank
 * with Open MPI's algorithms, but the order is not ours to document). Measured on the 2-core
 * development machine, 2 ranks, 4.6M floats (bench/bench_comm.c; figures in comm_mpi.c):
 * ORDERED 1.04-1.25x the time of MPI_Allreduce, ROOT ~2x. ORDERED is the default because it
 * costs about what MPI_Allreduce costs (<1% of a training step) and its result does not
 * depend on the MPI library, its version or its tuning.
 * No reduction makes N ranks bit-identical to one rank: each rank's gradient is already a sum
 * over its own tokens, so the split itself moves the rounding. What N ranks match is one rank
 * within float reduction-order tolerance; a fixed N is bit-reproducible run to run.
 *
 * Splitting a batch. Every rank reads the same global batch (the dataset is deterministic:
 * same file, seed and position on every rank), and comm_split_batch cuts it into N contiguous
 * shares of whole examples (whole chosen/rejected pairs for preference batches), balanced by
 * token count: share k ends at the example boundary whose token offset is nearest to k*T/N
 * (T the batch's tokens; ties to the earlier boundary), so every share holds T/N tokens give
 * or take the longest unit's length. Shares may be empty when there are fewer units than
 * ranks; an empty share contributes zero loss and zero gradient. The split is a pure
 * function of the batch's example lengths and N, so every rank computes the same one without
 * communicating.
 *
 * Scaling rule (the same loss curve on N ranks as on one). One rank's loss for a batch is the
 * mean over its loss tokens (SFT: tokens whose target >= 0) or over its pairs (preference),
 * i.e. scale * sum, with scale = comm_batch_loss_scale(global batch) = 1 / count over the WHOLE
 * global batch. Each rank computes the SUM of the per-token (per-pair) losses over its share,
 * multiplies it and its gradient by that same global scale (the xent/DPO grad_scale), and
 * all-reduces both with SUM: the result is the one-rank mean and the one-rank gradient, up to
 * the order of float additions. Micro-batches (gradient accumulation) inside a rank use the
 * same global scale. Never average per-rank means: shares hold different numbers of loss
 * tokens, and mean-of-means weights them wrongly.
 *
 * A collective that fails on one rank (out of memory, an MPI error) leaves the other ranks
 * waiting in it: the caller reports the error and ends the job with comm_abort.
 *
 * Errors: TW_ERR_ARG (bad arguments, a malformed launcher variable naming it), TW_ERR_UNSUPPORTED
 * (a multi-rank launch of a build without MPI, an MPI without thread support), TW_ERR_RUNTIME
 * (an MPI call failed: the message names the call and carries MPI's error string),
 * TW_ERR_NOMEM.
 *
 * Thread safety: a comm_ctx belongs to the thread that called comm_init (MPI_THREAD_FUNNELED);
 * collectives must be called by every rank in the same order. One comm_init per process: MPI
 * cannot be initialised again after it was finalised. The split and scale functions are pure
 * and thread-safe.
 */
#ifndef TWIN_COMM_H
#define TWIN_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct comm_ctx comm_ctx;

typedef enum {
    COMM_REDUCE_ORDERED = 0, /* default: reduce-scatter + all-gather, rank order per element */
    COMM_REDUCE_ROOT,        /* gather to rank 0, sum in rank order, broadcast: same bits */
    COMM_REDUCE_NATIVE,      /* MPI_Allreduce: the library's order */
    COMM_REDUCE_COUNT
} comm_reduce;

/* "ordered", "root", "native"; NULL out of range. */
const char *comm_reduce_name(comm_reduce r);
/* The reduction called name; TW_ERR_ARG listing the names when unknown. */
tw_status comm_reduce_parse(const char *name, comm_reduce *out);

/* 1 when this build has the MPI backend (TWIN_HAVE_MPI), else 0. */
int comm_have_mpi(void);

/* The world size a launcher announced in this process's environment: *size = N and *var =
 * the variable's name (static) when one of OMPI_COMM_WORLD_SIZE, PMI_SIZE (or PMIX_RANK,
 * which announces a launch without a size: *size = 0, read from MPI) is set; *size = 1 and
 * *var = NULL when none is. TW_ERR_ARG naming the variable and its value when it is not a
 * positive integer. Reads the environment only. */
tw_status comm_launch_detect(int *size, const char **var);

/* Starts this process's part of the job: MPI when a launcher started it (comm_launch_detect)
 * and the build has MPI, else one rank. *out is NULL on failure. The caller ends it with
 * comm_finalize. The reduction is COMM_REDUCE_ORDERED. */
tw_status comm_init(comm_ctx **out);
/* Waits for nothing, frees the context and finalises MPI when comm_init initialised it.
 * NULL is a no-op (TW_OK). Every rank must call it. */
tw_status comm_finalize(comm_ctx *c);
/* Ends every rank of the job at once with exit status code (MPI_Abort), so that one rank's
 * error does not leave the others waiting in a collective; exit(code) with one rank. For
 * tools/ only (nothing under engine/ ends the process). */
TW_NORETURN void comm_abort(comm_ctx *c, int code);

int comm_rank(const comm_ctx *c);          /* 0 .. size-1 */
int comm_size(const comm_ctx *c);          /* >= 1 */
const char *comm_backend(const comm_ctx *c); /* "single" or "mpi" (static) */
/* Chooses the algorithm of comm_allreduce_sum_f32/_f64 (every rank must choose the same). */
void comm_reduce_set(comm_ctx *c, comm_reduce r);
comm_reduce comm_reduce_get(const comm_ctx *c);

/* In place: buf (n) becomes the element-wise sum of every rank's buf, the same bits on every
 * rank, in the order of the chosen comm_reduce (see above). n must be the same on every
 * rank; n = 0 is a no-op. One rank: buf is unchanged. Uses scratch memory of about n
 * elements (ROOT: n * size on rank 0), kept on the context for the next call. */
tw_status comm_allreduce_sum_f32(comm_ctx *c, float *buf, size_t n);
tw_status comm_allreduce_sum_f64(comm_ctx *c, double *buf, size_t n);
/* buf[0..nbytes) of rank root is copied to every other rank's buf (the seed, the config).
 * nbytes must be the same on every rank. TW_ERR_ARG when root is not a rank. */
tw_status comm_broadcast(comm_ctx *c, void *buf, size_t nbytes, int root);
/* Returns when every rank has called it. */
tw_status comm_barrier(comm_ctx *c);

/* ---- splitting a global batch (pure functions) ------------------------------------------ */

/* Rank k's share of a batch: examples [ex_begin, ex_end) and their tokens [tok_begin,
 * tok_end) (tok_begin = ex_start[ex_begin], tok_end = ex_start[ex_end]). */
typedef struct {
    size_t ex_begin, ex_end;
    size_t tok_begin, tok_end;
} comm_range;

/* Cuts n_units consecutive units, unit u spanning [starts[u], starts[u+1]) tokens
 * (starts: (n_units+1), non-decreasing), into n_ranks contiguous shares: bounds (n_ranks+1)
 * receives unit indices, bounds[0] = 0, bounds[n_ranks] = n_units, non-decreasing, bounds[k]
 * the unit boundary whose offset is nearest to starts[0] + k*T/n_ranks (ties to the lower
 * index), T = starts[n_units] - starts[0]. So every share's token count is within the
 * longest unit's length of T/n_ranks. TW_ERR_ARG: n_ranks < 1, starts decreasing, or a size
 * whose arithmetic would overflow (T * n_ranks >= 2^64). */
tw_status comm_split_units(const size_t *starts, size_t n_units, int n_ranks, size_t *bounds);

/* comm_split_units over b's examples (SFT) or its chosen/rejected pairs (preference: ex_side
 * of example 0 is 0; examples 2j and 2j+1 stay together): out (n_ranks) receives every rank's
 * share. TW_ERR_ARG as comm_split_units, or a preference batch with an odd example count. */
tw_status comm_split_batch(const ds_batch *b, int n_ranks, comm_range *out);

/* Copies share r of src into dst as a batch of its own: tokens, mask, targets and pos as they
 * are; seg, ex_start and row_start re-based to start at 0 (a packed row cut by the share's
 * edge becomes a shorter row; attention never crossed examples anyway); ex_index, ex_side,
 * start and epoch_end copied. dst is a batch from ds_batch_init (or one used before, whose
 * arrays are reused and grown); the caller frees it with ds_batch_free. An empty share gives
 * an empty batch. TW_ERR_ARG (r outside src or not on example boundaries), TW_ERR_NOMEM (dst
 * is left empty). */
tw_status comm_batch_slice(const ds_batch *src, const comm_range *r, ds_batch *dst);

/* The factor every rank multiplies its summed loss and its gradient by (the scaling rule
 * above), from the GLOBAL batch: SFT 1 / (tokens with target >= 0), preference 1 / pairs;
 * 0 when the batch has no loss token (nothing to learn: the step's gradient is zero). */
double comm_batch_loss_scale(const ds_batch *global);

#ifdef __cplusplus
}
#endif
#endif
