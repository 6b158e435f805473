/* test_dataset.c: SFT and preference datasets (engine/dataset.h).
 *   - masks: for chatml, llama3, llama2, mistral and alpaca with the tiny GPT-2 tokenizer
 *     (tests/data/gpt2; markers are plain text there) and chatml with SmolLM2's (special
 *     tokens; skipped when $TWIN_MODELS lacks it): the ids equal the tokenization of the
 *     rendered conversation, and the masked runs decode to exactly each assistant turn's
 *     rendered content + end-of-turn (hand-written strings), the ids before the first run to
 *     exactly the prompt with its generation prompt;
 *   - each line format (alpaca with input/system, sharegpt, messages with content parts,
 *     preference with string / message / array forms), the split hash independent of format;
 *   - bad lines counted with line numbers and the first reason; strict mode's error;
 *   - truncation and dropping; split stability when lines are added; shuffling determinism;
 *     resume from a saved position; packing boundaries, ragged batches, preference batches;
 *   - the content hash; the sample data in tests/data/sft; allocation failures. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dataset.h"
#include "test.h"

static tw_tokenizer *gpt2;

static tw_chat_template *tpl_named(const char *name) {
    tw_chat_template *t = NULL;
    TW_ASSERT(tw_chat_template_from_name(name, &t) == TW_OK);
    return t;
}

static ds_dataset *open_text(const char *text, const tw_tokenizer *tok, const char *tpl_name,
                             const ds_opts *o) {
    tw_chat_template *t = tpl_named(tpl_name);
    ds_dataset *ds = NULL;
    tw_status st = ds_open_mem("mem.jsonl", text, strlen(text), tok, t, o, &ds);
    if (st) fprintf(stderr, "ds_open_mem: %s\n", tw_errmsg());
    tw_chat_template_free(t);
    return ds;
}

static void opts_plain(ds_opts *o) {
    ds_opts_default(o);
    o->eval_fraction = 0;
    o->shuffle = 0;
}

/* The masked runs of seq decoded, joined with "|". */
static void masked_runs(const tw_tokenizer *tok, ds_seq s, tw_sb *out) {
    tw_sb_clear(out);
    size_t i = 0;
    int first = 1;
    while (i < s.n) {
        if (!s.mask[i]) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < s.n && s.mask[j]) j++;
        if (!first) tw_sb_putc(out, '|');
        first = 0;
        TW_ASSERT(tw_tokenizer_decode(tok, s.ids + i, j - i, 0, out) == TW_OK);
        i = j;
    }
}

static size_t first_masked(ds_seq s) {
    size_t i = 0;
    while (i < s.n && !s.mask[i]) i++;
    return i;
}

static void decode_range(const tw_tokenizer *tok, const int32_t *ids, size_t n, tw_sb *out) {
    tw_sb_clear(out);
    TW_ASSERT(tw_tokenizer_decode(tok, ids, n, 0, out) == TW_OK);
}

static const char *conv_line =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Hi there\"},"
    " {\"role\": \"assistant\", \"content\": \"Hello, and welcome.\"},"
    " {\"role\": \"user\", \"content\": \"What is the time?\"},"
    " {\"role\": \"assistant\", \"content\": \"It is late.\"}]}\n";

/* One template: the ids are the rendered text's tokens (plus EOS for alpaca), the masked runs
 * and the prompt are the hand-written strings. */
static void check_template(const tw_tokenizer *tok, const char *name, const char *runs,
                           const char *prompt, int alpaca_eos) {
    ds_opts o;
    opts_plain(&o);
    ds_dataset *ds = open_text(conv_line, tok, name, &o);
    CHECK(ds != NULL);
    if (!ds) return;
    ds_example ex;
    CHECK_EQ_INT(ds_example_get(ds, DS_SPLIT_TRAIN, 0, &ex), TW_OK);
    tw_sb sb, text;
    tw_sb_init(&sb);
    tw_sb_init(&text);
    masked_runs(tok, ex.seq, &sb);
    if (strcmp(tw_sb_str(&sb), runs)) fprintf(stderr, "template %s:\n", name);
    CHECK_EQ_STR(tw_sb_str(&sb), runs);
    size_t s0 = first_masked(ex.seq);
    decode_range(tok, ex.seq.ids, s0, &sb);
    CHECK_EQ_STR(tw_sb_str(&sb), prompt);
    /* the ids are the tokenization of the rendered conversation */
    tw_chat_template *t = tpl_named(name);
    tw_chat_msg msgs[] = {{"system", "Be brief."}, {"user", "Hi there"},
                          {"assistant", "Hello, and welcome."}, {"user", "What is the time?"},
                          {"assistant", "It is late."}};
    CHECK_EQ_INT(tw_chat_template_render(t, msgs, 5, 0, &text), TW_OK);
    tw_tokens ids;
    tw_tokens_init(&ids);
    CHECK_EQ_INT(tw_tokenizer_encode(tok, text.buf, text.len,
                                     TW_TOK_ADD_SPECIAL | TW_TOK_PARSE_SPECIAL, &ids), TW_OK);
    if (!alpaca_eos) {
        CHECK_EQ_INT(ex.seq.n, ids.n);
        CHECK(ex.seq.n == ids.n && !memcmp(ex.seq.ids, ids.ids, ids.n * 4));
    } else {
        /* alpaca: the same ids with EOS after each response */
        CHECK_EQ_INT(ex.seq.n, ids.n + 2);
        size_t k = 0, inserted = 0;
        for (size_t i = 0; i < ex.seq.n; i++) {
            if (ex.seq.ids[i] == tw_tokenizer_eos(tok) && ex.seq.mask[i]) {
                inserted++;
                continue;
            }
            if (k < ids.n && ex.seq.ids[i] == ids.ids[k]) k++;
        }
        CHECK_EQ_INT(inserted, 2);
        CHECK_EQ_INT(k, ids.n);
    }
    tw_tokens_free(&ids);
    tw_chat_template_free(t);
    tw_sb_free(&sb);
    tw_sb_free(&text);
    ds_free(ds);
}

static void test_masks_gpt2(void) {
    check_template(gpt2, "chatml", "Hello, and welcome.<|im_end|>|It is late.<|im_end|>",
                   "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                   "<|im_start|>assistant\n", 0);
    check_template(gpt2, "llama3", "Hello, and welcome.<|eot_id|>|It is late.<|eot_id|>",
                   "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                   "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
                   "<|start_header_id|>assistant<|end_header_id|>\n\n", 0);
    check_template(gpt2, "mistral", "Hello, and welcome.</s>|It is late.</s>",
                   "[INST] Be brief.\n\nHi there [/INST]", 0);
    check_template(gpt2, "llama2", " Hello, and welcome. </s>| It is late. </s>",
                   "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST]", 0);
    check_template(gpt2, "alpaca", "Hello, and welcome.<|endoftext|>|It is late.<|endoftext|>",
                   "Be brief.\n\n### Instruction:\nHi there\n\n### Response:\n", 1);
}

static void test_masks_smollm2(void) {
    const char *models = test_env("TWIN_MODELS");
    char path[4096];
    snprintf(path, sizeof path, "%.3000s/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf",
             models ? models : "");
    if (!models || !tw_path_exists(path)) {
        fprintf(stderr, "  (SmolLM2 not in $TWIN_MODELS: its mask check is skipped)\n");
        return;
    }
    tw_tokenizer *tok = tw_tokenizer_load(path);
    CHECK(tok != NULL);
    if (!tok) return;
    check_template(tok, "chatml", "Hello, and welcome.<|im_end|>|It is late.<|im_end|>",
                   "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
                   "<|im_start|>assistant\n", 0);
    /* and the end-of-turn is the single special token */
    ds_opts o;
    opts_plain(&o);
    ds_dataset *ds = open_text(conv_line, tok, "chatml", &o);
    ds_example ex;
    CHECK(ds && ds_example_get(ds, DS_SPLIT_TRAIN, 0, &ex) == TW_OK);
    if (ds) {
        int32_t im_end = tw_tokenizer_find(tok, "<|im_end|>", 10);
        CHECK(im_end >= 0);
        size_t n_end_masked = 0;
        for (size_t i = 0; i < ex.seq.n; i++)
            if (ex.seq.ids[i] == im_end) n_end_masked += ex.seq.mask[i];
        CHECK_EQ_INT(n_end_masked, 2); /* two assistant turns; system/user im_end unmasked */
    }
    ds_free(ds);
    tw_tokenizer_free(tok);
}

static void test_formats(void) {
    const char *text =
        "{\"instruction\": \"Add\", \"input\": \"2 and 2\", \"output\": \"Four.\", \"system\": \"Sys\"}\n"
        "{\"conversations\": [{\"from\": \"human\", \"value\": \"Add\\n\\n2 and 2\"}, {\"from\": \"gpt\", \"value\": \"Four.\"}], \"system\": \"ignored\"}\n"
        "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"Add\\n\\n\"}, {\"type\": \"text\", \"text\": \"2 and 2\"}]}, {\"role\": \"assistant\", \"content\": \"Four.\"}]}\n"
        "{\"instruction\": \"Add\", \"input\": \"2 and 2\", \"output\": \"Four.\"}\n";
    ds_opts o;
    opts_plain(&o);
    ds_dataset *ds = open_text(text, gpt2, "chatml", &o);
    CHECK(ds != NULL);
    if (!ds) return;
    const ds_stats *st = ds_get_stats(ds);
    CHECK_EQ_INT(st->n_examples, 4);
    CHECK_EQ_INT(st->n_bad, 0);
    CHECK_EQ_INT(st->n_format[DS_FORMAT_ALPACA], 2);
    CHECK_EQ_INT(st->n_format[DS_FORMAT_SHAREGPT], 1);
    CHECK_EQ_INT(st->n_format[DS_FORMAT_MESSAGES], 1);
    ds_example e[4];
    for (int i = 0; i < 4; i++) CHECK_EQ_INT(ds_example_get(ds, DS_SPLIT_TRAIN, (size_t)i, &e[i]), TW_OK);
    CHECK_EQ_INT(e[0].format, DS_FORMAT_ALPACA);
    CHECK_EQ_INT(e[1].line, 2);
    /* the same conversation in three formats: same ids, same split hash */
    CHECK(e[1].seq.n == e[2].seq.n && !memcmp(e[1].seq.ids, e[2].seq.ids, e[1].seq.n * 4));
    CHECK(e[1].seq.n == e[3].seq.n && !memcmp(e[1].seq.ids, e[3].seq.ids, e[1].seq.n * 4));
    CHECK(e[1].split_hash == e[2].split_hash && e[2].split_hash == e[3].split_hash);
    CHECK(e[0].split_hash != e[3].split_hash); /* the system message is content */
    tw_sb sb;
    tw_sb_init(&sb);
    decode_range(gpt2, e[0].seq.ids, e[0].seq.n, &sb);
    CHECK(strstr(tw_sb_str(&sb), "<|im_start|>system\nSys<|im_end|>") != NULL);
    CHECK(strstr(tw_sb_str(&sb), "<|im_start|>user\nAdd\n\n2 and 2<|im_end|>") != NULL);
    tw_sb_free(&sb);
    CHECK_EQ_INT(ds_get_kind(ds), DS_KIND_SFT);
    ds_free(ds);
}

static void test_preference(void) {
    const char *text =
        "{\"prompt\": \"Name a colour.\", \"chosen\": \"Blue.\", \"rejected\": \"I cannot.\"}\n"
        "{\"prompt\": [{\"role\": \"user\", \"content\": \"Name a colour.\"}], \"chosen\": {\"role\": \"assistant\", \"content\": \"Blue.\"}, \"rejected\": [{\"role\": \"user\", \"content\": \"x\"}, {\"role\": \"assistant\", \"content\": \"I cannot.\"}]}\n"
        "{\"chosen\": [{\"role\": \"user\", \"content\": \"Name a colour.\"}, {\"role\": \"assistant\", \"content\": \"Blue.\"}], \"rejected\": [{\"role\": \"user\", \"content\": \"Name a colour.\"}, {\"role\": \"assistant\", \"content\": \"I cannot.\"}]}\n"
        "{\"instruction\": \"not a pair\", \"output\": \"x\"}\n"
        "{\"prompt\": \"Q\", \"chosen\": \"  \", \"rejected\": \"x\"}\n";
    ds_opts o;
    opts_plain(&o);
    ds_dataset *ds = open_text(text, gpt2, "chatml", &o);
    CHECK(ds != NULL);
    if (!ds) return;
    CHECK_EQ_INT(ds_get_kind(ds), DS_KIND_PREFERENCE);
    const ds_stats *st = ds_get_stats(ds);
    CHECK_EQ_INT(st->n_examples, 3);
    CHECK_EQ_INT(st->n_bad, 2);
    CHECK_EQ_INT(st->bad_lines[0], 4);
    CHECK_EQ_INT(st->bad_lines[1], 5);
    CHECK(strstr(st->bad_reason, "SFT line in a preference dataset") != NULL);
    tw_sb sb;
    tw_sb_init(&sb);
    ds_example e[3];
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(ds_example_get(ds, DS_SPLIT_TRAIN, (size_t)i, &e[i]), TW_OK);
        masked_runs(gpt2, e[i].chosen, &sb);
        CHECK_EQ_STR(tw_sb_str(&sb), "Blue.<|im_end|>");
        masked_runs(gpt2, e[i].rejected, &sb);
        CHECK_EQ_STR(tw_sb_str(&sb), "I cannot.<|im_end|>");
        decode_range(gpt2, e[i].prompt.ids, e[i].prompt.n, &sb);
        CHECK_EQ_STR(tw_sb_str(&sb), "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n");
        /* the prompt's ids begin both sequences, and the mask starts right after them */
        CHECK(!memcmp(e[i].chosen.ids, e[i].prompt.ids, e[i].prompt.n * 4));
        CHECK_EQ_INT(first_masked(e[i].chosen), e[i].prompt.n);
        CHECK_EQ_INT(first_masked(e[i].rejected), e[i].prompt.n);
    }
    CHECK(e[0].split_hash == e[1].split_hash && e[1].split_hash == e[2].split_hash);
    /* a batch of pairs: chosen then rejected, each its own row */
    ds_batch b;
    ds_batch_init(&b);
    CHECK_EQ_INT(ds_next_batch(ds, DS_SPLIT_TRAIN, 0, 4, &b), TW_OK);
    CHECK_EQ_INT(b.n_examples, 4);
    CHECK_EQ_INT(b.n_rows, 4);
    CHECK(b.ex_side[0] == 0 && b.ex_side[1] == 1 && b.ex_index[0] == b.ex_index[1]);
    CHECK_EQ_INT(b.ex_start[1] - b.ex_start[0], e[0].chosen.n);
    CHECK_EQ_INT(ds_next_batch(ds, DS_SPLIT_TRAIN, 0, 3, &b), TW_OK); /* 3 rows: one pair fits */
    CHECK_EQ_INT(b.n_examples, 2);
    CHECK(b.epoch_end);
    ds_batch_free(&b);
    tw_sb_free(&sb);
    ds_free(ds);
}

static const char *bad_text =
    "{\"instruction\": \"ok\", \"output\": \"fine\"}\n"
    "not json at all\n"
    "\n"
    "{\"instruction\": \"no output\"}\n"
    "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \" \"}]}\n"
    "{\"messages\": [{\"role\": \"tool\", \"content\": \"a\"}]}\n"
    "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n"
    "{\"messages\": [{\"role\": \"user\", \"content\": \"only a question\"}]}\n"
    "[1, 2]\n"
    "{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}\n"
    "{\"colour\": \"blue\"}\n"
    "{\"instruction\": \"ok again\", \"output\": \"fine again\"}\n";

static void test_bad_lines(void) {
    ds_opts o;
    opts_plain(&o);
    ds_dataset *ds = open_text(bad_text, gpt2, "chatml", &o);
    CHECK(ds != NULL);
    if (ds) {
        const ds_stats *st = ds_get_stats(ds);
        CHECK_EQ_INT(st->n_lines, 11); /* the blank line is not counted */
        CHECK_EQ_INT(st->n_examples, 2);
        CHECK_EQ_INT(st->n_bad, 9);
        size_t want[DS_BAD_KEPT] = {2, 4, 5, 6, 7, 8, 9, 10};
        for (int i = 0; i < DS_BAD_KEPT; i++) CHECK_EQ_INT(st->bad_lines[i], want[i]);
        CHECK(strstr(st->bad_reason, "not JSON") != NULL);
        ds_free(ds);
    }
    /* strict: the first bad line is the error, naming the file and line */
    o.strict = 1;
    CHECK(open_text(bad_text, gpt2, "chatml", &o) == NULL);
    CHECK(strstr(tw_errmsg(), "mem.jsonl:2: not JSON") != NULL);
    const char *reasons[][2] = {
        {"{\"instruction\": \"no output\"}\n", "mem.jsonl:1: field 'output' is missing"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"\"}]}\n", "empty assistant turn"},
        {"{\"messages\": [{\"role\": \"tool\", \"content\": \"a\"}]}\n", "role 'tool' is not system, user or assistant"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}\n", "no assistant turn"},
        {"{\"colour\": 1}\n", "no known format"},
        {"{\"instruction\": 5, \"output\": \"x\"}\n", "field 'instruction' is not a string"},
        {"{\"conversations\": [{\"from\": \"gpt\", \"value\": \"x\"}]}\n", "must start with a user turn"},
    };
    for (size_t i = 0; i < sizeof reasons / sizeof *reasons; i++) {
        CHECK(open_text(reasons[i][0], gpt2, "chatml", &o) == NULL);
        if (!strstr(tw_errmsg(), reasons[i][1])) fprintf(stderr, "  got: %s\n", tw_errmsg());
        CHECK(strstr(tw_errmsg(), reasons[i][1]) != NULL);
    }
    /* not strict, but nothing usable: an error naming the first bad line */
    o.strict = 0;
    CHECK(open_text("x\n{}\n", gpt2, "chatml", &o) == NULL);
    CHECK(strstr(tw_errmsg(), "no usable example (2 bad lines; line 1: not JSON") != NULL);
    CHECK(open_text("", gpt2, "chatml", &o) == NULL);
    /* bad options */
    o.max_len = 1;
    CHECK(open_text(bad_text, gpt2, "chatml", &o) == NULL);
    CHECK(strstr(tw_errmsg(), "max_len") != NULL);
}

static void test_length(void) {
    /* an answer of ~200 tokens after a short prompt */
    tw_sb line;
    tw_sb_init(&line);
    tw_sb_puts(&line, "{\"instruction\": \"Count\", \"output\": \"");
    for (int i = 0; i < 100; i++) tw_sb_printf(&line, "%d ", i);
    tw_sb_puts(&line, "\"}\n{\"instruction\": \"Hi\", \"output\": \"Hello.\"}\n");
    ds_opts o;
    opts_plain(&o);
    ds_dataset *full = open_text(line.buf, gpt2, "chatml", &o);
    CHECK(full != NULL);
    ds_example ef;
    CHECK(full && ds_example_get(full, DS_SPLIT_TRAIN, 0, &ef) == TW_OK);
    size_t long_n = full ? ef.seq.n : 0;
    ds_example es;
    CHECK(full && ds_example_get(full, DS_SPLIT_TRAIN, 1, &es) == TW_OK);
    size_t cut = full ? es.seq.n + 5 : 40; /* the short one fits, the long one does not */
    CHECK(long_n > cut + 100);
    o.max_len = cut;
    ds_dataset *ds = open_text(line.buf, gpt2, "chatml", &o);
    CHECK(ds != NULL);
    if (ds && full) {
        const ds_stats *st = ds_get_stats(ds);
        CHECK_EQ_INT(st->n_truncated, 1);
        CHECK_EQ_INT(st->n_examples, 2);
        ds_example e;
        CHECK_EQ_INT(ds_example_get(ds, DS_SPLIT_TRAIN, 0, &e), TW_OK);
        CHECK_EQ_INT(e.seq.n, cut);
        CHECK(e.truncated);
        CHECK(!memcmp(e.seq.ids, ef.seq.ids, cut * 4) && !memcmp(e.seq.mask, ef.seq.mask, cut));
        CHECK_EQ_INT(ds_get_stats(ds)->n_tokens, cut + es.seq.n);
    }
    ds_free(ds);
    o.long_policy = DS_LONG_DROP;
    ds = open_text(line.buf, gpt2, "chatml", &o);
    CHECK(ds != NULL);
    if (ds) {
        CHECK_EQ_INT(ds_get_stats(ds)->n_dropped_long, 1);
        CHECK_EQ_INT(ds_get_stats(ds)->n_examples, 1);
        CHECK_EQ_INT(ds_count(ds, DS_SPLIT_TRAIN), 1);
    }
    ds_free(ds);
    /* truncation that leaves no assistant token drops the example too */
    o.long_policy = DS_LONG_TRUNCATE;
    o.max_len = 6;
    ds = open_text(line.buf, gpt2, "chatml", &o);
    CHECK(ds == NULL); /* both examples have > 6 prompt tokens */
    CHECK(strstr(tw_errmsg(), "no usable example") != NULL);
    ds_free(full);
    tw_sb_free(&line);
}

/* n generated lines, "Question K" -> "Answer K", K from first. */
static void gen_lines(tw_sb *sb, int first, int n) {
    for (int k = first; k < first + n; k++)
        tw_sb_printf(sb, "{\"instruction\": \"Question %d\", \"output\": \"Answer %d.\"}\n", k, k);
}

static int in_eval(ds_dataset *ds, uint64_t h) {
    ds_example e;
    for (size_t i = 0; i < ds_count(ds, DS_SPLIT_EVAL); i++) {
        ds_example_get(ds, DS_SPLIT_EVAL, i, &e);
        if (e.split_hash == h) return 1;
    }
    return 0;
}

static void test_split(void) {
    tw_sb a, b;
    tw_sb_init(&a);
    tw_sb_init(&b);
    gen_lines(&a, 0, 200);
    gen_lines(&b, 1000, 30); /* new lines first, then the old ones, then more */
    tw_sb_puts(&b, a.buf);
    gen_lines(&b, 2000, 30);
    ds_opts o;
    opts_plain(&o);
    o.eval_fraction = 0.2;
    o.split_seed = 7;
    ds_dataset *d1 = open_text(a.buf, gpt2, "chatml", &o), *d2 = open_text(b.buf, gpt2, "chatml", &o);
    CHECK(d1 && d2);
    if (d1 && d2) {
        size_t ne = ds_count(d1, DS_SPLIT_EVAL);
        CHECK(ne > 20 && ne < 60); /* 0.2 of 200, binomial spread */
        CHECK_EQ_INT(ds_count(d1, DS_SPLIT_TRAIN) + ne, 200);
        /* every old example keeps its side */
        int moved = 0;
        for (int s = 0; s < 2; s++)
            for (size_t i = 0; i < ds_count(d1, (ds_split)s); i++) {
                ds_example e;
                ds_example_get(d1, (ds_split)s, i, &e);
                moved += in_eval(d2, e.split_hash) != s;
            }
        CHECK_EQ_INT(moved, 0);
    }
    ds_free(d1);
    ds_free(d2);
    /* another seed: another split */
    o.split_seed = 8;
    d1 = open_text(a.buf, gpt2, "chatml", &o);
    o.split_seed = 7;
    d2 = open_text(a.buf, gpt2, "chatml", &o);
    if (d1 && d2) {
        ds_example e1, e2;
        ds_example_get(d1, DS_SPLIT_EVAL, 0, &e1);
        ds_example_get(d2, DS_SPLIT_EVAL, 0, &e2);
        CHECK(e1.line != e2.line || ds_count(d1, DS_SPLIT_EVAL) != ds_count(d2, DS_SPLIT_EVAL));
    }
    ds_free(d1);
    ds_free(d2);
    /* a count: exactly that many, the same ones after lines are added unless displaced */
    o.eval_count = 10;
    d1 = open_text(a.buf, gpt2, "chatml", &o);
    d2 = open_text(b.buf, gpt2, "chatml", &o);
    CHECK(d1 && d2);
    if (d1 && d2) {
        CHECK_EQ_INT(ds_count(d1, DS_SPLIT_EVAL), 10);
        CHECK_EQ_INT(ds_count(d2, DS_SPLIT_EVAL), 10);
        /* the eval set of d2 is the 10 lowest hashes; an old eval example left only if 10 of
         * d2's eval hashes are below it */
        uint64_t max2 = 0;
        ds_example e;
        for (size_t i = 0; i < 10; i++) {
            ds_example_get(d2, DS_SPLIT_EVAL, i, &e);
            if (e.split_hash > max2) max2 = e.split_hash;
        }
        for (size_t i = 0; i < 10; i++) {
            ds_example_get(d1, DS_SPLIT_EVAL, i, &e);
            CHECK(in_eval(d2, e.split_hash) == (e.split_hash <= max2));
        }
    }
    ds_free(d1);
    ds_free(d2);
    o.eval_count = 500;
    CHECK(open_text(a.buf, gpt2, "chatml", &o) == NULL);
    CHECK(strstr(tw_errmsg(), "none is left to train on") != NULL);
    tw_sb_free(&a);
    tw_sb_free(&b);
}

static void test_shuffle_resume(void) {
    tw_sb a;
    tw_sb_init(&a);
    gen_lines(&a, 0, 50);
    ds_opts o;
    opts_plain(&o);
    o.shuffle = 1;
    o.shuffle_seed = 42;
    ds_dataset *d1 = open_text(a.buf, gpt2, "chatml", &o), *d2 = open_text(a.buf, gpt2, "chatml", &o);
    o.shuffle_seed = 43;
    ds_dataset *d3 = open_text(a.buf, gpt2, "chatml", &o);
    CHECK(d1 && d2 && d3);
    if (!d1 || !d2 || !d3) return;
    size_t n = ds_count(d1, DS_SPLIT_TRAIN);
    CHECK_EQ_INT(n, 50);
    size_t o10[50], o11[50], o20[50], o30[50];
    ds_epoch_order(d1, DS_SPLIT_TRAIN, 0, o10);
    ds_epoch_order(d1, DS_SPLIT_TRAIN, 1, o11);
    ds_epoch_order(d2, DS_SPLIT_TRAIN, 0, o20);
    ds_epoch_order(d3, DS_SPLIT_TRAIN, 0, o30);
    CHECK(!memcmp(o10, o20, sizeof o10));
    CHECK(memcmp(o10, o11, sizeof o10) != 0);
    CHECK(memcmp(o10, o30, sizeof o10) != 0);
    int seen[50] = {0}, in_place = 0;
    for (size_t i = 0; i < 50; i++) {
        seen[o10[i]]++;
        in_place += o10[i] == i;
    }
    for (size_t i = 0; i < 50; i++) CHECK_EQ_INT(seen[i], 1);
    CHECK(in_place < 10);
    /* batches follow the order; epochs end and restart with the next permutation */
    ds_batch b;
    ds_batch_init(&b);
    size_t got[150], k = 0;
    int ends = 0;
    while (k < 150) {
        CHECK_EQ_INT(ds_next_batch(d1, DS_SPLIT_TRAIN, 0, 7, &b), TW_OK);
        CHECK(b.n_examples >= 1 && b.n_examples <= 7);
        for (size_t e = 0; e < b.n_examples && k < 150; e++) got[k++] = b.ex_index[e];
        ends += b.epoch_end;
    }
    CHECK_EQ_INT(ends, 3);
    size_t o12[50];
    ds_epoch_order(d1, DS_SPLIT_TRAIN, 2, o12);
    CHECK(!memcmp(got, o10, sizeof o10) && !memcmp(got + 50, o11, sizeof o11) &&
          !memcmp(got + 100, o12, sizeof o12));
    /* resume: d1 reads 4 batches, saves; reads 6 more. d2 set to the saved position reads the
     * same 6 batches, token for token */
    ds_position zero = {0, 0}, saved;
    ds_position_set(d1, DS_SPLIT_TRAIN, &zero);
    for (int i = 0; i < 4; i++) ds_next_batch(d1, DS_SPLIT_TRAIN, 64, 0, &b);
    ds_position_get(d1, DS_SPLIT_TRAIN, &saved);
    CHECK(saved.index > 0);
    ds_batch c;
    ds_batch_init(&c);
    CHECK_EQ_INT(ds_position_set(d2, DS_SPLIT_TRAIN, &saved), TW_OK);
    for (int i = 0; i < 12; i++) {
        ds_next_batch(d1, DS_SPLIT_TRAIN, 64, 0, &b);
        ds_next_batch(d2, DS_SPLIT_TRAIN, 64, 0, &c);
        CHECK(b.n_tokens == c.n_tokens && !memcmp(b.tokens, c.tokens, b.n_tokens * 4) &&
              !memcmp(b.targets, c.targets, b.n_tokens * 4));
        CHECK(b.start.epoch == c.start.epoch && b.start.index == c.start.index);
    }
    ds_position bad_pos = {0, 51};
    CHECK_EQ_INT(ds_position_set(d2, DS_SPLIT_TRAIN, &bad_pos), TW_ERR_ARG);
    CHECK_EQ_INT(ds_next_batch(d2, DS_SPLIT_TRAIN, 0, 0, &b), TW_ERR_ARG);
    CHECK_EQ_INT(ds_next_batch(d2, DS_SPLIT_EVAL, 0, 1, &b), TW_ERR_NOT_FOUND);
    ds_batch_free(&b);
    ds_batch_free(&c);
    ds_free(d1);
    ds_free(d2);
    ds_free(d3);
    tw_sb_free(&a);
}

/* The batch invariants every consumer relies on. */
static void check_batch(const ds_dataset *ds, const ds_batch *b, size_t max_len, int packed) {
    CHECK_EQ_INT(b->row_start[0], 0);
    CHECK_EQ_INT(b->row_start[b->n_rows], b->n_tokens);
    CHECK_EQ_INT(b->ex_start[b->n_examples], b->n_tokens);
    for (size_t r = 0; r < b->n_rows; r++) CHECK(b->row_start[r + 1] - b->row_start[r] <= max_len);
    if (!packed) {
        CHECK_EQ_INT(b->n_rows, b->n_examples);
        for (size_t e = 0; e <= b->n_examples; e++) CHECK_EQ_INT(b->row_start[e], b->ex_start[e]);
    }
    size_t r = 0;
    for (size_t e = 0; e < b->n_examples; e++) {
        ds_example ex;
        CHECK_EQ_INT(ds_example_get(ds, DS_SPLIT_TRAIN, b->ex_index[e], &ex), TW_OK);
        size_t s = b->ex_start[e], n = b->ex_start[e + 1] - s;
        CHECK_EQ_INT(n, ex.seq.n);
        CHECK(!memcmp(b->tokens + s, ex.seq.ids, n * 4) && !memcmp(b->mask + s, ex.seq.mask, n));
        while (r + 1 < b->n_rows && b->row_start[r + 1] <= s) r++;
        CHECK(b->ex_start[e + 1] <= b->row_start[r + 1]); /* an example never crosses rows */
        for (size_t t = 0; t < n; t++) {
            CHECK_EQ_INT(b->pos[s + t], t);
            CHECK_EQ_INT(b->seg[s + t], e);
            int32_t want = t + 1 < n && ex.seq.mask[t + 1] ? ex.seq.ids[t + 1] : -1;
            CHECK_EQ_INT(b->targets[s + t], want);
        }
        CHECK_EQ_INT(b->targets[s + n - 1], -1); /* no label crosses into the next example */
    }
}

static void test_packing(void) {
    tw_sb a;
    tw_sb_init(&a);
    gen_lines(&a, 0, 40);
    ds_opts o;
    opts_plain(&o);
    o.max_len = 256; /* an example is about 75 tokens with the tiny tokenizer */
    o.pack = 1;
    ds_dataset *ds = open_text(a.buf, gpt2, "chatml", &o);
    CHECK(ds != NULL);
    if (!ds) return;
    ds_batch b;
    ds_batch_init(&b);
    size_t total = 0, rows = 0, multi = 0;
    for (int i = 0; i < 100; i++) {
        CHECK_EQ_INT(ds_next_batch(ds, DS_SPLIT_TRAIN, 0, 3, &b), TW_OK);
        CHECK(b.n_rows <= 3);
        check_batch(ds, &b, 256, 1);
        total += b.n_examples;
        rows += b.n_rows;
        for (size_t r = 0; r < b.n_rows; r++) {
            size_t ex_in_row = 0;
            for (size_t e = 0; e < b.n_examples; e++)
                ex_in_row += b.ex_start[e] >= b.row_start[r] && b.ex_start[e] < b.row_start[r + 1];
            multi += ex_in_row > 1;
        }
        if (b.epoch_end) break;
    }
    CHECK_EQ_INT(total, 40);
    CHECK(rows < 40 && multi > 0); /* examples did share rows */
    /* without packing, a ragged batch under a token budget */
    ds_free(ds);
    o.pack = 0;
    ds = open_text(a.buf, gpt2, "chatml", &o);
    CHECK(ds != NULL);
    if (ds) {
        CHECK_EQ_INT(ds_next_batch(ds, DS_SPLIT_TRAIN, 200, 0, &b), TW_OK);
        check_batch(ds, &b, 256, 0);
        CHECK(b.n_tokens <= 200 && b.n_examples >= 2);
        /* a budget below one example still gives one */
        CHECK_EQ_INT(ds_next_batch(ds, DS_SPLIT_TRAIN, 3, 0, &b), TW_OK);
        CHECK_EQ_INT(b.n_examples, 1);
    }
    ds_batch_free(&b);
    ds_free(ds);
    tw_sb_free(&a);
}

static void test_content_hash(void) {
    tw_sb a;
    tw_sb_init(&a);
    gen_lines(&a, 0, 5);
    ds_opts o;
    opts_plain(&o);
    ds_dataset *d1 = open_text(a.buf, gpt2, "chatml", &o);
    o.shuffle = 1;
    o.shuffle_seed = 99;
    o.pack = 1;
    ds_dataset *d2 = open_text(a.buf, gpt2, "chatml", &o); /* how it is read: same version */
    o.max_len = 512;
    ds_dataset *d3 = open_text(a.buf, gpt2, "chatml", &o);
    o.max_len = 1024;
    ds_dataset *d4 = open_text(a.buf, gpt2, "llama3", &o);
    a.buf[20] ^= 1; /* one byte of the file */
    ds_dataset *d5 = open_text(a.buf, gpt2, "chatml", &o);
    o.lineage = "model sha256 0123";
    a.buf[20] ^= 1;
    ds_dataset *d6 = open_text(a.buf, gpt2, "chatml", &o);
    CHECK(d1 && d2 && d3 && d4 && d5 && d6);
    if (d1 && d2 && d3 && d4 && d5 && d6) {
        CHECK_EQ_INT(strlen(ds_content_hash(d1)), 64);
        CHECK_EQ_STR(ds_content_hash(d1), ds_content_hash(d2));
        CHECK(strcmp(ds_content_hash(d1), ds_content_hash(d3)) != 0);
        CHECK(strcmp(ds_content_hash(d1), ds_content_hash(d4)) != 0);
        CHECK(strcmp(ds_content_hash(d1), ds_content_hash(d5)) != 0);
        CHECK(strcmp(ds_content_hash(d1), ds_content_hash(d6)) != 0);
    }
    ds_free(d1);
    ds_free(d2);
    ds_free(d3);
    ds_free(d4);
    ds_free(d5);
    ds_free(d6);
    tw_sb_free(&a);
}

static void test_sample_data(void) {
    const char *data = test_env("TWIN_TEST_DATA");
    char path[4096];
    tw_chat_template *t = tpl_named("chatml");
    ds_opts o;
    ds_opts_default(&o);
    o.strict = 1;
    ds_dataset *ds = NULL;
    snprintf(path, sizeof path, "%.4000s/sft/voice_sft.jsonl", data);
    CHECK_EQ_INT(ds_open(path, gpt2, t, &o, &ds), TW_OK);
    if (ds) {
        const ds_stats *st = ds_get_stats(ds);
        CHECK(st->n_examples >= 60 && st->n_bad == 0 && st->n_truncated == 0);
        CHECK(st->n_eval >= 1 && st->n_train > st->n_eval);
        CHECK(st->n_loss_tokens > 0 && st->n_loss_tokens < st->n_tokens);
        fprintf(stderr, "  voice_sft: %zu examples (%zu train, %zu eval), %zu tokens, %zu with "
                "loss (tiny GPT-2 tokenizer)\n", st->n_examples, st->n_train, st->n_eval,
                st->n_tokens, st->n_loss_tokens);
    }
    ds_free(ds);
    snprintf(path, sizeof path, "%.4000s/sft/voice_pref.jsonl", data);
    CHECK_EQ_INT(ds_open(path, gpt2, t, &o, &ds), TW_OK);
    if (ds) {
        CHECK_EQ_INT(ds_get_kind(ds), DS_KIND_PREFERENCE);
        CHECK(ds_get_stats(ds)->n_examples == 30 && ds_get_stats(ds)->n_bad == 0);
    }
    ds_free(ds);
    snprintf(path, sizeof path, "%.4000s/sft/no-such-file.jsonl", data);
    CHECK(ds_open(path, gpt2, t, &o, &ds) != TW_OK && ds == NULL);
    CHECK(strstr(tw_errmsg(), "no-such-file.jsonl") != NULL);
    tw_chat_template_free(t);
}

static void test_alloc_failures(void) {
    tw_sb a;
    tw_sb_init(&a);
    gen_lines(&a, 0, 6);
    tw_sb_puts(&a, "{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}\n");
    tw_chat_template *t = tpl_named("alpaca");
    ds_opts o;
    opts_plain(&o);
    o.pack = 1;
    tw_mem_stats before = tw_mem_get_stats();
    int ok_seen = 0;
    for (uint64_t k = 1; k < 2000 && !ok_seen; k++) {
        ds_dataset *ds = NULL;
        tw_mem_fail_after(k);
        tw_status st = ds_open_mem("m", a.buf, a.len, gpt2, t, &o, &ds);
        if (st == TW_OK) {
            ds_batch b;
            ds_batch_init(&b);
            st = ds_next_batch(ds, DS_SPLIT_TRAIN, 0, 2, &b);
            CHECK(st == TW_OK || st == TW_ERR_NOMEM);
            ok_seen = st == TW_OK;
            ds_batch_free(&b);
            ds_free(ds);
        } else {
            CHECK(ds == NULL);
        }
        tw_mem_fail_after(0);
    }
    CHECK(ok_seen);
    CHECK_EQ_INT(tw_mem_get_stats().current_bytes, before.current_bytes);
    tw_chat_template_free(t);
    tw_sb_free(&a);
}

int main(void) {
    const char *data = test_env("TWIN_TEST_DATA");
    if (!data) TEST_SKIP("TWIN_TEST_DATA is not set");
    char path[4096];
    snprintf(path, sizeof path, "%.4000s/gpt2/tiny-gpt2-f32.gguf", data);
    gpt2 = tw_tokenizer_load(path);
    if (!gpt2) {
        fprintf(stderr, "%s: %s\n", path, tw_errmsg());
        return 1;
    }
    RUN(test_masks_gpt2);
    RUN(test_masks_smollm2);
    RUN(test_formats);
    RUN(test_preference);
    RUN(test_bad_lines);
    RUN(test_length);
    RUN(test_split);
    RUN(test_shuffle_resume);
    RUN(test_packing);
    RUN(test_content_hash);
    RUN(test_sample_data);
    RUN(test_alloc_failures);
    tw_tokenizer_free(gpt2);
    TEST_DONE();
}
