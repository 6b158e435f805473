/* cmd_bench_crawl.c: twin bench crawl: how fast twin's HTTP client (pipelines/http.h) fetches
 * pages from a local server, beside the curl command line tool on the same URLs from the same
 * server in the same run.
 *
 *   twin bench crawl [--pages N] [--size BYTES] [--concurrency C] [--repeat R] [--no-anchor]
 *
 * It writes N small HTML pages (default 2000, about --size bytes each, default 4096, lengths
 * varying +-50%) into a temporary folder, serves them with tests/fixture_server.py (Python's
 * ThreadingHTTPServer: the same server the crawler tests use) and fetches all of them:
 *   twin   http_fetch_many, max_per_host = max_total = C (default 16), min_interval_s 0,
 *          robots off, retries on (none happen);
 *   curl   curl --parallel --parallel-max C -K <config with N urls, output /dev/null>.
 * The two alternate R times (default 3); the best run of each is reported as pages/s and MB/s
 * (body bytes), their ratio, and how busy the server process and the client were (CPU seconds
 * over wall seconds, from /proc and getrusage), which says what limits the figure: with a
 * Python server it is normally the server (one core, the GIL), so a ratio near 1 means twin's
 * client costs no more than curl's; the client's own CPU share is the figure to compare then.
 */
#include "cli.h"
#include "pipelines/http.h"
#include "tests/fixture_server.h" /* one way to start the fixture server (tests and here) */

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct {
    double seconds, cpu_server, cpu_client;
    long ok;
    double bytes;
    int ran;
} bc_result;

/* CPU seconds (user + system) used so far by process pid, -1 when unknown. */
static double bc_proc_cpu(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    if (!p) return -1;
    unsigned long ut = 0, st = 0;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double bc_self_cpu(int who) {
    struct rusage ru;
    getrusage(who, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* Writes the pages; returns the total bytes, or -1 after printing the error. */
static double bc_make_pages(const char *dir, long n, long size) {
    char path[1100];
    snprintf(path, sizeof path, "%s/p", dir);
    if (tw_mkdir_p(path) != TW_OK) {
        cli_fail_status("bench crawl");
        return -1;
    }
    static const char *words[] = {"twin", "writes", "like", "one", "person", "the", "crawler", "fetched",
                                  "a", "page", "about", "models", "and", "style", "every", "morning"};
    uint64_t s = 0x9E3779B97F4A7C15ull;
    double total = 0;
    tw_sb sb;
    tw_sb_init(&sb);
    for (long i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        long want = size / 2 + (long)(s % (uint64_t)(size + 1));
        tw_sb_clear(&sb);
        tw_sb_printf(&sb,
                     "<!doctype html><html><head><meta charset=\"utf-8\"><title>Page %ld</title></head>"
                     "<body><article><h1>Page %ld</h1><p>",
                     i, i);
        while ((long)sb.len < want - 30) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            tw_sb_puts(&sb, words[s % 16]);
            tw_sb_putc(&sb, (s >> 8) % 11 == 0 ? '.' : ' ');
        }
        tw_sb_puts(&sb, "</p></article></body></html>\n");
        snprintf(path, sizeof path, "%s/p/%05ld.html", dir, i);
        if (sb.failed || tw_file_write_atomic(path, sb.buf, sb.len) != TW_OK) {
            tw_sb_free(&sb);
            cli_fail_status("bench crawl");
            return -1;
        }
        total += (double)sb.len;
    }
    tw_sb_free(&sb);
    return total;
}

static void bc_remove_pages(const char *dir, long n) {
    char path[1100];
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/p/%05ld.html", dir, i);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/p", dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/curl.cfg", dir);
    unlink(path);
    rmdir(dir);
}

typedef struct {
    long ok;
    double bytes;
} bc_count;

static int bc_done(void *ctx, const http_request *req, http_response *resp) {
    (void)req;
    bc_count *k = ctx;
    if (resp->result == HTTP_OK) {
        k->ok++;
        k->bytes += (double)resp->body_len;
    }
    return 0;
}

static int bc_run_twin(const fixture_server *srv, char **urls, long n, long conc, bc_result *out) {
    http_opts o;
    http_opts_default(&o);
    o.max_per_host = (int)conc;
    o.max_total = (int)conc;
    o.min_interval_s = 0;
    o.obey_robots = 0;
    http_client *c = NULL;
    if (http_client_new(&o, &c) != TW_OK) return cli_fail_status("bench crawl");
    http_request *q = tw_calloc((size_t)n, sizeof *q);
    if (!q) {
        http_client_free(c);
        return cli_fail(CLI_ERR, "bench crawl", "no memory");
    }
    for (long i = 0; i < n; i++) q[i].url = urls[i];
    bc_count k = {0, 0};
    double s0 = bc_proc_cpu(srv->pid), c0 = bc_self_cpu(RUSAGE_SELF), t0 = tw_now_s();
    tw_status st = http_fetch_many(c, q, (size_t)n, bc_done, &k);
    double t1 = tw_now_s(), c1 = bc_self_cpu(RUSAGE_SELF), s1 = bc_proc_cpu(srv->pid);
    tw_free(q);
    http_client_free(c);
    if (st != TW_OK) return cli_fail_status("bench crawl");
    out->seconds = t1 - t0;
    out->cpu_client = c1 - c0;
    out->cpu_server = s0 >= 0 && s1 >= 0 ? s1 - s0 : -1;
    out->ok = k.ok;
    out->bytes = k.bytes;
    out->ran = 1;
    return CLI_OK;
}

/* curl's version line, or NULL when the tool is missing. */
static char *bc_curl_version(void) {
    FILE *p = popen("curl --version 2>/dev/null", "r");
    if (!p) return NULL;
    char line[256] = "";
    char *got = fgets(line, sizeof line, p);
    int rc = pclose(p);
    if (!got || rc != 0 || strncmp(line, "curl ", 5) != 0) return NULL;
    line[strcspn(line, "(\n")] = 0;
    size_t l = strlen(line);
    while (l && line[l - 1] == ' ') line[--l] = 0;
    return tw_strdup(line);
}

static int bc_run_curl(const fixture_server *srv, const char *cfg, long conc, bc_result *out, tw_sb *err) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd,
             "curl --parallel --parallel-max %ld -s --no-progress-meter -K '%s' "
             "-w '%%{http_code} %%{size_download} %%{errormsg}\\n' 2>/dev/null",
             conc,
             cfg);
    double s0 = bc_proc_cpu(srv->pid), c0 = bc_self_cpu(RUSAGE_CHILDREN), t0 = tw_now_s();
    FILE *p = popen(cmd, "r");
    if (!p) {
        tw_sb_puts(err, "could not run curl");
        return -1;
    }
    char line[256];
    long ok = 0;
    double bytes = 0;
    while (fgets(line, sizeof line, p)) {
        int code = 0;
        double sz = 0;
        if (sscanf(line, "%d %lf", &code, &sz) == 2 && code == 200) {
            ok++;
            bytes += sz;
        } else if (err->len < 300) {
            tw_sb_puts(err, line);
        }
    }
    int rc = pclose(p);
    double t1 = tw_now_s(), c1 = bc_self_cpu(RUSAGE_CHILDREN), s1 = bc_proc_cpu(srv->pid);
    if (rc != 0 && !ok) return -1;
    out->seconds = t1 - t0;
    out->cpu_client = c1 - c0;
    out->cpu_server = s0 >= 0 && s1 >= 0 ? s1 - s0 : -1;
    out->ok = ok;
    out->bytes = bytes;
    out->ran = 1;
    return 0;
}

static void bc_print(const char *who, const bc_result *r, long n) {
    printf("%s pages/s=%.0f MB/s=%.2f seconds=%.3f ok=%ld/%ld client_cpu=%.0f%% server_cpu=%.0f%%\n", who,
           (double)r->ok / r->seconds, r->bytes / r->seconds / 1e6, r->seconds, r->ok, n,
           100 * r->cpu_client / r->seconds, r->cpu_server >= 0 ? 100 * r->cpu_server / r->seconds : -1.0);
}

static void bc_usage(FILE *f) {
    fprintf(f, "usage: twin bench crawl [--pages N] [--size BYTES] [--concurrency C] [--repeat R] [--no-anchor]\n\n"
               "Fetches N generated HTML pages (default 2000, about --size bytes each, default 4096)\n"
               "from tests/fixture_server.py on 127.0.0.1 with twin's HTTP client (C concurrent,\n"
               "default 16, no per-host interval, robots off) and with `curl --parallel\n"
               "--parallel-max C` (the anchor, unless --no-anchor or curl is missing), alternating\n"
               "R times (default 3), and prints the best pages/s and MB/s of each, their ratio,\n"
               "the CPU share of the server and of each client, and the machine.\n");
}

int cmd_bench_crawl(int argc, char **argv) {
    long pages = 2000, size = 4096, conc = 16, repeat = 3;
    int anchor = 1;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            bc_usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "--pages", &v)) {
            if (cli_parse_int("bench crawl", "--pages", v, 1, 1000000, &pages)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--size", &v)) {
            if (cli_parse_int("bench crawl", "--size", v, 64, 64 << 20, &size)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--concurrency", &v)) {
            if (cli_parse_int("bench crawl", "--concurrency", v, 1, 1024, &conc)) return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--repeat", &v)) {
            if (cli_parse_int("bench crawl", "--repeat", v, 1, 100, &repeat)) return CLI_USAGE;
        } else if (cli_flag(argv, i, "--no-anchor")) {
            anchor = 0;
        } else {
            return cli_fail(CLI_USAGE, "bench crawl", "unknown argument '%s' (twin bench crawl --help)", argv[i]);
        }
    }
    char *script = cli_source_path("tests/fixture_server.py");
    if (!script)
        return cli_fail(CLI_ERR, "bench crawl", "tests/fixture_server.py not found (set TWIN_SRC to the source tree)");
    const char *td = getenv("TMPDIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/twin-bench-crawl-%ld", td && *td ? td : "/tmp", (long)getpid());
    double total = bc_make_pages(dir, pages, size);
    if (total < 0) {
        tw_free(script);
        return CLI_ERR;
    }
    fixture_server srv;
    char why[300];
    if (fixture_server_start(&srv, script, dir, why, sizeof why) != 0) {
        bc_remove_pages(dir, pages);
        tw_free(script);
        return cli_fail(CLI_ERR, "bench crawl", "%s", why);
    }
    printf("pages: %ld HTML pages, %.2f MB in all (mean %.0f bytes), served by tests/fixture_server.py "
           "(Python ThreadingHTTPServer, HTTP/1.1 keep-alive) on 127.0.0.1; concurrency %ld\n",
           pages, total / 1e6, total / (double)pages, conc);

    int rc = CLI_OK;
    char **urls = tw_calloc((size_t)pages, sizeof *urls);
    char cfg[1100];
    snprintf(cfg, sizeof cfg, "%s/curl.cfg", dir);
    tw_sb cf;
    tw_sb_init(&cf);
    for (long i = 0; urls && i < pages; i++) {
        char u[128];
        snprintf(u, sizeof u, "%s/p/%05ld.html", srv.base, i);
        urls[i] = tw_strdup(u);
        if (!urls[i]) {
            rc = cli_fail(CLI_ERR, "bench crawl", "no memory");
            break;
        }
        tw_sb_printf(&cf, "url = \"%s\"\noutput = \"/dev/null\"\n", u);
    }
    if (!urls) rc = cli_fail(CLI_ERR, "bench crawl", "no memory");

    char *curl = NULL;
    if (anchor && rc == CLI_OK) {
        curl = bc_curl_version();
        if (!curl) printf("curl: anchor missing: the curl command line tool was not found (apt-get install curl)\n");
        else if (tw_file_write_atomic(cfg, cf.buf, cf.len) != TW_OK) rc = cli_fail_status("bench crawl");
    }
    tw_sb_free(&cf);

    bc_result best_twin = {0}, best_curl = {0};
    tw_sb err;
    tw_sb_init(&err);
    int curl_failed = 0;
    for (long r = 0; r < repeat && rc == CLI_OK; r++) {
        bc_result t = {0};
        if (bc_run_twin(&srv, urls, pages, conc, &t) != CLI_OK) {
            rc = CLI_ERR;
            break;
        }
        if (!best_twin.ran || t.seconds < best_twin.seconds) best_twin = t;
        if (curl && !curl_failed) {
            bc_result a = {0};
            if (bc_run_curl(&srv, cfg, conc, &a, &err) != 0) curl_failed = 1;
            else if (!best_curl.ran || a.seconds < best_curl.seconds) best_curl = a;
        }
    }
    if (rc == CLI_OK) {
        bc_print("twin", &best_twin, pages);
        if (curl && best_curl.ran) {
            bc_print("curl", &best_curl, pages);
            printf("anchor: %s --parallel --parallel-max %ld (best of %ld, alternating with twin)\n", curl, conc, repeat);
            printf("ratio=%.2f (twin pages/s / curl pages/s)\n",
                   ((double)best_twin.ok / best_twin.seconds) / ((double)best_curl.ok / best_curl.seconds));
        } else if (curl) {
            printf("curl: anchor failed: %s\n", err.len ? tw_sb_str(&err) : "no result lines");
        }
        double busy = best_twin.cpu_server >= 0 ? best_twin.cpu_server / best_twin.seconds : -1;
        double load = 0;
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        int loaded = getloadavg(&load, 1) == 1 && load > 0.75 * (double)ncpu;
        printf("load average: %.2f on %ld cores\n", load, ncpu);
        if (busy >= 0.85)
            printf("limit: the server: Python used %.0f%% of a core during twin's run (one core at most under the "
                   "GIL), so both figures measure the server; compare the clients by client_cpu\n",
                   100 * busy);
        else if (busy >= 0 && loaded)
            printf("limit: the machine: load average %.1f on %ld cores, so the server (%.0f%% of a core) and the "
                   "client (%.0f%%) wait for CPU; the ratio is fairer than either figure\n",
                   load, ncpu, 100 * busy, 100 * best_twin.cpu_client / best_twin.seconds);
        else if (busy >= 0)
            printf("limit: neither CPU is saturated (server %.0f%% of a core, client %.0f%%): latency per "
                   "request (Python's per-request work, loopback round trips) times the concurrency\n",
                   100 * busy, 100 * best_twin.cpu_client / best_twin.seconds);
        if (best_twin.ok != pages) {
            printf("twin: only %ld of %ld pages fetched\n", best_twin.ok, pages);
            rc = CLI_ERR;
        }
    }
    bench_print_machine(1);
    tw_sb_free(&err);
    tw_free(curl);
    for (long i = 0; urls && i < pages; i++) tw_free(urls[i]);
    tw_free(urls);
    fixture_server_stop(&srv);
    bc_remove_pages(dir, pages);
    tw_free(script);
    return rc;
}
