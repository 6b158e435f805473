/* test_gguf_copy.c: the real SmolLM2-135M-Instruct Q4_1 GGUF read and written back through
 * gguf_writer (every metadata value copied with gguf_writer_set_value, every tensor added with
 * its mapped data) gives a byte-identical file; and the first row of every tensor dequantizes
 * to finite values. Skips (77) when the model has not been fetched. */
#include "gguf.h"
#include "test.h"

#include <unistd.h>

static char path[1024]; /* the model; set once in main */

static void test_copy_is_byte_identical(void) {
    gguf_file *f = gguf_open(path);
    CHECK(f != NULL);
    if (!f) {
        fprintf(stderr, "  %s\n", tw_errmsg());
        return;
    }
    CHECK_EQ_INT(gguf_n_tensors(f), 272);
    gguf_writer *w = gguf_writer_new(gguf_version(f), gguf_alignment(f));
    CHECK(w != NULL);
    if (!w) return;
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        char *key = tw_strndup(kv->key.ptr, (size_t)kv->key.len);
        CHECK_EQ_INT(gguf_writer_set_value(w, key, &kv->value), TW_OK);
        tw_free(key);
    }
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        char *name = tw_strndup(t->name.ptr, (size_t)t->name.len);
        CHECK_EQ_INT(gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, t->data), TW_OK);
        tw_free(name);
    }
    char out[512];
    const char *tmp = test_env("TMPDIR");
    snprintf(out, sizeof out, "%s/twin_gguf_copy_%ld.gguf", tmp ? tmp : "/tmp", (long)getpid());
    CHECK_EQ_INT(gguf_writer_write(w, out), TW_OK);
    gguf_writer_free(w);

    tw_mfile a, b;
    CHECK_EQ_INT(tw_mfile_open(&a, path), TW_OK);
    CHECK_EQ_INT(tw_mfile_open(&b, out), TW_OK);
    CHECK_EQ_INT(b.size, a.size);
    if (a.size == b.size && a.data && b.data) {
        size_t diff = a.size;
        for (size_t i = 0; i < a.size; i++)
            if (a.data[i] != b.data[i]) {
                diff = i;
                break;
            }
        if (diff != a.size) fprintf(stderr, "  first difference at byte %zu\n", diff);
        CHECK_EQ_INT(diff, a.size);
    }
    tw_mfile_close(&a);
    tw_mfile_close(&b);
    unlink(out);
    gguf_close(f);
}

static void test_first_rows_dequantize(void) {
    gguf_file *f = gguf_open(path);
    CHECK(f != NULL);
    if (!f) return;
    int types_seen[TW_DTYPE_COUNT] = {0};
    float *row = tw_malloc(8192 * sizeof(float));
    for (uint64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(tw_dtype_can_dequantize(t->type));
        CHECK(t->ne[0] <= 8192);
        if (t->ne[0] > 8192) continue;
        CHECK_EQ_INT(tw_dequantize_row(t->type, t->data, row, t->ne[0]), TW_OK);
        int finite = 1;
        double sumsq = 0;
        for (int64_t j = 0; j < t->ne[0]; j++) {
            if (!isfinite(row[j])) finite = 0;
            sumsq += (double)row[j] * row[j];
        }
        CHECK(finite);
        CHECK(sumsq > 0); /* trained weights: no row of all zeros */
        types_seen[t->type]++;
    }
    tw_free(row);
    /* the file holds q8_0 (embeddings), q4_1 (layers) and f32 (norms) */
    CHECK(types_seen[TW_DTYPE_Q8_0] > 0 && types_seen[TW_DTYPE_Q4_1] > 0 &&
          types_seen[TW_DTYPE_F32] > 0);
    gguf_close(f);
}

int main(void) {
    const char *models = test_env("TWIN_MODELS");
    if (models)
        snprintf(path, sizeof path, "%s/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf", models);
    if (!models || !tw_path_exists(path))
        TEST_SKIP("SmolLM2 GGUF not fetched (TWIN_MODELS/smollm2-135m)");
    RUN(test_copy_is_byte_identical);
    RUN(test_first_rows_dequantize);
    TEST_DONE();
}
