/* train_util.c: learning-rate schedules and gradient clipping (train_util.h). */
#include "train_util.h"

#include <math.h>
#include <string.h>

static const char *const sched_names[] = {"cosine", "linear", "constant"};

int train_sched_parse(const char *name) {
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, sched_names[i])) return i;
    return -1;
}

const char *train_sched_name(train_sched_kind k) {
    return (int)k >= 0 && (int)k < 3 ? sched_names[k] : "?";
}

tw_status train_sched_check(const train_sched *s) {
    if ((int)s->kind < 0 || (int)s->kind > 2)
        return tw_error(TW_ERR_ARG, "schedule: unknown kind %d", (int)s->kind);
    if (!isfinite(s->lr_max) || s->lr_max <= 0)
        return tw_error(TW_ERR_ARG, "schedule: lr %g must be a positive number", s->lr_max);
    if (s->warmup < 0)
        return tw_error(TW_ERR_ARG, "schedule: warmup %lld must be >= 0", (long long)s->warmup);
    if (s->total < 1)
        return tw_error(TW_ERR_ARG, "schedule: total steps %lld must be >= 1",
                        (long long)s->total);
    if (!(s->min_ratio >= 0 && s->min_ratio <= 1))
        return tw_error(TW_ERR_ARG, "schedule: min lr ratio %g must be in [0, 1]", s->min_ratio);
    return TW_OK;
}

double train_lr_at(const train_sched *s, int64_t step) {
    if (step < 0) step = 0;
    if (step < s->warmup) return s->lr_max * (double)(step + 1) / (double)s->warmup;
    if (s->kind == TRAIN_SCHED_CONSTANT) return s->lr_max;
    double floor_lr = s->lr_max * s->min_ratio;
    if (step >= s->total) return floor_lr;
    double p = (double)(step - s->warmup) / (double)(s->total - s->warmup);
    double f = s->kind == TRAIN_SCHED_COSINE ? 0.5 * (1.0 + cos(M_PI * p)) : 1.0 - p;
    return floor_lr + (s->lr_max - floor_lr) * f;
}

double train_grad_norm(const float *g, size_t n) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * (double)g[i];
    return sqrt(ss);
}

double train_clip_scale(double norm, double max_norm) {
    if (!isfinite(norm)) return 0.0;
    if (max_norm <= 0 || norm <= max_norm) return 1.0;
    return max_norm / (norm + 1e-6);
}
