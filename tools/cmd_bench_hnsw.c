/* cmd_bench_hnsw.c: twin bench hnsw: twin's HNSW index (pipelines/hnsw.h) beside hnswlib
 * (bench/anchor_hnswlib.cpp, run as a separate program on the same files), same data, same M,
 * ef_construction, k, ef sweep and build threads, measured in the same run.
 *
 *   twin bench hnsw [--base B.fvecs --query Q.fvecs [--gt G.ivecs]] [--metric ip|cosine|l2]
 *                   [--M 16] [--ef-construction 200] [--k 10] [--ef 16,32,64] [--threads N]
 *                   [--int8] [--n N] [--nq N] [--dim D]
 *
 * Without files it makes clustered random data (--n 100,000 vectors of --dim 384 around 1,000
 * centres, --nq 1,000 queries near them), deterministically. The ground truth is twin's exact
 * scan (hnsw_search_exact) unless --gt is given; it is written as .ivecs, with the data as
 * .fvecs, into a temporary folder that both sides read. Searches run one query at a time on one
 * thread on both sides (hnswlib's searchKnn loop); builds use --threads (default: all cores).
 * The anchor is `anchor_hnswlib` beside the twin program in the build tree ($TWIN_HNSWLIB_ANCHOR
 * overrides); without it twin's lines are printed alone with the reason.
 *
 * Prints "twin build_s=S", one "twin ef=E recall@10=R qps=Q" per ef (and "twin-int8 ..." with
 * --int8), hnswlib's lines as it prints them, then a summary: QPS ratios (twin / hnswlib) at
 * recall 0.90 / 0.95 / 0.99 (interpolated on the ef sweep), the build time ratio, bytes per
 * vector of both, and with --int8 the int8 / f32 QPS ratio at recall 0.95.
 */
#include "cli.h"
#include "pipelines/hnsw.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BH_MAX_EF 32

typedef struct {
    int n;
    int ef[BH_MAX_EF];
    double recall[BH_MAX_EF], qps[BH_MAX_EF];
    double build_s, bytes_per_vector;
    int ran;
} bh_side;

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

/* QPS at recall `target` on a sweep: the first ef reaching it when the first already does,
 * else linear between the two efs around it; < 0 when the sweep never reaches it. */
static double bh_qps_at(const bh_side *s, double target) {
    for (int i = 0; i < s->n; i++) {
        if (s->recall[i] < target) continue;
        if (i == 0) return s->qps[0];
        double r0 = s->recall[i - 1], r1 = s->recall[i];
        if (r1 <= r0) return s->qps[i];
        double t = (target - r0) / (r1 - r0);
        return s->qps[i - 1] + t * (s->qps[i] - s->qps[i - 1]);
    }
    return -1;
}

/* Builds twin's index over base, runs the sweep, fills side. 0 on success. */
static int bh_run_twin(const char *label, hnsw_params *p, const float *base, int64_t n, const float *qs, int64_t nq,
                       const int32_t *gt, int gt_dim, int k, int threads, bh_side *side) {
    hnsw_index *ix = NULL;
    if (hnsw_new(p, &ix) != TW_OK) return cli_fail_status("bench hnsw");
    int64_t *ids = tw_malloc((size_t)n * sizeof *ids);
    hnsw_hit *hits = tw_malloc((size_t)k * sizeof *hits);
    if (!ids || !hits) {
        tw_free(ids);
        tw_free(hits);
        hnsw_free(ix);
        return cli_fail(CLI_ERR, "bench hnsw", "no memory");
    }
    for (int64_t i = 0; i < n; i++) ids[i] = i;
    double t0 = tw_now_s();
    tw_status st = hnsw_add_batch(ix, ids, base, NULL, n, threads);
    side->build_s = tw_now_s() - t0;
    if (st != TW_OK) {
        tw_free(ids);
        tw_free(hits);
        hnsw_free(ix);
        return cli_fail_status("bench hnsw");
    }
    printf("%s build_s=%.3f\n", label, side->build_s);
    fflush(stdout);
    for (int e = 0; e < side->n && st == TW_OK; e++) {
        int64_t hit = 0;
        double dt = 0; /* the searches only, not the recall count */
        for (int64_t q = 0; q < nq && st == TW_OK; q++) {
            int32_t nf = 0;
            double ts = tw_now_s();
            st = hnsw_search(ix, qs + (size_t)q * (size_t)p->dim, k, side->ef[e], NULL, hits, &nf);
            dt += tw_now_s() - ts;
            for (int32_t j = 0; j < nf; j++)
                for (int g = 0; g < k; g++)
                    if (gt[(size_t)q * (size_t)gt_dim + (size_t)g] == (int32_t)hits[j].id) {
                        hit++;
                        break;
                    }
        }
        side->recall[e] = (double)hit / (double)(nq * k);
        side->qps[e] = (double)nq / dt;
        printf("%s ef=%d recall@%d=%.4f qps=%.1f\n", label, side->ef[e], k, side->recall[e], side->qps[e]);
        fflush(stdout);
    }
    side->bytes_per_vector = (double)hnsw_memory_bytes(ix) / (double)n;
    printf("%s bytes_per_vector=%.1f\n", label, side->bytes_per_vector);
    side->ran = st == TW_OK;
    tw_free(ids);
    tw_free(hits);
    hnsw_free(ix);
    return st == TW_OK ? 0 : cli_fail_status("bench hnsw");
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

static void bh_quote(tw_sb *sb, const char *s) {
    tw_sb_putc(sb, '\'');
    for (; *s; s++) {
        if (*s == '\'') tw_sb_puts(sb, "'\\''");
        else tw_sb_putc(sb, *s);
    }
    tw_sb_putc(sb, '\'');
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin bench hnsw [--base B.fvecs --query Q.fvecs [--gt G.ivecs]] [--metric ip|cosine|l2]\n"
            "                       [--M 16] [--ef-construction 200] [--k 10] [--ef 16,32,64] [--threads N]\n"
            "                       [--int8] [--n 100000] [--nq 1000] [--dim 384]\n\n"
            "twin's HNSW index beside hnswlib (anchor_hnswlib in the build tree) on the same data:\n"
            "build time with N threads, then per ef the recall@k against the exact answer and the\n"
            "single-thread queries per second. Without files: clustered random data (--n, --nq,\n"
            "--dim). --int8 also runs twin's int8 storage. Prints twin/hnswlib lines and a summary.\n");
}

int cmd_bench_hnsw(int argc, char **argv) {
    const char *base_p = NULL, *query_p = NULL, *gt_p = NULL, *efs = "16,32,64";
    hnsw_metric metric = HNSW_COSINE;
    long M = 16, efc = 200, k = 10, threads = g_cli.threads, n = 100000, nq = 1000, dim = 384;
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
        } else if (cli_flag(argv, i, "--int8")) {
            int8 = 1;
        } else {
            return cli_fail(CLI_USAGE, "bench hnsw", "unknown argument '%s'", argv[i]);
        }
    }
    if (!base_p != !query_p) return cli_fail(CLI_USAGE, "bench hnsw", "--base and --query go together");
    if (gt_p && !base_p) return cli_fail(CLI_USAGE, "bench hnsw", "--gt needs --base and --query");
    if (threads <= 0) threads = tw_threads_get();
    bh_side tw = {0}, tw8 = {0}, hl = {0};
    if (bh_parse_efs(efs, &tw)) return cli_fail(CLI_USAGE, "bench hnsw", "--ef: '%s' is not a list like 16,32,64", efs);
    hl = tw;
    tw8 = tw;

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
    if (tw_mkdir_p(dir) != TW_OK) return cli_fail_status("bench hnsw");
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
    printf("config: metric=%s M=%ld ef_construction=%ld k=%ld threads=%ld (build; search: 1)\n", mnames[metric], M, efc,
           k, threads);

    hnsw_params p;
    hnsw_params_default(&p, bdim, metric);
    p.M = (int32_t)M;
    p.ef_construction = (int32_t)efc;
    p.capacity = bn;
    if (bh_run_twin("twin", &p, base, bn, qs, qn, gt, gdim, (int)k, (int)threads, &tw)) {
        rc = CLI_ERR;
        goto done;
    }
    if (int8) {
        p.storage = HNSW_INT8;
        if (bh_run_twin("twin-int8", &p, base, bn, qs, qn, gt, gdim, (int)k, (int)threads, &tw8)) {
            rc = CLI_ERR;
            goto done;
        }
    }
    /* the anchor */
    char *anchor = bh_anchor_path();
    if (!anchor) {
        printf("hnswlib: anchor missing: anchor_hnswlib is not beside the twin program (built by CMake when g++ "
               "and libhnswlib-dev are present; or set TWIN_HNSWLIB_ANCHOR)\n");
    } else {
        tw_sb cmd;
        tw_sb_init(&cmd);
        bh_quote(&cmd, anchor);
        tw_sb_puts(&cmd, " --base ");
        bh_quote(&cmd, bpath);
        tw_sb_puts(&cmd, " --query ");
        bh_quote(&cmd, qpath);
        tw_sb_puts(&cmd, " --gt ");
        bh_quote(&cmd, gpath);
        tw_sb_printf(&cmd, " --metric %s --M %ld --ef-construction %ld --k %ld --threads %ld --ef ", mnames[metric], M,
                     efc, k, threads);
        bh_quote(&cmd, efs);
        tw_sb_puts(&cmd, " 2>&1");
        FILE *pp = popen(tw_sb_str(&cmd), "r");
        tw_sb_free(&cmd);
        char line[512];
        while (pp && fgets(line, sizeof line, pp)) {
            fputs(line, stdout);
            fflush(stdout);
            double a, b;
            int e;
            if (sscanf(line, "hnswlib build_s=%lf", &a) == 1) hl.build_s = a, hl.ran = 1;
            else if (sscanf(line, "hnswlib ef=%d recall@%*d=%lf qps=%lf", &e, &a, &b) == 3) {
                for (int i = 0; i < hl.n; i++)
                    if (hl.ef[i] == e) hl.recall[i] = a, hl.qps[i] = b;
            } else if (sscanf(line, "hnswlib bytes_per_vector=%lf", &a) == 1) hl.bytes_per_vector = a;
        }
        int prc = pp ? pclose(pp) : -1;
        if (prc != 0) {
            printf("hnswlib: anchor failed (status %d)\n", prc);
            hl.ran = 0;
        }
        tw_free(anchor);
    }
    /* summary */
    printf("summary:\n");
    static const double targets[] = {0.90, 0.95, 0.99};
    for (int t = 0; t < 3; t++) {
        double a = bh_qps_at(&tw, targets[t]), b = hl.ran ? bh_qps_at(&hl, targets[t]) : -1;
        if (a > 0 && b > 0)
            printf("  recall %.2f: twin qps=%.1f hnswlib qps=%.1f ratio=%.2f\n", targets[t], a, b, a / b);
        else
            printf("  recall %.2f: twin qps=%s hnswlib qps=%s (not reached on this ef sweep)\n", targets[t],
                   a > 0 ? "reached" : "n/a", b > 0 ? "reached" : "n/a");
    }
    if (hl.ran) {
        printf("  build: twin %.3f s, hnswlib %.3f s, ratio=%.2f (lower is better)\n", tw.build_s, hl.build_s,
               tw.build_s / hl.build_s);
        printf("  bytes/vector: twin %.1f, hnswlib %.1f\n", tw.bytes_per_vector, hl.bytes_per_vector);
    }
    if (int8) {
        double a = bh_qps_at(&tw8, 0.95), b = bh_qps_at(&tw, 0.95);
        if (a > 0 && b > 0) printf("  int8 vs f32 at recall 0.95: %.1f / %.1f qps, ratio=%.2f\n", a, b, a / b);
        else printf("  int8 vs f32 at recall 0.95: not reached on this ef sweep\n");
        printf("  bytes/vector: twin-int8 %.1f\n", tw8.bytes_per_vector);
    }
    bench_print_machine((int)threads);
done:
    unlink(bpath);
    unlink(qpath);
    unlink(gpath);
    rmdir(dir);
    tw_free(base);
    tw_free(qs);
    tw_free(gt);
    return rc;
}
