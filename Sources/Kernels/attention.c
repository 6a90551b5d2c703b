/*
 * attention.c: public qk_attention. Work is split into independent pieces of (query head, block of up
 * to 128 query rows, 64 for window attention); each piece is one call of the tier twin with hq == hkv == 1 (pointers offset to
 * the head, its kv head h / (hq / hkv), and the block's first row). Pieces never share outputs, so the
 * result is the same for any thread count.
 */
#include "qk_internal.h"
#include "qk_ops_internal.h"
#include <stdio.h>
#include <string.h>


typedef struct {
    const qk_attn_params *p;
    const float *q, *k, *v;
    float *out;
    int64_t nblocks, bq; /* pieces of bq query rows: 64 for window attention, else QK_ATTN_BQ */
    qk_tier tier;
} attn_ctx;

/* Piece `task`: query head h, rows [i0, i0 + 64). Window attention (segments) orders pieces block-major,
   so a thread's consecutive pieces read neighbouring head slices of the same rows; otherwise head-major,
   so consecutive pieces reuse the head's keys and values from L2. */
static void attn_piece(const attn_ctx *c, int64_t task, int64_t *h, int64_t *i0) {
    const qk_attn_params *p = c->p;
    if (p->q_seg && p->k_seg) { *h = task % p->hq; *i0 = (task / p->hq) * c->bq; }
    else { *h = task / c->nblocks; *i0 = (task % c->nblocks) * c->bq; }
}

static void prefetch_rows(const float *base, int64_t stride, int64_t rows, int64_t d) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t x = 0; x < d; x += 16) __builtin_prefetch(base + r * stride + x);
}

static void attn_task(void *ctx, int64_t task, int thread_id) {
    const attn_ctx *c = (const attn_ctx *)ctx;
    const qk_attn_params *p = c->p;
    int64_t h, i0, group = p->hq / p->hkv;
    attn_piece(c, task, &h, &i0);
    if (task + 1 < p->hq * c->nblocks) {
        /* Start loading the next piece's rows (a thread usually takes it next): the rows of one head are
           strided by the other heads, which defeats the hardware prefetcher. */
        int64_t nh, ni0;
        attn_piece(c, task + 1, &nh, &ni0);
        int64_t nr = p->lq - ni0 < c->bq ? p->lq - ni0 : c->bq;
        prefetch_rows(c->q + ni0 * p->q_stride + nh * p->d, p->q_stride, nr, p->d);
        if (p->q_seg && p->k_seg) { /* window attention: the keys of the same rows, usually */
            int64_t nk = p->lk - ni0 < nr ? p->lk - ni0 : nr;
            prefetch_rows(c->k + ni0 * p->k_stride + (nh / group) * p->d, p->k_stride, nk, p->d);
            prefetch_rows(c->v + ni0 * p->v_stride + (nh / group) * p->d, p->v_stride, nk, p->d);
        }
    }
    int64_t hk = h / group;
    qk_attn_params sp = *p;
    sp.lq = p->lq - i0 < c->bq ? p->lq - i0 : c->bq;
    sp.hq = sp.hkv = 1;
    sp.q_offset = p->q_offset + i0;
    if (p->q_seg && p->k_seg) sp.q_seg = p->q_seg + i0;
    else sp.q_seg = sp.k_seg = NULL;
    const float *q = c->q + i0 * p->q_stride + h * p->d;
    const float *k = c->k + hk * p->d, *v = c->v + hk * p->d;
    float *out = c->out + i0 * p->o_stride + h * p->d;
    void *scratch = qk_thread_scratch(thread_id, qk_attention_scratch_bytes(p->d));
    switch (c->tier) {
#if defined(__x86_64__)
    case QK_TIER_AVX512: qk_attention_avx512(&sp, q, k, v, out, scratch); break;
    case QK_TIER_AVX2:
    case QK_TIER_AVXVNNI: qk_attention_avx2(&sp, q, k, v, out, scratch); break;
#endif
#if defined(__aarch64__)
    case QK_TIER_NEON:
    case QK_TIER_DOTPROD:
    case QK_TIER_I8MM: qk_attention_neon(&sp, q, k, v, out, scratch); break;
#endif
    default: qk_attention_ref(&sp, q, k, v, out, scratch); break;
    }
}

void qk_attention(const qk_attn_params *p, const float *q, const float *k, const float *v, float *out) {
    if (p->lq <= 0 || p->hq <= 0 || p->d <= 0) return;
    if (p->hkv <= 0 || p->hq % p->hkv != 0 || p->d > QK_ATTN_MAX_D) {
        /* Callers validate shapes; this is a last guard against garbage: zeros and a message. */
        fprintf(stderr, "qk_attention: unsupported shape hq=%lld hkv=%lld d=%lld (need hq %% hkv == 0, d <= %d)\n",
                (long long)p->hq, (long long)p->hkv, (long long)p->d, QK_ATTN_MAX_D);
        for (int64_t i = 0; i < p->lq; i++) memset(out + i * p->o_stride, 0, (size_t)(p->hq * p->d) * sizeof(float));
        return;
    }
    attn_ctx c = { .p = p, .q = q, .k = k, .v = v, .out = out, .tier = qk_tier_current() };
    /* 128-row pieces halve the key/value traffic per flop; windows (64 tokens in Qwen2.5-VL) get 64 */
    c.bq = p->q_seg && p->k_seg ? 64 : QK_ATTN_BQ;
    c.nblocks = (p->lq + c.bq - 1) / c.bq;
    qk_parallel_for(p->hq * c.nblocks, attn_task, &c);
}
