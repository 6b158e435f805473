/* train_util.h: small pure functions of the training loop: the learning-rate schedule and
 * gradient clipping by global norm.
 *
 * Schedule (as Hugging Face transformers' get_cosine_schedule_with_warmup /
 * get_linear_schedule_with_warmup, with a floor):
 *   step s (0-based, the number of optimizer steps taken before this one)
 *   s <  warmup:          lr = lr_max * (s + 1) / warmup        (reaches lr_max at s = warmup-1)
 *   warmup <= s < total:  p = (s - warmup) / (total - warmup) in [0, 1)
 *                         cosine: lr = floor + (lr_max - floor) * 0.5 * (1 + cos(pi p))
 *                         linear: lr = floor + (lr_max - floor) * (1 - p)
 *                         constant: lr = lr_max
 *   s >= total:           lr = floor (constant: lr_max)
 * where floor = lr_max * min_ratio. Unlike transformers, the first warmup step is not 0 (a
 * zero step wastes a batch) and the decay ends at the floor instead of 0.
 *
 * Clipping: the global L2 norm over every gradient (all adapters at once, as
 * torch.nn.utils.clip_grad_norm_ does); when it exceeds max_norm, gradients are scaled by
 * max_norm / (norm + 1e-6) (torch's formula). The scale is handed to tw_op_adamw's grad_scale,
 * so clipping costs no pass over the gradients.
 *
 * Thread safety: pure functions.
 */
#ifndef TWIN_TRAIN_UTIL_H
#define TWIN_TRAIN_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { TRAIN_SCHED_COSINE = 0, TRAIN_SCHED_LINEAR, TRAIN_SCHED_CONSTANT } train_sched_kind;

typedef struct {
    train_sched_kind kind;
    double lr_max;    /* peak learning rate, > 0 */
    int64_t warmup;   /* warmup steps, >= 0 (0: start at lr_max) */
    int64_t total;    /* total optimizer steps, > warmup for a decay */
    double min_ratio; /* floor as a fraction of lr_max, in [0, 1] */
} train_sched;

/* "cosine", "linear", "constant" -> kind; -1 for another name. */
int train_sched_parse(const char *name);
const char *train_sched_name(train_sched_kind k); /* "?" out of range */
/* TW_ERR_ARG naming the field when the schedule is not usable (lr_max <= 0 or not finite,
 * negative warmup, total < 1, min_ratio outside [0, 1]). */
tw_status train_sched_check(const train_sched *s);
/* The learning rate of step `step` (0-based). Steps < 0 count as 0. */
double train_lr_at(const train_sched *s, int64_t step);

/* The global L2 norm of n gradients (summed in double). */
double train_grad_norm(const float *g, size_t n);
/* The factor to multiply gradients by so that their norm is at most max_norm: 1 when
 * norm <= max_norm or max_norm <= 0 (clipping off); max_norm / (norm + 1e-6) otherwise. A
 * non-finite norm gives 0 (the step is skipped: the caller logs it). */
double train_clip_scale(double norm, double max_norm);

#ifdef __cplusplus
}
#endif
#endif
