/* test_zip64_large.c: the ZIP reader (engine/zip.h) on a real ZIP64 archive: a deflate member
 * of 4.1 GiB (sizes only in the ZIP64 extra field) and a member whose local header lies past
 * 5 GiB (offset only in the ZIP64 extra field), streamed without holding the member in
 * memory. The archive is about 4 MB on disk plus a sparse hole; the test takes ~10 s of
 * inflating, which is why it is not in the unit label. */
#include "test.h"
#include "zip.h"
#include "zip_writer.h"

#include <stdlib.h>
#include <unistd.h>

/* ---- a real ZIP64 archive: a member over 4 GiB and a local header past 4 GiB ------------ */

typedef struct {
    uint64_t n;
    int bad;
} count_sink;

static tw_status count_sink_write(void *ctx, const void *data, size_t n) {
    count_sink *c = ctx;
    const uint8_t *p = data;
    if (n && (p[0] | p[n / 2] | p[n - 1])) c->bad = 1; /* the big member is all zeros */
    c->n += n;
    return TW_OK;
}

static void test_zip64_large(void) {
    const char *base = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/twin_zip64_XXXXXX", base && *base ? base : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    FILE *fp = fdopen(fd, "wb");
    CHECK(fp != NULL);
    if (!fp) goto done;

    /* A deflate stream of 1 MiB of zeros ending in a full flush is byte-aligned and refers to
     * nothing before it, so copies of it concatenate into a stream of N MiB of zeros; a final
     * empty fixed-Huffman block (03 00) ends it. About 1 KiB of archive per MiB of member. */
    enum { MIB = 1 << 20, N_MIB = 4200 }; /* 4.1 GiB */
    uint8_t *zeros = tw_calloc(1, MIB);
    size_t cap = 2 * MIB;
    uint8_t *chunk = tw_malloc(cap);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    deflateInit2(&zs, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
    zs.next_in = zeros, zs.avail_in = MIB, zs.next_out = chunk, zs.avail_out = (uInt)cap;
    CHECK_EQ_INT(deflate(&zs, Z_FULL_FLUSH), Z_OK);
    size_t chunk_len = zs.total_out;
    deflateEnd(&zs);
    uint32_t crc_mib = (uint32_t)crc32(0, zeros, MIB), crc = 0;
    for (int i = 0; i < N_MIB; i++) crc = (uint32_t)crc32_combine(crc, crc_mib, MIB);
    const uint64_t usize = (uint64_t)N_MIB * MIB;
    const uint64_t csize = (uint64_t)N_MIB * chunk_len + 2;

    tw_sb h;
    tw_sb_init(&h);
    /* member 0: big.bin, deflate, at offset 0 */
    put32(&h, 0x04034b50), put16(&h, 45), put16(&h, 0), put16(&h, 8), put32(&h, 0);
    put32(&h, crc), put32(&h, 0xFFFFFFFFu), put32(&h, 0xFFFFFFFFu), put16(&h, 7), put16(&h, 20);
    tw_sb_append(&h, "big.bin", 7);
    put16(&h, 1), put16(&h, 16), put64(&h, usize), put64(&h, csize);
    fwrite(h.buf, 1, h.len, fp);
    for (int i = 0; i < N_MIB; i++) fwrite(chunk, 1, chunk_len, fp);
    fwrite("\x03\x00", 1, 2, fp);
    /* member 1: far.txt, stored, its local header at 5 GiB (the gap stays a sparse hole) */
    const uint64_t far_off = 5ull << 30;
    const char *far = "far beyond 4 GiB\n";
    uint32_t far_len = (uint32_t)strlen(far), far_crc = (uint32_t)crc32(0, (const Bytef *)far, far_len);
    CHECK_EQ_INT(fseeko(fp, (off_t)far_off, SEEK_SET), 0);
    tw_sb_clear(&h);
    put32(&h, 0x04034b50), put16(&h, 20), put16(&h, 0), put16(&h, 0), put32(&h, 0);
    put32(&h, far_crc), put32(&h, far_len), put32(&h, far_len), put16(&h, 7), put16(&h, 0);
    tw_sb_append(&h, "far.txt", 7);
    tw_sb_append(&h, far, far_len);
    uint64_t cd_off = far_off + h.len;
    /* central directory */
    put32(&h, 0x02014b50), put16(&h, 0x031e), put16(&h, 45), put16(&h, 0), put16(&h, 8);
    put32(&h, 0), put32(&h, crc), put32(&h, 0xFFFFFFFFu), put32(&h, 0xFFFFFFFFu);
    put16(&h, 7), put16(&h, 20), put16(&h, 0), put16(&h, 0), put16(&h, 0), put32(&h, 0);
    put32(&h, 0);
    tw_sb_append(&h, "big.bin", 7);
    put16(&h, 1), put16(&h, 16), put64(&h, usize), put64(&h, csize);
    put32(&h, 0x02014b50), put16(&h, 0x031e), put16(&h, 45), put16(&h, 0), put16(&h, 0);
    put32(&h, 0), put32(&h, far_crc), put32(&h, far_len), put32(&h, far_len);
    put16(&h, 7), put16(&h, 12), put16(&h, 0), put16(&h, 0), put16(&h, 0), put32(&h, 0);
    put32(&h, 0xFFFFFFFFu);
    tw_sb_append(&h, "far.txt", 7);
    put16(&h, 1), put16(&h, 8), put64(&h, far_off);
    uint64_t cd_size = far_off + h.len - cd_off;
    uint64_t rec = far_off + h.len;
    put32(&h, 0x06064b50), put64(&h, 44), put16(&h, 45), put16(&h, 45), put32(&h, 0);
    put32(&h, 0), put64(&h, 2), put64(&h, 2), put64(&h, cd_size), put64(&h, cd_off);
    put32(&h, 0x07064b50), put32(&h, 0), put64(&h, rec), put32(&h, 1);
    put32(&h, 0x06054b50), put16(&h, 0), put16(&h, 0), put16(&h, 0xFFFF), put16(&h, 0xFFFF);
    put32(&h, 0xFFFFFFFFu), put32(&h, 0xFFFFFFFFu), put16(&h, 0);
    fwrite(h.buf, 1, h.len, fp);
    CHECK_EQ_INT(fclose(fp), 0);
    tw_sb_free(&h);
    tw_free(zeros);
    tw_free(chunk);

    double t0 = tw_now_s();
    zip_archive *z = zip_open(path);
    CHECK(z != NULL);
    if (!z) {
        fprintf(stderr, "  %s\n", tw_errmsg());
        goto done;
    }
    CHECK_EQ_INT(zip_count(z), 2);
    CHECK_EQ_INT(zip_entry_size(z, 0), usize);
    CHECK_EQ_INT(zip_entry_compressed_size(z, 0), csize);
    uint8_t *out;
    size_t len;
    CHECK_EQ_INT(zip_extract_memory(z, 1, 100, &out, &len), TW_OK);
    CHECK(len == far_len && memcmp(out, far, len) == 0);
    tw_free(out);
    /* The 4.1 GiB member streams through a sink without being held in memory. */
    count_sink cs = {0, 0};
    tw_mem_stats before = tw_mem_get_stats();
    CHECK_EQ_INT(zip_extract_stream(z, 0, count_sink_write, &cs), TW_OK);
    CHECK_EQ_INT(cs.n, usize);
    CHECK(!cs.bad);
    CHECK(tw_mem_get_stats().peak_bytes - before.current_bytes < 64u << 20);
    fprintf(stderr, "  zip64: streamed %.1f GiB in %.1f s\n", (double)usize / (1 << 30),
            tw_now_s() - t0);
    zip_close(z);
done:
    unlink(path);
}

int main(void) {
    RUN(test_zip64_large);
    TEST_DONE();
}
