/* cmd_tokenize.c: twin tokenize -m MODEL [--ids|--pieces] [--add-special] [--parse-special]
 *
 * Reads all of standard input and tokenizes it with the model's tokenizer (a GGUF file, an HF
 * folder or tokenizer.json, or a name fetched by twin model fetch). */
#include "cli.h"
#include "tokenizer.h"

#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin tokenize -m MODEL [--ids|--pieces] [--add-special] [--parse-special]\n\n"
            "Tokenizes all of standard input with MODEL's tokenizer (a GGUF file, an HF folder\n"
            "or tokenizer.json, or a name from `twin model fetch`).\n\n"
            "output:\n"
            "  --ids        (the default) the ids, separated by single spaces, on one line\n"
            "  --pieces     one token per line: the id, a tab, and the text the token stands\n"
            "               for as a double-quoted string (\\\" \\\\ \\n \\r \\t, \\xNN for other\n"
            "               control bytes and for bytes that are not UTF-8 on their own)\n\n"
            "options:\n"
            "  -m MODEL         the model (required)\n"
            "  --add-special    add what the model adds around a text (BOS/EOS, [CLS]/[SEP])\n"
            "  --parse-special  text such as <|im_start|> becomes its special token; without\n"
            "                   it the text of control tokens is tokenized as plain text\n"
            "                   (tokens a model added as plain words are always matched)\n");
}

/* Writes s as a double-quoted string: printable UTF-8 as it is, the rest escaped. */
static void put_quoted(FILE *fp, const char *s, size_t n) {
    fputc('"', fp);
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(fp, "\\%c", c), i++;
        else if (c == '\n') fputs("\\n", fp), i++;
        else if (c == '\r') fputs("\\r", fp), i++;
        else if (c == '\t') fputs("\\t", fp), i++;
        else if (c < 0x20 || c == 0x7F) fprintf(fp, "\\x%02x", c), i++;
        else if (c < 0x80) fputc(c, fp), i++;
        else {
            uint32_t cp;
            int l = tw_utf8_decode((const uint8_t *)s + i, n - i, &cp);
            if (cp == TW_UTF8_INVALID) fprintf(fp, "\\x%02x", c);
            else fwrite(s + i, 1, (size_t)l, fp);
            i += (size_t)l;
        }
    }
    fputc('"', fp);
}

static int read_stdin(tw_sb *sb) {
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, stdin)) > 0)
        if (tw_sb_append(sb, buf, got)) return -1;
    return ferror(stdin) ? -1 : 0;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    int ids_only = 1; /* ARCHITECTURE.md: the output is one line of ids */
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "-m", &v) || cli_opt(argc, argv, &i, "--model", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "tokenize", "-m needs a model");
            model = v;
        } else if (cli_flag(argv, i, "--ids")) {
            ids_only = 1;
        } else if (cli_flag(argv, i, "--pieces")) {
            ids_only = 0;
        } else if (cli_flag(argv, i, "--add-special")) {
            flags |= TW_TOK_ADD_SPECIAL;
        } else if (cli_flag(argv, i, "--parse-special")) {
            flags |= TW_TOK_PARSE_SPECIAL;
        } else {
            return cli_fail(CLI_USAGE, "tokenize", "unknown argument '%s' (see twin tokenize --help)",
                            argv[i]);
        }
    }
    if (!model) return cli_fail(CLI_USAGE, "tokenize", "-m MODEL is required (see twin tokenize --help)");
    char *path = cli_resolve_model("tokenize", model);
    if (!path) return CLI_ERR;
    tw_tokenizer *t = tw_tokenizer_load(path);
    tw_free(path);
    if (!t) return cli_fail(CLI_ERR, "tokenize", "%s", tw_errmsg());

    tw_sb text;
    tw_sb_init(&text);
    if (read_stdin(&text) != 0) {
        tw_sb_free(&text);
        tw_tokenizer_free(t);
        return cli_fail(CLI_ERR, "tokenize", "standard input: read failed");
    }
    tw_tokens ids;
    tw_tokens_init(&ids);
    tw_status st = tw_tokenizer_encode(t, tw_sb_str(&text), text.len, flags, &ids);
    int rc = CLI_OK;
    if (st != TW_OK) {
        rc = cli_fail(CLI_ERR, "tokenize", "%s", tw_errmsg());
    } else if (ids_only) {
        for (size_t i = 0; i < ids.n; i++) printf(i ? " %d" : "%d", ids.ids[i]);
        putchar('\n');
    } else {
        tw_sb piece;
        tw_sb_init(&piece);
        for (size_t i = 0; i < ids.n && rc == CLI_OK; i++) {
            tw_sb_clear(&piece);
            if (tw_tokenizer_piece(t, ids.ids[i], &piece) != TW_OK) {
                rc = cli_fail(CLI_ERR, "tokenize", "%s", tw_errmsg());
                break;
            }
            printf("%d\t", ids.ids[i]);
            put_quoted(stdout, tw_sb_str(&piece), piece.len);
            putchar('\n');
        }
        tw_sb_free(&piece);
    }
    if (rc == CLI_OK && (fflush(stdout) != 0 || ferror(stdout)))
        rc = cli_fail(CLI_ERR, "tokenize", "standard output: write failed");
    tw_tokens_free(&ids);
    tw_sb_free(&text);
    tw_tokenizer_free(t);
    return rc;
}
