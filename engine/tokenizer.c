/* tokenizer.c: loading a tokenizer (GGUF metadata or an HF tokenizer.json), added and
 * special tokens, the encode dispatch and decoding for the three kinds. The algorithms live
 * in tok_bpe.c + pretok.c (byte-level BPE), tok_spm.c (SentencePiece) and tok_wordpiece.c.
 *
 * Added tokens (GGUF token types CONTROL, UNKNOWN, USER_DEFINED; tokenizer.json
 * added_tokens with special true/false) are cut out of the text before the algorithm runs,
 * the longest match at the leftmost position, as HF tokenizers does: USER_DEFINED tokens
 * (HF's non-special added tokens, e.g. gpt-neox's runs of spaces) always, CONTROL and
 * UNKNOWN tokens only with TW_TOK_PARSE_SPECIAL. Both HF and llama.cpp match non-special
 * added tokens in plain text, and the conformance vectors expect it.
 *
 * Thread safety: loading builds a private object; once returned it is never written, so
 * encode/decode may run on many threads at once.
 */
#include "tokenizer_impl.h"

#include "json.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

/* ---- token vectors ----------------------------------------------------------------------- */

void tw_tokens_init(tw_tokens *t) { memset(t, 0, sizeof *t); }

void tw_tokens_free(tw_tokens *t) {
    if (!t) return;
    tw_free(t->ids);
    memset(t, 0, sizeof *t);
}

tw_status tw_tokens_push(tw_tokens *t, int32_t id) {
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        int32_t *ids = tw_realloc(t->ids, cap * sizeof *ids);
        if (!ids) return tw_error(TW_ERR_NOMEM, "tokens: no memory for %zu ids", cap);
        t->ids = ids;
        t->cap = cap;
    }
    t->ids[t->n++] = id;
    return TW_OK;
}

/* ---- string map -------------------------------------------------------------------------- */

uint64_t tok_hash(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xFF51AFD7ED558CCDull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)(uint8_t)s[i] << (8 * i);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return h;
}

/* The dense arrays hold cap/2 entries: the load factor never passes 1/2. */
static tw_status map_alloc(tok_map *m, uint32_t cap) {
    uint32_t dense = cap / 2;
    m->slots = tw_calloc(cap, sizeof *m->slots);
    m->hashes = tw_malloc((size_t)dense * sizeof *m->hashes);
    m->keys = tw_malloc((size_t)dense * sizeof *m->keys);
    m->key_lens = tw_malloc((size_t)dense * sizeof *m->key_lens);
    m->vals = tw_malloc((size_t)dense * sizeof *m->vals);
    if (!m->slots || !m->hashes || !m->keys || !m->key_lens || !m->vals) {
        tok_map_free(m);
        return tw_error(TW_ERR_NOMEM, "tokenizer: no memory for a map of %u slots", cap);
    }
    m->cap = cap;
    return TW_OK;
}

tw_status tok_map_init(tok_map *m, uint32_t expected) {
    memset(m, 0, sizeof *m);
    uint32_t cap = 16;
    while (cap / 2 < expected + 1) {
        if (cap >= (1u << 30)) return tw_error(TW_ERR_ARG, "tokenizer: map of %u keys", expected);
        cap <<= 1;
    }
    return map_alloc(m, cap);
}

void tok_map_free(tok_map *m) {
    if (!m) return;
    tw_free(m->slots);
    tw_free(m->hashes);
    tw_free((void *)m->keys);
    tw_free(m->key_lens);
    tw_free(m->vals);
    memset(m, 0, sizeof *m);
}

static void map_insert_slot(tok_map *m, uint32_t index) {
    uint32_t mask = m->cap - 1, h = (uint32_t)m->hashes[index] & mask;
    while (m->slots[h]) h = (h + 1) & mask;
    m->slots[h] = index + 1;
}

tw_status tok_map_put(tok_map *m, const char *key, uint32_t len, int32_t val) {
    uint64_t hash = tok_hash(key, len);
    uint32_t mask = m->cap - 1;
    for (uint32_t h = (uint32_t)hash & mask; m->slots[h]; h = (h + 1) & mask) {
        uint32_t i = m->slots[h] - 1;
        if (m->hashes[i] == hash && m->key_lens[i] == len && memcmp(m->keys[i], key, len) == 0) {
            m->vals[i] = val;
            return TW_OK;
        }
    }
    if (m->n + 1 >= m->cap / 2) { /* grow: twice the slots, rehash */
        if (m->cap >= (1u << 30)) return tw_error(TW_ERR_NOMEM, "tokenizer: map too large");
        tok_map g;
        memset(&g, 0, sizeof g);
        tw_status st = map_alloc(&g, m->cap * 2);
        if (st != TW_OK) return st;
        memcpy(g.hashes, m->hashes, m->n * sizeof *g.hashes);
        memcpy((void *)g.keys, m->keys, m->n * sizeof *g.keys);
        memcpy(g.key_lens, m->key_lens, m->n * sizeof *g.key_lens);
        memcpy(g.vals, m->vals, m->n * sizeof *g.vals);
        g.n = m->n;
        for (uint32_t i = 0; i < g.n; i++) map_insert_slot(&g, i);
        tok_map_free(m);
        *m = g;
    }
    uint32_t i = m->n++;
    m->hashes[i] = hash;
    m->keys[i] = key;
    m->key_lens[i] = len;
    m->vals[i] = val;
    map_insert_slot(m, i);
    return TW_OK;
}

int32_t tok_map_get(const tok_map *m, const char *key, uint32_t len) {
    if (!m->cap) return -1;
    uint64_t hash = tok_hash(key, len);
    uint32_t mask = m->cap - 1;
    for (uint32_t h = (uint32_t)hash & mask; m->slots[h]; h = (h + 1) & mask) {
        uint32_t i = m->slots[h] - 1;
        if (m->hashes[i] == hash && m->key_lens[i] == len && memcmp(m->keys[i], key, len) == 0)
            return m->vals[i];
    }
    return -1;
}

/* ---- building ---------------------------------------------------------------------------- */

static tw_tokenizer *tok_new(void) {
    tw_tokenizer *t = tw_calloc(1, sizeof *t);
    if (!t) return NULL;
    t->arena = tw_arena_new(1u << 20);
    if (!t->arena) {
        tw_free(t);
        return NULL;
    }
    t->bos = t->eos = t->unk = t->pad = t->sep = t->cls = t->eot = -1;
    for (int i = 0; i < 256; i++) t->byte_to_id[i] = -1;
    return t;
}

void tw_tokenizer_free(tw_tokenizer *t) {
    if (!t) return;
    tok_bpe_free(t);
    tok_wordpiece_free(t);
    tok_map_free(&t->text_to_id);
    tw_free(t->vocab);
    tw_free(t->specials);
    tw_arena_free(t->arena);
    tw_free(t);
}

static tw_status vocab_alloc(tw_tokenizer *t, int64_t n, const char *what) {
    if (n <= 0 || n > (1 << 26))
        return tw_error(TW_ERR_FORMAT, "%s: vocabulary of %lld tokens", what, (long long)n);
    t->n_vocab = (int32_t)n;
    t->vocab = tw_calloc((size_t)n, sizeof *t->vocab);
    if (!t->vocab) return tw_error(TW_ERR_NOMEM, "%s: no memory for %lld tokens", what, (long long)n);
    for (int64_t i = 0; i < n; i++) {
        t->vocab[i].text = "";
        t->vocab[i].type = TW_TOKTYPE_UNUSED;
    }
    return TW_OK;
}

static tw_status vocab_set(tw_tokenizer *t, int32_t id, const char *text, size_t len) {
    if (len > UINT32_MAX / 2) return tw_error(TW_ERR_FORMAT, "token %d: text too long", id);
    char *s = tw_arena_strndup(t->arena, text, len);
    if (!s) return tw_error(TW_ERR_NOMEM, "tokenizer: no memory for token texts");
    t->vocab[id].text = s;
    t->vocab[id].len = (uint32_t)len;
    return TW_OK;
}

static int is_added_type(tw_toktype ty) {
    return ty == TW_TOKTYPE_CONTROL || ty == TW_TOKTYPE_USER_DEFINED || ty == TW_TOKTYPE_UNKNOWN;
}

/* text -> id (first id wins), the added-token list and its trie. */
static tw_status build_lookup(tw_tokenizer *t) {
    tw_status st = tok_map_init(&t->text_to_id, (uint32_t)t->n_vocab);
    if (st != TW_OK) return st;
    int32_t n_added = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tok_entry *e = &t->vocab[id];
        if (e->len == 0) continue;
        if (tok_map_get(&t->text_to_id, e->text, e->len) < 0) {
            st = tok_map_put(&t->text_to_id, e->text, e->len, id);
            if (st != TW_OK) return st;
        }
        if (is_added_type(e->type)) n_added++;
    }
    t->specials = tw_malloc(((size_t)n_added + 1) * sizeof *t->specials);
    if (!t->specials) return tw_error(TW_ERR_NOMEM, "tokenizer: no memory for added tokens");
    for (int32_t id = 0; id < t->n_vocab; id++) {
        const tok_entry *e = &t->vocab[id];
        if (e->len == 0 || !is_added_type(e->type)) continue;
        t->specials[t->n_specials++] = id;
        if (e->type == TW_TOKTYPE_USER_DEFINED) t->n_user_defined++;
    }
    return TW_OK;
}

/* Sort keys: texts by bytes (the trie build), and lengths, longest first (t->specials). */
typedef struct {
    const char *text;
    uint32_t len;
    int32_t id;
} trie_key;

static int trie_key_cmp(const void *a, const void *b) {
    const trie_key *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->text, y->text, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

typedef struct {
    int32_t id, len;
} len_key;

static int len_key_cmp(const void *a, const void *b) {
    const len_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* A byte trie over the added tokens, built breadth-first from their sorted texts (no
 * recursion, so a hostile file with a very long token cannot exhaust the stack). */
static tw_status build_trie(tw_tokenizer *t) {
    int32_t n = t->n_specials;
    size_t total = 1;
    for (int32_t i = 0; i < n; i++) total += t->vocab[t->specials[i]].len;
    if (total > UINT32_MAX / 2) return tw_error(TW_ERR_FORMAT, "tokenizer: added tokens too long");
    trie_key *keys = tw_malloc(((size_t)n + 1) * sizeof *keys);
    len_key *lk = tw_malloc(((size_t)n + 1) * sizeof *lk);
    /* queue of (lo, hi, depth, node): at most one entry per node */
    uint32_t *q = tw_malloc(total * 4 * sizeof *q);
    tok_trie *tr = &t->trie;
    tr->nodes = tw_arena_alloc(t->arena, total * sizeof *tr->nodes, 8);
    tr->edges = tw_arena_alloc(t->arena, total * sizeof *tr->edges, 8);
    if (!keys || !lk || !q || !tr->nodes || !tr->edges) {
        tw_free(keys);
        tw_free(lk);
        tw_free(q);
        return tw_error(TW_ERR_NOMEM, "tokenizer: no memory for the added-token trie");
    }
    for (int32_t i = 0; i < n; i++) {
        const tok_entry *e = &t->vocab[t->specials[i]];
        keys[i] = (trie_key){e->text, e->len, t->specials[i]};
        lk[i] = (len_key){t->specials[i], (int32_t)e->len};
    }
    qsort(keys, (size_t)n, sizeof *keys, trie_key_cmp);
    qsort(lk, (size_t)n, sizeof *lk, len_key_cmp);
    for (int32_t i = 0; i < n; i++) t->specials[i] = lk[i].id;

    uint32_t n_nodes = 1, n_edges = 0, qh = 0, qt = 0;
    tr->nodes[0] = (tok_trie_node){-1, 0, 0};
    q[qt++] = 0, q[qt++] = (uint32_t)n, q[qt++] = 0, q[qt++] = 0;
    while (qh < qt) {
        uint32_t lo = q[qh], hi = q[qh + 1], d = q[qh + 2], node = q[qh + 3];
        qh += 4;
        uint32_t i = lo;
        if (i < hi && keys[i].len == d) { /* the token spelled by this prefix (lowest id) */
            tr->nodes[node].id = keys[i].id;
            while (i < hi && keys[i].len == d) i++;
        }
        tr->nodes[node].edge0 = n_edges;
        while (i < hi) {
            uint8_t byte = (uint8_t)keys[i].text[d];
            uint32_t j = i;
            while (j < hi && (uint8_t)keys[j].text[d] == byte) j++;
            uint32_t child = n_nodes++;
            tr->nodes[child] = (tok_trie_node){-1, 0, 0};
            tr->edges[n_edges++] = (tok_trie_edge){byte, child};
            tr->nodes[node].n_edges++;
            q[qt++] = i, q[qt++] = j, q[qt++] = d + 1, q[qt++] = child;
            if (d == 0) {
                tr->first_any[byte] = 1;
                for (uint32_t k = i; k < j; k++)
                    if (t->vocab[keys[k].id].type == TW_TOKTYPE_USER_DEFINED) tr->first_user[byte] = 1;
            }
            i = j;
        }
    }
    tr->n_nodes = n_nodes;
    tw_free(keys);
    tw_free(lk);
    tw_free(q);
    return TW_OK;
}

/* The longest added token at s[0..n) that is allowed here; its length, or 0. */
static size_t trie_match(const tw_tokenizer *t, const uint8_t *s, size_t n, int parse_special,
                         int32_t *id_out) {
    const tok_trie *tr = &t->trie;
    uint32_t node = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        const tok_trie_node *nd = &tr->nodes[node];
        uint32_t lo = nd->edge0, hi = nd->edge0 + nd->n_edges;
        while (lo < hi) {
            uint32_t mid = (lo + hi) / 2;
            if (tr->edges[mid].byte < s[i]) lo = mid + 1;
            else hi = mid;
        }
        if (lo == nd->edge0 + nd->n_edges || tr->edges[lo].byte != s[i]) break;
        node = tr->edges[lo].node;
        int32_t id = tr->nodes[node].id;
        if (id >= 0 && (parse_special || t->vocab[id].type == TW_TOKTYPE_USER_DEFINED)) {
            best = i + 1;
            *id_out = id;
        }
    }
    return best;
}

static tw_status finish(tw_tokenizer *t, const char *what) {
    tw_status st = build_lookup(t);
    if (st == TW_OK) st = build_trie(t);
    if (st != TW_OK) return tw_error_wrap("%s", what);
    return TW_OK;
}

static int32_t id_or_none(const tw_tokenizer *t, int64_t id) {
    return id >= 0 && id < t->n_vocab ? (int32_t)id : -1;
}

static void wp_detect(tw_tokenizer *t);

/* ---- GGUF -------------------------------------------------------------------------------- */

static int32_t gguf_token_id(const gguf_file *f, tw_tokenizer *t, const char *key, int32_t dflt) {
    int64_t v;
    tw_status st = gguf_get_i64(f, key, &v);
    if (st == TW_ERR_NOT_FOUND) return dflt;
    if (st != TW_OK || v < 0 || v >= t->n_vocab) {
        tw_error_clear();
        tw_log_warn("%s: %s is not a token id of the vocabulary; ignored", gguf_path(f), key);
        return -1;
    }
    return (int32_t)v;
}

static int gguf_flag(const gguf_file *f, const char *key, int dflt) {
    int v;
    tw_status st = gguf_get_bool(f, key, &v);
    if (st != TW_OK) {
        tw_error_clear();
        return dflt;
    }
    return v;
}

static tw_status load_gguf(tw_tokenizer *t, const gguf_file *f) {
    const char *path = gguf_path(f);
    gguf_str model;
    tw_status st = gguf_get_str(f, "tokenizer.ggml.model", &model);
    if (st != TW_OK)
        return tw_error(st == TW_ERR_NOT_FOUND ? TW_ERR_NOT_FOUND : TW_ERR_FORMAT,
                        "%s: tokenizer.ggml.model: missing or not a string (no tokenizer in "
                        "this file)", path);
    if (gguf_str_eq(model, "gpt2")) t->kind = TW_TOK_BPE;
    else if (gguf_str_eq(model, "llama")) t->kind = TW_TOK_SPM;
    else if (gguf_str_eq(model, "bert")) t->kind = TW_TOK_WORDPIECE;
    else
        return tw_error(TW_ERR_UNSUPPORTED, "%s: tokenizer.ggml.model '%.*s' is not supported "
                        "(gpt2, llama, bert)", path, (int)(model.len > 64 ? 64 : model.len), model.ptr);

    const gguf_value *toks = gguf_find(f, "tokenizer.ggml.tokens");
    if (!toks || toks->type != GGUF_TYPE_ARRAY || toks->v.arr.elem_type != GGUF_TYPE_STRING)
        return tw_error(TW_ERR_FORMAT, "%s: tokenizer.ggml.tokens: missing or not an array of "
                        "strings", path);
    st = vocab_alloc(t, (int64_t)toks->v.arr.count, path);
    if (st != TW_OK) return st;
    uint64_t n = toks->v.arr.count;

    const gguf_value *scores = gguf_find(f, "tokenizer.ggml.scores");
    if (scores && (scores->type != GGUF_TYPE_ARRAY || scores->v.arr.count != n ||
                   (scores->v.arr.elem_type != GGUF_TYPE_FLOAT32 &&
                    scores->v.arr.elem_type != GGUF_TYPE_FLOAT64)))
        return tw_error(TW_ERR_FORMAT, "%s: tokenizer.ggml.scores: not %llu floats", path,
                        (unsigned long long)n);
    const gguf_value *types = gguf_find(f, "tokenizer.ggml.token_type");
    if (types && (types->type != GGUF_TYPE_ARRAY || types->v.arr.count != n ||
                  types->v.arr.elem_type == GGUF_TYPE_STRING ||
                  types->v.arr.elem_type == GGUF_TYPE_ARRAY ||
                  types->v.arr.elem_type == GGUF_TYPE_FLOAT32 ||
                  types->v.arr.elem_type == GGUF_TYPE_FLOAT64))
        return tw_error(TW_ERR_FORMAT, "%s: tokenizer.ggml.token_type: not %llu integers", path,
                        (unsigned long long)n);
    int any_byte = 0;
    for (uint64_t i = 0; i < n; i++) {
        gguf_str s = gguf_arr_str(toks, i);
        st = vocab_set(t, (int32_t)i, s.ptr, (size_t)s.len);
        if (st != TW_OK) return st;
        int64_t ty = types ? gguf_arr_i64(types, i) : TW_TOKTYPE_NORMAL;
        if (ty < TW_TOKTYPE_UNDEFINED || ty > TW_TOKTYPE_BYTE) ty = TW_TOKTYPE_NORMAL;
        t->vocab[i].type = (tw_toktype)ty;
        any_byte |= ty == TW_TOKTYPE_BYTE;
        t->vocab[i].score = scores ? (float)gguf_arr_f64(scores, i) : 0.0f;
    }
    st = finish(t, path);
    if (st != TW_OK) return st;

    /* Special ids, with llama.cpp's defaults where a key is absent. */
    int spm = t->kind == TW_TOK_SPM, wp = t->kind == TW_TOK_WORDPIECE;
    t->bos = gguf_token_id(f, t, "tokenizer.ggml.bos_token_id", spm ? id_or_none(t, 1) : -1);
    t->eos = gguf_token_id(f, t, "tokenizer.ggml.eos_token_id", spm ? id_or_none(t, 2) : -1);
    t->unk = gguf_token_id(f, t, "tokenizer.ggml.unknown_token_id", spm ? id_or_none(t, 0) : -1);
    t->sep = gguf_token_id(f, t, "tokenizer.ggml.seperator_token_id", -1);
    if (t->sep < 0) t->sep = gguf_token_id(f, t, "tokenizer.ggml.separator_token_id", -1);
    t->pad = gguf_token_id(f, t, "tokenizer.ggml.padding_token_id", -1);
    t->cls = gguf_token_id(f, t, "tokenizer.ggml.cls_token_id", -1);
    t->eot = gguf_token_id(f, t, "tokenizer.ggml.eot_token_id", -1);
    if (wp && t->cls < 0) t->cls = t->bos;

    if (t->kind == TW_TOK_BPE) {
        gguf_str pre = {"gpt2", 4};
        char pname[64] = "gpt2"; /* no key: plain ByteLevel (gpt-neox, old files) */
        st = gguf_get_str(f, "tokenizer.ggml.pre", &pre);
        if (st == TW_OK) {
            size_t pl = pre.len < sizeof pname - 1 ? (size_t)pre.len : sizeof pname - 1;
            memcpy(pname, pre.ptr, pl);
            pname[pl] = 0;
            if (pre.len >= sizeof pname || memchr(pname, 0, pl)) pname[0] = '?'; /* no such name */
        } else if (st == TW_ERR_NOT_FOUND) {
            tw_error_clear();
            tw_log_debug("%s: no tokenizer.ggml.pre; using gpt2", path);
        } else {
            return tw_error(TW_ERR_FORMAT, "%s: tokenizer.ggml.pre: not a string", path);
        }
        if (tok_pre_from_name(pname, &t->pre) != 0)
            return tw_error(TW_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre '%.*s' is not a "
                            "pre-tokenizer twin knows", path,
                            (int)(pre.len > 64 ? 64 : pre.len), pre.ptr);
        tok_pretok_for(t->pre, &t->pretok);
        t->ignore_merges = t->pre == TOK_PRE_LLAMA3;
        t->add_bos = gguf_flag(f, "tokenizer.ggml.add_bos_token", t->pre == TOK_PRE_LLAMA3);
        t->add_eos = gguf_flag(f, "tokenizer.ggml.add_eos_token", 0);
        const gguf_value *mv = gguf_find(f, "tokenizer.ggml.merges");
        if (!mv || mv->type != GGUF_TYPE_ARRAY || mv->v.arr.elem_type != GGUF_TYPE_STRING)
            return tw_error(TW_ERR_FORMAT, "%s: tokenizer.ggml.merges: missing or not an array "
                            "of strings", path);
        uint64_t nm = mv->v.arr.count;
        gguf_str *merges = tw_malloc((size_t)(nm ? nm : 1) * sizeof *merges);
        if (!merges) return tw_error(TW_ERR_NOMEM, "%s: no memory for %llu merges", path,
                                     (unsigned long long)nm);
        for (uint64_t i = 0; i < nm; i++) merges[i] = gguf_arr_str(mv, i);
        st = tok_bpe_init(t, merges, nm);
        tw_free(merges);
        if (st != TW_OK) return tw_error_wrap("%s", path);
    } else if (spm) {
        t->add_bos = gguf_flag(f, "tokenizer.ggml.add_bos_token", 1);
        t->add_eos = gguf_flag(f, "tokenizer.ggml.add_eos_token", 0);
        t->add_space_prefix = gguf_flag(f, "tokenizer.ggml.add_space_prefix", 1);
        t->byte_fallback = any_byte;
        st = tok_spm_init(t);
        if (st != TW_OK) return tw_error_wrap("%s", path);
    } else {
        /* llama.cpp's BERT GGUF: lower-cased, accents stripped, CJK split; "▁" marks word
         * starts (tok_wordpiece_init recognises the convention). */
        t->add_bos = gguf_flag(f, "tokenizer.ggml.add_bos_token", 1);
        t->add_eos = gguf_flag(f, "tokenizer.ggml.add_eos_token", 1);
        st = tok_wordpiece_init(t, 1, -1, 1, NULL, 100);
        if (st != TW_OK) return tw_error_wrap("%s", path);
        wp_detect(t);
    }
    snprintf(t->pre_name, sizeof t->pre_name, "%s",
             t->kind == TW_TOK_BPE ? tok_pre_name(t->pre) : "");
    return TW_OK;
}

tw_tokenizer *tw_tokenizer_from_gguf(const gguf_file *f) {
    if (!f) {
        tw_error(TW_ERR_ARG, "tokenizer: no GGUF file");
        return NULL;
    }
    tw_tokenizer *t = tok_new();
    if (!t) {
        tw_error(TW_ERR_NOMEM, "%s: no memory for a tokenizer", gguf_path(f));
        return NULL;
    }
    if (load_gguf(t, f) != TW_OK) {
        tw_tokenizer_free(t);
        return NULL;
    }
    return t;
}

/* ---- HF tokenizer.json ------------------------------------------------------------------- */

/* Known Split patterns, as tokenizer.json spells them (several spellings for some). */
static const struct {
    const char *re;
    tok_stage_kind kind;
} known_splits[] = {
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", TOK_ST_GPT2},
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)", TOK_ST_GPT2},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", TOK_ST_LLAMA3},
    {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
     "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", TOK_ST_LLAMA3},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", TOK_ST_QWEN2},
    {"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
     "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", TOK_ST_QWEN2},
    {"[\r\n]", TOK_ST_NEWLINE},
    {"[\\r\\n]", TOK_ST_NEWLINE},
    {"\\s?\\p{L}+", TOK_ST_SPACE_LETTERS},
    {"\\s?\\p{P}+", TOK_ST_SPACE_PUNCT},
    {"[\xe4\xb8\x80-\xe9\xbe\xa5\xe0\xa0\x80-\xe4\xb8\x80\xea\xb0\x80-\xed\x9f\xbf]+", TOK_ST_CJK},
    {"\\s+$", TOK_ST_TRAILING_WS},
    {"[0-9][0-9][0-9]", TOK_ST_DIGITS3},
    {"\\p{N}", TOK_ST_DIGITS},
    {"\\p{N}+", TOK_ST_DIGIT_RUNS},
    {"[\\p{P}\\$\\+<=>\\^~\\|]+", TOK_ST_LLAMACPP_PUNCT},
};

/* deepseek-llm's two bracket classes, "\s?[...]+": recognised by the set they describe. */
static int class_ranges(const char *re, uint32_t (*out)[2], int max) {
    size_t n = strlen(re);
    if (n < 7 || strncmp(re, "\\s?[", 4) != 0 || strcmp(re + n - 2, "]+") != 0) return -1;
    const uint8_t *s = (const uint8_t *)re + 4, *end = (const uint8_t *)re + n - 2;
    int k = 0;
    while (s < end) {
        uint32_t a, b;
        int l = tw_utf8_decode(s, (size_t)(end - s), &a);
        if (a == TW_UTF8_INVALID || a == '\\' || a == '[' || a == ']') return -1;
        s += l;
        b = a;
        if (s + 1 < end && *s == '-') {
            l = tw_utf8_decode(s + 1, (size_t)(end - s - 1), &b);
            if (b == TW_UTF8_INVALID || b < a) return -1;
            s += 1 + l;
        }
        if (k > 0 && out[k - 1][1] + 1 >= a && out[k - 1][0] <= a) { /* merge adjacent */
            if (b > out[k - 1][1]) out[k - 1][1] = b;
            continue;
        }
        if (k == max) return -1;
        out[k][0] = a;
        out[k][1] = b;
        k++;
    }
    return k;
}

/* Compares a parsed class with the ranges that TOK_ST_DSLLM_* scan, written as regexes. */
static int class_is(const char *re, const char *ref) {
    uint32_t a[160][2], b[160][2];
    int na = class_ranges(re, a, 160), nb = class_ranges(ref, b, 160);
    return na > 0 && na == nb && memcmp(a, b, (size_t)na * sizeof a[0]) == 0;
}

static const char dsllm_letters_re[] =
    "\\s?[A-Za-z\xc2\xb5\xc3\x80-\xc3\x96\xc3\x98-\xc3\xb6\xc3\xb8-\xc6\xba\xc6\xbc-\xc6\xbf\xc7\x84-"
    "\xca\x93\xca\x95-\xca\xaf\xcd\xb0-\xcd\xb3\xcd\xb6\xcd\xb7\xcd\xbb-\xcd\xbd\xcd\xbf\xce\x86\xce"
    "\x88-\xce\x8a\xce\x8c\xce\x8e-\xce\xa1\xce\xa3-\xcf\xb5\xcf\xb7-\xd2\x81\xd2\x8a-\xd4\xaf\xd4\xb1"
    "-\xd5\x96\xe1\x82\xa0-\xe1\x83\x85\xe1\x8e\xa0-\xe1\x8f\xb5\xe1\x8f\xb8-\xe1\x8f\xbd\xe1\xb2\x90"
    "-\xe1\xb2\xba\xe1\xb2\xbd-\xe1\xb2\xbf\xe1\xb4\x80-\xe1\xb4\xab\xe1\xb5\xab-\xe1\xb5\xb7\xe1\xb5"
    "\xb9-\xe1\xb6\x9a\xe1\xb8\x80-\xe1\xbc\x95\xe1\xbc\x98-\xe1\xbc\x9d\xe1\xbc\xa0-\xe1\xbd\x85\xe1"
    "\xbd\x88-\xe1\xbd\x8d\xe1\xbd\x90-\xe1\xbd\x97\xe1\xbd\x99\xe1\xbd\x9b\xe1\xbd\x9d\xe1\xbd\x9f-"
    "\xe1\xbd\xbd\xe1\xbe\x80-\xe1\xbe\xb4\xe1\xbe\xb6-\xe1\xbe\xbc\xe1\xbe\xbe\xe1\xbf\x82-\xe1\xbf"
    "\x84\xe1\xbf\x86-\xe1\xbf\x8c\xe1\xbf\x90-\xe1\xbf\x93\xe1\xbf\x96-\xe1\xbf\x9b\xe1\xbf\xa0-\xe1"
    "\xbf\xac\xe1\xbf\xb2-\xe1\xbf\xb4\xe1\xbf\xb6-\xe1\xbf\xbc\xe2\x84\x82\xe2\x84\x87\xe2\x84\x8a-"
    "\xe2\x84\x93\xe2\x84\x95\xe2\x84\x99-\xe2\x84\x9d\xe2\x84\xa4\xe2\x84\xa6\xe2\x84\xa8\xe2\x84\xaa"
    "-\xe2\x84\xad\xe2\x84\xaf-\xe2\x84\xb4\xe2\x84\xb9\xe2\x84\xbc-\xe2\x84\xbf\xe2\x85\x85-\xe2\x85"
    "\x89\xe2\x85\x8e\xe2\x86\x83\xe2\x86\x84\xe2\xb0\x80-\xe2\xb1\xbb\xe2\xb1\xbe-\xe2\xb3\xa4\xe2"
    "\xb3\xab-\xe2\xb3\xae\xe2\xb3\xb2\xe2\xb3\xb3\xea\x99\x80-\xea\x99\xad\xea\x9a\x80-\xea\x9a\x9b"
    "\xea\x9c\xa2-\xea\x9d\xaf\xea\x9d\xb1-\xea\x9e\x87\xea\x9e\x8b-\xea\x9e\x8e\xea\xad\xb0-\xea\xae"
    "\xbf\xef\xac\x80-\xef\xac\x86\xef\xac\x93-\xef\xac\x97\xef\xbc\xa1-\xef\xbc\xba\xef\xbd\x81-\xef"
    "\xbd\x9a\xf0\x90\x90\x80-\xf0\x90\x91\x8f\xf0\x90\x92\xb0-\xf0\x90\x93\x93\xf0\x90\x93\x98-\xf0"
    "\x90\x93\xbb\xf0\x90\xb2\x80-\xf0\x90\xb2\xb2\xf0\x90\xb3\x80-\xf0\x90\xb3\xb2\xf0\x91\xa2\xa0-"
    "\xf0\x91\xa3\x9f\xf0\x9e\xa4\x80-\xf0\x9e\xa5\x83]+";
static const char dsllm_punct_re[] =
    "\\s?[!-/:-~\xef\xbc\x81-\xef\xbc\x8f\xef\xbc\x9a-\xef\xbd\x9e\xe2\x80\x98-\xe2\x80\x9f\xe3\x80"
    "\x80-\xe3\x80\x82]+";

static tw_status pretok_add(tok_pretok *p, tok_stage_kind kind, int bytelevel, const char *path) {
    if (p->n == TOK_MAX_STAGES)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: pre_tokenizer: more than %d steps", path,
                        TOK_MAX_STAGES);
    p->st[p->n].kind = (uint8_t)kind;
    p->st[p->n].bytelevel = (uint8_t)bytelevel;
    p->n++;
    return TW_OK;
}

/* Walks tokenizer.json's pre_tokenizer into steps. *bl: a ByteLevel step was seen. */
static tw_status parse_pretok(const tw_json *j, tok_pretok *p, int *bl, const char *path) {
    if (!j || tw_json_is_null(j)) return TW_OK;
    const char *type = tw_json_get_str(j, "type", "");
    if (!strcmp(type, "Sequence")) {
        const tw_json *arr = tw_json_get(j, "pretokenizers");
        for (const tw_json *c = arr ? tw_json_first(arr) : NULL; c; c = tw_json_next(c)) {
            tw_status st = parse_pretok(c, p, bl, path);
            if (st != TW_OK) return st;
        }
        return TW_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        if (tw_json_get_bool(j, "add_prefix_space", 0))
            return tw_error(TW_ERR_UNSUPPORTED, "%s: pre_tokenizer ByteLevel.add_prefix_space "
                            "= true is not supported", path);
        *bl = 1;
        if (tw_json_get_bool(j, "use_regex", 1)) return pretok_add(p, TOK_ST_GPT2, 0, path);
        return TW_OK;
    }
    if (!strcmp(type, "Digits"))
        return pretok_add(p, tw_json_get_bool(j, "individual_digits", 0) ? TOK_ST_DIGITS
                                                                          : TOK_ST_DIGIT_RUNS,
                          *bl, path);
    if (!strcmp(type, "Punctuation")) {
        const char *b = tw_json_get_str(j, "behavior", "Isolated");
        if (!strcmp(b, "Contiguous")) return pretok_add(p, TOK_ST_PUNCT_RUNS, *bl, path);
        if (!strcmp(b, "Isolated")) return pretok_add(p, TOK_ST_PUNCT, *bl, path);
        return tw_error(TW_ERR_UNSUPPORTED, "%s: pre_tokenizer Punctuation behavior '%.32s' is "
                        "not supported", path, b);
    }
    if (!strcmp(type, "Split")) {
        const tw_json *pat = tw_json_get(j, "pattern");
        const char *re = pat ? tw_json_get_str(pat, "Regex", NULL) : NULL;
        const char *b = tw_json_get_str(j, "behavior", "");
        if (!re || strcmp(b, "Isolated") || tw_json_get_bool(j, "invert", 0))
            return tw_error(TW_ERR_UNSUPPORTED, "%s: pre_tokenizer Split: only Regex patterns "
                            "with behavior Isolated are supported", path);
        for (size_t i = 0; i < sizeof known_splits / sizeof known_splits[0]; i++)
            if (!strcmp(re, known_splits[i].re)) return pretok_add(p, known_splits[i].kind, *bl, path);
        if (class_is(re, dsllm_letters_re)) return pretok_add(p, TOK_ST_DSLLM_LETTERS, *bl, path);
        if (class_is(re, dsllm_punct_re)) return pretok_add(p, TOK_ST_DSLLM_PUNCT, *bl, path);
        return tw_error(TW_ERR_UNSUPPORTED, "%s: pre_tokenizer Split pattern '%.80s' is not one "
                        "twin knows", path, re);
    }
    return tw_error(TW_ERR_UNSUPPORTED, "%s: pre_tokenizer type '%.40s' is not supported for "
                    "byte-level BPE", path, type);
}

/* A token name in tokenizer_config.json: a string or {"content": ...}. */
static const char *config_token(const tw_json *cfg, const char *key) {
    const tw_json *v = cfg ? tw_json_get(cfg, key) : NULL;
    if (!v) return NULL;
    if (tw_json_is_string(v)) return tw_json_str(v);
    return tw_json_get_str(v, "content", NULL);
}

static int32_t find_text(const tw_tokenizer *t, const char *s) {
    return s ? tok_map_get(&t->text_to_id, s, (uint32_t)strlen(s)) : -1;
}

/* What ADD_SPECIAL adds, from post_processor: the special tokens before and after $A. */
static void parse_post(tw_tokenizer *t, const tw_json *pp) {
    if (!pp || tw_json_is_null(pp)) return;
    const char *type = tw_json_get_str(pp, "type", "");
    if (!strcmp(type, "Sequence")) {
        const tw_json *arr = tw_json_get(pp, "processors");
        for (const tw_json *c = arr ? tw_json_first(arr) : NULL; c; c = tw_json_next(c)) parse_post(t, c);
        return;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        const tw_json *single = tw_json_get(pp, "single");
        const tw_json *specials = tw_json_get(pp, "special_tokens");
        int seen_seq = 0;
        for (const tw_json *it = single ? tw_json_first(single) : NULL; it; it = tw_json_next(it)) {
            if (tw_json_get(it, "Sequence")) {
                seen_seq = 1;
                continue;
            }
            const tw_json *sp = tw_json_get(it, "SpecialToken");
            const char *name = sp ? tw_json_get_str(sp, "id", NULL) : NULL;
            if (!name) continue;
            int32_t id = -1;
            const tw_json *def = specials ? tw_json_get(specials, name) : NULL;
            const tw_json *ids = def ? tw_json_get(def, "ids") : NULL;
            if (ids && tw_json_first(ids)) id = id_or_none(t, (int64_t)tw_json_num(tw_json_first(ids), -1));
            if (id < 0) id = find_text(t, name);
            if (id < 0) continue;
            if (!seen_seq) {
                t->add_bos = 1;
                if (t->kind == TW_TOK_WORDPIECE) t->cls = id;
                else t->bos = id;
            } else {
                t->add_eos = 1;
                if (t->kind == TW_TOK_WORDPIECE) t->sep = id;
                else t->eos = id;
            }
        }
        return;
    }
    if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        const tw_json *cls = tw_json_get(pp, "cls"), *sep = tw_json_get(pp, "sep");
        const tw_json *cid = cls ? tw_json_next(tw_json_first(cls)) : NULL;
        const tw_json *sid = sep ? tw_json_next(tw_json_first(sep)) : NULL;
        int32_t c = cid ? id_or_none(t, (int64_t)tw_json_num(cid, -1)) : -1;
        int32_t s = sid ? id_or_none(t, (int64_t)tw_json_num(sid, -1)) : -1;
        if (c >= 0) {
            t->add_bos = 1;
            if (t->kind == TW_TOK_WORDPIECE) t->cls = c;
            else t->bos = c;
        }
        if (s >= 0) {
            t->add_eos = 1;
            if (t->kind == TW_TOK_WORDPIECE) t->sep = s;
            else t->eos = s;
        }
    }
}

/* `path` names the source in messages. */
static tw_status load_hf(tw_tokenizer *t, const tw_json *root, const tw_json *cfg, const char *path) {
    tw_status st = TW_OK;
    gguf_str *merges = NULL;
    uint64_t n_merges = 0;

    const tw_json *model = tw_json_get(root, "model");
    const tw_json *vocab = model ? tw_json_get(model, "vocab") : NULL;
    if (!model || !vocab || !tw_json_is_object(vocab)) {
        st = tw_error(TW_ERR_FORMAT, "%s: model.vocab: missing or not an object (not a "
                      "tokenizer.json?)", path);
        goto done;
    }
    const char *mtype = tw_json_get_str(model, "type", NULL);
    if (!mtype) mtype = tw_json_get(model, "merges") ? "BPE" : "WordPiece";
    if (!strcmp(mtype, "BPE")) t->kind = TW_TOK_BPE;
    else if (!strcmp(mtype, "WordPiece")) t->kind = TW_TOK_WORDPIECE;
    else {
        st = tw_error(TW_ERR_UNSUPPORTED, "%s: model.type '%.32s' is not supported (BPE, "
                      "WordPiece)", path, mtype);
        goto done;
    }

    /* The vocabulary: model.vocab, then added_tokens over it. */
    int64_t max_id = -1;
    for (const tw_json *e = tw_json_first(vocab); e; e = tw_json_next(e)) {
        double v = tw_json_num(e, -1);
        if (!(v >= 0 && v < (1 << 26)) || v != (double)(int64_t)v) {
            st = tw_error(TW_ERR_FORMAT, "%s: model.vocab['%.40s']: not a token id", path,
                          tw_json_key(e));
            goto done;
        }
        if ((int64_t)v > max_id) max_id = (int64_t)v;
    }
    const tw_json *added = tw_json_get(root, "added_tokens");
    for (const tw_json *a = added ? tw_json_first(added) : NULL; a; a = tw_json_next(a)) {
        double v = tw_json_get_num(a, "id", -1);
        if (!(v >= 0 && v < (1 << 26)) || !tw_json_get_str(a, "content", NULL)) {
            st = tw_error(TW_ERR_FORMAT, "%s: added_tokens: an entry without a valid id and "
                          "content", path);
            goto done;
        }
        if ((int64_t)v > max_id) max_id = (int64_t)v;
    }
    st = vocab_alloc(t, max_id + 1, path);
    if (st != TW_OK) goto done;
    for (const tw_json *e = tw_json_first(vocab); e; e = tw_json_next(e)) {
        int32_t id = (int32_t)tw_json_num(e, -1);
        const char *k = tw_json_key(e);
        st = vocab_set(t, id, k, strlen(k));
        if (st != TW_OK) goto done;
        t->vocab[id].type = TW_TOKTYPE_NORMAL;
    }
    for (const tw_json *a = added ? tw_json_first(added) : NULL; a; a = tw_json_next(a)) {
        int32_t id = (int32_t)tw_json_get_num(a, "id", -1);
        const char *c = tw_json_get_str(a, "content", "");
        st = vocab_set(t, id, c, strlen(c));
        if (st != TW_OK) goto done;
        t->vocab[id].type = tw_json_get_bool(a, "special", 0) ? TW_TOKTYPE_CONTROL
                                                               : TW_TOKTYPE_USER_DEFINED;
    }
    st = finish(t, path);
    if (st != TW_OK) goto done;

    /* tokenizer_config.json: names of the special tokens, add_bos/add_eos. */
    t->bos = find_text(t, config_token(cfg, "bos_token"));
    t->eos = find_text(t, config_token(cfg, "eos_token"));
    t->pad = find_text(t, config_token(cfg, "pad_token"));
    t->cls = find_text(t, config_token(cfg, "cls_token"));
    t->sep = find_text(t, config_token(cfg, "sep_token"));
    t->unk = find_text(t, tw_json_get_str(model, "unk_token", NULL));
    if (t->unk < 0) t->unk = find_text(t, config_token(cfg, "unk_token"));

    if (t->kind == TW_TOK_BPE) {
        if (tw_json_get_bool(model, "byte_fallback", 0)) {
            st = tw_error(TW_ERR_UNSUPPORTED, "%s: BPE with byte_fallback (SentencePiece-style "
                          "BPE) is not supported from tokenizer.json; use the GGUF", path);
            goto done;
        }
        int bl = 0;
        st = parse_pretok(tw_json_get(root, "pre_tokenizer"), &t->pretok, &bl, path);
        if (st != TW_OK) goto done;
        const tw_json *dec = tw_json_get(root, "decoder");
        if (!bl && !(dec && !strcmp(tw_json_get_str(dec, "type", ""), "ByteLevel"))) {
            st = tw_error(TW_ERR_UNSUPPORTED, "%s: BPE without ByteLevel is not supported", path);
            goto done;
        }
        t->pre = tok_pre_identify(&t->pretok);
        t->ignore_merges = tw_json_get_bool(model, "ignore_merges", 0);
        const tw_json *mj = tw_json_get(model, "merges");
        n_merges = mj ? tw_json_size(mj) : 0;
        merges = tw_malloc((size_t)(n_merges ? n_merges : 1) * sizeof *merges);
        if (!merges) {
            st = tw_error(TW_ERR_NOMEM, "%s: no memory for merges", path);
            goto done;
        }
        uint64_t i = 0;
        for (const tw_json *m = mj ? tw_json_first(mj) : NULL; m; m = tw_json_next(m), i++) {
            if (tw_json_is_string(m)) { /* "a b" */
                merges[i].ptr = tw_json_str(m);
                merges[i].len = strlen(merges[i].ptr);
                continue;
            }
            const tw_json *a = tw_json_first(m), *b = a ? tw_json_next(a) : NULL;
            if (!a || !b || !tw_json_is_string(a) || !tw_json_is_string(b)) { /* ["a", "b"] */
                st = tw_error(TW_ERR_FORMAT, "%s: model.merges[%llu]: not \"a b\" nor [\"a\", "
                              "\"b\"]", path, (unsigned long long)i);
                goto done;
            }
            size_t la = strlen(tw_json_str(a)), lb = strlen(tw_json_str(b));
            char *s = tw_arena_alloc(t->arena, la + lb + 2, 1);
            if (!s) {
                st = tw_error(TW_ERR_NOMEM, "%s: no memory for merges", path);
                goto done;
            }
            memcpy(s, tw_json_str(a), la);
            s[la] = ' ';
            memcpy(s + la + 1, tw_json_str(b), lb + 1);
            merges[i].ptr = s;
            merges[i].len = la + lb + 1;
        }
        st = tok_bpe_init(t, merges, n_merges);
        if (st != TW_OK) {
            tw_error_wrap("%s", path);
            goto done;
        }
        if (cfg) { /* post_processor below overrides these when it adds tokens */
            t->add_bos = tw_json_get_bool(cfg, "add_bos_token", 0) && t->bos >= 0;
            t->add_eos = tw_json_get_bool(cfg, "add_eos_token", 0) && t->eos >= 0;
        }
    } else {
        const tw_json *norm = tw_json_get(root, "normalizer");
        int lower = 0, strip = 0, chinese = 1;
        if (norm && !strcmp(tw_json_get_str(norm, "type", ""), "BertNormalizer")) {
            lower = tw_json_get_bool(norm, "lowercase", 1);
            const tw_json *sa = tw_json_get(norm, "strip_accents");
            strip = sa && tw_json_is_bool(sa) ? tw_json_bool(sa, 0) : -1; /* null: as lowercase */
            chinese = tw_json_get_bool(norm, "handle_chinese_chars", 1);
        }
        const char *prefix = tw_json_get_str(model, "continuing_subword_prefix", "##");
        int max_chars = (int)tw_json_get_num(model, "max_input_chars_per_word", 100);
        st = tok_wordpiece_init(t, lower, strip, chinese, prefix, max_chars);
        if (st != TW_OK) {
            tw_error_wrap("%s", path);
            goto done;
        }
        snprintf(t->wp_prefix, sizeof t->wp_prefix, "%s", prefix);
        wp_detect(t);
        if (t->cls < 0) t->cls = find_text(t, "[CLS]");
        if (t->sep < 0) t->sep = find_text(t, "[SEP]");
    }
    parse_post(t, tw_json_get(root, "post_processor"));
    snprintf(t->pre_name, sizeof t->pre_name, "%s",
             t->kind == TW_TOK_BPE ? tok_pre_name(t->pre) : "");

done:
    tw_free(merges);
    return st;
}

tw_tokenizer *tok_from_hf_json(const tw_json *root, const tw_json *config, const char *name) {
    tw_tokenizer *t = tok_new();
    if (!t) {
        tw_error(TW_ERR_NOMEM, "%s: no memory for a tokenizer", name);
        return NULL;
    }
    if (!root || load_hf(t, root, config, name) != TW_OK) {
        if (!root) tw_error(TW_ERR_ARG, "%s: no JSON document", name);
        tw_tokenizer_free(t);
        return NULL;
    }
    return t;
}

tw_tokenizer *tw_tokenizer_from_hf(const char *tokenizer_json_path) {
    const char *path = tokenizer_json_path;
    if (!path) {
        tw_error(TW_ERR_ARG, "tokenizer: no path");
        return NULL;
    }
    tw_json *root = tw_json_parse_file(path);
    if (!root) return NULL;
    /* tokenizer_config.json beside it, when there is one */
    tw_json *cfg = NULL;
    const char *slash = strrchr(path, '/');
    tw_sb cpath;
    tw_sb_init(&cpath);
    if (slash) tw_sb_append(&cpath, path, (size_t)(slash - path + 1));
    tw_sb_puts(&cpath, "tokenizer_config.json");
    if (!cpath.failed && tw_path_exists(tw_sb_str(&cpath))) {
        cfg = tw_json_parse_file(tw_sb_str(&cpath));
        if (!cfg) {
            tw_log_warn("%s (ignored)", tw_errmsg());
            tw_error_clear();
        }
    }
    tw_sb_free(&cpath);
    tw_tokenizer *t = tok_from_hf_json(root, cfg, path);
    tw_json_free(cfg);
    tw_json_free(root);
    return t;
}

/* WordPiece decoding needs the vocabulary convention; tok_wordpiece_init chose it the same
 * way (no entry with the prefix and some with "▁": llama.cpp's GGUF). */
static void wp_detect(tw_tokenizer *t) {
    if (t->kind != TW_TOK_WORDPIECE) return;
    if (!t->wp_prefix[0]) snprintf(t->wp_prefix, sizeof t->wp_prefix, "##");
    size_t pl = strlen(t->wp_prefix);
    int32_t n_pre = 0, n_mark = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        const tok_entry *e = &t->vocab[i];
        n_pre += e->len >= pl && memcmp(e->text, t->wp_prefix, pl) == 0;
        n_mark += e->len >= 3 && memcmp(e->text, "\xE2\x96\x81", 3) == 0;
    }
    t->wp_phantom = n_pre == 0 && n_mark > 0;
}

/* ---- load by path ------------------------------------------------------------------------ */

static int has_suffix(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static int is_gguf_file(const char *path) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return 0;
    unsigned char m[4] = {0};
    size_t got = fread(m, 1, 4, fp);
    fclose(fp);
    return got == 4 && m[0] == 'G' && m[1] == 'G' && m[2] == 'U' && m[3] == 'F';
}

/* The first *.gguf of a folder by name, or NULL. */
static char *dir_first_gguf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char *best = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".gguf")) continue;
        if (!best || strcmp(e->d_name, best) < 0) {
            tw_free(best);
            best = tw_strdup(e->d_name);
        }
    }
    closedir(d);
    if (!best) return NULL;
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/%s", dir, best);
    tw_free(best);
    return tw_sb_take(&sb);
}

tw_tokenizer *tw_tokenizer_load(const char *path) {
    if (!path || !*path) {
        tw_error(TW_ERR_ARG, "tokenizer: no path");
        return NULL;
    }
    tw_tokenizer *t = NULL;
    if (tw_is_dir(path)) {
        tw_sb sb;
        tw_sb_init(&sb);
        tw_sb_printf(&sb, "%s/tokenizer.json", path);
        if (tw_path_exists(tw_sb_str(&sb))) {
            t = tw_tokenizer_from_hf(tw_sb_str(&sb));
            tw_sb_free(&sb);
            return t;
        }
        tw_sb_free(&sb);
        char *g = dir_first_gguf(path);
        if (!g) {
            tw_error(TW_ERR_NOT_FOUND, "%s: a folder with neither tokenizer.json nor a .gguf file",
                     path);
            return NULL;
        }
        t = tw_tokenizer_load(g);
        tw_free(g);
        return t;
    }
    if (!tw_path_exists(path)) {
        tw_error(TW_ERR_NOT_FOUND, "%s: no such file or folder", path);
        return NULL;
    }
    if (is_gguf_file(path)) {
        gguf_file *f = gguf_open(path);
        if (!f) return NULL;
        t = tw_tokenizer_from_gguf(f);
        gguf_close(f);
        return t;
    }
    if (has_suffix(path, ".json")) return tw_tokenizer_from_hf(path);
    tw_error(TW_ERR_FORMAT, "%s: not a model: neither a GGUF file (no GGUF magic) nor a "
             "tokenizer.json", path);
    return NULL;
}

/* ---- encode ------------------------------------------------------------------------------ */

static tw_status encode_fragment(const tw_tokenizer *t, const char *s, size_t n, tw_tokens *out) {
    if (n == 0) return TW_OK;
    switch (t->kind) {
    case TW_TOK_BPE: return tok_bpe_encode(t, s, n, out);
    case TW_TOK_SPM: return tok_spm_encode(t, s, n, out);
    case TW_TOK_WORDPIECE: return tok_wordpiece_encode(t, s, n, out);
    }
    return tw_error(TW_ERR_ARG, "tokenizer: unknown kind");
}

static int32_t first_special(const tw_tokenizer *t) {
    if (!t->add_bos) return -1;
    return t->kind == TW_TOK_WORDPIECE ? (t->cls >= 0 ? t->cls : t->bos) : t->bos;
}

static int32_t last_special(const tw_tokenizer *t) {
    if (!t->add_eos) return -1;
    return t->kind == TW_TOK_WORDPIECE ? (t->sep >= 0 ? t->sep : t->eos) : t->eos;
}

tw_status tw_tokenizer_encode(const tw_tokenizer *t, const char *text, size_t len,
                              unsigned flags, tw_tokens *out) {
    if (!t || !out || (!text && len)) return tw_error(TW_ERR_ARG, "tokenizer encode: bad argument");
    size_t n0 = out->n;
    tw_status st = TW_OK;
    if ((flags & TW_TOK_ADD_SPECIAL) && first_special(t) >= 0) st = tw_tokens_push(out, first_special(t));
    int parse = (flags & TW_TOK_PARSE_SPECIAL) != 0;
    const uint8_t *first = parse ? t->trie.first_any : t->trie.first_user;
    int any = parse ? t->n_specials > 0 : t->n_user_defined > 0;
    const uint8_t *s = (const uint8_t *)text;
    size_t frag = 0;
    if (any && st == TW_OK) {
        for (size_t i = 0; i < len && st == TW_OK;) {
            int32_t id = -1;
            size_t m = first[s[i]] ? trie_match(t, s + i, len - i, parse, &id) : 0;
            if (!m) {
                i++;
                continue;
            }
            st = encode_fragment(t, text + frag, i - frag, out);
            if (st == TW_OK) st = tw_tokens_push(out, id);
            i += m;
            frag = i;
        }
    }
    if (st == TW_OK) st = encode_fragment(t, text + frag, len - frag, out);
    if (st == TW_OK && (flags & TW_TOK_ADD_SPECIAL) && last_special(t) >= 0)
        st = tw_tokens_push(out, last_special(t));
    if (st != TW_OK) out->n = n0;
    return st;
}

/* ---- decode ------------------------------------------------------------------------------ */

static int is_special_type(tw_toktype ty) {
    return ty == TW_TOKTYPE_CONTROL || ty == TW_TOKTYPE_UNKNOWN;
}

/* SentencePiece: "▁" is a space; <0xNN> is a byte; a space that encoding put in front of a
 * fragment (at the start and after an added token) is taken off again. */
static void decode_spm(const tw_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                       int prefix_rule, tw_sb *out) {
    int prefix = prefix_rule && t->add_space_prefix;
    int strip = prefix;
    for (size_t i = 0; i < n; i++) {
        const tok_entry *e = &t->vocab[ids[i]];
        if (is_added_type(e->type)) {
            if (!(is_special_type(e->type) && (flags & TW_TOK_SKIP_SPECIAL)))
                tw_sb_append(out, e->text, e->len);
            strip = prefix;
            continue;
        }
        if (e->type == TW_TOKTYPE_BYTE && e->len == 6 && !memcmp(e->text, "<0x", 3) && e->text[5] == '>') {
            char hex[3] = {e->text[3], e->text[4], 0};
            char *end;
            long b = strtol(hex, &end, 16);
            if (*end == 0) {
                char c = (char)b;
                if (!(strip && c == ' ')) tw_sb_append(out, &c, 1);
                strip = 0;
                continue;
            }
        }
        for (uint32_t k = 0; k < e->len;) {
            if (k + 3 <= e->len && !memcmp(e->text + k, "\xE2\x96\x81", 3)) {
                if (!strip) tw_sb_putc(out, ' ');
                k += 3;
            } else {
                tw_sb_append(out, e->text + k, 1);
                k++;
            }
            strip = 0;
        }
    }
}

/* HF's WordPiece decoder with cleanup: pieces joined by spaces, the continuation prefix
 * glued on, and spaces before punctuation and common contractions removed. */
static void wp_cleanup_append(tw_sb *out, const char *s, size_t n) {
    static const struct {
        const char *from, *to;
    } rules[] = {{" .", "."},     {" ?", "?"},     {" !", "!"},       {" ,", ","},
                 {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"},     {" do not", " don't"},
                 {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"}};
    /* The rules run one after the other over the piece, as String::replace does. */
    tw_sb a, b;
    tw_sb_init(&a);
    tw_sb_init(&b);
    tw_sb_append(&a, s, n);
    for (size_t r = 0; r < sizeof rules / sizeof rules[0]; r++) {
        size_t fl = strlen(rules[r].from);
        tw_sb_clear(&b);
        for (size_t i = 0; i < a.len;) {
            if (i + fl <= a.len && !memcmp(a.buf + i, rules[r].from, fl)) {
                tw_sb_puts(&b, rules[r].to);
                i += fl;
            } else {
                tw_sb_append(&b, a.buf + i, 1);
                i++;
            }
        }
        tw_sb tmp = a;
        a = b;
        b = tmp;
    }
    if (a.len) tw_sb_append(out, a.buf, a.len);
    if (a.failed || b.failed) out->failed = 1;
    tw_sb_free(&a);
    tw_sb_free(&b);
}

static void decode_wordpiece(const tw_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                             tw_sb *out) {
    size_t pl = strlen(t->wp_prefix);
    int first = 1;
    tw_sb piece;
    tw_sb_init(&piece);
    for (size_t i = 0; i < n; i++) {
        const tok_entry *e = &t->vocab[ids[i]];
        if ((flags & TW_TOK_SKIP_SPECIAL) && is_special_type(e->type)) continue;
        tw_sb_clear(&piece);
        const char *s = e->text;
        size_t len = e->len;
        if (t->wp_phantom && !is_added_type(e->type)) {
            if (len >= 3 && !memcmp(s, "\xE2\x96\x81", 3)) { /* a word start */
                if (!first) tw_sb_putc(&piece, ' ');
                s += 3, len -= 3;
            }
        } else if (!first) {
            if (pl && len >= pl && !memcmp(s, t->wp_prefix, pl)) s += pl, len -= pl;
            else tw_sb_putc(&piece, ' ');
        }
        tw_sb_append(&piece, s, len);
        wp_cleanup_append(out, piece.buf ? piece.buf : "", piece.len);
        first = 0;
    }
    if (piece.failed) out->failed = 1;
    tw_sb_free(&piece);
}

tw_status tw_tokenizer_decode(const tw_tokenizer *t, const int32_t *ids, size_t n,
                              unsigned flags, tw_sb *out) {
    if (!t || !out || (!ids && n)) return tw_error(TW_ERR_ARG, "tokenizer decode: bad argument");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return tw_error(TW_ERR_ARG, "tokenizer decode: token id %d (position %zu) is out of "
                            "range [0, %d)", ids[i], i, t->n_vocab);
    switch (t->kind) {
    case TW_TOK_BPE:
        for (size_t i = 0; i < n; i++) {
            tw_toktype ty = t->vocab[ids[i]].type;
            if ((flags & TW_TOK_SKIP_SPECIAL) && is_special_type(ty)) continue;
            size_t len;
            const uint8_t *b = tok_bpe_token_bytes(t, ids[i], &len);
            tw_sb_append(out, (const char *)b, len);
        }
        break;
    case TW_TOK_SPM: decode_spm(t, ids, n, flags, 1, out); break;
    case TW_TOK_WORDPIECE: decode_wordpiece(t, ids, n, flags, out); break;
    }
    if (out->failed) return tw_error(TW_ERR_NOMEM, "tokenizer decode: no memory for the text");
    return TW_OK;
}

tw_status tw_tokenizer_piece(const tw_tokenizer *t, int32_t id, tw_sb *out) {
    if (!t || !out) return tw_error(TW_ERR_ARG, "tokenizer piece: bad argument");
    if (id < 0 || id >= t->n_vocab)
        return tw_error(TW_ERR_ARG, "tokenizer: token id %d is out of range [0, %d)", id, t->n_vocab);
    const tok_entry *e = &t->vocab[id];
    if (t->kind == TW_TOK_BPE) {
        size_t len;
        const uint8_t *b = tok_bpe_token_bytes(t, id, &len);
        tw_sb_append(out, (const char *)b, len);
    } else if (t->kind == TW_TOK_SPM && !is_added_type(e->type)) {
        decode_spm(t, &id, 1, 0, 0, out); /* without the space-prefix rule */
    } else {
        tw_sb_append(out, e->text, e->len);
    }
    if (out->failed) return tw_error(TW_ERR_NOMEM, "tokenizer piece: no memory");
    return TW_OK;
}

/* ---- accessors --------------------------------------------------------------------------- */

tw_tok_kind tw_tokenizer_kind(const tw_tokenizer *t) { return t->kind; }
const char *tw_tokenizer_pre_name(const tw_tokenizer *t) { return t->pre_name; }
int32_t tw_tokenizer_n_vocab(const tw_tokenizer *t) { return t->n_vocab; }

const char *tw_tokenizer_token_text(const tw_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    if (len) *len = t->vocab[id].len;
    return t->vocab[id].text;
}

tw_toktype tw_tokenizer_token_type(const tw_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return TW_TOKTYPE_UNDEFINED;
    return t->vocab[id].type;
}

int32_t tw_tokenizer_find(const tw_tokenizer *t, const char *text, size_t len) {
    if (!text || len > UINT32_MAX) return -1;
    return tok_map_get(&t->text_to_id, text, (uint32_t)len);
}

int32_t tw_tokenizer_bos(const tw_tokenizer *t) { return t->bos; }
int32_t tw_tokenizer_eos(const tw_tokenizer *t) { return t->eos; }
int32_t tw_tokenizer_unk(const tw_tokenizer *t) { return t->unk; }
int32_t tw_tokenizer_pad(const tw_tokenizer *t) { return t->pad; }
int32_t tw_tokenizer_sep(const tw_tokenizer *t) { return t->sep; }
int32_t tw_tokenizer_cls(const tw_tokenizer *t) { return t->cls; }
