/* tok_bpe.c: byte-level BPE (GPT-2 style): merges by rank over the byte alphabet.
 *
 * A word from the pre-tokenizer starts as one symbol per byte (the token of that byte's
 * character in the GPT-2 byte alphabet); then the adjacent pair with the lowest merge rank
 * is merged, leftmost first on ties, until no pair has a merge. This is the order of HF
 * tokenizers' Word::merge_all and llama.cpp's llm_tokenizer_bpe, so ids match both.
 *
 * Everything works on token ids: the merge table maps the pair (left id, right id) to its
 * rank and the merged id, so no string is built while encoding. Short words (most of them)
 * use a flat array with the rank of each adjacent pair; long words (runs of spaces, CJK
 * text without spaces) use linked symbols and a binary heap, O(n log n). A per-call cache of
 * recent words skips the merging for repeated words in long texts.
 *
 * Thread-safe: the tables are read-only after tok_bpe_init; scratch is per call.
 */
#include "tokenizer_impl.h"

#include <limits.h>
#include <string.h>

#define PAIR_EMPTY UINT64_MAX

typedef struct {
    uint64_t key; /* (left << 32) | right; PAIR_EMPTY when free */
    int32_t rank;
    int32_t id; /* the merged token */
} bpe_slot;

typedef struct {
    bpe_slot *slots; /* (mask + 1), tw_malloc */
    uint32_t mask;
    uint32_t n_merges;
    const uint8_t **raw; /* (n_vocab) the bytes a token stands for, in the arena */
    uint32_t *raw_len;   /* (n_vocab) */
    tok_map raw_map;     /* raw bytes -> id, tokens wholly in the byte alphabet (ignore_merges) */
} bpe_data;

static inline uint32_t pair_hash(uint64_t key, uint32_t mask) {
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 40) & mask;
}

static inline const bpe_slot *pair_find(const bpe_data *b, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint32_t h = pair_hash(key, b->mask);
    for (;;) {
        const bpe_slot *s = &b->slots[h];
        if (s->key == key) return s;
        if (s->key == PAIR_EMPTY) return NULL;
        h = (h + 1) & b->mask;
    }
}

/* ---- set-up ------------------------------------------------------------------------------ */

/* Decodes a token's text from the byte alphabet; returns 0 when a character is not in it. */
static int alphabet_decode(const char *text, uint32_t len, uint8_t *out, uint32_t *out_len) {
    uint32_t i = 0, n = 0;
    while (i < len) {
        uint32_t cp;
        int l = tw_utf8_decode((const uint8_t *)text + i, len - i, &cp);
        int b = cp == TW_UTF8_INVALID ? -1 : tok_cp_to_byte(cp);
        if (b < 0) return 0;
        out[n++] = (uint8_t)b;
        i += (uint32_t)l;
    }
    *out_len = n;
    return 1;
}

tw_status tok_bpe_init(tw_tokenizer *t, const gguf_str *merges, uint64_t n_merges) {
    if (n_merges > (uint64_t)INT32_MAX)
        return tw_error(TW_ERR_FORMAT, "tokenizer merges: %llu entries is too many",
                        (unsigned long long)n_merges);
    bpe_data *b = tw_arena_alloc(t->arena, sizeof *b, 8);
    if (!b) return TW_ERR_NOMEM;
    t->bpe = b;
    size_t n = (size_t)t->n_vocab;
    b->raw = tw_arena_alloc(t->arena, n * sizeof *b->raw + 1, 8);
    b->raw_len = tw_arena_alloc(t->arena, n * sizeof *b->raw_len + 1, 8);
    if (!b->raw || !b->raw_len) return TW_ERR_NOMEM;
    tw_status st = tok_map_init(&b->raw_map, (uint32_t)n);
    if (st != TW_OK) return st;

    /* The bytes of each token, and the single-byte tokens. */
    for (int i = 0; i < 256; i++) t->byte_to_id[i] = -1;
    uint8_t *buf = NULL;
    uint32_t buf_cap = 0;
    for (size_t id = 0; id < n; id++) {
        const tok_entry *e = &t->vocab[id];
        if (e->len > buf_cap) {
            tw_free(buf);
            buf_cap = e->len * 2 + 16;
            buf = tw_malloc(buf_cap);
            if (!buf) return TW_ERR_NOMEM;
        }
        uint32_t rl = 0;
        int in_alphabet = alphabet_decode(e->text, e->len, buf, &rl);
        int added = e->type == TW_TOKTYPE_CONTROL || e->type == TW_TOKTYPE_USER_DEFINED ||
                    e->type == TW_TOKTYPE_UNKNOWN;
        if (in_alphabet && rl > 0) {
            uint8_t *raw = (uint8_t *)tw_arena_strndup(t->arena, (const char *)buf, rl);
            if (!raw) {
                tw_free(buf);
                return TW_ERR_NOMEM;
            }
            if (tok_map_get(&b->raw_map, (const char *)raw, rl) < 0) {
                st = tok_map_put(&b->raw_map, (const char *)raw, rl, (int32_t)id);
                if (st != TW_OK) {
                    tw_free(buf);
                    return st;
                }
            }
            if (rl == 1 && !added && t->byte_to_id[raw[0]] < 0) t->byte_to_id[raw[0]] = (int32_t)id;
            b->raw[id] = added ? (const uint8_t *)e->text : raw;
            b->raw_len[id] = added ? e->len : rl;
        } else {
            /* Not in the alphabet (added tokens such as "  "): it stands for its own text,
             * as in HF's ByteLevel decoder and llama.cpp. */
            b->raw[id] = (const uint8_t *)e->text;
            b->raw_len[id] = e->len;
        }
    }
    /* A byte whose character only an added token carries still needs a token. */
    for (size_t id = 0; id < n; id++) {
        if (b->raw_len[id] == 1 && t->byte_to_id[b->raw[id][0]] < 0) {
            uint32_t rl;
            uint8_t one;
            if (t->vocab[id].len <= 4 && alphabet_decode(t->vocab[id].text, t->vocab[id].len, &one, &rl) &&
                rl == 1)
                t->byte_to_id[one] = (int32_t)id;
        }
    }

    /* The merge table: load factor <= 1/2. */
    uint32_t cap = 16;
    while ((uint64_t)cap < n_merges * 2 + 16) cap <<= 1;
    b->slots = tw_malloc((size_t)cap * sizeof *b->slots);
    if (!b->slots) {
        tw_free(buf);
        return TW_ERR_NOMEM;
    }
    memset(b->slots, 0xFF, (size_t)cap * sizeof *b->slots);
    b->mask = cap - 1;
    uint64_t skipped = 0;
    for (uint64_t r = 0; r < n_merges; r++) {
        const char *m = merges[r].ptr;
        size_t ml = (size_t)merges[r].len;
        /* "left right": split at the first space after the first byte (llama.cpp does the
         * same; byte-level tokens never hold a space). */
        const char *sp = ml > 1 ? memchr(m + 1, ' ', ml - 1) : NULL;
        if (!sp) {
            skipped++;
            continue;
        }
        uint32_t ll = (uint32_t)(sp - m), rl = (uint32_t)(ml - ll - 1);
        int32_t l = tok_map_get(&t->text_to_id, m, ll);
        int32_t rr = tok_map_get(&t->text_to_id, sp + 1, rl);
        if (ll + rl > buf_cap) {
            tw_free(buf);
            buf_cap = (ll + rl) * 2 + 16;
            buf = tw_malloc(buf_cap);
            if (!buf) return TW_ERR_NOMEM;
        }
        memcpy(buf, m, ll);
        memcpy(buf + ll, sp + 1, rl);
        int32_t merged = tok_map_get(&t->text_to_id, (const char *)buf, ll + rl);
        if (l < 0 || rr < 0 || merged < 0) {
            skipped++;
            continue;
        }
        uint64_t key = ((uint64_t)(uint32_t)l << 32) | (uint32_t)rr;
        uint32_t h = pair_hash(key, b->mask);
        while (b->slots[h].key != PAIR_EMPTY && b->slots[h].key != key) h = (h + 1) & b->mask;
        if (b->slots[h].key == key) continue; /* a repeated pair keeps its first (lowest) rank */
        b->slots[h].key = key;
        b->slots[h].rank = (int32_t)r;
        b->slots[h].id = merged;
        b->n_merges++;
    }
    tw_free(buf);
    if (skipped)
        tw_log_debug("tokenizer: %llu of %llu merges name tokens missing from the vocabulary; "
                     "ignored",
                     (unsigned long long)skipped, (unsigned long long)n_merges);
    return TW_OK;
}

void tok_bpe_free(tw_tokenizer *t) {
    bpe_data *b = t ? t->bpe : NULL;
    if (!b) return;
    tw_free(b->slots);
    b->slots = NULL;
    tok_map_free(&b->raw_map);
    t->bpe = NULL; /* the struct itself lives in the arena */
}

const uint8_t *tok_bpe_token_bytes(const tw_tokenizer *t, int32_t id, size_t *len) {
    const bpe_data *b = t->bpe;
    *len = b->raw_len[id];
    return b->raw[id];
}

/* ---- encoding ---------------------------------------------------------------------------- */

/* Words up to this many bytes use the flat array; longer ones the heap. */
#define BPE_SMALL 48

/* A direct-mapped cache of words seen earlier in the same call. Words point into the text
 * being encoded; their ids live in one growing array. */
typedef struct {
    uint64_t hash;
    const uint8_t *word;
    uint32_t len;
    uint32_t off; /* into cache_ids */
    uint32_t n;
} cache_entry;
#define CACHE_MAX_BITS 14 /* entries: about one per 8 bytes of text, 2^8 .. 2^14 */
#define CACHE_MAX_WORD 32
#define CACHE_MAX_IDS (1u << 20)

typedef struct {
    const tw_tokenizer *t;
    const bpe_data *b;
    tw_tokens *out;
    cache_entry *cache; /* (cache_mask + 1) or NULL */
    uint32_t cache_mask;
    int32_t *cache_ids;
    uint32_t cache_n, cache_cap;
    /* heap-path scratch, grown as needed */
    int32_t *hs;
    size_t hs_cap;
} bpe_ctx;

/* Appends a symbol; a byte without a token is the unknown token, or nothing (HF). */
static tw_status push_sym(bpe_ctx *c, int32_t id) {
    if (id < 0) id = c->t->unk;
    return id >= 0 ? tw_tokens_push(c->out, id) : TW_OK;
}

/* The first symbols of a word: the token of each byte. A byte without a token becomes the
 * unknown token, or, without one, is left out, so that its neighbours can merge (HF's BPE
 * does both). Returns the number of symbols written to ids (<= n). */
static size_t init_symbols(const tw_tokenizer *t, const uint8_t *w, size_t n, int32_t *ids) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_to_id[w[i]];
        if (id < 0) id = t->unk;
        if (id >= 0) ids[m++] = id;
    }
    return m;
}

static tw_status merge_small(bpe_ctx *c, const uint8_t *w, size_t n) {
    const bpe_data *b = c->b;
    int32_t ids[BPE_SMALL], rk[BPE_SMALL], mid[BPE_SMALL];
    size_t m = init_symbols(c->t, w, n, ids);
    for (size_t i = 0; i + 1 < m; i++) {
        const bpe_slot *s = pair_find(b, ids[i], ids[i + 1]);
        rk[i] = s ? s->rank : INT32_MAX;
        mid[i] = s ? s->id : -1;
    }
    while (m > 1) {
        size_t best = 0;
        int32_t br = rk[0];
        for (size_t i = 1; i + 1 < m; i++) {
            if (rk[i] < br) {
                br = rk[i];
                best = i;
            }
        }
        if (br == INT32_MAX) break;
        ids[best] = mid[best];
        /* symbols after the pair move left by one; so do the pairs after it */
        memmove(ids + best + 1, ids + best + 2, (m - best - 2) * sizeof *ids);
        if (m >= best + 3) {
            memmove(rk + best + 1, rk + best + 2, (m - best - 3) * sizeof *rk);
            memmove(mid + best + 1, mid + best + 2, (m - best - 3) * sizeof *mid);
        }
        m--;
        if (best > 0) {
            const bpe_slot *s = pair_find(b, ids[best - 1], ids[best]);
            rk[best - 1] = s ? s->rank : INT32_MAX;
            mid[best - 1] = s ? s->id : -1;
        }
        if (best + 1 < m) {
            const bpe_slot *s = pair_find(b, ids[best], ids[best + 1]);
            rk[best] = s ? s->rank : INT32_MAX;
            mid[best] = s ? s->id : -1;
        }
    }
    for (size_t i = 0; i < m; i++) {
        tw_status st = push_sym(c, ids[i]);
        if (st != TW_OK) return st;
    }
    return TW_OK;
}

/* The heap path: symbols in a linked list, candidate pairs in a binary heap ordered by
 * (rank, left position). A popped pair is used only if both symbols are still adjacent and
 * unchanged (lazy deletion). */
typedef struct {
    int32_t rank, left, lid, rid;
} heap_item;

static inline int heap_less(const heap_item *a, const heap_item *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(heap_item *h, size_t *n, heap_item it) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&it, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static heap_item heap_pop(heap_item *h, size_t *n) {
    heap_item top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= *n) break;
        size_t m = l + 1 < *n && heap_less(&h[l + 1], &h[l]) ? l + 1 : l;
        if (!heap_less(&h[m], &last)) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

static tw_status merge_large(bpe_ctx *c, const uint8_t *w, size_t n) {
    const bpe_data *b = c->b;
    if (n > (size_t)INT32_MAX / 4) return tw_error(TW_ERR_ARG, "tokenizer: word of %zu bytes", n);
    /* ids, prev, next: 3n int32; heap: at most n-1 live pushes + 2 per merge < 3n items */
    size_t need = 3 * n * sizeof(int32_t) + 3 * n * sizeof(heap_item);
    if (need > c->hs_cap) {
        tw_free(c->hs);
        c->hs = tw_malloc(need);
        if (!c->hs) {
            c->hs_cap = 0;
            return TW_ERR_NOMEM;
        }
        c->hs_cap = need;
    }
    int32_t *ids = c->hs, *prev = ids + n, *next = prev + n;
    heap_item *heap = (heap_item *)(next + n);
    size_t hn = 0;
    n = init_symbols(c->t, w, n, ids);
    if (n == 0) return TW_OK;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        const bpe_slot *s = pair_find(b, ids[i], ids[i + 1]);
        if (s) heap_push(heap, &hn, (heap_item){s->rank, (int32_t)i, ids[i], ids[i + 1]});
    }
    while (hn) {
        heap_item it = heap_pop(heap, &hn);
        int32_t l = it.left, r = next[l];
        if (ids[l] != it.lid || r < 0 || ids[r] != it.rid) continue; /* stale */
        const bpe_slot *s = pair_find(b, it.lid, it.rid);
        ids[l] = s->id;
        ids[r] = INT32_MIN; /* dead */
        next[l] = next[r];
        if (next[r] >= 0) prev[next[r]] = l;
        if (prev[l] >= 0) {
            const bpe_slot *p = pair_find(b, ids[prev[l]], ids[l]);
            if (p) heap_push(heap, &hn, (heap_item){p->rank, prev[l], ids[prev[l]], ids[l]});
        }
        if (next[l] >= 0) {
            const bpe_slot *q = pair_find(b, ids[l], ids[next[l]]);
            if (q) heap_push(heap, &hn, (heap_item){q->rank, l, ids[l], ids[next[l]]});
        }
    }
    for (int32_t i = 0; i >= 0; i = next[i]) {
        tw_status st = push_sym(c, ids[i]);
        if (st != TW_OK) return st;
    }
    return TW_OK;
}

static tw_status bpe_word(bpe_ctx *c, const uint8_t *w, size_t n) {
    if (c->t->ignore_merges && n <= UINT32_MAX) {
        int32_t id = tok_map_get(&c->b->raw_map, (const char *)w, (uint32_t)n);
        if (id >= 0) return tw_tokens_push(c->out, id);
    }
    if (n == 1) return push_sym(c, c->t->byte_to_id[w[0]]);
    return n <= BPE_SMALL ? merge_small(c, w, n) : merge_large(c, w, n);
}

static tw_status bpe_emit(void *ctx, const char *word, size_t len) {
    bpe_ctx *c = ctx;
    const uint8_t *w = (const uint8_t *)word;
    if (!c->cache || len > CACHE_MAX_WORD) return bpe_word(c, w, len);
    uint64_t h = tok_hash(word, len);
    cache_entry *e = &c->cache[h & c->cache_mask];
    if (e->word && e->hash == h && e->len == len && memcmp(e->word, w, len) == 0) {
        for (uint32_t i = 0; i < e->n; i++) {
            tw_status st = tw_tokens_push(c->out, c->cache_ids[e->off + i]);
            if (st != TW_OK) return st;
        }
        return TW_OK;
    }
    size_t before = c->out->n;
    tw_status st = bpe_word(c, w, len);
    if (st != TW_OK) return st;
    size_t got = c->out->n - before;
    if (c->cache_n + got > CACHE_MAX_IDS) { /* full: start over */
        memset(c->cache, 0, ((size_t)c->cache_mask + 1) * sizeof *c->cache);
        c->cache_n = 0;
    }
    if (c->cache_n + got > c->cache_cap) {
        uint32_t cap = c->cache_cap ? c->cache_cap * 2 : 4096;
        while (cap < c->cache_n + got) cap *= 2;
        int32_t *ids = tw_realloc(c->cache_ids, (size_t)cap * sizeof *ids);
        if (!ids) return TW_OK; /* the cache is an optimisation: go on without storing */
        c->cache_ids = ids;
        c->cache_cap = cap;
    }
    memcpy(c->cache_ids + c->cache_n, c->out->ids + before, got * sizeof(int32_t));
    e->hash = h;
    e->word = w;
    e->len = (uint32_t)len;
    e->off = c->cache_n;
    e->n = (uint32_t)got;
    c->cache_n += (uint32_t)got;
    return TW_OK;
}

/* Texts shorter than this are not worth a cache. */
#define CACHE_MIN_TEXT 2048

tw_status tok_bpe_encode(const tw_tokenizer *t, const char *text, size_t len, tw_tokens *out) {
    if (!t->bpe) return tw_error(TW_ERR_ARG, "tokenizer: not a BPE tokenizer");
    bpe_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.b = t->bpe;
    c.out = out;
    if (len >= CACHE_MIN_TEXT) {
        uint32_t bits = 8;
        while (bits < CACHE_MAX_BITS && ((size_t)8 << bits) < len) bits++;
        c.cache_mask = (1u << bits) - 1;
        c.cache = tw_calloc((size_t)1 << bits, sizeof *c.cache);
        if (!c.cache) tw_error_clear(); /* run without the cache */
    }
    tw_status st = tok_pretokenize(&t->pretok, text, len, bpe_emit, &c);
    tw_free(c.cache);
    tw_free(c.cache_ids);
    tw_free(c.hs);
    return st;
}
