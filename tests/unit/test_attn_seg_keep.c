/* test_attn_seg_keep.c: the two ways kernels/cpu/attn_seg.c forms dQ in the backward give the
 * same bits: reading the dS that the dK/dV pass kept (what sequences up to a few thousand
 * tokens do, and what test_kernels_attn_seg.c checks against the fp64 reference), and
 * recomputing P and dS from K^T and V^T (what longer segments do: force_portable bit 1).
 * Packed segments of lengths around the chunk (64) and tile (128) sizes, grouped-query heads,
 * head sizes with a tail past a multiple of 16, causal and not, both variants. */
#include "core.h"
#include "cpu/cpu_kernels.h"
#include "kernel_inputs.h"
#include "test.h"

static kin_rng rng = {0x6b656570ull};

typedef struct {
    int64_t n_head, n_kv, hd;
} heads_cfg;

static void test_keep_equals_recompute(void) {
    static const int lens[] = {1, 7, 64, 65, 130, 200};
    static const heads_cfg cfgs[] = {{6, 2, 24}, {4, 4, 16}, {3, 1, 40}};
    int64_t n = 0;
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) n += lens[i];
    int32_t *seg = tw_malloc((size_t)n * sizeof(int32_t));
    TW_ASSERT(seg);
    for (size_t i = 0, t = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (int j = 0; j < lens[i]; j++) seg[t++] = (int32_t)(2 * i + 1);
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++)
        for (int causal = 0; causal <= 1; causal++) {
            const heads_cfg *h = &cfgs[c];
            tw_attn_seg_shape s = {.n_tok = n, .n_head = h->n_head, .n_kv_head = h->n_kv,
                                   .head_dim = h->hd, .scale = (float)(1.0 / sqrt((double)h->hd)),
                                   .causal = causal};
            const int64_t nq = n * h->n_head * h->hd, nkv = n * h->n_kv * h->hd;
            float *q = kin_floats(nq), *k = kin_floats(nkv), *v = kin_floats(nkv);
            float *dout = kin_floats(nq), *out = kin_floats(nq), *lse = kin_floats(n * h->n_head);
            float *g[2][3];
            for (int w = 0; w < 2; w++) {
                g[w][0] = kin_floats(nq);
                g[w][1] = kin_floats(nkv);
                g[w][2] = kin_floats(nkv);
            }
            kin_fill(&rng, q, nq, 0.5f);
            kin_fill(&rng, k, nkv, 0.5f);
            kin_fill(&rng, v, nkv, 1.0f);
            kin_fill(&rng, dout, nq, 1.0f);
            CHECK(tw_cpu_attn_seg_f32(out, lse, q, k, v, seg, &s) == TW_OK);
            for (int portable = 0; portable <= 1; portable++) {
                for (int w = 0; w < 2; w++)
                    CHECK(tw_cpu_attn_seg_bwd_f32_variant(g[w][0], g[w][1], g[w][2], dout, out, lse,
                                                          q, k, v, seg, &s, portable | (w ? 2 : 0)) == TW_OK);
                int same = memcmp(g[0][0], g[1][0], (size_t)nq * 4) == 0 &&
                           memcmp(g[0][1], g[1][1], (size_t)nkv * 4) == 0 &&
                           memcmp(g[0][2], g[1][2], (size_t)nkv * 4) == 0;
                if (!same)
                    fprintf(stderr, "heads %lld/%lld hd %lld causal %d portable %d: kept dS and "
                            "recomputed dS differ\n", (long long)h->n_head, (long long)h->n_kv,
                            (long long)h->hd, causal, portable);
                CHECK(same);
                /* and not trivially: the gradients are not all zero */
                double sum = 0;
                for (int64_t i = 0; i < nq; i++) sum += fabs((double)g[0][0][i]);
                CHECK(sum > 0);
            }
            tw_free(q), tw_free(k), tw_free(v), tw_free(dout), tw_free(out), tw_free(lse);
            for (int w = 0; w < 2; w++) tw_free(g[w][0]), tw_free(g[w][1]), tw_free(g[w][2]);
        }
    tw_free(seg);
}

int main(void) {
    RUN(test_keep_equals_recompute);
    TEST_DONE();
}
