/* fuzz_model_load: tw_model_load on arbitrary GGUF bytes, then a short forward when it loads.
 * The loader turns metadata into sizes (layers, widths, heads, vocabulary, rope dimensions) and
 * checks every tensor's shape and type against them: a hostile file must give a one-line error
 * or a model whose forward runs within its buffers (ASan/UBSan watch), never a crash or an
 * allocation the file's size does not justify.
 *
 * Each input is written to a temporary file (tw_model_load takes a path, as the CLI does).
 * Seeds (corpus/fuzz_model_load/): the tiny GPT-2 of tests/data/gpt2 in q8_0 (fused q/k/v,
 * learned positions, LayerNorm) and a micro llama (GQA, SwiGLU, rope, q/k/v biases read as
 * qwen2) written by our GGUF writer, n_embd 32 and a 288-token vocabulary. */
#include "kv_cache.h"
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void fuzz_require(int cond) {
    if (!cond) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(path, sizeof path, "%.200s/fuzz-model-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) return 0;
    size_t off = 0;
    while (off < size) {
        ssize_t w = write(fd, data + off, size - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    tw_log_set_level(TW_LOG_OFF);
    tw_backend *be = NULL;
    fuzz_require(tw_backend_open("cpu", &be) == TW_OK);
    tw_model *m = NULL;
    tw_model_params p;
    tw_model_params_default(&p);
    p.max_batch_tokens = 8; /* small activations: the fuzzer's memory goes to the file */
    tw_status st = tw_model_load(path, be, &p, &m);
    if (st != TW_OK) {
        const char *msg = tw_errmsg();
        fuzz_require(m == NULL && msg[0] != 0 && strchr(msg, '\n') == NULL);
    } else {
        const tw_model_hparams *hp = tw_model_get_hparams(m);
        fuzz_require(hp->n_vocab > 0 && hp->n_layer > 0 && hp->n_embd > 0);
        tw_kv_cache *kv = NULL;
        if (tw_kv_cache_new(m, 4, 4, &kv) == TW_OK) {
            int32_t seq, toks[5], seqs[5];
            fuzz_require(tw_kv_seq_new(kv, &seq) == TW_OK);
            for (int i = 0; i < 5; i++) toks[i] = i % hp->n_vocab, seqs[i] = seq;
            float *lg = malloc((size_t)hp->n_vocab * sizeof *lg);
            tw_batch b = {5, toks, NULL, seqs, NULL};
            /* errors are fine (e.g. a type an op refuses); what ran must stay in bounds */
            if (lg && tw_model_forward(m, kv, &b, lg) == TW_OK) fuzz_require(tw_kv_seq_len(kv, seq) == 5);
            free(lg);
            tw_kv_cache_free(kv);
        }
        tw_model_free(m);
    }
    tw_backend_free(be);
    unlink(path);
    return 0;
}
