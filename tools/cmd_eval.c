/* cmd_eval.c: twin eval retrieval --pairs FILE [--k N] [-m MODEL] [--json]
 *
 * Retrieval quality of the workspace's index: for each question of FILE (JSON lines
 * {"question": ..., "url": ..., "answer": ...}), the chunks twin search returns, and whether a
 * relevant one is among the first K. A chunk is relevant when its document's URL ends with
 * "url" and its text contains "answer" (case-insensitive; an empty answer: any chunk of that
 * document). Prints recall@K (questions with a relevant chunk in the first K, over all) and the
 * mean reciprocal rank of the first relevant chunk (0 when none in the first K). */
#include "cli.h"
#include "json.h"
#include "retrieval_session.h"

#include <ctype.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin eval retrieval --pairs FILE [--k N] [-m MODEL] [--min-recall R] [--json]\n\n"
            "Measures the retrieval quality of the workspace's vector index on question/answer\n"
            "pairs: FILE has one JSON object per line, {\"question\": Q, \"url\": U, \"answer\": A}.\n"
            "A retrieved chunk is relevant when its document's URL ends with U and its text\n"
            "contains A (case-insensitive). Prints recall@K and MRR@K, and each miss.\n\n"
            "options:\n"
            "  --pairs FILE      the pairs (required)\n"
            "  --k N             chunks retrieved per question (default 5)\n"
            "  -m MODEL          the embedding model of the index (default minilm-l6)\n"
            "  --min-recall R    exit 1 when recall@K is below R (a quality gate)\n"
            "  --json            one JSON summary line instead of text\n");
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return b <= a && memcmp(s + a - b, suffix, b) == 0;
}

/* Case-insensitive (ASCII) substring test. */
static int contains_ci(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    if (n == 0) return 1;
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n) return 1;
    }
    return 0;
}

static int eval_retrieval(int argc, char **argv) {
    const char *pairs = NULL, *model = NULL;
    long k = 5;
    double min_recall = -1;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        } else if (cli_opt(argc, argv, &i, "--pairs", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "eval", "--pairs needs a file");
            pairs = v;
        } else if (cli_opt(argc, argv, &i, "--k", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "eval", "--k needs a number");
            int rc = cli_parse_int("eval", "--k", v, 1, 1000, &k);
            if (rc) return rc;
        } else if (cli_opt(argc, argv, &i, "-m", &v) || cli_opt(argc, argv, &i, "--model", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "eval", "-m needs a model");
            model = v;
        } else if (cli_opt(argc, argv, &i, "--min-recall", &v)) {
            if (!v) return cli_fail(CLI_USAGE, "eval", "--min-recall needs a number");
            int rc = cli_parse_double("eval", "--min-recall", v, &min_recall);
            if (rc) return rc;
        } else if (cli_flag(argv, i, "--json")) {
            json = 1;
        } else {
            return cli_fail(CLI_USAGE, "eval", "unknown argument '%s' (see twin eval retrieval --help)",
                            argv[i]);
        }
    }
    if (!pairs) return cli_fail(CLI_USAGE, "eval", "--pairs FILE is required");
    tw_mfile mf;
    if (tw_mfile_open(&mf, pairs)) return cli_fail_status("eval");

    retrieval_session s;
    int rc = retrieval_session_open("eval", model, &s);
    if (rc) {
        tw_mfile_close(&mf);
        return rc;
    }
    if (hnsw_count(retrieval_index(s.r)) == 0) {
        tw_mfile_close(&mf);
        retrieval_session_close(&s);
        return cli_fail(CLI_ERR, "eval", "the index is empty (run twin crawl, clean, chunk, embed)");
    }
    int64_t n_q = 0, n_hit = 0;
    double rr_sum = 0;
    const char *p = (const char *)mf.data, *end = p + mf.size;
    int line = 0;
    double t0 = tw_now_s();
    while (p < end && !rc) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        const char *q = p;
        p = nl ? nl + 1 : end;
        while (q < le && isspace((unsigned char)*q)) q++;
        if (q == le) continue;
        tw_json *j = tw_json_parse(q, (size_t)(le - q), pairs);
        const char *question = j ? tw_json_get_str(j, "question", NULL) : NULL;
        const char *url = j ? tw_json_get_str(j, "url", NULL) : NULL;
        const char *answer = j ? tw_json_get_str(j, "answer", "") : "";
        if (!question || !url) {
            rc = cli_fail(CLI_ERR, "eval", "%s:%d: need an object with \"question\" and \"url\"",
                          pairs, line);
            tw_json_free(j);
            break;
        }
        retrieval_hit *hits = NULL;
        int32_t n = 0;
        if (retrieval_search(s.r, s.db, question, (int32_t)k, NULL, &hits, &n)) {
            rc = cli_fail_status("eval");
            tw_json_free(j);
            break;
        }
        int rank = 0;
        for (int32_t i = 0; i < n && !rank; i++)
            if (ends_with(hits[i].chunk.url, url) && contains_ci(hits[i].chunk.text, answer))
                rank = i + 1;
        n_q++;
        if (rank) {
            n_hit++;
            rr_sum += 1.0 / rank;
        } else if (!json) {
            printf("miss: %s  (want %s%s%s; got %s)\n", question, url, answer[0] ? " with " : "",
                   answer, n ? hits[0].chunk.url : "nothing");
        }
        retrieval_hits_free(hits, n);
        tw_json_free(j);
    }
    double dt = tw_now_s() - t0;
    tw_mfile_close(&mf);
    retrieval_session_close(&s);
    if (rc) return rc;
    if (n_q == 0) return cli_fail(CLI_ERR, "eval", "%s: no pairs", pairs);
    double recall = (double)n_hit / (double)n_q, mrr = rr_sum / (double)n_q;
    if (json)
        printf("{\"pairs\":%lld,\"k\":%ld,\"recall\":%.4f,\"mrr\":%.4f,\"seconds\":%.3f}\n",
               (long long)n_q, k, recall, mrr, dt);
    else
        printf("twin eval retrieval: %lld pairs, recall@%ld=%.4f mrr@%ld=%.4f (%.1f queries/s)\n",
               (long long)n_q, k, recall, k, mrr, (double)n_q / (dt > 0 ? dt : 1e-9));
    if (min_recall >= 0 && recall < min_recall)
        return cli_fail(CLI_ERR, "eval", "recall@%ld %.4f is below --min-recall %.4f", k, recall,
                        min_recall);
    return CLI_OK;
}

int cmd_eval(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: twin eval retrieval --pairs FILE [--k N] [-m MODEL] [--json]\n\n"
                "Evaluations of the twin. Today: retrieval quality of the vector index\n"
                "(twin eval retrieval --help).\n");
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (!strcmp(argv[1], "retrieval")) return eval_retrieval(argc - 1, argv + 1);
    return cli_fail(CLI_USAGE, "eval", "unknown evaluation '%s' (retrieval)", argv[1]);
}
