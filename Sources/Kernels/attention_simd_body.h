/*
 * attention_simd_body.h: flash-style attention for one query head and up to BQ = 128 query rows, written once
 * over the vector vocabulary (simd_avx2.h / simd_avx512.h / simd_neon.h); attention_avx2.c,
 * attention_avx512.c and attention_neon.c instantiate it.
 *
 * Layout trick: queries live in vector lanes. The block's queries are packed once, transposed and
 * pre-scaled, as Qt[c][i] (i < BQ). For each tile of up to BK = 64 keys:
 *   S^T[j][i] = sum_c K[j][c] * Qt[c][i]     (K rows are read in place and broadcast: no K packing)
 *   running max m[i], P^T = exp(S^T - m), l[i] = l[i] * alpha[i] + sum_j P^T[j][i]   (all lane-wise:
 *   no horizontal reductions)
 *   O[i][:] = O[i][:] * alpha[i] + sum_j P^T[j][i] * V[j][:]   (V rows read in place)
 * Rows of the block are split into runs of equal segment id, each with its own key range, so window
 * attention only touches its own window. A row that sees no key gets zeros.
 */
#include "qk_ops_internal.h"
#include "simd_math.h"
#include <math.h>
#include <string.h>

#define BQ QK_ATTN_BQ
#define BK QK_ATTN_BK
#define KG 4 /* keys per S^T register tile */
#define RG 4 /* query rows per PV register tile */
#define QK_INLINE static inline __attribute__((always_inline))

/* st[u][lanes] = sum_c kp[u][c] * qt[c][lanes] for u < KG and NQ query vectors. */
QK_INLINE void st_block(const float *const kp[KG], const float *qt, int64_t d, float *st, const int NQ) {
    V acc[KG][ATT_QV];
    for (int u = 0; u < KG; u++)
        for (int x = 0; x < NQ; x++) acc[u][x] = vzero();
    for (int64_t c = 0; c < d; c++) {
        V qv[ATT_QV];
        for (int x = 0; x < NQ; x++) qv[x] = vld(qt + c * BQ + x * VL);
        for (int u = 0; u < KG; u++) {
            V b = vset(kp[u][c]);
            for (int x = 0; x < NQ; x++) acc[u][x] = vfma(b, qv[x], acc[u][x]);
        }
    }
    for (int u = 0; u < KG; u++)
        for (int x = 0; x < NQ; x++) vst(st + u * BQ + x * VL, acc[u][x]);
}

/* o[r][cols] = o[r][cols] * alpha[r] + sum_j pt[j][r] * v[j][cols] for r < RG and NV column vectors
   (the last one masked with `lastm` when TAIL). */
QK_INLINE void pv_block(const float *pt, const float *alpha, const float *vb, int64_t v_stride, int64_t nk,
                        float *o, int64_t dp, VM lastm, const int NV, const int TAIL) {
    V acc[RG][ATT_CV];
    for (int r = 0; r < RG; r++) {
        V a = vset(alpha[r]);
        for (int x = 0; x < NV; x++) acc[r][x] = vmul(vld(o + r * dp + x * VL), a);
    }
    for (int64_t j = 0; j < nk; j++) {
        const float *vr = vb + j * v_stride;
        V vv[ATT_CV];
        for (int x = 0; x < NV; x++) vv[x] = (TAIL && x == NV - 1) ? vldm(vr + x * VL, lastm) : vld(vr + x * VL);
        for (int r = 0; r < RG; r++) {
            V b = vset(pt[j * BQ + r]);
            for (int x = 0; x < NV; x++) acc[r][x] = vfma(b, vv[x], acc[r][x]);
        }
    }
    for (int r = 0; r < RG; r++)
        for (int x = 0; x < NV; x++) vst(o + r * dp + x * VL, acc[r][x]);
}

/* Touch every cache line of rows [0, rows) (d floats each, `stride` apart) so their misses overlap:
   rows of one head are strided by the other heads, which defeats the hardware prefetcher. */
static inline void prefetch_rows(const float *base, int64_t stride, int64_t rows, int64_t d) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < d; c += 16) __builtin_prefetch(base + r * stride + c);
}

#if defined(__x86_64__)
/* dst[k][0..8) = src[0..8)[k] * sc for k < 8 (8x8 transpose; AVX2 shuffles, in both tiers). */
QK_INLINE void tr8x8(const float *src, int64_t ss, float *dst, int64_t ds, __m256 sc) {
    __m256 r0 = _mm256_mul_ps(_mm256_loadu_ps(src), sc), r1 = _mm256_mul_ps(_mm256_loadu_ps(src + ss), sc);
    __m256 r2 = _mm256_mul_ps(_mm256_loadu_ps(src + 2 * ss), sc), r3 = _mm256_mul_ps(_mm256_loadu_ps(src + 3 * ss), sc);
    __m256 r4 = _mm256_mul_ps(_mm256_loadu_ps(src + 4 * ss), sc), r5 = _mm256_mul_ps(_mm256_loadu_ps(src + 5 * ss), sc);
    __m256 r6 = _mm256_mul_ps(_mm256_loadu_ps(src + 6 * ss), sc), r7 = _mm256_mul_ps(_mm256_loadu_ps(src + 7 * ss), sc);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + ds, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}
#define TRB 8 /* rows and columns per transpose block */
QK_INLINE void tr_block(const float *src, int64_t ss, float *dst, int64_t ds, float scale) {
    tr8x8(src, ss, dst, ds, _mm256_set1_ps(scale));
}
#else
/* dst[k][0..4) = src[0..4)[k] * scale for k < 4 (4x4 transpose, NEON trn/zip). */
#define TRB 4
QK_INLINE void tr_block(const float *src, int64_t ss, float *dst, int64_t ds, float scale) {
    float32x4_t r0 = vmulq_n_f32(vld1q_f32(src), scale), r1 = vmulq_n_f32(vld1q_f32(src + ss), scale);
    float32x4_t r2 = vmulq_n_f32(vld1q_f32(src + 2 * ss), scale), r3 = vmulq_n_f32(vld1q_f32(src + 3 * ss), scale);
    float64x2_t t0 = vreinterpretq_f64_f32(vtrn1q_f32(r0, r1)), t1 = vreinterpretq_f64_f32(vtrn2q_f32(r0, r1));
    float64x2_t t2 = vreinterpretq_f64_f32(vtrn1q_f32(r2, r3)), t3 = vreinterpretq_f64_f32(vtrn2q_f32(r2, r3));
    vst1q_f32(dst, vreinterpretq_f32_f64(vzip1q_f64(t0, t2)));
    vst1q_f32(dst + ds, vreinterpretq_f32_f64(vzip1q_f64(t1, t3)));
    vst1q_f32(dst + 2 * ds, vreinterpretq_f32_f64(vzip2q_f64(t0, t2)));
    vst1q_f32(dst + 3 * ds, vreinterpretq_f32_f64(vzip2q_f64(t1, t3)));
}
#endif

typedef struct {
    float *qt, *st, *o, *m, *l, *alpha;
    int64_t dp;
} att_scratch;

static void st_tile(const float *k, int64_t k_stride, int64_t nk, const float *qt, int64_t d, int64_t nqv, float *st) {
    for (int64_t jj = 0; jj < nk; jj += KG) {
        const float *kp[KG];
        for (int u = 0; u < KG; u++) kp[u] = k + (jj + u < nk ? jj + u : nk - 1) * k_stride;
        for (int64_t iv = 0; iv < nqv; iv += ATT_QV) {
            int64_t nq = nqv - iv < ATT_QV ? nqv - iv : ATT_QV;
            const float *q0 = qt + iv * VL;
            float *s0 = st + jj * BQ + iv * VL;
            switch (nq) {
            case 1: st_block(kp, q0, d, s0, 1); break;
            case 2: st_block(kp, q0, d, s0, 2); break;
#if ATT_QV >= 3
            case 3: st_block(kp, q0, d, s0, 3); break;
#endif
#if ATT_QV >= 4
            case 4: st_block(kp, q0, d, s0, 4); break;
#endif
            default: break;
            }
        }
    }
}

static void pv_tile(const float *v, int64_t v_stride, int64_t nk, int64_t nr, int64_t d, const att_scratch *s) {
    int64_t nvec = (d + VL - 1) / VL;
    /* column groups of at most ATT_CV vectors, balanced (d = 80 on AVX-512: one group of 5) */
    int64_t ngroups = (nvec + ATT_CV - 1) / ATT_CV, gsize = (nvec + ngroups - 1) / ngroups;
    VM lastm = vmask(d - (nvec - 1) * VL);
    int tail = d % VL != 0;
    for (int64_t i = 0; i < nr; i += RG) {
        for (int64_t cv = 0; cv < nvec; cv += gsize) {
            int64_t nv = nvec - cv < gsize ? nvec - cv : gsize;
            int last = tail && cv + nv == nvec;
            const float *pt = s->st + i, *al = s->alpha + i, *vb = v + cv * VL;
            float *o = s->o + i * s->dp + cv * VL;
#define PV_CASE(NV)                                                                                   \
    case 2 * NV: pv_block(pt, al, vb, v_stride, nk, o, s->dp, lastm, NV, 0); break;                  \
    case 2 * NV + 1: pv_block(pt, al, vb, v_stride, nk, o, s->dp, lastm, NV, 1); break;
            switch (nv * 2 + last) {
            PV_CASE(1) PV_CASE(2) PV_CASE(3)
#if ATT_CV >= 4
            PV_CASE(4) PV_CASE(5) PV_CASE(6)
#endif
            default: break;
            }
#undef PV_CASE
        }
    }
}

/* Queries [r0, r0 + nr) of the block, all with segment `seg` (ignored when !use_seg). */
static void att_run(const qk_attn_params *p, const float *q, const float *k, const float *v, float *out,
                    int64_t r0, int64_t nr, int use_seg, int32_t seg, const att_scratch *s) {
    int64_t d = p->d, dp = s->dp;
    int64_t jlo = 0, jhi = p->kv_len < p->lk ? p->kv_len : p->lk;
    if (p->causal && p->q_offset + r0 + nr < jhi) jhi = p->q_offset + r0 + nr;
    if (use_seg) {
        int64_t a = jlo, b = jhi;
        while (a < b && p->k_seg[a] != seg) a++;
        while (b > a && p->k_seg[b - 1] != seg) b--;
        jlo = a; jhi = b;
    }
    if (jhi <= jlo) {
        for (int64_t i = 0; i < nr; i++) memset(out + (r0 + i) * p->o_stride, 0, (size_t)d * sizeof(float));
        return;
    }
    int64_t nqv = (nr + VL - 1) / VL;
    int64_t nk0 = jhi - jlo < BK ? jhi - jlo : BK;
    prefetch_rows(q + r0 * p->q_stride, p->q_stride, nr, d);
    prefetch_rows(k + jlo * p->k_stride, p->k_stride, nk0, d);
    prefetch_rows(v + jlo * p->v_stride, p->v_stride, nk0, d);
    /* Qt[c][i] = q[r0 + i][c] * scale, zero lanes past nr */
    if (nqv * VL > nr) /* zero the lanes past nr of the vectors in use */
        for (int64_t c = 0; c < d; c++) memset(s->qt + c * BQ + nr, 0, (size_t)(nqv * VL - nr) * sizeof(float));
    {
        int64_t nr8 = nr / TRB * TRB, d8 = d / TRB * TRB;
        for (int64_t i = 0; i < nr8; i += TRB)
            for (int64_t c = 0; c < d8; c += TRB) tr_block(q + (r0 + i) * p->q_stride + c, p->q_stride, s->qt + c * BQ + i, BQ, p->scale);
        /* edges, scalar on purpose: auto-vectorized, this becomes a scatter (very slow on AMD Zen 4) */
        for (int64_t i = 0; i < nr; i++) {
            const float *qi = q + (r0 + i) * p->q_stride;
#pragma clang loop vectorize(disable)
            for (int64_t c = i < nr8 ? d8 : 0; c < d; c++) s->qt[c * BQ + i] = qi[c] * p->scale;
        }
    }
    memset(s->o, 0, (size_t)((nr + RG - 1) / RG * RG * dp) * sizeof(float));
    for (int64_t i = 0; i < nqv * VL; i++) { s->m[i] = -INFINITY; s->l[i] = 0; }
    V lane = viota(), ninf = vset(-INFINITY);

    for (int64_t j0 = jlo; j0 < jhi; j0 += BK) {
        int64_t nk = jhi - j0 < BK ? jhi - j0 : BK;
        if (j0 + BK < jhi) { /* next tile's keys and values */
            int64_t nn = jhi - j0 - BK < BK ? jhi - j0 - BK : BK;
            prefetch_rows(k + (j0 + BK) * p->k_stride, p->k_stride, nn, d);
            prefetch_rows(v + (j0 + BK) * p->v_stride, p->v_stride, nn, d);
        }
        st_tile(k + j0 * p->k_stride, p->k_stride, nk, s->qt, d, nqv, s->st);
        /* masks: key j hidden from lane i when j > q_offset + r0 + i, or its segment differs */
        int causal_part = p->causal && j0 + nk - 1 > p->q_offset + r0;
        for (int64_t jj = 0; jj < nk; jj++) {
            float *row = s->st + jj * BQ;
            if (use_seg && p->k_seg[j0 + jj] != seg) {
                for (int64_t iv = 0; iv < nqv; iv++) vst(row + iv * VL, ninf);
                continue;
            }
            if (causal_part) {
                int64_t t = j0 + jj - p->q_offset - r0; /* lanes i < t are hidden */
                if (t <= 0) continue;
                float tf = (float)(t > BQ ? BQ : t);
                for (int64_t iv = 0; iv < nqv; iv++) {
                    V li = vadd(lane, vset((float)(iv * VL)));
                    vst(row + iv * VL, vsel_lt(li, vset(tf), ninf, vld(row + iv * VL)));
                }
            }
        }
        /* online softmax, lane-wise */
        for (int64_t iv = 0; iv < nqv; iv++) {
            V mold = vld(s->m + iv * VL), mx = mold;
            for (int64_t jj = 0; jj < nk; jj++) mx = vmax(mx, vld(s->st + jj * BQ + iv * VL));
            V msafe = vsel_eq(mx, ninf, vzero(), mx);
            V alpha = vexp(vsub(mold, msafe)), sum = vzero();
            for (int64_t jj = 0; jj < nk; jj++) {
                float *sp = s->st + jj * BQ + iv * VL;
                V e = vexp(vsub(vld(sp), msafe));
                vst(sp, e);
                sum = vadd(sum, e);
            }
            vst(s->l + iv * VL, vfma(vld(s->l + iv * VL), alpha, sum));
            vst(s->m + iv * VL, mx);
            vst(s->alpha + iv * VL, alpha);
        }
        pv_tile(v + j0 * p->v_stride, p->v_stride, nk, nr, d, s);
    }
    int64_t nvec = (d + VL - 1) / VL;
    for (int64_t i = 0; i < nr; i++) {
        V inv = vset(s->l[i] > 0 ? 1.0f / s->l[i] : 0.0f);
        float *oi = out + (r0 + i) * p->o_stride, *src = s->o + i * dp;
        for (int64_t cv = 0; cv < nvec; cv++) {
            int64_t n = d - cv * VL < VL ? d - cv * VL : VL;
            vstm(oi + cv * VL, vmask(n), vmul(vld(src + cv * VL), inv));
        }
    }
}

void QK_SFX(qk_attention)(const qk_attn_params *p, const float *q, const float *k, const float *v, float *out,
                          void *scratch) {
    att_scratch s;
    int64_t d = p->d;
    s.dp = (d + 15) / 16 * 16;
    s.qt = (float *)scratch;
    s.st = s.qt + s.dp * BQ;
    s.o = s.st + (BK + KG) * BQ;
    s.m = s.o + BQ * s.dp;
    s.l = s.m + BQ;
    s.alpha = s.l + BQ;
    int use_seg = p->q_seg && p->k_seg;
    for (int64_t r0 = 0; r0 < p->lq;) {
        int64_t r1 = r0 + 1;
        if (use_seg) while (r1 < p->lq && p->q_seg[r1] == p->q_seg[r0]) r1++;
        else r1 = p->lq;
        att_run(p, q, k, v, out, r0, r1 - r0, use_seg, use_seg ? p->q_seg[r0] : 0, &s);
        r0 = r1;
    }
}
