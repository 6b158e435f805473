/* test_bpe.c: byte-level BPE and its pre-tokenizers on hand-built vocabularies, plus the
 * pre-tokenizer scanners of every family against HF tokenizers' splits
 * (tests/data/tokenizer/pretok.golden.jsonl, from tools/gen_tokenizer_golden.py).
 *
 * The hand-built vocabulary is written as a real GGUF (and as a tokenizer.json) and loaded
 * through tw_tokenizer_load, so loading, added tokens, merges by rank, both merge paths
 * (flat array for short words, heap for long ones), decoding and the errors are covered. */
#include "test.h"
#include "gguf.h"
#include "json.h"
#include "tok_golden.h"
#include "tokenizer_impl.h"

#include <unistd.h>

static char tmpdir[512];

/* ---- a hand-built vocabulary --------------------------------------------------------------- */

/* ids 0..255: the byte tokens (id = byte); then merged tokens; then added tokens. */
static const char *merge_list[] = {
    "h e",   "l l",      "he ll",   "hell o", "Ġ w",   "o r", "Ġw or", "Ġwor l", "Ġworl d",
    "a a",   "aa aa",    "c d",     "b c",    "a b",   "1 2", "Ġ Ġ",   "ĠĠ ĠĠ",
};
#define N_MERGES (int)(sizeof merge_list / sizeof merge_list[0])
/* The merged texts, in merge order (id 256 + index). */
static const char *merged_text[] = {
    "he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "Ġworl", "Ġworld",
    "aa", "aaaa", "cd", "bc", "ab", "12", "ĠĠ", "ĠĠĠĠ",
};
enum { ID_HE = 256, ID_LL, ID_HELL, ID_HELLO, ID_GW, ID_OR, ID_GWOR, ID_GWORL, ID_GWORLD,
       ID_AA, ID_AAAA, ID_CD, ID_BC, ID_AB, ID_12, ID_GG, ID_GGGG, ID_EOT, ID_IMS, ID_UA,
       ID_UAB, ID_ABCD, N_VOCAB };
static const char *added_text[] = {"<|endoftext|>", "<|im_start|>", "<a>", "<a><b>"};
static const int32_t added_type[] = {TW_TOKTYPE_CONTROL, TW_TOKTYPE_CONTROL,
                                     TW_TOKTYPE_USER_DEFINED, TW_TOKTYPE_USER_DEFINED};

static char byte_text[256][5];

static void make_byte_texts(void) {
    for (int b = 0; b < 256; b++) {
        int n = tw_utf8_encode(tok_byte_to_cp((uint8_t)b), byte_text[b]);
        byte_text[b][n] = 0;
    }
}

static char *write_vocab_gguf(const char *pre, int add_bos, int with_merges) {
    const char *texts[N_VOCAB];
    int32_t types[N_VOCAB];
    for (int i = 0; i < 256; i++) texts[i] = byte_text[i], types[i] = TW_TOKTYPE_NORMAL;
    for (int i = 0; i < N_MERGES; i++) texts[256 + i] = merged_text[i], types[256 + i] = TW_TOKTYPE_NORMAL;
    for (int i = 0; i < 4; i++) texts[ID_EOT + i] = added_text[i], types[ID_EOT + i] = added_type[i];
    texts[ID_ABCD] = "abcd", types[ID_ABCD] = TW_TOKTYPE_NORMAL; /* no merge path leads here */
    gguf_writer *w = gguf_writer_new(3, 0);
    CHECK(w != NULL);
    CHECK(gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2") == TW_OK);
    if (pre) CHECK(gguf_writer_set_str(w, "tokenizer.ggml.pre", pre) == TW_OK);
    CHECK(gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", texts, N_VOCAB) == TW_OK);
    CHECK(gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, N_VOCAB) == TW_OK);
    if (with_merges) CHECK(gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merge_list, N_MERGES) == TW_OK);
    CHECK(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", ID_EOT) == TW_OK);
    CHECK(gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", ID_EOT) == TW_OK);
    CHECK(gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos) == TW_OK);
    tw_sb p;
    tw_sb_init(&p);
    tw_sb_printf(&p, "%s/vocab-%s-%d-%d.gguf", tmpdir, pre ? pre : "none", add_bos, with_merges);
    CHECK(gguf_writer_write(w, tw_sb_str(&p)) == TW_OK);
    gguf_writer_free(w);
    return tw_sb_take(&p);
}

static tw_tokenizer *load_vocab(const char *pre, int add_bos) {
    char *path = write_vocab_gguf(pre, add_bos, 1);
    tw_tokenizer *t = tw_tokenizer_load(path);
    if (!t) fprintf(stderr, "load %s: %s\n", path, tw_errmsg());
    unlink(path);
    tw_free(path);
    return t;
}

/* Encodes s and compares with the expected ids (terminated by -1). */
static int expect_ids(const tw_tokenizer *t, const char *s, size_t n, unsigned flags, const int32_t *want) {
    tw_tokens got;
    tw_tokens_init(&got);
    tw_status st = tw_tokenizer_encode(t, s, n, flags, &got);
    size_t nw = 0;
    while (want[nw] >= 0) nw++;
    int ok = st == TW_OK && got.n == nw && (nw == 0 || !memcmp(got.ids, want, nw * sizeof *want));
    if (!ok) {
        fprintf(stderr, "  encode \"%.*s\": want", (int)(n > 60 ? 60 : n), s);
        for (size_t i = 0; i < nw; i++) fprintf(stderr, " %d", want[i]);
        fprintf(stderr, ", got");
        for (size_t i = 0; i < got.n; i++) fprintf(stderr, " %d", got.ids[i]);
        fprintf(stderr, "%s%s\n", st ? " error: " : "", st ? tw_errmsg() : "");
    }
    tw_tokens_free(&got);
    return ok;
}
#define EXPECT(t, s, flags, ...)                                                                \
    do {                                                                                        \
        const int32_t want_[] = {__VA_ARGS__, -1};                                              \
        CHECK(expect_ids(t, s, strlen(s), flags, want_));                                       \
    } while (0)

static void test_merges_by_rank(void) {
    tw_tokenizer *t = load_vocab("gpt2", 0);
    CHECK(t != NULL);
    if (!t) return;
    CHECK_EQ_INT(tw_tokenizer_kind(t), TW_TOK_BPE);
    CHECK_EQ_STR(tw_tokenizer_pre_name(t), "gpt2");
    CHECK_EQ_INT(tw_tokenizer_n_vocab(t), N_VOCAB);
    EXPECT(t, "hello", 0, ID_HELLO);
    EXPECT(t, "hello world", 0, ID_HELLO, ID_GWORLD);
    EXPECT(t, "hellohello", 0, ID_HELLO, ID_HELLO);
    /* "c d" (rank 11) before "b c" (12) before "a b" (13): abcd -> ab cd */
    EXPECT(t, "abcd", 0, ID_AB, ID_CD);
    /* bc is ranked before ab: abc -> a bc */
    EXPECT(t, "abc", 0, 'a', ID_BC);
    /* ties go to the leftmost pair: aaa -> aa a */
    EXPECT(t, "aaa", 0, ID_AA, 'a');
    EXPECT(t, "aaaaa", 0, ID_AAAA, 'a');
    /* digits are one piece under gpt2, two merged bytes here */
    EXPECT(t, "12", 0, ID_12);
    EXPECT(t, "123", 0, ID_12, '3');
    /* unknown pairs stay bytes; the byte tokens cover everything */
    EXPECT(t, "\xff\x01", 0, 0xff, 0x01);
    tw_tokenizer_free(t);
}

/* llama3 sets ignore_merges: a word that is a whole token is that token, even when the
 * merges would not build it; other families merge. */
static void test_ignore_merges(void) {
    tw_tokenizer *t = load_vocab("llama3", 0);
    if (!t) return;
    EXPECT(t, "abcd", 0, ID_ABCD);
    EXPECT(t, "abc", 0, 'a', ID_BC);
    EXPECT(t, "hello abcd", 0, ID_HELLO, ' ', ID_AB, ID_CD); /* " abcd" is one word, not a token */
    tw_tokenizer_free(t);
    t = load_vocab("gpt2", 0);
    if (!t) return;
    EXPECT(t, "abcd", 0, ID_AB, ID_CD);
    tw_tokenizer_free(t);
}

/* Words longer than the flat-array limit take the heap path; both must agree with the
 * rank order: runs of 'a' become "aaaa" groups from the left. */
static void test_long_words(void) {
    tw_tokenizer *t = load_vocab("gpt2", 0);
    if (!t) return;
    for (int n = 1; n <= 300; n++) {
        char s[301];
        memset(s, 'a', (size_t)n);
        int32_t want[80];
        int k = 0;
        for (int i = 0; i < n / 4; i++) want[k++] = ID_AAAA;
        if (n % 4 >= 2) want[k++] = ID_AA;
        if (n % 2) want[k++] = 'a';
        want[k] = -1;
        CHECK(expect_ids(t, s, (size_t)n, 0, want));
    }
    /* spaces: gpt2 keeps the last space of a run for the next word */
    {
        char s[200];
        memset(s, ' ', 101);
        memcpy(s + 101, "world", 6);
        int32_t want[40];
        int k = 0;
        for (int i = 0; i < 100 / 4; i++) want[k++] = ID_GGGG;
        want[k++] = ID_GWORLD;
        want[k] = -1;
        CHECK(expect_ids(t, s, strlen(s), 0, want));
    }
    tw_tokenizer_free(t);
}

static void test_special_tokens(void) {
    tw_tokenizer *t = load_vocab("gpt2", 1);
    if (!t) return;
    /* without PARSE_SPECIAL a control token is plain text... */
    tw_tokens a;
    tw_tokens_init(&a);
    CHECK(tw_tokenizer_encode(t, "<|endoftext|>", 13, 0, &a) == TW_OK);
    CHECK(a.n > 1);
    for (size_t i = 0; i < a.n; i++) CHECK(a.ids[i] != ID_EOT);
    tw_tokens_free(&a);
    /* ...with it, the token; text around is encoded normally */
    EXPECT(t, "hello<|endoftext|>hello", TW_TOK_PARSE_SPECIAL, ID_HELLO, ID_EOT, ID_HELLO);
    EXPECT(t, "<|im_start|><|endoftext|>", TW_TOK_PARSE_SPECIAL, ID_IMS, ID_EOT);
    /* a partial special is text */
    EXPECT(t, "<|im_start|", TW_TOK_PARSE_SPECIAL, '<', '|', 'i', 'm', '_', 's', 't', 'a', 'r', 't', '|');
    /* user-defined tokens are always matched, longest first */
    EXPECT(t, "<a>", 0, ID_UA);
    EXPECT(t, "<a><b>hello", 0, ID_UAB, ID_HELLO);
    EXPECT(t, "<a><a><b", 0, ID_UA, ID_UA, '<', 'b');
    /* ADD_SPECIAL: add_bos_token was set; no eos */
    EXPECT(t, "hello", TW_TOK_ADD_SPECIAL, ID_EOT, ID_HELLO);
    EXPECT(t, "", TW_TOK_ADD_SPECIAL, ID_EOT);
    CHECK_EQ_INT(tw_tokenizer_bos(t), ID_EOT);
    CHECK_EQ_INT(tw_tokenizer_find(t, "hello", 5), ID_HELLO);
    CHECK_EQ_INT(tw_tokenizer_find(t, "nope", 4), -1);
    CHECK_EQ_INT(tw_tokenizer_token_type(t, ID_UA), TW_TOKTYPE_USER_DEFINED);

    /* decode: control tokens keep their text unless skipped */
    int32_t ids[] = {ID_EOT, ID_HELLO, ID_GWORLD, ID_UA};
    tw_sb sb;
    tw_sb_init(&sb);
    CHECK(tw_tokenizer_decode(t, ids, 4, 0, &sb) == TW_OK);
    CHECK_EQ_STR(tw_sb_str(&sb), "<|endoftext|>hello world<a>");
    tw_sb_clear(&sb);
    CHECK(tw_tokenizer_decode(t, ids, 4, TW_TOK_SKIP_SPECIAL, &sb) == TW_OK);
    CHECK_EQ_STR(tw_sb_str(&sb), "hello world<a>");
    int32_t bad[] = {ID_HELLO, N_VOCAB};
    tw_sb_clear(&sb);
    CHECK(tw_tokenizer_decode(t, bad, 2, 0, &sb) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "out of range") != NULL);
    int32_t neg = -1;
    CHECK(tw_tokenizer_decode(t, &neg, 1, 0, &sb) == TW_ERR_ARG);
    tw_sb_free(&sb);
    tw_tokenizer_free(t);
}

/* decode(encode(bytes)) == bytes for any bytes, valid UTF-8 or not, every family. */
static void test_round_trip(void) {
    static const char *pres[] = {"gpt2", "llama3", "qwen2", "smollm", "deepseek-coder",
                                 "deepseek-llm", "falcon", "default"};
    uint64_t rng = 0x243F6A8885A308D3ull;
    for (size_t p = 0; p < sizeof pres / sizeof pres[0]; p++) {
        tw_tokenizer *t = load_vocab(pres[p], 0);
        CHECK(t != NULL);
        if (!t) continue;
        for (int it = 0; it < 300; it++) {
            char s[256];
            size_t n = (size_t)(rng % 200);
            for (size_t i = 0; i < n; i++) {
                rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
                /* mostly text-like bytes, some anything */
                static const char alpha[] = "hello world aabbcd 123 \t\n\r'sS.,!<>|";
                s[i] = (rng & 3) ? alpha[(rng >> 8) % (sizeof alpha - 1)] : (char)(rng >> 16);
            }
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            tw_tokens ids;
            tw_tokens_init(&ids);
            unsigned flags = (rng & 1) ? TW_TOK_PARSE_SPECIAL : 0;
            CHECK(tw_tokenizer_encode(t, s, n, flags, &ids) == TW_OK);
            tw_sb sb;
            tw_sb_init(&sb);
            CHECK(tw_tokenizer_decode(t, ids.ids, ids.n, 0, &sb) == TW_OK);
            int same = sb.len == n && (n == 0 || memcmp(sb.buf, s, n) == 0);
            if (!same) fprintf(stderr, "  round trip failed for pre %s, %zu bytes\n", pres[p], n);
            CHECK(same);
            tw_sb_free(&sb);
            tw_tokens_free(&ids);
        }
        tw_tokenizer_free(t);
    }
}

static void test_load_errors(void) {
    /* no merges */
    char *path = write_vocab_gguf("gpt2", 0, 0);
    tw_tokenizer *t = tw_tokenizer_load(path);
    CHECK(t == NULL);
    CHECK(strstr(tw_errmsg(), "tokenizer.ggml.merges") != NULL);
    unlink(path);
    tw_free(path);
    /* an unknown pre-tokenizer is refused by name */
    path = write_vocab_gguf("no-such-pre", 0, 1);
    t = tw_tokenizer_load(path);
    CHECK(t == NULL);
    CHECK_EQ_INT(tw_errcode(), TW_ERR_UNSUPPORTED);
    CHECK(strstr(tw_errmsg(), "no-such-pre") != NULL);
    unlink(path);
    tw_free(path);
    /* a file that is not a model */
    tw_sb p;
    tw_sb_init(&p);
    tw_sb_printf(&p, "%s/not-a-model.bin", tmpdir);
    CHECK(tw_file_write_atomic(tw_sb_str(&p), "hello", 5) == TW_OK);
    CHECK(tw_tokenizer_load(tw_sb_str(&p)) == NULL);
    CHECK_EQ_INT(tw_errcode(), TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "not a model") != NULL);
    unlink(tw_sb_str(&p));
    tw_sb_free(&p);
    CHECK(tw_tokenizer_load("/nonexistent/twin/model.gguf") == NULL);
    CHECK_EQ_INT(tw_errcode(), TW_ERR_NOT_FOUND);
    /* a GGUF without a tokenizer */
    gguf_writer *w = gguf_writer_new(3, 0);
    gguf_writer_set_str(w, "general.architecture", "llama");
    tw_sb_init(&p);
    tw_sb_printf(&p, "%s/no-tokenizer.gguf", tmpdir);
    CHECK(gguf_writer_write(w, tw_sb_str(&p)) == TW_OK);
    gguf_writer_free(w);
    CHECK(tw_tokenizer_load(tw_sb_str(&p)) == NULL);
    CHECK(strstr(tw_errmsg(), "tokenizer.ggml.model") != NULL);
    unlink(tw_sb_str(&p));
    tw_sb_free(&p);
}

/* The same vocabulary as a tokenizer.json: merges in both spellings, SmolLM's pre-tokenizer
 * (Digits + ByteLevel), a template that adds <|im_start|> ... <|endoftext|>. */
static void test_tokenizer_json(void) {
    tw_sb j;
    tw_sb_init(&j);
    tw_sb_puts(&j, "{\"version\":\"1.0\",\"added_tokens\":[");
    for (int i = 0; i < 4; i++) {
        tw_sb_printf(&j, "%s{\"id\":%d,\"content\":", i ? "," : "", ID_EOT + i);
        tw_sb_json_str(&j, added_text[i], strlen(added_text[i]));
        tw_sb_printf(&j, ",\"special\":%s}", added_type[i] == TW_TOKTYPE_CONTROL ? "true" : "false");
    }
    tw_sb_puts(&j, "],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":["
                   "{\"type\":\"Digits\",\"individual_digits\":true},{\"type\":\"ByteLevel\","
                   "\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}]},"
                   "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":["
                   "{\"SpecialToken\":{\"id\":\"<|im_start|>\",\"type_id\":0}},"
                   "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
                   "{\"SpecialToken\":{\"id\":\"<|endoftext|>\",\"type_id\":0}}],"
                   "\"special_tokens\":{}},\"decoder\":{\"type\":\"ByteLevel\"},"
                   "\"model\":{\"type\":\"BPE\",\"vocab\":{");
    for (int i = 0; i < 256 + N_MERGES; i++) {
        const char *s = i < 256 ? byte_text[i] : merged_text[i - 256];
        if (i) tw_sb_putc(&j, ',');
        tw_sb_json_str(&j, s, strlen(s));
        tw_sb_printf(&j, ":%d", i);
    }
    tw_sb_puts(&j, "},\"merges\":[");
    for (int i = 0; i < N_MERGES; i++) {
        if (i) tw_sb_putc(&j, ',');
        const char *m = merge_list[i], *sp = strchr(m, ' ');
        if (i % 2) { /* ["a","b"] */
            tw_sb_putc(&j, '[');
            tw_sb_json_str(&j, m, (size_t)(sp - m));
            tw_sb_putc(&j, ',');
            tw_sb_json_str(&j, sp + 1, strlen(sp + 1));
            tw_sb_putc(&j, ']');
        } else {
            tw_sb_json_str(&j, m, strlen(m));
        }
    }
    tw_sb_puts(&j, "]}}");
    tw_sb p;
    tw_sb_init(&p);
    tw_sb_printf(&p, "%s/tokenizer.json", tmpdir);
    CHECK(tw_file_write_atomic(tw_sb_str(&p), j.buf, j.len) == TW_OK);
    tw_tokenizer *t = tw_tokenizer_load(tmpdir); /* the folder */
    if (!t) fprintf(stderr, "  %s\n", tw_errmsg());
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ_STR(tw_tokenizer_pre_name(t), "smollm");
        EXPECT(t, "hello world", 0, ID_HELLO, ID_GWORLD);
        EXPECT(t, "12", 0, '1', '2'); /* digits one by one */
        EXPECT(t, "hello", TW_TOK_ADD_SPECIAL, ID_IMS, ID_HELLO, ID_EOT);
        EXPECT(t, "<a>x", 0, ID_UA, 'x');
        tw_tokenizer_free(t);
    }
    /* every allocation of loading it fails once in turn: an error or the same tokenizer */
    int quiet = 0;
    for (uint64_t n = 1; n < 400; n++) {
        tw_mem_fail_after(n);
        t = tw_tokenizer_load(tw_sb_str(&p));
        tw_mem_fail_after(0);
        if (!t) {
            quiet += *tw_errmsg() == 0;
            continue;
        }
        const int32_t want[] = {ID_IMS, ID_HELLO, ID_EOT, -1};
        quiet += !expect_ids(t, "hello", 5, TW_TOK_ADD_SPECIAL, want);
        tw_tokenizer_free(t);
    }
    CHECK_EQ_INT(quiet, 0);
    unlink(tw_sb_str(&p));
    /* an unsupported pre-tokenizer is named in the error */
    tw_sb j2;
    tw_sb_init(&j2);
    tw_sb_puts(&j2, "{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},"
                    "\"behavior\":\"Isolated\"},\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},"
                    "\"merges\":[]}}");
    CHECK(tw_file_write_atomic(tw_sb_str(&p), j2.buf, j2.len) == TW_OK);
    CHECK(tw_tokenizer_load(tw_sb_str(&p)) == NULL);
    CHECK_EQ_INT(tw_errcode(), TW_ERR_UNSUPPORTED);
    CHECK(strstr(tw_errmsg(), "\\w+") != NULL);
    unlink(tw_sb_str(&p));
    tw_sb_free(&j2);
    tw_sb_free(&p);
    tw_sb_free(&j);
}

/* Every allocation of loading, encoding and decoding fails once in turn: each run must end in
 * an error or a correct result, never a crash or a leak (the sanitizer build checks both). */
static void test_alloc_failures(void) {
    char *path = write_vocab_gguf("smollm", 1, 1);
    static const char text[] = "hello world <a> 1234 <|endoftext|> \xff aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    uint64_t before = tw_mem_get_stats().n_allocs;
    tw_tokenizer *t = tw_tokenizer_load(path);
    tw_tokens ref;
    tw_tokens_init(&ref);
    CHECK(t && tw_tokenizer_encode(t, text, sizeof text - 1, TW_TOK_PARSE_SPECIAL | TW_TOK_ADD_SPECIAL, &ref) == TW_OK);
    tw_sb sb;
    tw_sb_init(&sb);
    CHECK(t && tw_tokenizer_decode(t, ref.ids, ref.n, 0, &sb) == TW_OK);
    tw_sb_free(&sb);
    tw_tokenizer_free(t);
    uint64_t total = tw_mem_get_stats().n_allocs - before;
    CHECK(total > 10);
    int failed_runs = 0, ok_runs = 0;
    for (uint64_t n = 1; n <= total + 2; n++) {
        tw_mem_fail_after(n);
        t = tw_tokenizer_load(path);
        tw_tokens ids;
        tw_tokens_init(&ids);
        tw_sb_init(&sb);
        int ok = t && tw_tokenizer_encode(t, text, sizeof text - 1, TW_TOK_PARSE_SPECIAL | TW_TOK_ADD_SPECIAL, &ids) == TW_OK &&
                 tw_tokenizer_decode(t, ids.ids, ids.n, 0, &sb) == TW_OK;
        if (ok) {
            if (!(ids.n == ref.n && !memcmp(ids.ids, ref.ids, ids.n * sizeof *ids.ids))) {
                fprintf(stderr, "  allocation %llu failed quietly: other ids\n", (unsigned long long)n);
                test_failures++;
            }
            ok_runs++;
        } else {
            CHECK(*tw_errmsg() != 0);
            failed_runs++;
        }
        tw_mem_fail_after(0);
        tw_sb_free(&sb);
        tw_tokens_free(&ids);
        tw_tokenizer_free(t);
    }
    fprintf(stderr, "  %llu allocations; %d runs failed cleanly, %d succeeded\n", (unsigned long long)total,
            failed_runs, ok_runs);
    CHECK(failed_runs > 0);
    tw_tokens_free(&ref);
    unlink(path);
    tw_free(path);
}

static void test_map(void) {
    tok_map m;
    CHECK(tok_map_init(&m, 4) == TW_OK);
    static char keys[5000][8];
    for (int i = 0; i < 5000; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        CHECK(tok_map_put(&m, keys[i], (uint32_t)strlen(keys[i]), i) == TW_OK);
    }
    int ok = 1;
    for (int i = 0; i < 5000; i++) ok &= tok_map_get(&m, keys[i], (uint32_t)strlen(keys[i])) == i;
    CHECK(ok);
    CHECK_EQ_INT(tok_map_get(&m, "k5000", 5), -1);
    CHECK_EQ_INT(tok_map_get(&m, "", 0), -1);
    CHECK(tok_map_put(&m, keys[7], 2, 77) == TW_OK); /* replaces */
    CHECK_EQ_INT(tok_map_get(&m, "k7", 2), 77);
    CHECK_EQ_INT(m.n, 5000);
    tok_map_free(&m);
}

static void test_byte_alphabet(void) {
    int seen[0x200] = {0};
    for (int b = 0; b < 256; b++) {
        uint32_t cp = tok_byte_to_cp((uint8_t)b);
        CHECK(cp < 0x200);
        CHECK_EQ_INT(tok_cp_to_byte(cp), b);
        seen[cp]++;
    }
    for (int c = 0; c < 0x200; c++) CHECK(seen[c] <= 1);
    CHECK_EQ_INT(tok_byte_to_cp(' '), 0x120);  /* Ġ */
    CHECK_EQ_INT(tok_byte_to_cp('\n'), 0x10A); /* Ċ */
    CHECK_EQ_INT(tok_byte_to_cp('a'), 'a');
    CHECK_EQ_INT(tok_cp_to_byte(0x144), -1);
}

/* ---- pre-tokenizers against HF ----------------------------------------------------------- */

typedef struct {
    size_t lens[4096];
    size_t n;
} pieces;

static tw_status collect(void *ctx, const char *w, size_t n) {
    (void)w;
    pieces *p = ctx;
    if (p->n < 4096) p->lens[p->n] = n;
    p->n++;
    return TW_OK;
}

static void test_pretok_cases(void) {
    /* a few rules spelled out (the golden file covers the rest) */
    static const struct {
        const char *pre, *text;
        size_t lens[12];
    } cases[] = {
        {"gpt2", "Hello  world", {5, 1, 6}},
        {"gpt2", "a   \n", {1, 4}},
        {"gpt2", "it's 'S", {2, 2, 2, 1}},
        {"gpt2", " 123abc", {4, 3}},
        {"llama3", "it'S 12345", {2, 2, 1, 3, 2}},
        {"llama3", "x\n\n  y", {1, 2, 1, 2}},
        {"llama3", "\"Hi\"!", {3, 2}},
        {"qwen2", "12345", {1, 1, 1, 1, 1}},
        {"smollm", "a 12", {1, 1, 1, 1}},
        {"deepseek-llm", "ab  \ncd  ", {2, 2, 1, 2, 2}},
        {"falcon", "a...b 1234", {1, 3, 1, 1, 3, 1}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tok_pre pre;
        CHECK(tok_pre_from_name(cases[c].pre, &pre) == 0);
        tok_pretok p;
        tok_pretok_for(pre, &p);
        pieces got = {{0}, 0};
        CHECK(tok_pretokenize(&p, cases[c].text, strlen(cases[c].text), collect, &got) == TW_OK);
        size_t nw = 0;
        while (nw < 12 && cases[c].lens[nw]) nw++;
        int ok = got.n == nw;
        for (size_t i = 0; ok && i < nw; i++) ok = got.lens[i] == cases[c].lens[i];
        if (!ok) {
            fprintf(stderr, "  %s \"%s\": got", cases[c].pre, cases[c].text);
            for (size_t i = 0; i < got.n && i < 4096; i++) fprintf(stderr, " %zu", got.lens[i]);
            fputc('\n', stderr);
        }
        CHECK(ok);
    }
}

typedef struct {
    int checked, bad;
} golden_stats;

static void pretok_row(const tw_json *row, void *ctx) {
    golden_stats *gs = ctx;
    size_t tlen = 0;
    char *text = golden_text(row, &tlen);
    CHECK(text != NULL);
    if (!text) return;
    const tw_json *pcs = tw_json_get(row, "pieces");
    for (const tw_json *f = pcs ? tw_json_first(pcs) : NULL; f; f = tw_json_next(f)) {
        tok_pre pre;
        if (tok_pre_from_name(tw_json_key(f), &pre) != 0) {
            fprintf(stderr, "  unknown family %s\n", tw_json_key(f));
            gs->bad++;
            continue;
        }
        tok_pretok p;
        tok_pretok_for(pre, &p);
        pieces got = {{0}, 0};
        CHECK(tok_pretokenize(&p, text, tlen, collect, &got) == TW_OK);
        int ok = got.n == tw_json_size(f);
        size_t i = 0;
        for (const tw_json *x = tw_json_first(f); ok && x; x = tw_json_next(x), i++)
            ok = i < 4096 && got.lens[i] == (size_t)tw_json_num(x, -1);
        gs->checked++;
        if (!ok && ++gs->bad <= 10) {
            fprintf(stderr, "  %s on %s: want", tw_json_key(f), tw_json_get_str(row, "name", "?"));
            for (const tw_json *x = tw_json_first(f); x; x = tw_json_next(x))
                fprintf(stderr, " %d", (int)tw_json_num(x, -1));
            fprintf(stderr, "\n    got ");
            for (size_t k = 0; k < got.n && k < 4096; k++) fprintf(stderr, " %zu", got.lens[k]);
            fputc('\n', stderr);
        }
    }
    tw_free(text);
}

static void test_pretok_golden(void) {
    const char *data = test_env("TWIN_TEST_DATA");
    if (!data) {
        fprintf(stderr, "  TWIN_TEST_DATA is not set; pretok golden not run\n");
        test_failures++;
        return;
    }
    tw_sb path;
    tw_sb_init(&path);
    tw_sb_printf(&path, "%s/tokenizer/pretok.golden.jsonl", data);
    golden_stats gs = {0, 0};
    int rows = golden_each_row(tw_sb_str(&path), pretok_row, &gs);
    tw_sb_free(&path);
    fprintf(stderr, "  pretok golden: %d texts, %d splits, %d differ\n", rows, gs.checked, gs.bad);
    CHECK(rows > 0 && gs.checked > 0);
    CHECK_EQ_INT(gs.bad, 0);
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/twin-test-bpe-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    make_byte_texts();
    RUN(test_map);
    RUN(test_byte_alphabet);
    RUN(test_merges_by_rank);
    RUN(test_ignore_merges);
    RUN(test_long_words);
    RUN(test_special_tokens);
    RUN(test_round_trip);
    RUN(test_load_errors);
    RUN(test_tokenizer_json);
    RUN(test_alloc_failures);
    RUN(test_pretok_cases);
    RUN(test_pretok_golden);
    rmdir(tmpdir);
    TEST_DONE();
}
