/* cmd_bench_clean.c: twin bench clean: extraction quality and cleaning throughput beside
 * trafilatura (bench/bench_extract_trafilatura.py, run as a subprocess when it imports).
 *
 *   quality:    word-level F1 (clean_word_f1) of each page of tests/data/extract against its
 *               expected .txt, ours (clean_document "html") and trafilatura.extract's, scored
 *               by the same function; the means and their ratio.
 *   throughput: the pages repeated to --size MB (default 50) as one corpus; clean_document on
 *               every page, one thread, best of --repeat; trafilatura.extract on the same
 *               corpus (a file the anchor reads); MB/s of both and the ratio. Both sides are
 *               timed in process CPU seconds (time.process_time in the anchor): the shared
 *               cores this runs on are often oversubscribed, and wall time would then measure
 *               the neighbours; the wall-clock figure is printed beside ours.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "pipelines/clean.h"

#define PAGE_SEP '\x1e' /* between pages in the corpus file */

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin bench clean [--pages DIR] [--size MB] [--repeat N] [--no-anchor]\n\n"
            "Extraction quality: the word-level F1 (bag of words, lower-cased, punctuation\n"
            "stripped) of every DIR/NN-name.html (default: tests/data/extract of the source tree)\n"
            "against NN-name.txt, for twin (clean_document \"html\") and for trafilatura\n"
            "(bench/bench_extract_trafilatura.py; TWIN_PYTHON picks the Python), scored alike.\n"
            "Throughput: the pages repeated to --size MB (default 50), cleaned page by page on\n"
            "one thread by both, best of --repeat runs (default 1).\n\n"
            "prints: one line per page, the mean F1 of each and their ratio, MB/s of each and\n"
            "their ratio, and the machine.\n");
}

/* CPU seconds of this process (one thread runs the work). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *python_cmd(void) {
    const char *p = getenv("TWIN_PYTHON");
    return p && *p ? p : "python3";
}

static void sh_quote(tw_sb *sb, const char *s) {
    tw_sb_putc(sb, '\'');
    for (; *s; s++) {
        if (*s == '\'') tw_sb_puts(sb, "'\\''");
        else tw_sb_putc(sb, *s);
    }
    tw_sb_putc(sb, '\'');
}

typedef struct {
    char *name; /* NN-name */
    char *html, *want;
    size_t html_len, want_len;
    double f1_twin, f1_anchor; /* anchor: -1 when it did not run */
} bpage;

static int cmp_page(const void *a, const void *b) { return strcmp(((const bpage *)a)->name, ((const bpage *)b)->name); }

static void pages_free(bpage *p, int n) {
    for (int i = 0; i < n; i++) {
        tw_free(p[i].name);
        tw_free(p[i].html);
        tw_free(p[i].want);
    }
    tw_free(p);
}

/* Reads the .html pages of dir and their .txt; returns the count or -1 after printing the error. */
static int pages_load(const char *dir, bpage **out) {
    DIR *d = opendir(dir);
    if (!d) return cli_fail(CLI_ERR, "bench clean", "%s: cannot open the pages folder", dir), -1;
    int n = 0, cap = 0;
    bpage *p = NULL;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) && rc == 0) {
        size_t l = strlen(e->d_name);
        if (l <= 5 || strcmp(e->d_name + l - 5, ".html") != 0) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            bpage *np = tw_realloc(p, (size_t)cap * sizeof *np);
            if (!np) {
                rc = -1;
                break;
            }
            p = np;
        }
        bpage *pg = &p[n++];
        memset(pg, 0, sizeof *pg);
        pg->name = tw_strndup(e->d_name, l - 5);
        tw_sb path;
        tw_sb_init(&path);
        tw_sb_printf(&path, "%s/%s.html", dir, pg->name);
        if (tw_file_read(tw_sb_str(&path), &pg->html, &pg->html_len) != TW_OK) rc = -1;
        tw_sb_clear(&path);
        tw_sb_printf(&path, "%s/%s.txt", dir, pg->name);
        if (rc == 0 && tw_file_read(tw_sb_str(&path), &pg->want, &pg->want_len) != TW_OK) rc = -1;
        tw_sb_free(&path);
    }
    closedir(d);
    if (rc != 0 || n == 0) {
        if (n == 0 && rc == 0) cli_fail(CLI_ERR, "bench clean", "%s: no .html pages", dir);
        else cli_fail_status("bench clean");
        pages_free(p, n);
        return -1;
    }
    qsort(p, (size_t)n, sizeof *p, cmp_page);
    *out = p;
    return n;
}

/* Runs the anchor with args; its stdout in *out. 0 ok, 3 trafilatura missing, else failed. */
static int anchor_run(const char *script, const char *args, tw_sb *out) {
    tw_sb cmd;
    tw_sb_init(&cmd);
    sh_quote(&cmd, python_cmd());
    tw_sb_putc(&cmd, ' ');
    sh_quote(&cmd, script);
    tw_sb_printf(&cmd, " %s", args);
    FILE *p = popen(tw_sb_str(&cmd), "r");
    tw_sb_free(&cmd);
    if (!p) return -1;
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, p)) > 0) tw_sb_append(out, buf, k);
    int st = pclose(p);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

/* Parses "page NAME BYTES\n<BYTES bytes>\n" records into the pages' anchor F1. */
static int anchor_pages_parse(const tw_sb *o, bpage *p, int n) {
    size_t i = 0;
    int got = 0;
    while (i < o->len) {
        const char *line = o->buf + i;
        const char *nl = memchr(line, '\n', o->len - i);
        if (!nl) break;
        char name[256];
        size_t bytes;
        if (sscanf(line, "page %255s %zu", name, &bytes) != 2) return -1;
        size_t start = (size_t)(nl - o->buf) + 1;
        if (start + bytes > o->len) return -1;
        for (int k = 0; k < n; k++)
            if (!strcmp(p[k].name, name)) {
                p[k].f1_anchor = clean_word_f1(o->buf + start, bytes, p[k].want, p[k].want_len);
                got++;
            }
        i = start + bytes + 1;
    }
    return got == n ? 0 : -1;
}

int cmd_bench_clean(int argc, char **argv) {
    const char *dir_opt = NULL;
    long size_mb = 50, repeat = 1;
    int no_anchor = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "--pages", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "bench clean", "--pages needs a folder");
            dir_opt = v;
        } else if (cli_opt(argc, argv, &i, "--size", &v)) {
            if (cli_parse_int("bench clean", "--size", v, 1, 4096, &size_mb)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--repeat", &v)) {
            if (cli_parse_int("bench clean", "--repeat", v, 1, 100, &repeat)) return CLI_USAGE;
        } else if (cli_flag(argv, i, "--no-anchor")) {
            no_anchor = 1;
        } else {
            return cli_fail(CLI_USAGE, "bench clean", "unknown argument '%s'", argv[i]);
        }
    }
    char *dir = dir_opt ? tw_strdup(dir_opt) : cli_source_path("tests/data/extract");
    if (!dir) return cli_fail(CLI_ERR, "bench clean", "tests/data/extract not found (set TWIN_SRC or use --pages)");
    bpage *pages = NULL;
    int n = pages_load(dir, &pages);
    if (n < 0) {
        tw_free(dir);
        return CLI_ERR;
    }

    /* the anchor: present? */
    char *script = cli_source_path("bench/bench_extract_trafilatura.py");
    const char *missing = NULL;
    tw_sb o;
    tw_sb_init(&o);
    if (no_anchor) missing = "--no-anchor";
    else if (!script) missing = "bench/bench_extract_trafilatura.py not found (set TWIN_SRC to the source tree)";
    int anchor_ok = 0;
    if (!missing) {
        tw_sb args;
        tw_sb_init(&args);
        tw_sb_puts(&args, "--pages ");
        sh_quote(&args, dir);
        tw_sb_puts(&args, " 2>/dev/null");
        int rc = anchor_run(script, tw_sb_str(&args), &o);
        tw_sb_free(&args);
        if (rc == 3) missing = "trafilatura is not importable (pip install trafilatura lxml_html_clean, or set TWIN_PYTHON)";
        else if (rc != 0 || anchor_pages_parse(&o, pages, n) != 0) missing = "the anchor script failed or printed no page records";
        else anchor_ok = 1;
    }
    if (missing) printf("trafilatura: anchor skipped: %s\n", missing);

    /* quality */
    double sum_t = 0, sum_a = 0;
    int rc = CLI_OK;
    for (int i = 0; i < n; i++) {
        tw_sb got;
        tw_sb_init(&got);
        if (clean_document("html", pages[i].html, pages[i].html_len, &got) != TW_OK) {
            printf("page %s: twin failed: %s\n", pages[i].name, tw_errmsg());
            rc = CLI_ERR;
        }
        pages[i].f1_twin = clean_word_f1(got.buf, got.len, pages[i].want, pages[i].want_len);
        tw_sb_free(&got);
        sum_t += pages[i].f1_twin;
        if (anchor_ok) {
            sum_a += pages[i].f1_anchor;
            printf("page %-34s twin_f1=%.4f trafilatura_f1=%.4f\n", pages[i].name, pages[i].f1_twin, pages[i].f1_anchor);
        } else {
            printf("page %-34s twin_f1=%.4f\n", pages[i].name, pages[i].f1_twin);
        }
    }
    printf("twin mean_f1=%.4f pages=%d\n", sum_t / n, n);
    if (anchor_ok) {
        printf("trafilatura mean_f1=%.4f pages=%d\n", sum_a / n, n);
        printf("f1_ratio=%.4f (twin / trafilatura)\n", sum_a > 0 ? sum_t / sum_a : 0.0);
    }

    /* throughput: the pages repeated to size_mb, separated by PAGE_SEP */
    tw_sb corpus;
    tw_sb_init(&corpus);
    size_t target = (size_t)size_mb * 1000000u, n_pages = 0;
    while (corpus.len < target && !corpus.failed) {
        for (int i = 0; i < n && corpus.len < target; i++) {
            if (corpus.len) tw_sb_putc(&corpus, PAGE_SEP);
            tw_sb_append(&corpus, pages[i].html, pages[i].html_len);
            n_pages++;
        }
    }
    if (corpus.failed) {
        rc = cli_fail(CLI_ERR, "bench clean", "no memory for a %ld MB corpus", size_mb);
    } else {
        double best = 1e30, best_wall = 1e30;
        size_t out_bytes = 0;
        tw_sb out;
        tw_sb_init(&out);
        for (long r = 0; r < repeat; r++) {
            double t0 = cpu_now(), w0 = tw_now_s();
            out_bytes = 0;
            for (size_t s = 0; s < corpus.len;) {
                const char *e = memchr(corpus.buf + s, PAGE_SEP, corpus.len - s);
                size_t l = e ? (size_t)(e - (corpus.buf + s)) : corpus.len - s;
                tw_sb_clear(&out);
                if (clean_document("html", corpus.buf + s, l, &out) != TW_OK) rc = CLI_ERR;
                out_bytes += out.len;
                s += l + 1;
            }
            double dt = cpu_now() - t0, dw = tw_now_s() - w0;
            if (dt < best) best = dt;
            if (dw < best_wall) best_wall = dw;
        }
        tw_sb_free(&out);
        double ours = (double)corpus.len / best / 1e6;
        printf("corpus: %.1f MB, %zu pages (the extract pages repeated)\n", (double)corpus.len / 1e6, n_pages);
        printf("twin MB/s=%.3f cpu_seconds=%.3f wall_seconds=%.3f text_bytes=%zu\n", ours, best, best_wall, out_bytes);
        if (anchor_ok) {
            char tmp[512];
            const char *td = getenv("TMPDIR");
            snprintf(tmp, sizeof tmp, "%s/twin-bench-clean-%ld.html", td && *td ? td : "/tmp", (long)getpid());
            if (tw_file_write_atomic(tmp, corpus.buf, corpus.len) != TW_OK) {
                printf("trafilatura: anchor skipped: cannot write %s\n", tmp);
            } else {
                tw_sb args;
                tw_sb_init(&args);
                tw_sb_puts(&args, "--corpus ");
                sh_quote(&args, tmp);
                tw_sb_printf(&args, " --repeat %ld 2>&1", repeat);
                tw_sb_clear(&o);
                int arc = anchor_run(script, tw_sb_str(&args), &o);
                tw_sb_free(&args);
                double theirs = 0;
                const char *line = o.buf ? strstr(o.buf, "trafilatura MB/s=") : NULL;
                if (arc == 0 && line && sscanf(line, "trafilatura MB/s=%lf", &theirs) == 1 && theirs > 0) {
                    printf("trafilatura MB/s=%.3f\n", theirs);
                    printf("mbs_ratio=%.2f (twin / trafilatura)\n", ours / theirs);
                } else {
                    printf("trafilatura: anchor failed: %.300s\n", o.len ? tw_sb_str(&o) : "no result line");
                }
                unlink(tmp);
            }
        }
    }
    bench_print_machine(1);
    tw_sb_free(&corpus);
    tw_sb_free(&o);
    tw_free(script);
    tw_free(dir);
    pages_free(pages, n);
    return rc;
}
