/* matmul.c: the qk_matmul driver. Quantizes activations for the integer schemes (once per call, in
   parallel over rows), then splits y into (row chunk x 2-block column panel) tasks. Consecutive tasks
   share a weight panel, so the threads stream each panel from memory once per row chunk. */
#include "qk_matmul_internal.h"
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static _Atomic int g_bf16_dot;

size_t qk_xq_row_bytes(int64_t kp) {
    return ((size_t)kp + (size_t)(kp / QK_ABLK) * 8 + 63) / 64 * 64;
}

typedef struct {
    const qk_mm_tier *tier;
    qk_mm_args a;
    int64_t m, mchunk, nm, npanel, nbpanel;
    const float *x;
    int64_t k;
    int32_t off;
    qk_mm_kernel kern;       /* overrides the tier's kernel for the scheme (bf16-dot), else NULL */
} mm_job;

/* One task prepares 16 activation rows: quantizes them (integer schemes) or, for the bf16-dot kernel
   (j->kern), rounds them to bf16 zero padded to an even length. 16·k values make handing out the task
   cheap next to the work, and any m above 16 x threads keeps every thread busy (shorter inputs spend
   little time here). */
static void act_task(void *ctx, int64_t task, int tid) {
    (void)tid;
    mm_job *j = ctx;
    int64_t r0 = task * 16, r1 = r0 + 16 < j->m ? r0 + 16 : j->m;
    qk_quantx_fn qf = j->tier->quantx ? j->tier->quantx : qk_quantize_x_ref;
    for (int64_t r = r0; r < r1; r++) {
        uint8_t *row = (uint8_t *)j->a.xq + (size_t)r * j->a.xq_stride;
        if (!j->kern) { qf(j->x + r * j->k, j->k, j->a.kp, j->off, row); continue; }
        qk_f32_to_bf16(j->x + r * j->k, j->k, (uint16_t *)row);
        if (j->k & 1) ((uint16_t *)row)[j->k] = 0;
    }
}

static void mm_task(void *ctx, int64_t task, int tid) {
    (void)tid;
    mm_job *j = ctx;
    int64_t p = task / j->nm, mi = task % j->nm;
    int64_t m0 = mi * j->mchunk, m1 = m0 + j->mchunk < j->m ? m0 + j->mchunk : j->m;
    int64_t rb0 = p * j->nbpanel, rb1 = rb0 + j->nbpanel;
    int64_t nb = (j->a.n + QK_NR - 1) / QK_NR;
    if (rb1 > nb) rb1 = nb;
    /* a tier without a kernel for the scheme falls back to the reference kernel (which ignores c) */
    qk_mm_kernel kf = j->kern ? j->kern
                    : j->tier->kern[j->a.scheme] ? j->tier->kern[j->a.scheme] : qk_mm_tier_ref.kern[j->a.scheme];
    kf(&j->a, m0, m1, rb0, rb1);
}

/* Fills j for y [m, n] = x · wᵀ + bias (no activations yet); 0 on invalid arguments. */
static int mm_setup(mm_job *j, const qk_mm_tier *tier, const qk_weight *w, int64_t m, const float *bias, float *y) {
    int64_t kp = w ? qk_weight_kp(w->scheme, w->group, w->k) : 0;
    if (!w || !w->data || !y || w->n <= 0 || !kp) {
        fprintf(stderr, "qk_matmul: invalid arguments (scheme %d, group %d, n %lld, k %lld)\n",
                w ? (int)w->scheme : -1, w ? w->group : -1, w ? (long long)w->n : -1LL, w ? (long long)w->k : -1LL);
        abort();
    }
    j->tier = tier;
    j->kern = NULL;
    j->m = m; j->x = NULL; j->k = w->k;
    j->a.scheme = w->scheme;
    j->a.n = w->n; j->a.k = w->k; j->a.kp = kp;
    j->a.ng = qk_weight_ngroups(w->scheme, w->group, w->k);
    j->a.gblk = w->group ? w->group / QK_ABLK : 0;
    j->a.gshift = w->group == 32 ? 0 : w->group == 64 ? 1 : w->group == 128 ? 2 : 63;
    j->a.rb_bytes = qk_weight_block_bytes(w->scheme, w->group, w->k);
    j->a.scales_bytes = qk_weight_scales_bytes(w->scheme, w->group, w->k);
    j->a.codes_off = (size_t)qk_weight_nsuper(w->scheme, w->group, w->k) * QK_NR * 4;
    j->a.w = w->data;
    j->a.x = NULL;
    j->a.xq = NULL;
    j->a.xq_stride = 0;
    j->a.bias = bias;
    j->a.y = y;
    j->off = qk_scheme_is_int(w->scheme) ? qk_mm_act_off(tier, w->scheme) : 0;
    return 1;
}

/* Splits y into (row chunk x column panel) tasks and runs them. */
static void mm_run(mm_job *j) {
    int64_t m = j->m, nb = (j->a.n + QK_NR - 1) / QK_NR;
    /* Column panel = the row blocks (QK_NR = 16 weight rows each) one task streams. For m < 4 the
       kernels take one activation row against up to 4 blocks at a time (the AVX-512 1-row tiles), so a
       4-block panel is one kernel call per row; otherwise the widest tiles cover 2 blocks (AVX-512
       12x2, AVX2 1x2), and 2-block panels give twice as many tasks to balance over the threads. */
    j->nbpanel = m < 4 ? 4 : 2;
    j->npanel = (nb + j->nbpanel - 1) / j->nbpanel;
    /* Row chunk: 96 is a multiple of every register-tile height (AVX-512 12, 8 and 4, AVX2 6 and 2), so
       only the last chunk ends in a partial tile. A task streams its weight panel once per chunk, so a
       chunk of 96 rows reuses each loaded weight 96 times, while long inputs still split into
       (panels x chunks) tasks for the threads to share. */
    j->mchunk = m <= 96 ? m : 96;
    j->nm = (m + j->mchunk - 1) / j->mchunk;
    qk_parallel_for(j->npanel * j->nm, mm_task, j);
}

int32_t qk_mm_act_off(const qk_mm_tier *tier, qk_scheme s) {
    /* the offset the tier's kernel removes through c: Q4 nibbles are q + 8, Q5S / Q6S values q + 16 /
       q + 32 (unsigned in every tier); Q8, Q8S and Q4C values are signed (the VNNI kernels flip them to
       q + 128) */
    return qk_scheme_nibble_offset(s) ? qk_scheme_nibble_offset(s) : tier->q8_off;
}

/* A product from f32 activations: quantized here for the integer schemes, rounded to bf16 here for the
   bf16-dot kernel `dot` (QK_BF16 weights), used as they are otherwise. */
static void mm_from_f32(const qk_mm_tier *tier, const qk_weight *w, const float *x, int64_t m,
                        const float *bias, float *y, qk_mm_kernel dot) {
    if (m <= 0) return;
    mm_job j;
    if (!x) { fprintf(stderr, "qk_matmul: invalid arguments (no activations)\n"); abort(); }
    mm_setup(&j, tier, w, m, bias, y);
    j.x = x;
    j.a.x = x;
    if (qk_scheme_is_int(w->scheme) || dot) {   /* dot comes only with QK_BF16 weights (the callers check) */
        j.kern = dot;
        j.a.xq_stride = dot ? ((size_t)(w->k + 1) / 2 * 4 + 63) / 64 * 64 : qk_xq_row_bytes(j.a.kp);
        j.a.xq = qk_tls_scratch(0, j.a.xq_stride * (size_t)m);
        qk_parallel_for((m + 15) / 16, act_task, &j);
    }
    mm_run(&j);
}

void qk_matmul_with_tier(const qk_mm_tier *tier, const qk_weight *w, const float *x, int64_t m,
                        const float *bias, float *y) {
    int dot = w && w->scheme == QK_BF16 && atomic_load(&g_bf16_dot);
    mm_from_f32(tier, w, x, m, bias, y, dot ? qk_mm_bf16dot_kernel(tier) : NULL);
}

/* The bf16-dot product of a tier regardless of qk_set_bf16_dot (tests); aborts where it has none. */
static void bf16dot_with_tier(const qk_mm_tier *tier, const qk_weight *w, const float *x, int64_t m,
                              const float *bias, float *y) {
    qk_mm_kernel dot = qk_mm_bf16dot_kernel(tier);
    if (!w || w->scheme != QK_BF16 || !dot) {
        fprintf(stderr, "qk_matmul_bf16dot: needs QK_BF16 weights and a tier with the bf16 dot product\n");
        abort();
    }
    mm_from_f32(tier, w, x, m, bias, y, dot);
}
void qk_matmul_bf16dot_ref(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    bf16dot_with_tier(&qk_mm_tier_ref, w, x, m, bias, y);
}
#if defined(__x86_64__)
void qk_matmul_bf16dot_avx512(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    bf16dot_with_tier(&qk_mm_tier_avx512, w, x, m, bias, y);
}
#endif

void qk_matmul_xq_with_tier(const qk_mm_tier *tier, const qk_weight *w, const uint8_t *xq, int64_t m,
                            const float *bias, float *y) {
    if (m <= 0) return;
    mm_job j;
    if (!xq || !w || !qk_scheme_is_int(w->scheme)) {
        fprintf(stderr, "qk_matmul_xq: invalid arguments (quantized activations need an integer scheme)\n");
        abort();
    }
    mm_setup(&j, tier, w, m, bias, y);
    j.a.xq = xq;
    j.a.xq_stride = qk_xq_row_bytes(j.a.kp);
    mm_run(&j);
}

qk_mm_kernel qk_mm_bf16dot_kernel(const qk_mm_tier *tier) {
    if (tier == &qk_mm_tier_ref) return qk_mm_bf16dot_ref;
#if defined(__x86_64__)
    if (tier == &qk_mm_tier_avx512 && qk_cpu_has_avx512bf16()) return qk_mm_bf16dot_avx512bf16;
#endif
    return NULL;
}

int qk_set_bf16_dot(int on) {
    atomic_store(&g_bf16_dot, on != 0);
    return qk_bf16_dot_active();
}

int qk_bf16_dot_active(void) {
    return atomic_load(&g_bf16_dot) && qk_mm_bf16dot_kernel(qk_mm_tier_current()) != NULL;
}

const qk_mm_tier *qk_mm_tier_current(void) {
    switch (qk_tier_current()) {
#if defined(__x86_64__)
    case QK_TIER_AVX512: return &qk_mm_tier_avx512;
    case QK_TIER_AVXVNNI: return &qk_mm_tier_avxvnni;
    case QK_TIER_AVX2: return &qk_mm_tier_avx2;
#endif
#if defined(__aarch64__)
    case QK_TIER_I8MM: return &qk_mm_tier_i8mm;
    case QK_TIER_DOTPROD: return &qk_mm_tier_dotprod;
    case QK_TIER_NEON: return &qk_mm_tier_neon;
#endif
    default: return &qk_mm_tier_ref;
    }
}

void qk_matmul_ref(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    qk_matmul_with_tier(&qk_mm_tier_ref, w, x, m, bias, y);
}

#if defined(__x86_64__)
void qk_matmul_avx2(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    qk_matmul_with_tier(&qk_mm_tier_avx2, w, x, m, bias, y);
}
void qk_matmul_avxvnni(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    qk_matmul_with_tier(&qk_mm_tier_avxvnni, w, x, m, bias, y);
}
void qk_matmul_avx512(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    qk_matmul_with_tier(&qk_mm_tier_avx512, w, x, m, bias, y);
}
#endif
#if defined(__aarch64__)
void qk_matmul_neon(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    qk_matmul_with_tier(&qk_mm_tier_neon, w, x, m, bias, y);
}
void qk_matmul_dotprod(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    qk_matmul_with_tier(&qk_mm_tier_dotprod, w, x, m, bias, y);
}
void qk_matmul_i8mm(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    qk_matmul_with_tier(&qk_mm_tier_i8mm, w, x, m, bias, y);
}
#endif

void qk_matmul(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    qk_matmul_with_tier(qk_mm_tier_current(), w, x, m, bias, y);
}
