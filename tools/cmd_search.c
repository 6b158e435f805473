/* cmd_search.c: twin search QUERY [--k N] [--author A] [--platform P] [-m MODEL] [--json]
 *
 * The chunks of the warehouse nearest to QUERY in the vector index (twin embed puts them there),
 * with their scores, document titles and URLs. */
#include "cli.h"
#include "retrieval_session.h"

#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin search QUERY [--k N] [--author A] [--platform P] [-m MODEL] [--json]\n\n"
            "Prints the K chunks of the warehouse most similar to QUERY (cosine similarity of\n"
            "their embeddings), best first, with the document's title, URL, author and platform.\n"
            "The index is filled by `twin embed` (after crawl, clean and chunk).\n\n"
            "options:\n"
            "  --k N           how many chunks (default 5; 0 prints nothing)\n"
            "  --author A      only chunks of author A\n"
            "  --platform P    only chunks from platform P (medium, substack, github, linkedin,\n"
            "                  article, local)\n"
            "  -m MODEL        the embedding model (default minilm-l6; it must be the model the\n"
            "                  index was built with, or the index is empty for it)\n"
            "  --json          one JSON object per hit: {rank, score, chunk_id, document_id,\n"
            "                  title, url, author, platform, heading, text}\n");
}

static void put_json_str(tw_sb *sb, const char *key, const char *v, int comma) {
    tw_sb_printf(sb, "\"%s\":", key);
    tw_sb_json_str(sb, v ? v : "", v ? strlen(v) : 0);
    if (comma) tw_sb_putc(sb, ',');
}

int cmd_search(int argc, char **argv) {
    const char *query = NULL, *model = NULL, *author = NULL, *platform = NULL;
    long k = 5;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "-m", &v) || cli_opt(argc, argv, &i, "--model", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "search", "-m needs a model");
            model = v;
        } else if (cli_opt(argc, argv, &i, "--k", &v) || cli_opt(argc, argv, &i, "-k", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "search", "--k needs a number");
            int rc = cli_parse_int("search", "--k", v, 0, 10000, &k);
            if (rc) return rc;
        } else if (cli_opt(argc, argv, &i, "--author", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "search", "--author needs a name");
            author = v;
        } else if (cli_opt(argc, argv, &i, "--platform", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "search", "--platform needs a name");
            platform = v;
        } else if (cli_flag(argv, i, "--json")) {
            json = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return cli_fail(CLI_USAGE, "search", "unknown option '%s' (see twin search --help)",
                            argv[i]);
        } else if (!query) {
            query = argv[i];
        } else {
            return cli_fail(CLI_USAGE, "search",
                            "one QUERY only: quote it (\"%s %s ...\")", query, argv[i]);
        }
    }
    if (!query) return cli_fail(CLI_USAGE, "search", "give a QUERY (see twin search --help)");

    hnsw_filter f;
    hnsw_filter_init(&f);
    if (platform) {
        int p = wh_platform_parse(platform);
        if (p < 0)
            return cli_fail(CLI_USAGE, "search",
                            "--platform '%s' is not one of medium, substack, github, linkedin, "
                            "article, local", platform);
        f.platform = p;
    }
    retrieval_session s;
    int rc = retrieval_session_open("search", model, &s);
    if (rc) return rc;
    if (author) {
        tw_status st = wh_author_find(s.db, author, &f.author_id);
        if (st == TW_ERR_NOT_FOUND) {
            /* An author with no documents: nothing matches (an answer, not an error). */
            fprintf(stderr, "twin search: no author named '%s' in the warehouse\n", author);
            retrieval_session_close(&s);
            return CLI_OK;
        }
        if (st) {
            retrieval_session_close(&s);
            return cli_fail_status("search");
        }
    }
    if (hnsw_count(retrieval_index(s.r)) == 0)
        fprintf(stderr, "twin search: the index is empty (run twin crawl, clean, chunk, embed)\n");
    retrieval_hit *hits = NULL;
    int32_t n = 0;
    if (retrieval_search(s.r, s.db, query, (int32_t)k, &f, &hits, &n)) {
        retrieval_session_close(&s);
        return cli_fail_status("search");
    }
    tw_sb sb;
    tw_sb_init(&sb);
    for (int32_t i = 0; i < n; i++) {
        const wh_chunk *c = &hits[i].chunk;
        tw_sb_clear(&sb);
        if (json) {
            tw_sb_printf(&sb, "{\"rank\":%d,\"score\":%.6f,\"chunk_id\":%lld,\"document_id\":%lld,",
                         i + 1, hits[i].score, (long long)c->id, (long long)c->document_id);
            put_json_str(&sb, "title", c->title, 1);
            put_json_str(&sb, "url", c->url, 1);
            put_json_str(&sb, "author", c->author, 1);
            put_json_str(&sb, "platform", wh_platform_name(c->platform), 1);
            put_json_str(&sb, "heading", c->heading, 1);
            put_json_str(&sb, "text", c->text, 0);
            tw_sb_puts(&sb, "}\n");
        } else {
            tw_sb_printf(&sb, "%d. %.4f  %s\n   %s  (%s, %s)\n", i + 1, hits[i].score,
                         c->title && c->title[0] ? c->title : "(untitled)", c->url, c->author,
                         wh_platform_name(c->platform));
            if (c->heading && c->heading[0]) tw_sb_printf(&sb, "   # %s\n", c->heading);
            /* The chunk's start on one line, cut at a UTF-8 boundary. */
            size_t len = strlen(c->text), cut = len > 240 ? 240 : len;
            while (cut < len && ((unsigned char)c->text[cut] & 0xC0) == 0x80) cut--;
            tw_sb_puts(&sb, "   ");
            for (size_t j = 0; j < cut; j++)
                tw_sb_putc(&sb, c->text[j] == '\n' || c->text[j] == '\t' ? ' ' : c->text[j]);
            tw_sb_puts(&sb, cut < len ? "...\n" : "\n");
        }
        fputs(tw_sb_str(&sb), stdout);
    }
    int blank = strspn(query, " \t\r\n\f\v") == strlen(query);
    if (n == 0 && k > 0 && !blank && hnsw_count(retrieval_index(s.r)) > 0)
        fprintf(stderr, "twin search: no chunk matches%s\n", author || platform ? " the filter" : "");
    tw_sb_free(&sb);
    retrieval_hits_free(hits, n);
    retrieval_session_close(&s);
    return CLI_OK;
}
