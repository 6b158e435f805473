/* tok_spm.c: SentencePiece BPE, the way llama.cpp's SPM tokenizer does it.
 *
 * The fragment is escaped (every ' ' becomes U+2581 "▁", and a leading "▁" is added when the
 * tokenizer's add_space_prefix is set), split into UTF-8 characters, and then the adjacent
 * pair of symbols whose concatenation is a vocabulary entry with the highest score is merged,
 * again and again (ties: the leftmost pair), through a max-heap of candidate pairs over a
 * doubly linked list of symbols. Symbols left that are not vocabulary entries are written as
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
 * Cost: one scratch allocation per call (none for fragments up to a few hundred bytes, which
 * use a stack buffer), one hash lookup per candidate pair, O(n log n) heap work.
 */
#include "tokenizer_impl.h"

#include <string.h>

/* A run of bytes of the escaped text; merged-away symbols have n == 0. */
typedef struct {
    uint32_t off, n;
    int32_t prev, next; /* -1 at the ends */
} spm_sym;

/* A candidate merge of symbols left and right (left's next at push time); stale when either
 * side has changed since, which a size mismatch or an emptied symbol tells. */
typedef struct {
    float score;
    int32_t left, right;
    uint32_t size; /* bytes of the concatenation when pushed */
} spm_pair;

typedef struct {
    const tw_tokenizer *t;
    const char *s; /* the escaped text */
    spm_sym *sym;
    spm_pair *heap; /* max-heap by (score desc, left asc) */
    size_t n_heap;
} spm_state;

/* 1 when a ranks before b: higher score first, then the leftmost pair. */
static inline int spm_pair_before(const spm_pair *a, const spm_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void spm_heap_push(spm_state *st, spm_pair p) {
    size_t i = st->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!spm_pair_before(&p, &st->heap[parent])) break;
        st->heap[i] = st->heap[parent];
        i = parent;
    }
    st->heap[i] = p;
}

static spm_pair spm_heap_pop(spm_state *st) {
    spm_pair top = st->heap[0];
    spm_pair last = st->heap[--st->n_heap];
    size_t n = st->n_heap, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && spm_pair_before(&st->heap[c + 1], &st->heap[c])) c++;
        if (!spm_pair_before(&st->heap[c], &last)) break;
        st->heap[i] = st->heap[c];
        i = c;
    }
    if (n > 0) st->heap[i] = last;
    return top;
}

/* Pushes the pair (left, right) when their concatenation is a vocabulary entry. */
static void spm_try_pair(spm_state *st, int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const spm_sym *l = &st->sym[left], *r = &st->sym[right];
    uint32_t size = l->n + r->n;
    int32_t id = tok_map_get(&st->t->text_to_id, st->s + l->off, size);
    if (id < 0 || id >= st->t->n_vocab) return;
    spm_pair p = {st->t->vocab[id].score, left, right, size};
    spm_heap_push(st, p);
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

    /* One block: symbols (<= n_bytes), heap (the first n-1 pairs plus at most two per merge,
     * < 3 * n_bytes), then the escaped text. */
    size_t sym_bytes = n_bytes * sizeof(spm_sym);
    size_t heap_bytes = 3 * n_bytes * sizeof(spm_pair);
    size_t total = sym_bytes + heap_bytes + n_bytes;
    _Alignas(16) unsigned char stack_buf[SPM_STACK_BYTES];
    unsigned char *block = stack_buf;
    if (total > sizeof stack_buf) {
        block = tw_malloc(total);
        if (!block) return tw_error_wrap("spm tokenizer: scratch for %zu bytes of text", len);
    }
    spm_state st = {t, NULL, (spm_sym *)block, (spm_pair *)(block + sym_bytes), 0};
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
        st.sym[n_sym] = (spm_sym){off, n, n_sym - 1, -1};
        if (n_sym > 0) st.sym[n_sym - 1].next = n_sym;
        n_sym++;
        off += n;
    }

    for (int32_t i = 1; i < n_sym; i++) spm_try_pair(&st, i - 1, i);

    while (st.n_heap > 0) {
        spm_pair p = spm_heap_pop(&st);
        spm_sym *l = &st.sym[p.left], *r = &st.sym[p.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != p.size) continue; /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) st.sym[r->next].prev = p.left;
        spm_try_pair(&st, l->prev, p.left);
        spm_try_pair(&st, p.left, l->next);
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
