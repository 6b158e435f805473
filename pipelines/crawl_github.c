/* crawl_github.c: a GitHub user's public repositories (or one repository) through the REST API
 * (crawl_github_run, crawl_impl.h).
 *
 *   GET <api>/users/<u>/repos?per_page=100&page=N    non-fork repositories, their default branch
 *   GET <api>/repos/<o>/<r>                          default branch (one-repository sources)
 *   GET <api>/repos/<o>/<r>/git/trees/<b>?recursive=1  every path with its size and blob sha
 *   GET <api>/repos/<o>/<r>/contents/<path>?ref=<b>  base64 "content"; files the contents API
 *                                                    does not inline (over 1 MB) via
 *   GET <api>/repos/<o>/<r>/git/blobs/<sha>
 *
 * Incremental at two levels: the tree is a conditional GET (its ETag / body hash stored only
 * after every kept file of it is in the warehouse), so an unchanged repository costs one 304;
 * a changed tree fetches only blobs not seen before (seen_items holds "<o>/<r>/<path>@<sha>",
 * so a file is fetched again when its content or its path changes).
 *
 * Rate limits: a 403 or 429 with x-ratelimit-remaining: 0 (or a 429 the client gave up on)
 * waits for x-ratelimit-reset when that is within the HTTP client's default backoff limit, then
 * asks once more; otherwise the run stops there with a FAILED event saying so (the run is then
 * "partial": what was stored stays, the next run goes on from the seen blobs). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "crawl_files.h"
#include "crawl_impl.h"
#include "json.h"

#define GH_DEFAULT_API "https://api.github.com"
#define GH_ACCEPT "application/vnd.github+json"
#define GH_API_VERSION "X-GitHub-Api-Version: 2022-11-28"
#define GH_PER_PAGE 100
/* Ten thousand repositories: far more than a person has; stops a server that never ends. */
#define GH_MAX_PAGES 100

typedef struct {
    crawl_run *run;
    char *api;          /* API base without a trailing '/' */
    char *web;          /* scheme://host of the source URL, for document URLs */
    char *auth;         /* "Authorization: Bearer ..." or NULL */
    const char *headers[3];
    double max_wait_s;  /* longest rate-limit wait before stopping the run */
    size_t max_bytes;
    int stopped;        /* rate limited beyond max_wait_s: no more requests */
    int incomplete;     /* some file of the current tree was not stored */
} gh_crawl;

typedef struct {
    char *owner, *name, *branch; /* branch NULL: ask /repos/<o>/<r> */
} gh_repo;

static double gh_wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void gh_sleep(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* Seconds until the rate limit of resp lifts, or -1 when resp is not a rate-limit answer. */
static double gh_rate_limit_wait(const http_response *resp) {
    if (resp->result != HTTP_ERR_STATUS || (resp->status != 403 && resp->status != 429)) return -1;
    char rem[32], reset[32], after[32];
    int has_rem = http_response_header(resp, "x-ratelimit-remaining", rem, sizeof rem);
    if (resp->status == 403 && !(has_rem && atoll(rem) == 0)) return -1; /* a real 403 */
    if (http_response_header(resp, "retry-after", after, sizeof after) && atof(after) > 0)
        return atof(after);
    if (http_response_header(resp, "x-ratelimit-reset", reset, sizeof reset)) {
        double w = atof(reset) - gh_wall_now();
        return w > 0 ? w : 0;
    }
    return 60; /* GitHub's advice for a secondary limit without headers: wait a minute */
}

/* GETs url through crawl_fetch, handling rate limits. Exactly one event is recorded for url
 * (crawl_fetch's, or FAILED here). *res as crawl_fetch's; CRAWL_FAILED also when stopped. */
static tw_status gh_get(gh_crawl *g, const char *url, int flags, http_response *resp,
                        crawl_fetch_result *res) {
    memset(resp, 0, sizeof *resp);
    *res = CRAWL_FAILED;
    if (g->stopped) return TW_OK;
    for (int waited = 0;; waited++) {
        tw_status st = crawl_fetch(g->run, url, GH_ACCEPT, g->headers, flags | CRAWL_QUIET_FAIL | CRAWL_API,
                                   resp, res);
        if (st || *res != CRAWL_FAILED) return st;
        double w = gh_rate_limit_wait(resp);
        if (w < 0) {
            char why[320];
            return crawl_event(g->run, url, WH_EVENT_FAILED, resp->status, "%s",
                               crawl_http_reason(resp, why, sizeof why));
        }
        if (waited || w > g->max_wait_s) {
            g->stopped = 1;
            if (waited)
                return crawl_event(g->run, url, WH_EVENT_FAILED, resp->status,
                                   "rate limited; still limited after waiting, run stopped");
            char when[32] = "?";
            time_t at = (time_t)(gh_wall_now() + w);
            struct tm tm;
            if (gmtime_r(&at, &tm)) strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
            return crawl_event(g->run, url, WH_EVENT_FAILED, resp->status,
                               "rate limited; the limit resets at %s (in %.0f s), beyond the "
                               "%.0f s wait limit: run stopped",
                               when, w, g->max_wait_s);
        }
        tw_log_info("crawl github: rate limited at %s, waiting %.1f s", url, w);
        http_response_clear(resp);
        gh_sleep(w + 0.5);
    }
}

/* Parses the body of a successful answer; on bad JSON records a FAILED event for url (the
 * FETCHED one is already there: the body came but cannot be used) and returns NULL. */
static tw_status gh_parse(gh_crawl *g, const char *url, const http_response *resp, tw_json **out) {
    *out = tw_json_parse(resp->body, resp->body_len, url);
    if (*out) return TW_OK;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", tw_errmsg());
    tw_error_clear();
    g->incomplete = 1;
    return crawl_event(g->run, url, WH_EVENT_FAILED, resp->status, "bad answer; %s", msg);
}

static void gh_repo_clear(gh_repo *r) {
    tw_free(r->owner);
    tw_free(r->name);
    tw_free(r->branch);
    memset(r, 0, sizeof *r);
}

/* <web>/<o>/<r>/<kind>/<branch>/<path> with the parts escaped (kind "blob" or "tree"). */
static char *gh_web_url(const gh_crawl *g, const gh_repo *r, const char *kind, const char *path,
                        size_t path_len) {
    char *p = tw_strndup(path, path_len);
    char *ep = p ? crawl_url_escape(p, 1) : NULL;
    char *eb = crawl_url_escape(r->branch, 0);
    tw_sb sb;
    tw_sb_init(&sb);
    if (ep && eb) tw_sb_printf(&sb, "%s/%s/%s/%s/%s/%s", g->web, r->owner, r->name, kind, eb, ep);
    tw_free(p);
    tw_free(ep);
    tw_free(eb);
    if (!ep || !eb || sb.failed) {
        tw_sb_free(&sb);
        return NULL;
    }
    return tw_sb_take(&sb);
}

/* The decoded bytes of one kept file, from the contents API or (when it does not inline the
 * file) the blob API. *data NULL with TW_OK: not available (event recorded). */
static tw_status gh_file_bytes(gh_crawl *g, const gh_repo *r, const char *path, const char *sha,
                               char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    char *ep = crawl_url_escape(path, 1), *eb = crawl_url_escape(r->branch, 0);
    tw_sb url;
    tw_sb_init(&url);
    if (ep && eb)
        tw_sb_printf(&url, "%s/repos/%s/%s/contents/%s?ref=%s", g->api, r->owner, r->name, ep, eb);
    tw_free(ep);
    tw_free(eb);
    if (!ep || !eb || url.failed) {
        tw_sb_free(&url);
        return tw_error(TW_ERR_NOMEM, "crawl github: out of memory");
    }
    tw_status st = TW_OK;
    for (int blob_api = 0; blob_api < 2 && !*data; blob_api++) {
        if (blob_api) {
            if (!sha || !*sha) break;
            tw_sb_clear(&url);
            tw_sb_printf(&url, "%s/repos/%s/%s/git/blobs/%s", g->api, r->owner, r->name, sha);
            if (url.failed) {
                st = tw_error(TW_ERR_NOMEM, "crawl github: out of memory");
                break;
            }
        }
        http_response resp;
        crawl_fetch_result res;
        st = gh_get(g, url.buf, 0, &resp, &res);
        if (st || res != CRAWL_GOT_BODY) {
            if (!st) g->incomplete = 1;
            http_response_clear(&resp);
            break;
        }
        tw_json *j = NULL;
        st = gh_parse(g, url.buf, &resp, &j);
        if (st || !j) {
            http_response_clear(&resp);
            break;
        }
        const char *enc = tw_json_get_str(j, "encoding", "");
        const char *content = tw_json_get_str(j, "content", NULL);
        if (!strcmp(enc, "base64") && content) {
            if (crawl_base64_decode(content, strlen(content), data, len) != TW_OK) {
                char msg[256];
                snprintf(msg, sizeof msg, "%s", tw_errmsg());
                tw_error_clear();
                g->incomplete = 1;
                st = crawl_event(g->run, url.buf, WH_EVENT_FAILED, resp.status, "bad answer; %s",
                                 msg);
                tw_json_free(j);
                http_response_clear(&resp);
                break;
            }
        } else if (blob_api || strcmp(tw_json_get_str(j, "type", "file"), "file") != 0) {
            /* The blob API always inlines; a contents answer for a non-file is not a file. */
            g->incomplete = 1;
            st = crawl_event(g->run, url.buf, WH_EVENT_FAILED, resp.status,
                             "bad answer; no base64 content (encoding \"%s\")", enc);
            tw_json_free(j);
            http_response_clear(&resp);
            break;
        }
        /* else: encoding "none" (a file over 1 MB): the loop asks the blob API. */
        tw_json_free(j);
        http_response_clear(&resp);
    }
    tw_sb_free(&url);
    return st;
}

/* Fetches, classifies and stores one kept blob. */
static tw_status gh_file(gh_crawl *g, const gh_repo *r, const char *path, const char *sha,
                         const char *doc_url, const char *guid) {
    char *data = NULL;
    size_t len = 0;
    tw_status st = gh_file_bytes(g, r, path, sha, &data, &len);
    if (st || !data) return st;
    if (crawl_bytes_binary(data, len)) {
        tw_free(data);
        st = crawl_event(g->run, doc_url, WH_EVENT_SKIPPED, 0, "binary (NUL bytes)");
        return st ? st : wh_item_mark(g->run->ctx->db, g->run->src->id, guid);
    }
    if (g->max_bytes && len > g->max_bytes) {
        tw_free(data);
        st = crawl_event(g->run, doc_url, WH_EVENT_SKIPPED, 0, "too large (%zu bytes > %zu)", len,
                         g->max_bytes);
        return st ? st : wh_item_mark(g->run->ctx->db, g->run->src->id, guid);
    }
    crawl_file_kind_t kind;
    crawl_file_kind(path, &kind);
    tw_sb meta;
    tw_sb_init(&meta);
    char repo[512];
    snprintf(repo, sizeof repo, "%s/%s", r->owner, r->name);
    tw_sb_putc(&meta, '{');
    crawl_json_member(&meta, "repo", repo);
    crawl_json_member(&meta, "path", path);
    crawl_json_member(&meta, "language", kind.language);
    crawl_json_member(&meta, "branch", r->branch);
    tw_sb_putc(&meta, '}');
    tw_sb title;
    tw_sb_init(&title);
    tw_sb_printf(&title, "%s/%s", r->name, path);
    if (meta.failed || title.failed) {
        tw_free(data);
        tw_sb_free(&meta);
        tw_sb_free(&title);
        return tw_error(TW_ERR_NOMEM, "crawl github: out of memory");
    }
    /* Code keeps "code" (chunked as code); docs keep their own type. */
    /* "<repo>/<path>": a bare "README.md" says nothing among many repositories. */
    wh_doc_in d = {.url = doc_url,
                   .title = title.buf,
                   .content_type = kind.content_type ? kind.content_type : "code",
                   .meta_json = meta.buf,
                   .content = data,
                   .content_len = len};
    st = crawl_doc_store(g->run, &d, NULL);
    tw_free(data);
    tw_sb_free(&meta);
    tw_sb_free(&title);
    if (st) return st;
    return wh_item_mark(g->run->ctx->db, g->run->src->id, guid);
}

/* One repository: its tree, then each kept file not seen before. */
static tw_status gh_repo_crawl(gh_crawl *g, gh_repo *r) {
    tw_status st = TW_OK;
    if (!r->branch) {
        char *url = NULL;
        tw_sb sb;
        tw_sb_init(&sb);
        tw_sb_printf(&sb, "%s/repos/%s/%s", g->api, r->owner, r->name);
        if (sb.failed) return tw_error(TW_ERR_NOMEM, "crawl github: out of memory");
        url = sb.buf;
        http_response resp;
        crawl_fetch_result res;
        st = gh_get(g, url, 0, &resp, &res);
        tw_json *j = NULL;
        if (!st && res == CRAWL_GOT_BODY) st = gh_parse(g, url, &resp, &j);
        if (j) {
            const char *b = tw_json_get_str(j, "default_branch", NULL);
            if (b && *b) {
                r->branch = tw_strdup(b);
                if (!r->branch) st = TW_ERR_NOMEM;
            } else if (!st) {
                st = crawl_event(g->run, url, WH_EVENT_FAILED, resp.status,
                                 "bad answer; no \"default_branch\"");
            }
            tw_json_free(j);
        }
        http_response_clear(&resp);
        tw_sb_free(&sb);
        if (st || !r->branch) return st;
    }
    char *eb = crawl_url_escape(r->branch, 0);
    tw_sb turl;
    tw_sb_init(&turl);
    if (eb) tw_sb_printf(&turl, "%s/repos/%s/%s/git/trees/%s?recursive=1", g->api, r->owner, r->name, eb);
    tw_free(eb);
    if (!eb || turl.failed) {
        tw_sb_free(&turl);
        return tw_error(TW_ERR_NOMEM, "crawl github: out of memory");
    }
    http_response tresp;
    crawl_fetch_result tres;
    st = gh_get(g, turl.buf, CRAWL_COND, &tresp, &tres);
    tw_json *tree = NULL;
    if (!st && tres == CRAWL_GOT_BODY) st = gh_parse(g, turl.buf, &tresp, &tree);
    if (st || !tree) {
        http_response_clear(&tresp);
        tw_sb_free(&turl);
        return st;
    }
    if (tw_json_get_bool(tree, "truncated", 0))
        tw_log_warn("crawl github: %s: the API truncated the tree; files past its end are missed",
                    turl.buf);
    g->incomplete = 0;
    int64_t source_id = g->run->src->id;
    char *vendored = NULL; /* the last vendored folder reported */
    const tw_json *entries = tw_json_get(tree, "tree");
    for (const tw_json *e = entries && tw_json_is_array(entries) ? tw_json_first(entries) : NULL;
         e && !st; e = tw_json_next(e)) {
        const char *path = tw_json_get_str(e, "path", NULL);
        const char *type = tw_json_get_str(e, "type", "");
        const char *sha = tw_json_get_str(e, "sha", "");
        if (!path || !*path || strcmp(type, "blob") != 0) continue; /* folders, submodules */
        if (g->stopped || crawl_should_stop(g->run)) {
            g->incomplete = 1;
            break;
        }
        double size = tw_json_get_num(e, "size", -1);
        char why[160];
        size_t folder_len = 0;
        const char *skip = crawl_github_skip_reason(path, size >= 0 ? (int64_t)size : -1,
                                                    g->max_bytes, why, sizeof why, &folder_len);
        if (skip && folder_len) {
            /* One event per vendored folder, not one per file in it. */
            if (vendored && strlen(vendored) == folder_len && !strncmp(vendored, path, folder_len))
                continue;
            tw_free(vendored);
            vendored = tw_strndup(path, folder_len);
            char *u = gh_web_url(g, r, "tree", path, folder_len);
            if (!vendored || !u) {
                tw_free(u);
                st = tw_error(TW_ERR_NOMEM, "crawl github: out of memory");
                break;
            }
            st = crawl_event(g->run, u, WH_EVENT_SKIPPED, 0, "%s", skip);
            tw_free(u);
            crawl_progress(g->run);
            continue;
        }
        char *doc_url = gh_web_url(g, r, "blob", path, strlen(path));
        tw_sb guid;
        tw_sb_init(&guid);
        tw_sb_printf(&guid, "%s/%s/%s@%s", r->owner, r->name, path, sha);
        if (!doc_url || guid.failed) {
            tw_free(doc_url);
            tw_sb_free(&guid);
            st = tw_error(TW_ERR_NOMEM, "crawl github: out of memory");
            break;
        }
        if (skip) {
            st = crawl_event(g->run, doc_url, WH_EVENT_SKIPPED, 0, "%s", skip);
            crawl_progress(g->run);
        } else {
            int seen = wh_item_seen(g->run->ctx->db, source_id, guid.buf);
            if (seen < 0)
                st = tw_errcode() ? tw_errcode() : TW_ERR_RUNTIME;
            else if (seen)
                st = crawl_event(g->run, doc_url, WH_EVENT_NOT_MODIFIED, 0,
                                 "blob %.12s already crawled", sha);
            else
                st = gh_file(g, r, path, sha, doc_url, guid.buf);
        }
        tw_free(doc_url);
        tw_sb_free(&guid);
    }
    tw_free(vendored);
    /* The tree counts as done only when every kept file of it is stored: otherwise the next
     * run must get it again (a 200, not a 304) to retry the rest. */
    if (!st && !g->incomplete && !g->stopped) st = crawl_state_save(g->run, turl.buf, &tresp);
    tw_json_free(tree);
    http_response_clear(&tresp);
    tw_sb_free(&turl);
    return st;
}

/* The user's non-fork repositories, page by page. Forks get a SKIPPED event. */
static tw_status gh_list_repos(gh_crawl *g, const char *user, gh_repo **out, size_t *n_out) {
    gh_repo *repos = NULL;
    size_t n = 0, cap = 0;
    tw_status st = TW_OK;
    for (int page = 1; page <= GH_MAX_PAGES && !st; page++) {
        tw_sb url;
        tw_sb_init(&url);
        tw_sb_printf(&url, "%s/users/%s/repos?per_page=%d&page=%d", g->api, user, GH_PER_PAGE,
                     page);
        if (url.failed) {
            st = tw_error(TW_ERR_NOMEM, "crawl github: out of memory");
            break;
        }
        http_response resp;
        crawl_fetch_result res;
        st = gh_get(g, url.buf, 0, &resp, &res);
        tw_json *j = NULL;
        if (!st && res == CRAWL_GOT_BODY) st = gh_parse(g, url.buf, &resp, &j);
        int more = 0;
        if (j && !tw_json_is_array(j)) {
            st = crawl_event(g->run, url.buf, WH_EVENT_FAILED, resp.status,
                             "bad answer; not a list of repositories");
        } else if (j) {
            size_t count = tw_json_size(j);
            for (const tw_json *e = tw_json_first(j); e && !st; e = tw_json_next(e)) {
                const char *name = tw_json_get_str(e, "name", NULL);
                const tw_json *owner = tw_json_get(e, "owner");
                const char *login = owner ? tw_json_get_str(owner, "login", user) : user;
                if (!name || !*name || !*login || strchr(name, '/') || strchr(login, '/'))
                    continue;
                if (tw_json_get_bool(e, "fork", 0)) {
                    tw_sb ru;
                    tw_sb_init(&ru);
                    tw_sb_printf(&ru, "%s/%s/%s", g->web, login, name);
                    st = ru.failed ? TW_ERR_NOMEM
                                   : crawl_event(g->run, ru.buf, WH_EVENT_SKIPPED, 0,
                                                 "fork (not the author's own work)");
                    tw_sb_free(&ru);
                    continue;
                }
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 8;
                    gh_repo *nr = tw_realloc(repos, nc * sizeof *nr);
                    if (!nr) {
                        st = TW_ERR_NOMEM;
                        break;
                    }
                    repos = nr;
                    cap = nc;
                }
                const char *b = tw_json_get_str(e, "default_branch", NULL);
                gh_repo *r = &repos[n++];
                r->owner = tw_strdup(login);
                r->name = tw_strdup(name);
                r->branch = b && *b ? tw_strdup(b) : NULL;
                if (!r->owner || !r->name || (b && *b && !r->branch)) st = TW_ERR_NOMEM;
            }
            /* More pages: the Link header says so when present; without one, a full page
             * means there may be more. */
            char link[2048];
            if (http_response_header(&resp, "link", link, sizeof link))
                more = strstr(link, "rel=\"next\"") != NULL;
            else
                more = count >= GH_PER_PAGE;
        }
        tw_json_free(j);
        http_response_clear(&resp);
        tw_sb_free(&url);
        if (!more) break;
    }
    if (st) {
        for (size_t i = 0; i < n; i++) gh_repo_clear(&repos[i]);
        tw_free(repos);
        return st == TW_ERR_NOMEM ? tw_error(TW_ERR_NOMEM, "crawl github: out of memory") : st;
    }
    *out = repos;
    *n_out = n;
    return TW_OK;
}

/* Splits the source URL into scheme://host and its first two path components. */
static tw_status gh_parse_source(const char *url, char **web, char **user, char **repo) {
    *web = *user = *repo = NULL;
    const char *p = strstr(url, "://");
    if (!p) goto bad;
    p += 3;
    const char *host_end = p + strcspn(p, "/?#");
    if (host_end == p) goto bad;
    const char *a = host_end;
    while (*a == '/') a++;
    size_t al = strcspn(a, "/?#");
    if (!al) goto bad;
    const char *b = a + al;
    while (*b == '/') b++;
    size_t bl = *b == '?' || *b == '#' ? 0 : strcspn(b, "/?#");
    if (bl > 4 && !strncmp(b + bl - 4, ".git", 4)) bl -= 4;
    *web = tw_strndup(url, (size_t)(host_end - url));
    *user = tw_strndup(a, al);
    *repo = bl ? tw_strndup(b, bl) : NULL;
    if (!*web || !*user || (bl && !*repo)) {
        tw_free(*web);
        tw_free(*user);
        tw_free(*repo);
        *web = *user = *repo = NULL;
        return tw_error(TW_ERR_NOMEM, "crawl github: out of memory");
    }
    return TW_OK;
bad:
    return tw_error(TW_ERR_ARG,
                    "github source %s: expected https://github.com/<user> or "
                    "https://github.com/<user>/<repo>",
                    url);
}

tw_status crawl_github_run(crawl_run *run) {
    crawl_ctx *ctx = run->ctx;
    gh_crawl g = {.run = run};
    char *user = NULL, *repo_name = NULL;
    tw_status st = gh_parse_source(run->src->url, &g.web, &user, &repo_name);
    if (st) return st;
    const char *api = ctx->github_api;
    if (!api || !*api) api = getenv("GITHUB_API_URL");
    if (!api || !*api) api = GH_DEFAULT_API;
    g.api = crawl_url_trim(api);
    const char *token = ctx->github_token;
    if (!token || !*token) token = getenv("GITHUB_TOKEN");
    size_t nh = 0;
    if (token && *token) {
        tw_sb a;
        tw_sb_init(&a);
        tw_sb_printf(&a, "Authorization: Bearer %s", token);
        g.auth = a.failed ? NULL : tw_sb_take(&a);
        tw_sb_free(&a);
        if (g.auth) g.headers[nh++] = g.auth;
    }
    g.headers[nh++] = GH_API_VERSION;
    g.headers[nh] = NULL;
    http_opts o;
    http_opts_default(&o);
    g.max_wait_s = o.backoff_max_s;
    g.max_bytes = ctx->max_file_bytes ? ctx->max_file_bytes : (size_t)1 << 20;
    if (!g.api || (token && *token && !g.auth)) {
        st = tw_error(TW_ERR_NOMEM, "crawl github: out of memory");
        goto done;
    }
    if (repo_name) {
        gh_repo r = {.owner = user, .name = repo_name};
        user = repo_name = NULL; /* owned by r now */
        st = gh_repo_crawl(&g, &r);
        gh_repo_clear(&r);
    } else {
        gh_repo *repos = NULL;
        size_t n = 0;
        st = gh_list_repos(&g, user, &repos, &n);
        for (size_t i = 0; i < n; i++) {
            if (!st && !g.stopped && !crawl_should_stop(run)) st = gh_repo_crawl(&g, &repos[i]);
            gh_repo_clear(&repos[i]);
        }
        tw_free(repos);
    }
done:
    tw_free(user);
    tw_free(repo_name);
    tw_free(g.api);
    tw_free(g.web);
    tw_free(g.auth);
    return st;
}
