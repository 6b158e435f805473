/* cmd_bench_hnsw.c: twin bench hnsw: twin's HNSW index (pipelines/hnsw.h) beside hnswlib
 * (bench/anchor_hnswlib.cpp, run as a separate program on the same files), same data, same M,
 * ef_construction, k, ef sweep and build threads, measured in the same run.
 *
 *   twin bench hnsw [--base B.fvecs --query Q.fvecs [--gt G.ivecs]] [--metric ip|cosine|l2]
 *                   [--M 16] [--ef-construction 200] [--k 10] [--ef 16,32,64] [--threads N]
 *                   [--int8] [--n N] [--nq N] [--dim D] [--repeat R]
 *
 * Without files it makes clustered random data (--n 100,000 vectors of --dim 384 around 1,000
 * centres, --nq 1,000 queries near them), deterministically. The ground truth is twin's exact
 * scan (hnsw_search_exact) unless --gt is given; it is written as .ivecs, with the data as
 * .fvecs, into a temporary folder that both sides read. Searches run one query at a time on one
 * thread on both sides (hnswlib's searchKnn loop); builds use --threads (default: all cores).
 * The anchor is `anchor_hnswlib` beside the twin program in the build tree ($TWIN_HNSWLIB_ANCHOR
 * overrides); without it twin's lines are printed alone with the reason.
 *
 * A figure to trust on a shared machine (other builds running beside it):
 *   - the runs are interleaved: the anchor runs as a coprocess (anchor_hnswlib --serve) that
 *     builds or searches when told, so each round builds twin and hnswlib one after the other,
 *     then searches each ef on both one after the other; the side that goes first alternates
 *     from round to round, so a drift in the machine's load favours neither;
 *   - --repeat R rounds (default 3), each with fresh builds; figures are medians with the
 *     [min-max] over the rounds, and each ratio is the median of the per-round ratios (pairs
 *     measured minutes apart at most, under about the same load);
 *   - CPU time beside wall time: the build's process CPU seconds (all build threads; twin's
 *     process does nothing else meanwhile) and the searches' thread CPU seconds, on both
 *     sides; CPU time counts what each side executed and not the time it waited for a core,
 *     so it is the steadier figure when the machine is oversubscribed. The anchor's whole-run
 *     CPU time from wait4 is printed too, as a check on its own figures.
 *
 * Prints per round "round r/R: twin build_s=S cpu_s=C" and "round r/R: twin ef=E
 * recall@10=R qps=Q cpu_qps=P" (hnswlib's and, with --int8, twin-int8's the same), then the
 * medians in the ARCHITECTURE.md form, "twin build_s=S ..." and one "twin ef=E recall@10=R
 * qps=Q ..." line per ef, then a summary: QPS ratios (twin / hnswlib) at recall 0.90 / 0.95 /
 * 0.99 (interpolated on the ef sweep), wall and CPU, the build time ratio, bytes per vector of
 * both, and with --int8 the int8 / f32 QPS ratio at recall 0.95.
 */
#include "cli.h"
#include "pipelines/hnsw.h"

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BH_MAX_EF 32
#define BH_MAX_ROUNDS 16

/* One side's figures, per round r and ef index e. */
typedef struct {
    const char *label;
    int n;
    int ef[BH_MAX_EF];
    double recall[BH_MAX_ROUNDS][BH_MAX_EF], qps[BH_MAX_ROUNDS][BH_MAX_EF], cpu_qps[BH_MAX_ROUNDS][BH_MAX_EF];
    double build_s[BH_MAX_ROUNDS], build_cpu[BH_MAX_ROUNDS];
    double bytes_per_vector;
    int rounds; /* rounds completed */
    int ran;    /* 0: missing or failed (no summary for it) */
} bh_side;

typedef enum { BH_WALL, BH_CPU } bh_clock;

static double bh_cpu_s(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bh_dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n) (n >= 1); *lo, *hi get the extremes. */
static double bh_median(const double *v, int n, double *lo, double *hi) {
    double t[BH_MAX_ROUNDS];
    memcpy(t, v, (size_t)n * sizeof *t);
    qsort(t, (size_t)n, sizeof *t, bh_dcmp);
    if (lo) *lo = t[0];
    if (hi) *hi = t[n - 1];
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

typedef struct {
    uint64_t s;
} bh_rng;

static uint64_t bh_next(bh_rng *r) {
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s * 0x2545F4914F6CDD1Dull;
}
/* roughly normal: the sum of 4 uniforms, centred, unit variance */
static float bh_gauss(bh_rng *r) {
    double s = 0;
    for (int i = 0; i < 4; i++) s += (double)(bh_next(r) >> 11) * 0x1p-53;
    return (float)((s - 2.0) * 1.7320508);
}

/* n vectors (n, dim) around n_c centres (noise 0.3 of the centres' spread), query vectors
 * (nq, dim) around the same centres. */
static void bh_make(float *base, int64_t n, float *qs, int64_t nq, int dim, int n_c) {
    bh_rng r = {0x1234567887654321ull};
    float *c = tw_malloc((size_t)n_c * (size_t)dim * sizeof(float));
    if (!c) return;
    for (size_t i = 0; i < (size_t)n_c * (size_t)dim; i++) c[i] = bh_gauss(&r);
    for (int64_t i = 0; i < n + nq; i++) {
        float *v = i < n ? base + (size_t)i * (size_t)dim : qs + (size_t)(i - n) * (size_t)dim;
        const float *cc = c + (size_t)(bh_next(&r) % (uint64_t)n_c) * (size_t)dim;
        for (int j = 0; j < dim; j++) v[j] = cc[j] + 0.3f * bh_gauss(&r);
    }
    tw_free(c);
}

static int bh_parse_efs(const char *s, bh_side *side) {
    side->n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 100000 || side->n == BH_MAX_EF) return -1;
        side->ef[side->n++] = (int)v;
        s = end;
        if (*s == ',') s++;
        else if (*s) return -1;
    }
    return side->n ? 0 : -1;
}

/* QPS (wall or CPU) of round r at recall `target` on the sweep: the first ef reaching it when
 * the first already does, else linear between the two efs around it; < 0 when the sweep never
 * reaches it. */
static double bh_qps_at(const bh_side *s, int r, double target, bh_clock clk) {
    const double *q = clk == BH_WALL ? s->qps[r] : s->cpu_qps[r], *rc = s->recall[r];
    for (int i = 0; i < s->n; i++) {
        if (rc[i] < target) continue;
        if (i == 0) return q[0];
        double r0 = rc[i - 1], r1 = rc[i];
        if (r1 <= r0) return q[i];
        double t = (target - r0) / (r1 - r0);
        return q[i - 1] + t * (q[i] - q[i - 1]);
    }
    return -1;
}

/* The median over rounds of a's / b's figure at recall target (per-round ratios), with the
 * spread; < 0 when some round does not reach the target on either side. */
static double bh_ratio_at(const bh_side *a, const bh_side *b, double target, bh_clock clk, double *lo, double *hi) {
    double v[BH_MAX_ROUNDS];
    int n = a->rounds < b->rounds ? a->rounds : b->rounds;
    for (int r = 0; r < n; r++) {
        double x = bh_qps_at(a, r, target, clk), y = bh_qps_at(b, r, target, clk);
        if (x <= 0 || y <= 0) return -1;
        v[r] = x / y;
    }
    return n ? bh_median(v, n, lo, hi) : -1;
}

/* The median over rounds of the QPS at recall target; < 0 when a round misses it. */
static double bh_qps_median(const bh_side *s, double target, bh_clock clk) {
    double v[BH_MAX_ROUNDS];
    for (int r = 0; r < s->rounds; r++)
        if ((v[r] = bh_qps_at(s, r, target, clk)) <= 0) return -1;
    return s->rounds ? bh_median(v, s->rounds, NULL, NULL) : -1;
}

/* Builds twin's index over base (n, dim) with `threads` threads into *out: round r's build
 * figures. 0 on success. */
static int bh_twin_build(bh_side *side, int r, const hnsw_params *p, const float *base, int64_t n, int threads,
                         hnsw_index **out) {
    hnsw_index *ix = NULL;
    *out = NULL;
    if (hnsw_new(p, &ix) != TW_OK) return cli_fail_status("bench hnsw");
    int64_t *ids = tw_malloc((size_t)n * sizeof *ids);
    if (!ids) {
        hnsw_free(ix);
        return cli_fail(CLI_ERR, "bench hnsw", "no memory");
    }
    for (int64_t i = 0; i < n; i++) ids[i] = i;
    double t0 = tw_now_s(), c0 = bh_cpu_s(CLOCK_PROCESS_CPUTIME_ID);
    tw_status st = hnsw_add_batch(ix, ids, base, NULL, n, threads);
    side->build_s[r] = tw_now_s() - t0;
    side->build_cpu[r] = bh_cpu_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    tw_free(ids);
    if (st != TW_OK) {
        hnsw_free(ix);
        return cli_fail_status("bench hnsw");
    }
    side->bytes_per_vector = (double)hnsw_memory_bytes(ix) / (double)n;
    *out = ix;
    return 0;
}

/* One pass of the nq queries (nq, dim) at ef index e, one at a time on this thread, as the
 * anchor's searchKnn loop: the clocks cover the searches only; the recall is counted after.
 * hits: (nq, k) scratch. 0 on success. */
static int bh_twin_search(bh_side *side, int r, int e, const hnsw_index *ix, const float *qs, int64_t nq, int dim,
                          const int32_t *gt, int gt_dim, int k, hnsw_hit *hits, int32_t *nfound) {
    tw_status st = TW_OK;
    double t0 = tw_now_s(), c0 = bh_cpu_s(CLOCK_THREAD_CPUTIME_ID);
    for (int64_t q = 0; q < nq && st == TW_OK; q++)
        st = hnsw_search(ix, qs + (size_t)q * (size_t)dim, k, side->ef[e], NULL, hits + (size_t)q * (size_t)k, &nfound[q]);
    double dt = tw_now_s() - t0, dc = bh_cpu_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    if (st != TW_OK) return cli_fail_status("bench hnsw");
    int64_t hit = 0;
    for (int64_t q = 0; q < nq; q++)
        for (int32_t j = 0; j < nfound[q]; j++)
            for (int g = 0; g < k; g++)
                if (gt[(size_t)q * (size_t)gt_dim + (size_t)g] == (int32_t)hits[(size_t)q * (size_t)k + (size_t)j].id) {
                    hit++;
                    break;
                }
    side->recall[r][e] = (double)hit / (double)(nq * k);
    side->qps[r][e] = (double)nq / dt;
    side->cpu_qps[r][e] = dc > 0 ? (double)nq / dc : 0;
    return 0;
}

/* ---- the anchor, a coprocess ------------------------------------------------------------- */

typedef struct {
    pid_t pid;
    FILE *to, *from; /* its stdin, its stdout (stderr joined) */
} bh_child;

/* Starts argv[0] with pipes on its stdin and stdout/stderr. 0 on success. */
static int bh_child_start(char *const argv[], bh_child *c) {
    int in[2], out[2];
    c->pid = -1;
    c->to = c->from = NULL;
    if (pipe(in) != 0) return -1;
    if (pipe(out) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(out[1], 2);
        close(in[0]), close(in[1]), close(out[0]), close(out[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    c->pid = pid;
    c->to = fdopen(in[1], "w");
    c->from = fdopen(out[0], "r");
    if (!c->to || !c->from) {
        if (c->to) fclose(c->to);
        else close(in[1]);
        if (c->from) fclose(c->from);
        else close(out[0]);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        c->pid = -1;
        c->to = c->from = NULL;
        return -1;
    }
    return 0;
}

/* Reads the anchor's lines until one starts with `want` (echoing each with `prefix`); the
 * line goes to buf. 0 when found, -1 at end of its output. */
static int bh_child_expect(bh_child *c, const char *want, const char *prefix, char *buf, size_t cap) {
    while (c->from && fgets(buf, (int)cap, c->from)) {
        if (strncmp(buf, want, strlen(want)) == 0) return 0;
        printf("%s%s", prefix, buf); /* anything else it says (errors) is shown as it is */
    }
    return -1;
}

/* Ends the anchor: quit, then its exit status and its whole-run CPU seconds from wait4. */
static int bh_child_end(bh_child *c, double *cpu_s) {
    *cpu_s = 0;
    if (c->pid < 0) return -1;
    if (c->to) {
        fputs("quit\n", c->to);
        fclose(c->to);
    }
    if (c->from) fclose(c->from);
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    if (wait4(c->pid, &status, 0, &ru) < 0) return -1;
    *cpu_s = (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
             1e-6 * (double)ru.ru_stime.tv_usec;
    c->pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* Anchor build for round r; on failure the anchor is marked not run. */
static void bh_anchor_build(bh_child *c, bh_side *hl, int r, const char *prefix) {
    char line[512];
    double a, b;
    if (!hl->ran) return;
    fputs("build\n", c->to);
    fflush(c->to);
    if (bh_child_expect(c, "hnswlib build_s=", prefix, line, sizeof line) ||
        sscanf(line, "hnswlib build_s=%lf cpu_s=%lf", &a, &b) != 2) {
        printf("hnswlib: the anchor stopped answering (build, round %d)\n", r + 1);
        hl->ran = 0;
        return;
    }
    hl->build_s[r] = a;
    hl->build_cpu[r] = b;
    if (bh_child_expect(c, "hnswlib bytes_per_vector=", prefix, line, sizeof line) == 0)
        sscanf(line, "hnswlib bytes_per_vector=%lf", &hl->bytes_per_vector);
}

static void bh_anchor_search(bh_child *c, bh_side *hl, int r, int e, const char *prefix) {
    char line[512];
    int ef;
    double a, b, d;
    if (!hl->ran) return;
    fprintf(c->to, "search %d\n", hl->ef[e]);
    fflush(c->to);
    if (bh_child_expect(c, "hnswlib ef=", prefix, line, sizeof line) ||
        sscanf(line, "hnswlib ef=%d recall@%*d=%lf qps=%lf cpu_qps=%lf", &ef, &a, &b, &d) != 4 || ef != hl->ef[e]) {
        printf("hnswlib: the anchor stopped answering (search ef=%d, round %d)\n", hl->ef[e], r + 1);
        hl->ran = 0;
        return;
    }
    hl->recall[r][e] = a;
    hl->qps[r][e] = b;
    hl->cpu_qps[r][e] = d;
}

/* anchor_hnswlib beside this program (the build tree), or $TWIN_HNSWLIB_ANCHOR. */
static char *bh_anchor_path(void) {
    const char *e = getenv("TWIN_HNSWLIB_ANCHOR");
    if (e && *e) return tw_path_exists(e) ? tw_strdup(e) : NULL;
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return NULL;
    self[len] = 0;
    char *slash = strrchr(self, '/');
    if (!slash) return NULL;
    slash[1] = 0;
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%sanchor_hnswlib", self);
    if (!tw_path_exists(tw_sb_str(&sb))) {
        tw_sb_free(&sb);
        return NULL;
    }
    return tw_sb_take(&sb);
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin bench hnsw [--base B.fvecs --query Q.fvecs [--gt G.ivecs]] [--metric ip|cosine|l2]\n"
            "                       [--M 16] [--ef-construction 200] [--k 10] [--ef 16,32,64] [--threads N]\n"
            "                       [--int8] [--n 100000] [--nq 1000] [--dim 384] [--repeat 3]\n\n"
            "twin's HNSW index beside hnswlib (anchor_hnswlib in the build tree) on the same data:\n"
            "build time with N threads, then per ef the recall@k against the exact answer and the\n"
            "single-thread queries per second. Without files: clustered random data (--n, --nq,\n"
            "--dim). --int8 also runs twin's int8 storage. The runs are interleaved with the anchor's\n"
            "(build, build, then each ef on both), --repeat R rounds, the first side alternating;\n"
            "wall and CPU time both. Prints each round, the medians [min-max] and a summary.\n");
}

int cmd_bench_hnsw(int argc, char **argv) {
    const char *base_p = NULL, *query_p = NULL, *gt_p = NULL, *efs = "16,32,64";
    hnsw_metric metric = HNSW_COSINE;
    long M = 16, efc = 200, k = 10, threads = g_cli.threads, n = 100000, nq = 1000, dim = 384, repeat = 3;
    int int8 = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "--base", &v)) {
            if (!(base_p = v)) return cli_fail(CLI_USAGE, "bench hnsw", "--base needs a file");
        } else if (cli_opt(argc, argv, &i, "--query", &v)) {
            if (!(query_p = v)) return cli_fail(CLI_USAGE, "bench hnsw", "--query needs a file");
        } else if (cli_opt(argc, argv, &i, "--gt", &v)) {
            if (!(gt_p = v)) return cli_fail(CLI_USAGE, "bench hnsw", "--gt needs a file");
        } else if (cli_opt(argc, argv, &i, "--metric", &v)) {
            if (v && strcmp(v, "cosine") == 0) metric = HNSW_COSINE;
            else if (v && strcmp(v, "ip") == 0) metric = HNSW_IP;
            else if (v && strcmp(v, "l2") == 0) metric = HNSW_L2;
            else return cli_fail(CLI_USAGE, "bench hnsw", "--metric: '%s' is not ip, cosine or l2", v ? v : "");
        } else if (cli_opt(argc, argv, &i, "--M", &v)) {
            if (cli_parse_int("bench hnsw", "--M", v, 2, 256, &M)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--ef-construction", &v)) {
            if (cli_parse_int("bench hnsw", "--ef-construction", v, 1, 100000, &efc)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--k", &v)) {
            if (cli_parse_int("bench hnsw", "--k", v, 1, 1000, &k)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--ef", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "bench hnsw", "--ef needs a list");
            efs = v;
        } else if (cli_opt(argc, argv, &i, "--threads", &v)) {
            if (cli_parse_int("bench hnsw", "--threads", v, 1, 256, &threads)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--n", &v)) {
            if (cli_parse_int("bench hnsw", "--n", v, 1, 100000000, &n)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--nq", &v)) {
            if (cli_parse_int("bench hnsw", "--nq", v, 1, 10000000, &nq)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--dim", &v)) {
            if (cli_parse_int("bench hnsw", "--dim", v, 1, 65536, &dim)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--repeat", &v)) {
            if (cli_parse_int("bench hnsw", "--repeat", v, 1, BH_MAX_ROUNDS, &repeat)) return CLI_USAGE;
        } else if (cli_flag(argv, i, "--int8")) {
            int8 = 1;
        } else {
            return cli_fail(CLI_USAGE, "bench hnsw", "unknown argument '%s'", argv[i]);
        }
    }
    if (!base_p != !query_p) return cli_fail(CLI_USAGE, "bench hnsw", "--base and --query go together");
    if (gt_p && !base_p) return cli_fail(CLI_USAGE, "bench hnsw", "--gt needs --base and --query");
    if (threads <= 0) threads = tw_threads_get();
    /* three sides of about 12 KB each: not on the stack */
    bh_side *sides = tw_calloc(3, sizeof *sides);
    if (!sides) return cli_fail(CLI_ERR, "bench hnsw", "no memory");
    bh_side *tw = &sides[0], *tw8 = &sides[1], *hl = &sides[2];
    if (bh_parse_efs(efs, tw)) {
        tw_free(sides);
        return cli_fail(CLI_USAGE, "bench hnsw", "--ef: '%s' is not a list like 16,32,64", efs);
    }
    *hl = *tw;
    *tw8 = *tw;
    tw->label = "twin";
    tw8->label = "twin-int8";
    hl->label = "hnswlib";
    hnsw_index *ix = NULL, *ix8 = NULL;
    hnsw_hit *hits = NULL;
    int32_t *nfound = NULL;
    bh_child child = {-1, NULL, NULL};
    void (*old_pipe)(int) = SIG_ERR; /* SIG_ERR: not changed */

    /* the data */
    float *base = NULL, *qs = NULL;
    int32_t *gt = NULL;
    int32_t bdim = (int32_t)dim, qdim = 0, gdim = 0;
    int64_t bn = n, qn = nq, gn = 0;
    char dir[512];
    const char *td = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/twin-bench-hnsw-%ld", td && *td ? td : "/tmp", (long)getpid());
    char bpath[600], qpath[600], gpath[600];
    snprintf(bpath, sizeof bpath, "%s/base.fvecs", dir);
    snprintf(qpath, sizeof qpath, "%s/query.fvecs", dir);
    snprintf(gpath, sizeof gpath, "%s/gt.ivecs", dir);
    int rc = CLI_OK;
    if (tw_mkdir_p(dir) != TW_OK) {
        tw_free(sides);
        return cli_fail_status("bench hnsw");
    }
    if (base_p) {
        if (hnsw_fvecs_read(base_p, &base, &bdim, &bn) != TW_OK || hnsw_fvecs_read(query_p, &qs, &qdim, &qn) != TW_OK) {
            rc = cli_fail_status("bench hnsw");
            goto done;
        }
        if (qdim != bdim) {
            rc = cli_fail(CLI_ERR, "bench hnsw", "%s: dimension %d, %s has %d", query_p, (int)qdim, base_p, (int)bdim);
            goto done;
        }
        printf("data: %s (%lld x %d), %s (%lld queries)\n", base_p, (long long)bn, (int)bdim, query_p, (long long)qn);
    } else {
        base = tw_malloc((size_t)n * (size_t)dim * sizeof(float));
        qs = tw_malloc((size_t)nq * (size_t)dim * sizeof(float));
        if (!base || !qs) {
            rc = cli_fail(CLI_ERR, "bench hnsw", "no memory for %ld vectors of %ld dimensions", n, dim);
            goto done;
        }
        bh_make(base, n, qs, nq, (int)dim, n >= 100000 ? 1000 : (int)(n / 100 + 1));
        printf("data: %ld clustered random vectors of %ld dimensions, %ld queries\n", n, dim, nq);
    }
    if (gt_p) {
        if (hnsw_ivecs_read(gt_p, &gt, &gdim, &gn) != TW_OK) {
            rc = cli_fail_status("bench hnsw");
            goto done;
        }
        if (gn != qn || gdim < k) {
            rc = cli_fail(CLI_ERR, "bench hnsw", "%s: %lld rows of %d, need %lld of at least k=%ld", gt_p, (long long)gn,
                          (int)gdim, (long long)qn, k);
            goto done;
        }
    } else {
        /* the exact answer by twin's exact scan, queries in parallel */
        hnsw_params p;
        hnsw_params_default(&p, bdim, metric);
        p.capacity = bn;
        /* the exact scan ignores the graph: a cheap one (M 2, ef_construction 1) will do */
        p.M = 2;
        p.ef_construction = 1;
        hnsw_index *flat = NULL;
        int64_t *ids = tw_malloc((size_t)bn * sizeof *ids);
        gt = tw_malloc((size_t)qn * (size_t)k * sizeof *gt);
        if (!ids || !gt) {
            tw_free(ids);
            rc = cli_fail(CLI_ERR, "bench hnsw", "no memory for the exact answer");
            goto done;
        }
        for (int64_t i = 0; i < bn; i++) ids[i] = i;
        tw_status st = hnsw_new(&p, &flat);
        if (st == TW_OK) st = hnsw_add_batch(flat, ids, base, NULL, bn, (int)threads);
        tw_free(ids);
        gdim = (int32_t)k;
        double t0 = tw_now_s();
        int failed = st != TW_OK;
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads)
        for (int64_t q = 0; q < qn; q++) {
            if (failed) continue;
            hnsw_hit h[1000];
            int32_t nf = 0;
            if (hnsw_search_exact(flat, qs + (size_t)q * (size_t)bdim, (int32_t)k, NULL, h, &nf) != TW_OK) {
                failed = 1;
                continue;
            }
            for (int32_t j = 0; j < (int32_t)k; j++) gt[(size_t)q * (size_t)k + (size_t)j] = j < nf ? (int32_t)h[j].id : -1;
        }
        hnsw_free(flat);
        if (failed) {
            rc = cli_fail(CLI_ERR, "bench hnsw", "exact search failed");
            goto done;
        }
        gn = qn;
        printf("ground truth: exact scan, %.1f s\n", tw_now_s() - t0);
    }
    /* files for the anchor */
    if (hnsw_fvecs_write(bpath, base, bdim, bn) != TW_OK || hnsw_fvecs_write(qpath, qs, bdim, qn) != TW_OK ||
        hnsw_fvecs_write(gpath, (const float *)(const void *)gt, gdim, gn) != TW_OK) {
        rc = cli_fail_status("bench hnsw");
        goto done;
    }
    static const char *mnames[] = {"cosine", "ip", "l2"};
    printf("config: metric=%s M=%ld ef_construction=%ld k=%ld threads=%ld (build; search: 1) rounds=%ld\n",
           mnames[metric], M, efc, k, threads, repeat);
    hits = tw_malloc((size_t)qn * (size_t)k * sizeof *hits);
    nfound = tw_malloc((size_t)qn * sizeof *nfound);
    if (!hits || !nfound) {
        rc = cli_fail(CLI_ERR, "bench hnsw", "no memory for %lld results", (long long)qn);
        goto done;
    }

    /* the anchor, waiting for commands */
    char *anchor = bh_anchor_path();
    if (!anchor) {
        printf("hnswlib: anchor missing: anchor_hnswlib is not beside the twin program (built by CMake when g++ "
               "and libhnswlib-dev are present; or set TWIN_HNSWLIB_ANCHOR)\n");
    } else {
        char sM[32], sefc[32], sk[32], sth[32];
        snprintf(sM, sizeof sM, "%ld", M);
        snprintf(sefc, sizeof sefc, "%ld", efc);
        snprintf(sk, sizeof sk, "%ld", k);
        snprintf(sth, sizeof sth, "%ld", threads);
        char *av[] = {anchor, "--base", bpath, "--query", qpath, "--gt", gpath, "--metric", (char *)mnames[metric],
                      "--M", sM, "--ef-construction", sefc, "--k", sk, "--threads", sth, "--serve", NULL};
        char line[512];
        /* an anchor that dies must not take twin with it: writes to its pipe then fail with
         * EPIPE instead of raising SIGPIPE (restored at the end) */
        old_pipe = signal(SIGPIPE, SIG_IGN);
        if (bh_child_start(av, &child) == 0 && bh_child_expect(&child, "hnswlib ready", "hnswlib: ", line, sizeof line) == 0)
            hl->ran = 1;
        else
            printf("hnswlib: the anchor %s did not start\n", anchor);
        tw_free(anchor);
    }

    /* the rounds: builds one after the other, then each ef on each side one after the other;
     * the first side alternates */
    hnsw_params p;
    hnsw_params_default(&p, bdim, metric);
    p.M = (int32_t)M;
    p.ef_construction = (int32_t)efc;
    p.capacity = bn;
    hnsw_params p8 = p;
    p8.storage = HNSW_INT8;
    for (int r = 0; r < (int)repeat; r++) {
        char pre[64];
        snprintf(pre, sizeof pre, "round %d/%ld: ", r + 1, repeat);
        int anchor_first = r % 2 == 1;
        if (anchor_first) bh_anchor_build(&child, hl, r, pre);
        if (bh_twin_build(tw, r, &p, base, bn, (int)threads, &ix) ||
            (int8 && bh_twin_build(tw8, r, &p8, base, bn, (int)threads, &ix8))) {
            rc = CLI_ERR;
            goto done;
        }
        if (!anchor_first) bh_anchor_build(&child, hl, r, pre);
        bh_side *bs[3] = {tw, tw8, hl};
        for (int j = 0; j < 3; j++)
            if (bs[j]->ran || bs[j] == tw || (bs[j] == tw8 && int8))
                if (bs[j] != hl || hl->ran)
                    printf("%s%s build_s=%.3f cpu_s=%.3f\n", pre, bs[j]->label, bs[j]->build_s[r], bs[j]->build_cpu[r]);
        for (int e = 0; e < tw->n; e++) {
            if (anchor_first) bh_anchor_search(&child, hl, r, e, pre);
            if (bh_twin_search(tw, r, e, ix, qs, qn, bdim, gt, gdim, (int)k, hits, nfound) ||
                (int8 && bh_twin_search(tw8, r, e, ix8, qs, qn, bdim, gt, gdim, (int)k, hits, nfound))) {
                rc = CLI_ERR;
                goto done;
            }
            if (!anchor_first) bh_anchor_search(&child, hl, r, e, pre);
            for (int j = 0; j < 3; j++) {
                const bh_side *sd = bs[j];
                if ((sd == tw8 && !int8) || (sd == hl && !hl->ran)) continue;
                printf("%s%s ef=%d recall@%ld=%.4f qps=%.1f cpu_qps=%.1f\n", pre, sd->label, sd->ef[e], k,
                       sd->recall[r][e], sd->qps[r][e], sd->cpu_qps[r][e]);
            }
            fflush(stdout);
        }
        hnsw_free(ix);
        hnsw_free(ix8);
        ix = ix8 = NULL;
        tw->rounds = tw8->rounds = r + 1;
        tw->ran = 1;
        tw8->ran = int8;
        if (hl->ran) hl->rounds = r + 1;
    }
    double anchor_cpu = 0;
    if (child.pid >= 0) {
        int st = bh_child_end(&child, &anchor_cpu);
        if (st != 0) {
            printf("hnswlib: anchor failed (status %d)\n", st);
            hl->ran = 0;
        }
    }

    /* medians over the rounds, in the ARCHITECTURE.md line format */
    printf("medians over %ld round%s [min-max]:\n", repeat, repeat > 1 ? "s" : "");
    bh_side *all[3] = {tw, tw8, hl};
    for (int j = 0; j < 3; j++) {
        const bh_side *sd = all[j];
        if (!sd->ran || !sd->rounds) continue;
        double lo, hi, clo, chi;
        double b = bh_median(sd->build_s, sd->rounds, &lo, &hi), c = bh_median(sd->build_cpu, sd->rounds, &clo, &chi);
        printf("%s build_s=%.3f [%.3f-%.3f] cpu_s=%.3f [%.3f-%.3f]\n", sd->label, b, lo, hi, c, clo, chi);
        for (int e = 0; e < sd->n; e++) {
            double rv[BH_MAX_ROUNDS], qv[BH_MAX_ROUNDS], cv[BH_MAX_ROUNDS];
            for (int r = 0; r < sd->rounds; r++) rv[r] = sd->recall[r][e], qv[r] = sd->qps[r][e], cv[r] = sd->cpu_qps[r][e];
            double rlo, rhi, qlo, qhi;
            double rm = bh_median(rv, sd->rounds, &rlo, &rhi), qm = bh_median(qv, sd->rounds, &qlo, &qhi);
            double cm = bh_median(cv, sd->rounds, &clo, &chi);
            printf("%s ef=%d recall@%ld=%.4f qps=%.1f [%.0f-%.0f] cpu_qps=%.1f [%.0f-%.0f] recall [%.4f-%.4f]\n", sd->label,
                   sd->ef[e], k, rm, qm, qlo, qhi, cm, clo, chi, rlo, rhi);
        }
        printf("%s bytes_per_vector=%.1f\n", sd->label, sd->bytes_per_vector);
    }
    if (hl->ran) {
        double sum = 0;
        for (int r = 0; r < hl->rounds; r++) {
            sum += hl->build_cpu[r];
            for (int e = 0; e < hl->n; e++) sum += (double)qn / hl->cpu_qps[r][e];
        }
        printf("hnswlib process cpu_s=%.1f (wait4; its builds and searches: %.1f, the rest is loading files and "
               "counting recall)\n", anchor_cpu, sum);
    }

    /* summary */
    printf("summary (ratios: median of the per-round ratios [min-max]):\n");
    static const double targets[] = {0.90, 0.95, 0.99};
    static const char *clk_name[] = {"wall", "cpu"};
    for (int t = 0; t < 3; t++) {
        for (int c = 0; c < 2; c++) {
            double a = bh_qps_median(tw, targets[t], (bh_clock)c), b = hl->ran ? bh_qps_median(hl, targets[t], (bh_clock)c) : -1;
            double lo = 0, hi = 0, ra = hl->ran ? bh_ratio_at(tw, hl, targets[t], (bh_clock)c, &lo, &hi) : -1;
            if (a > 0 && b > 0 && ra > 0)
                printf("  recall %.2f %-4s: twin qps=%.1f hnswlib qps=%.1f ratio=%.2f [%.2f-%.2f]\n", targets[t],
                       clk_name[c], a, b, ra, lo, hi);
            else
                printf("  recall %.2f %-4s: twin qps=%s hnswlib qps=%s (not reached in every round of this ef sweep)\n",
                       targets[t], clk_name[c], a > 0 ? "reached" : "n/a", b > 0 ? "reached" : hl->ran ? "n/a" : "not run");
        }
    }
    if (hl->ran) {
        for (int c = 0; c < 2; c++) {
            double v[BH_MAX_ROUNDS], lo, hi;
            for (int r = 0; r < hl->rounds; r++)
                v[r] = c ? tw->build_cpu[r] / hl->build_cpu[r] : tw->build_s[r] / hl->build_s[r];
            double ra = bh_median(v, hl->rounds, &lo, &hi);
            const double *x = c ? tw->build_cpu : tw->build_s, *y = c ? hl->build_cpu : hl->build_s;
            printf("  build %-4s: twin %.3f s, hnswlib %.3f s, ratio=%.2f [%.2f-%.2f] (lower is better)\n", clk_name[c],
                   bh_median(x, tw->rounds, NULL, NULL), bh_median(y, hl->rounds, NULL, NULL), ra, lo, hi);
        }
        printf("  bytes/vector: twin %.1f, hnswlib %.1f\n", tw->bytes_per_vector, hl->bytes_per_vector);
    }
    if (int8) {
        for (int c = 0; c < 2; c++) {
            double lo = 0, hi = 0, ra = bh_ratio_at(tw8, tw, 0.95, (bh_clock)c, &lo, &hi);
            double a = bh_qps_median(tw8, 0.95, (bh_clock)c), b = bh_qps_median(tw, 0.95, (bh_clock)c);
            if (ra > 0)
                printf("  int8 vs f32 at recall 0.95 %-4s: %.1f / %.1f qps, ratio=%.2f [%.2f-%.2f]\n", clk_name[c], a, b, ra,
                       lo, hi);
            else
                printf("  int8 vs f32 at recall 0.95 %-4s: not reached in every round of this ef sweep\n", clk_name[c]);
        }
        printf("  bytes/vector: twin-int8 %.1f\n", tw8->bytes_per_vector);
    }
    bench_print_machine((int)threads);
done:
    if (child.pid >= 0) {
        double unused;
        (void)bh_child_end(&child, &unused);
    }
    hnsw_free(ix);
    hnsw_free(ix8);
    tw_free(hits);
    tw_free(nfound);
    tw_free(sides);
    if (old_pipe != SIG_ERR) signal(SIGPIPE, old_pipe);
    unlink(bpath);
    unlink(qpath);
    unlink(gpath);
    rmdir(dir);
    tw_free(base);
    tw_free(qs);
    tw_free(gt);
    return rc;
}
