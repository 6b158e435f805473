/* zip.c: the ZIP archive reader (zip.h). The one file that includes zlib's header.
 *
 * Layout read here (APPNOTE 6.3, all integers little-endian):
 *
 *   [local header 30 B + name + extra][member data] ... repeated
 *   [central directory: one 46 B record + name + extra + comment per member]
 *   [ZIP64 end of central directory record 56+ B]      optional
 *   [ZIP64 end of central directory locator 20 B]       optional
 *   [end of central directory record 22 B + comment]
 *
 * Sizes, CRCs and offsets are taken from the central directory (a local header may defer
 * them to a data descriptor); the local header only supplies where the data starts. */
#include "zip.h"

#include <limits.h>
#include <string.h>
#include <zlib.h>

#define ZIP_SIG_LOCAL 0x04034b50u
#define ZIP_SIG_CENTRAL 0x02014b50u
#define ZIP_SIG_EOCD 0x06054b50u
#define ZIP_SIG_EOCD64 0x06064b50u
#define ZIP_SIG_LOCATOR64 0x07064b50u

#define ZIP_LOCAL_SIZE 30u
#define ZIP_CENTRAL_SIZE 46u
#define ZIP_EOCD_SIZE 22u
#define ZIP_EOCD64_SIZE 56u
#define ZIP_LOCATOR64_SIZE 20u
#define ZIP_EXTRA_ZIP64 0x0001u

#define ZIP_FLAG_ENCRYPTED 0x0001u
#define ZIP_METHOD_STORED 0u
#define ZIP_METHOD_DEFLATE 8u

/* Pieces handed to the sink and fed to zlib: small enough to stay in cache, large enough that
 * the per-call overhead does not show. */
#define ZIP_OUT_CHUNK (256u * 1024u)
#define ZIP_IN_CHUNK (1u << 20)

typedef struct {
    uint64_t usize;     /* uncompressed bytes */
    uint64_t csize;     /* bytes of member data in the archive */
    uint64_t local_off; /* offset of the local header */
    uint32_t crc;
    uint16_t method;
    uint16_t flags;
    const char *name;   /* into zip_archive.names */
} zip_entry;

struct zip_archive {
    tw_mfile mf;         /* zip_open: the mapping; zeroed for zip_open_memory */
    const uint8_t *data; /* the whole archive, size bytes */
    uint64_t size;
    uint64_t cd_off;     /* start of the central directory: member data ends before it */
    char *path;          /* for messages */
    zip_entry *entries;  /* n */
    size_t n;
    char *names;         /* every member name, NUL-terminated, one block */
};

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
           ((uint32_t)p[3] << 24);
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32); }

/* True when [off, off+len) lies inside [0, end). */
static int in_range(uint64_t off, uint64_t len, uint64_t end) {
    return off <= end && len <= end - off;
}

/* A member name made fit for a one-line message: control bytes become '?', long names are
 * cut. Returns buf. */
static const char *disp(char buf[128], const char *name) {
    size_t j = 0;
    for (size_t i = 0; name[i] && j < 120; i++) {
        unsigned char c = (unsigned char)name[i];
        buf[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if (j == 120) {
        memcpy(buf + j, "...", 3);
        j += 3;
    }
    buf[j] = 0;
    return buf;
}

/* ---- index ------------------------------------------------------------------------------- */

/* Finds the end of central directory record: the last signature that leaves room for the
 * record and its comment, scanning back over at most a maximal comment. */
static tw_status find_eocd(const zip_archive *z, uint64_t *pos) {
    if (z->size < ZIP_EOCD_SIZE)
        return tw_error(TW_ERR_FORMAT,
                        "%s: not a ZIP archive (%llu bytes, too short for the end of central "
                        "directory record)",
                        z->path, (unsigned long long)z->size);
    uint64_t last = z->size - ZIP_EOCD_SIZE;
    uint64_t first = last > 0xFFFFu ? last - 0xFFFFu : 0;
    for (uint64_t p = last + 1; p-- > first;) {
        const uint8_t *r = z->data + p;
        if (rd32(r) != ZIP_SIG_EOCD) continue;
        if (p + ZIP_EOCD_SIZE + rd16(r + 20) <= z->size) {
            *pos = p;
            return TW_OK;
        }
    }
    return tw_error(TW_ERR_FORMAT, "%s: not a ZIP archive (no end of central directory record)",
                    z->path);
}

typedef struct {
    uint64_t n_entries;
    uint64_t cd_size;
    uint64_t cd_off;
    uint64_t cd_limit; /* where the central directory must end: the next record */
} zip_dir_info;

static tw_status read_eocd(const zip_archive *z, zip_dir_info *di) {
    uint64_t pos = 0;
    tw_status s = find_eocd(z, &pos);
    if (s) return s;
    const uint8_t *r = z->data + pos;
    uint32_t disk = rd16(r + 4), cd_disk = rd16(r + 6);
    uint64_t n_disk = rd16(r + 8), n_total = rd16(r + 10);
    di->cd_size = rd32(r + 12);
    di->cd_off = rd32(r + 16);
    di->cd_limit = pos;

    if (pos >= ZIP_LOCATOR64_SIZE &&
        rd32(z->data + pos - ZIP_LOCATOR64_SIZE) == ZIP_SIG_LOCATOR64) {
        const uint8_t *loc = z->data + pos - ZIP_LOCATOR64_SIZE;
        uint64_t loc_pos = pos - ZIP_LOCATOR64_SIZE;
        uint32_t loc_disk = rd32(loc + 4), n_disks = rd32(loc + 16);
        uint64_t off64 = rd64(loc + 8);
        if (loc_disk != 0 || n_disks > 1)
            return tw_error(TW_ERR_UNSUPPORTED,
                            "%s: ZIP64 locator: multi-disk archives are not supported (%u disks)",
                            z->path, n_disks);
        if (!in_range(off64, ZIP_EOCD64_SIZE, loc_pos))
            return tw_error(TW_ERR_FORMAT,
                            "%s: ZIP64 locator: end record offset %llu is outside the archive",
                            z->path, (unsigned long long)off64);
        const uint8_t *e = z->data + off64;
        if (rd32(e) != ZIP_SIG_EOCD64)
            return tw_error(TW_ERR_FORMAT,
                            "%s: ZIP64 end of central directory record: bad signature at offset "
                            "%llu",
                            z->path, (unsigned long long)off64);
        uint64_t rec = rd64(e + 4); /* size of the rest of the record */
        if (rec < ZIP_EOCD64_SIZE - 12 || !in_range(off64 + 12, rec, loc_pos))
            return tw_error(TW_ERR_FORMAT,
                            "%s: ZIP64 end of central directory record: size %llu is out of "
                            "range",
                            z->path, (unsigned long long)rec);
        disk = rd32(e + 16);
        cd_disk = rd32(e + 20);
        n_disk = rd64(e + 24);
        n_total = rd64(e + 32);
        di->cd_size = rd64(e + 40);
        di->cd_off = rd64(e + 48);
        di->cd_limit = off64;
    }
    if (disk != 0 || cd_disk != 0 || n_disk != n_total)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "%s: end of central directory: multi-disk archives are not supported "
                        "(disk %u, central directory on disk %u)",
                        z->path, disk, cd_disk);
    if (!in_range(di->cd_off, di->cd_size, di->cd_limit))
        return tw_error(TW_ERR_FORMAT,
                        "%s: end of central directory: central directory (offset %llu, %llu "
                        "bytes) does not end before offset %llu",
                        z->path, (unsigned long long)di->cd_off, (unsigned long long)di->cd_size,
                        (unsigned long long)di->cd_limit);
    if (n_total > di->cd_size / ZIP_CENTRAL_SIZE)
        return tw_error(TW_ERR_FORMAT,
                        "%s: end of central directory: %llu entries cannot fit in a central "
                        "directory of %llu bytes",
                        z->path, (unsigned long long)n_total, (unsigned long long)di->cd_size);
    di->n_entries = n_total;
    return TW_OK;
}

/* Reads the ZIP64 extended information extra field (id 1): the 64-bit values of exactly the
 * fields that are saturated in the record, in the order usize, csize, offset, disk. */
static tw_status read_zip64_extra(const zip_archive *z, const uint8_t *x, uint32_t x_len,
                                  const char *name, zip_entry *e, uint32_t *disk) {
    int need_u = e->usize == 0xFFFFFFFFu, need_c = e->csize == 0xFFFFFFFFu;
    int need_o = e->local_off == 0xFFFFFFFFu, need_d = *disk == 0xFFFFu;
    char nb[128];
    uint32_t p = 0;
    while (p + 4 <= x_len) {
        uint32_t id = rd16(x + p), len = rd16(x + p + 2);
        if (len > x_len - p - 4)
            return tw_error(TW_ERR_FORMAT,
                            "%s: member '%s': extra field 0x%04x (%u bytes) overruns the extra "
                            "data",
                            z->path, disp(nb, name), id, len);
        if (id == ZIP_EXTRA_ZIP64) {
            const uint8_t *f = x + p + 4;
            uint32_t want = 8u * (uint32_t)(need_u + need_c + need_o) + 4u * (uint32_t)need_d;
            if (len < want)
                return tw_error(TW_ERR_FORMAT,
                                "%s: member '%s': ZIP64 extra field has %u bytes, needs %u",
                                z->path, disp(nb, name), len, want);
            if (need_u) e->usize = rd64(f), f += 8, need_u = 0;
            if (need_c) e->csize = rd64(f), f += 8, need_c = 0;
            if (need_o) e->local_off = rd64(f), f += 8, need_o = 0;
            if (need_d) *disk = rd32(f), need_d = 0;
            break;
        }
        p += 4 + len;
    }
    /* A saturated field without its ZIP64 value is taken at face value (some writers store
     * exactly 0xFFFFFFFF); the range checks at extraction catch any nonsense. */
    return TW_OK;
}

static tw_status read_central(zip_archive *z, const zip_dir_info *di) {
    z->n = (size_t)di->n_entries;
    /* Both allocations are bounded by the central directory's size: an entry costs at least
     * 46 bytes there, and a name plus its NUL fits in its record. */
    z->entries = tw_calloc(z->n ? z->n : 1, sizeof *z->entries);
    z->names = tw_malloc((size_t)di->cd_size + 1);
    if (!z->entries || !z->names)
        return tw_error(TW_ERR_NOMEM, "%s: out of memory for the central directory (%zu entries)",
                        z->path, z->n);
    uint64_t p = di->cd_off, end = di->cd_off + di->cd_size;
    size_t names_used = 0;
    for (size_t k = 0; k < z->n; k++) {
        if (!in_range(p, ZIP_CENTRAL_SIZE, end))
            return tw_error(TW_ERR_FORMAT,
                            "%s: central directory: entry %zu of %zu runs past its end", z->path,
                            k, z->n);
        const uint8_t *r = z->data + p;
        if (rd32(r) != ZIP_SIG_CENTRAL)
            return tw_error(TW_ERR_FORMAT,
                            "%s: central directory: entry %zu: bad signature at offset %llu",
                            z->path, k, (unsigned long long)p);
        zip_entry *e = &z->entries[k];
        e->flags = rd16(r + 8);
        e->method = rd16(r + 10);
        e->crc = rd32(r + 16);
        e->csize = rd32(r + 20);
        e->usize = rd32(r + 24);
        uint32_t n_len = rd16(r + 28), x_len = rd16(r + 30), c_len = rd16(r + 32);
        uint32_t disk = rd16(r + 34);
        e->local_off = rd32(r + 42);
        if (!in_range(p + ZIP_CENTRAL_SIZE, (uint64_t)n_len + x_len + c_len, end))
            return tw_error(TW_ERR_FORMAT,
                            "%s: central directory: entry %zu: name, extra and comment (%u "
                            "bytes) run past its end",
                            z->path, k, n_len + x_len + c_len);
        const uint8_t *nm = r + ZIP_CENTRAL_SIZE;
        if (n_len == 0)
            return tw_error(TW_ERR_FORMAT, "%s: central directory: entry %zu has an empty name",
                            z->path, k);
        if (memchr(nm, 0, n_len))
            return tw_error(TW_ERR_FORMAT,
                            "%s: central directory: entry %zu: name contains a NUL byte", z->path,
                            k);
        char *name = z->names + names_used;
        memcpy(name, nm, n_len);
        name[n_len] = 0;
        names_used += n_len + 1;
        e->name = name;
        tw_status s = read_zip64_extra(z, nm + n_len, x_len, name, e, &disk);
        if (s) return s;
        if (disk != 0) {
            char nb[128];
            return tw_error(TW_ERR_UNSUPPORTED,
                            "%s: member '%s': starts on disk %u (multi-disk archives are not "
                            "supported)",
                            z->path, disp(nb, name), disk);
        }
        p += ZIP_CENTRAL_SIZE + n_len + x_len + c_len;
    }
    return TW_OK;
}

static zip_archive *open_common(zip_archive *z) {
    zip_dir_info di = {0};
    if (read_eocd(z, &di) || read_central(z, &di)) {
        zip_close(z);
        return NULL;
    }
    z->cd_off = di.cd_off;
    return z;
}

zip_archive *zip_open_memory(const void *data, size_t size, const char *name) {
    zip_archive *z = tw_calloc(1, sizeof *z);
    if (!z) return NULL;
    z->path = tw_strdup(name ? name : "(memory)");
    if (!z->path) {
        tw_free(z);
        return NULL;
    }
    z->data = data;
    z->size = data ? size : 0;
    return open_common(z);
}

zip_archive *zip_open(const char *path) {
    zip_archive *z = tw_calloc(1, sizeof *z);
    if (!z) return NULL;
    if (tw_mfile_open(&z->mf, path)) {
        tw_free(z);
        return NULL;
    }
    z->path = tw_strdup(path);
    if (!z->path) {
        tw_mfile_close(&z->mf);
        tw_free(z);
        return NULL;
    }
    z->data = z->mf.data;
    z->size = z->mf.size;
    return open_common(z);
}

void zip_close(zip_archive *z) {
    if (!z) return;
    tw_mfile_close(&z->mf);
    tw_free(z->entries);
    tw_free(z->names);
    tw_free(z->path);
    tw_free(z);
}

const char *zip_path(const zip_archive *z) { return z->path; }
size_t zip_count(const zip_archive *z) { return z->n; }

const char *zip_entry_name(const zip_archive *z, size_t i) {
    TW_ASSERT(i < z->n);
    return z->entries[i].name;
}
uint64_t zip_entry_size(const zip_archive *z, size_t i) {
    TW_ASSERT(i < z->n);
    return z->entries[i].usize;
}
uint64_t zip_entry_compressed_size(const zip_archive *z, size_t i) {
    TW_ASSERT(i < z->n);
    return z->entries[i].csize;
}
int zip_entry_is_dir(const zip_archive *z, size_t i) {
    TW_ASSERT(i < z->n);
    const char *nm = z->entries[i].name;
    return nm[strlen(nm) - 1] == '/';
}

tw_status zip_find(const zip_archive *z, const char *name, size_t *index) {
    for (size_t i = 0; i < z->n; i++) {
        if (strcmp(z->entries[i].name, name) == 0) {
            *index = i;
            return TW_OK;
        }
    }
    char nb[128];
    return tw_error(TW_ERR_NOT_FOUND, "%s: no member named '%s'", z->path, disp(nb, name));
}

int zip_name_is_safe(const char *name) {
    if (!name || !*name || name[0] == '/') return 0;
    if (strchr(name, '\\')) return 0; /* a Windows separator would hide a ".." from us */
    if (((name[0] | 0x20) >= 'a' && (name[0] | 0x20) <= 'z') && name[1] == ':') return 0;
    for (const char *c = name; *c;) {
        const char *slash = strchr(c, '/');
        size_t len = slash ? (size_t)(slash - c) : strlen(c);
        if (len == 2 && c[0] == '.' && c[1] == '.') return 0;
        if (!slash) break;
        c = slash + 1;
    }
    return 1;
}

/* ---- extraction -------------------------------------------------------------------------- */

/* zlib allocates through twin's one entry point, so accounting and fault injection see it. */
static voidpf zip_zalloc(voidpf opaque, uInt items, uInt size) {
    (void)opaque;
    return tw_calloc(items, size);
}
static void zip_zfree(voidpf opaque, voidpf p) {
    (void)opaque;
    tw_free(p);
}

/* Checks member i's local header and returns where its data starts. */
static tw_status entry_data(const zip_archive *z, const zip_entry *e, const uint8_t **out) {
    char nb[128];
    if (!in_range(e->local_off, ZIP_LOCAL_SIZE, z->cd_off))
        return tw_error(TW_ERR_FORMAT,
                        "%s: member '%s': local header offset %llu is not before the central "
                        "directory at %llu",
                        z->path, disp(nb, e->name), (unsigned long long)e->local_off,
                        (unsigned long long)z->cd_off);
    const uint8_t *h = z->data + e->local_off;
    if (rd32(h) != ZIP_SIG_LOCAL)
        return tw_error(TW_ERR_FORMAT, "%s: member '%s': bad local header signature at offset %llu",
                        z->path, disp(nb, e->name), (unsigned long long)e->local_off);
    uint32_t n_len = rd16(h + 26), x_len = rd16(h + 28);
    uint64_t data_off = e->local_off + ZIP_LOCAL_SIZE + n_len + x_len;
    if (!in_range(e->local_off + ZIP_LOCAL_SIZE, (uint64_t)n_len + x_len, z->cd_off))
        return tw_error(TW_ERR_FORMAT,
                        "%s: member '%s': local header name and extra field run into the "
                        "central directory",
                        z->path, disp(nb, e->name));
    if (n_len != strlen(e->name) || memcmp(h + ZIP_LOCAL_SIZE, e->name, n_len) != 0)
        return tw_error(TW_ERR_FORMAT,
                        "%s: member '%s': the local header's name differs from the central "
                        "directory's",
                        z->path, disp(nb, e->name));
    if (!in_range(data_off, e->csize, z->cd_off))
        return tw_error(TW_ERR_FORMAT,
                        "%s: member '%s': data (offset %llu, %llu bytes) runs past the start of "
                        "the central directory at %llu",
                        z->path, disp(nb, e->name), (unsigned long long)data_off,
                        (unsigned long long)e->csize, (unsigned long long)z->cd_off);
    *out = z->data + data_off;
    return TW_OK;
}

static tw_status inflate_member(const zip_archive *z, const zip_entry *e, const uint8_t *in,
                                zip_sink_fn sink, void *ctx, uint64_t *total, uLong *crc) {
    char nb[128];
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    zs.zalloc = zip_zalloc;
    zs.zfree = zip_zfree;
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) /* raw deflate: no zlib header in ZIP */
        return tw_error(TW_ERR_NOMEM, "%s: member '%s': cannot start inflate", z->path,
                        disp(nb, e->name));
    uint8_t *buf = tw_malloc(ZIP_OUT_CHUNK);
    if (!buf) {
        inflateEnd(&zs);
        return tw_error(TW_ERR_NOMEM, "%s: member '%s': out of memory", z->path, disp(nb, e->name));
    }
    uint64_t in_left = e->csize;
    tw_status s = TW_OK;
    for (;;) {
        if (zs.avail_in == 0 && in_left > 0) {
            uInt n = in_left > ZIP_IN_CHUNK ? ZIP_IN_CHUNK : (uInt)in_left;
            zs.next_in = (Bytef *)(uintptr_t)in; /* zlib's API is not const; it only reads */
            zs.avail_in = n;
            in += n;
            in_left -= n;
        }
        zs.next_out = buf;
        zs.avail_out = ZIP_OUT_CHUNK;
        int r = inflate(&zs, Z_NO_FLUSH);
        size_t got = ZIP_OUT_CHUNK - zs.avail_out;
        if (got) {
            if (got > e->usize - *total) {
                s = tw_error(TW_ERR_FORMAT,
                             "%s: member '%s': inflates to more than its declared %llu bytes",
                             z->path, disp(nb, e->name), (unsigned long long)e->usize);
                break;
            }
            *crc = crc32(*crc, buf, (uInt)got);
            *total += got;
            if ((s = sink(ctx, buf, got))) break;
        }
        if (r == Z_STREAM_END) break;
        if (r == Z_BUF_ERROR && zs.avail_in == 0 && in_left == 0) {
            s = tw_error(TW_ERR_FORMAT,
                         "%s: member '%s': deflate data is truncated (%llu compressed bytes)",
                         z->path, disp(nb, e->name), (unsigned long long)e->csize);
            break;
        }
        if (r != Z_OK) {
            s = tw_error(r == Z_MEM_ERROR ? TW_ERR_NOMEM : TW_ERR_FORMAT,
                         "%s: member '%s': corrupt deflate data (zlib: %s)", z->path,
                         disp(nb, e->name), zs.msg ? zs.msg : zError(r));
            break;
        }
    }
    inflateEnd(&zs);
    tw_free(buf);
    return s;
}

tw_status zip_extract_stream(const zip_archive *z, size_t i, zip_sink_fn sink, void *ctx) {
    TW_ASSERT(i < z->n);
    const zip_entry *e = &z->entries[i];
    char nb[128];
    if (e->flags & ZIP_FLAG_ENCRYPTED)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: member '%s': encrypted members are not supported",
                        z->path, disp(nb, e->name));
    if (e->method != ZIP_METHOD_STORED && e->method != ZIP_METHOD_DEFLATE)
        return tw_error(TW_ERR_UNSUPPORTED,
                        "%s: member '%s': compression method %u is not supported (only stored "
                        "and deflate)",
                        z->path, disp(nb, e->name), e->method);
    const uint8_t *in = NULL;
    tw_status s = entry_data(z, e, &in);
    if (s) return s;
    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t total = 0;
    if (e->method == ZIP_METHOD_STORED) {
        if (e->csize != e->usize)
            return tw_error(TW_ERR_FORMAT,
                            "%s: member '%s': stored member with compressed size %llu != size "
                            "%llu",
                            z->path, disp(nb, e->name), (unsigned long long)e->csize,
                            (unsigned long long)e->usize);
        while (total < e->usize) {
            uint64_t left = e->usize - total;
            uInt n = left > ZIP_IN_CHUNK ? ZIP_IN_CHUNK : (uInt)left;
            crc = crc32(crc, in + total, n);
            if ((s = sink(ctx, in + total, n))) return s;
            total += n;
        }
    } else {
        s = inflate_member(z, e, in, sink, ctx, &total, &crc);
        if (s) return s;
    }
    if (total != e->usize)
        return tw_error(TW_ERR_FORMAT,
                        "%s: member '%s': inflates to %llu bytes, the central directory says "
                        "%llu",
                        z->path, disp(nb, e->name), (unsigned long long)total,
                        (unsigned long long)e->usize);
    if ((uint32_t)crc != e->crc)
        return tw_error(TW_ERR_FORMAT,
                        "%s: member '%s': CRC-32 mismatch (central directory %08x, data %08x)",
                        z->path, disp(nb, e->name), e->crc, (unsigned)crc);
    return TW_OK;
}

typedef struct {
    tw_afile *af;
    tw_sha256_ctx *sha; /* NULL: no hash wanted */
} file_sink;

static tw_status file_sink_write(void *ctx, const void *data, size_t n) {
    file_sink *fs = ctx;
    if (fs->sha) tw_sha256_update(fs->sha, data, n);
    return tw_afile_write(fs->af, data, n);
}

tw_status zip_extract_file(const zip_archive *z, size_t i, const char *dest,
                           char sha256_hex[65]) {
    TW_ASSERT(i < z->n);
    tw_afile af;
    tw_status s = tw_afile_open(&af, dest);
    if (s) return s;
    tw_sha256_ctx sha;
    tw_sha256_init(&sha);
    file_sink fs = {&af, sha256_hex ? &sha : NULL};
    s = zip_extract_stream(z, i, file_sink_write, &fs);
    if (s) {
        tw_afile_abort(&af);
        return s;
    }
    if ((s = tw_afile_commit(&af))) return s;
    if (sha256_hex) {
        uint8_t d[32];
        tw_sha256_final(&sha, d);
        tw_hex(d, 32, sha256_hex);
    }
    return TW_OK;
}

tw_status zip_extract_to_dir(const zip_archive *z, size_t i, const char *dir) {
    TW_ASSERT(i < z->n);
    const char *name = z->entries[i].name;
    char nb[128];
    if (!zip_name_is_safe(name))
        return tw_error(TW_ERR_FORMAT,
                        "%s: member '%s': unsafe path (absolute, drive letter, backslash or "
                        "'..'); refusing to extract it",
                        z->path, disp(nb, name));
    tw_sb sb;
    tw_sb_init(&sb);
    tw_sb_printf(&sb, "%s/%s", dir, name);
    if (sb.failed) return tw_error(TW_ERR_NOMEM, "%s: out of memory", z->path);
    char *path = tw_sb_take(&sb);
    size_t len = strlen(path);
    while (len > 0 && path[len - 1] == '/') path[--len] = 0; /* directory members */
    tw_status s;
    if (zip_entry_is_dir(z, i)) {
        s = tw_mkdir_p(path);
    } else {
        char *slash = strrchr(path, '/');
        s = TW_OK;
        if (slash && slash != path) {
            *slash = 0;
            s = tw_mkdir_p(path);
            *slash = '/';
        }
        if (!s) s = zip_extract_file(z, i, path, NULL);
    }
    tw_free(path);
    return s;
}

typedef struct {
    uint8_t *buf;
    size_t len, cap;
} mem_sink;

static tw_status mem_sink_write(void *ctx, const void *data, size_t n) {
    mem_sink *ms = ctx;
    /* The extractor never delivers more than the declared size, which is what cap holds. */
    TW_ASSERT(n <= ms->cap - ms->len);
    memcpy(ms->buf + ms->len, data, n);
    ms->len += n;
    return TW_OK;
}

tw_status zip_extract_memory(const zip_archive *z, size_t i, size_t cap, uint8_t **out,
                             size_t *out_len) {
    TW_ASSERT(i < z->n);
    *out = NULL;
    *out_len = 0;
    const zip_entry *e = &z->entries[i];
    char nb[128];
    if (e->usize > cap || e->usize >= SIZE_MAX)
        return tw_error(TW_ERR_FORMAT,
                        "%s: member '%s': %llu bytes exceeds the limit of %zu bytes for reading "
                        "into memory",
                        z->path, disp(nb, e->name), (unsigned long long)e->usize, cap);
    mem_sink ms = {tw_malloc((size_t)e->usize + 1), 0, (size_t)e->usize};
    if (!ms.buf)
        return tw_error(TW_ERR_NOMEM, "%s: member '%s': out of memory for %llu bytes", z->path,
                        disp(nb, e->name), (unsigned long long)e->usize);
    tw_status s = zip_extract_stream(z, i, mem_sink_write, &ms);
    if (s) {
        tw_free(ms.buf);
        return s;
    }
    ms.buf[ms.len] = 0;
    *out = ms.buf;
    *out_len = ms.len;
    return TW_OK;
}
