/* cmd_chunk.c: twin chunk [--author NAME] [-m EMBED_MODEL] [--max-tokens N] [--overlap N]:
 * cleaned documents -> chunks sized in tokens of the embedding model's tokenizer.
 *
 * Every cleaned document that is not a duplicate and has no chunks yet (new, changed since,
 * or never chunked: wh_doc_each_unchunked) is chunked by chunk_text (pipelines/chunk.h) as
 * prose, or as code for content type "code", and its chunks are stored in one transaction
 * (wh_chunks_replace; the chunk ids it replaces go to the tombstones that `twin embed` takes
 * out of the index). Only the model's tokenizer is loaded (tokenizer.json of an HF folder, or
 * a GGUF's vocabulary), and the chunks record the model's name as the tokenizer that counted
 * them.
 *
 * stderr: a progress line (rewritten in place on a terminal; every 2 s otherwise).
 * stdout: the summary: documents, chunks, tokens (mean and largest chunk), failures with
 * their reasons.
 * Exit: 0 done, 1 a document could not be chunked or a warehouse/model error, 2 bad usage. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cli_warehouse.h"
#include "pipelines/chunk.h"
#include "tokenizer.h"

#define CMD "chunk"

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin chunk [--author NAME] [-m EMBED_MODEL] [--max-tokens N] [--overlap N]\n\n"
            "Splits every cleaned document that is not a duplicate and has no chunks yet into\n"
            "chunks for the embedding model: paragraphs, then sentences, then words, packed up\n"
            "to N tokens of the model's tokenizer (special tokens not counted); headings start\n"
            "a chunk and label the chunks below them; code is cut between lines; each chunk\n"
            "repeats up to --overlap tokens of whole sentences from the end of the one before.\n"
            "Chunks of a document that changed are replaced (the old ones leave the index at\n"
            "the next twin embed).\n\n"
            "  --author NAME     only this author's documents\n"
            "  -m EMBED_MODEL    the embedding model whose tokenizer counts (default minilm-l6:\n"
            "                    a name from twin model fetch, an HF folder or a GGUF file)\n"
            "  --max-tokens N    tokens per chunk, 8..65536 (default 254: MiniLM's 256 less\n"
            "                    [CLS] and [SEP])\n"
            "  --overlap N       tokens repeated from the previous chunk, under N/2 (default 32;\n"
            "                    0 for none)\n\n"
            "output: progress on stderr; a summary on stdout (documents, chunks, tokens, and\n"
            "one line per failed document with its reason)\n\n"
            "exit status: 0 done, 1 a document could not be chunked, the model could not be\n"
            "loaded or a warehouse error, 2 bad usage\n");
}

typedef struct {
    wh_db *db;
    const tw_tokenizer *tok;
    const char *tok_name;
    chunk_opts opts;
    int64_t docs, chunks, tokens, failed;
    int32_t largest;
    tw_sb failures;
    wh_chunk_in *in;
    size_t cap_in;
    tw_status fatal; /* a warehouse error: the walk stops */
    int tty;
    double last;
} chunk_run;

static void progress_show(chunk_run *r, int final) {
    double now = tw_now_s();
    if (!final && now - r->last < (r->tty ? 0.1 : 2.0)) return;
    r->last = now;
    char line[200];
    snprintf(line, sizeof line, "chunk: %lld documents, %lld chunks, %lld tokens, %lld failed",
             (long long)r->docs, (long long)r->chunks, (long long)r->tokens, (long long)r->failed);
    if (r->tty) fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
    else fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

static int chunk_one(void *ctx, const wh_doc *d) {
    chunk_run *r = ctx;
    chunk_kind kind = !strcmp(d->content_type, "code") ? CHUNK_CODE : CHUNK_PROSE;
    chunk_span *sp = NULL;
    size_t n = 0;
    tw_status st = chunk_text(r->tok, d->content, d->content_len, kind, &r->opts, &sp, &n);
    if (st == TW_OK && n > r->cap_in) {
        wh_chunk_in *in = tw_realloc(r->in, n * sizeof *in);
        if (!in) st = tw_error(TW_ERR_NOMEM, "out of memory (%zu chunks)", n);
        else r->in = in, r->cap_in = n;
    }
    if (st != TW_OK) { /* this document only: reported, the others go on */
        tw_sb_printf(&r->failures, "  document %lld (%s): %s\n", (long long)d->id, d->url,
                     tw_errmsg());
        r->failed++;
        chunk_spans_free(sp, n);
        progress_show(r, 0);
        return 0;
    }
    int64_t tokens = 0;
    for (size_t i = 0; i < n; i++) {
        r->in[i] = (wh_chunk_in){(int32_t)i, sp[i].heading,
                                 sp[i].kind == CHUNK_CODE ? "code" : "prose",
                                 d->content + sp[i].start, sp[i].end - sp[i].start,
                                 sp[i].n_tokens};
        tokens += sp[i].n_tokens;
        if (sp[i].n_tokens > r->largest) r->largest = sp[i].n_tokens;
    }
    st = wh_chunks_replace(r->db, d->id, r->tok_name, r->in, n);
    chunk_spans_free(sp, n);
    if (st != TW_OK) {
        r->fatal = st;
        return 1;
    }
    r->docs++;
    r->chunks += (int64_t)n;
    r->tokens += tokens;
    progress_show(r, 0);
    return 0;
}

/* The name chunks record as their tokenizer: the model's name as given, or the last part of
 * its path (a folder or file name, ".gguf" kept out). Points into model or a static "". */
static const char *model_name(const char *model, char *buf, size_t cap) {
    if (!tw_path_exists(model)) return model; /* a name from twin model fetch */
    size_t n = strlen(model);
    while (n > 1 && model[n - 1] == '/') n--;
    size_t a = n;
    while (a > 0 && model[a - 1] != '/') a--;
    size_t len = n - a;
    if (len > 5 && !strncmp(model + n - 5, ".gguf", 5)) len -= 5;
    if (len == 0 || len >= cap) return model;
    memcpy(buf, model + a, len);
    buf[len] = 0;
    return buf;
}

int cmd_chunk(int argc, char **argv) {
    const char *author = NULL, *model = "minilm-l6";
    chunk_opts opts;
    chunk_opts_default(&opts);
    for (int i = 1; i < argc; i++) {
        const char *v;
        long n;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "--author", &v)) {
            if (!v || !*v) return cli_fail(CLI_USAGE, CMD, "--author needs a name");
            author = v;
        } else if (cli_opt(argc, argv, &i, "-m", &v) || cli_opt(argc, argv, &i, "--model", &v)) {
            if (!v || !*v) return cli_fail(CLI_USAGE, CMD, "-m needs a model");
            model = v;
        } else if (cli_opt(argc, argv, &i, "--max-tokens", &v)) {
            if (cli_parse_int(CMD, "--max-tokens", v, 8, 65536, &n)) return CLI_USAGE;
            opts.max_tokens = (int32_t)n;
        } else if (cli_opt(argc, argv, &i, "--overlap", &v)) {
            if (cli_parse_int(CMD, "--overlap", v, 0, 32767, &n)) return CLI_USAGE;
            opts.overlap_tokens = (int32_t)n;
        } else {
            return cli_fail(CLI_USAGE, CMD, "unknown argument '%s' (see twin chunk --help)",
                            argv[i]);
        }
    }
    if (opts.overlap_tokens >= opts.max_tokens / 2)
        return cli_fail(CLI_USAGE, CMD, "--overlap %d: must be under --max-tokens / 2 (%d)",
                        opts.overlap_tokens, opts.max_tokens / 2);

    char *path = cli_resolve_model(CMD, model);
    if (!path) return CLI_ERR;
    tw_tokenizer *tok = tw_tokenizer_load(path);
    tw_free(path);
    if (!tok) return cli_fail(CLI_ERR, CMD, "-m %s: %s", model, tw_errmsg());

    chunk_run r;
    memset(&r, 0, sizeof r);
    char name_buf[256];
    r.tok = tok;
    r.tok_name = model_name(model, name_buf, sizeof name_buf);
    r.opts = opts;
    r.tty = isatty(STDERR_FILENO);
    tw_sb_init(&r.failures);
    int rc = cli_warehouse_open(CMD, &r.db);
    int64_t author_id = 0;
    if (!rc && author && wh_author_find(r.db, author, &author_id))
        rc = cli_fail(CLI_ERR, CMD, "--author '%s': no such author", author);
    if (!rc) {
        tw_status st = wh_doc_each_unchunked(r.db, author_id, chunk_one, &r);
        if (st == TW_OK) st = r.fatal;
        progress_show(&r, 1);
        if (st != TW_OK) {
            rc = cli_fail_status(CMD);
        } else {
            printf("chunk: %lld documents, %lld chunks, %lld tokens (mean %.1f, largest %d of %d) "
                   "with %s, %lld failed\n",
                   (long long)r.docs, (long long)r.chunks, (long long)r.tokens,
                   r.chunks ? (double)r.tokens / (double)r.chunks : 0.0, (int)r.largest,
                   (int)opts.max_tokens, r.tok_name, (long long)r.failed);
            if (r.failed) {
                printf("failed:\n%s", tw_sb_str(&r.failures));
                rc = CLI_ERR;
            }
            if (fflush(stdout) != 0 || ferror(stdout))
                rc = cli_fail(CLI_ERR, CMD, "standard output: write failed");
        }
    }
    tw_sb_free(&r.failures);
    tw_free(r.in);
    wh_close(r.db);
    tw_tokenizer_free(tok);
    return rc;
}
