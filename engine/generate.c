/* generate.c: the generation engine of generate.h: scheduling of prompt chunks and decode
 * tokens into one ragged batch per step, sampling, stop conditions, and the release of text
 * (stop-string hold-back, whole UTF-8 characters). */
#include "generate.h"

#include <string.h>

typedef enum { RS_QUEUED, RS_PREFILL, RS_DECODE, RS_DONE } req_state;

typedef struct {
    int32_t id;
    req_state state;
    int32_t *prompt; /* (n_prompt) owned */
    int32_t n_prompt;
    int32_t n_done; /* prompt tokens in the KV sequence */
    int32_t seq;    /* KV sequence, -1 before the first chunk and after the end */
    tw_sampler *sampler;
    int32_t max_tokens;
    int32_t *stop_tokens; /* (n_stop_tokens) owned */
    size_t n_stop_tokens;
    int ignore_eos;
    tw_gen_callback callback;
    void *user;
    int32_t last_token; /* the token the next step feeds (RS_DECODE) */
    int32_t n_gen;
    tw_gen_text text; /* generated text, stop strings, release */
    int cancel;
    int32_t chunk; /* prompt tokens this step's batch holds */
    double t_prompt_start, t_first, t_last; /* 0: not yet */
    tw_gen_stats stats;
} gen_req;

struct tw_gen {
    tw_model *m;
    tw_kv_cache *kv;
    const tw_tokenizer *tok;
    int32_t n_vocab, n_ctx, max_batch, eos;
    gen_req **reqs; /* in submit order */
    size_t n_reqs, cap_reqs;
    int32_t next_id;
    int in_step;
    /* one step's batch (capacity cap_batch) */
    int32_t *b_tok, *b_pos, *b_seq;
    uint8_t *b_want;
    gen_req **b_owner; /* (cap_batch) request of each batch token */
    size_t cap_batch;
    float *logits; /* (cap_rows, n_vocab) */
    size_t cap_rows;
    tw_sb piece, out; /* scratch: a token's text; the text an event releases */
};

const char *tw_stop_reason_name(tw_stop_reason r) {
    switch (r) {
    case TW_STOP_EOS: return "eos";
    case TW_STOP_STRING: return "stop";
    case TW_STOP_MAX_TOKENS: return "length";
    case TW_STOP_CONTEXT: return "context";
    case TW_STOP_CANCELLED: return "cancelled";
    case TW_STOP_ERROR: return "error";
    default: return "";
    }
}

static void req_free(gen_req *r) {
    if (!r) return;
    tw_free(r->prompt);
    tw_free(r->stop_tokens);
    tw_sampler_free(r->sampler);
    tw_gen_text_free(&r->text);
    tw_free(r);
}

tw_status tw_gen_new(tw_model *m, tw_kv_cache *kv, const tw_gen_params *p, tw_gen **out) {
    *out = NULL;
    int32_t max_batch = p ? p->max_batch_tokens : 0;
    if (max_batch < 0)
        return tw_error(TW_ERR_ARG, "generate: max_batch_tokens %d must be >= 0", max_batch);
    tw_gen *g = tw_calloc(1, sizeof *g);
    if (!g) return TW_ERR_NOMEM;
    g->m = m;
    g->kv = kv;
    g->tok = tw_model_tokenizer(m);
    g->n_vocab = tw_model_n_vocab(m);
    g->n_ctx = tw_kv_cache_n_ctx(kv);
    g->max_batch = max_batch ? max_batch : 512;
    g->eos = tw_tokenizer_eos(g->tok);
    g->next_id = 1;
    tw_sb_init(&g->piece);
    tw_sb_init(&g->out);
    *out = g;
    return TW_OK;
}

/* ---- text release ------------------------------------------------------------------------ */

tw_status tw_gen_text_init(tw_gen_text *t, const char *const *stop, size_t n_stop) {
    memset(t, 0, sizeof *t);
    tw_sb_init(&t->text);
    for (size_t i = 0; i < n_stop; i++)
        if (!stop[i] || !stop[i][0])
            return tw_error(TW_ERR_ARG, "generate: stop string %zu is empty", i);
    if (n_stop == 0) return TW_OK;
    t->stop = tw_calloc(n_stop, sizeof *t->stop);
    if (!t->stop) return TW_ERR_NOMEM;
    for (size_t i = 0; i < n_stop; i++) {
        t->stop[i] = tw_strdup(stop[i]);
        if (!t->stop[i]) {
            tw_gen_text_free(t);
            return TW_ERR_NOMEM;
        }
        t->n_stop = i + 1;
    }
    return TW_OK;
}

void tw_gen_text_free(tw_gen_text *t) {
    for (size_t i = 0; i < t->n_stop; i++) tw_free(t->stop[i]);
    tw_free(t->stop);
    tw_sb_free(&t->text);
    memset(t, 0, sizeof *t);
}

/* Appends s[0..n) to out as valid UTF-8: each byte that does not start a whole, valid
 * character becomes U+FFFD. */
static void put_sanitized(tw_sb *out, const char *s, size_t n) {
    size_t i = 0, run = 0;
    while (i < n) {
        uint32_t cp;
        int l = tw_utf8_decode((const uint8_t *)s + i, n - i, &cp);
        if (cp == TW_UTF8_INVALID) {
            tw_sb_append(out, s + run, i - run);
            tw_sb_append(out, "\xEF\xBF\xBD", 3);
            i += 1;
            run = i;
        } else {
            i += (size_t)l;
        }
    }
    tw_sb_append(out, s + run, n - run);
}

/* How far the text may be released now: not into a tail that could be the start of a stop
 * string, and not into a character whose bytes are not all there yet. */
static size_t safe_limit(const tw_gen_text *t) {
    const char *b = t->text.buf;
    size_t len = t->text.len, limit = len;
    for (size_t q = t->emitted; q < len && limit == len; q++) {
        for (size_t k = 0; k < t->n_stop; k++) {
            size_t sl = strlen(t->stop[k]), rem = len - q;
            if (rem < sl && memcmp(b + q, t->stop[k], rem) == 0) {
                limit = q;
                break;
            }
        }
    }
    /* the last character before limit: held back when it is a lead byte followed by fewer
     * continuation bytes than it needs (the rest may come with the next token) */
    if (limit > t->emitted) {
        size_t j = limit - 1;
        while (j > t->emitted && limit - j < 4 && ((uint8_t)b[j] & 0xC0) == 0x80) j--;
        uint8_t lead = (uint8_t)b[j];
        size_t need = lead >= 0xC2 && lead <= 0xDF   ? 2
                      : lead >= 0xE0 && lead <= 0xEF ? 3
                      : lead >= 0xF0 && lead <= 0xF4 ? 4
                                                     : 1;
        if (need > limit - j) limit = j;
    }
    return limit;
}

static tw_status release_to(tw_gen_text *t, size_t limit, tw_sb *out) {
    if (limit > t->emitted) put_sanitized(out, t->text.buf + t->emitted, limit - t->emitted);
    if (limit > t->emitted) t->emitted = limit;
    return out->failed ? tw_error(TW_ERR_NOMEM, "generate: out of memory for text") : TW_OK;
}

tw_status tw_gen_text_push(tw_gen_text *t, const char *bytes, size_t n, tw_sb *out,
                           int *stopped) {
    *stopped = t->stopped;
    if (t->stopped) return TW_OK;
    size_t from = t->emitted; /* text before `emitted` never holds the start of a stop string:
                                 safe_limit held such tails back */
    if (n > 0 && tw_sb_append(&t->text, bytes, n) != 0)
        return tw_error(TW_ERR_NOMEM, "generate: out of memory for text");
    size_t cut = (size_t)-1;
    for (size_t k = 0; k < t->n_stop && t->text.len > from; k++) {
        const char *hit = memmem(t->text.buf + from, t->text.len - from, t->stop[k],
                                 strlen(t->stop[k]));
        if (hit && (size_t)(hit - t->text.buf) < cut) cut = (size_t)(hit - t->text.buf);
    }
    if (cut != (size_t)-1) {
        t->stopped = *stopped = 1;
        return release_to(t, cut, out);
    }
    return release_to(t, safe_limit(t), out);
}

tw_status tw_gen_text_flush(tw_gen_text *t, tw_sb *out) {
    if (t->stopped) return TW_OK;
    return release_to(t, t->text.len, out);
}

/* ---- events ------------------------------------------------------------------------------ */

static void stats_finish(gen_req *r) {
    tw_gen_stats *s = &r->stats;
    s->n_prompt = r->n_prompt;
    s->n_gen = r->n_gen;
    s->prompt_s = r->t_first > 0 && r->t_prompt_start > 0 ? r->t_first - r->t_prompt_start : 0;
    s->gen_s = r->t_first > 0 ? r->t_last - r->t_first : 0;
    int32_t computed = r->n_prompt - s->n_prompt_cached;
    s->prompt_tok_s = s->prompt_s > 0 ? computed / s->prompt_s : 0;
    s->gen_tok_s = r->n_gen > 1 && s->gen_s > 0 ? (r->n_gen - 1) / s->gen_s : 0;
}

/* Calls r's callback; returns its answer (0 without a callback). */
static int emit(tw_gen *g, gen_req *r, int32_t token, float logprob, tw_stop_reason stop) {
    if (!r->callback) return 0;
    tw_gen_event ev = {r->id, tw_sb_str(&g->out), g->out.len, token, logprob, stop,
                       stop != TW_STOP_NONE ? &r->stats : NULL};
    return r->callback(r->user, &ev);
}

/* Ends r: appends what is left of its text to g->out (unless text_done: a stop string cut it),
 * frees its sequence and sends the final event with g->out. */
static void finish(tw_gen *g, gen_req *r, tw_stop_reason why, int32_t token, float logprob,
                   int text_done) {
    if (!text_done) {
        if (tw_gen_text_flush(&r->text, &g->out) != TW_OK)
            tw_log_warn("generate: request %d: %s", r->id, tw_errmsg());
    }
    if (r->seq >= 0) tw_kv_seq_free(g->kv, r->seq);
    r->seq = -1;
    r->state = RS_DONE;
    stats_finish(r);
    emit(g, r, token, logprob, why);
}

/* Ends r without a token (cancelled, error, no room): its final event has the held-back text. */
static void end_request(tw_gen *g, gen_req *r, tw_stop_reason why) {
    tw_sb_clear(&g->out);
    finish(g, r, why, -1, 0.0f, 0);
}

/* Removes finished requests from the list, keeping the order of the others. */
static void compact(tw_gen *g) {
    size_t k = 0;
    for (size_t i = 0; i < g->n_reqs; i++) {
        if (g->reqs[i]->state == RS_DONE) req_free(g->reqs[i]);
        else g->reqs[k++] = g->reqs[i];
    }
    g->n_reqs = k;
}

static void process_cancels(tw_gen *g) {
    for (size_t i = 0; i < g->n_reqs; i++) {
        gen_req *r = g->reqs[i];
        if (r->cancel && r->state != RS_DONE) end_request(g, r, TW_STOP_CANCELLED);
    }
}

void tw_gen_free(tw_gen *g) {
    if (!g) return;
    g->in_step = 1; /* callbacks may not re-enter */
    for (size_t i = 0; i < g->n_reqs; i++) {
        gen_req *r = g->reqs[i];
        if (r->state != RS_DONE) end_request(g, r, TW_STOP_CANCELLED);
    }
    for (size_t i = 0; i < g->n_reqs; i++) req_free(g->reqs[i]);
    tw_free(g->reqs);
    tw_free(g->b_tok);
    tw_free(g->b_pos);
    tw_free(g->b_seq);
    tw_free(g->b_want);
    tw_free(g->b_owner);
    tw_free(g->logits);
    tw_sb_free(&g->piece);
    tw_sb_free(&g->out);
    tw_free(g);
}

int32_t tw_gen_n_active(const tw_gen *g) {
    int32_t n = 0;
    for (size_t i = 0; i < g->n_reqs; i++) n += g->reqs[i]->state != RS_DONE;
    return n;
}

void tw_gen_cancel(tw_gen *g, int32_t id) {
    for (size_t i = 0; i < g->n_reqs; i++) {
        gen_req *r = g->reqs[i];
        if (r->id != id || r->state == RS_DONE) continue;
        r->cancel = 1;
        if (!g->in_step) {
            g->in_step = 1;
            end_request(g, r, TW_STOP_CANCELLED);
            g->in_step = 0;
            compact(g);
        }
        return;
    }
}

/* ---- submit ------------------------------------------------------------------------------ */

tw_status tw_gen_submit(tw_gen *g, const tw_gen_request *q, int32_t *id) {
    if (q->n_prompt < 1 || !q->prompt)
        return tw_error(TW_ERR_ARG, "generate: the prompt is empty (n_prompt %d)", q->n_prompt);
    for (int32_t i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= g->n_vocab)
            return tw_error(TW_ERR_ARG, "generate: prompt token %d is %d, outside [0, %d)", i,
                            q->prompt[i], g->n_vocab);
    if (q->n_prompt >= g->n_ctx)
        return tw_error(TW_ERR_ARG, "prompt has %d tokens; the context holds %d", q->n_prompt,
                        g->n_ctx);
    if (q->max_tokens == 0 || q->max_tokens < -1)
        return tw_error(TW_ERR_ARG, "generate: max_tokens %d must be >= 1 (or -1: no limit)",
                        q->max_tokens);
    for (size_t i = 0; i < q->n_stop; i++)
        if (!q->stop[i] || !q->stop[i][0])
            return tw_error(TW_ERR_ARG, "generate: stop string %zu is empty", i);
    tw_status st = tw_sampler_params_check(&q->sampling);
    if (st) return st;

    gen_req *r = tw_calloc(1, sizeof *r);
    if (!r) return TW_ERR_NOMEM;
    if (tw_gen_text_init(&r->text, q->stop, q->n_stop) != TW_OK) {
        tw_free(r);
        return tw_error(TW_ERR_NOMEM, "generate: out of memory queuing a request");
    }
    r->seq = -1;
    r->n_prompt = q->n_prompt;
    r->max_tokens = q->max_tokens;
    r->ignore_eos = q->ignore_eos;
    r->callback = q->callback;
    r->user = q->user;
    r->prompt = tw_malloc((size_t)q->n_prompt * sizeof *r->prompt);
    r->stop_tokens = q->n_stop_tokens ? tw_malloc(q->n_stop_tokens * sizeof *r->stop_tokens) : NULL;
    if (!r->prompt || (q->n_stop_tokens && !r->stop_tokens)) goto nomem;
    memcpy(r->prompt, q->prompt, (size_t)q->n_prompt * sizeof *r->prompt);
    if (q->n_stop_tokens) memcpy(r->stop_tokens, q->stop_tokens, q->n_stop_tokens * sizeof *r->stop_tokens);
    r->n_stop_tokens = q->n_stop_tokens;
    st = tw_sampler_new(&q->sampling, g->n_vocab, &r->sampler);
    if (st) {
        req_free(r);
        return st;
    }
    for (int32_t i = 0; i < q->n_prompt; i++) tw_sampler_accept(r->sampler, q->prompt[i], 0);
    if (g->n_reqs == g->cap_reqs) {
        size_t ncap = g->cap_reqs ? g->cap_reqs * 2 : 8;
        gen_req **nr = tw_realloc(g->reqs, ncap * sizeof *nr);
        if (!nr) goto nomem;
        g->reqs = nr;
        g->cap_reqs = ncap;
    }
    r->id = g->next_id;
    g->next_id = g->next_id == INT32_MAX ? 1 : g->next_id + 1;
    r->state = RS_QUEUED;
    g->reqs[g->n_reqs++] = r;
    *id = r->id;
    return TW_OK;
nomem:
    req_free(r);
    return tw_error(TW_ERR_NOMEM, "generate: out of memory queuing a request");
}

/* ---- step -------------------------------------------------------------------------------- */

static tw_status ensure_batch(tw_gen *g, size_t n) {
    if (n <= g->cap_batch) return TW_OK;
    size_t ncap = g->cap_batch ? g->cap_batch : 64;
    while (ncap < n) ncap *= 2;
    int32_t *t = tw_realloc(g->b_tok, ncap * sizeof *t);
    if (t) g->b_tok = t;
    int32_t *p = tw_realloc(g->b_pos, ncap * sizeof *p);
    if (p) g->b_pos = p;
    int32_t *s = tw_realloc(g->b_seq, ncap * sizeof *s);
    if (s) g->b_seq = s;
    uint8_t *w = tw_realloc(g->b_want, ncap * sizeof *w);
    if (w) g->b_want = w;
    gen_req **o = tw_realloc(g->b_owner, ncap * sizeof *o);
    if (o) g->b_owner = o;
    if (!t || !p || !s || !w || !o) return tw_error(TW_ERR_NOMEM, "generate: out of memory for a batch of %zu", n);
    g->cap_batch = ncap;
    return TW_OK;
}

static tw_status ensure_rows(tw_gen *g, size_t rows) {
    if (rows <= g->cap_rows) return TW_OK;
    size_t ncap = g->cap_rows ? g->cap_rows : 4;
    while (ncap < rows) ncap *= 2;
    float *l = tw_realloc(g->logits, ncap * (size_t)g->n_vocab * sizeof *l);
    if (!l) return tw_error(TW_ERR_NOMEM, "generate: out of memory for %zu rows of logits", rows);
    g->logits = l;
    g->cap_rows = ncap;
    return TW_OK;
}

/* Starts a queued request: a KV sequence, with the cached pages of a matching prefix. Returns
 * 0, or -1 when no sequence can be had now (the request waits). */
static int req_start(tw_gen *g, gen_req *r) {
    int32_t seq;
    if (tw_kv_seq_new(g->kv, &seq) != TW_OK) return -1;
    int32_t reused = 0;
    if (tw_kv_seq_reuse_prefix(g->kv, seq, r->prompt, r->n_prompt, &reused) != TW_OK) reused = 0;
    r->seq = seq;
    r->n_done = reused;
    r->stats.n_prompt_cached = reused;
    r->state = RS_PREFILL;
    return 0;
}

static void batch_add(tw_gen *g, size_t *n, gen_req *r, int32_t tok, int32_t pos, int want) {
    g->b_tok[*n] = tok;
    g->b_pos[*n] = pos;
    g->b_seq[*n] = r->seq;
    g->b_want[*n] = (uint8_t)want;
    g->b_owner[*n] = r;
    (*n)++;
}

/* Fills the batch: one token per generating request, then prompt chunks (unless no_prefill)
 * within the step's budget. Returns the token count. */
static size_t build_batch(tw_gen *g, int no_prefill, tw_status *st) {
    size_t n_decode = 0, n = 0;
    for (size_t i = 0; i < g->n_reqs; i++) n_decode += g->reqs[i]->state == RS_DECODE;
    *st = ensure_batch(g, n_decode + (size_t)g->max_batch);
    if (*st) return 0;
    for (size_t i = 0; i < g->n_reqs; i++) {
        gen_req *r = g->reqs[i];
        r->chunk = 0;
        if (r->state == RS_DECODE) batch_add(g, &n, r, r->last_token, r->n_prompt + r->n_gen - 1, 1);
    }
    if (no_prefill) return n;
    int32_t budget = g->max_batch - (int32_t)n_decode;
    for (size_t i = 0; i < g->n_reqs && budget > 0; i++) {
        gen_req *r = g->reqs[i];
        if (r->state == RS_QUEUED && req_start(g, r) != 0) break; /* keep FIFO order */
        if (r->state != RS_PREFILL) continue;
        int32_t c = r->n_prompt - r->n_done;
        if (c > budget) c = budget;
        for (int32_t k = 0; k < c; k++)
            batch_add(g, &n, r, r->prompt[r->n_done + k], r->n_done + k,
                      r->n_done + k == r->n_prompt - 1);
        r->chunk = c;
        budget -= c;
    }
    return n;
}

/* After sampling `token` for r: the stop checks, text release and the event. */
static void on_token(tw_gen *g, gen_req *r, tw_sample smp) {
    double now = tw_now_s();
    if (r->n_gen == 0) r->t_first = now;
    r->t_last = now;
    r->n_gen++;
    int32_t t = smp.token;
    int is_end = !r->ignore_eos && t == g->eos;
    for (size_t k = 0; k < r->n_stop_tokens && !is_end; k++) is_end = t == r->stop_tokens[k];
    if (is_end) {
        tw_sb_clear(&g->out);
        finish(g, r, TW_STOP_EOS, t, smp.logprob, 0);
        return;
    }
    tw_sampler_accept(r->sampler, t, 1);
    tw_sb_clear(&g->piece);
    tw_sb_clear(&g->out);
    if (tw_tokenizer_token_type(g->tok, t) != TW_TOKTYPE_CONTROL &&
        tw_tokenizer_piece(g->tok, t, &g->piece) != TW_OK)
        tw_sb_clear(&g->piece); /* cannot happen for an id the sampler chose; no text then */
    int stopped = 0;
    if (tw_gen_text_push(&r->text, g->piece.buf ? g->piece.buf : "", g->piece.len, &g->out,
                         &stopped) != TW_OK) {
        end_request(g, r, TW_STOP_ERROR);
        return;
    }
    if (stopped) {
        finish(g, r, TW_STOP_STRING, t, smp.logprob, 1);
        return;
    }
    if (r->max_tokens > 0 && r->n_gen >= r->max_tokens) {
        finish(g, r, TW_STOP_MAX_TOKENS, t, smp.logprob, 0);
        return;
    }
    if (r->n_prompt + r->n_gen > g->n_ctx) {
        finish(g, r, TW_STOP_CONTEXT, t, smp.logprob, 0);
        return;
    }
    r->last_token = t;
    r->state = RS_DECODE;
    if (emit(g, r, t, smp.logprob, TW_STOP_NONE) != 0)
        end_request(g, r, TW_STOP_CANCELLED);
}

/* The youngest request in state `s` that has a token in the batch, or NULL. */
static gen_req *youngest_in_batch(tw_gen *g, size_t n, req_state s) {
    for (size_t i = n; i-- > 0;)
        if (g->b_owner[i]->state == s) return g->b_owner[i];
    return NULL;
}

tw_status tw_gen_step(tw_gen *g) {
    TW_ASSERT(!g->in_step); /* not from a callback */
    g->in_step = 1;
    process_cancels(g);
    compact(g);
    tw_status st = TW_OK;
    int no_prefill = 0;
    size_t n = 0;
    for (;;) {
        n = build_batch(g, no_prefill, &st);
        if (st || n == 0) break;
        size_t rows = 0;
        for (size_t i = 0; i < n; i++) rows += g->b_want[i];
        st = ensure_rows(g, rows ? rows : 1);
        if (st) break;
        double now = tw_now_s();
        for (size_t i = 0; i < g->n_reqs; i++)
            if (g->reqs[i]->chunk > 0 && g->reqs[i]->t_prompt_start == 0) g->reqs[i]->t_prompt_start = now;
        tw_batch b = {(int32_t)n, g->b_tok, g->b_pos, g->b_seq, g->b_want};
        st = tw_model_forward(g->m, g->kv, &b, g->logits);
        if (st != TW_ERR_NOMEM) break;
        /* the cache is full: prompt chunks wait; then the youngest generating request ends;
         * then (nothing generating) the youngest prompt gives its pages back */
        if (!no_prefill && youngest_in_batch(g, n, RS_PREFILL) && youngest_in_batch(g, n, RS_DECODE)) {
            no_prefill = 1;
        } else {
            gen_req *victim = youngest_in_batch(g, n, RS_DECODE);
            if (!victim) victim = youngest_in_batch(g, n, RS_PREFILL);
            tw_log_warn("generate: KV cache full; request %d ends (context)", victim->id);
            end_request(g, victim, TW_STOP_CONTEXT);
        }
        st = TW_OK;
    }
    if (st == TW_OK && n > 0) {
        for (size_t i = 0; i < g->n_reqs; i++) g->reqs[i]->n_done += g->reqs[i]->chunk;
        size_t row = 0;
        for (size_t i = 0; i < n; i++) {
            if (!g->b_want[i]) continue;
            gen_req *r = g->b_owner[i];
            const float *lg = g->logits + row++ * (size_t)g->n_vocab;
            if (r->state == RS_DONE || r->cancel) continue;
            tw_sample smp;
            tw_status ss = tw_sampler_sample(r->sampler, lg, &smp);
            if (ss) {
                tw_error_wrap("request %d", r->id);
                st = ss;
                end_request(g, r, TW_STOP_ERROR);
                continue;
            }
            on_token(g, r, smp);
        }
    } else if (st) {
        /* the forward (or a buffer for it) failed: the requests of this batch end */
        char *msg = tw_strdup(tw_errmsg());
        for (size_t i = 0; i < n; i++)
            if (g->b_owner[i]->state != RS_DONE) end_request(g, g->b_owner[i], TW_STOP_ERROR);
        tw_error(st, "%s", msg ? msg : "generate: step failed");
        tw_free(msg);
    }
    if (st == TW_OK && n == 0 && tw_gen_n_active(g) > 0) {
        /* requests are queued, none could start, and nothing runs that would free a sequence:
         * the cache's sequences are all taken by someone else */
        st = tw_error(TW_ERR_NOMEM, "generate: the KV cache has no free sequence");
        for (size_t i = 0; i < g->n_reqs; i++)
            if (g->reqs[i]->state == RS_QUEUED) end_request(g, g->reqs[i], TW_STOP_ERROR);
    }
    process_cancels(g);
    compact(g);
    g->in_step = 0;
    return st;
}

tw_status tw_gen_run(tw_gen *g) {
    tw_status first = TW_OK;
    while (tw_gen_n_active(g) > 0) {
        tw_status st = tw_gen_step(g);
        if (st && !first) first = st;
    }
    return first;
}
