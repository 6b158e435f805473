/* sampler.h: picks the next token from a row of logits (ARCHITECTURE.md, "Inference").
 *
 *   tw_sampler_new(params, n_vocab, &s)       one sampler per generated sequence
 *   tw_sampler_accept(s, token, generated)     feed the prompt and every chosen token
 *   tw_sampler_sample(s, logits, &out)          next token + its log-probability
 *   tw_sampler_free(s)
 *
 * The chain, in this order (llama.cpp's default order, so that the same settings mean the same
 * thing here as in llama.cpp; temperature comes last, after the truncations):
 *   1. penalties on the logits (llama.cpp and OpenAI semantics, below);
 *   2. greedy: when temperature <= 0 the answer is the largest penalised logit (ties: the
 *      smallest id); nothing else runs and the RNG is not advanced;
 *   3. top-k: keep the k largest (k <= 0 or k >= n: all n_vocab stay candidates);
 *   4. top-p: softmax over the candidates left (temperature 1), sort by probability, keep the
 *      shortest prefix whose cumulative probability is >= top_p (the token that crosses the
 *      line is kept; at least one token); top_p >= 1 is off;
 *   5. min-p: keep the candidates whose logit >= max logit + ln(min_p), i.e. whose probability
 *      is >= min_p times the most likely one's; min_p <= 0 is off;
 *   6. temperature: p_i proportional to exp((l_i - l_max) / T) over what is left, in double;
 *      one uniform draw u in [0, 1) from the sampler's own RNG picks the token where the
 *      cumulative weight first exceeds u * sum.
 * Ordering of equal logits is by id (smaller first) everywhere, so a run is fully determined
 * by (logits, params, seed, accepted tokens).
 *
 * Penalties: over the last repeat_last_n accepted tokens (prompt and generated, as llama.cpp
 * counts them; -1: all of them, 0: none), each distinct token's logit is divided by
 * repeat_penalty when positive and multiplied by it when negative (repeat_penalty 1: off).
 * Presence and frequency penalties are OpenAI's: logit -= count * frequency_penalty +
 * (count > 0) * presence_penalty, count = how often the token was generated so far (prompt
 * tokens are not counted).
 *
 * Log-probabilities: out->logprob is the log-softmax of the chosen token over the raw logits
 * of the whole vocabulary (the model's own distribution, before penalties, truncation and
 * temperature), as the OpenAI API and vLLM report them by default.
 *
 * RNG: xoshiro256** seeded through splitmix64 from a 64-bit seed; the same seed gives the same
 * draws on every machine. (The exp() of the C library decides the weights; IEEE doubles and
 * glibc's correctly-rounded-in-practice exp make them agree across x86-64 and arm64.)
 *
 * Thread safety: a sampler is used by one thread at a time; different samplers are
 * independent. The tw_sampler_cand_* functions are pure and thread-safe.
 */
#ifndef TWIN_SAMPLER_H
#define TWIN_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    float temperature;       /* <= 0: greedy. Default 0.8 */
    int32_t top_k;           /* <= 0: off. Default 40 */
    float top_p;             /* (0, 1]; 1: off. Default 0.95 */
    float min_p;             /* [0, 1]; 0: off. Default 0.05 */
    float repeat_penalty;    /* > 0; 1: off. Default 1 */
    int32_t repeat_last_n;   /* tokens the repetition penalty looks back; -1 all, 0 none.
                                Default 64 */
    float presence_penalty;  /* OpenAI's, [-2, 2] is the usual range; 0: off. Default 0 */
    float frequency_penalty; /* OpenAI's; 0: off. Default 0 */
    uint64_t seed;           /* RNG seed. Default 0 (callers pick one and report it) */
} tw_sampler_params;

/* llama.cpp's defaults (temperature 0.8, top-k 40, top-p 0.95, min-p 0.05, no penalties,
 * repeat_last_n 64), seed 0. */
void tw_sampler_params_default(tw_sampler_params *p);

/* TW_OK, or TW_ERR_ARG with a message naming the field out of range (temperature NaN,
 * top_p outside (0, 1], min_p outside [0, 1], repeat_penalty <= 0, repeat_last_n < -1,
 * penalties not finite). */
tw_status tw_sampler_params_check(const tw_sampler_params *p);

/* One candidate token: its id and its (possibly penalised) logit. */
typedef struct {
    int32_t id;
    float logit;
} tw_candidate;

typedef struct {
    int32_t token;
    float logprob; /* log-softmax over the raw logits of the whole vocabulary (see above) */
} tw_sample;

typedef struct tw_sampler tw_sampler;

/* A sampler for one sequence over a vocabulary of n_vocab tokens. Errors: TW_ERR_ARG (bad
 * params, n_vocab <= 0), TW_ERR_NOMEM. *out is for tw_sampler_free. */
tw_status tw_sampler_new(const tw_sampler_params *p, int32_t n_vocab, tw_sampler **out);
void tw_sampler_free(tw_sampler *s); /* NULL is a no-op */

/* Records a token of the sequence: generated = 0 for prompt tokens (they count for the
 * repetition penalty only), 1 for tokens the model produced (they also count for presence and
 * frequency). tw_sampler_sample does not accept its own answer: the caller accepts what it
 * keeps. Tokens outside [0, n_vocab) are ignored. */
void tw_sampler_accept(tw_sampler *s, int32_t token, int generated);

/* Forgets the accepted tokens and restarts the RNG from the seed (a new sequence with the same
 * settings). */
void tw_sampler_reset(tw_sampler *s);

/* Picks the next token from logits (n_vocab) f32 (read only). TW_ERR_ARG when a logit is NaN.
 * Advances the RNG by one draw unless greedy. */
tw_status tw_sampler_sample(tw_sampler *s, const float *logits, tw_sample *out);

/* The same over a candidate list the caller made (for instance the k largest logits that a
 * backend's top-k op returned, so that the whole vocabulary need not be downloaded):
 * cand (n) is reordered and overwritten (penalties applied in place); logsumexp is
 * ln(sum(exp(raw logit))) over the whole vocabulary for out->logprob, or NAN to use the
 * candidates' own (the log-probability is then relative to the candidates). Penalties only
 * reach the tokens in the list, so a caller that uses penalties should pass at least
 * top_k + repeat_last_n candidates. */
tw_status tw_sampler_sample_candidates(tw_sampler *s, tw_candidate *cand, int32_t n,
                                       double logsumexp, tw_sample *out);

/* ---- the stages, as pure functions on candidate lists (the chain above uses them; the tests
 * check each on its own). Each returns the new count; the kept candidates are cand[0..ret). */

/* The k largest, sorted by logit descending (ties: smaller id first). k <= 0 or k >= n: all
 * n, sorted. */
int32_t tw_sampler_cand_top_k(tw_candidate *cand, int32_t n, int32_t k);
/* top-p as in step 4: sorts (if `sorted` is 0) and keeps the prefix; p >= 1 keeps all. */
int32_t tw_sampler_cand_top_p(tw_candidate *cand, int32_t n, float p, int sorted);
/* min-p as in step 5; keeps the order of the survivors. */
int32_t tw_sampler_cand_min_p(tw_candidate *cand, int32_t n, float p);

/* The sampler's RNG on its own: a stream from seed; next 64 bits; a uniform double in [0, 1)
 * (the top 53 bits). */
typedef struct {
    uint64_t s[4];
} tw_rng;
void tw_rng_seed(tw_rng *r, uint64_t seed);
uint64_t tw_rng_next(tw_rng *r);
double tw_rng_uniform(tw_rng *r);

#ifdef __cplusplus
}
#endif
#endif
