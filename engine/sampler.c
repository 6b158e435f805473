/* sampler.c: the sampling chain of sampler.h (penalties, greedy, top-k, top-p, min-p,
 * temperature) over candidate lists, and the seeded RNG. */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- RNG: splitmix64 to seed xoshiro256** (Blackman & Vigna), both public-domain designs
 * written out here from their definitions. */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void tw_rng_seed(tw_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tw_rng_next(tw_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

double tw_rng_uniform(tw_rng *r) { return (double)(tw_rng_next(r) >> 11) * 0x1.0p-53; }

/* ---- params ------------------------------------------------------------------------------ */

void tw_sampler_params_default(tw_sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
}

tw_status tw_sampler_params_check(const tw_sampler_params *p) {
    if (isnan(p->temperature)) return tw_error(TW_ERR_ARG, "sampler: temperature is NaN");
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return tw_error(TW_ERR_ARG, "sampler: top_p %g is outside (0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return tw_error(TW_ERR_ARG, "sampler: min_p %g is outside [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return tw_error(TW_ERR_ARG, "sampler: repeat_penalty %g must be > 0",
                        (double)p->repeat_penalty);
    if (p->repeat_last_n < -1)
        return tw_error(TW_ERR_ARG, "sampler: repeat_last_n %d must be >= -1", p->repeat_last_n);
    if (!isfinite(p->presence_penalty))
        return tw_error(TW_ERR_ARG, "sampler: presence_penalty is not finite");
    if (!isfinite(p->frequency_penalty))
        return tw_error(TW_ERR_ARG, "sampler: frequency_penalty is not finite");
    return TW_OK;
}

/* ---- candidate stages -------------------------------------------------------------------- */

/* a comes before b: larger logit first, then smaller id. A total order, so every sort and
 * selection below has one answer whatever the library's qsort does with equal keys. */
static inline int cand_before(const tw_candidate *a, const tw_candidate *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cand_cmp(const void *pa, const void *pb) {
    const tw_candidate *a = pa, *b = pb;
    if (cand_before(a, b)) return -1;
    if (cand_before(b, a)) return 1;
    return 0;
}

/* Min-heap on cand[0..m) whose root is the candidate that comes last. */
static void heap_sift_down(tw_candidate *h, int32_t m, int32_t i) {
    for (;;) {
        int32_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < m && cand_before(&h[w], &h[l])) w = l;
        if (r < m && cand_before(&h[w], &h[r])) w = r;
        if (w == i) return;
        tw_candidate t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Moves the m best of cand[0..n) to the front, sorted; cand[m..n) keeps the others (in some
 * order). O(n log m). */
static void cand_partial_sort(tw_candidate *cand, int32_t n, int32_t m) {
    if (m >= n) {
        qsort(cand, (size_t)n, sizeof *cand, cand_cmp);
        return;
    }
    for (int32_t i = m / 2 - 1; i >= 0; i--) heap_sift_down(cand, m, i);
    for (int32_t i = m; i < n; i++) {
        if (cand_before(&cand[i], &cand[0])) {
            tw_candidate t = cand[0];
            cand[0] = cand[i];
            cand[i] = t;
            heap_sift_down(cand, m, 0);
        }
    }
    qsort(cand, (size_t)m, sizeof *cand, cand_cmp);
}

int32_t tw_sampler_cand_top_k(tw_candidate *cand, int32_t n, int32_t k) {
    if (n <= 0) return 0;
    if (k <= 0 || k > n) k = n;
    cand_partial_sort(cand, n, k);
    return k;
}

static float cand_max_logit(const tw_candidate *cand, int32_t n) {
    float m = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (cand[i].logit > m) m = cand[i].logit;
    return m;
}

int32_t tw_sampler_cand_top_p(tw_candidate *cand, int32_t n, float p, int sorted) {
    if (n <= 1 || p >= 1.0f) return n;
    double mx = cand_max_logit(cand, n), z = 0.0;
    for (int32_t i = 0; i < n; i++) z += exp((double)cand[i].logit - mx);
    /* Unsorted (no top-k before): sort only as many as the cumulative sum needs, growing the
     * sorted prefix 64, 512, 4096, ... (the answer is the same as a full sort's, since the
     * prefix is exactly the best m in order). */
    int32_t m = sorted ? n : (n < 64 ? n : 64);
    for (;;) {
        if (!sorted) cand_partial_sort(cand, n, m);
        double cum = 0.0;
        for (int32_t i = 0; i < m; i++) {
            cum += exp((double)cand[i].logit - mx) / z;
            if (cum >= (double)p) return i + 1;
        }
        if (m >= n) return n; /* rounding kept the sum just under p */
        m = m > n / 8 ? n : m * 8;
    }
}

int32_t tw_sampler_cand_min_p(tw_candidate *cand, int32_t n, float p) {
    if (n <= 1 || p <= 0.0f) return n;
    float thr = (float)((double)cand_max_logit(cand, n) + log((double)p));
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++)
        if (cand[i].logit >= thr) cand[k++] = cand[i];
    return k > 0 ? k : 1; /* the max itself always passes; this is for a NaN-free paranoia */
}

/* ---- the sampler ------------------------------------------------------------------------- */

struct tw_sampler {
    tw_sampler_params p;
    int32_t n_vocab;
    tw_rng rng;
    tw_candidate *cand; /* (n_vocab) scratch */
    /* accepted tokens, prompt and generated, in order (the repetition window is the tail) */
    int32_t *hist;
    size_t n_hist, cap_hist;
    int32_t *win; /* scratch for the distinct tokens of the window */
    size_t cap_win;
    /* generated-token counts: open addressing, keys id+1 (0 = empty), capacity a power of 2 */
    int32_t *gen_key;
    int32_t *gen_count;
    size_t gen_cap, gen_n;
};

tw_status tw_sampler_new(const tw_sampler_params *p, int32_t n_vocab, tw_sampler **out) {
    *out = NULL;
    if (n_vocab <= 0) return tw_error(TW_ERR_ARG, "sampler: n_vocab %d must be > 0", n_vocab);
    tw_status st = tw_sampler_params_check(p);
    if (st) return st;
    tw_sampler *s = tw_calloc(1, sizeof *s);
    if (!s) return TW_ERR_NOMEM;
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand = tw_malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->cand) {
        tw_sampler_free(s);
        return TW_ERR_NOMEM;
    }
    tw_rng_seed(&s->rng, p->seed);
    *out = s;
    return TW_OK;
}

void tw_sampler_free(tw_sampler *s) {
    if (!s) return;
    tw_free(s->cand);
    tw_free(s->hist);
    tw_free(s->win);
    tw_free(s->gen_key);
    tw_free(s->gen_count);
    tw_free(s);
}

void tw_sampler_reset(tw_sampler *s) {
    s->n_hist = 0;
    if (s->gen_key) memset(s->gen_key, 0, s->gen_cap * sizeof *s->gen_key);
    s->gen_n = 0;
    tw_rng_seed(&s->rng, s->p.seed);
}

static size_t gen_slot(const int32_t *keys, size_t cap, int32_t id) {
    size_t h = ((uint32_t)id * 2654435761u) & (cap - 1);
    while (keys[h] != 0 && keys[h] != id + 1) h = (h + 1) & (cap - 1);
    return h;
}

/* Counts one generated token. Returns -1 when growing the table failed (the count is lost:
 * the penalty is then slightly off, which the caller cannot act on; tw_sampler_accept has no
 * status, so this is logged). */
static int gen_count_add(tw_sampler *s, int32_t id) {
    if ((s->gen_n + 1) * 2 > s->gen_cap) {
        size_t ncap = s->gen_cap ? s->gen_cap * 2 : 64;
        int32_t *nk = tw_calloc(ncap, sizeof *nk), *nc = tw_calloc(ncap, sizeof *nc);
        if (!nk || !nc) {
            tw_free(nk);
            tw_free(nc);
            return -1;
        }
        for (size_t i = 0; i < s->gen_cap; i++) {
            if (!s->gen_key[i]) continue;
            size_t h = gen_slot(nk, ncap, s->gen_key[i] - 1);
            nk[h] = s->gen_key[i];
            nc[h] = s->gen_count[i];
        }
        tw_free(s->gen_key);
        tw_free(s->gen_count);
        s->gen_key = nk;
        s->gen_count = nc;
        s->gen_cap = ncap;
    }
    size_t h = gen_slot(s->gen_key, s->gen_cap, id);
    if (!s->gen_key[h]) {
        s->gen_key[h] = id + 1;
        s->gen_n++;
    }
    s->gen_count[h]++;
    return 0;
}

void tw_sampler_accept(tw_sampler *s, int32_t token, int generated) {
    if (token < 0 || token >= s->n_vocab) return;
    if (s->p.repeat_last_n != 0 && s->p.repeat_penalty != 1.0f) {
        if (s->n_hist == s->cap_hist) {
            size_t ncap = s->cap_hist ? s->cap_hist * 2 : 256;
            int32_t *nh = tw_realloc(s->hist, ncap * sizeof *nh);
            if (!nh) {
                tw_log_warn("sampler: out of memory for the token history; the repetition "
                            "penalty misses a token");
                goto counts;
            }
            s->hist = nh;
            s->cap_hist = ncap;
        }
        s->hist[s->n_hist++] = token;
    }
counts:
    if (generated && (s->p.presence_penalty != 0.0f || s->p.frequency_penalty != 0.0f))
        if (gen_count_add(s, token) != 0)
            tw_log_warn("sampler: out of memory for token counts; a penalty misses a token");
}

static int int32_cmp(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Finds the candidate of `id`: by index when the list is the identity (the whole vocabulary
 * in id order), else by a scan. NULL when absent. */
static tw_candidate *cand_find(tw_candidate *cand, int32_t n, int identity, int32_t id) {
    if (identity) return id < n ? &cand[id] : NULL;
    for (int32_t i = 0; i < n; i++)
        if (cand[i].id == id) return &cand[i];
    return NULL;
}

static float repeat_apply(float l, float pen) { return l <= 0.0f ? l * pen : l / pen; }

static tw_status apply_penalties(tw_sampler *s, tw_candidate *cand, int32_t n, int identity) {
    const tw_sampler_params *p = &s->p;
    if (p->repeat_penalty != 1.0f && p->repeat_last_n != 0 && s->n_hist > 0) {
        size_t w = p->repeat_last_n < 0 || (size_t)p->repeat_last_n > s->n_hist
                       ? s->n_hist
                       : (size_t)p->repeat_last_n;
        if (w > s->cap_win) {
            int32_t *nw = tw_realloc(s->win, w * sizeof *nw);
            if (!nw) return TW_ERR_NOMEM;
            s->win = nw;
            s->cap_win = w;
        }
        memcpy(s->win, s->hist + (s->n_hist - w), w * sizeof *s->win);
        qsort(s->win, w, sizeof *s->win, int32_cmp);
        for (size_t i = 0; i < w; i++) {
            if (i > 0 && s->win[i] == s->win[i - 1]) continue; /* once per distinct token */
            tw_candidate *c = cand_find(cand, n, identity, s->win[i]);
            if (c) c->logit = repeat_apply(c->logit, p->repeat_penalty);
        }
    }
    if (s->gen_n > 0) {
        for (size_t h = 0; h < s->gen_cap; h++) {
            if (!s->gen_key[h]) continue;
            tw_candidate *c = cand_find(cand, n, identity, s->gen_key[h] - 1);
            if (c)
                c->logit -= (float)s->gen_count[h] * p->frequency_penalty + p->presence_penalty;
        }
    }
    return TW_OK;
}

/* Steps 2-6 of the chain on cand (penalised). Returns the chosen candidate's id. */
static int32_t sample_chain(tw_sampler *s, tw_candidate *cand, int32_t n) {
    const tw_sampler_params *p = &s->p;
    if (!(p->temperature > 0.0f)) {
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (cand_before(&cand[i], &cand[best])) best = i;
        return cand[best].id;
    }
    int sorted = 0;
    if (p->top_k > 0 && p->top_k < n) {
        n = tw_sampler_cand_top_k(cand, n, p->top_k);
        sorted = 1;
    }
    if (p->top_p < 1.0f) {
        n = tw_sampler_cand_top_p(cand, n, p->top_p, sorted);
        sorted = 1;
    }
    n = tw_sampler_cand_min_p(cand, n, p->min_p);
    double mx = cand_max_logit(cand, n), inv_t = 1.0 / (double)p->temperature, sum = 0.0;
    /* Two passes with the same expression give the same doubles, so no weight buffer. */
    for (int32_t i = 0; i < n; i++) sum += exp(((double)cand[i].logit - mx) * inv_t);
    double u = tw_rng_uniform(&s->rng) * sum, cum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        double w = exp(((double)cand[i].logit - mx) * inv_t);
        cum += w;
        if (u < cum && w > 0.0) return cand[i].id;
    }
    /* u * sum rounded to the very top: the last candidate with weight */
    for (int32_t i = n - 1; i > 0; i--)
        if (exp(((double)cand[i].logit - mx) * inv_t) > 0.0) return cand[i].id;
    return cand[0].id;
}

static tw_status check_logit(float l, int32_t i) {
    if (isnan(l) || l == INFINITY)
        return tw_error(TW_ERR_ARG, "sampler: logit of token %d is %s", i,
                        isnan(l) ? "NaN" : "+inf");
    return TW_OK;
}

tw_status tw_sampler_sample(tw_sampler *s, const float *logits, tw_sample *out) {
    int32_t n = s->n_vocab;
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        if (check_logit(logits[i], i)) return TW_ERR_ARG;
        if (logits[i] > mx) mx = logits[i];
    }
    /* the normaliser for the log-probability: expf (correctly rounded in glibc, several times
     * faster than exp over a 50k vocabulary; this loop is most of a greedy step's cost) summed
     * in double */
    double z = 0.0;
    for (int32_t i = 0; i < n; i++) {
        z += (double)expf(logits[i] - mx);
        s->cand[i].id = i;
        s->cand[i].logit = logits[i];
    }
    double lse = (double)mx + log(z);
    tw_status st = apply_penalties(s, s->cand, n, 1);
    if (st) return st;
    out->token = sample_chain(s, s->cand, n);
    out->logprob = (float)((double)logits[out->token] - lse);
    return TW_OK;
}

tw_status tw_sampler_sample_candidates(tw_sampler *s, tw_candidate *cand, int32_t n,
                                       double logsumexp, tw_sample *out) {
    if (n <= 0) return tw_error(TW_ERR_ARG, "sampler: empty candidate list");
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++) {
        if (cand[i].id < 0 || cand[i].id >= s->n_vocab)
            return tw_error(TW_ERR_ARG, "sampler: candidate %d has id %d outside [0, %d)", i,
                            cand[i].id, s->n_vocab);
        if (check_logit(cand[i].logit, cand[i].id)) return TW_ERR_ARG;
        if (cand[i].logit > mx) mx = cand[i].logit;
    }
    if (isnan(logsumexp)) {
        double z = 0.0;
        for (int32_t i = 0; i < n; i++) z += exp((double)cand[i].logit - (double)mx);
        logsumexp = (double)mx + log(z);
    }
    /* the raw logit of the answer is needed after penalties changed the list: keep a copy of
     * the raw values by id through a scan at the end (n is small on this path) */
    tw_candidate *raw = tw_malloc((size_t)n * sizeof *raw);
    if (!raw) return TW_ERR_NOMEM;
    memcpy(raw, cand, (size_t)n * sizeof *raw);
    tw_status st = apply_penalties(s, cand, n, 0);
    if (st) {
        tw_free(raw);
        return st;
    }
    out->token = sample_chain(s, cand, n);
    float l = 0.0f;
    for (int32_t i = 0; i < n; i++)
        if (raw[i].id == out->token) l = raw[i].logit;
    tw_free(raw);
    out->logprob = (float)((double)l - logsumexp);
    return TW_OK;
}
