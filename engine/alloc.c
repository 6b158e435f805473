/* alloc.c: the one host allocation entry point, with accounting and a fault-injection hook,
 * plus arenas and the string builder that sit on it (core.h).
 *
 * Each block carries a 16-byte header holding its size, so tw_free can keep the byte count
 * exact without asking the C library. 16 keeps the user pointer aligned for any scalar and
 * for SSE; buffers that need more (AVX, page) alignment use arenas or mmap. */
#include "core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HDR 16

static _Atomic size_t mem_current;
static _Atomic size_t mem_peak;
static _Atomic uint64_t mem_nallocs;
static _Atomic uint64_t mem_fail_countdown; /* 0: off; k: the k-th next allocation fails */

void tw_mem_fail_after(uint64_t n) { atomic_store(&mem_fail_countdown, n); }

static int should_fail(void) {
    uint64_t c = atomic_load(&mem_fail_countdown);
    while (c != 0) {
        if (atomic_compare_exchange_weak(&mem_fail_countdown, &c, c - 1)) return c == 1;
    }
    return 0;
}

static void account(size_t add, size_t sub) {
    size_t now = atomic_fetch_add(&mem_current, add) + add;
    atomic_fetch_sub(&mem_current, sub);
    now -= sub;
    size_t peak = atomic_load(&mem_peak);
    while (now > peak && !atomic_compare_exchange_weak(&mem_peak, &peak, now)) {
    }
}

void *tw_malloc(size_t n) {
    if (n > SIZE_MAX - HDR || should_fail()) {
        tw_error(TW_ERR_NOMEM, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    uint8_t *p = malloc(n + HDR);
    if (!p) {
        tw_error(TW_ERR_NOMEM, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    memcpy(p, &n, sizeof n);
    account(n, 0);
    atomic_fetch_add(&mem_nallocs, 1);
    return p + HDR;
}

void *tw_calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) {
        tw_error(TW_ERR_NOMEM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    void *p = tw_malloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void *tw_realloc(void *p, size_t n) {
    if (!p) return tw_malloc(n);
    if (n > SIZE_MAX - HDR || should_fail()) {
        tw_error(TW_ERR_NOMEM, "out of memory reallocating to %zu bytes", n);
        return NULL;
    }
    uint8_t *base = (uint8_t *)p - HDR;
    size_t old;
    memcpy(&old, base, sizeof old);
    uint8_t *q = realloc(base, n + HDR);
    if (!q) {
        tw_error(TW_ERR_NOMEM, "out of memory reallocating to %zu bytes", n);
        return NULL;
    }
    memcpy(q, &n, sizeof n);
    account(n, old);
    atomic_fetch_add(&mem_nallocs, 1);
    return q + HDR;
}

void tw_free(void *p) {
    if (!p) return;
    uint8_t *base = (uint8_t *)p - HDR;
    size_t n;
    memcpy(&n, base, sizeof n);
    atomic_fetch_sub(&mem_current, n);
    free(base);
}

char *tw_strndup(const char *s, size_t n) {
    char *d = tw_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *tw_strdup(const char *s) { return tw_strndup(s, strlen(s)); }

tw_mem_stats tw_mem_get_stats(void) {
    tw_mem_stats st = {atomic_load(&mem_current), atomic_load(&mem_peak),
                       atomic_load(&mem_nallocs)};
    return st;
}

/* ---- arenas ---- */

typedef struct arena_block {
    struct arena_block *next;
    size_t cap, used;
    uint8_t data[]; /* 16-byte aligned (tw_malloc); larger alignments are made per allocation */
} arena_block;

struct tw_arena {
    arena_block *head; /* current block; older blocks follow */
    size_t block_size;
    size_t total_used;
};

static arena_block *arena_block_new(size_t cap) {
    if (cap > SIZE_MAX - sizeof(arena_block)) return NULL;
    arena_block *b = tw_malloc(sizeof(arena_block) + cap);
    if (!b) return NULL;
    b->next = NULL;
    b->cap = cap;
    b->used = 0;
    return b;
}

tw_arena *tw_arena_new(size_t block_size) {
    tw_arena *a = tw_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->block_size = block_size ? block_size : 64 * 1024;
    a->head = arena_block_new(a->block_size);
    if (!a->head) {
        tw_free(a);
        return NULL;
    }
    return a;
}

void *tw_arena_alloc(tw_arena *a, size_t n, size_t align) {
    if (align == 0) align = 16;
    TW_ASSERT((align & (align - 1)) == 0 && align <= 64);
    arena_block *b = a->head;
    uintptr_t base = (uintptr_t)b->data;
    size_t off = ((base + b->used + align - 1) & ~(uintptr_t)(align - 1)) - base;
    if (off > b->cap || n > b->cap - off) {
        size_t cap = n + align > a->block_size ? n + align : a->block_size;
        if (cap < n) {
            tw_error(TW_ERR_NOMEM, "arena allocation of %zu bytes overflows", n);
            return NULL;
        }
        arena_block *nb = arena_block_new(cap);
        if (!nb) return NULL;
        nb->next = a->head;
        a->head = b = nb;
        base = (uintptr_t)b->data;
        off = ((base + align - 1) & ~(uintptr_t)(align - 1)) - base;
    }
    void *p = b->data + off;
    memset(p, 0, n);
    b->used = off + n;
    a->total_used += n;
    return p;
}

char *tw_arena_strndup(tw_arena *a, const char *s, size_t n) {
    char *d = tw_arena_alloc(a, n + 1, 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

size_t tw_arena_used(const tw_arena *a) { return a->total_used; }

void tw_arena_reset(tw_arena *a) {
    arena_block *b = a->head;
    while (b->next) {
        arena_block *next = b->next;
        tw_free(b);
        b = next;
    }
    b->used = 0;
    a->head = b;
    a->total_used = 0;
}

void tw_arena_free(tw_arena *a) {
    if (!a) return;
    arena_block *b = a->head;
    while (b) {
        arena_block *next = b->next;
        tw_free(b);
        b = next;
    }
    tw_free(a);
}

/* ---- string builder ---- */

void tw_sb_init(tw_sb *sb) { memset(sb, 0, sizeof *sb); }
void tw_sb_free(tw_sb *sb) {
    tw_free(sb->buf);
    memset(sb, 0, sizeof *sb);
}
void tw_sb_clear(tw_sb *sb) {
    sb->len = 0;
    if (sb->buf) sb->buf[0] = 0;
}

static int sb_reserve(tw_sb *sb, size_t extra) {
    if (sb->failed) return -1;
    if (extra > SIZE_MAX - sb->len - 1) {
        sb->failed = 1;
        return -1;
    }
    size_t need = sb->len + extra + 1;
    if (need <= sb->cap) return 0;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *nb = tw_realloc(sb->buf, cap);
    if (!nb) {
        sb->failed = 1;
        return -1;
    }
    sb->buf = nb;
    sb->cap = cap;
    return 0;
}

int tw_sb_append(tw_sb *sb, const char *s, size_t n) {
    if (sb_reserve(sb, n)) return -1;
    if (n) memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = 0;
    return 0;
}
int tw_sb_puts(tw_sb *sb, const char *s) { return tw_sb_append(sb, s, strlen(s)); }
int tw_sb_putc(tw_sb *sb, char c) { return tw_sb_append(sb, &c, 1); }

int tw_sb_printf(tw_sb *sb, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || sb_reserve(sb, (size_t)n)) {
        va_end(ap2);
        return -1;
    }
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    sb->len += (size_t)n;
    return 0;
}

int tw_sb_pct(tw_sb *sb, const char *s, size_t n, const char *keep) {
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || (c && keep && strchr(keep, c))) {
            tw_sb_putc(sb, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            tw_sb_append(sb, e, 3);
        }
    }
    return sb->failed ? -1 : 0;
}

int tw_sb_json_str(tw_sb *sb, const char *s, size_t n) {
    int rc = tw_sb_putc(sb, '"');
    size_t run = 0; /* start of the pending run of bytes that need no escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[8];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (c < 0x20) {
                snprintf(ubuf, sizeof ubuf, "\\u%04x", c);
                esc = ubuf;
            }
        }
        if (esc) {
            rc |= tw_sb_append(sb, s + run, i - run);
            rc |= tw_sb_puts(sb, esc);
            run = i + 1;
        }
    }
    rc |= tw_sb_append(sb, s + run, n - run);
    rc |= tw_sb_putc(sb, '"');
    return rc ? -1 : 0;
}

const char *tw_sb_str(const tw_sb *sb) { return sb->buf ? sb->buf : ""; }

char *tw_sb_take(tw_sb *sb) {
    char *b = sb->buf;
    if (!b) b = tw_strdup("");
    memset(sb, 0, sizeof *sb);
    return b;
}
