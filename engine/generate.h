/* generate.h: the generation engine: many requests advancing together, one ragged-batch
 * forward per step (ARCHITECTURE.md, "Inference is batched from the first line"). `twin
 * generate` is an engine with one request; the server's continuous batching is the same engine
 * with requests submitted between steps.
 *
 *   tw_gen_new(model, kv, params, &g)
 *   tw_gen_submit(g, request, &id)        any time between steps; prompt tokens are copied
 *   tw_gen_step(g)                         one forward over every running request, then
 *                                          sampling; events go to each request's callback
 *   tw_gen_run(g)                          steps until no request is left
 *   tw_gen_cancel(g, id) / tw_gen_free(g)
 *
 * One step: every request that is generating contributes its last sampled token; requests
 * still reading their prompt share what is left of max_batch_tokens, oldest first (chunked
 * prefill: a long prompt takes several steps while the others keep generating). Before its
 * first chunk a request takes a KV sequence and reuses the cached pages of any earlier
 * sequence whose tokens start the same way (tw_kv_seq_reuse_prefix), so a chat turn does not
 * recompute the conversation before it. When the cache has no room for a step, prompt chunks
 * wait for a later step; when even the generating requests do not fit, the youngest of them
 * ends with TW_STOP_CONTEXT.
 *
 * Events: each sampled token gives its request one event with the token, its log-probability
 * (sampler.h: over the model's raw distribution) and the text that became final: text that
 * could still be the start of a stop string is held back, and text is released only in whole
 * UTF-8 characters (bytes that cannot form one are released as U+FFFD), so the concatenated
 * event texts are valid UTF-8. Control tokens (EOS, <|im_end|>, ...) add no text. The last
 * event of a request has `stop` set and carries its statistics; after it the id is gone. The
 * text of a stop string and everything after it is never released.
 *
 * Stop reasons, checked in this order after each token: an end token (EOS unless ignore_eos,
 * or one of stop_tokens) -> TW_STOP_EOS; a stop string -> TW_STOP_STRING; max_tokens tokens
 * -> TW_STOP_MAX_TOKENS; prompt + generated tokens > n_ctx of the cache, i.e. there is no
 * position left to compute another token -> TW_STOP_CONTEXT.
 *
 * Thread safety: an engine is used by one thread at a time, and it drives its model and KV
 * cache, which must not be used elsewhere meanwhile. Callbacks run on that thread, inside
 * tw_gen_step; they may call tw_gen_cancel and tw_gen_submit but not step, run or free.
 */
#ifndef TWIN_GENERATE_H
#define TWIN_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "kv_cache.h"
#include "model.h"
#include "sampler.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    TW_STOP_NONE = 0,   /* still running */
    TW_STOP_EOS,        /* an end token: EOS or one of the request's stop_tokens */
    TW_STOP_STRING,     /* a stop string appeared in the text */
    TW_STOP_MAX_TOKENS, /* max_tokens were generated */
    TW_STOP_CONTEXT,    /* the sequence filled the context (or the KV cache had no room) */
    TW_STOP_CANCELLED,  /* tw_gen_cancel, a callback's request, or tw_gen_free */
    TW_STOP_ERROR       /* the forward failed (tw_gen_step returned the error) */
} tw_stop_reason;

/* "eos", "stop", "length", "context", "cancelled", "error" ("" for TW_STOP_NONE): the first
 * four name what OpenAI's finish_reason calls them where it has a name. */
const char *tw_stop_reason_name(tw_stop_reason r);

typedef struct {
    int32_t n_prompt;        /* prompt tokens */
    int32_t n_prompt_cached; /* of them, reused from the KV cache's prefix pages */
    int32_t n_gen;           /* sampled tokens (an end token included) */
    double prompt_s;         /* first prompt chunk's forward start -> first token sampled */
    double gen_s;            /* first token sampled -> last token sampled */
    double prompt_tok_s;     /* (n_prompt - n_prompt_cached) / prompt_s; 0 when not measured */
    double gen_tok_s;        /* (n_gen - 1) / gen_s: the tokens that each took one decode
                                step; 0 when n_gen < 2 */
} tw_gen_stats;

typedef struct {
    int32_t id;            /* the request */
    const char *text;      /* text released by this event (valid UTF-8, not NUL-terminated,
                              valid during the callback only); n_text may be 0 */
    size_t n_text;
    int32_t token;         /* the sampled token; -1 in a final event that comes without one
                              (cancelled, error) */
    float logprob;         /* of token; 0 when token is -1 */
    tw_stop_reason stop;   /* TW_STOP_NONE except in the request's last event */
    const tw_gen_stats *stats; /* the last event only; NULL before */
} tw_gen_event;

/* Called for each event. Return 0 to go on, nonzero to cancel the request (its final event,
 * TW_STOP_CANCELLED, follows at once unless this event was already the final one). */
typedef int (*tw_gen_callback)(void *user, const tw_gen_event *ev);

typedef struct {
    const int32_t *prompt;      /* (n_prompt) token ids, n_prompt >= 1; copied */
    int32_t n_prompt;
    tw_sampler_params sampling; /* sampler.h */
    int32_t max_tokens;         /* >= 1, or -1: until an end token or the context is full */
    const char *const *stop;    /* (n_stop) non-empty stop strings; copied */
    size_t n_stop;
    const int32_t *stop_tokens; /* (n_stop_tokens) end tokens besides EOS (a chat template's
                                   end of turn); copied */
    size_t n_stop_tokens;
    int ignore_eos;             /* 1: EOS does not end the request (benchmarks) */
    tw_gen_callback callback;   /* may be NULL (then only tw_gen_step's work happens) */
    void *user;
} tw_gen_request;

typedef struct {
    int32_t max_batch_tokens; /* tokens one step may run (prompt chunks + one per generating
                                 request); 0: 512 */
} tw_gen_params;

typedef struct tw_gen tw_gen;

/* ---- the text of one request, on its own ----
 * Bytes go in as tokens produce them (a character may be split across tokens); text comes out
 * once it can no longer be part of a stop string, in whole UTF-8 characters (bytes that cannot
 * form one come out as U+FFFD). The engine keeps one per request; it is public so that the
 * rule can be tested on chosen bytes and reused by whoever streams text. */
typedef struct {
    tw_sb text;     /* every byte pushed */
    size_t emitted; /* text[0..emitted) was released */
    char **stop;    /* (n_stop) owned copies */
    size_t n_stop;
    int stopped;    /* a stop string appeared; nothing more is released */
} tw_gen_text;

/* Copies the stop strings. TW_ERR_ARG for an empty or NULL one; TW_ERR_NOMEM. */
tw_status tw_gen_text_init(tw_gen_text *t, const char *const *stop, size_t n_stop);
void tw_gen_text_free(tw_gen_text *t); /* safe on a zeroed struct */
/* Appends bytes[0..n), then appends to out the text that became final. When a stop string
 * now occurs in the bytes pushed so far, out gets the text before the earliest occurrence,
 * *stopped is set to 1 and later pushes release nothing (streaming: a longer stop string that
 * would have started earlier but is not complete yet does not hold the stop back).
 * TW_ERR_NOMEM (out or t could not grow). */
tw_status tw_gen_text_push(tw_gen_text *t, const char *bytes, size_t n, tw_sb *out,
                           int *stopped);
/* Appends to out everything not yet released (nothing after a stop string), an unfinished
 * character as U+FFFD. */
tw_status tw_gen_text_flush(tw_gen_text *t, tw_sb *out);

/* An engine over model m and its cache kv (both must outlive the engine; the engine owns the
 * sequences it creates in kv). p may be NULL. TW_ERR_ARG for max_batch_tokens < 0. */
tw_status tw_gen_new(tw_model *m, tw_kv_cache *kv, const tw_gen_params *p, tw_gen **out);
/* Ends every request (final events with TW_STOP_CANCELLED), frees their sequences and the
 * engine. NULL is a no-op. */
void tw_gen_free(tw_gen *g);

/* Queues a request; *id names it in events. Errors (nothing queued): TW_ERR_ARG with a
 * message naming the field: n_prompt < 1, a prompt token outside the vocabulary, a prompt of
 * n_ctx tokens or more ("prompt has N tokens; the context holds M"), max_tokens 0 or < -1, an
 * empty stop string, bad sampling parameters; TW_ERR_NOMEM. */
tw_status tw_gen_submit(tw_gen *g, const tw_gen_request *r, int32_t *id);

/* Runs one step (see above). Returns TW_OK when the step ran or there was nothing to do. On a
 * failed forward every request of that step ends with TW_STOP_ERROR and the error is
 * returned; the engine stays usable. */
tw_status tw_gen_step(tw_gen *g);
/* Steps until no request is left; the first error is returned (after its requests ended). */
tw_status tw_gen_run(tw_gen *g);

/* Requests not yet finished (queued or running). */
int32_t tw_gen_n_active(const tw_gen *g);
/* Cancels a request: its final event (TW_STOP_CANCELLED, with the held-back text released)
 * comes at the start of the next step, or at once when called outside a step. An unknown id
 * is ignored. */
void tw_gen_cancel(tw_gen *g, int32_t id);

#ifdef __cplusplus
}
#endif
#endif
