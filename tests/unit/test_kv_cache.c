/* test_kv_cache: the paged KV cache's bookkeeping (engine/kv_cache.c) on the CPU backend:
 * page allocation, release and reuse; prefix sharing by chain hash (refcounts, cached pages
 * after a sequence ends, eviction of the least recently released); exhaustion and context
 * errors leaving the sequence unchanged; truncation (including the private copy of a shared
 * page, checked byte by byte in every layer); sequence ids; allocation failures. */
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "kv_cache_impl.h"
#include "test.h"

static tw_backend *be;

/* A cache of n_pages pages of page_size tokens for 3 layers of 2 KV heads of 4 dims. */
static tw_kv_cache *make_cache(int32_t n_pages, int32_t page_size, tw_dtype type, int32_t max_seqs) {
    tw_kv_params p;
    tw_kv_params_default(&p);
    p.n_pages = n_pages;
    p.page_size = page_size;
    p.type = type;
    p.max_seqs = max_seqs;
    tw_kv_cache *kv = NULL;
    tw_status st = kv_cache_create(be, 3, 2, 4, 0, &p, &kv);
    if (st != TW_OK) fprintf(stderr, "kv_cache_create: %s\n", tw_errmsg());
    return kv;
}

/* Every page is exactly one of free, cached or used. */
static void check_accounting(const tw_kv_cache *kv) {
    tw_kv_stats s = tw_kv_cache_stats(kv);
    CHECK_EQ_INT(s.n_free + s.n_cached + s.n_used, s.n_pages);
    int32_t used = 0;
    for (int32_t p = 0; p < kv->n_pages; p++) used += tw_kv_page_refcount(kv, p) > 0;
    CHECK_EQ_INT(used, s.n_used);
}

static void seq_tokens(int32_t *t, int32_t n, int32_t base) {
    for (int32_t i = 0; i < n; i++) t[i] = base + i;
}

static void test_alloc_free_reuse(void) {
    tw_kv_cache *kv = make_cache(8, 4, TW_DTYPE_F16, 4);
    CHECK(kv != NULL);
    if (!kv) return;
    CHECK_EQ_INT(tw_kv_cache_n_free(kv), 8);
    CHECK_EQ_INT(tw_kv_cache_n_ctx(kv), 32); /* no model context: all slots */
    int32_t a = -1;
    CHECK_EQ_INT(tw_kv_seq_new(kv, &a), TW_OK);
    CHECK_EQ_INT(tw_kv_seq_len(kv, a), 0);
    int32_t t[32];
    seq_tokens(t, 32, 100);
    CHECK_EQ_INT(kv_seq_append(kv, a, t, 10), TW_OK);
    CHECK_EQ_INT(tw_kv_seq_len(kv, a), 10);
    int32_t np = 0;
    const int32_t *pages = tw_kv_seq_pages(kv, a, &np);
    CHECK_EQ_INT(np, 3);
    CHECK_EQ_INT(tw_kv_cache_n_free(kv), 5);
    /* Slots follow the block table. */
    CHECK_EQ_INT(kv_seq_slot(kv, a, 0), pages[0] * 4);
    CHECK_EQ_INT(kv_seq_slot(kv, a, 9), pages[2] * 4 + 1);
    CHECK(memcmp(tw_kv_seq_tokens(kv, a), t, 10 * sizeof(int32_t)) == 0);
    /* Appending within the last page takes no page. */
    CHECK_EQ_INT(kv_seq_append(kv, a, t + 10, 2), TW_OK);
    CHECK_EQ_INT(tw_kv_cache_n_free(kv), 5);
    check_accounting(kv);
    /* Unpublished pages go straight back to the free list and are handed out again. */
    int32_t first = pages[0];
    tw_kv_seq_free(kv, a);
    CHECK_EQ_INT(tw_kv_seq_len(kv, a), -1);
    CHECK_EQ_INT(tw_kv_cache_stats(kv).n_free, 8);
    CHECK_EQ_INT(tw_kv_cache_stats(kv).n_cached, 0);
    int32_t b = -1;
    CHECK_EQ_INT(tw_kv_seq_new(kv, &b), TW_OK);
    CHECK_EQ_INT(b, a); /* ids are reused */
    CHECK_EQ_INT(kv_seq_append(kv, b, t, 1), TW_OK);
    CHECK_EQ_INT(tw_kv_seq_pages(kv, b, NULL)[0], first);
    check_accounting(kv);
    tw_kv_seq_free(kv, b);
    tw_kv_seq_free(kv, b); /* not live: ignored */
    tw_kv_cache_free(kv);
}

static void test_prefix_sharing(void) {
    tw_kv_cache *kv = make_cache(8, 4, TW_DTYPE_F16, 4);
    if (!kv) return;
    int32_t t[32];
    seq_tokens(t, 32, 7);
    int32_t a, b, c;
    tw_kv_seq_new(kv, &a);
    CHECK_EQ_INT(kv_seq_append(kv, a, t, 10), TW_OK);
    /* Nothing is findable before the forward publishes the full pages. */
    tw_kv_seq_new(kv, &b);
    int32_t n_reused = -1;
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, b, t, 10, &n_reused), TW_OK);
    CHECK_EQ_INT(n_reused, 0);
    kv_seq_publish(kv, a);
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, b, t, 10, &n_reused), TW_OK);
    CHECK_EQ_INT(n_reused, 8); /* two full pages; the partial third is private to a */
    CHECK_EQ_INT(tw_kv_seq_len(kv, b), 8);
    const int32_t *pa = tw_kv_seq_pages(kv, a, NULL);
    int32_t nb = 0;
    const int32_t *pb = tw_kv_seq_pages(kv, b, &nb);
    CHECK_EQ_INT(nb, 2);
    CHECK_EQ_INT(pb[0], pa[0]);
    CHECK_EQ_INT(pb[1], pa[1]);
    CHECK_EQ_INT(tw_kv_page_refcount(kv, pa[0]), 2);
    CHECK_EQ_INT(tw_kv_page_refcount(kv, pa[2]), 1);
    CHECK(memcmp(tw_kv_seq_tokens(kv, b), t, 8 * sizeof(int32_t)) == 0);
    CHECK_EQ_INT(tw_kv_cache_stats(kv).prefix_hits_tokens, 8);
    /* A second reuse on a non-empty sequence is refused. */
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, b, t, 10, &n_reused), TW_ERR_ARG);

    /* The last two tokens are always left to compute: 9 tokens reuse one page, not two. */
    tw_kv_seq_new(kv, &c);
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, c, t, 9, &n_reused), TW_OK);
    CHECK_EQ_INT(n_reused, 4);
    tw_kv_seq_free(kv, c);
    tw_kv_seq_new(kv, &c);
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, c, t, 10, &n_reused), TW_OK);
    CHECK_EQ_INT(n_reused, 8);
    tw_kv_seq_free(kv, c);
    /* A prompt that differs at position 5 shares the first page only. */
    int32_t u[10];
    memcpy(u, t, sizeof u);
    u[5] = 999;
    tw_kv_seq_new(kv, &c);
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, c, u, 10, &n_reused), TW_OK);
    CHECK_EQ_INT(n_reused, 4);
    tw_kv_seq_free(kv, c);
    /* A page with the same tokens at another place of the chain is not a match: the hash
     * covers every token from position 0. */
    tw_kv_seq_new(kv, &c);
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, c, t + 4, 6, &n_reused), TW_OK);
    CHECK_EQ_INT(n_reused, 0);
    tw_kv_seq_free(kv, c);
    check_accounting(kv);

    /* b continues with its own tokens: new pages, published separately. */
    CHECK_EQ_INT(kv_seq_append(kv, b, u + 8, 2), TW_OK);
    kv_seq_publish(kv, b);
    /* a and b end: the registered pages stay cached, the rest is free. */
    tw_kv_seq_free(kv, a);
    tw_kv_seq_free(kv, b);
    tw_kv_stats s = tw_kv_cache_stats(kv);
    CHECK_EQ_INT(s.n_cached, 2);
    CHECK_EQ_INT(s.n_used, 0);
    CHECK_EQ_INT(s.n_seqs, 0);
    /* ... and are found again by a new sequence. */
    tw_kv_seq_new(kv, &c);
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, c, t, 12, &n_reused), TW_OK);
    CHECK_EQ_INT(n_reused, 8);
    CHECK_EQ_INT(tw_kv_cache_stats(kv).n_cached, 0);
    CHECK_EQ_INT(tw_kv_page_refcount(kv, tw_kv_seq_pages(kv, c, NULL)[0]), 1);
    check_accounting(kv);
    tw_kv_cache_free(kv);
}

static void test_eviction(void) {
    tw_kv_cache *kv = make_cache(4, 2, TW_DTYPE_F32, 4);
    if (!kv) return;
    int32_t t[8], u[8];
    seq_tokens(t, 8, 1);
    seq_tokens(u, 8, 50);
    int32_t a, b, n_reused;
    tw_kv_seq_new(kv, &a);
    CHECK_EQ_INT(kv_seq_append(kv, a, t, 4), TW_OK); /* two full pages */
    kv_seq_publish(kv, a);
    tw_kv_seq_free(kv, a);
    CHECK_EQ_INT(tw_kv_cache_stats(kv).n_cached, 2);
    CHECK_EQ_INT(tw_kv_cache_n_free(kv), 4);
    /* Three pages: two free ones, then the least recently released cached page. */
    tw_kv_seq_new(kv, &b);
    CHECK_EQ_INT(kv_seq_append(kv, b, u, 6), TW_OK);
    tw_kv_stats s = tw_kv_cache_stats(kv);
    CHECK_EQ_INT(s.evictions, 1);
    CHECK_EQ_INT(s.n_cached, 1);
    /* a's first page was released last (pages go back last-first), so its second page was
     * evicted; the first is still found, the chain stops there. */
    tw_kv_seq_free(kv, b);
    tw_kv_seq_new(kv, &a);
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, a, t, 5, &n_reused), TW_OK);
    CHECK_EQ_INT(n_reused, 2);
    check_accounting(kv);
    tw_kv_cache_free(kv);
}

static void test_exhaustion_and_context(void) {
    tw_kv_cache *kv = make_cache(4, 4, TW_DTYPE_F16, 2);
    if (!kv) return;
    int32_t t[32];
    seq_tokens(t, 32, 3);
    int32_t a, b, c;
    tw_kv_seq_new(kv, &a);
    tw_kv_seq_new(kv, &b);
    CHECK_EQ_INT(tw_kv_seq_new(kv, &c), TW_ERR_NOMEM); /* max_seqs = 2 */
    CHECK_EQ_INT(c, -1);
    CHECK_EQ_INT(kv_seq_append(kv, a, t, 9), TW_OK); /* 3 pages */
    CHECK_EQ_INT(kv_seq_append(kv, b, t, 5), TW_ERR_NOMEM);
    CHECK(strstr(tw_errmsg(), "KV cache full") != NULL);
    CHECK_EQ_INT(tw_kv_seq_len(kv, b), 0); /* unchanged */
    CHECK_EQ_INT(tw_kv_cache_n_free(kv), 1);
    CHECK_EQ_INT(kv_seq_append(kv, b, t, 4), TW_OK);
    CHECK_EQ_INT(kv_seq_append(kv, a, t, 3), TW_OK);  /* fills a's last page */
    CHECK_EQ_INT(kv_seq_append(kv, a, t, 1), TW_ERR_NOMEM);
    CHECK_EQ_INT(tw_kv_seq_len(kv, a), 12);
    tw_kv_seq_free(kv, b);
    /* The context (16 slots here) bounds a sequence even with pages to spare. */
    CHECK_EQ_INT(kv_seq_append(kv, a, t, 5), TW_ERR_ARG);
    CHECK_EQ_INT(kv_seq_append(kv, a, t, 4), TW_OK);
    CHECK_EQ_INT(tw_kv_seq_len(kv, a), 16);
    check_accounting(kv);
    /* Unknown ids. */
    CHECK_EQ_INT(kv_seq_append(kv, 7, t, 1), TW_ERR_ARG);
    CHECK_EQ_INT(kv_seq_append(kv, -1, t, 1), TW_ERR_ARG);
    CHECK_EQ_INT(tw_kv_seq_truncate(kv, 5, 0), TW_ERR_ARG);
    tw_kv_cache_clear(kv);
    CHECK_EQ_INT(tw_kv_cache_n_free(kv), 4);
    CHECK_EQ_INT(tw_kv_seq_len(kv, a), -1);
    tw_kv_cache_free(kv);
}

/* Fills every layer's K and V of page p with bytes derived from (array, page, byte). */
static void fill_page(tw_kv_cache *kv, int32_t page) {
    size_t es = kv->type == TW_DTYPE_F32 ? 4 : 2;
    size_t page_bytes = (size_t)kv->page_size * (size_t)kv->n_kv_head * (size_t)kv->head_dim * es;
    uint8_t buf[4096];
    TW_ASSERT(page_bytes <= sizeof buf);
    for (int32_t a = 0; a < 2 * kv->n_layer; a++) {
        for (size_t i = 0; i < page_bytes; i++) buf[i] = (uint8_t)(a * 31 + page * 7 + i);
        CHECK_EQ_INT(tw_buffer_upload(kv->buf, (size_t)a * kv->layer_bytes + (size_t)page * page_bytes,
                                      buf, page_bytes), TW_OK);
    }
}

/* 1 when the first n_slots slots of pages p and q hold the same bytes in every array. */
static int pages_equal(tw_kv_cache *kv, int32_t p, int32_t q, int32_t n_slots) {
    size_t es = kv->type == TW_DTYPE_F32 ? 4 : 2;
    size_t slot_bytes = (size_t)kv->n_kv_head * (size_t)kv->head_dim * es;
    size_t page_bytes = (size_t)kv->page_size * slot_bytes;
    uint8_t x[4096], y[4096];
    for (int32_t a = 0; a < 2 * kv->n_layer; a++) {
        size_t base = (size_t)a * kv->layer_bytes;
        tw_buffer_download(kv->buf, base + (size_t)p * page_bytes, x, (size_t)n_slots * slot_bytes);
        tw_buffer_download(kv->buf, base + (size_t)q * page_bytes, y, (size_t)n_slots * slot_bytes);
        if (memcmp(x, y, (size_t)n_slots * slot_bytes) != 0) return 0;
    }
    return 1;
}

static void test_truncate(void) {
    tw_kv_cache *kv = make_cache(8, 4, TW_DTYPE_F16, 4);
    if (!kv) return;
    int32_t t[32];
    seq_tokens(t, 32, 11);
    int32_t a, b, n_reused;
    tw_kv_seq_new(kv, &a);
    CHECK_EQ_INT(kv_seq_append(kv, a, t, 13), TW_OK); /* 4 pages */
    CHECK_EQ_INT(tw_kv_cache_n_free(kv), 4);
    CHECK_EQ_INT(tw_kv_seq_truncate(kv, a, 14), TW_ERR_ARG);
    CHECK_EQ_INT(tw_kv_seq_truncate(kv, a, -1), TW_ERR_ARG);
    CHECK_EQ_INT(tw_kv_seq_truncate(kv, a, 9), TW_OK); /* 3 pages */
    CHECK_EQ_INT(tw_kv_seq_len(kv, a), 9);
    CHECK_EQ_INT(tw_kv_cache_n_free(kv), 5);
    CHECK_EQ_INT(tw_kv_seq_truncate(kv, a, 8), TW_OK); /* exactly 2 pages */
    CHECK_EQ_INT(tw_kv_cache_n_free(kv), 6);
    CHECK_EQ_INT(kv_seq_append(kv, a, t + 8, 4), TW_OK);
    CHECK(memcmp(tw_kv_seq_tokens(kv, a), t, 12 * sizeof(int32_t)) == 0);
    kv_seq_publish(kv, a); /* three full pages registered */

    /* b shares a's first two pages, then truncates into the second: it must get a copy. */
    tw_kv_seq_new(kv, &b);
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, b, t, 12, &n_reused), TW_OK);
    CHECK_EQ_INT(n_reused, 8);
    const int32_t *pa = tw_kv_seq_pages(kv, a, NULL);
    int32_t shared = pa[1];
    fill_page(kv, shared);
    CHECK_EQ_INT(tw_kv_seq_truncate(kv, b, 6), TW_OK);
    const int32_t *pb = tw_kv_seq_pages(kv, b, NULL);
    CHECK(pb[1] != shared);
    CHECK_EQ_INT(pb[0], pa[0]);
    CHECK_EQ_INT(tw_kv_page_refcount(kv, shared), 1);
    CHECK_EQ_INT(tw_kv_page_refcount(kv, pb[1]), 1);
    CHECK(pages_equal(kv, pb[1], shared, 2));
    /* The copy is private: appending to b leaves a's page registered and findable. */
    CHECK_EQ_INT(kv_seq_append(kv, b, t + 20, 2), TW_OK);
    kv_seq_publish(kv, b);
    int32_t c;
    tw_kv_seq_new(kv, &c);
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, c, t, 12, &n_reused), TW_OK);
    CHECK_EQ_INT(n_reused, 8);
    tw_kv_seq_free(kv, c);

    /* a is the only holder of its third page: truncating into it unregisters it. */
    int32_t third = pa[2];
    CHECK_EQ_INT(tw_kv_seq_truncate(kv, a, 10), TW_OK);
    CHECK_EQ_INT(tw_kv_seq_pages(kv, a, NULL)[2], third);
    tw_kv_seq_new(kv, &c);
    CHECK_EQ_INT(tw_kv_seq_reuse_prefix(kv, c, t, 13, &n_reused), TW_OK);
    CHECK_EQ_INT(n_reused, 8); /* not 12: page three is no longer registered */
    tw_kv_seq_free(kv, c);
    CHECK_EQ_INT(tw_kv_seq_truncate(kv, a, 0), TW_OK);
    CHECK_EQ_INT(tw_kv_seq_len(kv, a), 0);
    check_accounting(kv);
    tw_kv_cache_free(kv);
}

static void test_bad_params(void) {
    tw_kv_params p;
    tw_kv_params_default(&p);
    tw_kv_cache *kv = (tw_kv_cache *)&p;
    CHECK_EQ_INT(kv_cache_create(be, 2, 2, 4, 0, &p, &kv), TW_ERR_ARG); /* n_pages 0 */
    CHECK(kv == NULL);
    p.n_pages = 4;
    p.type = TW_DTYPE_Q8_0;
    CHECK_EQ_INT(kv_cache_create(be, 2, 2, 4, 0, &p, &kv), TW_ERR_UNSUPPORTED);
    p.type = TW_DTYPE_F16;
    p.page_size = -3;
    CHECK_EQ_INT(kv_cache_create(be, 2, 2, 4, 0, &p, &kv), TW_ERR_ARG);
    p.page_size = 16;
    p.n_ctx = 20;
    CHECK_EQ_INT(kv_cache_create(be, 2, 2, 4, 0, &p, &kv), TW_OK);
    if (kv) CHECK_EQ_INT(tw_kv_cache_n_ctx(kv), 20);
    tw_kv_cache_free(kv);
    p.n_ctx = 0;
    CHECK_EQ_INT(kv_cache_create(be, 2, 2, 4, 1000, &p, &kv), TW_OK); /* 64 slots < 1000 */
    if (kv) CHECK_EQ_INT(tw_kv_cache_n_ctx(kv), 64);
    tw_kv_cache_free(kv);
    CHECK_EQ_INT(tw_kv_pages_for(0, 16), 0);
    CHECK_EQ_INT(tw_kv_pages_for(16, 16), 1);
    CHECK_EQ_INT(tw_kv_pages_for(17, 16), 2);
}

/* Each host and buffer allocation of create and of a sequence's growth fails in turn: a clean
 * error, nothing leaked (ASan), and the cache still consistent afterwards. */
static void test_alloc_failures(void) {
    tw_kv_params p;
    tw_kv_params_default(&p);
    p.n_pages = 8;
    p.page_size = 4;
    for (uint64_t k = 1; k < 16; k++) {
        tw_kv_cache *kv = NULL;
        tw_mem_fail_after(k);
        tw_status st = kv_cache_create(be, 2, 2, 4, 0, &p, &kv);
        tw_mem_fail_after(0);
        if (st == TW_OK) {
            int32_t a = -1, t[40];
            seq_tokens(t, 40, 0);
            CHECK_EQ_INT(tw_kv_seq_new(kv, &a), TW_OK);
            tw_mem_fail_after(k);
            st = kv_seq_append(kv, a, t, 30);
            tw_mem_fail_after(0);
            if (st != TW_OK) {
                CHECK_EQ_INT(st, TW_ERR_NOMEM);
                CHECK_EQ_INT(tw_kv_seq_len(kv, a), 0);
                CHECK_EQ_INT(tw_kv_cache_n_free(kv), 8);
            } else {
                CHECK_EQ_INT(tw_kv_seq_len(kv, a), 30);
            }
            check_accounting(kv);
        } else {
            CHECK_EQ_INT(st, TW_ERR_NOMEM);
            CHECK(kv == NULL);
        }
        tw_kv_cache_free(kv);
    }
    tw_kv_cache *kv = NULL;
    tw_buffer_fail_after(1);
    CHECK_EQ_INT(kv_cache_create(be, 2, 2, 4, 0, &p, &kv), TW_ERR_NOMEM);
    tw_buffer_fail_after(0);
    CHECK(kv == NULL);
}

int main(void) {
    if (tw_backend_open("cpu", &be) != TW_OK) {
        fprintf(stderr, "cpu backend: %s\n", tw_errmsg());
        return 1;
    }
    RUN(test_alloc_free_reuse);
    RUN(test_prefix_sharing);
    RUN(test_eviction);
    RUN(test_exhaustion_and_context);
    RUN(test_truncate);
    RUN(test_bad_params);
    RUN(test_alloc_failures);
    tw_backend_free(be);
    TEST_DONE();
}
