/* cmd_schedule.c: twin schedule run [--once] [--poll S]: the crawl daemon. Each source with an
 * interval (twin source add --every) is crawled when due (wh_source_each_due), one at a time;
 * the source lock keeps two daemons (or a daemon and a `twin crawl`) off the same source. Between
 * rounds it sleeps until the next source is due, at most --poll seconds (sources added
 * meanwhile are seen at the next wake-up). SIGINT / SIGTERM stop it after the current source.
 * Each run is logged on stdout: "<UTC time> source ID PLATFORM URL: STATUS, counts[; reasons]". */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "crawl_report.h"

#define CMD "schedule"

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin schedule run [--once] [--poll S] [--interval S] [--timeout S]\n\n"
            "Runs the crawl schedule: every source with an interval is crawled when it is due,\n"
            "one source at a time and never one that another crawl holds. Sleeps until the next\n"
            "source is due (waking at least every --poll seconds, default 60). SIGINT or SIGTERM\n"
            "stops it after the source being crawled. Logs one line per run on stdout.\n\n"
            "  --once          crawl what is due now, then exit\n"
            "  --poll S        longest sleep between two looks at the schedule (default 60)\n"
            "  --interval S    seconds between two requests to one host (default 0.25)\n"
            "  --timeout S     seconds one request may take (default 30)\n\n"
            "exit status: 0 stopped cleanly, 1 the warehouse could not be used, 2 bad usage\n");
}

/* Set by the signal handler, read by the loop: a signal handler can only talk to the program
 * through such a flag, which is why this one piece of file-level mutable state exists. */
static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void utc_stamp(char *buf, size_t cap) {
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The due sources' ids, and the earliest next_crawl_at of all scheduled sources. */
typedef struct {
    int64_t *ids;
    size_t n, cap;
    double next_due;
    int oom;
} due_list;

static int on_due(void *ctx, const wh_source *s) {
    due_list *d = ctx;
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 16;
        int64_t *ni = tw_realloc(d->ids, nc * sizeof *ni);
        if (!ni) return d->oom = 1;
        d->ids = ni;
        d->cap = nc;
    }
    d->ids[d->n++] = s->id;
    return 0;
}

static int on_any(void *ctx, const wh_source *s) {
    due_list *d = ctx;
    if (s->every_s > 0 && (d->next_due == 0 || s->next_crawl_at < d->next_due))
        d->next_due = s->next_crawl_at > 0 ? s->next_crawl_at : wall_now();
    return 0;
}

/* Crawls one source by id and logs the run. Returns 0, or -1 on a warehouse error that should
 * stop the daemon. */
static int crawl_one(crawl_ctx *ctx, int64_t id) {
    wh_source s;
    if (wh_source_get(ctx->db, id, &s)) {
        if (tw_errcode() == TW_ERR_NOT_FOUND) return 0; /* removed meanwhile */
        return -1;
    }
    wh_run_counts c;
    int64_t run_id = 0;
    tw_status st = crawl_source(ctx, &s, &c, &run_id);
    char stamp[32];
    utc_stamp(stamp, sizeof stamp);
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s source %lld %s %s: ", stamp, (long long)s.id,
                 wh_platform_name(s.platform), s.url);
    if (st) {
        /* locked by another crawl, or the run failed: logged, the daemon goes on */
        tw_sb_printf(&sb, "%s (%s)", run_id ? "failed" : "not run", tw_errmsg());
    } else {
        tw_sb_printf(&sb, "%s, ", c.failed ? "partial" : "ok");
        crawl_counts_print(&sb, &c);
        crawl_reasons failed = {0};
        if (c.failed && !crawl_reasons_add(&failed, ctx->db, run_id, WH_EVENT_FAILED)) {
            tw_sb_puts(&sb, "; ");
            crawl_reasons_print(&sb, &failed, "failed");
        }
        crawl_reasons_free(&failed);
    }
    printf("%s\n", tw_sb_str(&sb));
    fflush(stdout);
    tw_sb_free(&sb);
    wh_source_clear(&s);
    return 0;
}

/* Sleeps up to secs, waking early when a signal asks to stop. */
static void nap(double secs) {
    while (secs > 0 && !g_stop) {
        double step = secs > 0.2 ? 0.2 : secs;
        struct timespec ts = {(time_t)step, (long)((step - (double)(time_t)step) * 1e9)};
        nanosleep(&ts, NULL);
        secs -= step;
    }
}

int cmd_schedule(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[1], "run") != 0) {
        usage(stderr);
        return cli_fail(CLI_USAGE, CMD, "unknown subcommand '%s' (expected run)", argv[1]);
    }
    int once = 0;
    double poll = 60;
    crawl_cli_opts co = {-1, -1};
    for (int i = 2; i < argc; i++) {
        const char *v;
        int r;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_flag(argv, i, "--once")) {
            once = 1;
        } else if (cli_opt(argc, argv, &i, "--poll", &v)) {
            if (cli_parse_double(CMD, "--poll", v, &poll)) return CLI_USAGE;
            if (!(poll > 0 && poll <= 86400))
                return cli_fail(CLI_USAGE, CMD, "--poll: '%s' is not in (0, 86400] seconds", v);
        } else if ((r = crawl_cli_opt(CMD, argc, argv, &i, &co)) != 0) {
            if (r < 0) return CLI_USAGE;
        } else {
            usage(stderr);
            return cli_fail(CLI_USAGE, CMD, "unknown argument '%s'", argv[i]);
        }
    }
    crawl_ctx ctx = {0};
    int rc = crawl_cli_open(CMD, &co, &ctx);
    if (rc) return rc;
    g_stop = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    tw_log_info("schedule: started (poll %.0f s)%s", poll, once ? ", once" : "");
    due_list due = {0};
    while (!g_stop) {
        due.n = 0;
        due.next_due = 0;
        tw_status st = wh_source_each_due(ctx.db, wall_now(), on_due, &due);
        if (st || due.oom) {
            rc = due.oom ? cli_fail(CLI_ERR, CMD, "out of memory") : cli_fail_status(CMD);
            break;
        }
        for (size_t i = 0; i < due.n && !g_stop; i++)
            if (crawl_one(&ctx, due.ids[i])) {
                rc = cli_fail_status(CMD);
                g_stop = 1;
            }
        if (once || g_stop) break;
        if (wh_source_each(ctx.db, 0, on_any, &due)) {
            rc = cli_fail_status(CMD);
            break;
        }
        double wait = due.next_due > 0 ? due.next_due - wall_now() : poll;
        if (wait > poll) wait = poll;
        /* a source still due (another crawl holds it) is looked at again in a second, not in
         * a busy loop */
        double floor_s = poll < 1 ? poll : 1;
        if (wait < floor_s) wait = floor_s;
        nap(wait);
    }
    if (g_stop && rc == CLI_OK) tw_log_info("schedule: stopped by a signal");
    tw_free(due.ids);
    crawl_cli_close(&ctx);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    return rc == CLI_USAGE ? CLI_ERR : rc;
}
