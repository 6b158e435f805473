/* crawl_substack.c: a Substack publication through its JSON API (archive pages, then each new
 * or edited post), with the RSS feed as the fallback when the API does not answer. */
#include <stdio.h>
#include <string.h>

#include "crawl_impl.h"
#include "feed.h"
#include "json.h"

#define SUBSTACK_PAGE 12       /* posts per archive page, as Substack's own web client asks */
#define SUBSTACK_MAX_PAGES 500 /* 6000 posts: a bound against an archive that never ends */

/* The key under which an archive entry is remembered (wh_item_mark): its slug and a hash of
 * the fields an edit changes, so an edited post is fetched again and becomes a new version
 * while an unchanged one is not fetched at all. */
static void post_key(const tw_json *post, const char *slug, char *out, size_t cap) {
    static const char *const fields[] = {"title", "subtitle", "description", "truncated_body_text",
                                         "post_date", "updated_at", "audience", "wordcount"};
    tw_sha256_ctx h;
    tw_sha256_init(&h);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const tw_json *v = tw_json_get(post, fields[i]);
        char num[40];
        const char *s = tw_json_str(v);
        if (!s && tw_json_is_number(v)) snprintf(num, sizeof num, "%.17g", tw_json_num(v, 0)), s = num;
        if (!s) s = "";
        tw_sha256_update(&h, fields[i], strlen(fields[i]) + 1);
        tw_sha256_update(&h, s, strlen(s) + 1);
    }
    uint8_t d[32];
    char hex[65];
    tw_sha256_final(&h, d);
    tw_hex(d, 32, hex);
    snprintf(out, cap, "post:%s@%.16s", slug, hex);
}

/* Fetches /api/v1/posts/<slug> and stores it (or records why not). */
static tw_status substack_post(crawl_run *run, const char *base, const char *slug,
                               const char *key, const tw_json *entry) {
    tw_sb u;
    tw_sb_init(&u);
    tw_sb_printf(&u, "%s/api/v1/posts/%s", base, slug);
    if (u.failed) return tw_sb_free(&u), tw_error(TW_ERR_NOMEM, "crawl: out of memory");
    const char *api = tw_sb_str(&u);
    http_response resp;
    crawl_fetch_result res;
    tw_status st = crawl_fetch(run, api, "application/json", NULL, 0, &resp, &res);
    tw_json *post = NULL;
    char *url = NULL;
    if (st || res != CRAWL_GOT_BODY) goto out; /* failure recorded; not marked: retried */
    post = tw_json_parse(resp.body, resp.body_len, api);
    if (!post || !tw_json_is_object(post)) {
        st = crawl_event(run, api, WH_EVENT_FAILED, resp.status, "bad JSON; %s",
                         post ? "not an object" : tw_errmsg());
        goto out;
    }
    const char *audience = tw_json_get_str(post, "audience", tw_json_get_str(entry, "audience", ""));
    const char *body = tw_json_get_str(post, "body_html", NULL);
    const char *canon = tw_json_get_str(post, "canonical_url", tw_json_get_str(entry, "canonical_url", NULL));
    tw_sb fallback;
    tw_sb_init(&fallback);
    tw_sb_printf(&fallback, "%s/p/%s", base, slug);
    url = crawl_url_canonical(canon && canon[0] ? canon : tw_sb_str(&fallback));
    tw_sb_free(&fallback);
    if (!url) {
        st = tw_errcode();
        goto out;
    }
    if (!body || !strcmp(audience, "only_paid")) {
        /* paywalled: only a teaser is public; remembered, so it is not asked for again until
         * the archive shows it changed */
        st = crawl_event(run, url, WH_EVENT_SKIPPED, resp.status, "paywalled (audience %s%s)",
                         audience[0] ? audience : "unknown", body ? "" : ", no body_html");
        if (!st) st = wh_item_mark(run->ctx->db, run->src->id, key);
        crawl_progress(run);
        goto out;
    }
    const char *date_in = tw_json_get_str(post, "post_date", tw_json_get_str(entry, "post_date", NULL));
    char date[32];
    const char *published = date_in && feed_date_iso(date_in, date, sizeof date) ? date : date_in;
    const char *title = tw_json_get_str(post, "title", NULL);
    tw_sb meta;
    tw_sb_init(&meta);
    tw_sb_putc(&meta, '{');
    crawl_json_member(&meta, "slug", slug);
    crawl_json_member(&meta, "subtitle", tw_json_get_str(post, "subtitle", NULL));
    crawl_json_member(&meta, "audience", audience[0] ? audience : NULL);
    tw_sb_putc(&meta, '}');
    if (meta.failed) {
        tw_sb_free(&meta);
        st = tw_error(TW_ERR_NOMEM, "crawl: out of memory");
        goto out;
    }
    wh_doc_in d = {.url = url, .title = title && title[0] ? title : NULL, .published_at = published,
                   .content_type = "html_fragment", .meta_json = tw_sb_str(&meta),
                   .content = body, .content_len = strlen(body)};
    st = crawl_doc_store(run, &d, NULL);
    if (!st) st = wh_item_mark(run->ctx->db, run->src->id, key);
    tw_sb_free(&meta);
out:
    tw_free(url);
    tw_json_free(post);
    http_response_clear(&resp);
    tw_sb_free(&u);
    return st;
}

/* The states of the archive pages, saved once the whole walk succeeded. */
typedef struct {
    char *url;
    http_response resp;
} page_state;

tw_status crawl_substack_run(crawl_run *run) {
    char *base = crawl_url_trim(run->src->url);
    if (!base) return tw_errcode();
    page_state *pages = tw_calloc(SUBSTACK_MAX_PAGES, sizeof *pages);
    if (!pages) {
        tw_free(base);
        return TW_ERR_NOMEM;
    }
    int n_pages = 0;
    int complete = 1, fallback = 0;
    char fallback_why[400] = "";
    tw_status st = TW_OK;
    for (int page = 0; page < SUBSTACK_MAX_PAGES && !st; page++) {
        if (crawl_should_stop(run)) {
            complete = 0;
            break;
        }
        tw_sb u;
        tw_sb_init(&u);
        tw_sb_printf(&u, "%s/api/v1/archive?sort=new&offset=%d&limit=%d", base,
                     page * SUBSTACK_PAGE, SUBSTACK_PAGE);
        if (u.failed) {
            st = tw_error(TW_ERR_NOMEM, "crawl: out of memory");
            break;
        }
        page_state *ps = &pages[n_pages++];
        ps->url = tw_sb_take(&u);
        crawl_fetch_result res;
        /* page 0 failing means the API is not there: its event says so and the feed is used */
        st = crawl_fetch(run, ps->url, "application/json", NULL,
                         CRAWL_COND | (page == 0 ? CRAWL_QUIET_FAIL : 0), &ps->resp, &res);
        if (st) break;
        if (res == CRAWL_UNCHANGED) break; /* newest first: nothing new beyond an unchanged page */
        if (res == CRAWL_FAILED) {
            if (page == 0) {
                fallback = 1;
                crawl_http_reason(&ps->resp, fallback_why, sizeof fallback_why);
            }
            complete = 0;
            break;
        }
        tw_json *arr = tw_json_parse(ps->resp.body, ps->resp.body_len, ps->url);
        if (!arr || !tw_json_is_array(arr)) {
            char why[400];
            snprintf(why, sizeof why, "bad JSON; %s", arr ? "not an array" : tw_errmsg());
            tw_json_free(arr);
            if (page == 0) {
                fallback = 1;
                snprintf(fallback_why, sizeof fallback_why, "%s", why);
            } else {
                st = crawl_event(run, ps->url, WH_EVENT_FAILED, ps->resp.status, "%s", why);
            }
            complete = 0;
            break;
        }
        size_t n_new = 0, n = tw_json_size(arr);
        for (tw_json *e = tw_json_first(arr); e && !st; e = tw_json_next(e)) {
            const char *slug = tw_json_get_str(e, "slug", NULL);
            if (!slug || !slug[0] || strchr(slug, '/') || strchr(slug, '?') || strchr(slug, '#')) {
                st = crawl_event(run, ps->url, WH_EVENT_SKIPPED, 0,
                                 "archive entry without a usable slug");
                continue;
            }
            char key[160];
            post_key(e, slug, key, sizeof key);
            int seen = wh_item_seen(run->ctx->db, run->src->id, key);
            if (seen < 0) {
                st = tw_errcode();
                break;
            }
            if (seen) continue;
            n_new++;
            if (crawl_should_stop(run)) {
                complete = 0;
                break;
            }
            int64_t failed0 = run->counts.failed;
            st = substack_post(run, base, slug, key, e);
            if (run->counts.failed != failed0) complete = 0;
        }
        tw_json_free(arr);
        if (n == 0 || n_new == 0) break; /* the end, or only posts seen before */
    }
    if (!st && fallback) {
        tw_sb f;
        tw_sb_init(&f);
        tw_sb_printf(&f, "%s/feed", base);
        st = f.failed ? tw_error(TW_ERR_NOMEM, "crawl: out of memory")
                      : crawl_event(run, pages[0].url, WH_EVENT_FAILED, pages[0].resp.status,
                                    "%s; fell back to the feed", fallback_why);
        if (!st) st = crawl_feed_walk(run, tw_sb_str(&f), 0);
        tw_sb_free(&f);
    } else if (!st && complete) {
        for (int i = 0; i < n_pages && !st; i++)
            if (pages[i].resp.result == HTTP_OK) st = crawl_state_save(run, pages[i].url, &pages[i].resp);
    }
    for (int i = 0; i < n_pages; i++) {
        tw_free(pages[i].url);
        http_response_clear(&pages[i].resp);
    }
    tw_free(pages);
    tw_free(base);
    return st;
}
