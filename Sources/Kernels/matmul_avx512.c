/* matmul_avx512.c: AVX-512 tier (F/BW/VL/DQ + VNNI). One zmm holds one 16-row block of outputs.
   Float schemes: register tiles of MR tokens x NB blocks (up to 12 x 2), one FMA chain per output in
   k order (QK_BF16 under qk_set_bf16_dot: vdpbf16ps on bf16 activations, in an AVX512-BF16 block at the
   end). Integer schemes: vpdpbusd with the weights as the unsigned operand (Q8 and Q8S are flipped
   to q + 128 by an xor, Q4 nibbles are q + 8, Q4C nibbles become codebook value + 128 by vpshufb, Q5S / Q6S
   get their high bits ORed in above the nibble: q + 16 / q + 32) and the activations as the signed broadcast operand; the
   offset is removed by starting each block's int32 sum at c = -offset * sum(q_x) (qk_quantize_x).
   Arithmetic and order follow qk_matmul_internal.h exactly, so results equal the reference. */
#include "qk_matmul_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c"))), apply_to = function)

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("clang loop unroll(full)")

/* The 16 horizontal reductions of v[0..15] in one vector (lane i: v[i] reduced), by a transpose tree:
   15 combining steps of two shuffles and one op instead of 16 separate 4-step reductions. op is max
   (exact in any order) or an integer add (exact in any order), so the lanes equal _mm512_reduce_*. */
#define HREDUCE16(v, OP, out) do {                                                                      \
    __m512 r1_[8], r2_[4], r3_[2];                                                                      \
    UNROLL for (int i_ = 0; i_ < 8; i_++)   /* 128-bit lanes (a0 a1 b0 b1) op (a2 a3 b2 b3) */          \
        r1_[i_] = OP(_mm512_shuffle_f32x4(v[2 * i_], v[2 * i_ + 1], 0x44), _mm512_shuffle_f32x4(v[2 * i_], v[2 * i_ + 1], 0xEE)); \
    UNROLL for (int i_ = 0; i_ < 4; i_++)   /* lane j of r2_[i]: block 4i + j, 4 partials */             \
        r2_[i_] = OP(_mm512_shuffle_f32x4(r1_[2 * i_], r1_[2 * i_ + 1], 0x88), _mm512_shuffle_f32x4(r1_[2 * i_], r1_[2 * i_ + 1], 0xDD)); \
    UNROLL for (int i_ = 0; i_ < 2; i_++)   /* per lane: (e f) pairs, 2 partials each */                 \
        r3_[i_] = OP(_mm512_unpacklo_ps(r2_[2 * i_], r2_[2 * i_ + 1]), _mm512_unpackhi_ps(r2_[2 * i_], r2_[2 * i_ + 1])); \
    /* lane j, element m: block 4m + j; back to block order */                                          \
    __m512 u_ = OP(_mm512_shuffle_ps(r3_[0], r3_[1], 0x44), _mm512_shuffle_ps(r3_[0], r3_[1], 0xEE));   \
    out = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), u_); \
} while (0)
#define QX_MAX(a, b) _mm512_max_ps(a, b)
#define QX_ADD(a, b) _mm512_castsi512_ps(_mm512_add_epi32(_mm512_castps_si512(a), _mm512_castps_si512(b)))

static void quantx_avx512(const float *x, int64_t k, int64_t kp, int32_t off, void *out) {
    int8_t *q = out;
    int64_t nblk = kp / QK_ABLK;
    float *xd = (float *)((uint8_t *)out + kp);
    int32_t *c = (int32_t *)(xd + nblk);
    const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
    int64_t b = 0;
    /* 16 whole blocks at a time: their maxima and sums reduced together (same values as below) */
    for (; (b + 16) * QK_ABLK <= k; b += 16) {
        const float *xb = x + b * QK_ABLK;
        __m512 m[16];
        UNROLL for (int i = 0; i < 16; i++)
            m[i] = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xb + 32 * i)), _mm512_abs_ps(_mm512_loadu_ps(xb + 32 * i + 16)));
        __m512 amax;
        HREDUCE16(m, QX_MAX, amax);
        __m512 id = _mm512_maskz_div_ps(_mm512_cmp_ps_mask(amax, _mm512_setzero_ps(), _CMP_GT_OQ), _mm512_set1_ps(127.0f), amax);
        _mm512_storeu_ps(xd + b, _mm512_div_ps(amax, _mm512_set1_ps(127.0f)));
        float ids[16];
        _mm512_storeu_ps(ids, id);
        __m512 sums[16];
        UNROLL for (int i = 0; i < 16; i++) {
            __m512 vid = _mm512_set1_ps(ids[i]);
            __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * i), vid));
            __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xb + 32 * i + 16), vid));
            q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), nlim);
            q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), nlim);
            _mm_storeu_si128((__m128i *)(q + (b + i) * QK_ABLK), _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128((__m128i *)(q + (b + i) * QK_ABLK + 16), _mm512_cvtepi32_epi8(q1));
            sums[i] = _mm512_castsi512_ps(_mm512_add_epi32(q0, q1));
        }
        __m512 sum;
        HREDUCE16(sums, QX_ADD, sum);
        _mm512_storeu_si512(c + b, _mm512_mullo_epi32(_mm512_set1_epi32(-off), _mm512_castps_si512(sum)));
    }
    for (; b < nblk; b++) {
        int64_t k0 = b * QK_ABLK, rem = k - k0;
        if (rem < 0) rem = 0;
        __mmask16 m0 = rem >= 16 ? 0xffff : (__mmask16)((1u << rem) - 1);
        __mmask16 m1 = rem >= 32 ? 0xffff : rem > 16 ? (__mmask16)((1u << (rem - 16)) - 1) : 0;
        __m512 v0 = _mm512_maskz_loadu_ps(m0, x + k0), v1 = _mm512_maskz_loadu_ps(m1, x + k0 + 16);
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        __m512 vid = _mm512_set1_ps(id);
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), nlim);
        q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), nlim);
        _mm_storeu_si128((__m128i *)(q + k0), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(q + k0 + 16), _mm512_cvtepi32_epi8(q1));
        int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        xd[b] = amax / 127.0f;
        c[b] = -off * sum;
    }
}

AI void store_block(const qk_mm_args *a, int64_t t, int64_t rb, __m512 v) {
    int64_t col = rb * QK_NR, rem = a->n - col;
    __mmask16 mk = rem >= 16 ? 0xffff : (__mmask16)((1u << rem) - 1);
    if (a->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, a->bias + col));
    _mm512_mask_storeu_ps(a->y + t * a->n + col, mk, v);
}

/* ---- float schemes ------------------------------------------------------------------------------ */
AI __m512 load_w(qk_scheme s, const uint8_t *p, int64_t kk) {
    if (s == QK_F32) return _mm512_loadu_ps((const float *)p + kk * QK_NR);
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + kk * QK_NR));
    if (s == QK_BF16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    return _mm512_cvtph_ps(h);
}

AI void ftile(const qk_mm_args *a, qk_scheme s, const int MR, const int NB, int64_t t0, int64_t rb) {
    __m512 acc[12][4];
    UNROLL for (int i = 0; i < MR; i++) for (int j = 0; j < NB; j++) acc[i][j] = _mm512_setzero_ps();
    const uint8_t *w0 = a->w + (size_t)rb * a->rb_bytes;
    const size_t rbb = a->rb_bytes;
    const int64_t k = a->k;
    const float *x = a->x + t0 * k;
    for (int64_t kk = 0; kk < k; kk++) {
        __m512 v[4];
        UNROLL for (int j = 0; j < NB; j++) v[j] = load_w(s, w0 + j * rbb, kk);
        UNROLL for (int i = 0; i < MR; i++) {
            __m512 xb = _mm512_set1_ps(x[i * k + kk]);
            UNROLL for (int j = 0; j < NB; j++) acc[i][j] = _mm512_fmadd_ps(xb, v[j], acc[i][j]);
        }
    }
    UNROLL for (int i = 0; i < MR; i++) for (int j = 0; j < NB; j++) store_block(a, t0 + i, rb + j, acc[i][j]);
}

/* The float tiles over rows [m0, m1) x row blocks [rb0, rb1), TILE(a, s, MR, NB, t, rb): one row at a time
   against up to 4 blocks (4 independent chains) for fewer than 4 rows, else 12 x 2, 4 x 2 and 1 x 2 tiles
   (x 1 for an odd last block). A macro so the bf16-dot kernel, compiled for another target, shares it. */
#define FLOAT_TILES(TILE, a, s, m0, m1, rb0, rb1) do {                                                   \
    if ((m1) - (m0) < 4) {                                                                              \
        for (int64_t rb = (rb0); rb < (rb1); rb += 4) {                                                 \
            int64_t nbl = (rb1) - rb < 4 ? (rb1) - rb : 4;                                              \
            for (int64_t t = (m0); t < (m1); t++) {                                                     \
                if (nbl == 4) TILE(a, s, 1, 4, t, rb);                                                  \
                else if (nbl == 3) TILE(a, s, 1, 3, t, rb);                                             \
                else if (nbl == 2) TILE(a, s, 1, 2, t, rb);                                             \
                else TILE(a, s, 1, 1, t, rb);                                                           \
            }                                                                                           \
        }                                                                                               \
    } else {                                                                                            \
        for (int64_t rb = (rb0); rb < (rb1); rb += 2) {                                                 \
            int64_t t = (m0);                                                                           \
            if (rb + 1 < (rb1)) {                                                                       \
                for (; t + 12 <= (m1); t += 12) TILE(a, s, 12, 2, t, rb);                               \
                for (; t + 4 <= (m1); t += 4) TILE(a, s, 4, 2, t, rb);                                  \
                for (; t < (m1); t++) TILE(a, s, 1, 2, t, rb);                                          \
            } else {                                                                                    \
                for (; t + 12 <= (m1); t += 12) TILE(a, s, 12, 1, t, rb);                               \
                for (; t + 4 <= (m1); t += 4) TILE(a, s, 4, 1, t, rb);                                  \
                for (; t < (m1); t++) TILE(a, s, 1, 1, t, rb);                                          \
            }                                                                                           \
        }                                                                                               \
    }                                                                                                   \
} while (0)

AI void fkern(const qk_mm_args *a, qk_scheme s, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) {
    FLOAT_TILES(ftile, a, s, m0, m1, rb0, rb1);
}
static void kern_f32(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { fkern(a, QK_F32, m0, m1, rb0, rb1); }
static void kern_bf16(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { fkern(a, QK_BF16, m0, m1, rb0, rb1); }
static void kern_f16(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { fkern(a, QK_F16, m0, m1, rb0, rb1); }

/* ---- integer schemes ---------------------------------------------------------------------------- */
/* 16-bit shift counts c0 + step * l for the 128-bit lane l (Q5S / Q6S high-bit planes). */
AI __m512i lane_counts(int c0, int step) {
    int v[4];
    UNROLL for (int l = 0; l < 4; l++) v[l] = (c0 + step * l) * 0x10001;
    return _mm512_setr_epi32(v[0], v[0], v[0], v[0], v[1], v[1], v[1], v[1], v[2], v[2], v[2], v[2], v[3], v[3], v[3], v[3]);
}

/* The 16 weight scales of group g in the block at blk: f32 (Q8, Q4) or int8 code x f32 super-scale
   (Q8S, Q4C; one rounded product, as the reference). */
AI __m512 load_ws(const qk_mm_args *a, qk_scheme s, const uint8_t *blk, int64_t g) {
    if (!qk_scheme_is_compact(s)) return _mm512_loadu_ps((const float *)blk + g * QK_NR);
    __m512 c = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + a->codes_off + g * QK_NR))));
    return _mm512_mul_ps(c, _mm512_loadu_ps((const float *)blk + (g / QK_SUPER_GROUPS) * QK_NR));
}

AI void itile(const qk_mm_args *a, qk_scheme s, const int MR, const int NB, int64_t t0, int64_t rb) {
    const int64_t kp = a->kp, nblk = kp / QK_ABLK;
    const uint8_t *blk0 = a->w + (size_t)rb * a->rb_bytes;
    const size_t rbb = a->rb_bytes;
    const uint8_t *d0 = blk0 + a->scales_bytes;
    const uint8_t *xr[8];
    const float *xd[8];
    const int32_t *xc[8];
    UNROLL for (int i = 0; i < MR; i++) {
        xr[i] = a->xq + (size_t)(t0 + i) * a->xq_stride;
        xd[i] = (const float *)(xr[i] + kp);
        xc[i] = (const int32_t *)(xd[i] + nblk);
    }
    const __m512i flip = _mm512_set1_epi8((char)0x80), low4 = _mm512_set1_epi8(0x0f);
    /* Q4C: nibble -> codebook value + 128 (unsigned for vpdpbusd; c removes the 128) */
    const __m512i lut = _mm512_broadcast_i32x4(_mm_setr_epi8(
        (char)(qk_q4c_codebook[0] + 128), (char)(qk_q4c_codebook[1] + 128), (char)(qk_q4c_codebook[2] + 128), (char)(qk_q4c_codebook[3] + 128),
        (char)(qk_q4c_codebook[4] + 128), (char)(qk_q4c_codebook[5] + 128), (char)(qk_q4c_codebook[6] + 128), (char)(qk_q4c_codebook[7] + 128),
        (char)(qk_q4c_codebook[8] + 128), (char)(qk_q4c_codebook[9] + 128), (char)(qk_q4c_codebook[10] + 128), (char)(qk_q4c_codebook[11] + 128),
        (char)(qk_q4c_codebook[12] + 128), (char)(qk_q4c_codebook[13] + 128), (char)(qk_q4c_codebook[14] + 128), (char)(qk_q4c_codebook[15] + 128)));
    /* Q5S / Q6S: the 16-byte high-bit vector of an operand, broadcast to the four 128-bit lanes, shifted
       right per lane (chunk c: 2c for Q6S; c, or 4 + c for the high nibbles, for Q5S), then up by 4 and
       masked: the bits u >> 4 above each nibble (qk_matmul_internal.h) */
    const int hb = qk_scheme_hbits(s);
    const __m512i cnt_lo = lane_counts(0, hb == 2 ? 2 : 1), cnt_hi = lane_counts(hb == 2 ? 0 : 4, hb == 2 ? 2 : 1);
    const __m512i hmask = _mm512_set1_epi8(hb == 2 ? 0x30 : 0x10);
    __m512 acc[8][4];
    UNROLL for (int i = 0; i < MR; i++) for (int j = 0; j < NB; j++) acc[i][j] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nblk; b++) {
        __m512i ia[8][4];
        UNROLL for (int i = 0; i < MR; i++) for (int j = 0; j < NB; j++) ia[i][j] = _mm512_set1_epi32(xc[i][b]);
        if (!qk_scheme_is_nibble(s)) {
            UNROLL for (int st = 0; st < 8; st++) {
                __m512i wv[4];
                UNROLL for (int j = 0; j < NB; j++) wv[j] = _mm512_xor_si512(_mm512_loadu_si512(d0 + j * rbb + (b * 8 + st) * 64), flip);
                UNROLL for (int i = 0; i < MR; i++) {
                    __m512i xb = _mm512_set1_epi32(*(const int32_t *)(xr[i] + b * 32 + st * 4));
                    UNROLL for (int j = 0; j < NB; j++) ia[i][j] = _mm512_dpbusd_epi32(ia[i][j], wv[j], xb);
                }
            }
        } else {
            __m512i ih[4];
            UNROLL for (int j = 0; j < NB; j++) ih[j] = _mm512_setzero_si512();
            UNROLL for (int p = 0; p < 4; p++) {
                __m512i lo[4], hi[4];
                UNROLL for (int j = 0; j < NB; j++) {
                    __m512i v = _mm512_loadu_si512(d0 + j * rbb + (b * 4 + p) * 64);
                    lo[j] = _mm512_and_si512(v, low4);
                    hi[j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
                    if (s == QK_Q4C) { lo[j] = _mm512_shuffle_epi8(lut, lo[j]); hi[j] = _mm512_shuffle_epi8(lut, hi[j]); }
                    if (hb) {
                        const uint8_t *hp = d0 + j * rbb + kp * 8 + (b * 4 + p) * 16 * hb;
                        __m512i hl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)hp));
                        __m512i hh = hb == 2 ? _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(hp + 16))) : hl;
                        /* nibble | (shifted & mask): ternary-logic truth table A | (B & C) = 0xF8 */
                        lo[j] = _mm512_ternarylogic_epi32(lo[j], _mm512_slli_epi16(_mm512_srlv_epi16(hl, cnt_lo), 4), hmask, 0xF8);
                        hi[j] = _mm512_ternarylogic_epi32(hi[j], _mm512_slli_epi16(_mm512_srlv_epi16(hh, cnt_hi), 4), hmask, 0xF8);
                    }
                }
                UNROLL for (int i = 0; i < MR; i++) {
                    __m512i xl = _mm512_set1_epi32(*(const int32_t *)(xr[i] + b * 32 + p * 8));
                    __m512i xh = _mm512_set1_epi32(*(const int32_t *)(xr[i] + b * 32 + p * 8 + 4));
                    UNROLL for (int j = 0; j < NB; j++) ia[i][j] = _mm512_dpbusd_epi32(ia[i][j], lo[j], xl);
                    if (MR == 1) {   /* GEMV: a second chain halves the dependency latency (int sums are exact) */
                        UNROLL for (int j = 0; j < NB; j++) ih[j] = _mm512_dpbusd_epi32(ih[j], hi[j], xh);
                    } else {
                        UNROLL for (int j = 0; j < NB; j++) ia[i][j] = _mm512_dpbusd_epi32(ia[i][j], hi[j], xh);
                    }
                }
            }
            if (MR == 1) { UNROLL for (int j = 0; j < NB; j++) ia[0][j] = _mm512_add_epi32(ia[0][j], ih[j]); }
        }
        int64_t g = b >> a->gshift;
        __m512 ws[4];
        UNROLL for (int j = 0; j < NB; j++) ws[j] = load_ws(a, s, blk0 + j * rbb, g);
        UNROLL for (int i = 0; i < MR; i++) {
            __m512 xs = _mm512_set1_ps(xd[i][b]);
            UNROLL for (int j = 0; j < NB; j++)
                acc[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(ia[i][j]), xs), ws[j], acc[i][j]);
        }
    }
    UNROLL for (int i = 0; i < MR; i++) for (int j = 0; j < NB; j++) store_block(a, t0 + i, rb + j, acc[i][j]);
}

AI void ikern(const qk_mm_args *a, qk_scheme s, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) {
    if (m1 - m0 < 3) {   /* GEMV-like: one row at a time, 4 blocks = 4 independent chains */
        for (int64_t rb = rb0; rb < rb1; rb += 4) {
            int64_t nbl = rb1 - rb < 4 ? rb1 - rb : 4;
            for (int64_t t = m0; t < m1; t++) {
                if (nbl == 4) itile(a, s, 1, 4, t, rb);
                else if (nbl == 3) itile(a, s, 1, 3, t, rb);
                else if (nbl == 2) itile(a, s, 1, 2, t, rb);
                else itile(a, s, 1, 1, t, rb);
            }
        }
        return;
    }
    for (int64_t rb = rb0; rb < rb1; rb += 2) {
        int nb2 = rb + 1 < rb1;
        int64_t t = m0;
        if (nb2 && qk_scheme_hbits(s)) {   /* Q5S / Q6S: 4 x 2 tiles (6 x 2 spills the decode's registers) */
            for (; t + 4 <= m1; t += 4) itile(a, s, 4, 2, t, rb);
            for (; t + 2 <= m1; t += 2) itile(a, s, 2, 2, t, rb);
            for (; t < m1; t++) itile(a, s, 1, 2, t, rb);
        } else if (nb2) {
            /* Q8 / Q8S: 8 x 2 tiles (16 int and 16 float accumulators; the compiler keeps most in registers):
               each weight load and flip serves 8 rows instead of 6, 8-12% faster at 256 rows than 6 x 2 */
            if (!qk_scheme_is_nibble(s)) for (; t + 8 <= m1; t += 8) itile(a, s, 8, 2, t, rb);
            for (; t + 6 <= m1; t += 6) itile(a, s, 6, 2, t, rb);
            for (; t + 3 <= m1; t += 3) itile(a, s, 3, 2, t, rb);
            for (; t < m1; t++) itile(a, s, 1, 2, t, rb);
        } else {
            for (; t + 6 <= m1; t += 6) itile(a, s, 6, 1, t, rb);
            for (; t + 3 <= m1; t += 3) itile(a, s, 3, 1, t, rb);
            for (; t < m1; t++) itile(a, s, 1, 1, t, rb);
        }
    }
}
static void kern_q8(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q8, m0, m1, rb0, rb1); }
static void kern_q4(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q4, m0, m1, rb0, rb1); }
static void kern_q4c(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q4C, m0, m1, rb0, rb1); }
static void kern_q8s(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q8S, m0, m1, rb0, rb1); }
static void kern_q5s(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q5S, m0, m1, rb0, rb1); }
static void kern_q6s(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q6S, m0, m1, rb0, rb1); }

#pragma clang attribute pop

/* ---- bf16-dot (qk_set_bf16_dot), the avx512 tier + AVX-512 BF16: called only where qk_cpu_has_avx512bf16 --
   The packed bf16 block stores a k pair as [kk: rows 0..15][kk+1: rows 0..15]; one vpermw turns it into the
   16 (kk, kk+1) pairs vdpbf16ps wants, shared by every activation row of the tile. vdpbf16ps adds the odd
   product, rounds, then the even product, rounds (DAZ in, FTZ out): the arithmetic of qk_matmul_internal.h. */
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c,avx512bf16"))), apply_to = function)

AI void btile(const qk_mm_args *a, qk_scheme s, const int MR, const int NB, int64_t t0, int64_t rb) {
    (void)s;
    /* word 2j <- row j at kk (word j), word 2j + 1 <- row j at kk + 1 (word 16 + j) */
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512 acc[12][4];
    UNROLL for (int i = 0; i < MR; i++) for (int j = 0; j < NB; j++) acc[i][j] = _mm512_setzero_ps();
    const uint8_t *w0 = a->w + (size_t)rb * a->rb_bytes;
    const size_t rbb = a->rb_bytes;
    const int64_t np = (a->k + 1) / 2;
    const int32_t *xr[12];
    UNROLL for (int i = 0; i < MR; i++) xr[i] = (const int32_t *)(a->xq + (size_t)(t0 + i) * a->xq_stride);
    for (int64_t p = 0; p < np; p++) {
        __m512bh v[4];
        UNROLL for (int j = 0; j < NB; j++)
            v[j] = (__m512bh)_mm512_permutexvar_epi16(idx, _mm512_loadu_si512(w0 + j * rbb + p * 64));
        UNROLL for (int i = 0; i < MR; i++) {
            __m512bh xb = (__m512bh)_mm512_set1_epi32(xr[i][p]);
            UNROLL for (int j = 0; j < NB; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], v[j], xb);
        }
    }
    UNROLL for (int i = 0; i < MR; i++) for (int j = 0; j < NB; j++) store_block(a, t0 + i, rb + j, acc[i][j]);
}

static void kern_bf16dot(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) {
    FLOAT_TILES(btile, a, QK_BF16, m0, m1, rb0, rb1);
}

#pragma clang attribute pop

const qk_mm_kernel qk_mm_bf16dot_avx512bf16 = kern_bf16dot;

const qk_mm_tier qk_mm_tier_avx512 = {
    .kern = { kern_f32, kern_bf16, kern_f16, kern_q8, kern_q4, kern_q4c, kern_q8s, kern_q5s, kern_q6s },
    .quantx = quantx_avx512,
    .q8_off = 128,
};
#endif
