/* tok_spm.c: SentencePiece BPE, the way llama.cpp's SPM tokenizer does it.
 *
 * The fragment is escaped (every ' ' becomes U+2581 "▁", and a leading "▁" is added when the
 * tokenizer's add_space_prefix is set), split into UTF-8 characters, and then the adjacent
 * pair of symbols whose concatenation is a vocabulary entry with the highest score is merged,
 * again and again (ties: the leftmost pair), through a priority queue of candidate pairs over
 * a doubly linked list of symbols. Symbols left that are not vocabulary entries are written as
 * byte tokens <0xNN> (byte_fallback) or as the unknown token.
 *
 * Where this differs from a textbook SentencePiece encoder, it follows llama.cpp, because the
 * conformance vectors (shared/testdata/tokenizer/ggml-vocab-{llama-spm,phi-3}) come from it,
 * with one exception for invalid UTF-8 (which SentencePiece itself cannot take):
 *   - any byte that is not part of valid UTF-8 is a symbol of its own, so it ends up as a
 *     byte token and decoding gives the text back byte for byte (llama.cpp cuts by the lead
 *     byte alone, which can swallow the next characters, even an escaped space, into bytes;
 *     for valid UTF-8 the two agree);
 *   - any vocabulary entry may be formed by a merge, whatever its type;
 *   - the space prefix goes in front of every fragment: llama.cpp adds it at the start of the
 *     text and after every special token, and the caller (tokenizer.c) hands us exactly those
 *     raw fragments that sit between special tokens.
 *
 * Cost: one scratch allocation per call (none for fragments up to ~180 bytes, which use a
 * stack buffer), one hash lookup per candidate pair, O(n log n) heap work. The whole fragment
 * is one sequence (there is no pre-tokenizer), as in llama.cpp.
 */
#include "tokenizer_impl.h"

#include <string.h>

/* A run of bytes of the escaped text; merged-away symbols have n == 0. */
typedef struct {
    uint32_t off, n;
    int32_t prev, next; /* -1 at the ends */
    uint32_t pair_key;  /* spm_score_key of the pair (this, next), SPM_NO_PAIR when the two
                           do not concatenate to a vocabulary entry */
} spm_sym;

#define SPM_NO_PAIR 0xFFFFFFFFu

/* A queued merge is one integer, (score key << 32) | left, smallest first: the best score,
 * then the leftmost pair, which is llama.cpp's order. It is current while the left symbol's
 * pair_key still equals its score key; any older entry of that symbol is skipped. (When an
 * older entry happens to carry the same key as the current pair, it is the current pair's
 * turn either way: both entries sort at the same place.) Eight-byte entries keep the heap
 * small and the comparisons single integer compares, which is where long texts spend time. */
typedef uint64_t spm_entry;

typedef struct {
    const tw_tokenizer *t;
    const char *s; /* the escaped text */
    spm_sym *sym;
    spm_entry *heap; /* min-heap */
    size_t n_heap;
} spm_state;

/* Orders scores high to low as unsigned keys low to high (+0 and -0 compare equal, NaN
 * last; SPM_NO_PAIR is never a key). */
static uint32_t spm_score_key(float score) {
    if (score == 0.0f) score = 0.0f;
    if (score != score) return SPM_NO_PAIR - 1;
    uint32_t u;
    memcpy(&u, &score, sizeof u);
    uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    uint32_t key = ~ascending;
    return key == SPM_NO_PAIR ? SPM_NO_PAIR - 1 : key;
}

static void spm_heap_push(spm_state *st, spm_entry e) {
    size_t i = st->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (st->heap[parent] <= e) break;
        st->heap[i] = st->heap[parent];
        i = parent;
    }
    st->heap[i] = e;
}

/* Puts e at slot i, or lower, restoring the heap below i. */
static void spm_heap_sift_down(spm_state *st, size_t i, spm_entry e) {
    size_t n = st->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && st->heap[c + 1] < st->heap[c]) c++;
        if (e <= st->heap[c]) break;
        st->heap[i] = st->heap[c];
        i = c;
    }
    st->heap[i] = e;
}

static spm_entry spm_heap_pop(spm_state *st) {
    spm_entry top = st->heap[0];
    spm_entry last = st->heap[--st->n_heap];
    if (st->n_heap > 0) spm_heap_sift_down(st, 0, last);
    return top;
}

/* Sets the pair key of symbol i (with its current next); 1 when there is a pair. */
static int spm_pair_eval(spm_state *st, int32_t i) {
    spm_sym *l = &st->sym[i];
    l->pair_key = SPM_NO_PAIR;
    if (l->next < 0) return 0;
    const spm_sym *r = &st->sym[l->next];
    int32_t id = tok_map_get(&st->t->text_to_id, st->s + l->off, l->n + r->n);
    if (id < 0 || id >= st->t->n_vocab) return 0;
    l->pair_key = spm_score_key(st->t->vocab[id].score);
    return 1;
}

static inline spm_entry spm_entry_of(const spm_state *st, int32_t i) {
    return ((uint64_t)st->sym[i].pair_key << 32) | (uint32_t)i;
}

/* Re-evaluates the pair that starts at symbol i and queues it when there is one. */
static void spm_pair_update(spm_state *st, int32_t i) {
    if (i >= 0 && spm_pair_eval(st, i)) spm_heap_push(st, spm_entry_of(st, i));
}

/* Appends the ids of one final symbol: its own id, else its bytes as byte tokens, else (no
 * byte fallback, or a byte without a token) one unknown token for the symbol. */
static tw_status spm_emit(const tw_tokenizer *t, const char *s, uint32_t n, tw_tokens *out) {
    int32_t id = tok_map_get(&t->text_to_id, s, n);
    if (id >= 0 && id < t->n_vocab) return tw_tokens_push(out, id);
    int bytes_ok = t->byte_fallback;
    for (uint32_t j = 0; j < n && bytes_ok; j++) bytes_ok = t->byte_to_id[(uint8_t)s[j]] >= 0;
    if (!bytes_ok) {
        if (t->unk < 0)
            return tw_error(TW_ERR_FORMAT, "spm tokenizer: text has a character the vocabulary "
                                           "cannot express and there is no unknown token");
        return tw_tokens_push(out, t->unk);
    }
    for (uint32_t j = 0; j < n; j++) {
        tw_status st = tw_tokens_push(out, t->byte_to_id[(uint8_t)s[j]]);
        if (st != TW_OK) return st;
    }
    return TW_OK;
}

/* Scratch below this size lives on the stack. */
#define SPM_STACK_BYTES 8192

tw_status tok_spm_encode(const tw_tokenizer *t, const char *text, size_t len, tw_tokens *out) {
    if (len == 0) return TW_OK; /* llama.cpp: an empty text has no fragment, so no prefix */
    static const char spm_space[3] = {'\xE2', '\x96', '\x81'}; /* U+2581 */
    size_t n_spaces = 0;
    for (size_t i = 0; i < len; i++) n_spaces += text[i] == ' ';
    size_t prefix = t->add_space_prefix ? 3 : 0;
    size_t n_bytes = prefix + len + 2 * n_spaces;
    /* Symbol offsets and heap indices are 32-bit. */
    if (n_bytes > (size_t)INT32_MAX / 4)
        return tw_error(TW_ERR_ARG, "spm tokenizer: text of %zu bytes is too long", len);

    /* One block: the heap (the first n-1 pairs plus at most two per merge, < 3 * n_bytes;
     * first, for its 8-byte alignment), the symbols (<= n_bytes), then the escaped text. */
    size_t sym_bytes = n_bytes * sizeof(spm_sym);
    size_t heap_bytes = 3 * n_bytes * sizeof(spm_entry);
    size_t total = sym_bytes + heap_bytes + n_bytes;
    _Alignas(16) unsigned char stack_buf[SPM_STACK_BYTES];
    unsigned char *block = stack_buf;
    if (total > sizeof stack_buf) {
        block = tw_malloc(total);
        if (!block) return tw_error_wrap("spm tokenizer: scratch for %zu bytes of text", len);
    }
    spm_state st = {t, NULL, (spm_sym *)(block + heap_bytes), (spm_entry *)block, 0};
    char *s = (char *)(block + sym_bytes + heap_bytes);
    st.s = s;

    size_t w = 0;
    if (prefix) {
        memcpy(s, spm_space, 3);
        w = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s + w, spm_space, 3);
            w += 3;
        } else {
            s[w++] = text[i];
        }
    }

    int32_t n_sym = 0;
    for (uint32_t off = 0; off < n_bytes;) {
        uint32_t n = 1, cp;
        if ((uint8_t)s[off] >= 0x80)
            n = (uint32_t)tw_utf8_decode((const uint8_t *)s + off, n_bytes - off, &cp);
        st.sym[n_sym] = (spm_sym){off, n, n_sym - 1, -1, SPM_NO_PAIR};
        if (n_sym > 0) st.sym[n_sym - 1].next = n_sym;
        n_sym++;
        off += n;
    }

    /* The first pairs all at once, then a bottom-up heapify (O(n) instead of n pushes). */
    for (int32_t i = 0; i + 1 < n_sym; i++)
        if (spm_pair_eval(&st, i)) st.heap[st.n_heap++] = spm_entry_of(&st, i);
    for (size_t i = st.n_heap / 2; i-- > 0;) spm_heap_sift_down(&st, i, st.heap[i]);

    while (st.n_heap > 0) {
        spm_entry e = spm_heap_pop(&st);
        int32_t li = (int32_t)(uint32_t)e;
        spm_sym *l = &st.sym[li];
        if (l->n == 0 || l->pair_key != (uint32_t)(e >> 32)) continue; /* stale */
        spm_sym *r = &st.sym[l->next];
        l->n += r->n;
        r->n = 0;
        r->pair_key = SPM_NO_PAIR;
        l->next = r->next;
        if (r->next >= 0) st.sym[r->next].prev = li;
        spm_pair_update(&st, l->prev);
        spm_pair_update(&st, li);
    }

    tw_status status = TW_OK;
    for (int32_t i = 0; i != -1 && status == TW_OK; i = st.sym[i].next)
        status = spm_emit(t, s + st.sym[i].off, st.sym[i].n, out);

    if (block != stack_buf) tw_free(block);
    return status;
}

tw_status tok_spm_init(tw_tokenizer *t) {
    /* Byte tokens: "<0xNN>", else (as llama.cpp) a token that is the byte itself. */
    static const char hex[] = "0123456789ABCDEF";
    for (int b = 0; b < 256; b++) {
        char name[7] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>', 0};
        int32_t id = tok_map_get(&t->text_to_id, name, 6);
        if (id < 0) {
            char one = (char)b;
            id = tok_map_get(&t->text_to_id, &one, 1);
        }
        t->byte_to_id[b] = id;
    }
    return TW_OK;
}
