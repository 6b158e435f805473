/* comm.c: the public half of comm.h: launch detection, the context, single-rank collectives
 * (the identity), argument checks before the transport (comm_mpi.c or comm_single.c) is
 * asked, and the pure batch-splitting functions. */
#include "comm.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "comm_impl.h"

struct comm_ctx {
    int rank, size;
    comm_reduce reduce;
    comm_net *net; /* NULL for a single rank */
};

static const char *const reduce_names[COMM_REDUCE_COUNT] = {"ordered", "root", "native"};

const char *comm_reduce_name(comm_reduce r) {
    return (unsigned)r < COMM_REDUCE_COUNT ? reduce_names[r] : NULL;
}

tw_status comm_reduce_parse(const char *name, comm_reduce *out) {
    for (int i = 0; i < COMM_REDUCE_COUNT; i++)
        if (name && strcmp(name, reduce_names[i]) == 0) {
            *out = (comm_reduce)i;
            return TW_OK;
        }
    return tw_error(TW_ERR_ARG, "comm: unknown reduction '%s' (ordered, root, native)",
                    name ? name : "(null)");
}

int comm_have_mpi(void) { return comm_net_available(); }

/* A launcher's size variable: a decimal integer in [1, INT_MAX], nothing else around it. */
static tw_status parse_size(const char *var, const char *v, int *out) {
    char *end = NULL;
    errno = 0;
    long x = (v[0] >= '0' && v[0] <= '9') ? strtol(v, &end, 10) : -1;
    if (x < 1 || x > INT_MAX || errno || !end || *end)
        return tw_error(TW_ERR_ARG, "comm: environment variable %s='%.40s' is not a positive rank count",
                        var, v);
    *out = (int)x;
    return TW_OK;
}

tw_status comm_launch_detect(int *size, const char **var) {
    static const char *const size_vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    *size = 1;
    *var = NULL;
    for (size_t i = 0; i < sizeof size_vars / sizeof size_vars[0]; i++) {
        const char *v = getenv(size_vars[i]);
        if (!v) continue;
        *var = size_vars[i];
        return parse_size(size_vars[i], v, size);
    }
    if (getenv("PMIX_RANK")) { /* a PMIx launch: the size is MPI's to tell */
        *size = 0;
        *var = "PMIX_RANK";
    }
    return TW_OK;
}

tw_status comm_init(comm_ctx **out) {
    *out = NULL;
    int launched = 1;
    const char *var = NULL;
    tw_status st = comm_launch_detect(&launched, &var);
    if (st) return st;
    int use_net = var && comm_net_available();
    if (var && !use_net) {
        if (launched > 1)
            return tw_error(TW_ERR_UNSUPPORTED,
                            "comm: launched as one of %d ranks (%s) but this twin was built without "
                            "MPI (TWIN_MPI=OFF or MPI not found); rebuild with MPI or run one process",
                            launched, var);
        if (launched == 0) /* PMIx without a size and no MPI here: most likely one task */
            tw_log_warn("comm: %s is set but this twin has no MPI: running as a single rank", var);
    }
    comm_ctx *c = tw_calloc(1, sizeof *c);
    if (!c) return TW_ERR_NOMEM;
    c->size = 1;
    c->reduce = COMM_REDUCE_ORDERED;
    if (use_net) {
        st = comm_net_init(&c->net, &c->rank, &c->size);
        if (st == TW_OK && launched > 0 && c->size != launched) {
            /* A launcher that says N while MPI says M: ranks would wait for peers that are
             * not there. */
            st = tw_error(TW_ERR_RUNTIME, "comm: %s says %d ranks but MPI reports %d", var,
                          launched, c->size);
            comm_net_finalize(c->net);
        }
        if (st) {
            tw_free(c);
            return st;
        }
    }
    *out = c;
    return TW_OK;
}

tw_status comm_finalize(comm_ctx *c) {
    if (!c) return TW_OK;
    tw_status st = c->net ? comm_net_finalize(c->net) : TW_OK;
    tw_free(c);
    return st;
}

void comm_abort(comm_ctx *c, int code) {
    if (c && c->net) comm_net_abort(c->net, code);
    exit(code);
}

int comm_rank(const comm_ctx *c) { return c->rank; }
int comm_size(const comm_ctx *c) { return c->size; }
const char *comm_backend(const comm_ctx *c) { return c->net ? "mpi" : "single"; }

void comm_reduce_set(comm_ctx *c, comm_reduce r) {
    TW_ASSERT((unsigned)r < COMM_REDUCE_COUNT);
    c->reduce = r;
}
comm_reduce comm_reduce_get(const comm_ctx *c) { return c->reduce; }

static tw_status allreduce(comm_ctx *c, void *buf, size_t n, comm_dtype t) {
    if (!c) return tw_error(TW_ERR_ARG, "comm_allreduce: no context");
    if (n == 0 || !c->net || c->size == 1) return TW_OK;
    if (!buf) return tw_error(TW_ERR_ARG, "comm_allreduce: NULL buffer of %zu elements", n);
    return comm_net_allreduce_sum(c->net, buf, n, t, c->reduce);
}

tw_status comm_allreduce_sum_f32(comm_ctx *c, float *buf, size_t n) {
    return allreduce(c, buf, n, COMM_F32);
}

tw_status comm_allreduce_sum_f64(comm_ctx *c, double *buf, size_t n) {
    return allreduce(c, buf, n, COMM_F64);
}

tw_status comm_broadcast(comm_ctx *c, void *buf, size_t nbytes, int root) {
    if (!c) return tw_error(TW_ERR_ARG, "comm_broadcast: no context");
    if (root < 0 || root >= c->size)
        return tw_error(TW_ERR_ARG, "comm_broadcast: root %d is not a rank (size %d)", root, c->size);
    if (nbytes == 0 || !c->net || c->size == 1) return TW_OK;
    if (!buf) return tw_error(TW_ERR_ARG, "comm_broadcast: NULL buffer of %zu bytes", nbytes);
    return comm_net_broadcast(c->net, buf, nbytes, root);
}

tw_status comm_barrier(comm_ctx *c) {
    if (!c) return tw_error(TW_ERR_ARG, "comm_barrier: no context");
    if (!c->net || c->size == 1) return TW_OK;
    return comm_net_barrier(c->net);
}

/* ---- splitting ------------------------------------------------------------------------- */

/* comm_split_units over starts[0], starts[stride], ..., starts[n_units * stride]. */
static tw_status split_strided(const size_t *starts, size_t stride, size_t n_units, int n_ranks,
                               size_t *bounds) {
    if (n_ranks < 1) return tw_error(TW_ERR_ARG, "comm_split: n_ranks %d < 1", n_ranks);
    if (n_units > 0 && !starts) return tw_error(TW_ERR_ARG, "comm_split: no unit offsets");
    size_t s0 = n_units ? starts[0] : 0;
    for (size_t u = 0; u < n_units; u++)
        if (starts[(u + 1) * stride] < starts[u * stride])
            return tw_error(TW_ERR_ARG, "comm_split: unit %zu ends at %zu before it starts at %zu", u,
                            starts[(u + 1) * stride], starts[u * stride]);
    uint64_t total = n_units ? (uint64_t)(starts[n_units * stride] - s0) : 0;
    uint64_t nr = (uint64_t)n_ranks;
    if (total && total > UINT64_MAX / nr)
        return tw_error(TW_ERR_ARG, "comm_split: %llu tokens x %d ranks overflows",
                        (unsigned long long)total, n_ranks);
    /* Share k ends at the unit boundary i minimising |N * (starts[i] - s0) - k * T| (exact in
     * integers, no rounding of k*T/N), ties to the lower i. Targets grow with k, so the scan
     * only moves forward: O(n_units + n_ranks). */
    bounds[0] = 0;
    size_t i = 0;
    for (int k = 1; k < n_ranks; k++) {
        uint64_t target = (uint64_t)k * total; /* <= (N-1) T: no overflow (checked above) */
        /* a = the first boundary at or past the target */
        while (i < n_units && (uint64_t)(starts[i * stride] - s0) * nr < target) i++;
        size_t best = i;
        if (i > bounds[k - 1]) {
            uint64_t above = (uint64_t)(starts[i * stride] - s0) * nr - target;
            uint64_t below = target - (uint64_t)(starts[(i - 1) * stride] - s0) * nr;
            if (below <= above) best = i - 1;
            /* empty units before it end at the same offset: the lowest such index */
            while (best > bounds[k - 1] && starts[(best - 1) * stride] == starts[best * stride]) best--;
        }
        bounds[k] = best;
        i = best;
    }
    bounds[n_ranks] = n_units;
    return TW_OK;
}

tw_status comm_split_units(const size_t *starts, size_t n_units, int n_ranks, size_t *bounds) {
    if (!bounds) return tw_error(TW_ERR_ARG, "comm_split_units: no bounds array");
    return split_strided(starts, 1, n_units, n_ranks, bounds);
}

static int batch_is_preference(const ds_batch *b) {
    return b->n_examples > 0 && b->ex_side && b->ex_side[0] >= 0;
}

tw_status comm_split_batch(const ds_batch *b, int n_ranks, comm_range *out) {
    if (!b || !out) return tw_error(TW_ERR_ARG, "comm_split_batch: NULL batch or output");
    if (n_ranks < 1) return tw_error(TW_ERR_ARG, "comm_split_batch: n_ranks %d < 1", n_ranks);
    size_t n = b->n_examples;
    if (n > 0 && !b->ex_start) return tw_error(TW_ERR_ARG, "comm_split_batch: batch without ex_start");
    int pairs = batch_is_preference(b);
    if (pairs && n % 2)
        return tw_error(TW_ERR_ARG,
                        "comm_split_batch: preference batch with an odd example count %zu", n);
    size_t stride = pairs ? 2 : 1, n_units = n / stride;
    size_t *bounds = tw_malloc(((size_t)n_ranks + 1) * sizeof *bounds);
    if (!bounds) return TW_ERR_NOMEM;
    tw_status st = split_strided(b->ex_start, stride, n_units, n_ranks, bounds);
    if (st == TW_OK) {
        if (n > 0 && b->ex_start[n] != b->n_tokens) {
            st = tw_error(TW_ERR_ARG, "comm_split_batch: ex_start[%zu] = %zu but the batch has %zu tokens",
                          n, b->ex_start[n], b->n_tokens);
        }
    }
    if (st == TW_OK) {
        for (int k = 0; k < n_ranks; k++) {
            out[k].ex_begin = bounds[k] * stride;
            out[k].ex_end = bounds[k + 1] * stride;
            out[k].tok_begin = n ? b->ex_start[out[k].ex_begin] : 0;
            out[k].tok_end = n ? b->ex_start[out[k].ex_end] : 0;
        }
    }
    tw_free(bounds);
    return st;
}

/* Grows p (cap elements of size sz) to need elements; 0 on success. p is kept on failure. */
static int grow(void **p, size_t need, size_t sz) {
    void *q = tw_realloc(*p, need * sz);
    if (!q) return -1;
    *p = q;
    return 0;
}

/* Makes room in dst as ds_next_batch does: capacities are per group, every array of a group
 * at least its group's capacity. */
static int slice_reserve(ds_batch *d, size_t t, size_t r, size_t e) {
    if (t > d->cap_t) {
        if (grow((void **)&d->tokens, t, sizeof *d->tokens) || grow((void **)&d->mask, t, sizeof *d->mask) ||
            grow((void **)&d->targets, t, sizeof *d->targets) || grow((void **)&d->pos, t, sizeof *d->pos) ||
            grow((void **)&d->seg, t, sizeof *d->seg))
            return -1;
        d->cap_t = t;
    }
    if (r + 1 > d->cap_r) {
        if (grow((void **)&d->row_start, r + 1, sizeof *d->row_start)) return -1;
        d->cap_r = r + 1;
    }
    if (e + 1 > d->cap_e) {
        if (grow((void **)&d->ex_start, e + 1, sizeof *d->ex_start) ||
            grow((void **)&d->ex_index, e + 1, sizeof *d->ex_index) ||
            grow((void **)&d->ex_side, e + 1, sizeof *d->ex_side))
            return -1;
        d->cap_e = e + 1;
    }
    return 0;
}

tw_status comm_batch_slice(const ds_batch *src, const comm_range *r, ds_batch *dst) {
    if (!src || !r || !dst || src == dst)
        return tw_error(TW_ERR_ARG, "comm_batch_slice: NULL or aliased batch/range");
    dst->n_tokens = dst->n_rows = dst->n_examples = 0;
    if (r->ex_begin > r->ex_end || r->ex_end > src->n_examples)
        return tw_error(TW_ERR_ARG, "comm_batch_slice: examples [%zu, %zu) outside the batch's %zu",
                        r->ex_begin, r->ex_end, src->n_examples);
    size_t tb = src->n_examples ? src->ex_start[r->ex_begin] : 0;
    size_t te = src->n_examples ? src->ex_start[r->ex_end] : 0;
    if (r->tok_begin != tb || r->tok_end != te || tb > te || te > src->n_tokens)
        return tw_error(TW_ERR_ARG,
                        "comm_batch_slice: tokens [%zu, %zu) are not examples [%zu, %zu) = [%zu, %zu)",
                        r->tok_begin, r->tok_end, r->ex_begin, r->ex_end, tb, te);
    size_t nt = te - tb, ne = r->ex_end - r->ex_begin;
    /* Rows: every src row that overlaps [tb, te), clipped to it. */
    size_t row0 = 0, nr = 0;
    if (nt) {
        while (row0 + 1 < src->n_rows && src->row_start[row0 + 1] <= tb) row0++;
        for (size_t j = row0; j < src->n_rows && src->row_start[j] < te; j++) nr++;
    }
    if (slice_reserve(dst, nt, nr, ne)) return tw_error(TW_ERR_NOMEM, "comm_batch_slice: out of memory");
    if (nt) {
        memcpy(dst->tokens, src->tokens + tb, nt * sizeof *dst->tokens);
        memcpy(dst->mask, src->mask + tb, nt * sizeof *dst->mask);
        memcpy(dst->targets, src->targets + tb, nt * sizeof *dst->targets);
        memcpy(dst->pos, src->pos + tb, nt * sizeof *dst->pos);
        for (size_t t = 0; t < nt; t++) dst->seg[t] = src->seg[tb + t] - (int32_t)r->ex_begin;
    }
    for (size_t j = 0; j < nr; j++) {
        size_t s = src->row_start[row0 + j];
        dst->row_start[j] = (s > tb ? s : tb) - tb;
    }
    dst->row_start[nr] = nt;
    for (size_t e = 0; e < ne; e++) {
        dst->ex_start[e] = src->ex_start[r->ex_begin + e] - tb;
        dst->ex_index[e] = src->ex_index[r->ex_begin + e];
        dst->ex_side[e] = src->ex_side[r->ex_begin + e];
    }
    dst->ex_start[ne] = nt;
    dst->n_tokens = nt;
    dst->n_rows = nr;
    dst->n_examples = ne;
    dst->epoch_end = src->epoch_end;
    dst->start = src->start;
    return TW_OK;
}

double comm_batch_loss_scale(const ds_batch *global) {
    if (!global) return 0.0;
    size_t count = 0;
    if (batch_is_preference(global)) {
        count = global->n_examples / 2;
    } else {
        for (size_t t = 0; t < global->n_tokens; t++) count += global->targets[t] >= 0;
    }
    return count ? 1.0 / (double)count : 0.0;
}
