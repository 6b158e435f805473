/* fuzz_dataset.c: the JSONL dataset reader (dataset.h) on arbitrary files, with the tiny GPT-2
 * tokenizer of $TWIN_TEST_DATA/gpt2 (loaded once per process).
 *
 * The first input byte picks the options: template (bits 0-2: chatml, llama3, llama2,
 * mistral, alpaca), packing (bit 3), strict (bit 4), drop instead of truncate (bit 5), a
 * small max_len (bit 6), preference forced (bit 7); the rest is the file. Promises checked (a
 * broken one aborts): ds_open_mem fails with a message and no dataset, or it gives a dataset
 * whose counts add up (lines = examples + bad + dropped), whose every example is at most
 * max_len ids, all in the vocabulary, with a loss token after its first; and one epoch of
 * batches hands out every training example exactly once with the batch invariants (rows within
 * max_len, positions restarting per example, labels never crossing examples). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset.h"

static tw_tokenizer *tok;
static tw_chat_template *tpls[5];

static void require(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_dataset: broken promise: %s (%s)\n", what, tw_errmsg());
        abort();
    }
}

static void init(void) {
    if (tok) return;
    const char *data = getenv("TWIN_TEST_DATA");
    char path[4096];
    snprintf(path, sizeof path, "%.4000s/gpt2/tiny-gpt2-f32.gguf", data ? data : "tests/data");
    tok = tw_tokenizer_load(path);
    require(tok != NULL, "the tiny GPT-2 tokenizer loads (set TWIN_TEST_DATA)");
    const char *names[5] = {"chatml", "llama3", "llama2", "mistral", "alpaca"};
    for (int i = 0; i < 5; i++) require(tw_chat_template_from_name(names[i], &tpls[i]) == TW_OK, "template");
}

static void check_seq(ds_seq s, size_t max_len, int32_t n_vocab) {
    require(s.n >= 1 && s.n <= max_len, "sequence length within max_len");
    for (size_t i = 0; i < s.n; i++) require(s.ids[i] >= 0 && s.ids[i] < n_vocab, "id in vocabulary");
}

static int has_loss(ds_seq s) {
    for (size_t i = 1; i < s.n; i++)
        if (s.mask[i]) return 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    if (size < 1) return 0;
    uint8_t f = data[0];
    ds_opts o;
    ds_opts_default(&o);
    o.pack = (f >> 3) & 1;
    o.strict = (f >> 4) & 1;
    o.long_policy = (f >> 5) & 1 ? DS_LONG_DROP : DS_LONG_TRUNCATE;
    o.max_len = (f >> 6) & 1 ? 24 : 4096;
    o.format = (f >> 7) & 1 ? DS_FORMAT_PREFERENCE : DS_FORMAT_AUTO;
    o.eval_fraction = 0.25;
    ds_dataset *ds = NULL;
    tw_status st = ds_open_mem("fuzz.jsonl", (const char *)data + 1, size - 1, tok, tpls[(f & 7) % 5], &o, &ds);
    if (st != TW_OK) {
        require(ds == NULL && tw_errmsg()[0] != 0, "a failure leaves a message and no dataset");
        return 0;
    }
    const ds_stats *s = ds_get_stats(ds);
    require(s->n_examples + s->n_bad + s->n_dropped_long == s->n_lines, "lines add up");
    require(s->n_train + s->n_eval == s->n_examples && s->n_train > 0, "splits add up");
    require(strlen(ds_content_hash(ds)) == 64, "content hash");
    int pref = ds_get_kind(ds) == DS_KIND_PREFERENCE;
    int32_t nv = tw_tokenizer_n_vocab(tok);
    for (int sp = 0; sp < 2; sp++)
        for (size_t i = 0; i < ds_count(ds, (ds_split)sp); i++) {
            ds_example ex;
            require(ds_example_get(ds, (ds_split)sp, i, &ex) == TW_OK, "example");
            if (pref) {
                check_seq(ex.chosen, o.max_len, nv);
                check_seq(ex.rejected, o.max_len, nv);
                require(has_loss(ex.chosen) && has_loss(ex.rejected), "loss tokens");
            } else {
                check_seq(ex.seq, o.max_len, nv);
                require(has_loss(ex.seq), "loss tokens");
            }
        }
    size_t n = ds_count(ds, DS_SPLIT_TRAIN), seen = 0;
    ds_batch b;
    ds_batch_init(&b);
    for (size_t guard = 0; guard <= n; guard++) {
        require(ds_next_batch(ds, DS_SPLIT_TRAIN, 3 * o.max_len, 4, &b) == TW_OK, "batch");
        require(b.n_examples >= 1 && b.row_start[b.n_rows] == b.n_tokens &&
                b.ex_start[b.n_examples] == b.n_tokens, "batch offsets");
        for (size_t r = 0; r < b.n_rows; r++)
            require(b.row_start[r + 1] - b.row_start[r] <= o.max_len, "row within max_len");
        for (size_t e = 0; e < b.n_examples; e++) {
            size_t a = b.ex_start[e], z = b.ex_start[e + 1];
            for (size_t t = a; t < z; t++)
                require(b.pos[t] == (int32_t)(t - a) && b.seg[t] == (int32_t)e, "positions and segments");
            require(b.targets[z - 1] == -1, "no label across examples");
        }
        seen += pref ? b.n_examples / 2 : b.n_examples;
        if (b.epoch_end) break;
    }
    require(seen == n, "an epoch hands out every example once");
    ds_batch_free(&b);
    ds_free(ds);
    return 0;
}
