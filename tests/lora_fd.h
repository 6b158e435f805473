/* lora_fd.h: the finite-difference check of LoRA gradients that the training tests share
 * (train_golden.h's fd_check, test_train_dropout): for every adapter's A and B, the coordinate
 * with the largest backward gradient is moved by +-h and the central difference of the float32
 * loss compared with the gradient. */
#ifndef TWIN_TESTS_LORA_FD_H
#define TWIN_TESTS_LORA_FD_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "test.h"

/* The loss at the set's current parameters (no gradient). */
typedef double (*lora_fd_loss)(void *ctx);

/* Checks g (lora_set_n_floats(s): the backward at params) against central differences of
 * loss(ctx) on the largest-|g| coordinate of each adapter's A and B: relative error
 * |fd - g| / (|g| + 1e-3) < 2e-2 (CHECKed; a failure is printed with label). h = 1e-2: float32
 * losses of 5..12 carry ~1e-6 of rounding, so the quotient's noise is ~1e-4 of a gradient
 * of ~1e-2; the curvature term is O(h^2); a wrong mask or scale in a backward is off by tens
 * of percent. The set's parameters are params again on return. Returns the worst error;
 * *checked: the coordinates checked. */
static inline double lora_fd_worst(lora_set *s, const float *params, const float *g,
                                   lora_fd_loss loss, void *ctx, const char *label,
                                   int *checked) {
    size_t nf = lora_set_n_floats(s);
    float *p = malloc(nf * 4);
    TW_ASSERT(p);
    memcpy(p, params, nf * 4);
    double worst = 0;
    *checked = 0;
    for (int32_t k = 0; k < lora_set_n_adapters(s); k++) {
        const lora_adapter *a = lora_set_adapter(s, k);
        for (int ab = 0; ab < 2; ab++) {
            size_t off = ab ? a->b_off : a->a_off, cnt = (size_t)(a->rank * (ab ? a->out : a->in));
            size_t best = off;
            for (size_t e = off; e < off + cnt; e++)
                if (fabs(g[e]) > fabs(g[best])) best = e;
            const float h = 1e-2f;
            double v[2];
            for (int sg = 0; sg < 2; sg++) {
                p[best] = params[best] + (sg ? -h : h);
                CHECK(lora_set_upload(s, LORA_PARAM, p) == TW_OK);
                v[sg] = loss(ctx);
            }
            p[best] = params[best];
            double fd = (v[0] - v[1]) / (2.0 * (double)h);
            double err = fabs(fd - g[best]) / (fabs(g[best]) + 1e-3);
            if (err > worst) worst = err;
            if (!(err < 2e-2))
                fprintf(stderr, "%s fd: layer %d module %d %s: fd %.6g backward %.6g\n", label,
                        (int)a->layer, (int)a->module, ab ? "B" : "A", fd, (double)g[best]);
            CHECK(err < 2e-2);
            (*checked)++;
        }
    }
    CHECK(lora_set_upload(s, LORA_PARAM, params) == TW_OK);
    free(p);
    return worst;
}

#endif
