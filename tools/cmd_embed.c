/* cmd_embed.c: twin embed -m MODEL [TEXT...]
 *
 *   TEXT form     embeds each TEXT (or, for "-", each line of standard input) with the
 *                 sentence encoder and prints one JSON object:
 *                 {"model":"<tw_encoder_id>","dim":384,"data":[[...],...]}
 *   no TEXT       embeds the warehouse's chunks not yet embedded by MODEL into the vector
 *                 index <workspace>/index/ (pipelines/retrieval.h), and removes the vectors of
 *                 deleted chunks.
 */
#include "cli.h"
#include "encoder.h"
#include "retrieval_session.h"

#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin embed -m MODEL TEXT...\n"
            "       twin embed [-m MODEL]          (the warehouse's new chunks into the index)\n"
            "       twin embed -m MODEL -          (one text per line of standard input)\n\n"
            "Embeds each TEXT with the sentence encoder MODEL (an HF folder with config.json,\n"
            "model.safetensors and tokenizer.json, a BERT GGUF, or a name from `twin model\n"
            "fetch`, e.g. minilm-l6) and prints one JSON object:\n"
            "  {\"model\":\"<name@weights-hash>\",\"dim\":N,\"data\":[[...],...]}\n"
            "with one vector per TEXT, in order. Texts longer than the model's max_seq_length\n"
            "are truncated (a warning says how many); an empty text is defined (the embedding\n"
            "of [CLS] [SEP]).\n\n"
            "options:\n"
            "  -m MODEL    the encoder (required with TEXT; default minilm-l6 without)\n"
            "  --threads N CPU threads\n\n"
            "Without TEXT, embeds every chunk of the warehouse that MODEL has not embedded yet\n"
            "(after twin crawl, clean and chunk) into the vector index <workspace>/index/, and\n"
            "removes the vectors of chunks whose documents changed or were deleted; -m is then\n"
            "optional (default minilm-l6). A different model starts a fresh index.\n");
}

/* Reads standard input and appends each line (without its '\n' and a '\r' before it) to
 * texts; the buffer holding them is returned in *buf. 0 on success. */
static int read_lines(tw_sb *buf, size_t **starts, size_t *n) {
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, stdin)) > 0)
        if (tw_sb_append(buf, chunk, got)) return -1;
    if (ferror(stdin)) return -1;
    size_t cap = 16, k = 0;
    size_t *s = tw_malloc(cap * sizeof *s);
    if (!s) return -1;
    for (size_t i = 0; i < buf->len;) {
        if (k + 2 > cap) {
            size_t *t = tw_realloc(s, (cap *= 2) * sizeof *s);
            if (!t) return tw_free(s), -1;
            s = t;
        }
        s[k++] = i;
        char *nl = memchr(buf->buf + i, '\n', buf->len - i);
        i = nl ? (size_t)(nl - buf->buf) + 1 : buf->len;
    }
    s[k] = buf->len; /* the end of the last line */
    *starts = s;
    *n = k;
    return 0;
}

/* Prints the JSON object for n vectors (n, dim). */
static int print_vectors(const char *id, const float *v, int32_t n, int32_t dim) {
    tw_sb out;
    tw_sb_init(&out);
    tw_sb_puts(&out, "{\"model\":");
    tw_sb_json_str(&out, id, strlen(id));
    tw_sb_printf(&out, ",\"dim\":%d,\"data\":[", (int)dim);
    for (int32_t i = 0; i < n; i++) {
        tw_sb_puts(&out, i ? ",[" : "[");
        for (int32_t j = 0; j < dim; j++)
            tw_sb_printf(&out, j ? ",%.9g" : "%.9g", (double)v[(size_t)i * dim + j]);
        tw_sb_putc(&out, ']');
    }
    tw_sb_puts(&out, "]}\n");
    int rc = CLI_OK;
    if (out.failed) rc = cli_fail(CLI_ERR, "embed", "out of memory");
    else if (fwrite(out.buf, 1, out.len, stdout) != out.len || fflush(stdout) != 0)
        rc = cli_fail(CLI_ERR, "embed", "standard output: write failed");
    tw_sb_free(&out);
    return rc;
}

/* The TEXT form: texts given as (text, len) pairs. */
static int embed_texts(const char *model_path, const char *const *texts, const size_t *lens,
                       int32_t n) {
    tw_backend *be = NULL;
    tw_encoder *e = NULL;
    float *v = NULL;
    int rc = CLI_OK;
    if (tw_backend_open("cpu", &be) != TW_OK || tw_encoder_load(model_path, be, &e) != TW_OK) {
        rc = cli_fail_status("embed");
        goto done;
    }
    int32_t dim = tw_encoder_dim(e);
    v = tw_malloc((size_t)(n > 0 ? n : 1) * (size_t)dim * sizeof *v);
    if (!v) {
        rc = cli_fail(CLI_ERR, "embed", "out of memory for %d vectors", (int)n);
        goto done;
    }
    int32_t n_trunc = 0;
    if (tw_encoder_embed(e, texts, lens, n, v, &n_trunc) != TW_OK) {
        rc = cli_fail_status("embed");
        goto done;
    }
    rc = print_vectors(tw_encoder_id(e), v, n, dim);
done:
    tw_free(v);
    tw_encoder_free(e);
    tw_backend_free(be);
    return rc;
}

/* The no-TEXT form: the warehouse's new chunks into the vector index, with the encoder
 * named by -m (NULL: minilm-l6); chunks of deleted or changed documents leave the index. */
static int embed_chunks(const char *model) { return retrieval_embed_chunks(model); }

int cmd_embed(int argc, char **argv) {
    const char *model = NULL;
    const char **texts = tw_calloc((size_t)argc + 1, sizeof *texts);
    int32_t n = 0;
    int from_stdin = 0;
    if (!texts) return cli_fail(CLI_ERR, "embed", "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            tw_free(texts);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "-m", &v) || cli_opt(argc, argv, &i, "--model", &v)) {
            if (!v) {
                tw_free(texts);
                return cli_fail(CLI_USAGE, "embed", "-m needs a model");
            }
            model = v;
        } else if (!strcmp(argv[i], "-")) {
            from_stdin = 1;
        } else if (!strcmp(argv[i], "--")) {
            for (i++; i < argc; i++) texts[n++] = argv[i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            tw_free(texts);
            return cli_fail(CLI_USAGE, "embed", "unknown option '%s' (see twin embed --help)", argv[i]);
        } else {
            texts[n++] = argv[i];
        }
    }
    if (!from_stdin && n == 0) {
        tw_free(texts);
        return embed_chunks(model);
    }
    if (!model) {
        tw_free(texts);
        return cli_fail(CLI_USAGE, "embed", "-m MODEL is required (see twin embed --help)");
    }
    if (from_stdin && n) {
        tw_free(texts);
        return cli_fail(CLI_USAGE, "embed", "give TEXT arguments or '-' (standard input), not both");
    }
    char *path = cli_resolve_model("embed", model);
    if (!path) {
        tw_free(texts);
        return CLI_ERR;
    }
    int rc;
    if (from_stdin) {
        tw_sb buf;
        tw_sb_init(&buf);
        size_t *starts = NULL, nl = 0;
        if (read_lines(&buf, &starts, &nl) != 0) {
            rc = cli_fail(CLI_ERR, "embed", "standard input: read failed");
        } else if (nl > INT32_MAX / 2) {
            rc = cli_fail(CLI_ERR, "embed", "standard input: too many lines (%zu)", nl);
        } else {
            const char **t = tw_calloc(nl + 1, sizeof *t);
            size_t *lens = tw_calloc(nl + 1, sizeof *lens);
            if (!t || !lens) {
                rc = cli_fail(CLI_ERR, "embed", "out of memory");
            } else {
                for (size_t i = 0; i < nl; i++) {
                    t[i] = buf.buf + starts[i];
                    size_t len = starts[i + 1] - starts[i];
                    if (len && t[i][len - 1] == '\n') len--;
                    if (len && t[i][len - 1] == '\r') len--;
                    lens[i] = len;
                }
                rc = embed_texts(path, t, lens, (int32_t)nl);
            }
            tw_free(t);
            tw_free(lens);
        }
        tw_free(starts);
        tw_sb_free(&buf);
    } else {
        rc = embed_texts(path, texts, NULL, n);
    }
    tw_free(path);
    tw_free(texts);
    return rc;
}
