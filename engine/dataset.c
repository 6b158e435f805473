/* dataset.c: JSONL instruction and preference datasets (dataset.h). */
#include "dataset.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* ---- growable arrays --------------------------------------------------------------------- */

typedef struct {
    int32_t *ids;  /* (n) */
    uint8_t *mask; /* (n) */
    size_t n, cap;
} tokvec;

static int tv_reserve(tokvec *v, size_t n) {
    if (n <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 1024;
    while (cap < n) cap *= 2;
    int32_t *ids = tw_realloc(v->ids, cap * sizeof *ids);
    if (!ids) return -1;
    v->ids = ids;
    uint8_t *mask = tw_realloc(v->mask, cap);
    if (!mask) return -1;
    v->mask = mask;
    v->cap = cap;
    return 0;
}

static void tv_free(tokvec *v) {
    tw_free(v->ids);
    tw_free(v->mask);
    memset(v, 0, sizeof *v);
}

/* ---- the dataset ------------------------------------------------------------------------- */

typedef struct {
    size_t off, n; /* SFT: the sequence; preference: chosen */
    size_t off2, n2; /* preference: rejected */
    size_t poff, np; /* preference: prompt */
    size_t line;
    uint64_t hash;
    uint8_t format, truncated, eval;
} ds_rec;

struct ds_dataset {
    ds_kind kind;
    ds_opts opts;
    tokvec tok;     /* every sequence's ids and mask, one after another */
    ds_rec *recs;   /* (n_recs) kept examples in file order */
    size_t n_recs, cap_recs;
    size_t *split_idx[2]; /* (count) rec index of each example of the split, file order */
    size_t count[2];
    ds_position pos[2];
    size_t *order;        /* (count[TRAIN]) the train order of order_epoch */
    uint64_t order_epoch;
    int order_valid;
    ds_stats stats;
    char hash_hex[65];
};

static const char *const format_names[DS_FORMAT_COUNT] = {"auto", "alpaca", "sharegpt",
                                                          "messages", "preference"};

const char *ds_format_name(ds_format f) {
    return (unsigned)f < DS_FORMAT_COUNT ? format_names[f] : NULL;
}

tw_status ds_format_parse(const char *name, ds_format *out) {
    for (int f = 0; f < DS_FORMAT_COUNT; f++)
        if (name && !strcmp(name, format_names[f])) {
            *out = (ds_format)f;
            return TW_OK;
        }
    return tw_error(TW_ERR_ARG, "unknown dataset format '%s' (known: auto, alpaca, sharegpt, "
                                "messages, preference)", name ? name : "(null)");
}

void ds_opts_default(ds_opts *o) {
    memset(o, 0, sizeof *o);
    o->format = DS_FORMAT_AUTO;
    o->max_len = 1024;
    o->long_policy = DS_LONG_TRUNCATE;
    o->eval_fraction = 0.05;
    o->shuffle = 1;
}

void ds_free(ds_dataset *ds) {
    if (!ds) return;
    tv_free(&ds->tok);
    tw_free(ds->recs);
    tw_free(ds->split_idx[0]);
    tw_free(ds->split_idx[1]);
    tw_free(ds->order);
    tw_free((char *)ds->opts.lineage);
    tw_free(ds);
}

ds_kind ds_get_kind(const ds_dataset *ds) { return ds->kind; }
const ds_stats *ds_get_stats(const ds_dataset *ds) { return &ds->stats; }
const char *ds_content_hash(const ds_dataset *ds) { return ds->hash_hex; }
size_t ds_count(const ds_dataset *ds, ds_split split) { return ds->count[split ? 1 : 0]; }

/* ---- one line -> messages ---------------------------------------------------------------- */

/* A line's conversation: messages whose strings live in the line's arena or JSON document. */
#define MAX_MSGS 4096
typedef struct {
    tw_chat_msg *msgs;
    size_t n, cap;
    tw_arena *arena;
} conv;

/* A bad line's reason is written here; the caller counts the line or fails (strict). */
typedef struct {
    char reason[256];
} badline;

static int bad(badline *b, const char *fmt, ...) TW_PRINTF(2, 3);
static int bad(badline *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->reason, sizeof b->reason, fmt, ap);
    va_end(ap);
    return -1;
}

/* -1 with b->reason set (bad input), -2 out of memory. */
static int conv_push(conv *c, const char *role, const char *content, badline *b) {
    if (c->n == c->cap) {
        if (c->cap >= MAX_MSGS) return bad(b, "more than %d messages", MAX_MSGS);
        size_t cap = c->cap ? c->cap * 2 : 8;
        tw_chat_msg *m = tw_arena_alloc(c->arena, cap * sizeof *m, _Alignof(tw_chat_msg));
        if (!m) return -2;
        if (c->n) memcpy(m, c->msgs, c->n * sizeof *m);
        c->msgs = m;
        c->cap = cap;
    }
    c->msgs[c->n].role = role;
    c->msgs[c->n].content = content;
    c->n++;
    return 0;
}

/* The text of a message's content: a string, or an array of {"type": "text", "text"} parts
 * joined. NULL (b->reason set) when neither; *nomem on allocation failure. */
static const char *content_text(const tw_json *j, conv *c, const char *where, badline *b,
                                int *nomem) {
    if (tw_json_is_string(j)) return tw_json_str(j);
    if (!tw_json_is_array(j)) {
        bad(b, "%s: content is %s", where, j ? "not a string" : "missing");
        return NULL;
    }
    tw_sb sb;
    tw_sb_init(&sb);
    for (tw_json *p = tw_json_first(j); p; p = tw_json_next(p)) {
        const char *type = tw_json_get_str(p, "type", NULL), *text = tw_json_get_str(p, "text", NULL);
        if (!type || strcmp(type, "text") || !text) {
            tw_sb_free(&sb);
            bad(b, "%s: a content part that is not {\"type\": \"text\", \"text\": ...}", where);
            return NULL;
        }
        tw_sb_puts(&sb, text);
    }
    if (sb.failed) {
        tw_sb_free(&sb);
        *nomem = 1;
        return NULL;
    }
    char *s = tw_arena_strndup(c->arena, tw_sb_str(&sb), sb.len);
    tw_sb_free(&sb);
    if (!s) *nomem = 1;
    return s;
}

static const char *map_role(const char *r) {
    if (!r) return NULL;
    if (!strcmp(r, "system")) return "system";
    if (!strcmp(r, "user") || !strcmp(r, "human")) return "user";
    if (!strcmp(r, "assistant") || !strcmp(r, "gpt") || !strcmp(r, "chatgpt")) return "assistant";
    return NULL;
}

/* Appends the messages of a JSON array (sharegpt keys when sharegpt, else role/content). */
static int read_msgs(const tw_json *arr, int sharegpt, const char *field, conv *c, badline *b) {
    if (!tw_json_is_array(arr)) return bad(b, "field '%s' is %s, not an array", field,
                                           arr ? "of another type" : "missing");
    size_t i = 0;
    for (tw_json *m = tw_json_first(arr); m; m = tw_json_next(m), i++) {
        char where[96];
        snprintf(where, sizeof where, "%s[%zu]", field, i);
        if (!tw_json_is_object(m)) return bad(b, "%s is not an object", where);
        const tw_json *rj = tw_json_get(m, sharegpt ? "from" : "role");
        if (!rj) rj = tw_json_get(m, sharegpt ? "role" : "from");
        const tw_json *cj = tw_json_get(m, sharegpt ? "value" : "content");
        if (!cj) cj = tw_json_get(m, sharegpt ? "content" : "value");
        const char *rs = tw_json_str(rj), *role = map_role(rs);
        if (!role)
            return bad(b, "%s: role '%.40s' is not system, user or assistant%s", where,
                       rs ? rs : "(missing)", sharegpt ? " (human, gpt)" : "");
        int nomem = 0;
        const char *text = content_text(cj, c, where, b, &nomem);
        if (nomem) return -2;
        if (!text) return -1;
        int r = conv_push(c, role, text, b);
        if (r) return r;
    }
    return 0;
}

static int is_blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r' && *s != '\v' && *s != '\f')
            return 0;
    return 1;
}

/* Checks a conversation: a system message only first, user/assistant after it, at least one
 * assistant turn, no empty assistant turn. Drops messages after the last assistant turn. */
static int check_conv(conv *c, badline *b) {
    size_t last = (size_t)-1;
    for (size_t i = 0; i < c->n; i++) {
        if (!strcmp(c->msgs[i].role, "system") && i > 0)
            return bad(b, "message %zu: a system message must come first", i);
        if (!strcmp(c->msgs[i].role, "assistant")) {
            if (is_blank(c->msgs[i].content)) return bad(b, "message %zu: empty assistant turn", i);
            last = i;
        }
    }
    if (last == (size_t)-1) return bad(b, "no assistant turn");
    size_t first = c->n && !strcmp(c->msgs[0].role, "system") ? 1 : 0;
    if (first >= c->n || strcmp(c->msgs[first].role, "user"))
        return bad(b, "the conversation must start with a user turn (after any system message)");
    c->n = last + 1;
    return 0;
}

static ds_format detect(const tw_json *o) {
    if (tw_json_get(o, "conversations")) return DS_FORMAT_SHAREGPT;
    if (tw_json_get(o, "messages")) return DS_FORMAT_MESSAGES;
    if (tw_json_get(o, "chosen") && tw_json_get(o, "rejected")) return DS_FORMAT_PREFERENCE;
    if (tw_json_get(o, "instruction") || tw_json_get(o, "output")) return DS_FORMAT_ALPACA;
    return DS_FORMAT_AUTO;
}

static const char *get_str_field(const tw_json *o, const char *key, int required, badline *b,
                                 int *err) {
    const tw_json *j = tw_json_get(o, key);
    if (!j || tw_json_is_null(j)) {
        if (required) *err = bad(b, "field '%s' is missing", key);
        return NULL;
    }
    if (!tw_json_is_string(j)) {
        *err = bad(b, "field '%s' is not a string", key);
        return NULL;
    }
    return tw_json_str(j);
}

/* SFT line -> conversation. */
static int parse_sft(const tw_json *o, ds_format f, conv *c, badline *b) {
    int err = 0;
    if (f == DS_FORMAT_SHAREGPT) return read_msgs(tw_json_get(o, "conversations"), 1, "conversations", c, b);
    if (f == DS_FORMAT_MESSAGES) return read_msgs(tw_json_get(o, "messages"), 0, "messages", c, b);
    /* alpaca */
    const char *sys = get_str_field(o, "system", 0, b, &err);
    const char *ins = get_str_field(o, "instruction", 1, b, &err);
    const char *inp = get_str_field(o, "input", 0, b, &err);
    const char *out = get_str_field(o, "output", 1, b, &err);
    if (err) return err;
    if (is_blank(ins)) return bad(b, "field 'instruction' is empty");
    const char *user = ins;
    if (inp && *inp) {
        size_t a = strlen(ins), n = strlen(inp);
        char *u = tw_arena_alloc(c->arena, a + 2 + n + 1, 1);
        if (!u) return -2;
        memcpy(u, ins, a);
        memcpy(u + a, "\n\n", 2);
        memcpy(u + a + 2, inp, n + 1);
        user = u;
    }
    int r;
    if (sys && *sys && (r = conv_push(c, "system", sys, b))) return r;
    if ((r = conv_push(c, "user", user, b))) return r;
    return conv_push(c, "assistant", out, b);
}

/* The response text of a chosen/rejected field (string, assistant message object, or array
 * whose last message is the assistant's). *arr is set to the array when there is one. */
static const char *response_text(const tw_json *j, const char *field, conv *c, badline *b,
                                 const tw_json **arr, int *nomem) {
    *arr = NULL;
    if (tw_json_is_string(j)) return tw_json_str(j);
    const tw_json *m = j;
    if (tw_json_is_array(j)) {
        *arr = j;
        m = NULL;
        for (tw_json *e = tw_json_first(j); e; e = tw_json_next(e)) m = e;
        if (!m) {
            bad(b, "field '%s' is an empty array", field);
            return NULL;
        }
    }
    if (!tw_json_is_object(m)) {
        bad(b, "field '%s' is %s; expected a string, a message or an array of messages", field,
            j ? "of another type" : "missing");
        return NULL;
    }
    const char *role = map_role(tw_json_get_str(m, "role", tw_json_get_str(m, "from", NULL)));
    if (!role || strcmp(role, "assistant")) {
        bad(b, "field '%s': the response is not an assistant message", field);
        return NULL;
    }
    const tw_json *cj = tw_json_get(m, "content");
    if (!cj) cj = tw_json_get(m, "value");
    return content_text(cj, c, field, b, nomem);
}

/* Preference line -> prompt conversation + the two responses. */
static int parse_pref(const tw_json *o, conv *c, const char **chosen, const char **rejected,
                      badline *b) {
    int err = 0, nomem = 0;
    const char *sys = get_str_field(o, "system", 0, b, &err);
    if (err) return err;
    const tw_json *carr, *rarr;
    *chosen = response_text(tw_json_get(o, "chosen"), "chosen", c, b, &carr, &nomem);
    if (nomem) return -2;
    if (!*chosen) return -1;
    *rejected = response_text(tw_json_get(o, "rejected"), "rejected", c, b, &rarr, &nomem);
    if (nomem) return -2;
    if (!*rejected) return -1;
    if (is_blank(*chosen)) return bad(b, "field 'chosen': empty assistant turn");
    if (is_blank(*rejected)) return bad(b, "field 'rejected': empty assistant turn");
    int r;
    if (sys && *sys && (r = conv_push(c, "system", sys, b))) return r;
    const tw_json *p = tw_json_get(o, "prompt");
    if (tw_json_is_string(p)) {
        if (is_blank(tw_json_str(p))) return bad(b, "field 'prompt' is empty");
        if ((r = conv_push(c, "user", tw_json_str(p), b))) return r;
    } else if (tw_json_is_array(p)) {
        if ((r = read_msgs(p, 0, "prompt", c, b))) return r;
    } else if (!p && carr && tw_json_size(carr) >= 2) {
        /* the chosen conversation's earlier messages are the prompt */
        size_t n = tw_json_size(carr) - 1, i = 0;
        for (tw_json *e = tw_json_first(carr); e && i < n; e = tw_json_next(e), i++) {
            const char *role = map_role(tw_json_get_str(e, "role", tw_json_get_str(e, "from", NULL)));
            const tw_json *cj = tw_json_get(e, "content");
            if (!cj) cj = tw_json_get(e, "value");
            char where[64];
            snprintf(where, sizeof where, "chosen[%zu]", i);
            if (!role) return bad(b, "%s: role is not system, user or assistant", where);
            const char *text = content_text(cj, c, where, b, &nomem);
            if (nomem) return -2;
            if (!text) return -1;
            if ((r = conv_push(c, role, text, b))) return r;
        }
    } else {
        return bad(b, "field 'prompt' is %s; expected a string or an array of messages",
                   p ? "of another type" : "missing");
    }
    /* the prompt must be a valid conversation ending with a user turn */
    size_t first = c->n && !strcmp(c->msgs[0].role, "system") ? 1 : 0;
    if (first >= c->n) return bad(b, "field 'prompt' has no user turn");
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->msgs[i].role, "system") && i > 0)
            return bad(b, "prompt message %zu: a system message must come first", i);
    if (strcmp(c->msgs[c->n - 1].role, "user"))
        return bad(b, "the prompt must end with a user turn");
    return 0;
}

/* ---- rendering and masks ----------------------------------------------------------------- */

typedef struct {
    const tw_tokenizer *tok;
    const tw_chat_template *tpl;
    tw_sb text;       /* scratch */
    tw_tokens full;   /* scratch: the whole conversation */
    tw_tokens part;   /* scratch: a prefix */
} renderer;

static const unsigned TOK_FLAGS = TW_TOK_ADD_SPECIAL | TW_TOK_PARSE_SPECIAL;

static size_t lcp(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

/* Renders msgs[0..n) (with the generation prompt when gen) into r->text; cut_eot: end the text
 * right after the last end-of-turn marker (alpaca: drop the turn's trailing "\n\n"). */
static tw_status render(renderer *r, const tw_chat_msg *msgs, size_t n, int gen, int cut_eot) {
    tw_sb_clear(&r->text);
    tw_status st = tw_chat_template_render(r->tpl, msgs, n, gen, &r->text);
    if (st) return st;
    if (cut_eot) {
        const char *eot = tw_chat_template_eot(r->tpl);
        const char *s = tw_sb_str(&r->text);
        if (eot) {
            const char *last = NULL;
            for (const char *p = strstr(s, eot); p; p = strstr(p + 1, eot)) last = p;
            if (last) r->text.len = (size_t)(last - s) + strlen(eot);
        } else if (r->text.len >= 2 && !memcmp(s + r->text.len - 2, "\n\n", 2)) {
            r->text.len -= 2;
        }
        if (r->text.buf) r->text.buf[r->text.len] = 0;
    }
    return TW_OK;
}

static tw_status encode_text(renderer *r, tw_tokens *out) {
    out->n = 0;
    return tw_tokenizer_encode(r->tok, tw_sb_str(&r->text), r->text.len, TOK_FLAGS, out);
}

/* Tokenizes msgs[0..n) (ending with an assistant turn) and appends ids + mask to dst; the
 * mask covers every assistant turn, or only the last when last_only. Returns the number of
 * ids appended in *n_out. */
static tw_status encode_conv(renderer *r, const tw_chat_msg *msgs, size_t n, int last_only,
                             tokvec *dst, size_t *n_out) {
    tw_status st = render(r, msgs, n, 0, 0);
    if (!st) st = encode_text(r, &r->full);
    if (st) return st;
    int32_t eos = tw_tokenizer_eos(r->tok);
    int insert_eos = tw_chat_template_eot(r->tpl) == NULL && eos >= 0;
    size_t n_asst = 0;
    for (size_t i = 0; i < n; i++) n_asst += !strcmp(msgs[i].role, "assistant");
    size_t total = r->full.n + (insert_eos ? n_asst : 0);
    if (tv_reserve(dst, dst->n + total)) return tw_error(TW_ERR_NOMEM, "dataset: out of memory");
    int32_t *ids = dst->ids + dst->n;
    uint8_t *mask = dst->mask + dst->n;
    memcpy(ids, r->full.ids, r->full.n * sizeof *ids);
    memset(mask, 0, total);
    size_t nf = r->full.n, inserted = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(msgs[i].role, "assistant") || (last_only && i + 1 != n)) continue;
        /* start: the prompt up to this turn with the generation prompt */
        if ((st = render(r, msgs, i, 1, 0)) || (st = encode_text(r, &r->part))) return st;
        size_t s = lcp(r->part.ids, r->part.n, r->full.ids, r->full.n);
        /* end: through this turn's end-of-turn marker */
        if ((st = render(r, msgs, i + 1, 0, 1)) || (st = encode_text(r, &r->part))) return st;
        size_t l = lcp(r->part.ids, r->part.n, r->full.ids, r->full.n);
        size_t e = l == r->part.n ? l : l + 1;
        if (e > nf) e = nf;
        /* shift by the EOS ids inserted before this turn */
        s += inserted;
        e += inserted;
        if (insert_eos) {
            size_t cur = nf + inserted;
            memmove(ids + e + 1, ids + e, (cur - e) * sizeof *ids);
            memmove(mask + e + 1, mask + e, cur - e);
            ids[e] = eos;
            mask[e] = 0;
            e++;
            inserted++;
        }
        for (size_t t = s; t < e; t++) mask[t] = 1;
    }
    *n_out = nf + inserted;
    return TW_OK;
}

/* ---- split hash -------------------------------------------------------------------------- */

static void hash_msgs(tw_sha256_ctx *h, const tw_chat_msg *m, size_t n) {
    for (size_t i = 0; i < n; i++) {
        tw_sha256_update(h, m[i].role, strlen(m[i].role) + 1);
        tw_sha256_update(h, m[i].content, strlen(m[i].content) + 1);
    }
}

static uint64_t hash_final(tw_sha256_ctx *h) {
    uint8_t d[32];
    tw_sha256_final(h, d);
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | d[i];
    return v;
}

static void hash_seed(tw_sha256_ctx *h, uint64_t seed) {
    uint8_t s[8];
    for (int i = 0; i < 8; i++) s[i] = (uint8_t)(seed >> (8 * i));
    tw_sha256_init(h);
    tw_sha256_update(h, s, 8);
}

/* ---- building ------------------------------------------------------------------------------ */

static int rec_push(ds_dataset *ds, const ds_rec *r) {
    if (ds->n_recs == ds->cap_recs) {
        size_t cap = ds->cap_recs ? ds->cap_recs * 2 : 256;
        ds_rec *n = tw_realloc(ds->recs, cap * sizeof *n);
        if (!n) return -1;
        ds->recs = n;
        ds->cap_recs = cap;
    }
    ds->recs[ds->n_recs++] = *r;
    return 0;
}

static int has_loss(const uint8_t *mask, size_t n) {
    for (size_t i = 1; i < n; i++)
        if (mask[i]) return 1;
    return 0;
}

/* Applies max_len to the sequence at [off, off+*n). 1: keep (maybe truncated), 0: drop. */
static int fit(const ds_dataset *ds, size_t off, size_t *n, int *truncated) {
    if (*n > ds->opts.max_len) {
        if (ds->opts.long_policy == DS_LONG_DROP) return 0;
        *n = ds->opts.max_len;
        *truncated = 1;
    }
    return has_loss(ds->tok.mask + off, *n);
}

typedef struct {
    ds_dataset *ds;
    renderer r;
    const char *name;
} builder;

/* One line. 0: done (kept or dropped for length), -1: bad line (b set), or a tw_status error
 * (NOMEM, tokenizer failure) returned as a positive number. */
static int build_line(builder *bd, const char *line, size_t len, size_t lineno, badline *b) {
    ds_dataset *ds = bd->ds;
    char what[64];
    snprintf(what, sizeof what, "line %zu", lineno);
    tw_json *doc = tw_json_parse(line, len, what);
    if (!doc) {
        if (tw_errcode() == TW_ERR_NOMEM) return TW_ERR_NOMEM;
        return bad(b, "not JSON (%.200s)", tw_errmsg());
    }
    int ret = 0;
    tw_arena *arena = NULL;
    if (!tw_json_is_object(doc)) {
        ret = bad(b, "not a JSON object");
        goto done;
    }
    ds_format f = ds->opts.format != DS_FORMAT_AUTO ? ds->opts.format : detect(doc);
    if (f == DS_FORMAT_AUTO) {
        ret = bad(b, "no known format: expected instruction/output (alpaca), conversations "
                     "(sharegpt), messages, or prompt/chosen/rejected (preference)");
        goto done;
    }
    ds_kind kind = f == DS_FORMAT_PREFERENCE ? DS_KIND_PREFERENCE : DS_KIND_SFT;
    if (ds->stats.n_examples + ds->stats.n_dropped_long > 0 && kind != ds->kind) {
        ret = bad(b, "a %s line in a %s dataset", kind == DS_KIND_SFT ? "SFT" : "preference",
                  ds->kind == DS_KIND_SFT ? "SFT" : "preference");
        goto done;
    }
    arena = tw_arena_new(0);
    if (!arena) {
        ret = TW_ERR_NOMEM;
        goto done;
    }
    conv c = {NULL, 0, 0, arena};
    const char *chosen = NULL, *rejected = NULL;
    int pr = kind == DS_KIND_SFT ? parse_sft(doc, f, &c, b) : parse_pref(doc, &c, &chosen, &rejected, b);
    if (pr == 0 && kind == DS_KIND_SFT) pr = check_conv(&c, b);
    if (pr == -2) {
        ret = TW_ERR_NOMEM;
        goto done;
    }
    if (pr) {
        ret = -1;
        goto done;
    }
    ds_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.line = lineno;
    rec.format = (uint8_t)f;
    tw_sha256_ctx h;
    hash_seed(&h, ds->opts.split_seed);
    hash_msgs(&h, c.msgs, c.n);
    size_t mark = ds->tok.n;
    tw_status st;
    int keep = 1, trunc = 0;
    if (kind == DS_KIND_SFT) {
        rec.off = ds->tok.n;
        st = encode_conv(&bd->r, c.msgs, c.n, 0, &ds->tok, &rec.n);
        if (st) {
            ret = (int)st;
            goto done;
        }
        ds->tok.n += rec.n;
        keep = fit(ds, rec.off, &rec.n, &trunc);
    } else {
        tw_chat_msg resp[2] = {{"assistant", chosen}, {"assistant", rejected}};
        tw_sha256_update(&h, "\x01", 1);
        hash_msgs(&h, resp, 2);
        /* the prompt alone, with the generation prompt */
        if ((st = render(&bd->r, c.msgs, c.n, 1, 0)) || (st = encode_text(&bd->r, &bd->r.part))) {
            ret = (int)st;
            goto done;
        }
        if (tv_reserve(&ds->tok, ds->tok.n + bd->r.part.n)) {
            ret = TW_ERR_NOMEM;
            goto done;
        }
        rec.poff = ds->tok.n;
        rec.np = bd->r.part.n;
        memcpy(ds->tok.ids + rec.poff, bd->r.part.ids, rec.np * sizeof(int32_t));
        memset(ds->tok.mask + rec.poff, 0, rec.np);
        ds->tok.n += rec.np;
        for (int side = 0; side < 2; side++) {
            if (conv_push(&c, "assistant", side ? rejected : chosen, b)) {
                ret = TW_ERR_NOMEM;
                goto done;
            }
            size_t off = ds->tok.n, n = 0;
            st = encode_conv(&bd->r, c.msgs, c.n, 1, &ds->tok, &n);
            c.n--;
            if (st) {
                ret = (int)st;
                goto done;
            }
            ds->tok.n += n;
            keep &= fit(ds, off, &n, &trunc);
            if (side) rec.off2 = off, rec.n2 = n;
            else rec.off = off, rec.n = n;
        }
        if (rec.np > ds->opts.max_len) rec.np = ds->opts.max_len;
    }
    rec.hash = hash_final(&h);
    if (!keep) {
        ds->tok.n = mark; /* give the ids back */
        ds->stats.n_dropped_long++;
        ds->kind = kind;
        goto done;
    }
    /* a truncated sequence keeps its place in tok; the ids past n are unused */
    rec.truncated = (uint8_t)trunc;
    if (rec_push(ds, &rec)) {
        ret = TW_ERR_NOMEM;
        goto done;
    }
    ds->kind = kind;
    ds->stats.n_examples++;
    ds->stats.n_truncated += (size_t)trunc;
    ds->stats.n_format[f]++;
done:
    tw_arena_free(arena);
    tw_json_free(doc);
    return ret;
}

static int cmp_hash(const void *a, const void *b, const ds_rec *recs) {
    const ds_rec *x = &recs[*(const size_t *)a], *y = &recs[*(const size_t *)b];
    if (x->hash != y->hash) return x->hash < y->hash ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* qsort has no context argument in C11: a small merge sort does the eval_count ranking. */
static void sort_by_hash(size_t *idx, size_t *tmp, size_t n, const ds_rec *recs) {
    if (n < 2) return;
    size_t h = n / 2;
    sort_by_hash(idx, tmp, h, recs);
    sort_by_hash(idx + h, tmp, n - h, recs);
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = cmp_hash(&idx[i], &idx[j], recs) <= 0 ? idx[i++] : idx[j++];
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
}

static tw_status make_split(ds_dataset *ds, const char *name) {
    size_t n = ds->n_recs;
    if (ds->opts.eval_count > 0) {
        size_t *idx = tw_malloc(n * sizeof *idx), *tmp = tw_malloc(n * sizeof *tmp);
        if (!idx || !tmp) {
            tw_free(idx);
            tw_free(tmp);
            return tw_error(TW_ERR_NOMEM, "dataset: out of memory");
        }
        for (size_t i = 0; i < n; i++) idx[i] = i;
        sort_by_hash(idx, tmp, n, ds->recs);
        size_t k = ds->opts.eval_count < n ? ds->opts.eval_count : n;
        for (size_t i = 0; i < k; i++) ds->recs[idx[i]].eval = 1;
        tw_free(idx);
        tw_free(tmp);
    } else {
        /* eval when hash < fraction * 2^64 (computed in long double: exact for 2^-k) */
        long double lim = (long double)ds->opts.eval_fraction * 18446744073709551616.0L;
        for (size_t i = 0; i < n; i++) ds->recs[i].eval = (long double)ds->recs[i].hash < lim;
    }
    size_t ne = 0;
    for (size_t i = 0; i < n; i++) ne += ds->recs[i].eval;
    if (ne == n)
        return tw_error(TW_ERR_ARG, "%s: the held-out split takes all %zu examples; none is left "
                                    "to train on", name, n);
    ds->count[0] = n - ne;
    ds->count[1] = ne;
    for (int s = 0; s < 2; s++) {
        ds->split_idx[s] = tw_malloc((ds->count[s] ? ds->count[s] : 1) * sizeof(size_t));
        if (!ds->split_idx[s]) return tw_error(TW_ERR_NOMEM, "dataset: out of memory");
    }
    size_t k[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        int s = ds->recs[i].eval;
        ds->split_idx[s][k[s]++] = i;
    }
    ds->stats.n_train = ds->count[0];
    ds->stats.n_eval = ds->count[1];
    for (size_t i = 0; i < n; i++) {
        const ds_rec *r = &ds->recs[i];
        size_t seqs[2][2] = {{r->off, r->n}, {r->off2, r->n2}};
        for (int q = 0; q < (ds->kind == DS_KIND_PREFERENCE ? 2 : 1); q++) {
            ds->stats.n_tokens += seqs[q][1];
            for (size_t t = 0; t < seqs[q][1]; t++) ds->stats.n_loss_tokens += ds->tok.mask[seqs[q][0] + t];
        }
    }
    return TW_OK;
}

static void content_hash(ds_dataset *ds, const char *text, size_t len, const tw_tokenizer *tok,
                         const tw_chat_template *tpl) {
    tw_sha256_ctx h;
    tw_sha256_init(&h);
    static const char magic[] = "twin-dataset-v1\n";
    tw_sha256_update(&h, magic, sizeof magic - 1);
    uint8_t nb[8];
    for (int i = 0; i < 8; i++) nb[i] = (uint8_t)((uint64_t)len >> (8 * i));
    tw_sha256_update(&h, nb, 8);
    if (len) tw_sha256_update(&h, text, len);
    const char *sys = tw_chat_template_default_system(tpl);
    char opts[512];
    int k = snprintf(opts, sizeof opts,
                     "format=%s;template=%s;tokenizer=%d/%s/%d;max_len=%zu;long=%s;"
                     "split_seed=%llu;eval_fraction=%.17g;eval_count=%zu;system=",
                     format_names[ds->opts.format], tw_chat_template_name(tpl),
                     (int)tw_tokenizer_kind(tok), tw_tokenizer_pre_name(tok),
                     (int)tw_tokenizer_n_vocab(tok), ds->opts.max_len,
                     ds->opts.long_policy == DS_LONG_DROP ? "drop" : "truncate",
                     (unsigned long long)ds->opts.split_seed, ds->opts.eval_fraction,
                     ds->opts.eval_count);
    tw_sha256_update(&h, opts, (size_t)k < sizeof opts ? (size_t)k : sizeof opts - 1);
    if (sys) tw_sha256_update(&h, sys, strlen(sys) + 1);
    tw_sha256_update(&h, ";lineage=", 9);
    if (ds->opts.lineage) tw_sha256_update(&h, ds->opts.lineage, strlen(ds->opts.lineage));
    uint8_t d[32];
    tw_sha256_final(&h, d);
    tw_hex(d, 32, ds->hash_hex);
}

tw_status ds_open_mem(const char *name, const char *text, size_t len, const tw_tokenizer *tok,
                      const tw_chat_template *tpl, const ds_opts *opts, ds_dataset **out) {
    *out = NULL;
    if (!name) name = "(dataset)";
    if (!tok || !tpl || !opts || (!text && len))
        return tw_error(TW_ERR_ARG, "%s: no tokenizer, template, options or text", name);
    if (opts->max_len < 2)
        return tw_error(TW_ERR_ARG, "%s: max_len %zu is below 2", name, opts->max_len);
    if (!(opts->eval_fraction >= 0 && opts->eval_fraction < 1))
        return tw_error(TW_ERR_ARG, "%s: eval_fraction %g is not in [0, 1)", name,
                        opts->eval_fraction);
    if ((unsigned)opts->format >= DS_FORMAT_COUNT || (unsigned)opts->long_policy > DS_LONG_DROP)
        return tw_error(TW_ERR_ARG, "%s: unknown format or long_policy", name);
    ds_dataset *ds = tw_calloc(1, sizeof *ds);
    if (!ds) return TW_ERR_NOMEM;
    ds->opts = *opts;
    ds->opts.lineage = NULL;
    if (opts->lineage && !(ds->opts.lineage = tw_strdup(opts->lineage))) {
        ds_free(ds);
        return TW_ERR_NOMEM;
    }
    ds->kind = opts->format == DS_FORMAT_PREFERENCE ? DS_KIND_PREFERENCE : DS_KIND_SFT;
    builder bd = {ds, {tok, tpl, {0}, {0}, {0}}, name};
    tw_sb_init(&bd.r.text);
    tw_tokens_init(&bd.r.full);
    tw_tokens_init(&bd.r.part);
    tw_status st = TW_OK;
    size_t lineno = 0;
    for (size_t p = 0; p < len && st == TW_OK;) {
        const char *nl = memchr(text + p, '\n', len - p);
        size_t e = nl ? (size_t)(nl - text) : len, n = e - p;
        const char *line = text + p;
        p = e + 1;
        lineno++;
        if (n && line[n - 1] == '\r') n--;
        size_t a = 0;
        while (a < n && (line[a] == ' ' || line[a] == '\t')) a++;
        if (a == n) continue; /* blank */
        ds->stats.n_lines++;
        badline b;
        b.reason[0] = 0;
        int r = build_line(&bd, line, n, lineno, &b);
        if (r > 0) {
            st = (tw_status)r;
            tw_error_wrap("%s:%zu", name, lineno);
        } else if (r < 0) {
            if (opts->strict) {
                st = tw_error(TW_ERR_FORMAT, "%s:%zu: %s", name, lineno, b.reason);
                break;
            }
            if (ds->stats.n_bad < DS_BAD_KEPT) ds->stats.bad_lines[ds->stats.n_bad] = lineno;
            if (ds->stats.n_bad == 0)
                snprintf(ds->stats.bad_reason, sizeof ds->stats.bad_reason, "%s", b.reason);
            ds->stats.n_bad++;
        }
    }
    tw_sb_free(&bd.r.text);
    tw_tokens_free(&bd.r.full);
    tw_tokens_free(&bd.r.part);
    if (st == TW_OK && ds->n_recs == 0) {
        if (ds->stats.n_bad)
            st = tw_error(TW_ERR_FORMAT, "%s: no usable example (%zu bad lines; line %zu: %s)",
                          name, ds->stats.n_bad, ds->stats.bad_lines[0], ds->stats.bad_reason);
        else
            st = tw_error(TW_ERR_FORMAT, "%s: no usable example (%zu lines, %zu over max_len "
                                         "%zu)", name, ds->stats.n_lines,
                          ds->stats.n_dropped_long, opts->max_len);
    }
    if (st == TW_OK) st = make_split(ds, name);
    if (st == TW_OK && ds->count[0]) {
        ds->order = tw_malloc(ds->count[0] * sizeof(size_t));
        if (!ds->order) st = tw_error(TW_ERR_NOMEM, "dataset: out of memory");
    }
    if (st != TW_OK) {
        ds_free(ds);
        return st;
    }
    content_hash(ds, text, len, tok, tpl);
    *out = ds;
    return TW_OK;
}

tw_status ds_open(const char *path, const tw_tokenizer *tok, const tw_chat_template *tpl,
                  const ds_opts *opts, ds_dataset **out) {
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    tw_status st = tw_file_read(path, &text, &len);
    if (st) return st;
    st = ds_open_mem(path, text, len, tok, tpl, opts, out);
    tw_free(text);
    return st;
}

/* ---- access ------------------------------------------------------------------------------- */

static ds_seq seq_at(const ds_dataset *ds, size_t off, size_t n) {
    ds_seq s = {ds->tok.ids + off, ds->tok.mask + off, n};
    return s;
}

tw_status ds_example_get(const ds_dataset *ds, ds_split split, size_t i, ds_example *ex) {
    int s = split ? 1 : 0;
    memset(ex, 0, sizeof *ex);
    if (i >= ds->count[s])
        return tw_error(TW_ERR_ARG, "dataset: example %zu of the %s split does not exist (%zu)",
                        i, s ? "eval" : "train", ds->count[s]);
    const ds_rec *r = &ds->recs[ds->split_idx[s][i]];
    ex->line = r->line;
    ex->format = (ds_format)r->format;
    ex->truncated = r->truncated;
    ex->split_hash = r->hash;
    if (ds->kind == DS_KIND_SFT) {
        ex->seq = seq_at(ds, r->off, r->n);
    } else {
        ex->prompt = seq_at(ds, r->poff, r->np);
        ex->chosen = seq_at(ds, r->off, r->n);
        ex->rejected = seq_at(ds, r->off2, r->n2);
    }
    return TW_OK;
}

void ds_position_get(const ds_dataset *ds, ds_split split, ds_position *pos) {
    *pos = ds->pos[split ? 1 : 0];
}

tw_status ds_position_set(ds_dataset *ds, ds_split split, const ds_position *pos) {
    int s = split ? 1 : 0;
    if (pos->index > ds->count[s])
        return tw_error(TW_ERR_ARG, "dataset: position index %llu is past the %zu examples of "
                                    "the %s split", (unsigned long long)pos->index, ds->count[s],
                        s ? "eval" : "train");
    ds->pos[s] = *pos;
    return TW_OK;
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void fill_order(const ds_dataset *ds, int s, uint64_t epoch, size_t *order) {
    size_t n = ds->count[s];
    for (size_t i = 0; i < n; i++) order[i] = i;
    if (s == 1 || !ds->opts.shuffle) return;
    uint64_t st = ds->opts.shuffle_seed ^ (0xD1B54A32D192ED03ull * (epoch + 1));
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix64(&st) % i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

tw_status ds_epoch_order(const ds_dataset *ds, ds_split split, uint64_t epoch, size_t *order) {
    fill_order(ds, split ? 1 : 0, epoch, order);
    return TW_OK;
}

void ds_batch_init(ds_batch *b) { memset(b, 0, sizeof *b); }

void ds_batch_free(ds_batch *b) {
    if (!b) return;
    tw_free(b->tokens);
    tw_free(b->mask);
    tw_free(b->targets);
    tw_free(b->pos);
    tw_free(b->seg);
    tw_free(b->row_start);
    tw_free(b->ex_start);
    tw_free(b->ex_index);
    tw_free(b->ex_side);
    memset(b, 0, sizeof *b);
}

#define GROW(p, cap, need, type)                                                               \
    do {                                                                                       \
        if ((need) > (cap)) {                                                                  \
            type *q_ = tw_realloc((p), (need) * sizeof(type));                                 \
            if (!q_) return -1;                                                                \
            (p) = q_;                                                                          \
        }                                                                                      \
    } while (0)

static int batch_reserve(ds_batch *b, size_t t, size_t r, size_t e) {
    if (t > b->cap_t) {
        size_t c = b->cap_t ? b->cap_t : 1024;
        while (c < t) c *= 2;
        GROW(b->tokens, b->cap_t, c, int32_t);
        GROW(b->mask, b->cap_t, c, uint8_t);
        GROW(b->targets, b->cap_t, c, int32_t);
        GROW(b->pos, b->cap_t, c, int32_t);
        GROW(b->seg, b->cap_t, c, int32_t);
        b->cap_t = c;
    }
    if (r + 1 > b->cap_r) {
        size_t c = b->cap_r ? b->cap_r : 16;
        while (c < r + 1) c *= 2;
        GROW(b->row_start, b->cap_r, c, size_t);
        b->cap_r = c;
    }
    if (e + 1 > b->cap_e) {
        size_t c = b->cap_e ? b->cap_e : 16;
        while (c < e + 1) c *= 2;
        GROW(b->ex_start, b->cap_e, c, size_t);
        GROW(b->ex_index, b->cap_e, c, size_t);
        GROW(b->ex_side, b->cap_e, c, int8_t);
        b->cap_e = c;
    }
    return 0;
}

static int batch_add(ds_batch *b, ds_seq s, size_t index, int side, int new_row) {
    if (batch_reserve(b, b->n_tokens + s.n, b->n_rows + 1, b->n_examples + 1)) return -1;
    if (new_row) b->row_start[b->n_rows++] = b->n_tokens;
    size_t t0 = b->n_tokens, e = b->n_examples++;
    b->ex_start[e] = t0;
    b->ex_index[e] = index;
    b->ex_side[e] = (int8_t)side;
    memcpy(b->tokens + t0, s.ids, s.n * sizeof(int32_t));
    memcpy(b->mask + t0, s.mask, s.n);
    for (size_t t = 0; t < s.n; t++) {
        b->pos[t0 + t] = (int32_t)t;
        b->seg[t0 + t] = (int32_t)e;
        b->targets[t0 + t] = t + 1 < s.n && s.mask[t + 1] ? s.ids[t + 1] : -1;
    }
    b->n_tokens += s.n;
    b->row_start[b->n_rows] = b->n_tokens;
    b->ex_start[b->n_examples] = b->n_tokens;
    return 0;
}

tw_status ds_next_batch(ds_dataset *ds, ds_split split, size_t tokens_per_batch,
                        size_t n_sequences, ds_batch *b) {
    int s = split ? 1 : 0;
    b->n_tokens = b->n_rows = b->n_examples = 0;
    b->epoch_end = 0;
    if (!tokens_per_batch && !n_sequences)
        return tw_error(TW_ERR_ARG, "ds_next_batch: give tokens_per_batch or n_sequences");
    size_t n = ds->count[s];
    if (n == 0)
        return tw_error(TW_ERR_NOT_FOUND, "dataset: the %s split has no examples",
                        s ? "eval" : "train");
    ds_position p = ds->pos[s];
    if (p.index >= n) { /* a position saved at the end of an epoch */
        p.epoch++;
        p.index = 0;
    }
    b->start = p;
    size_t *order = NULL;
    if (s == 0 && ds->opts.shuffle) {
        if (!ds->order_valid || ds->order_epoch != p.epoch) {
            fill_order(ds, 0, p.epoch, ds->order);
            ds->order_epoch = p.epoch;
            ds->order_valid = 1;
        }
        order = ds->order;
    }
    int pref = ds->kind == DS_KIND_PREFERENCE;
    int pack = ds->opts.pack && !pref;
    size_t row_len = 0;
    while (p.index < n) {
        size_t idx = order ? order[p.index] : (size_t)p.index;
        ds_example ex;
        ds_example_get(ds, split, idx, &ex);
        size_t need = pref ? ex.chosen.n + ex.rejected.n : ex.seq.n;
        int new_row = !pack || b->n_rows == 0 || row_len + need > ds->opts.max_len;
        size_t rows_after = b->n_rows + (pref ? 2 : new_row ? 1 : 0);
        if (b->n_examples > 0) {
            if (tokens_per_batch && b->n_tokens + need > tokens_per_batch) break;
            if (n_sequences && rows_after > n_sequences) break;
        }
        int fail = pref ? batch_add(b, ex.chosen, idx, 0, 1) || batch_add(b, ex.rejected, idx, 1, 1)
                        : batch_add(b, ex.seq, idx, -1, new_row);
        if (fail) {
            b->n_tokens = b->n_rows = b->n_examples = 0;
            return tw_error(TW_ERR_NOMEM, "dataset: out of memory for a batch");
        }
        row_len = new_row ? need : row_len + need;
        p.index++;
    }
    if (p.index >= n) {
        b->epoch_end = 1;
        p.epoch++;
        p.index = 0;
    }
    ds->pos[s] = p;
    return TW_OK;
}
