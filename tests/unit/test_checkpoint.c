/* test_checkpoint: checkpoint files (engine/checkpoint.h).
 *   - write then open: step, data position, RNG state, config text, base hash, blobs (bytes,
 *     64-byte aligned offsets, an empty blob) come back; the header JSON is readable;
 *   - damage is refused with a message naming the file: every truncation length, a flipped
 *     byte anywhere (header, payload, checksum), a wrong magic, a newer version, trailing bytes;
 *   - bad arguments: duplicate blob names, a config that is not a JSON object;
 *   - LoRA: save (params + AdamW moments), restore on a CPU backend into an identical set;
 *     a base of other dimensions or another hash is refused naming the difference;
 *   - a run folder: ckpt_save_lora keeps the newest K, ckpt_latest finds the highest step.
 *   test_checkpoint --write-seeds DIR writes the fuzz seed corpus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "test.h"

static char tmpdir[256];
static tw_backend *be;

static lora_base tiny_base(void) {
    lora_base b;
    memset(&b, 0, sizeof b);
    snprintf(b.arch, sizeof b.arch, "llama");
    b.n_layer = 2, b.n_embd = 32, b.n_head = 2, b.n_kv_head = 1, b.head_dim = 16, b.n_ff = 48;
    b.qk_permuted = 1;
    snprintf(b.sha256, sizeof b.sha256, "%064d", 3);
    return b;
}

static ckpt_meta demo_meta(void) {
    ckpt_meta m;
    memset(&m, 0, sizeof m);
    m.step = 120;
    m.data_pos = 4096;
    m.rng[0] = 0x0123456789abcdefull, m.rng[1] = 0xfedcba9876543210ull, m.rng[2] = 1,
    m.rng[3] = UINT64_MAX;
    snprintf(m.base_sha256, sizeof m.base_sha256, "%064d", 3);
    m.config_json = "{\"lr\": 0.0002, \"batch\": 8, \"note\": \"caf\xc3\xa9 \\\"quoted\\\"\"}";
    return m;
}

static char *write_demo(const char *name, size_t *size) {
    static char path[400];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    static uint8_t a[1000], c[3];
    for (int i = 0; i < 1000; i++) a[i] = (uint8_t)(i * 7 + 1);
    c[0] = 9, c[1] = 8, c[2] = 7;
    ckpt_blob blobs[3] = {{"alpha", a, sizeof a}, {"empty", NULL, 0}, {"gamma", c, 3}};
    ckpt_meta m = demo_meta();
    CHECK(ckpt_write(path, &m, "{\"extra\": {\"k\": 1}}", blobs, 3) == TW_OK);
    if (size) {
        FILE *f = fopen(path, "rb");
        fseek(f, 0, SEEK_END);
        *size = (size_t)ftell(f);
        fclose(f);
    }
    return path;
}

static uint8_t *slurp(const char *path, size_t *n) {
    char *buf;
    if (tw_file_read(path, &buf, n)) return NULL;
    return (uint8_t *)buf;
}

static void test_round_trip(void) {
    size_t size;
    const char *path = write_demo("demo.twck", &size);
    ckpt *c = NULL;
    CHECK(ckpt_open(path, &c) == TW_OK);
    if (!c) return;
    const ckpt_meta *m = ckpt_get_meta(c);
    CHECK_EQ_INT(m->step, 120);
    CHECK_EQ_INT(m->data_pos, 4096);
    CHECK(m->rng[0] == 0x0123456789abcdefull && m->rng[1] == 0xfedcba9876543210ull &&
          m->rng[2] == 1 && m->rng[3] == UINT64_MAX);
    CHECK_EQ_STR(m->base_sha256, demo_meta().base_sha256);
    CHECK_EQ_STR(m->config_json, demo_meta().config_json);
    CHECK_EQ_INT(ckpt_n_blobs(c), 3);
    const ckpt_blob *a = ckpt_find_blob(c, "alpha"), *e = ckpt_find_blob(c, "empty"),
                    *g = ckpt_find_blob(c, "gamma");
    CHECK(a && a->nbytes == 1000 && ((const uint8_t *)a->data)[999] == (uint8_t)(999 * 7 + 1));
    CHECK(e && e->nbytes == 0);
    CHECK(g && g->nbytes == 3 && memcmp(g->data, "\x09\x08\x07", 3) == 0);
    CHECK(ckpt_find_blob(c, "beta") == NULL);
    const uint8_t *payload = a->data;
    CHECK(((const uint8_t *)g->data - payload) % 64 == 0);
    CHECK_NEAR(tw_json_get_num(tw_json_get(ckpt_header(c), "extra"), "k", 0), 1, 0);
    /* size: 32 + header padded to 64, payload 1024 + 0 + 64 (each blob padded), checksum 32 */
    CHECK_EQ_INT((size - 32 - 1088) % 64, 0);
    CHECK_EQ_INT((const uint8_t *)g->data - payload, 1024);
    ckpt_close(c);
}

static void test_damage(void) {
    size_t size;
    const char *path = write_demo("damage.twck", &size);
    size_t n;
    uint8_t *orig = slurp(path, &n);
    CHECK(orig && n == size);
    if (!orig) return;
    uint8_t *buf = malloc(size + 8);
    int accepted = 0, unnamed = 0;
    for (size_t len = 0; len < size; len++) { /* every truncation */
        ckpt *c = NULL;
        memcpy(buf, orig, len);
        if (ckpt_open_memory(buf, len, "cut.twck", &c) == TW_OK) accepted++;
        else if (!strstr(tw_errmsg(), "cut.twck")) unnamed++;
        ckpt_close(c);
    }
    CHECK_EQ_INT(accepted, 0);
    CHECK_EQ_INT(unnamed, 0);
    int flips_accepted = 0;
    for (size_t i = 0; i < size; i += (i < 200 ? 1 : 13)) { /* a flipped bit anywhere */
        ckpt *c = NULL;
        memcpy(buf, orig, size);
        buf[i] ^= 0x10;
        if (ckpt_open_memory(buf, size, "flip.twck", &c) == TW_OK) flips_accepted++;
        ckpt_close(c);
    }
    CHECK_EQ_INT(flips_accepted, 0);
    ckpt *c = NULL;
    memcpy(buf, orig, size);
    buf[size - 40] ^= 1; /* in the payload */
    CHECK(ckpt_open_memory(buf, size, "x.twck", &c) == TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "checksum") != NULL);
    memcpy(buf, orig, size);
    buf[8] = 2; /* version 2: a newer format */
    CHECK(ckpt_open_memory(buf, size, "x.twck", &c) == TW_ERR_UNSUPPORTED);
    CHECK(strstr(tw_errmsg(), "version 2") != NULL);
    memcpy(buf, orig, size);
    buf[0] = 'X';
    CHECK(ckpt_open_memory(buf, size, "x.twck", &c) == TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "magic") != NULL);
    memcpy(buf, orig, size);
    memset(buf + size, 0, 8);
    CHECK(ckpt_open_memory(buf, size + 8, "x.twck", &c) == TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), "truncated or extended") != NULL);
    /* the truncated file on disk */
    FILE *f = fopen(path, "wb");
    fwrite(orig, 1, size / 2, f);
    fclose(f);
    CHECK(ckpt_open(path, &c) == TW_ERR_FORMAT);
    CHECK(strstr(tw_errmsg(), path) != NULL);
    CHECK(ckpt_open("/nonexistent/ckpt.twck", &c) == TW_ERR_IO || tw_errcode() == TW_ERR_NOT_FOUND);
    free(buf);
    tw_free(orig);
}

static void test_bad_args(void) {
    char path[400];
    snprintf(path, sizeof path, "%s/bad.twck", tmpdir);
    uint8_t x[4] = {1, 2, 3, 4};
    ckpt_blob dup[2] = {{"a", x, 4}, {"a", x, 4}};
    ckpt_meta m = demo_meta();
    CHECK(ckpt_write(path, &m, NULL, dup, 2) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "'a' twice") != NULL);
    m.config_json = "[1, 2]";
    CHECK(ckpt_write(path, &m, NULL, dup, 1) == TW_ERR_ARG);
    m.config_json = "{\"unterminated\": ";
    CHECK(ckpt_write(path, &m, NULL, dup, 1) == TW_ERR_ARG);
    CHECK(!tw_path_exists(path)); /* nothing written */
    m.config_json = NULL;         /* {} */
    CHECK(ckpt_write(path, &m, NULL, dup, 1) == TW_OK);
}

static void test_lora(void) {
    lora_base b = tiny_base();
    lora_config cfg;
    lora_config_default(&cfg);
    cfg.rank = 4;
    cfg.targets = LORA_ALL_MODULES;
    lora_set *s = NULL, *r = NULL;
    CHECK(lora_set_new(be, &b, &cfg, &s) == TW_OK);
    if (!s) return;
    size_t nf = lora_set_n_floats(s);
    float *h = malloc(nf * sizeof(float)), *h2 = malloc(nf * sizeof(float));
    for (int reg = 0; reg < LORA_N_REGIONS; reg++) {
        for (size_t i = 0; i < nf; i++) h[i] = (float)(reg + 1) * 0.001f * (float)(i % 977);
        CHECK(lora_set_upload(s, (lora_region)reg, h) == TW_OK);
    }
    char dir[400];
    snprintf(dir, sizeof dir, "%s/run", tmpdir);
    ckpt_meta m = demo_meta();
    char *path = NULL;
    CHECK(ckpt_save_lora(dir, &m, s, 2, &path) == TW_OK);
    ckpt *c = NULL;
    CHECK(path && ckpt_open(path, &c) == TW_OK);
    if (c) {
        CHECK(ckpt_restore_lora(c, be, &b, &r) == TW_OK);
        if (r) {
            CHECK_EQ_INT(lora_set_n_floats(r), nf);
            CHECK_EQ_INT(lora_set_config(r)->rank, 4);
            static const lora_region regs[3] = {LORA_PARAM, LORA_ADAM_M, LORA_ADAM_V};
            for (int i = 0; i < 3; i++) {
                lora_set_download(s, regs[i], h);
                lora_set_download(r, regs[i], h2);
                CHECK(memcmp(h, h2, nf * sizeof(float)) == 0);
            }
            lora_set_download(r, LORA_GRAD, h2);
            size_t nz = 0;
            for (size_t i = 0; i < nf; i++) nz += h2[i] != 0;
            CHECK_EQ_INT(nz, 0);
        }
        lora_set_free(r);
        r = NULL;
        lora_base other = b;
        other.n_ff = 64;
        CHECK(ckpt_restore_lora(c, be, &other, &r) == TW_ERR_RUNTIME);
        CHECK(strstr(tw_errmsg(), "n_ff 48") && strstr(tw_errmsg(), "64"));
        other = b;
        snprintf(other.sha256, sizeof other.sha256, "%064d", 4);
        CHECK(ckpt_restore_lora(c, be, &other, &r) == TW_ERR_RUNTIME);
        CHECK(strstr(tw_errmsg(), "sha256") != NULL);
        ckpt_close(c);
    }
    tw_free(path);
    /* keep the newest 2 of steps 120, 130, 140, 150 */
    for (int64_t step = 130; step <= 150; step += 10) {
        m.step = step;
        CHECK(ckpt_save_lora(dir, &m, s, 2, NULL) == TW_OK);
    }
    char p[500];
    for (int64_t step = 120; step <= 150; step += 10) {
        snprintf(p, sizeof p, "%s/ckpt-%010lld.twck", dir, (long long)step);
        CHECK_EQ_INT(tw_path_exists(p), step >= 140);
    }
    char *latest = NULL;
    CHECK(ckpt_latest(dir, &latest) == TW_OK);
    CHECK(latest && strstr(latest, "ckpt-0000000150.twck"));
    tw_free(latest);
    char empty[400];
    snprintf(empty, sizeof empty, "%s/none", tmpdir);
    tw_mkdir_p(empty);
    CHECK(ckpt_latest(empty, &latest) == TW_ERR_NOT_FOUND);
    free(h), free(h2);
    lora_set_free(s);
}

static int write_seeds(const char *dir) {
    snprintf(tmpdir, sizeof tmpdir, "%s", dir);
    write_demo("demo.twck", NULL);
    lora_base b = tiny_base();
    b.n_layer = 1;
    lora_config cfg;
    lora_config_default(&cfg);
    cfg.rank = 2;
    cfg.targets = 1u << LORA_V;
    lora_set *s = NULL;
    if (tw_backend_open("cpu", &be) || lora_set_new(be, &b, &cfg, &s)) return 1;
    ckpt_meta m = demo_meta();
    m.step = 7;
    char *path = NULL;
    if (ckpt_save_lora(dir, &m, s, 0, &path)) return 1;
    char to[600];
    snprintf(to, sizeof to, "%s/lora.twck", dir);
    rename(path, to);
    tw_free(path);
    lora_set_free(s);
    tw_backend_free(be);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write-seeds")) return write_seeds(argv[2]);
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_ckpt.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) return 1;
    if (tw_backend_open("cpu", &be)) return 1;
    RUN(test_round_trip);
    RUN(test_damage);
    RUN(test_bad_args);
    RUN(test_lora);
    tw_backend_free(be);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    TEST_DONE();
}
