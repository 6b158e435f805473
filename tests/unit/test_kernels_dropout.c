/* test_kernels_dropout.c: TW_OP_DROPOUT (kernels.h): the counter-based inverted-dropout mask.
 *
 *   - the optimized kernel against the reference (an independent writing of the hash), bit for
 *     bit, on odd shapes and several p, and through the backend handle;
 *   - the mask is a function of (key, token counter, column) only: a block of rows computed on
 *     its own with row0 = its offset gives the bits of the same rows inside a larger call;
 *     1, 2 and 3 threads give the same bits; aliasing y = x gives the same bits;
 *   - p = 0 copies x exactly; kept elements are x * fp32(1/(1-p)), dropped ones 0; the drop
 *     fraction over 2^20 elements is p within 5 standard deviations; different keys and
 *     neighbouring counters give different masks (no row or column pattern);
 *   - tw_dropout_key depends on every counter and on their order;
 *   - argument errors (TW_ERR_ARG naming the argument). */
#include "cpu/dropout.h"
#include "kernel_inputs.h"
#include "kernels.h"
#include "test.h"

#include <math.h>
#include <string.h>

static kin_rng rng = {0x64726f70};

static void test_vs_ref(void) {
    static const int64_t shapes[][2] = {{1, 1}, {3, 7}, {17, 33}, {5, 576}, {301, 129}};
    static const float ps[] = {0.0f, 0.05f, 0.1f, 0.5f, 0.9f};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t pi = 0; pi < sizeof ps / sizeof ps[0]; pi++) {
            int64_t rows = shapes[si][0], n = shapes[si][1], nx = rows * n;
            float *x = tw_malloc((size_t)nx * 4), *y = tw_malloc((size_t)nx * 4),
                  *r = tw_malloc((size_t)nx * 4);
            TW_ASSERT(x && y && r);
            kin_fill(&rng, x, nx, 2.0f);
            uint64_t key = kin_next(&rng);
            int64_t row0 = (int64_t)(kin_next(&rng) >> 40);
            tw_ref_dropout_f32(r, x, rows, n, ps[pi], key, row0);
            tw_cpu_dropout_f32(y, x, rows, n, ps[pi], key, row0);
            CHECK(memcmp(y, r, (size_t)nx * 4) == 0);
            const float s = (float)(1.0 / (1.0 - (double)ps[pi]));
            int64_t bad = 0;
            for (int64_t i = 0; i < nx; i++) bad += !(y[i] == 0.0f || y[i] == x[i] * s);
            CHECK_EQ_INT(bad, 0);
            if (ps[pi] == 0.0f) CHECK(memcmp(y, x, (size_t)nx * 4) == 0);
            memcpy(y, x, (size_t)nx * 4); /* in place */
            tw_cpu_dropout_f32(y, y, rows, n, ps[pi], key, row0);
            CHECK(memcmp(y, r, (size_t)nx * 4) == 0);
            tw_free(x), tw_free(y), tw_free(r);
        }
}

/* Rows [a, b) of a call with row0 = R get the bits of a call over just those rows with row0 =
 * R + a: what makes the mask independent of micro-batch and rank splits. */
static void test_counter_independence(void) {
    int64_t rows = 97, n = 45, nx = rows * n, row0 = 1000;
    float *x = tw_malloc((size_t)nx * 4), *y = tw_malloc((size_t)nx * 4), *z = tw_malloc((size_t)nx * 4);
    TW_ASSERT(x && y && z);
    kin_fill(&rng, x, nx, 1.0f);
    tw_cpu_dropout_f32(y, x, rows, n, 0.3f, 12345, row0);
    static const int64_t cuts[] = {0, 1, 13, 50, 96, 97};
    for (int c = 0; c + 1 < 6; c++) {
        int64_t a = cuts[c], b = cuts[c + 1];
        tw_cpu_dropout_f32(z + a * n, x + a * n, b - a, n, 0.3f, 12345, row0 + a);
    }
    CHECK(memcmp(y, z, (size_t)nx * 4) == 0);
    int save = tw_threads_get();
    for (int th = 1; th <= 3; th++) {
        tw_threads_set(th);
        tw_cpu_dropout_f32(z, x, rows, n, 0.3f, 12345, row0);
        CHECK(memcmp(y, z, (size_t)nx * 4) == 0);
    }
    tw_threads_set(save);
    /* another key, or the rows shifted by one counter, give another mask */
    tw_cpu_dropout_f32(z, x, rows, n, 0.3f, 12346, row0);
    CHECK(memcmp(y, z, (size_t)nx * 4) != 0);
    tw_cpu_dropout_f32(z, x, rows, n, 0.3f, 12345, row0 + 1);
    CHECK(memcmp(y, z, (size_t)nx * 4) != 0);
    tw_free(x), tw_free(y), tw_free(z);
}

static void test_statistics(void) {
    const int64_t rows = 1024, n = 1024, nx = rows * n;
    float *x = tw_malloc((size_t)nx * 4), *y = tw_malloc((size_t)nx * 4);
    TW_ASSERT(x && y);
    for (int64_t i = 0; i < nx; i++) x[i] = 1.0f;
    static const float ps[] = {0.05f, 0.1f, 0.5f, 0.75f};
    for (int k = 0; k < 4; k++) {
        float p = ps[k];
        tw_cpu_dropout_f32(y, x, rows, n, p, 0xC0FFEEull + (uint64_t)k, 0);
        int64_t dropped = 0, row_same = 0, col_same = 0;
        for (int64_t i = 0; i < nx; i++) dropped += y[i] == 0.0f;
        double frac = (double)dropped / (double)nx, sd = sqrt(p * (1 - p) / (double)nx);
        CHECK(fabs(frac - p) < 5 * sd);
        /* neighbouring rows and columns are not copies of each other */
        for (int64_t j = 0; j < n; j++) row_same += (y[j] == 0) == (y[n + j] == 0);
        for (int64_t r = 0; r < rows; r++) col_same += (y[r * n] == 0) == (y[r * n + 1] == 0);
        double agree = p * p + (1 - p) * (1 - p), sd2 = sqrt(agree * (1 - agree) / (double)n);
        CHECK(fabs((double)row_same / (double)n - agree) < 6 * sd2);
        CHECK(fabs((double)col_same / (double)rows - agree) < 6 * sd2);
    }
    CHECK_EQ_INT(tw_dropout_threshold(0.0f), 0);
    CHECK_EQ_INT(tw_dropout_threshold(0.5f), 1u << 23);
    tw_free(x), tw_free(y);
}

static void test_key(void) {
    uint64_t a[4] = {42, 7, 3, 1}, b[4] = {42, 7, 3, 1};
    uint64_t k = tw_dropout_key(a, 4);
    CHECK(tw_dropout_key(b, 4) == k);
    for (int i = 0; i < 4; i++) {
        b[i]++;
        CHECK(tw_dropout_key(b, 4) != k);
        b[i]--;
    }
    uint64_t c[4] = {42, 3, 7, 1};
    CHECK(tw_dropout_key(c, 4) != k);
    CHECK(tw_dropout_key(a, 3) != k);
    /* the bits differ across the counters (an avalanche check on one pair of inputs) */
    CHECK(tw_dropout_bits(k, 0, 0) != tw_dropout_bits(k, 0, 1));
    CHECK(tw_dropout_bits(k, 0, 0) != tw_dropout_bits(k, 1, 0));
}

static void test_backend(void) {
    tw_backend *be = NULL;
    CHECK_EQ_INT(tw_backend_open("cpu", &be), TW_OK);
    if (!be) return;
    CHECK(tw_backend_supports(be, TW_OP_DROPOUT));
    CHECK_EQ_STR(tw_op_name(TW_OP_DROPOUT), "dropout");
    const int64_t rows = 9, n = 31, nx = rows * n;
    tw_buffer *buf = NULL;
    CHECK_EQ_INT(tw_buffer_alloc(be, (size_t)nx * 8 + 256, &buf), TW_OK);
    float *x = tw_malloc((size_t)nx * 4), *y = tw_malloc((size_t)nx * 4), *r = tw_malloc((size_t)nx * 4);
    TW_ASSERT(x && y && r);
    kin_fill(&rng, x, nx, 1.0f);
    tw_ref rx = tw_ref_at(buf, 0), ry = tw_ref_at(buf, (size_t)nx * 4 + 64);
    CHECK_EQ_INT(tw_buffer_upload(buf, 0, x, (size_t)nx * 4), TW_OK);
    CHECK_EQ_INT(tw_op_dropout(be, ry, rx, rows, n, 0.25f, 99, 5), TW_OK);
    CHECK_EQ_INT(tw_buffer_download(buf, ry.offset, y, (size_t)nx * 4), TW_OK);
    tw_ref_dropout_f32(r, x, rows, n, 0.25f, 99, 5);
    CHECK(memcmp(y, r, (size_t)nx * 4) == 0);
    /* backward = the same op on dy: applying it twice scales kept elements by s^2 */
    CHECK_EQ_INT(tw_op_dropout(be, ry, ry, rows, n, 0.25f, 99, 5), TW_OK);
    CHECK_EQ_INT(tw_buffer_download(buf, ry.offset, y, (size_t)nx * 4), TW_OK);
    for (int64_t i = 0; i < nx; i++) CHECK(y[i] == (r[i] == 0 ? 0.0f : r[i] * (4.0f / 3.0f)));
    const tw_status errs[] = {
        tw_op_dropout(be, ry, rx, rows, n, 1.0f, 1, 0),
        tw_op_dropout(be, ry, rx, rows, n, -0.1f, 1, 0),
        tw_op_dropout(be, ry, rx, rows, n, NAN, 1, 0),
        tw_op_dropout(be, ry, rx, rows, 0, 0.1f, 1, 0),
        tw_op_dropout(be, ry, rx, -1, n, 0.1f, 1, 0),
        tw_op_dropout(be, ry, rx, rows, n, 0.1f, 1, -1),
        tw_op_dropout(be, ry, rx, rows, n, 0.1f, 1, INT64_MAX),
        tw_op_dropout(be, tw_ref_at(buf, 4), rx, rows, n, 0.1f, 1, 0),
        tw_op_dropout(be, ry, rx, rows * 4, n, 0.1f, 1, 0),
    };
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        CHECK_EQ_INT(errs[i], TW_ERR_ARG);
    }
    CHECK_EQ_INT(tw_op_dropout(be, ry, rx, 0, n, 0.1f, 1, 0), TW_OK);
    tw_free(x), tw_free(y), tw_free(r);
    tw_buffer_free(buf);
    tw_backend_free(be);
}

int main(void) {
    RUN(test_vs_ref);
    RUN(test_counter_independence);
    RUN(test_statistics);
    RUN(test_key);
    RUN(test_backend);
    TEST_DONE();
}
