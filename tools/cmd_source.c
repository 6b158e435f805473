/* cmd_source.c: twin source add|ls|rm: the places an author's writing is crawled from, kept in
 * the warehouse (<workspace>/twin.db, pipelines/warehouse.h).
 *
 *   add --author NAME [--platform P] [--every INTERVAL] URL   prints the source id on stdout
 *   ls [--author NAME] [--json]                               one line (or object) per source
 *   rm ID                                                     its documents stay
 *
 * Paths of local folders and LinkedIn exports are stored absolute, so `twin crawl` finds them
 * from any working directory. */
#include "cli.h"
#include "cli_warehouse.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin source add --author NAME [--platform P] [--every INTERVAL] URL\n"
            "       twin source ls [--author NAME] [--json]\n"
            "       twin source rm ID\n\n"
            "Sources are where an author's writing is crawled from (twin crawl). They are kept\n"
            "in <workspace>/twin.db, which is made (with the workspace folder) when absent.\n\n"
            "add       adds a source and prints its id; adding one that exists (same author,\n"
            "          platform and URL) prints its id and says it is already present.\n"
            "  --author NAME     whose writing it is (required; added when new)\n"
            "  --platform P      medium|substack|github|linkedin|article|local; guessed when\n"
            "                    absent: medium.com or *.medium.com -> medium, *.substack.com ->\n"
            "                    substack, github.com -> github, a .zip file or a folder holding\n"
            "                    Shares.csv -> linkedin (a LinkedIn data export), another folder\n"
            "                    -> local, any other http(s) URL -> article\n"
            "  --every INTERVAL  crawl it every INTERVAL in `twin schedule run`: SECONDS or a\n"
            "                    number with s, m, h, d or w (30m, 6h, 1d); default: not scheduled\n"
            "  URL               an http(s) URL (medium, substack, github, article) or a path\n"
            "                    (linkedin: the export .zip or its folder; local: a folder),\n"
            "                    which must exist and is stored absolute\n"
            "ls        lists sources: id, author, platform, URL, interval, last crawl (UTC),\n"
            "          last status (ok, partial, failed, interrupted; '-' never crawled)\n"
            "  --author NAME     only this author's\n"
            "  --json            a JSON array of objects {id, author, platform, url, every_s,\n"
            "                    next_crawl_at, last_crawl_at, last_status} (times: seconds since\n"
            "                    the epoch, null when never)\n"
            "rm ID     removes a source with its crawl state; its documents stay in the warehouse\n\n"
            "exit status: 0 success, 1 runtime error (unreadable warehouse, no such source or\n"
            "author), 2 bad usage (unknown platform, bad URL or interval)\n");
}

static int is_http(const char *url) {
    return !strncasecmp(url, "http://", 7) || !strncasecmp(url, "https://", 8);
}

/* Checks that url fits platform p; for paths returns their absolute form in *abs (tw_free).
 * Prints the usage error and returns CLI_USAGE when it does not fit. */
static int check_url(const char *cmd, wh_platform p, const char *url, char **abs) {
    *abs = NULL;
    int guess = wh_platform_guess(url);
    switch (p) {
    case WH_PLATFORM_MEDIUM:
    case WH_PLATFORM_SUBSTACK:
    case WH_PLATFORM_GITHUB:
    case WH_PLATFORM_ARTICLE:
        if (!is_http(url) || guess < 0)
            return cli_fail(CLI_USAGE, cmd, "URL '%s': a %s source needs an http(s) URL with a host",
                            url, wh_platform_name(p));
        return CLI_OK;
    case WH_PLATFORM_LINKEDIN:
    case WH_PLATFORM_LOCAL: {
        if (is_http(url) || strstr(url, "://"))
            return cli_fail(CLI_USAGE, cmd, "URL '%s': a %s source is a path on this machine",
                            url, wh_platform_name(p));
        int dir = tw_is_dir(url);
        if (!tw_path_exists(url))
            return cli_fail(CLI_USAGE, cmd, "URL '%s': no such %s", url,
                            p == WH_PLATFORM_LOCAL ? "folder" : "file or folder");
        if (p == WH_PLATFORM_LOCAL && !dir)
            return cli_fail(CLI_USAGE, cmd, "URL '%s': a local source is a folder", url);
        if (p == WH_PLATFORM_LINKEDIN && !dir && guess != WH_PLATFORM_LINKEDIN)
            return cli_fail(CLI_USAGE, cmd,
                            "URL '%s': a linkedin source is the export's .zip or its folder", url);
        char buf[PATH_MAX];
        if (!realpath(url, buf))
            return cli_fail(CLI_USAGE, cmd, "URL '%s': cannot resolve the path", url);
        *abs = tw_strdup(buf);
        return *abs ? CLI_OK : cli_fail(CLI_ERR, cmd, "out of memory");
    }
    default:
        return cli_fail(CLI_USAGE, cmd, "platform %d is not a platform", (int)p);
    }
}

static int source_add(int argc, char **argv) {
    const char *cmd = "source add";
    const char *author = NULL, *platform = NULL, *every = NULL, *url = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "--author", &v)) {
            if (!v || !*v) return cli_fail(CLI_USAGE, cmd, "--author needs a name");
            author = v;
        } else if (cli_opt(argc, argv, &i, "--platform", &v)) {
            if (!v) return cli_fail(CLI_USAGE, cmd, "--platform needs a value");
            platform = v;
        } else if (cli_opt(argc, argv, &i, "--every", &v)) {
            if (!v) return cli_fail(CLI_USAGE, cmd, "--every needs an interval (30m, 6h, 1d)");
            every = v;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_fail(CLI_USAGE, cmd, "unknown option '%s' (twin source --help)", argv[i]);
        } else if (url) {
            return cli_fail(CLI_USAGE, cmd, "one URL only ('%s' and '%s')", url, argv[i]);
        } else {
            url = argv[i];
        }
    }
    if (!author) return cli_fail(CLI_USAGE, cmd, "--author NAME is required");
    if (!url || !*url) return cli_fail(CLI_USAGE, cmd, "a URL is required (twin source --help)");
    int p;
    if (platform) {
        p = wh_platform_parse(platform);
        if (p < 0)
            return cli_fail(CLI_USAGE, cmd,
                            "--platform '%s': expected medium|substack|github|linkedin|article|local",
                            platform);
    } else {
        p = wh_platform_guess(url);
        if (p < 0)
            return cli_fail(CLI_USAGE, cmd,
                            "URL '%s': cannot tell its platform (not an http(s) URL, an existing "
                            "folder or a .zip); give --platform",
                            url);
    }
    int64_t every_s = 0;
    if (every && wh_interval_parse(every, &every_s) != TW_OK)
        return cli_fail(CLI_USAGE, cmd, "--every: %s", tw_errmsg());
    char *abs = NULL;
    int rc = check_url(cmd, (wh_platform)p, url, &abs);
    if (rc) return rc;
    wh_db *db;
    rc = cli_warehouse_open(cmd, &db);
    if (!rc) {
        int64_t id = 0;
        int existed = 0;
        if (wh_source_add(db, author, (wh_platform)p, abs ? abs : url, every_s, &id, &existed)) {
            rc = cli_fail_status(cmd);
        } else {
            printf("%lld\n", (long long)id);
            if (existed)
                fprintf(stderr, "twin source add: source %lld (%s, %s, %s) is already present\n",
                        (long long)id, author, wh_platform_name((wh_platform)p), abs ? abs : url);
            else
                fprintf(stderr, "twin source add: added source %lld (%s, %s, %s)\n", (long long)id,
                        author, wh_platform_name((wh_platform)p), abs ? abs : url);
        }
    }
    wh_close(db);
    tw_free(abs);
    return rc;
}

/* ---- ls ------------------------------------------------------------------------------------ */

typedef struct {
    int json;
    int n;
    tw_sb out;
} ls_state;

static int ls_one(void *ctx, const wh_source *s) {
    ls_state *l = ctx;
    tw_sb *o = &l->out;
    char every[24], last[32];
    cli_interval_text(s->every_s, every);
    cli_time_iso(s->last_crawl_at, last);
    if (l->json) {
        tw_sb_puts(o, l->n ? ",\n  " : "\n  ");
        tw_sb_printf(o, "{\"id\": %lld, \"author\": ", (long long)s->id);
        cli_json_text(o, s->author, strlen(s->author));
        tw_sb_printf(o, ", \"platform\": \"%s\", \"url\": ", wh_platform_name(s->platform));
        cli_json_text(o, s->url, strlen(s->url));
        tw_sb_printf(o, ", \"every_s\": %lld", (long long)s->every_s);
        if (s->every_s > 0)
            tw_sb_printf(o, ", \"next_crawl_at\": %.3f", s->next_crawl_at);
        else
            tw_sb_puts(o, ", \"next_crawl_at\": null");
        if (s->last_crawl_at > 0)
            tw_sb_printf(o, ", \"last_crawl_at\": %.3f", s->last_crawl_at);
        else
            tw_sb_puts(o, ", \"last_crawl_at\": null");
        if (s->last_status[0]) {
            tw_sb_puts(o, ", \"last_status\": ");
            cli_json_text(o, s->last_status, strlen(s->last_status));
            tw_sb_puts(o, "}");
        } else {
            tw_sb_puts(o, ", \"last_status\": null}");
        }
    } else {
        tw_sb_printf(o, "%-4lld %-16s %-9s %-48s %-6s %-20s %s\n", (long long)s->id, s->author,
                     wh_platform_name(s->platform), s->url, every, last,
                     s->last_status[0] ? s->last_status : "-");
    }
    l->n++;
    return o->failed;
}

static int source_ls(int argc, char **argv) {
    const char *cmd = "source ls";
    const char *author = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "--author", &v)) {
            if (!v || !*v) return cli_fail(CLI_USAGE, cmd, "--author needs a name");
            author = v;
        } else if (cli_flag(argv, i, "--json")) {
            json = 1;
        } else {
            return cli_fail(CLI_USAGE, cmd, "unexpected argument '%s' (twin source --help)",
                            argv[i]);
        }
    }
    wh_db *db;
    int rc = cli_warehouse_open(cmd, &db);
    if (rc) return rc;
    int64_t author_id = 0;
    if (author && wh_author_find(db, author, &author_id)) {
        wh_close(db);
        return cli_fail(CLI_ERR, cmd, "--author '%s': no such author", author);
    }
    ls_state l = {json, 0, {0}};
    tw_sb_init(&l.out);
    if (!json)
        tw_sb_printf(&l.out, "%-4s %-16s %-9s %-48s %-6s %-20s %s\n", "ID", "AUTHOR", "PLATFORM",
                     "URL", "EVERY", "LAST CRAWL", "STATUS");
    else
        tw_sb_putc(&l.out, '[');
    if (wh_source_each(db, author_id, ls_one, &l)) {
        rc = cli_fail_status(cmd);
    } else if (l.out.failed) {
        rc = cli_fail(CLI_ERR, cmd, "out of memory");
    } else {
        if (json) tw_sb_puts(&l.out, l.n ? "\n]\n" : "]\n");
        fwrite(tw_sb_str(&l.out), 1, l.out.len, stdout);
    }
    tw_sb_free(&l.out);
    wh_close(db);
    return rc;
}

static int source_rm(int argc, char **argv) {
    const char *cmd = "source rm";
    const char *id_text = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        if (id_text) return cli_fail(CLI_USAGE, cmd, "one ID only (twin source ls lists them)");
        id_text = argv[i];
    }
    if (!id_text) return cli_fail(CLI_USAGE, cmd, "an ID is required (twin source ls lists them)");
    long id;
    if (cli_parse_int(cmd, "ID", id_text, 1, LONG_MAX, &id)) return CLI_USAGE;
    wh_db *db;
    int rc = cli_warehouse_open(cmd, &db);
    if (rc) return rc;
    if (wh_source_remove(db, (int64_t)id))
        rc = cli_fail_status(cmd);
    else
        printf("removed source %ld (its documents stay)\n", id);
    wh_close(db);
    return rc;
}

int cmd_source(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (cli_is_help(argv[1])) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "add")) return source_add(argc - 1, argv + 1);
    if (!strcmp(argv[1], "ls")) return source_ls(argc - 1, argv + 1);
    if (!strcmp(argv[1], "rm")) return source_rm(argc - 1, argv + 1);
    return cli_fail(CLI_USAGE, "source", "unknown subcommand '%s' (add, ls, rm)", argv[1]);
}
