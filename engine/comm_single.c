/* comm_single.c: the transport of a build without MPI (comm_impl.h): there is none, so a job
 * is always one rank. comm.c never calls the collectives here (comm_net_available is 0 and
 * comm_init refuses a multi-rank launch), so reaching one of them is a broken invariant. */
#include <stdlib.h>

#include "comm_impl.h"

int comm_net_available(void) { return 0; }

tw_status comm_net_init(comm_net **out, int *rank, int *size) {
    *out = NULL;
    *rank = 0;
    *size = 1;
    return tw_error(TW_ERR_UNSUPPORTED, "comm: this twin was built without MPI");
}

tw_status comm_net_finalize(comm_net *net) {
    TW_ASSERT(net == NULL);
    return TW_OK;
}

void comm_net_abort(comm_net *net, int code) {
    (void)net;
    exit(code);
}

tw_status comm_net_allreduce_sum(comm_net *net, void *buf, size_t n, comm_dtype t, comm_reduce r) {
    TW_ASSERT(!"comm_net_allreduce_sum without a transport");
    return TW_ERR_UNSUPPORTED;
}

tw_status comm_net_broadcast(comm_net *net, void *buf, size_t nbytes, int root) {
    TW_ASSERT(!"comm_net_broadcast without a transport");
    return TW_ERR_UNSUPPORTED;
}

tw_status comm_net_barrier(comm_net *net) {
    TW_ASSERT(!"comm_net_barrier without a transport");
    return TW_ERR_UNSUPPORTED;
}
