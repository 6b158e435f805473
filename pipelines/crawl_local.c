/* crawl_local.c: a folder of the author's writing on this machine (crawl_local_run,
 * crawl_impl.h): .md/.markdown (markdown), .txt (text), .html/.htm (html), recursively, in name
 * order. Hidden files and folders (a leading '.') are passed over without an event; symbolic
 * links are not followed (a SKIPPED event says so), so a link cannot take the crawl outside the
 * folder or round a loop. Other files get a SKIPPED event naming their extension.
 *
 * Documents are keyed by wh_local_url(source folder, relative path): "file://" + the file's
 * absolute path, percent-encoded (RFC 8089), so two folders of one author with the same relative
 * path (both with a README.md) get two documents, and a folder removed and added again finds its
 * documents (the key does not name the source). The folder is the source's URL as stored: `twin
 * source add` resolved it with realpath, and links below it are not followed, so the key is the
 * file's real path. Events name the same URLs; the document's meta_json "path" is the path
 * relative to the folder.
 *
 * Incremental: a file's fetch state (keyed by its document URL) holds
 * "size=<bytes> mtime=<s>.<ns>" in the etag field and the content's sha256; a file whose size
 * and mtime are unchanged is not read again (NOT_MODIFIED). The state is written after the
 * document, so a crash in between only costs a re-read. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "crawl_files.h"
#include "crawl_impl.h"
#include "html.h"

/* Deeper than this is a folder structure no one writes by hand (or a bind-mount loop). */
#define LOCAL_MAX_DEPTH 64

typedef struct {
    crawl_run *run;
    const char *folder; /* the source's URL, for wh_local_url */
    size_t max_bytes;
} local_crawl;

static int local_name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The extension rule of this crawler: narrower than GitHub's (no code). */
static const char *local_content_type(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return NULL;
    dot++;
    if (!strcasecmp(dot, "md") || !strcasecmp(dot, "markdown")) return "markdown";
    if (!strcasecmp(dot, "txt")) return "text";
    if (!strcasecmp(dot, "html") || !strcasecmp(dot, "htm")) return "html";
    return NULL;
}

/* The file name without folder and extension, for a title. */
static char *local_stem(const char *rel) {
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    const char *dot = strrchr(base, '.');
    size_t n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
    return tw_strndup(base, n);
}

/* url: wh_local_url of rel (the document's key and the events' URL). */
static tw_status local_file(local_crawl *lc, const char *full, const char *rel,
                            const char *url, const struct stat *sb, const char *type) {
    crawl_run *run = lc->run;
    tw_status st = TW_OK;
    char stamp[96];
    snprintf(stamp, sizeof stamp, "size=%lld mtime=%lld.%09ld", (long long)sb->st_size,
             (long long)sb->st_mtim.tv_sec, (long)sb->st_mtim.tv_nsec);
    if ((uint64_t)sb->st_size > (uint64_t)lc->max_bytes) {
        st = crawl_event(run, url, WH_EVENT_SKIPPED, 0, "too large (%lld bytes > %zu)",
                         (long long)sb->st_size, lc->max_bytes);
        crawl_progress(run);
        return st;
    }
    wh_fetch_state fs;
    st = wh_fetch_state_get(run->ctx->db, run->src->id, url, &fs);
    if (st == TW_ERR_NOT_FOUND) {
        tw_error_clear();
        st = TW_OK;
    }
    if (st) {
        return st;
    }
    int same = fs.etag && !strcmp(fs.etag, stamp) && fs.content_hash;
    wh_fetch_state_clear(&fs);
    if (same) {
        st = crawl_event(run, url, WH_EVENT_NOT_MODIFIED, 0, "same size and mtime");
        crawl_progress(run);
        return st;
    }
    char *data = NULL;
    size_t len = 0;
    if (tw_file_read(full, &data, &len) != TW_OK) {
        char msg[320];
        snprintf(msg, sizeof msg, "%s", tw_errmsg());
        tw_error_clear();
        st = crawl_event(run, url, WH_EVENT_FAILED, 0, "unreadable; %s", msg);
        crawl_progress(run);
        return st;
    }
    if (crawl_bytes_binary(data, len)) {
        st = crawl_event(run, url, WH_EVENT_SKIPPED, 0, "binary (NUL bytes)");
        crawl_progress(run);
        tw_free(data);
        return st;
    }
    st = crawl_event(run, url, WH_EVENT_FETCHED, 0, NULL);
    char *title = NULL, *published = NULL;
    if (!st && !strcmp(type, "html")) {
        html_doc hd = {0};
        if (html_extract(data, len, HTML_MAIN, &hd) == TW_OK) {
            if (hd.title && *hd.title) title = tw_strdup(hd.title);
            if (hd.published_at && *hd.published_at) published = tw_strdup(hd.published_at);
        } else {
            tw_error_clear(); /* the page is stored all the same; cleaning will say more */
        }
        html_doc_clear(&hd);
    } else if (!st) {
        title = crawl_text_title(data, len, !strcmp(type, "markdown"));
    }
    if (!st && !title) title = local_stem(rel);
    tw_sb meta;
    tw_sb_init(&meta);
    tw_sb_putc(&meta, '{');
    crawl_json_member(&meta, "path", rel);
    tw_sb_putc(&meta, '}');
    if (!st && (!title || meta.failed)) st = tw_error(TW_ERR_NOMEM, "crawl local: out of memory");
    if (!st) {
        wh_doc_in d = {.url = url,
                       .title = title,
                       .published_at = published,
                       .content_type = type,
                       .meta_json = meta.buf,
                       .content = data,
                       .content_len = len};
        st = crawl_doc_store(run, &d, NULL);
    }
    if (!st) {
        uint8_t h[32];
        char hex[65];
        tw_sha256(data, len, h);
        tw_hex(h, 32, hex);
        st = wh_fetch_state_put(run->ctx->db, run->src->id, url, stamp, NULL, hex);
    }
    tw_free(title);
    tw_free(published);
    tw_free(data);
    tw_sb_free(&meta);
    return st;
}

/* Walks folder full; rel is its path below the source's folder ("" for the root), url its
 * wh_local_url (for an event when it cannot be opened). */
static tw_status local_walk(local_crawl *lc, const char *full, const char *rel, const char *url,
                            int depth) {
    crawl_run *run = lc->run;
    DIR *d = opendir(full);
    if (!d) {
        if (depth == 0)
            return tw_error(TW_ERR_IO, "local source %s: cannot open the folder: %s", full,
                            strerror(errno));
        tw_status st = crawl_event(run, url, WH_EVENT_FAILED, 0,
                                   "unreadable; cannot open the folder: %s", strerror(errno));
        crawl_progress(run);
        return st;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    tw_status st = TW_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue; /* ".", "..", hidden files and folders */
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 32;
            char **nn = tw_realloc(names, nc * sizeof *nn);
            if (!nn) {
                st = TW_ERR_NOMEM;
                break;
            }
            names = nn;
            cap = nc;
        }
        if (!(names[n] = tw_strdup(de->d_name))) {
            st = TW_ERR_NOMEM;
            break;
        }
        n++;
    }
    closedir(d);
    if (n > 1) qsort(names, n, sizeof *names, local_name_cmp);
    for (size_t i = 0; i < n && !st; i++) {
        if (crawl_should_stop(run)) break;
        tw_sb f, r, u; /* full path, path below the folder, its URL */
        tw_sb_init(&f);
        tw_sb_init(&r);
        tw_sb_init(&u);
        tw_sb_printf(&f, "%s/%s", full, names[i]);
        tw_sb_printf(&r, "%s%s%s", rel, *rel ? "/" : "", names[i]);
        if (!r.failed) wh_local_url(lc->folder, r.buf, &u);
        if (f.failed || r.failed || u.failed) {
            st = TW_ERR_NOMEM;
        } else {
            struct stat sb;
            if (lstat(f.buf, &sb) != 0) {
                st = crawl_event(run, u.buf, WH_EVENT_FAILED, 0, "unreadable; %s",
                                 strerror(errno));
            } else if (S_ISLNK(sb.st_mode)) {
                st = crawl_event(run, u.buf, WH_EVENT_SKIPPED, 0,
                                 "symlink (links are not followed)");
                crawl_progress(run);
            } else if (S_ISDIR(sb.st_mode)) {
                if (depth + 1 >= LOCAL_MAX_DEPTH) {
                    st = crawl_event(run, u.buf, WH_EVENT_SKIPPED, 0,
                                     "too deep (more than %d folders)", LOCAL_MAX_DEPTH);
                    crawl_progress(run);
                } else {
                    st = local_walk(lc, f.buf, r.buf, u.buf, depth + 1);
                }
            } else if (!S_ISREG(sb.st_mode)) {
                st = crawl_event(run, u.buf, WH_EVENT_SKIPPED, 0, "not a regular file");
                crawl_progress(run);
            } else {
                const char *type = local_content_type(names[i]);
                if (type) {
                    st = local_file(lc, f.buf, r.buf, u.buf, &sb, type);
                } else {
                    const char *dot = strrchr(names[i], '.');
                    st = crawl_event(run, u.buf, WH_EVENT_SKIPPED, 0,
                                     "not a text file (%s; twin reads .md .markdown .txt .html "
                                     ".htm)",
                                     dot && dot != names[i] ? dot : "no extension");
                    crawl_progress(run);
                }
            }
        }
        tw_sb_free(&f);
        tw_sb_free(&r);
        tw_sb_free(&u);
    }
    for (size_t i = 0; i < n; i++) tw_free(names[i]);
    tw_free(names);
    return st;
}

tw_status crawl_local_run(crawl_run *run) {
    const char *root = run->src->url;
    if (!strncmp(root, "file://", 7)) root += 7;
    else if (!strncmp(root, "file:", 5)) root += 5;
    if (!*root) return tw_error(TW_ERR_ARG, "local source %lld: empty folder path", (long long)run->src->id);
    if (!tw_is_dir(root))
        return tw_error(TW_ERR_IO, "local source %s: not a folder (or not readable)", root);
    /* The root itself may be a link (a user's choice); links below it are not followed. */
    char *r = tw_strdup(root);
    if (!r) return TW_ERR_NOMEM;
    size_t l = strlen(r);
    while (l > 1 && r[l - 1] == '/') r[--l] = 0;
    local_crawl lc = {.run = run,
                      .folder = run->src->url,
                      .max_bytes = run->ctx->max_file_bytes ? run->ctx->max_file_bytes
                                                            : (size_t)1 << 20};
    tw_sb u;
    tw_sb_init(&u);
    wh_local_url(lc.folder, "", &u);
    tw_status st = u.failed ? tw_error(TW_ERR_NOMEM, "crawl local: out of memory")
                            : local_walk(&lc, r, "", u.buf, 0);
    tw_sb_free(&u);
    tw_free(r);
    return st;
}
