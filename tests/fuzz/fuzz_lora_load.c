/* fuzz_lora_load.c: lora_load on arbitrary adapter files, for a GPT-2 base (2 layers, n_embd
 * 32, 2 heads, n_ff 128: the shape of tests/data/gpt2/tiny-gpt2-f32.gguf) and a llama base of
 * the same size; the GPT-2 paths read fused c_attn / attn_qkv adapters and split them.
 * Input: byte 0 picks the file kind (bit 0: 0 a GGUF LoRA, 1 a PEFT folder) and the base (bit
 * 1: 0 gpt2, 1 llama); a GGUF is the rest of the input; a PEFT folder is a 2-byte little-endian
 * length, that many bytes of adapter_config.json, then adapter_model.safetensors. The files go
 * to a scratch folder (lora_load reads paths). A set that loads must have adapters and finite
 * parameters; a refusal leaves one line naming the file. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lora.h"

static char dir[64];
static tw_backend *be;

static void put(const char *path, const uint8_t *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n && fwrite(p, 1, n, f) != n) abort();
    fclose(f);
}

/* The scratch folder goes at exit. */
static void cleanup(void) {
    static const char *const files[] = {"adapter.gguf", "peft/adapter_config.json",
                                        "peft/adapter_model.safetensors", "peft", ""};
    char p[128];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        if (unlink(p) != 0) rmdir(p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        /* memory-backed when there is /dev/shm: thousands of small files per run */
        snprintf(dir, sizeof dir, "%s/fuzz_lora_load.XXXXXX",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(dir) || tw_backend_open("cpu", &be)) abort();
        atexit(cleanup);
    }
    if (size < 1) return 0;
    const int peft = data[0] & 1, llama = (data[0] >> 1) & 1;
    lora_base base;
    memset(&base, 0, sizeof base);
    snprintf(base.arch, sizeof base.arch, "%s", llama ? "llama" : "gpt2");
    base.n_layer = 2, base.n_embd = 32, base.n_head = 2, base.n_kv_head = 2, base.head_dim = 16;
    base.n_ff = 128, base.qk_permuted = llama;
    char path[128], sub[160];
    if (peft) {
        if (size < 3) return 0;
        size_t jn = (size_t)data[1] | (size_t)data[2] << 8;
        if (jn > size - 3) jn = size - 3;
        snprintf(path, sizeof path, "%s/peft", dir);
        if (tw_mkdir_p(path)) abort();
        snprintf(sub, sizeof sub, "%s/adapter_config.json", path);
        put(sub, data + 3, jn);
        snprintf(sub, sizeof sub, "%s/adapter_model.safetensors", path);
        put(sub, data + 3 + jn, size - 3 - jn);
    } else {
        snprintf(path, sizeof path, "%s/adapter.gguf", dir);
        put(path, data + 1, size - 1);
    }
    lora_set *s = NULL;
    if (lora_load(be, path, &base, &s) == TW_OK) {
        TW_ASSERT(s != NULL && lora_set_n_adapters(s) > 0);
        size_t n = lora_set_n_floats(s);
        float *p = malloc((n ? n : 1) * sizeof(float));
        if (!p || lora_set_download(s, LORA_PARAM, p)) abort();
        for (size_t i = 0; i < n; i++) TW_ASSERT(isfinite(p[i]));
        free(p);
        lora_set_free(s);
    } else {
        TW_ASSERT(s == NULL);
        TW_ASSERT(strchr(tw_errmsg(), '\n') == NULL);
    }
    return 0;
}
