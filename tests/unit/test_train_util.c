/* test_train_util: the learning-rate schedule and gradient clipping (engine/train_util.h)
 * against values computed by hand:
 *   cosine, lr 1e-3, warmup 10, total 110, floor 10%: step 0 -> 1e-4, step 9 -> 1e-3,
 *     step 10 -> 1e-3, step 60 (half way) -> 1e-4 + 9e-4 * 0.5 = 5.5e-4,
 *     step 35 (a quarter) -> 1e-4 + 9e-4 * 0.5 * (1 + cos(pi/4)) = 1e-4 + 9e-4 * 0.853553...,
 *     step 110 and later -> 1e-4;
 *   linear, same: step 60 -> 5.5e-4, step 85 -> 1e-4 + 9e-4 * 0.25 = 3.25e-4;
 *   constant: lr after warmup;
 *   clipping: g = (3, 4) has norm 5; max 1 -> scale 1/(5 + 1e-6); max 10 -> 1; NaN -> 0. */
#include <math.h>

#include "test.h"
#include "train_util.h"

static void test_cosine(void) {
    train_sched s = {TRAIN_SCHED_COSINE, 1e-3, 10, 110, 0.1};
    CHECK(train_sched_check(&s) == TW_OK);
    CHECK_NEAR(train_lr_at(&s, 0), 1e-4, 1e-15);
    CHECK_NEAR(train_lr_at(&s, 4), 5e-4, 1e-15);
    CHECK_NEAR(train_lr_at(&s, 9), 1e-3, 1e-15);
    CHECK_NEAR(train_lr_at(&s, 10), 1e-3, 1e-15);
    CHECK_NEAR(train_lr_at(&s, 60), 5.5e-4, 1e-15);
    CHECK_NEAR(train_lr_at(&s, 35), 1e-4 + 9e-4 * 0.85355339059327373, 1e-15);
    CHECK_NEAR(train_lr_at(&s, 109), 1e-4 + 9e-4 * 0.5 * (1 + cos(M_PI * 99 / 100)), 1e-15);
    CHECK_NEAR(train_lr_at(&s, 110), 1e-4, 1e-15);
    CHECK_NEAR(train_lr_at(&s, 5000), 1e-4, 1e-15);
    CHECK_NEAR(train_lr_at(&s, -3), 1e-4, 1e-15);
    /* monotone after warmup */
    for (int64_t i = 10; i < 120; i++) CHECK(train_lr_at(&s, i + 1) <= train_lr_at(&s, i));
}

static void test_linear_constant(void) {
    train_sched s = {TRAIN_SCHED_LINEAR, 1e-3, 10, 110, 0.1};
    CHECK_NEAR(train_lr_at(&s, 60), 5.5e-4, 1e-15);
    CHECK_NEAR(train_lr_at(&s, 85), 3.25e-4, 1e-15);
    CHECK_NEAR(train_lr_at(&s, 110), 1e-4, 1e-15);
    s.kind = TRAIN_SCHED_CONSTANT;
    CHECK_NEAR(train_lr_at(&s, 5), 6e-4, 1e-15);
    CHECK_NEAR(train_lr_at(&s, 500), 1e-3, 1e-15);
    train_sched nw = {TRAIN_SCHED_LINEAR, 2e-4, 0, 4, 0};
    CHECK_NEAR(train_lr_at(&nw, 0), 2e-4, 1e-18);
    CHECK_NEAR(train_lr_at(&nw, 1), 1.5e-4, 1e-18);
    CHECK_NEAR(train_lr_at(&nw, 3), 0.5e-4, 1e-18);
    CHECK_NEAR(train_lr_at(&nw, 4), 0, 0);
    /* warmup == total: warmup then the floor, no division by zero */
    train_sched wt = {TRAIN_SCHED_COSINE, 1e-3, 5, 5, 0.5};
    CHECK_NEAR(train_lr_at(&wt, 4), 1e-3, 1e-15);
    CHECK_NEAR(train_lr_at(&wt, 5), 5e-4, 1e-15);
}

static void test_checks_and_names(void) {
    train_sched s = {TRAIN_SCHED_COSINE, 0, 0, 10, 0};
    CHECK(train_sched_check(&s) == TW_ERR_ARG);
    CHECK(strstr(tw_errmsg(), "lr") != NULL);
    s.lr_max = 1e-3;
    s.min_ratio = 1.5;
    CHECK(train_sched_check(&s) == TW_ERR_ARG);
    s.min_ratio = 0;
    s.warmup = -1;
    CHECK(train_sched_check(&s) == TW_ERR_ARG);
    s.warmup = 0;
    s.total = 0;
    CHECK(train_sched_check(&s) == TW_ERR_ARG);
    CHECK_EQ_INT(train_sched_parse("linear"), TRAIN_SCHED_LINEAR);
    CHECK_EQ_INT(train_sched_parse("cosine"), TRAIN_SCHED_COSINE);
    CHECK_EQ_INT(train_sched_parse("step"), -1);
    CHECK_EQ_STR(train_sched_name(TRAIN_SCHED_CONSTANT), "constant");
}

static void test_clip(void) {
    float g[4] = {3, 0, 0, 4};
    CHECK_NEAR(train_grad_norm(g, 4), 5.0, 0);
    CHECK_NEAR(train_clip_scale(5.0, 1.0), 1.0 / (5.0 + 1e-6), 1e-15);
    CHECK_NEAR(train_clip_scale(5.0, 10.0), 1.0, 0);
    CHECK_NEAR(train_clip_scale(5.0, 5.0), 1.0, 0);
    CHECK_NEAR(train_clip_scale(5.0, 0.0), 1.0, 0);
    CHECK_NEAR(train_clip_scale(NAN, 1.0), 0.0, 0);
    CHECK_NEAR(train_clip_scale(INFINITY, 1.0), 0.0, 0);
    /* scaled gradients have the maximum norm (up to the 1e-6 guard) */
    double sc = train_clip_scale(train_grad_norm(g, 4), 2.0);
    float h[4];
    for (int i = 0; i < 4; i++) h[i] = (float)(g[i] * sc);
    CHECK_NEAR(train_grad_norm(h, 4), 2.0, 1e-6);
    CHECK_NEAR(train_grad_norm(g, 0), 0.0, 0);
}

int main(void) {
    RUN(test_cosine);
    RUN(test_linear_constant);
    RUN(test_checks_and_names);
    RUN(test_clip);
    TEST_DONE();
}
