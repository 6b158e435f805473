/* tiny_llama.h: a tiny llama GGUF with seeded random F32 weights for the training tests
 * (test_train_dropout, test_train_full): 2 layers, n_embd 32, 4 query heads over 2 kv heads
 * of 8, n_ff 48, the tokenizer (288 tokens) of the tiny GPT-2 fixture under TWIN_TEST_DATA.
 * Norm weights are 1 + noise, matrices scaled so that activations stay O(1). tied = 1 leaves
 * out output.weight (the head is the token embedding). Returns 0, or 1 with a message.
 * Its two first steps (the fixture's tokenizer, the llama.* hyperparameters) are shared with
 * the tests that write tiny models of their own (test_train, test_train_gpt2, test_train_nf4). */

enum { TL_TIED = 1, TL_BIAS = 2 }; /* TL_BIAS: q, k, v and o biases (as qwen2 has q/k/v) */
#ifndef TWIN_TESTS_TINY_LLAMA_H
#define TWIN_TESTS_TINY_LLAMA_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "kernel_inputs.h"

enum { TL_D = 32, TL_L = 2, TL_NH = 4, TL_NKV = 2, TL_HD = 8, TL_FF = 48 };

/* The tiny GPT-2 fixture (TWIN_TEST_DATA/gpt2/tiny-gpt2-f32.gguf, 288 tokens) opened and its
 * tokenizer.* metadata set on w (every tiny training model borrows it). Returns the fixture,
 * to gguf_close once w is written (w references its values), or NULL with a message on
 * stderr. */
static inline gguf_file *tiny_tokenizer_copy(gguf_writer *w) {
    const char *data = getenv("TWIN_TEST_DATA");
    if (!data) data = "tests/data";
    char tp[1024];
    snprintf(tp, sizeof tp, "%.900s/gpt2/tiny-gpt2-f32.gguf", data);
    gguf_file *tf = gguf_open(tp);
    if (!tf) return fprintf(stderr, "%s\n", tw_errmsg()), NULL;
    for (uint64_t i = 0; i < gguf_n_kv(tf); i++) {
        const gguf_kv *kv = gguf_kv_at(tf, i);
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)kv->key.len, kv->key.ptr);
        if (strncmp(key, "tokenizer.", 10) == 0) gguf_writer_set_value(w, key, &kv->value);
    }
    return tf;
}

/* The llama.* hyperparameters of a tiny llama on w: context ctx, n_embd d, n_layer l, n_ff ff,
 * nh query heads over nkv kv heads of hd, RoPE base rope_base, RMS norm epsilon eps. */
static inline void tiny_llama_hparams_set(gguf_writer *w, int ctx, int d, int l, int ff, int nh,
                                          int nkv, int hd, float rope_base, float eps) {
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_u32(w, "llama.context_length", (uint32_t)ctx);
    gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)d);
    gguf_writer_set_u32(w, "llama.block_count", (uint32_t)l);
    gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)ff);
    gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)nh);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)nkv);
    gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)hd);
    gguf_writer_set_f32(w, "llama.rope.freq_base", rope_base);
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", eps);
}

/* The same with flags (TL_*) and other dimensions (n_embd d, n_layer l, heads nh over nkv of
 * hd, n_ff ff). */
static inline int tiny_llama_write_dims(const char *path, unsigned flags, kin_rng *rng, int d,
                                        int l, int nh, int nkv, int hd, int ff) {
    const int tied = (flags & TL_TIED) != 0, bias = (flags & TL_BIAS) != 0;
    gguf_writer *w = gguf_writer_new(3, 0);
    gguf_file *tf = tiny_tokenizer_copy(w);
    if (!tf) return gguf_writer_free(w), 1;
    const gguf_value *toks = gguf_find(tf, "tokenizer.ggml.tokens");
    int64_t vocab = toks ? (int64_t)toks->v.arr.count : 0;
    if (vocab < 64)
        return fprintf(stderr, "tiny GPT-2 fixture: no vocabulary\n"), gguf_writer_free(w),
               gguf_close(tf), 1;
    gguf_writer_set_str(w, "general.name", "twin tiny llama (random weights)");
    gguf_writer_set_u32(w, "general.file_type", 0);
    tiny_llama_hparams_set(w, 64, d, l, ff, nh, nkv, hd, 10000.0f, 1e-5f);
    struct {
        const char *name;
        int64_t ne0, ne1;
        float scale;
        int norm;
    } ts[] = {{"token_embd.weight", d, vocab, 1.0f, 0},
              {"output_norm.weight", d, 1, 0.2f, 1},
              {"output.weight", d, vocab, 0.3f, 0},
              {"blk.%d.attn_norm.weight", d, 1, 0.2f, 1},
              {"blk.%d.attn_q.weight", d, nh * hd, 0.3f, 0},
              {"blk.%d.attn_k.weight", d, nkv * hd, 0.3f, 0},
              {"blk.%d.attn_v.weight", d, nkv * hd, 0.3f, 0},
              {"blk.%d.attn_output.weight", nh * hd, d, 0.3f, 0},
              {"blk.%d.ffn_norm.weight", d, 1, 0.2f, 1},
              {"blk.%d.ffn_gate.weight", d, ff, 0.3f, 0},
              {"blk.%d.ffn_up.weight", d, ff, 0.3f, 0},
              {"blk.%d.ffn_down.weight", ff, d, 0.3f, 0},
              {"blk.%d.attn_q.bias", nh * hd, 1, 0.3f, 0},
              {"blk.%d.attn_k.bias", nkv * hd, 1, 0.3f, 0},
              {"blk.%d.attn_v.bias", nkv * hd, 1, 0.3f, 0},
              {"blk.%d.attn_output.bias", d, 1, 0.3f, 0}};
    tw_status st = TW_OK;
    float *keep[1024];
    int nk = 0;
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        if (tied && !strcmp(ts[k].name, "output.weight")) continue;
        if (!bias && strstr(ts[k].name, ".bias")) continue;
        for (int li = 0; li < (strstr(ts[k].name, "%d") ? l : 1); li++) {
            char name[64];
            snprintf(name, sizeof name, ts[k].name, li);
            int64_t ne[2] = {ts[k].ne0, ts[k].ne1}, cnt = ne[0] * ne[1];
            float *p = malloc((size_t)cnt * 4); /* the writer reads it at write time */
            kin_fill(rng, p, cnt, ts[k].scale);
            if (ts[k].norm)
                for (int64_t i = 0; i < cnt; i++) p[i] += 1.0f;
            if (nk < 1024) keep[nk++] = p;
            if (st == TW_OK)
                st = gguf_writer_add_tensor(w, name, TW_DTYPE_F32, ne[1] == 1 ? 1 : 2, ne, p);
        }
    }
    if (st == TW_OK) st = gguf_writer_write(w, path);
    for (int i = 0; i < nk; i++) free(keep[i]);
    gguf_writer_free(w);
    gguf_close(tf);
    if (st != TW_OK) return fprintf(stderr, "%s\n", tw_errmsg()), 1;
    return 0;
}

static inline int tiny_llama_write(const char *path, unsigned flags, kin_rng *rng) {
    return tiny_llama_write_dims(path, flags, rng, TL_D, TL_L, TL_NH, TL_NKV, TL_HD, TL_FF);
}

#endif
