/* hnsw_io.c: the index file (hnsw_save / hnsw_load) and the fvecs / ivecs files of ANN
 * benchmarks (hnsw.h).
 *
 * The index file, little-endian:
 *
 *   header (128 bytes)
 *     0  magic "TWHNSW01"          8  u32 version (1)          12 u32 header size (128)
 *     16 i32 dim                   20 u32 metric               24 u32 storage
 *     28 i32 M                     32 i32 ef_construction      36 u32 number of sections
 *     40 u64 seed                  48 u64 slots (n)            56 u64 live vectors
 *     64 u64 entry point ((level << 32) | slot, or all ones when empty)
 *     72 u64 level generator counter                           80 u32 int8 ranges learned
 *     84.. zero
 *   section table: per section 24 bytes {u32 kind, u32 zero, u64 offset, u64 size}
 *   sections, each at an offset that is a multiple of 8:
 *     1 ids       n x i64          2 levels   n x u8           3 states n x u8 (1 live, 2 removed)
 *     4 payloads  n x {i64 author, i32 platform, i32 doc type, i32 day, i32 zero}
 *     5 vectors   n x dim x f32 (normalised for cosine)
 *     6 links0    n x (1 + 2M) x u32 (count, then neighbours)
 *     7 upper     for each slot in order, level x (1 + M) x u32
 *     8 ranges    int8 storage with ranges learned: dim x f32 middles, then dim x f32 steps
 *   checksum: the last 8 bytes, a u64 hash (hnsw_hash64 below) of every byte before them.
 *
 * The int8 codes are not stored: they follow from the vectors and the ranges. The loader
 * checks every offset and size against the file length, the checksum, and then what the
 * graph code relies on (link targets in range and not self, counts within M / 2M, upper links
 * to nodes of that level, unique ids, a live entry point of the top level, finite vectors),
 * so that a damaged file is refused with TW_ERR_FORMAT naming the path and the fault. The
 * index is built in memory from the mapped file (copies), so later inserts never touch it.
 */
#include "hnsw_impl.h"

#include <math.h>
#include <string.h>

#define HNSW_MAGIC "TWHNSW01"
#define HNSW_VERSION 1u
#define HNSW_HEADER_SIZE 128u
#define HNSW_N_KINDS 8
#define HNSW_PAYLOAD_BYTES 24u

enum { SEC_IDS = 1, SEC_LEVELS, SEC_STATES, SEC_PAYLOADS, SEC_VECTORS, SEC_LINKS0, SEC_UPPER, SEC_RANGES };

/* ---- the checksum ------------------------------------------------------------------------ */

/* A 64-bit hash over 8-byte little-endian words (the last one zero padded), then the length;
 * each word is mixed with a multiply and a shift. Not cryptographic: it finds damage, fast. */
typedef struct {
    uint64_t h, len;
    uint8_t buf[8];
    size_t nbuf;
} hnsw_hash64;

static inline uint64_t hash_word(uint64_t h, uint64_t w) {
    h ^= w;
    h *= 0xFF51AFD7ED558CCDull;
    return h ^ (h >> 32);
}

static void hash_init(hnsw_hash64 *c) {
    c->h = 0x5457484E53573031ull; /* "TWHNSW01" */
    c->len = 0;
    c->nbuf = 0;
}

static void hash_update(hnsw_hash64 *c, const void *data, size_t n) {
    const uint8_t *p = data;
    c->len += n;
    while (n && c->nbuf) {
        c->buf[c->nbuf++] = *p++;
        n--;
        if (c->nbuf == 8) {
            uint64_t w;
            memcpy(&w, c->buf, 8);
            c->h = hash_word(c->h, w);
            c->nbuf = 0;
        }
    }
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c->h = hash_word(c->h, w);
    }
    while (n--) c->buf[c->nbuf++] = *p++;
}

static uint64_t hash_final(hnsw_hash64 *c) {
    if (c->nbuf) {
        memset(c->buf + c->nbuf, 0, 8 - c->nbuf);
        uint64_t w;
        memcpy(&w, c->buf, 8);
        c->h = hash_word(c->h, w);
    }
    uint64_t h = hash_word(c->h, c->len);
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

/* ---- save -------------------------------------------------------------------------------- */

typedef struct {
    tw_afile af;
    hnsw_hash64 hash;
    uint64_t off;
    tw_status st;
} writer;

static void w_bytes(writer *w, const void *p, size_t n) {
    if (w->st != TW_OK || n == 0) return;
    hash_update(&w->hash, p, n);
    w->st = tw_afile_write(&w->af, p, n);
    w->off += n;
}

static void w_pad8(writer *w) {
    static const uint8_t zero[8];
    if (w->off % 8) w_bytes(w, zero, 8 - w->off % 8);
}

static void put_u32(uint8_t *b, size_t at, uint32_t v) { memcpy(b + at, &v, 4); }
static void put_u64(uint8_t *b, size_t at, uint64_t v) { memcpy(b + at, &v, 8); }
static uint32_t get_u32(const uint8_t *b, size_t at) {
    uint32_t v;
    memcpy(&v, b + at, 4);
    return v;
}
static uint64_t get_u64(const uint8_t *b, size_t at) {
    uint64_t v;
    memcpy(&v, b + at, 8);
    return v;
}

static uint64_t align8(uint64_t x) { return (x + 7) & ~(uint64_t)7; }

tw_status hnsw_save(const hnsw_index *ix, const char *path) {
    if (!ix || !path) return tw_error(TW_ERR_ARG, "hnsw_save: index or path is NULL");
    /* shared: searches may go on; hnsw.h asks for no concurrent writer */
    pthread_rwlock_rdlock(&ix->sync->grow);
    uint64_t n = atomic_load(&ix->n_slots);
    int ranges = ix->p.storage == HNSW_INT8 && ix->trained;
    uint64_t upper_n = 0;
    for (uint64_t s = 0; s < n; s++) upper_n += (uint64_t)ix->levels[s] * (uint64_t)(1 + ix->M);
    uint32_t nsec = ranges ? 8 : 7;
    uint64_t size[HNSW_N_KINDS + 1] = {0};
    size[SEC_IDS] = n * 8;
    size[SEC_LEVELS] = n;
    size[SEC_STATES] = n;
    size[SEC_PAYLOADS] = n * HNSW_PAYLOAD_BYTES;
    size[SEC_VECTORS] = n * (uint64_t)ix->dim * 4;
    size[SEC_LINKS0] = n * (uint64_t)(1 + ix->M0) * 4;
    size[SEC_UPPER] = upper_n * 4;
    size[SEC_RANGES] = ranges ? 2 * (uint64_t)ix->dim * 4 : 0;

    uint8_t hdr[HNSW_HEADER_SIZE] = {0};
    memcpy(hdr, HNSW_MAGIC, 8);
    put_u32(hdr, 8, HNSW_VERSION);
    put_u32(hdr, 12, HNSW_HEADER_SIZE);
    put_u32(hdr, 16, (uint32_t)ix->dim);
    put_u32(hdr, 20, (uint32_t)ix->p.metric);
    put_u32(hdr, 24, (uint32_t)ix->p.storage);
    put_u32(hdr, 28, (uint32_t)ix->M);
    put_u32(hdr, 32, (uint32_t)ix->p.ef_construction);
    put_u32(hdr, 36, nsec);
    put_u64(hdr, 40, ix->p.seed);
    put_u64(hdr, 48, n);
    put_u64(hdr, 56, (uint64_t)atomic_load(&ix->count));
    put_u64(hdr, 64, atomic_load(&ix->ep));
    put_u64(hdr, 72, atomic_load(&ix->level_ctr));
    put_u32(hdr, 80, (uint32_t)ranges);

    uint8_t table[HNSW_N_KINDS * 24] = {0};
    uint64_t off = align8(HNSW_HEADER_SIZE + (uint64_t)nsec * 24);
    for (uint32_t k = 1; k <= nsec; k++) {
        put_u32(table, (k - 1) * 24, k);
        put_u64(table, (k - 1) * 24 + 8, off);
        put_u64(table, (k - 1) * 24 + 16, size[k]);
        off = align8(off + size[k]);
    }

    writer w = {.st = TW_OK};
    hash_init(&w.hash);
    w.st = tw_afile_open(&w.af, path);
    if (w.st != TW_OK) {
        pthread_rwlock_unlock(&ix->sync->grow);
        tw_afile_abort(&w.af);
        return tw_error_wrap("hnsw_save");
    }
    w_bytes(&w, hdr, sizeof hdr);
    w_bytes(&w, table, (size_t)nsec * 24);
    w_pad8(&w);
    w_bytes(&w, ix->ids, n * 8);
    w_pad8(&w);
    w_bytes(&w, ix->levels, n);
    w_pad8(&w);
    for (uint64_t s = 0; s < n; s++) {
        uint8_t b = atomic_load(&ix->state[s]);
        if (b == HNSW_SLOT_EMPTY) b = HNSW_SLOT_TOMB; /* an unfinished slot is saved removed */
        w_bytes(&w, &b, 1);
    }
    w_pad8(&w);
    for (uint64_t s = 0; s < n; s++) {
        uint8_t b[HNSW_PAYLOAD_BYTES] = {0};
        const hnsw_payload *p = &ix->payloads[s];
        put_u64(b, 0, (uint64_t)p->author_id);
        put_u32(b, 8, (uint32_t)p->platform);
        put_u32(b, 12, (uint32_t)p->doc_type);
        put_u32(b, 16, (uint32_t)p->published_day);
        w_bytes(&w, b, sizeof b);
    }
    w_pad8(&w);
    for (uint64_t s = 0; s < n; s++) w_bytes(&w, hnsw_vec(ix, (uint32_t)s), (size_t)ix->dim * 4);
    w_pad8(&w);
    uint32_t tmp[1 + 512];
    for (uint64_t s = 0; s < n; s++) {
        _Atomic uint32_t *L = hnsw_links(ix, (uint32_t)s, 0);
        for (int32_t j = 0; j <= ix->M0; j++) tmp[j] = atomic_load(&L[j]);
        w_bytes(&w, tmp, (size_t)(1 + ix->M0) * 4);
    }
    w_pad8(&w);
    for (uint64_t s = 0; s < n; s++)
        for (int l = 1; l <= ix->levels[s]; l++) {
            _Atomic uint32_t *L = hnsw_links(ix, (uint32_t)s, l);
            for (int32_t j = 0; j <= ix->M; j++) tmp[j] = atomic_load(&L[j]);
            w_bytes(&w, tmp, (size_t)(1 + ix->M) * 4);
        }
    w_pad8(&w);
    if (ranges) {
        w_bytes(&w, ix->qmid, (size_t)ix->dim * 4);
        w_bytes(&w, ix->qscale, (size_t)ix->dim * 4);
        w_pad8(&w);
    }
    pthread_rwlock_unlock(&ix->sync->grow);
    TW_ASSERT(w.st != TW_OK || w.off == off);
    uint64_t h = hash_final(&w.hash);
    if (w.st == TW_OK) w.st = tw_afile_write(&w.af, &h, 8);
    if (w.st == TW_OK) w.st = tw_afile_commit(&w.af);
    if (w.st != TW_OK) {
        tw_afile_abort(&w.af);
        return tw_error_wrap("hnsw_save");
    }
    return TW_OK;
}

/* ---- load -------------------------------------------------------------------------------- */

#define BAD(...) tw_error(TW_ERR_FORMAT, __VA_ARGS__)

static tw_status load_graph(const char *path, const uint8_t *d, const uint64_t *off, hnsw_index *ix, uint64_t n,
                            uint64_t live, uint64_t ep, int ranges) {
    const uint8_t *levels = d + off[SEC_LEVELS], *states = d + off[SEC_STATES];
    int32_t dim = ix->dim;
    /* levels and states first: the upper section's size depends on them */
    uint64_t live_seen = 0;
    for (uint64_t s = 0; s < n; s++) {
        if (levels[s] > HNSW_MAX_LEVEL) return BAD("%s: slot %llu: level %u over %d", path, (unsigned long long)s, levels[s], HNSW_MAX_LEVEL);
        if (states[s] != HNSW_SLOT_LIVE && states[s] != HNSW_SLOT_TOMB)
            return BAD("%s: slot %llu: state %u unknown", path, (unsigned long long)s, states[s]);
        live_seen += states[s] == HNSW_SLOT_LIVE;
    }
    if (live_seen != live) return BAD("%s: header says %llu live vectors, the states say %llu", path, (unsigned long long)live, (unsigned long long)live_seen);
    if (ep == HNSW_EP_NONE) {
        if (live) return BAD("%s: no entry point but %llu live vectors", path, (unsigned long long)live);
    } else {
        uint64_t es = ep & 0xFFFFFFFFu, el = ep >> 32;
        if (es >= n || states[es] != HNSW_SLOT_LIVE || levels[es] != el)
            return BAD("%s: entry point (slot %llu, level %llu) is not a live node of that level", path, (unsigned long long)es, (unsigned long long)el);
    }
    tw_status rc = hnsw_reserve(ix, n ? n : 1);
    if (rc != TW_OK) return rc;
    for (uint64_t s = 0; s < n; s++) {
        uint32_t slot = (uint32_t)s;
        int64_t id;
        memcpy(&id, d + off[SEC_IDS] + s * 8, 8);
        ix->ids[s] = id;
        ix->levels[s] = levels[s];
        const uint8_t *pb = d + off[SEC_PAYLOADS] + s * HNSW_PAYLOAD_BYTES;
        ix->payloads[s].author_id = (int64_t)get_u64(pb, 0);
        ix->payloads[s].platform = (int32_t)get_u32(pb, 8);
        ix->payloads[s].doc_type = (int32_t)get_u32(pb, 12);
        ix->payloads[s].published_day = (int32_t)get_u32(pb, 16);
        float *v = hnsw_vec(ix, slot);
        memcpy(v, d + off[SEC_VECTORS] + s * (uint64_t)dim * 4, (size_t)dim * 4);
        for (int32_t i = 0; i < dim; i++)
            if (!isfinite(v[i])) return BAD("%s: slot %llu: value %d is not finite", path, (unsigned long long)s, (int)i);
        atomic_store(&ix->state[s], states[s]);
        if (states[s] == HNSW_SLOT_LIVE) {
            if (id == INT64_MIN) return BAD("%s: slot %llu: id INT64_MIN is reserved", path, (unsigned long long)s);
            uint32_t other;
            if (hnsw_map_get(ix, id, &other))
                return BAD("%s: id %lld is in slots %u and %llu", path, (long long)id, other, (unsigned long long)s);
            if ((rc = hnsw_map_put(ix, id, slot)) != TW_OK) return rc;
        } else {
            if ((rc = hnsw_free_push(ix, slot)) != TW_OK) return rc;
            atomic_fetch_add(&ix->n_tomb, 1);
        }
        if (levels[s]) {
            size_t bytes = (size_t)levels[s] * (size_t)(1 + ix->M) * 4;
            ix->upper[s] = tw_calloc(1, bytes);
            if (!ix->upper[s]) return tw_error(TW_ERR_NOMEM, "hnsw_load: %s: no memory", path);
            atomic_fetch_add(&ix->upper_bytes, bytes);
        }
        atomic_store(&ix->n_slots, slot + 1);
    }
    /* links: every target in range, not self, of at least that level */
    const uint8_t *up = d + off[SEC_UPPER];
    for (uint64_t s = 0; s < n; s++) {
        for (int l = 0; l <= levels[s]; l++) {
            const uint8_t *src;
            uint32_t maxn = (uint32_t)(l ? ix->M : ix->M0);
            if (l == 0) {
                src = d + off[SEC_LINKS0] + s * (uint64_t)(1 + ix->M0) * 4;
            } else {
                src = up;
                up += (size_t)(1 + ix->M) * 4;
            }
            uint32_t cnt = get_u32(src, 0);
            if (cnt > maxn)
                return BAD("%s: slot %llu level %d: %u links over the limit %u", path, (unsigned long long)s, l, cnt, maxn);
            _Atomic uint32_t *L = hnsw_links(ix, (uint32_t)s, l);
            for (uint32_t j = 1; j <= maxn; j++) {
                uint32_t t = get_u32(src, (size_t)j * 4);
                if (j <= cnt && (t >= n || t == s || levels[t] < l))
                    return BAD("%s: slot %llu level %d: link %u to slot %u is invalid", path, (unsigned long long)s, l, j, t);
                atomic_store(&L[j], j <= cnt ? t : 0);
            }
            atomic_store(&L[0], cnt);
        }
    }
    if (ranges) {
        const uint8_t *r = d + off[SEC_RANGES];
        memcpy(ix->qmid, r, (size_t)dim * 4);
        memcpy(ix->qscale, r + (size_t)dim * 4, (size_t)dim * 4);
        for (int32_t i = 0; i < dim; i++)
            if (!isfinite(ix->qmid[i]) || !isfinite(ix->qscale[i]) || !(ix->qscale[i] > 0))
                return BAD("%s: int8 range of dimension %d is invalid", path, (int)i);
        for (uint64_t s = 0; s < n; s++) hnsw_quant_encode(ix, (uint32_t)s);
        ix->trained = 1;
    }
    atomic_store(&ix->count, (int64_t)live);
    atomic_store(&ix->ep, ep);
    return TW_OK;
}

tw_status hnsw_load(const char *path, hnsw_index **out) {
    if (!out || !path) return tw_error(TW_ERR_ARG, "hnsw_load: path or out is NULL");
    *out = NULL;
    tw_mfile mf = {0};
    tw_status rc = tw_mfile_open(&mf, path);
    if (rc != TW_OK) return tw_error_wrap("hnsw_load");
    const uint8_t *d = mf.data;
    uint64_t size = mf.size;
    hnsw_index *ix = NULL;
    if (size < HNSW_HEADER_SIZE + 8) {
        rc = BAD("%s: %llu bytes, too short for an HNSW index", path, (unsigned long long)size);
        goto done;
    }
    if (memcmp(d, HNSW_MAGIC, 8) != 0) {
        rc = BAD("%s: bad magic (not a twin HNSW index)", path);
        goto done;
    }
    uint32_t version = get_u32(d, 8), hsize = get_u32(d, 12);
    if (version != HNSW_VERSION) {
        rc = BAD("%s: version %u, this build reads %u", path, version, HNSW_VERSION);
        goto done;
    }
    uint32_t nsec = get_u32(d, 36);
    if (hsize < HNSW_HEADER_SIZE || hsize > size - 8 || nsec > 64 || (uint64_t)hsize + (uint64_t)nsec * 24 > size - 8) {
        rc = BAD("%s: header size %u / %u sections do not fit in %llu bytes", path, hsize, nsec, (unsigned long long)size);
        goto done;
    }
    uint64_t stored;
    memcpy(&stored, d + size - 8, 8);
    hnsw_hash64 hc;
    hash_init(&hc);
    hash_update(&hc, d, size - 8);
    if (hash_final(&hc) != stored) {
        rc = BAD("%s: checksum mismatch (the file is damaged)", path);
        goto done;
    }
    hnsw_params p;
    hnsw_params_default(&p, (int32_t)get_u32(d, 16), (hnsw_metric)get_u32(d, 20));
    p.storage = (hnsw_storage)get_u32(d, 24);
    p.M = (int32_t)get_u32(d, 28);
    p.ef_construction = (int32_t)get_u32(d, 32);
    p.seed = get_u64(d, 40);
    uint64_t n = get_u64(d, 48), live = get_u64(d, 56), ep = get_u64(d, 64), ctr = get_u64(d, 72);
    uint32_t ranges = get_u32(d, 80);
    if (p.dim < 1 || p.dim > 65536 || get_u32(d, 20) > HNSW_L2 || get_u32(d, 24) > HNSW_INT8 || p.M < 2 ||
        p.M > 256 || p.ef_construction < 1 || p.ef_construction > 100000 || ranges > 1 ||
        (ranges && p.storage != HNSW_INT8)) {
        rc = BAD("%s: header fields out of range (dim %d, metric %u, storage %u, M %d, ef_construction %d)", path,
                 (int)p.dim, get_u32(d, 20), get_u32(d, 24), (int)p.M, (int)p.ef_construction);
        goto done;
    }
    if (n >= UINT32_MAX - 2 || live > n) {
        rc = BAD("%s: %llu slots / %llu live vectors out of range", path, (unsigned long long)n, (unsigned long long)live);
        goto done;
    }
    /* sections: each kind once, inside the file, of the size the header implies */
    uint64_t off[HNSW_N_KINDS + 1] = {0}, sz[HNSW_N_KINDS + 1] = {0};
    int seen[HNSW_N_KINDS + 1] = {0};
    for (uint32_t i = 0; i < nsec; i++) {
        const uint8_t *e = d + hsize + (size_t)i * 24;
        uint32_t kind = get_u32(e, 0);
        uint64_t o = get_u64(e, 8), z = get_u64(e, 16);
        if (kind < 1 || kind > HNSW_N_KINDS || seen[kind]) {
            rc = BAD("%s: section %u: kind %u unknown or repeated", path, i, kind);
            goto done;
        }
        if (o < (uint64_t)hsize + (uint64_t)nsec * 24 || o > size - 8 || z > size - 8 - o) {
            rc = BAD("%s: section %u (kind %u): offset %llu size %llu outside the file", path, i, kind,
                     (unsigned long long)o, (unsigned long long)z);
            goto done;
        }
        seen[kind] = 1;
        off[kind] = o;
        sz[kind] = z;
    }
    uint64_t want[HNSW_N_KINDS + 1] = {0};
    want[SEC_IDS] = n * 8;
    want[SEC_LEVELS] = n;
    want[SEC_STATES] = n;
    want[SEC_PAYLOADS] = n * HNSW_PAYLOAD_BYTES;
    want[SEC_VECTORS] = n * (uint64_t)p.dim * 4;
    want[SEC_LINKS0] = n * (uint64_t)(1 + 2 * p.M) * 4;
    want[SEC_RANGES] = ranges ? 2 * (uint64_t)p.dim * 4 : 0;
    for (int k = 1; k <= HNSW_N_KINDS; k++) {
        if (k == SEC_UPPER) continue;
        int needed = k != SEC_RANGES || ranges;
        if (needed && !seen[k]) {
            rc = BAD("%s: section kind %d missing", path, k);
            goto done;
        }
        if (seen[k] && sz[k] != want[k]) {
            rc = BAD("%s: section kind %d has %llu bytes, expected %llu", path, k, (unsigned long long)sz[k],
                     (unsigned long long)want[k]);
            goto done;
        }
    }
    if (!seen[SEC_UPPER]) {
        rc = BAD("%s: section kind %d missing", path, SEC_UPPER);
        goto done;
    }
    uint64_t upper_n = 0;
    for (uint64_t s = 0; s < n; s++) upper_n += d[off[SEC_LEVELS] + s];
    if (sz[SEC_UPPER] != upper_n * (uint64_t)(1 + p.M) * 4) {
        rc = BAD("%s: upper links section has %llu bytes, the levels imply %llu", path, (unsigned long long)sz[SEC_UPPER],
                 (unsigned long long)(upper_n * (uint64_t)(1 + p.M) * 4));
        goto done;
    }
    p.capacity = n ? (int64_t)n : 1;
    rc = hnsw_new(&p, &ix);
    if (rc != TW_OK) goto done;
    atomic_store(&ix->level_ctr, ctr);
    rc = load_graph(path, d, off, ix, n, live, ep, (int)ranges);
done:
    tw_mfile_close(&mf);
    if (rc != TW_OK) {
        hnsw_free(ix);
        return rc;
    }
    *out = ix;
    return TW_OK;
}

/* ---- fvecs / ivecs ----------------------------------------------------------------------- */

/* Both formats: per vector an int32 dim, then dim 4-byte values. */
static tw_status vecs_read(const char *path, void **data, int32_t *dim, int64_t *n, const char *kind) {
    if (!path || !data || !dim || !n) return tw_error(TW_ERR_ARG, "hnsw_%s_read: NULL argument", kind);
    *data = NULL;
    *dim = 0;
    *n = 0;
    tw_mfile mf = {0};
    if (tw_mfile_open(&mf, path) != TW_OK) return tw_error_wrap("%s", kind);
    tw_status rc = TW_OK;
    if (mf.size < 4) {
        rc = BAD("%s: %zu bytes, no %s vector", path, mf.size, kind);
        goto done;
    }
    int32_t d;
    memcpy(&d, mf.data, 4);
    if (d < 1 || d > (1 << 20)) {
        rc = BAD("%s: dimension %d out of [1, 2^20]", path, (int)d);
        goto done;
    }
    uint64_t rec = 4 + 4 * (uint64_t)d;
    if (mf.size % rec) {
        rc = BAD("%s: %zu bytes is not a whole number of %d-dimensional vectors", path, mf.size, (int)d);
        goto done;
    }
    uint64_t cnt = mf.size / rec;
    uint8_t *out = tw_malloc((size_t)(cnt * (uint64_t)d * 4));
    if (!out) {
        rc = tw_error(TW_ERR_NOMEM, "%s: no memory for %llu vectors", path, (unsigned long long)cnt);
        goto done;
    }
    for (uint64_t i = 0; i < cnt; i++) {
        int32_t di;
        memcpy(&di, mf.data + i * rec, 4);
        if (di != d) {
            tw_free(out);
            rc = BAD("%s: vector %llu has dimension %d, the first has %d", path, (unsigned long long)i, (int)di, (int)d);
            goto done;
        }
        memcpy(out + i * (uint64_t)d * 4, mf.data + i * rec + 4, (size_t)d * 4);
    }
    *data = out;
    *dim = d;
    *n = (int64_t)cnt;
done:
    tw_mfile_close(&mf);
    return rc;
}

tw_status hnsw_fvecs_read(const char *path, float **data, int32_t *dim, int64_t *n) {
    void *p = NULL;
    tw_status rc = vecs_read(path, &p, dim, n, "fvecs");
    if (data) *data = p;
    return rc;
}

tw_status hnsw_ivecs_read(const char *path, int32_t **data, int32_t *dim, int64_t *n) {
    void *p = NULL;
    tw_status rc = vecs_read(path, &p, dim, n, "ivecs");
    if (data) *data = p;
    return rc;
}

tw_status hnsw_fvecs_write(const char *path, const float *data, int32_t dim, int64_t n) {
    if (!path || (n > 0 && !data) || dim < 1 || n < 0) return tw_error(TW_ERR_ARG, "hnsw_fvecs_write: bad arguments");
    tw_afile af;
    tw_status rc = tw_afile_open(&af, path);
    for (int64_t i = 0; i < n && rc == TW_OK; i++) {
        rc = tw_afile_write(&af, &dim, 4);
        if (rc == TW_OK) rc = tw_afile_write(&af, data + (size_t)i * (size_t)dim, (size_t)dim * 4);
    }
    if (rc == TW_OK) return tw_afile_commit(&af);
    tw_afile_abort(&af);
    return tw_error_wrap("hnsw_fvecs_write");
}
