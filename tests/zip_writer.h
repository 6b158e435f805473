/* zip_writer.h: a small ZIP writer for the ZIP reader's tests (stored and deflate through
 * zlib, ZIP64 records on demand), keeping the offset of every record so a test can corrupt
 * exactly one field. Test code only; twin itself never writes ZIP archives. */
#ifndef TWIN_TEST_ZIP_WRITER_H
#define TWIN_TEST_ZIP_WRITER_H

#include <string.h>
#include <zlib.h>

#include "core.h"

typedef struct {
    const char *name;
    const void *data;
    size_t len;
    int method; /* 0 stored, 8 deflate */
} tmember;

typedef struct {
    int zip64;           /* ZIP64 extra fields for every member + the ZIP64 end records */
    const char *comment; /* archive comment, or NULL */
} topts;

#define TMAX 16
typedef struct {
    tw_sb sb;             /* the archive */
    size_t local[TMAX];   /* offset of each local header */
    size_t data[TMAX];    /* offset of each member's data */
    size_t central[TMAX]; /* offset of each central record */
    size_t cd_off, eocd_off;
} tzip;

static inline void put16(tw_sb *sb, uint32_t v) {
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    tw_sb_append(sb, (const char *)b, 2);
}
static inline void put32(tw_sb *sb, uint32_t v) {
    put16(sb, v & 0xFFFF);
    put16(sb, v >> 16);
}
static inline void put64(tw_sb *sb, uint64_t v) {
    put32(sb, (uint32_t)v);
    put32(sb, (uint32_t)(v >> 32));
}

/* Raw deflate (no zlib header), as ZIP stores it. Returns a tw_malloc'd buffer. */
static inline uint8_t *deflate_raw(const void *data, size_t len, size_t *out_len) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return NULL;
    size_t cap = deflateBound(&zs, (uLong)len) + 16;
    uint8_t *out = tw_malloc(cap);
    zs.next_in = (Bytef *)(uintptr_t)data;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int r = deflate(&zs, Z_FINISH);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    if (r != Z_STREAM_END) {
        tw_free(out);
        return NULL;
    }
    return out;
}

static inline void tzip_build(tzip *t, const tmember *m, int n, topts o) {
    TW_ASSERT(n <= TMAX);
    tw_sb_init(&t->sb);
    uint8_t *comp[TMAX];
    size_t clen[TMAX];
    uint32_t crc[TMAX];
    for (int i = 0; i < n; i++) {
        crc[i] = (uint32_t)crc32(0, (const Bytef *)m[i].data, (uInt)m[i].len);
        if (m[i].method == 8) {
            comp[i] = deflate_raw(m[i].data, m[i].len, &clen[i]);
        } else {
            comp[i] = tw_malloc(m[i].len + 1);
            memcpy(comp[i], m[i].data, m[i].len);
            clen[i] = m[i].len;
        }
    }
    for (int i = 0; i < n; i++) {
        uint32_t nl = (uint32_t)strlen(m[i].name);
        t->local[i] = t->sb.len;
        put32(&t->sb, 0x04034b50);
        put16(&t->sb, o.zip64 ? 45 : 20);
        put16(&t->sb, 0);
        put16(&t->sb, (uint32_t)m[i].method);
        put32(&t->sb, 0); /* time, date */
        put32(&t->sb, crc[i]);
        put32(&t->sb, o.zip64 ? 0xFFFFFFFFu : (uint32_t)clen[i]);
        put32(&t->sb, o.zip64 ? 0xFFFFFFFFu : (uint32_t)m[i].len);
        put16(&t->sb, nl);
        put16(&t->sb, o.zip64 ? 20 : 0);
        tw_sb_append(&t->sb, m[i].name, nl);
        if (o.zip64) {
            put16(&t->sb, 1);
            put16(&t->sb, 16);
            put64(&t->sb, m[i].len);
            put64(&t->sb, clen[i]);
        }
        t->data[i] = t->sb.len;
        tw_sb_append(&t->sb, (const char *)comp[i], clen[i]);
    }
    t->cd_off = t->sb.len;
    for (int i = 0; i < n; i++) {
        uint32_t nl = (uint32_t)strlen(m[i].name);
        t->central[i] = t->sb.len;
        put32(&t->sb, 0x02014b50);
        put16(&t->sb, 0x031e);
        put16(&t->sb, o.zip64 ? 45 : 20);
        put16(&t->sb, 0);
        put16(&t->sb, (uint32_t)m[i].method);
        put32(&t->sb, 0);
        put32(&t->sb, crc[i]);
        put32(&t->sb, o.zip64 ? 0xFFFFFFFFu : (uint32_t)clen[i]);
        put32(&t->sb, o.zip64 ? 0xFFFFFFFFu : (uint32_t)m[i].len);
        put16(&t->sb, nl);
        put16(&t->sb, o.zip64 ? 28 : 0);
        put16(&t->sb, 0);  /* comment */
        put16(&t->sb, 0);  /* disk */
        put16(&t->sb, 0);  /* internal attributes */
        put32(&t->sb, 0);  /* external attributes */
        put32(&t->sb, o.zip64 ? 0xFFFFFFFFu : (uint32_t)t->local[i]);
        tw_sb_append(&t->sb, m[i].name, nl);
        if (o.zip64) {
            put16(&t->sb, 1);
            put16(&t->sb, 24);
            put64(&t->sb, m[i].len);
            put64(&t->sb, clen[i]);
            put64(&t->sb, t->local[i]);
        }
        tw_free(comp[i]);
    }
    size_t cd_size = t->sb.len - t->cd_off;
    if (o.zip64) {
        size_t rec = t->sb.len;
        put32(&t->sb, 0x06064b50);
        put64(&t->sb, 44);
        put16(&t->sb, 45);
        put16(&t->sb, 45);
        put32(&t->sb, 0);
        put32(&t->sb, 0);
        put64(&t->sb, (uint64_t)n);
        put64(&t->sb, (uint64_t)n);
        put64(&t->sb, cd_size);
        put64(&t->sb, t->cd_off);
        put32(&t->sb, 0x07064b50);
        put32(&t->sb, 0);
        put64(&t->sb, rec);
        put32(&t->sb, 1);
    }
    size_t cl = o.comment ? strlen(o.comment) : 0;
    t->eocd_off = t->sb.len;
    put32(&t->sb, 0x06054b50);
    put16(&t->sb, 0);
    put16(&t->sb, 0);
    put16(&t->sb, o.zip64 ? 0xFFFF : (uint32_t)n);
    put16(&t->sb, o.zip64 ? 0xFFFF : (uint32_t)n);
    put32(&t->sb, o.zip64 ? 0xFFFFFFFFu : (uint32_t)cd_size);
    put32(&t->sb, o.zip64 ? 0xFFFFFFFFu : (uint32_t)t->cd_off);
    put16(&t->sb, (uint32_t)cl);
    if (cl) tw_sb_append(&t->sb, o.comment, cl);
    TW_ASSERT(!t->sb.failed);
}

static inline uint8_t *tz_bytes(tzip *t) { return (uint8_t *)t->sb.buf; }
static inline void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16), p[3] = (uint8_t)(v >> 24);
}

#endif
