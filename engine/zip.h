/* zip.h: reading ZIP archives (PKWARE APPNOTE 6.3): Python wheels for `twin model fetch`, the
 * LinkedIn data export.
 *
 * zip_open() maps the archive read-only and parses the end of central directory record (and
 * the ZIP64 end record and locator when present) and the whole central directory; member data
 * is not touched until a member is extracted. Methods: stored (0) and deflate (8, through
 * zlib). Members larger than 4 GiB and archives larger than 4 GiB are read through the ZIP64
 * extra field. Not supported (TW_ERR_UNSUPPORTED): encryption, multi-disk archives, other
 * compression methods.
 *
 * Every count, length, offset and size is checked against the archive before use: a
 * truncated, corrupt or hostile archive gives TW_ERR_FORMAT with a one-line message naming the
 * archive and the member or field, never a crash, a read outside the file, or an allocation
 * larger than the archive (for the index) or the caller's cap (for extraction). Extraction
 * checks the member's CRC-32 and that it inflates to exactly its declared size; bytes
 * reach a file only through a temporary that is renamed once everything checked out.
 *
 * Thread safety: a zip_archive is immutable after zip_open; extraction functions keep their
 * state per call, so several threads may extract from one archive at once.
 */
#ifndef TWIN_ZIP_H
#define TWIN_ZIP_H

#include "core.h"

typedef struct zip_archive zip_archive; /* opaque */

/* Opens and indexes the archive at path. Returns NULL and sets the thread's error on
 * failure. Free with zip_close. */
zip_archive *zip_open(const char *path);
/* Indexes an archive held in memory (tests, fuzzing); data must outlive the handle. `name`
 * stands for the archive in messages. */
zip_archive *zip_open_memory(const void *data, size_t size, const char *name);
void zip_close(zip_archive *z); /* NULL is a no-op */

const char *zip_path(const zip_archive *z); /* the path or name given to zip_open* */
size_t zip_count(const zip_archive *z);     /* members, in central directory order */

/* Member i (< zip_count). The name is NUL-terminated, as stored (UTF-8 or CP437 bytes; it
 * never contains a NUL byte), owned by the archive. A name ending in '/' is a directory. */
const char *zip_entry_name(const zip_archive *z, size_t i);
uint64_t zip_entry_size(const zip_archive *z, size_t i);            /* uncompressed bytes */
uint64_t zip_entry_compressed_size(const zip_archive *z, size_t i); /* bytes in the archive */
int zip_entry_is_dir(const zip_archive *z, size_t i);

/* Index of the first member named exactly `name`: TW_OK, or TW_ERR_NOT_FOUND (with a message
 * naming the archive and the member). */
tw_status zip_find(const zip_archive *z, const char *name, size_t *index);

/* 1 when `name` may be used as a relative path below an extraction folder: not empty, not
 * absolute, no drive letter, no backslash, no ".." component (zip-slip). */
int zip_name_is_safe(const char *name);

/* Receives extracted bytes in order, in pieces of any size; a non-zero status stops the
 * extraction and is returned. */
typedef tw_status (*zip_sink_fn)(void *ctx, const void *data, size_t n);

/* Streams member i's uncompressed bytes to `sink` in pieces of at most a few hundred KiB,
 * checking the CRC-32 and the size. The sink may have seen bytes before an error is found
 * (a CRC mismatch is only known at the end): callers that keep the bytes must discard them
 * on failure, as the functions below do. */
tw_status zip_extract_stream(const zip_archive *z, size_t i, zip_sink_fn sink, void *ctx);

/* Extracts member i to `dest` atomically (tw_afile: temporary, fsync, rename), streaming, so
 * memory use does not depend on the member's size. The folder of dest must exist. When
 * sha256_hex is not NULL it receives the lowercase hex SHA-256 of the bytes written. On
 * failure nothing is left at dest (an older file there is kept). */
tw_status zip_extract_file(const zip_archive *z, size_t i, const char *dest,
                           char sha256_hex[65]);

/* Extracts member i below folder `dir`, at dir/<member name>, creating the folders on the
 * way; refuses names that zip_name_is_safe rejects. A directory member creates the folder.
 * Never follows a member name out of dir. */
tw_status zip_extract_to_dir(const zip_archive *z, size_t i, const char *dir);

/* Extracts member i into a fresh heap buffer (tw_free), NUL-terminated after *out_len bytes
 * for convenience. A member whose declared size exceeds `cap` bytes is refused with
 * TW_ERR_FORMAT before anything is allocated. */
tw_status zip_extract_memory(const zip_archive *z, size_t i, size_t cap, uint8_t **out,
                             size_t *out_len);

#endif
