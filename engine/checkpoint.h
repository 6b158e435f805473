/* checkpoint.h: training checkpoints: one file holds everything a run needs to resume with the
 * same losses (step, data position, RNG state, config, base model hash, the adapter's
 * parameters and AdamW moments).
 *
 * File layout (little-endian; STYLE.md "Files on disk"):
 *   0   8 bytes  magic "TWINCKPT"
 *   8   u32      version (CKPT_VERSION)
 *   12  u32      flags (0)
 *   16  u64      H, the JSON header's length
 *   24  u64      P, the payload's length
 *   32  H bytes  the JSON header (UTF-8 object, see below), then zero bytes up to a multiple of
 *                64: the payload starts at D = align64(32 + H)
 *   D   P bytes  the payload: blobs, each at a 64-byte aligned offset
 *   D+P 32 bytes sha256 of every byte before it
 * The file is exactly D + P + 32 bytes. The header:
 *   {"step": 120, "data_pos": 4096, "rng": ["0123456789abcdef", x4 (u64 as 16 hex digits)],
 *    "base_sha256": "...", "saved_at": 1.7e9, "config": {...the caller's JSON object...},
 *    "blobs": [{"name": "lora.param", "offset": 0, "nbytes": 12345}, ...], ...}
 * LoRA checkpoints (ckpt_save_lora) add "lora" (lora_config_to_json) and "lora_base" (arch,
 * n_layer, dims, qk_permuted) and store the blobs lora.param, lora.adam_m, lora.adam_v (fp32,
 * the set's regions as they are: lora.h's layout). Full fine-tuning checkpoints
 * (ckpt_save_full) add "full" (the trained tensors' names, shapes and offsets) and store
 * full.param, full.adam_m, full.adam_v (fullft.h's regions). Gradients are not saved: a step
 * starts by clearing them.
 *
 * Writing goes through tw_afile (temporary + fsync + rename): a crash leaves the previous file.
 * Reading checks the magic, version, every size against the file length, the checksum, the
 * JSON and each blob's range before anything is used: a truncated or altered file is refused
 * with TW_ERR_FORMAT naming the file and what is wrong (a newer version: TW_ERR_UNSUPPORTED).
 *
 * A run's checkpoints live in one folder as ckpt-<step, 10 digits>.twck; ckpt_save_lora keeps
 * the newest `keep` of them and removes older ones (after the new one is safely written).
 *
 * Thread safety: a ckpt handle is read-only after ckpt_open and may be read from any thread;
 * the functions have no shared state.
 */
#ifndef TWIN_CHECKPOINT_H
#define TWIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "fullft.h"
#include "json.h"
#include "lora.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CKPT_MAGIC "TWINCKPT"
#define CKPT_VERSION 1u
#define CKPT_MAX_HEADER (64u << 20) /* a longer JSON header is refused */

/* What a checkpoint records besides its blobs. */
typedef struct {
    int64_t step;            /* optimizer steps taken */
    uint64_t data_pos;       /* the dataset reader's position (opaque to the checkpoint) */
    uint64_t rng[4];         /* the trainer's RNG state */
    char base_sha256[65];    /* "" when unknown */
    const char *config_json; /* a JSON object text (the run's configuration); NULL: {}.
                                After ckpt_open: owned by the handle. */
} ckpt_meta;

/* A named byte range of the payload. Written: data is read during ckpt_write. Read: data
 * points into the handle's mapping (64-byte aligned from the payload's start). */
typedef struct {
    const char *name;
    const void *data;
    size_t nbytes;
} ckpt_blob;

/* Writes a checkpoint file atomically. Blob names must be unique, non-empty, at most 64 bytes;
 * config_json must parse as a JSON object (TW_ERR_ARG otherwise). extra_json, when not NULL, is
 * a JSON object text whose members are added to the header (ckpt_save_lora's "lora"). */
tw_status ckpt_write(const char *path, const ckpt_meta *meta, const char *extra_json,
                     const ckpt_blob *blobs, size_t n_blobs);

typedef struct ckpt ckpt; /* a verified checkpoint */

/* Maps and verifies path. *out is for ckpt_close. */
tw_status ckpt_open(const char *path, ckpt **out);
/* The same over a caller's buffer (tests, fuzzing): referenced, must outlive the handle. */
tw_status ckpt_open_memory(const void *data, size_t size, const char *name, ckpt **out);
void ckpt_close(ckpt *c); /* NULL is a no-op */

const ckpt_meta *ckpt_get_meta(const ckpt *c);
/* The whole JSON header (owned by the handle). */
const tw_json *ckpt_header(const ckpt *c);
size_t ckpt_n_blobs(const ckpt *c);
const ckpt_blob *ckpt_blob_at(const ckpt *c, size_t i);
/* The blob called name, NULL when absent. */
const ckpt_blob *ckpt_find_blob(const ckpt *c, const char *name);

/* ---- LoRA training state ------------------------------------------------------------------ */

/* Writes <dir>/ckpt-<step>.twck with the set's parameters and AdamW moments, its config and
 * base; then keeps only the newest `keep` checkpoints of dir (keep <= 0: all). *path_out (may
 * be NULL) receives the file's path (tw_free). The folder is created when absent. */
tw_status ckpt_save_lora(const char *dir, const ckpt_meta *meta, const lora_set *s, int keep,
                         char **path_out);
/* Makes a set on be from a LoRA checkpoint for base: the config and the base dimensions must
 * match (TW_ERR_RUNTIME naming what differs; also a base hash that differs when both are
 * known); parameters and moments are restored, gradients zero. */
tw_status ckpt_restore_lora(const ckpt *c, tw_backend *be, const lora_base *base, lora_set **out);

/* ---- full fine-tuning state --------------------------------------------------------------- */

/* Writes <dir>/ckpt-<step>.twck with full fine-tuning's weights and AdamW moments (blobs
 * full.param, full.adam_m, full.adam_v: the set's regions as they are) and its layout in the
 * header ("full": {"n_floats", "tied", "tensors": [[name, ne0, ne1, off], ...]}); keeps the
 * newest `keep` as ckpt_save_lora does. */
tw_status ckpt_save_full(const char *dir, const ckpt_meta *meta, const fullft_set *f, int keep,
                         char **path_out);
/* Restores weights and moments into f (made by fullft_set_new from the same base model): its
 * layout must be the checkpoint's (TW_ERR_RUNTIME naming the first tensor that differs; a LoRA
 * checkpoint: TW_ERR_FORMAT); gradients are zeroed. */
tw_status ckpt_restore_full(const ckpt *c, fullft_set *f);

/* The path (tw_free) of the checkpoint with the highest step in dir; TW_ERR_NOT_FOUND when
 * there is none. Only names are read: open it to verify. */
tw_status ckpt_latest(const char *dir, char **path_out);
/* Removes all but the newest `keep` checkpoints of dir (keep >= 1). */
tw_status ckpt_prune(const char *dir, int keep);

#ifdef __cplusplus
}
#endif
#endif
