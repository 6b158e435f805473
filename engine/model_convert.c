/* model_convert.c: tw_model_proj_convert (model.h): the seven projection matrices of every
 * layer re-stored in another type after loading, for QLoRA's NF4 base (and an F32 base to
 * compare it with).
 *
 * Memory: the converted matrices and every weight that already lived in the model's owned
 * buffer (norms converted at load, ...) move into ONE new owned buffer, and the old one is
 * freed, so weights that were copied or uploaded at load stop costing memory. Weights that
 * were views of the mmap'd GGUF (the CPU backend's zero-copy placement) cost only the pages
 * the OS had mapped in: reading them for the conversion maps them all in, so their pages are
 * handed back (madvise MADV_DONTNEED; they are clean, read-only file pages that the forward no
 * longer touches), and the process's resident size drops to about the rest of the file (the
 * embeddings) plus the new matrices. */
#include "model_impl.h"
#include "nf4.h"

#include "cpu/nf4_kernels.h" /* tw_cpu_nf4_dequantize_rows: an NF4 base converted again */

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const tw_wrole proj_roles[7] = {TW_W_Q, TW_W_K, TW_W_V, TW_W_O,
                                       TW_W_GATE, TW_W_UP, TW_W_DOWN};

static const char *role_name(tw_wrole r) {
    switch (r) {
    case TW_W_Q: return "attn_q";
    case TW_W_K: return "attn_k";
    case TW_W_V: return "attn_v";
    case TW_W_O: return "attn_output";
    case TW_W_GATE: return "ffn_gate";
    case TW_W_UP: return "ffn_up";
    case TW_W_DOWN: return "ffn_down";
    default: return "?";
    }
}

/* Bytes of a weight as stored (0 for a type without a layout). */
static size_t weight_size(const tw_weight *w) {
    if (w->type == TW_DTYPE_NF4) {
        tw_nf4_layout L;
        return tw_nf4_layout_get(w->ne1, w->ne0, &L) == TW_OK ? L.bytes : 0;
    }
    return tw_dtype_row_bytes(w->type, w->ne0) * (size_t)w->ne1;
}

static size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

/* Every weight of the model (globals, then the layers'), by index. */
static int n_weights(const tw_model *m) {
    return TW_W_LAYER_FIRST + m->hp.n_layer * (TW_W_COUNT - TW_W_LAYER_FIRST);
}
static tw_weight *weight_at(tw_model *m, int i) {
    if (i < TW_W_LAYER_FIRST) return &m->g[i];
    i -= TW_W_LAYER_FIRST;
    return &m->layers[i / (TW_W_COUNT - TW_W_LAYER_FIRST)].w[i % (TW_W_COUNT - TW_W_LAYER_FIRST)];
}

/* The layer (-1: a global weight) and the role of weight i. */
static int layer_of(int i) {
    return i < TW_W_LAYER_FIRST ? -1 : (i - TW_W_LAYER_FIRST) / (TW_W_COUNT - TW_W_LAYER_FIRST);
}
static tw_wrole role_of(int i) {
    if (i < TW_W_LAYER_FIRST) return (tw_wrole)i;
    return (tw_wrole)((i - TW_W_LAYER_FIRST) % (TW_W_COUNT - TW_W_LAYER_FIRST) + TW_W_LAYER_FIRST);
}

/* 1 when weight i is one of the seven projections to convert to `to`. */
static int converts(tw_model *m, int i, tw_dtype to) {
    if (i < TW_W_LAYER_FIRST) return 0;
    tw_wrole r = role_of(i);
    const tw_weight *w = weight_at(m, i);
    if (!w->ref.buf || w->type == to) return 0;
    for (int j = 0; j < 7; j++)
        if (proj_roles[j] == r) return 1;
    return 0;
}

/* The first weight (index <= i) that is kept and views the same owned bytes as kept weight i. */
static int owned_first(tw_model *m, int i, tw_dtype to) {
    const tw_weight *w = weight_at(m, i);
    for (int j = 0; j < i; j++) {
        const tw_weight *v = weight_at(m, j);
        if (v->ref.buf == m->owned && v->ref.offset == w->ref.offset && !converts(m, j, to))
            return j;
    }
    return i;
}

/* The host address of a weight that is a view of the GGUF mapping; NULL otherwise. */
static const uint8_t *mapped_addr(const tw_model *m, const tw_weight *w) {
    if (!m->gguf || m->n_wrapped < 1 || !m->wrapped[0] || w->ref.buf != m->wrapped[0] ||
        gguf_n_tensors(m->gguf) == 0)
        return NULL;
    const gguf_tensor *t0 = gguf_tensor_at(m->gguf, 0);
    const uint8_t *base = (const uint8_t *)t0->data - t0->offset - gguf_data_offset(m->gguf);
    return base + w->ref.offset;
}

/* Hands the whole pages of [p, p + n) back to the OS (clean read-only file pages: a later
 * touch maps them in again). */
static void pages_release(const uint8_t *p, size_t n) {
#ifdef MADV_DONTNEED
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0 || n == 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)ps - 1) & ~((uintptr_t)ps - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)ps - 1);
    if (b > a) (void)madvise((void *)a, b - a, MADV_DONTNEED);
#else
    (void)p, (void)n;
#endif
}

/* Weight w (ne1, ne0) of the model as fp32 rows: out (ne1 * ne0). src: scratch of its stored
 * bytes. */
static tw_status weight_to_f32(const tw_model *m, const tw_weight *w, const char *name,
                               uint8_t *src, size_t src_bytes, float *out) {
    tw_status st = tw_buffer_download(w->ref.buf, w->ref.offset, src, src_bytes);
    if (st != TW_OK) return tw_error_wrap("%s: %s", m->path, name);
    if (w->type == TW_DTYPE_NF4) {
        tw_cpu_nf4_dequantize_rows(src, w->ne0, w->ne1, 0, w->ne1, out, 0);
        return TW_OK;
    }
    if (tw_dequantize_row(w->type, src, out, w->ne0 * w->ne1) != TW_OK)
        return tw_error_wrap("%s: %s", m->path, name);
    return TW_OK;
}

tw_status tw_model_proj_convert(tw_model *m, tw_dtype to) {
    if (!m) return tw_error(TW_ERR_ARG, "tw_model_proj_convert: model is NULL");
    if (to != TW_DTYPE_NF4 && to != TW_DTYPE_F32)
        return tw_error(TW_ERR_ARG, "%s: projections can be converted to nf4 or f32, not %s",
                        m->path, tw_dtype_name(to) ? tw_dtype_name(to) : "?");
    if (m->arch->encoder_only)
        return tw_error(TW_ERR_UNSUPPORTED, "%s: %s is an encoder; only decoder projections are "
                        "converted", m->path, m->arch->name);
    const int nw = n_weights(m);
    /* plan: sizes, and refuse what cannot be converted before anything moves */
    size_t new_bytes = 0, max_src = 0, max_n = 0, max_dst = 0, old_conv = 0, new_conv = 0;
    char name[64];
    for (int i = 0; i < nw; i++) {
        tw_weight *w = weight_at(m, i);
        if (!w->ref.buf) continue;
        int l = layer_of(i);
        tw_wrole r = role_of(i);
        if (r == TW_W_QKV)
            return tw_error(TW_ERR_UNSUPPORTED, "%s: layer %d has a fused q/k/v matrix (%s); "
                            "only separate projections are converted", m->path, l, m->arch->name);
        if (!converts(m, i, to)) {
            if (w->ref.buf == m->owned && owned_first(m, i, to) == i)
                new_bytes += align256(weight_size(w));
            continue;
        }
        snprintf(name, sizeof name, "blk.%d.%s", l, role_name(r));
        if (w->type != TW_DTYPE_NF4 && !tw_dtype_can_dequantize(w->type))
            return tw_error(TW_ERR_UNSUPPORTED, "%s: %s: type %s cannot be converted", m->path,
                            name, tw_dtype_name(w->type) ? tw_dtype_name(w->type) : "?");
        size_t nd;
        if (to == TW_DTYPE_NF4) {
            tw_nf4_layout L;
            if (tw_nf4_layout_get(w->ne1, w->ne0, &L) != TW_OK)
                return tw_error(TW_ERR_UNSUPPORTED, "%s: %s: rows of %lld elements are not a "
                                "multiple of NF4's block of %d", m->path, name,
                                (long long)w->ne0, TW_NF4_BLOCK);
            nd = L.bytes;
        } else {
            nd = (size_t)(w->ne0 * w->ne1) * sizeof(float);
        }
        size_t ns = weight_size(w), n = (size_t)(w->ne0 * w->ne1);
        if (ns > max_src) max_src = ns;
        if (n > max_n) max_n = n;
        if (nd > max_dst) max_dst = nd;
        old_conv += ns;
        new_conv += nd;
        new_bytes += align256(nd);
    }
    if (new_conv == 0) return TW_OK; /* nothing to convert */

    tw_buffer *nb = NULL;
    size_t *new_off = tw_calloc((size_t)nw, sizeof *new_off);
    uint8_t *src = tw_malloc(max_src > max_dst ? max_src : max_dst);
    uint8_t *dst = to == TW_DTYPE_NF4 ? tw_malloc(max_dst) : NULL;
    float *f = tw_malloc(max_n * sizeof(float));
    tw_status st = TW_OK;
    if (!new_off || !src || !f || (to == TW_DTYPE_NF4 && !dst))
        st = tw_error(TW_ERR_NOMEM, "%s: converting the projections: out of memory", m->path);
    if (st == TW_OK && (st = tw_buffer_alloc(m->be, new_bytes, &nb)) != TW_OK)
        tw_error_wrap("%s: converted weights (%zu bytes)", m->path, new_bytes);
    size_t off = 0;
    for (int i = 0; i < nw && st == TW_OK; i++) {
        tw_weight *w = weight_at(m, i);
        if (!w->ref.buf) continue;
        if (!converts(m, i, to)) {
            if (w->ref.buf != m->owned) continue;
            /* a weight of the old owned buffer: its bytes move (a second view of the same
             * bytes, such as a tied head, follows the first) */
            int first = owned_first(m, i, to);
            if (first != i) {
                new_off[i] = new_off[first];
                continue;
            }
            size_t n = weight_size(w);
            new_off[i] = off;
            if ((st = tw_buffer_download(m->owned, w->ref.offset, src, n)) != TW_OK ||
                (st = tw_buffer_upload(nb, off, src, n)) != TW_OK)
                break;
            off += align256(n);
            continue;
        }
        snprintf(name, sizeof name, "blk.%d.%s", layer_of(i), role_name(role_of(i)));
        if ((st = weight_to_f32(m, w, name, src, weight_size(w), f)) != TW_OK) break;
        /* its file pages are not needed any more (the model stays usable if a later step
         * fails: a page given back is read again on its next touch), so the process never
         * holds the old and the new base at once */
        const uint8_t *p = mapped_addr(m, w);
        if (p) pages_release(p, weight_size(w));
        size_t n = (size_t)(w->ne0 * w->ne1), nd;
        new_off[i] = off;
        if (to == TW_DTYPE_NF4) {
            tw_nf4_layout L;
            TW_ASSERT(tw_nf4_layout_get(w->ne1, w->ne0, &L) == TW_OK);
            nf4_tensor t;
            if ((st = nf4_quantize(f, n, 1, &t)) != TW_OK) {
                tw_error_wrap("%s: %s", m->path, name);
                break;
            }
            st = nf4_tensor_pack(&t, w->ne1, w->ne0, dst, L.bytes);
            nf4_tensor_free(&t);
            nd = L.bytes;
            if (st == TW_OK) st = tw_buffer_upload(nb, off, dst, nd);
        } else {
            nd = n * sizeof(float);
            st = tw_buffer_upload(nb, off, f, nd);
        }
        off += align256(nd);
    }
    if (st != TW_OK) { /* nothing has moved */
        tw_buffer_free(nb);
        tw_free(new_off), tw_free(src), tw_free(dst), tw_free(f);
        return st;
    }
    /* repoint every weight, then let the old memory go */
    for (int i = 0; i < nw; i++) {
        tw_weight *w = weight_at(m, i);
        if (!w->ref.buf) continue;
        if (converts(m, i, to)) {
            w->ref = tw_ref_at(nb, new_off[i]);
            w->type = to;
        } else if (w->ref.buf == m->owned) {
            w->ref = tw_ref_at(nb, new_off[i]);
        }
    }
    tw_buffer_free(m->owned);
    m->owned = nb;
    m->weight_bytes = m->weight_bytes - old_conv + new_conv;
    tw_free(new_off), tw_free(src), tw_free(dst), tw_free(f);
    return TW_OK;
}
