/* comm_impl.h: private: what engine/comm.c asks of a transport backend. comm.c holds the
 * public API, the single-rank paths and the argument checks; a backend only moves bytes
 * between the ranks of a multi-rank job. Exactly one backend is linked: engine/comm_mpi.c
 * (TWIN_HAVE_MPI) or engine/comm_single.c (no transport: every call but comm_net_available
 * reports that the build has none).
 *
 * Every function is called on the thread that called comm_net_init, by every rank in the
 * same order, with arguments comm.c already checked (n > 0, a valid root, a valid reduce).
 */
#ifndef TWIN_COMM_IMPL_H
#define TWIN_COMM_IMPL_H

#include <stddef.h>

#include "comm.h"

typedef struct comm_net comm_net;

typedef enum { COMM_F32 = 0, COMM_F64 } comm_dtype;

/* 1 when this build has a transport (MPI), else 0. */
int comm_net_available(void);
/* Joins the job (MPI_Init_thread unless MPI is already initialised) and reports this rank and
 * the world size. *out is NULL on failure. */
tw_status comm_net_init(comm_net **out, int *rank, int *size);
/* Leaves the job (MPI_Finalize when comm_net_init initialised MPI) and frees net. */
tw_status comm_net_finalize(comm_net *net);
TW_NORETURN void comm_net_abort(comm_net *net, int code);
/* buf (n elements of type t) becomes the element-wise sum over ranks, by algorithm r. */
tw_status comm_net_allreduce_sum(comm_net *net, void *buf, size_t n, comm_dtype t, comm_reduce r);
tw_status comm_net_broadcast(comm_net *net, void *buf, size_t nbytes, int root);
tw_status comm_net_barrier(comm_net *net);

#endif
