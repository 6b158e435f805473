/* crawl_linkedin.c: the LinkedIn member data export (crawl_linkedin_run, crawl_impl.h), as the
 * .zip LinkedIn mails or as its unpacked folder.
 *
 *   Shares.csv        Date, ShareLink, ShareCommentary, SharedUrl, MediaUrl, Visibility: one
 *                     "text" document per post with commentary (url = ShareLink, published_at
 *                     from Date); rows without commentary (plain reshares) are SKIPPED.
 *   Articles/Articles/<name>.html (or Articles/<name>.html)
 *                     one "html" document per article (title from the page).
 * A zip whose members all sit in one top folder ("Export/Shares.csv") is read the same way.
 *
 * Incremental: each export file's sha256 is kept as the fetch state of its URL
 * ("file:Shares.csv", "file:Articles/Articles/<name>"); a file whose hash is unchanged is not
 * parsed again (NOT_MODIFIED). The state is written after its documents are stored, so a crash
 * half-way through Shares.csv only makes the next run parse it again (its stored posts are then
 * unchanged documents).
 *
 * Keys: unlike local folders (crawl_local.c keys by the file's absolute path), an article's
 * document URL stays "file:Articles/Articles/<name>", shared by every export of one author, on
 * purpose: a newer export of the same account holds the same articles under the same names
 * (LinkedIn puts the date and title in the name), so it updates those documents (a new version
 * when edited) instead of adding a duplicate of each, and an export moved or unpacked elsewhere
 * finds them too. Posts are keyed by their ShareLink, which is the same in every export. Fetch
 * states are per source, so two exports never take each other's "unchanged". */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "crawl_files.h"
#include "crawl_impl.h"
#include "csv.h"
#include "html.h"
#include "zip.h"

/* The largest export file read into memory: Shares.csv of a prolific member is a few MB, an
 * article with inline images a few more. */
#define LK_MAX_FILE ((size_t)256 << 20)
/* Post titles are the start of the first line, cut at a word. */
#define LK_TITLE_MAX 80

typedef struct {
    crawl_run *run;
    const char *path;  /* the export as given (for messages) */
    char *root;        /* folder mode: the folder */
    zip_archive *zip;  /* zip mode */
    char *prefix;      /* zip mode: "" or "<top folder>/" */
} lk_export;

static char *lk_join(const char *a, const char *b) {
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s%s", a, b);
    if (sb.failed) {
        tw_sb_free(&sb);
        return NULL;
    }
    return tw_sb_take(&sb);
}

/* Reads rel ("Shares.csv", "Articles/x.html") of the export. *found 0 (TW_OK) when absent. */
static tw_status lk_read(lk_export *x, const char *rel, char **data, size_t *len, int *found) {
    *data = NULL;
    *len = 0;
    *found = 0;
    if (x->zip) {
        char *name = lk_join(x->prefix, rel);
        if (!name) return TW_ERR_NOMEM;
        size_t i;
        tw_status st = zip_find(x->zip, name, &i);
        tw_free(name);
        if (st == TW_ERR_NOT_FOUND) {
            tw_error_clear();
            return TW_OK;
        }
        if (st) return st;
        *found = 1;
        uint8_t *d = NULL;
        st = zip_extract_memory(x->zip, i, LK_MAX_FILE, &d, len);
        *data = (char *)d;
        return st;
    }
    char *full = lk_join(x->root, rel);
    if (!full) return TW_ERR_NOMEM;
    tw_status st = TW_OK;
    struct stat sb;
    if (stat(full, &sb) == 0 && S_ISREG(sb.st_mode)) {
        *found = 1;
        if ((uint64_t)sb.st_size > LK_MAX_FILE)
            st = tw_error(TW_ERR_FORMAT, "%s: larger than %zu bytes", full, LK_MAX_FILE);
        else
            st = tw_file_read(full, data, len);
    }
    tw_free(full);
    return st;
}

static int lk_is_html(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".html") || !strcasecmp(dot, ".htm"));
}

static int lk_str_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The article files (paths relative to the export), sorted: the direct .html children of
 * Articles/Articles/ and of Articles/. */
static tw_status lk_list_articles(lk_export *x, char ***out, size_t *n_out) {
    static const char *const dirs[] = {"Articles/Articles/", "Articles/"};
    char **list = NULL;
    size_t n = 0, cap = 0;
    tw_status st = TW_OK;
    for (size_t k = 0; k < 2 && !st; k++) {
        size_t dl = strlen(dirs[k]);
        if (x->zip) {
            size_t pl = strlen(x->prefix);
            for (size_t i = 0; i < zip_count(x->zip) && !st; i++) {
                const char *name = zip_entry_name(x->zip, i);
                if (zip_entry_is_dir(x->zip, i) || strncmp(name, x->prefix, pl) != 0) continue;
                const char *rel = name + pl;
                if (strncmp(rel, dirs[k], dl) != 0 || strchr(rel + dl, '/') || !lk_is_html(rel))
                    continue;
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 16;
                    char **nl = tw_realloc(list, nc * sizeof *nl);
                    if (!nl) {
                        st = TW_ERR_NOMEM;
                        break;
                    }
                    list = nl;
                    cap = nc;
                }
                if (!(list[n] = tw_strdup(rel))) st = TW_ERR_NOMEM;
                else n++;
            }
        } else {
            char *full = lk_join(x->root, dirs[k]);
            if (!full) {
                st = TW_ERR_NOMEM;
                break;
            }
            DIR *d = opendir(full);
            tw_free(full);
            if (!d) continue;
            struct dirent *de;
            while (!st && (de = readdir(d)) != NULL) {
                if (de->d_name[0] == '.' || !lk_is_html(de->d_name)) continue;
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 16;
                    char **nl = tw_realloc(list, nc * sizeof *nl);
                    if (!nl) {
                        st = TW_ERR_NOMEM;
                        break;
                    }
                    list = nl;
                    cap = nc;
                }
                if (!(list[n] = lk_join(dirs[k], de->d_name))) st = TW_ERR_NOMEM;
                else n++;
            }
            closedir(d);
        }
    }
    if (st) {
        for (size_t i = 0; i < n; i++) tw_free(list[i]);
        tw_free(list);
        return st;
    }
    if (n > 1) qsort(list, n, sizeof *list, lk_str_cmp);
    *out = list;
    *n_out = n;
    return TW_OK;
}

/* "2024-03-01 09:15:00" (the export's UTC dates) -> "2024-03-01T09:15:00Z"; a bare date stays a
 * date; anything else gives "" (unknown rather than wrong). */
static void lk_iso_date(const char *in, size_t n, char out[32]) {
    out[0] = 0;
    while (n && (*in == ' ' || *in == '\t')) in++, n--;
    while (n && (in[n - 1] == ' ' || in[n - 1] == '\t')) n--;
    static const char date_shape[] = "dddd-dd-dd";
    if (n < 10) return;
    for (size_t i = 0; i < 10; i++)
        if (date_shape[i] == 'd' ? !(in[i] >= '0' && in[i] <= '9') : in[i] != date_shape[i])
            return;
    if (n == 10) {
        memcpy(out, in, 10);
        out[10] = 0;
        return;
    }
    /* date, ' ' or 'T', hh:mm[:ss][.fraction] */
    if (n < 16 || (in[10] != ' ' && in[10] != 'T')) return;
    static const char time_shape[] = "dd:dd";
    for (size_t i = 0; i < 5; i++)
        if (time_shape[i] == 'd' ? !(in[11 + i] >= '0' && in[11 + i] <= '9')
                                 : in[11 + i] != time_shape[i])
            return;
    char ss[3] = "00";
    if (n >= 19 && in[16] == ':' && in[17] >= '0' && in[17] <= '9' && in[18] >= '0' &&
        in[18] <= '9') {
        ss[0] = in[17];
        ss[1] = in[18];
    }
    snprintf(out, 32, "%.10sT%.5s:%sZ", in, in + 11, ss);
}

/* A post's title: its first non-empty line, cut at a word before LK_TITLE_MAX bytes. */
static char *lk_post_title(const char *text, size_t n) {
    size_t i = 0;
    while (i < n && (text[i] == '\n' || text[i] == '\r' || text[i] == ' ' || text[i] == '\t')) i++;
    size_t e = i;
    while (e < n && text[e] != '\n' && text[e] != '\r') e++;
    while (e > i && (text[e - 1] == ' ' || text[e - 1] == '\t')) e--;
    if (e - i > LK_TITLE_MAX) {
        size_t cut = i + LK_TITLE_MAX;
        while (cut > i && text[cut] != ' ') cut--;
        if (cut == i) { /* one long word: cut at a character boundary */
            cut = i + LK_TITLE_MAX;
            while (cut > i && ((unsigned char)text[cut] & 0xC0) == 0x80) cut--;
        }
        tw_sb sb;
        tw_sb_init(&sb);
        tw_sb_append(&sb, text + i, cut - i);
        tw_sb_puts(&sb, "\xE2\x80\xA6"); /* ... */
        if (sb.failed) {
            tw_sb_free(&sb);
            return NULL;
        }
        return tw_sb_take(&sb);
    }
    return e > i ? tw_strndup(text + i, e - i) : NULL;
}

static void lk_sha256_hex(const char *data, size_t len, char hex[65]) {
    uint8_t h[32];
    tw_sha256(data, len, h);
    tw_hex(h, 32, hex);
}

/* 1 when url's stored content hash equals hex (NOT_MODIFIED then recorded), 0 when not,
 * -1 on a database error. */
static int lk_unchanged(crawl_run *run, const char *url, const char *hex) {
    wh_fetch_state fs;
    tw_status st = wh_fetch_state_get(run->ctx->db, run->src->id, url, &fs);
    if (st == TW_ERR_NOT_FOUND) {
        tw_error_clear();
        return 0;
    }
    if (st) return -1;
    int same = fs.content_hash && !strcmp(fs.content_hash, hex);
    wh_fetch_state_clear(&fs);
    if (!same) return 0;
    if (crawl_event(run, url, WH_EVENT_NOT_MODIFIED, 0, "same content as the last crawl")) return -1;
    crawl_progress(run);
    return 1;
}

/* Records a FAILED event for url whose reason is "<cls>; <the thread's error>". */
static tw_status lk_fail(crawl_run *run, const char *url, const char *cls) {
    char msg[400];
    snprintf(msg, sizeof msg, "%s", tw_errmsg());
    tw_error_clear();
    tw_status st = crawl_event(run, url, WH_EVENT_FAILED, 0, "%s; %s", cls, msg);
    crawl_progress(run);
    return st;
}

/* The posts of Shares.csv; *found 0 when the export has none. */
static tw_status lk_shares(lk_export *x, int *found) {
    crawl_run *run = x->run;
    const char *url = "file:Shares.csv";
    char *data = NULL;
    size_t len = 0;
    if (lk_read(x, "Shares.csv", &data, &len, found) != TW_OK) {
        tw_free(data);
        return tw_errcode() == TW_ERR_NOMEM ? TW_ERR_NOMEM : lk_fail(run, url, "unreadable");
    }
    if (!*found) return TW_OK;
    char hex[65];
    lk_sha256_hex(data, len, hex);
    int same = lk_unchanged(run, url, hex);
    if (same) {
        tw_free(data);
        return same < 0 ? tw_errcode() : TW_OK;
    }
    tw_status st = crawl_event(run, url, WH_EVENT_FETCHED, 0, NULL);
    char what[1100];
    snprintf(what, sizeof what, "%s:Shares.csv", x->path);
    csv_reader *r = NULL;
    if (!st) st = csv_reader_new(data, len, ',', what, &r);
    csv_record rec;
    int got = 0, complete = 0;
    if (!st && csv_next(r, &rec, &got) != TW_OK) st = lk_fail(run, url, "bad file");
    int c_date = -1, c_link = -1, c_text = -1, c_shared = -1, c_media = -1, c_vis = -1;
    if (!st && got) {
        c_date = csv_column(&rec, "Date");
        c_link = csv_column(&rec, "ShareLink");
        c_text = csv_column(&rec, "ShareCommentary");
        c_shared = csv_column(&rec, "SharedUrl");
        c_media = csv_column(&rec, "MediaUrl");
        c_vis = csv_column(&rec, "Visibility");
        if (c_text < 0)
            st = crawl_event(run, url, WH_EVENT_FAILED, 0,
                             "bad file; %s: no ShareCommentary column in the header", what);
        else
            complete = 1;
    }
    while (!st && complete) {
        if (crawl_should_stop(run)) {
            complete = 0;
            break;
        }
        if (csv_next(r, &rec, &got) != TW_OK) {
            st = lk_fail(run, url, "bad file");
            complete = 0;
            break;
        }
        if (!got) break;
        size_t tl;
        const char *text = csv_field(&rec, c_text, &tl);
        const char *link = csv_field(&rec, c_link, NULL);
        /* A post without a ShareLink still needs a stable URL: the hash of its text. */
        char fallback[96];
        if (!*link) {
            char th[65];
            lk_sha256_hex(text, tl, th);
            snprintf(fallback, sizeof fallback, "linkedin:share:%.32s", th);
            link = fallback;
        }
        size_t k = 0;
        while (k < tl && (text[k] == ' ' || text[k] == '\t' || text[k] == '\r' || text[k] == '\n'))
            k++;
        if (k == tl) {
            st = crawl_event(run, link, WH_EVENT_SKIPPED, 0,
                             "empty commentary (a share without text, line %zu)", rec.line);
            crawl_progress(run);
            continue;
        }
        size_t dl;
        const char *date = csv_field(&rec, c_date, &dl);
        char iso[32];
        lk_iso_date(date, dl, iso);
        char *title = lk_post_title(text, tl);
        tw_sb meta;
        tw_sb_init(&meta);
        tw_sb_putc(&meta, '{');
        crawl_json_member(&meta, "kind", "post");
        const char *v;
        if (*(v = csv_field(&rec, c_shared, NULL))) crawl_json_member(&meta, "shared_url", v);
        if (*(v = csv_field(&rec, c_media, NULL))) crawl_json_member(&meta, "media_url", v);
        if (*(v = csv_field(&rec, c_vis, NULL))) crawl_json_member(&meta, "visibility", v);
        tw_sb_putc(&meta, '}');
        if (!title || meta.failed) {
            st = tw_error(TW_ERR_NOMEM, "crawl linkedin: out of memory");
        } else {
            wh_doc_in d = {.url = link,
                           .title = title,
                           .published_at = iso[0] ? iso : NULL,
                           .content_type = "text",
                           .meta_json = meta.buf,
                           .content = text,
                           .content_len = tl};
            st = crawl_doc_store(run, &d, NULL);
        }
        tw_free(title);
        tw_sb_free(&meta);
    }
    if (!st && complete) st = wh_fetch_state_put(run->ctx->db, run->src->id, url, NULL, NULL, hex);
    csv_reader_free(r);
    tw_free(data);
    return st;
}

/* "2021-06-01 10:20:30.0-Some-Title.html": the date the export puts in front of the name. */
static void lk_name_date(const char *rel, char out[32]) {
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    size_t n = strlen(base);
    lk_iso_date(base, n >= 19 ? 19 : n, out);
    if (!out[0] && n >= 10) lk_iso_date(base, 10, out);
}

static tw_status lk_article(lk_export *x, const char *rel) {
    crawl_run *run = x->run;
    char *url = lk_join("file:", rel);
    if (!url) return tw_error(TW_ERR_NOMEM, "crawl linkedin: out of memory");
    char *data = NULL;
    size_t len = 0;
    int found = 0;
    tw_status st = TW_OK;
    if (lk_read(x, rel, &data, &len, &found) != TW_OK) {
        st = tw_errcode() == TW_ERR_NOMEM ? TW_ERR_NOMEM : lk_fail(run, url, "unreadable");
        goto done;
    }
    char hex[65];
    lk_sha256_hex(data ? data : "", len, hex);
    int same = lk_unchanged(run, url, hex);
    if (same) {
        if (same < 0) st = tw_errcode();
        goto done;
    }
    if (crawl_bytes_binary(data, len)) {
        st = crawl_event(run, url, WH_EVENT_SKIPPED, 0, "binary (NUL bytes)");
        crawl_progress(run);
        goto done;
    }
    if ((st = crawl_event(run, url, WH_EVENT_FETCHED, 0, NULL))) goto done;
    html_doc hd = {0};
    char *title = NULL;
    char iso[32] = "";
    if (html_extract(data, len, HTML_MAIN, &hd) == TW_OK) {
        if (hd.title && *hd.title) title = tw_strdup(hd.title);
        if (hd.published_at && *hd.published_at) snprintf(iso, sizeof iso, "%s", hd.published_at);
    } else {
        tw_error_clear(); /* stored all the same: cleaning reports what is wrong with it */
    }
    if (!iso[0]) lk_name_date(rel, iso);
    if (!title) {
        const char *base = strrchr(rel, '/');
        base = base ? base + 1 : rel;
        const char *dot = strrchr(base, '.');
        title = tw_strndup(base, dot ? (size_t)(dot - base) : strlen(base));
    }
    tw_sb meta;
    tw_sb_init(&meta);
    tw_sb_putc(&meta, '{');
    crawl_json_member(&meta, "kind", "article");
    crawl_json_member(&meta, "path", rel);
    tw_sb_putc(&meta, '}');
    if (!title || meta.failed) {
        st = tw_error(TW_ERR_NOMEM, "crawl linkedin: out of memory");
    } else {
        /* The page's own canonical URL (a linkedin.com/pulse address) when it gives one. */
        const char *doc_url =
            hd.canonical_url && (!strncmp(hd.canonical_url, "https://", 8) ||
                                 !strncmp(hd.canonical_url, "http://", 7))
                ? hd.canonical_url
                : url;
        wh_doc_in d = {.url = doc_url,
                       .title = title,
                       .published_at = iso[0] ? iso : NULL,
                       .content_type = "html",
                       .meta_json = meta.buf,
                       .content = data ? data : "",
                       .content_len = len};
        st = crawl_doc_store(run, &d, NULL);
    }
    if (!st) st = wh_fetch_state_put(run->ctx->db, run->src->id, url, NULL, NULL, hex);
    tw_free(title);
    tw_sb_free(&meta);
    html_doc_clear(&hd);
done:
    tw_free(data);
    tw_free(url);
    return st;
}

/* Zip mode: "" when Shares.csv or Articles/ are at the top, else the one top folder that holds
 * Shares.csv. */
static tw_status lk_zip_prefix(lk_export *x) {
    size_t i;
    if (zip_find(x->zip, "Shares.csv", &i) == TW_OK) {
        x->prefix = tw_strdup("");
        return x->prefix ? TW_OK : TW_ERR_NOMEM;
    }
    tw_error_clear();
    for (i = 0; i < zip_count(x->zip); i++) {
        const char *name = zip_entry_name(x->zip, i);
        const char *slash = strchr(name, '/');
        if (slash && !strcmp(slash + 1, "Shares.csv")) {
            x->prefix = tw_strndup(name, (size_t)(slash - name) + 1);
            return x->prefix ? TW_OK : TW_ERR_NOMEM;
        }
    }
    x->prefix = tw_strdup("");
    return x->prefix ? TW_OK : TW_ERR_NOMEM;
}

tw_status crawl_linkedin_run(crawl_run *run) {
    const char *path = run->src->url;
    if (!strncmp(path, "file://", 7)) path += 7;
    else if (!strncmp(path, "file:", 5)) path += 5;
    lk_export x = {.run = run, .path = path};
    tw_status st = TW_OK;
    if (tw_is_dir(path)) {
        size_t l = strlen(path);
        x.root = lk_join(path, l && path[l - 1] == '/' ? "" : "/");
        if (!x.root) return tw_error(TW_ERR_NOMEM, "crawl linkedin: out of memory");
    } else if (tw_path_exists(path)) {
        x.zip = zip_open(path);
        if (!x.zip) return tw_error_wrap("linkedin source");
        if ((st = lk_zip_prefix(&x))) goto done;
    } else {
        return tw_error(TW_ERR_IO,
                        "linkedin source %s: no such file or folder (expected the data export "
                        ".zip or its unpacked folder)",
                        path);
    }
    char **articles = NULL;
    size_t n_articles = 0;
    if ((st = lk_list_articles(&x, &articles, &n_articles))) goto done;
    int has_shares = 0;
    st = lk_shares(&x, &has_shares);
    /* Something of an export must be there, or the path is the wrong one. */
    if (!st && !has_shares && !n_articles)
        st = tw_error(TW_ERR_FORMAT,
                      "linkedin source %s: not a LinkedIn data export (no Shares.csv, no "
                      "Articles/ pages)",
                      path);
    for (size_t i = 0; i < n_articles; i++) {
        if (!st && !crawl_should_stop(run)) st = lk_article(&x, articles[i]);
        tw_free(articles[i]);
    }
    tw_free(articles);
done:
    zip_close(x.zip);
    tw_free(x.root);
    tw_free(x.prefix);
    return st;
}
