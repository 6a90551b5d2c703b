/* matmul_avx2_body.h: the 256-bit tiers, compiled twice: by matmul_avx2.c (AVX2 + FMA + F16C; int8
   dot as vpmaddubsw + vpmaddwd) and by matmul_avxvnni.c (same + AVX-VNNI vpdpbusd). Define
   QK_T_VNNI (0, 1; 2 = the same VNNI code with the EVEX encoding, so AVX-512 machines can test the
   AVX-VNNI logic), QK_T_NAME(x) (name suffix) and the target pragma before including.
   A 16-row block is two ymm halves (rows 0-7: bytes/floats of the first half of each k step).
   Arithmetic and order follow qk_matmul_internal.h exactly, so results equal the reference. */
#include <immintrin.h>

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("clang loop unroll(full)")
#define lane_mask QK_T_NAME(lane_mask)
#define store_half QK_T_NAME(store_half)
#define load_w QK_T_NAME(load_w)
#define ftile QK_T_NAME(ftile)
#define fkern QK_T_NAME(fkern)
#define dot_q8 QK_T_NAME(dot_q8)
#define dot_u4 QK_T_NAME(dot_u4)
#define itile QK_T_NAME(itile)
#define load_ws QK_T_NAME(load_ws)
#define ikern QK_T_NAME(ikern)

static void QK_T_NAME(quantx)(const float *x, int64_t k, int64_t kp, int32_t off, void *out) {
    int8_t *q = out;
    int64_t nblk = kp / QK_ABLK;
    float *xd = (float *)((uint8_t *)out + kp);
    int32_t *c = (int32_t *)(xd + nblk);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t b = 0; b < nblk; b++) {
        int64_t k0 = b * QK_ABLK;
        __m256 v[4];
        __m256 mx = _mm256_setzero_ps();
        UNROLL for (int h = 0; h < 4; h++) {
            int64_t rem = k - (k0 + 8 * h);
            if (rem >= 8) v[h] = _mm256_loadu_ps(x + k0 + 8 * h);
            else if (rem <= 0) v[h] = _mm256_setzero_ps();
            else v[h] = _mm256_maskload_ps(x + k0 + 8 * h, _mm256_cmpgt_epi32(_mm256_set1_epi32((int)rem), iota));
            mx = _mm256_max_ps(mx, _mm256_and_ps(v[h], absmask));
        }
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        float amax = _mm_cvtss_f32(m4);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        __m256 vid = _mm256_set1_ps(id);
        int32_t tmp[32] __attribute__((aligned(32)));
        __m256i sum = _mm256_setzero_si256();
        UNROLL for (int h = 0; h < 4; h++) {
            __m256i qi = _mm256_cvtps_epi32(_mm256_mul_ps(v[h], vid));
            qi = _mm256_max_epi32(_mm256_min_epi32(qi, lim), nlim);
            sum = _mm256_add_epi32(sum, qi);
            _mm256_store_si256((__m256i *)(tmp + 8 * h), qi);
        }
        UNROLL for (int i = 0; i < 32; i++) q[k0 + i] = (int8_t)tmp[i];
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        xd[b] = amax / 127.0f;
        c[b] = -off * _mm_cvtsi128_si32(s4);
    }
}

AI __m256i lane_mask(int64_t rem) {   /* lanes < rem on */
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(rem > 8 ? 8 : rem)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

AI void store_half(const qk_mm_args *a, int64_t t, int64_t col, __m256 v) {
    int64_t rem = a->n - col;
    if (rem <= 0) return;
    if (rem >= 8) {
        if (a->bias) v = _mm256_add_ps(v, _mm256_loadu_ps(a->bias + col));
        _mm256_storeu_ps(a->y + t * a->n + col, v);
    } else {
        __m256i mk = lane_mask(rem);
        if (a->bias) v = _mm256_add_ps(v, _mm256_maskload_ps(a->bias + col, mk));
        _mm256_maskstore_ps(a->y + t * a->n + col, mk, v);
    }
}

/* ---- float schemes ------------------------------------------------------------------------------ */
AI __m256 load_w(qk_scheme s, const uint8_t *p, int64_t kk, int h) {
    if (s == QK_F32) return _mm256_loadu_ps((const float *)p + kk * QK_NR + 8 * h);
    __m128i v = _mm_loadu_si128((const __m128i *)((const uint16_t *)p + kk * QK_NR + 8 * h));
    if (s == QK_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
    return _mm256_cvtph_ps(v);
}

/* MR rows x NB blocks (2 halves each); MR * NB * 2 accumulators. */
AI void ftile(const qk_mm_args *a, qk_scheme s, const int MR, const int NB, int64_t t0, int64_t rb) {
    __m256 acc[6][4];
    UNROLL for (int i = 0; i < MR; i++) for (int j = 0; j < 2 * NB; j++) acc[i][j] = _mm256_setzero_ps();
    const uint8_t *w0 = a->w + (size_t)rb * a->rb_bytes;
    const size_t rbb = a->rb_bytes;
    const int64_t k = a->k;
    const float *x = a->x + t0 * k;
    for (int64_t kk = 0; kk < k; kk++) {
        __m256 v[4];
        UNROLL for (int j = 0; j < 2 * NB; j++) v[j] = load_w(s, w0 + (j >> 1) * rbb, kk, j & 1);
        UNROLL for (int i = 0; i < MR; i++) {
            __m256 xb = _mm256_set1_ps(x[i * k + kk]);
            UNROLL for (int j = 0; j < 2 * NB; j++) acc[i][j] = _mm256_fmadd_ps(xb, v[j], acc[i][j]);
        }
    }
    UNROLL for (int i = 0; i < MR; i++)
        UNROLL for (int j = 0; j < 2 * NB; j++) store_half(a, t0 + i, (rb + (j >> 1)) * QK_NR + 8 * (j & 1), acc[i][j]);
}

AI void fkern(const qk_mm_args *a, qk_scheme s, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) {
    if (m1 - m0 < 4) {
        for (int64_t rb = rb0; rb < rb1; rb += 2)
            for (int64_t t = m0; t < m1; t++) {
                if (rb + 1 < rb1) ftile(a, s, 1, 2, t, rb);
                else ftile(a, s, 1, 1, t, rb);
            }
        return;
    }
    for (int64_t rb = rb0; rb < rb1; rb++) {
        int64_t t = m0;
        for (; t + 6 <= m1; t += 6) ftile(a, s, 6, 1, t, rb);
        for (; t + 2 <= m1; t += 2) ftile(a, s, 2, 1, t, rb);
        for (; t < m1; t++) ftile(a, s, 1, 1, t, rb);
    }
}
static void QK_T_NAME(kern_f32)(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { fkern(a, QK_F32, m0, m1, rb0, rb1); }
static void QK_T_NAME(kern_bf16)(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { fkern(a, QK_BF16, m0, m1, rb0, rb1); }
static void QK_T_NAME(kern_f16)(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { fkern(a, QK_F16, m0, m1, rb0, rb1); }

/* ---- integer schemes ---------------------------------------------------------------------------- */
/* acc += dot4(w, x) per i32 lane. Q8 (and Q8S, and Q4C after the codebook lookup): w is signed (non-VNNI: sign trick, |x| * (w * sign x), pair sums
   <= 2 * 127 * 127 < 32767; VNNI: w ^ 0x80 unsigned, offset removed by c). Q4, Q5S, Q6S: w is 0..15,
   0..31, 0..63 unsigned (maddubs pair sums <= 2 * 63 * 127 < 32767). */
AI __m256i dot_q8(__m256i acc, __m256i w, __m256i xb) {
#if QK_T_VNNI == 2
    return _mm256_dpbusd_epi32(acc, _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)), xb);
#elif QK_T_VNNI
    return _mm256_dpbusd_avx_epi32(acc, _mm256_xor_si256(w, _mm256_set1_epi8((char)0x80)), xb);
#else
    __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(xb), _mm256_sign_epi8(w, xb));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
#endif
}
AI __m256i dot_u4(__m256i acc, __m256i w, __m256i xb) {
#if QK_T_VNNI == 2
    return _mm256_dpbusd_epi32(acc, w, xb);
#elif QK_T_VNNI
    return _mm256_dpbusd_avx_epi32(acc, w, xb);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, xb), _mm256_set1_epi16(1)));
#endif
}

/* Weight scales of group g, rows 8h .. 8h+7 of the block: f32 (Q8, Q4) or int8 code x f32
   super-scale (compact schemes; one rounded product, as the reference). */
AI __m256 load_ws(const qk_mm_args *a, qk_scheme s, const uint8_t *blk, int64_t g, int h) {
    if (!qk_scheme_is_compact(s)) return _mm256_loadu_ps((const float *)blk + g * QK_NR + 8 * h);
    __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + a->codes_off + g * QK_NR + 8 * h))));
    return _mm256_mul_ps(c, _mm256_loadu_ps((const float *)blk + (g / QK_SUPER_GROUPS) * QK_NR + 8 * h));
}

AI void itile(const qk_mm_args *a, qk_scheme s, const int MR, int64_t t0, int64_t rb) {
    const int64_t kp = a->kp, nblk = kp / QK_ABLK;
    const uint8_t *blk = a->w + (size_t)rb * a->rb_bytes;
    const uint8_t *d = blk + a->scales_bytes;
    const uint8_t *xr[2];
    const float *xd[2];
    const int32_t *xc[2];
    UNROLL for (int i = 0; i < MR; i++) {
        xr[i] = a->xq + (size_t)(t0 + i) * a->xq_stride;
        xd[i] = (const float *)(xr[i] + kp);
        xc[i] = (const int32_t *)(xd[i] + nblk);
    }
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    /* Q5S / Q6S: the 16-byte high-bit vector of an operand in both 128-bit lanes, shifted right per lane
       (lane l of half h is chunk c = 2h + l: 2c for Q6S; c, or 4 + c for the high nibbles, for Q5S), up
       by 4 and masked: the bits u >> 4 above each nibble (qk_matmul_internal.h) */
    const int hb = qk_scheme_hbits(s), hstep = hb == 2 ? 2 : 1, hhi = hb == 2 ? 0 : 4;
    const __m256i cnt_lo0 = _mm256_setr_epi32(0, 0, 0, 0, hstep, hstep, hstep, hstep);
    const __m256i cnt_lo1 = _mm256_add_epi32(cnt_lo0, _mm256_set1_epi32(2 * hstep));
    const __m256i cnt_hi0 = _mm256_add_epi32(cnt_lo0, _mm256_set1_epi32(hhi));
    const __m256i cnt_hi1 = _mm256_add_epi32(cnt_lo1, _mm256_set1_epi32(hhi));
    const __m256i hmask = _mm256_set1_epi8(hb == 2 ? 0x30 : 0x10);
    /* Q4C: nibble -> signed codebook value (then the Q8 dot) */
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qk_q4c_codebook));
    __m256 acc[2][2];
    UNROLL for (int i = 0; i < MR; i++) for (int h = 0; h < 2; h++) acc[i][h] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nblk; b++) {
        __m256i ia[2][2];
        UNROLL for (int i = 0; i < MR; i++) for (int h = 0; h < 2; h++) ia[i][h] = _mm256_set1_epi32(xc[i][b]);
        if (!qk_scheme_is_nibble(s)) {
            UNROLL for (int st = 0; st < 8; st++) {
                __m256i w0 = _mm256_loadu_si256((const __m256i *)(d + (b * 8 + st) * 64));
                __m256i w1 = _mm256_loadu_si256((const __m256i *)(d + (b * 8 + st) * 64 + 32));
                UNROLL for (int i = 0; i < MR; i++) {
                    __m256i xb = _mm256_set1_epi32(*(const int32_t *)(xr[i] + b * 32 + st * 4));
                    ia[i][0] = dot_q8(ia[i][0], w0, xb);
                    ia[i][1] = dot_q8(ia[i][1], w1, xb);
                }
            }
        } else {
            UNROLL for (int p = 0; p < 4; p++) {
                __m256i v0 = _mm256_loadu_si256((const __m256i *)(d + (b * 4 + p) * 64));
                __m256i v1 = _mm256_loadu_si256((const __m256i *)(d + (b * 4 + p) * 64 + 32));
                __m256i lo0 = _mm256_and_si256(v0, low4), hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), low4);
                __m256i lo1 = _mm256_and_si256(v1, low4), hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), low4);
                if (hb) {
                    const uint8_t *hp = d + kp * 8 + (b * 4 + p) * 16 * hb;
                    __m256i hl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)hp));
                    __m256i hh = hb == 2 ? _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(hp + 16))) : hl;
                    lo0 = _mm256_or_si256(lo0, _mm256_and_si256(_mm256_slli_epi32(_mm256_srlv_epi32(hl, cnt_lo0), 4), hmask));
                    lo1 = _mm256_or_si256(lo1, _mm256_and_si256(_mm256_slli_epi32(_mm256_srlv_epi32(hl, cnt_lo1), 4), hmask));
                    hi0 = _mm256_or_si256(hi0, _mm256_and_si256(_mm256_slli_epi32(_mm256_srlv_epi32(hh, cnt_hi0), 4), hmask));
                    hi1 = _mm256_or_si256(hi1, _mm256_and_si256(_mm256_slli_epi32(_mm256_srlv_epi32(hh, cnt_hi1), 4), hmask));
                }
                if (s == QK_Q4C) {
                    lo0 = _mm256_shuffle_epi8(lut, lo0); hi0 = _mm256_shuffle_epi8(lut, hi0);
                    lo1 = _mm256_shuffle_epi8(lut, lo1); hi1 = _mm256_shuffle_epi8(lut, hi1);
                    UNROLL for (int i = 0; i < MR; i++) {
                        __m256i xl = _mm256_set1_epi32(*(const int32_t *)(xr[i] + b * 32 + p * 8));
                        __m256i xh = _mm256_set1_epi32(*(const int32_t *)(xr[i] + b * 32 + p * 8 + 4));
                        ia[i][0] = dot_q8(ia[i][0], lo0, xl);
                        ia[i][1] = dot_q8(ia[i][1], lo1, xl);
                        ia[i][0] = dot_q8(ia[i][0], hi0, xh);
                        ia[i][1] = dot_q8(ia[i][1], hi1, xh);
                    }
                    continue;
                }
                UNROLL for (int i = 0; i < MR; i++) {
                    __m256i xl = _mm256_set1_epi32(*(const int32_t *)(xr[i] + b * 32 + p * 8));
                    __m256i xh = _mm256_set1_epi32(*(const int32_t *)(xr[i] + b * 32 + p * 8 + 4));
                    ia[i][0] = dot_u4(ia[i][0], lo0, xl);
                    ia[i][1] = dot_u4(ia[i][1], lo1, xl);
                    ia[i][0] = dot_u4(ia[i][0], hi0, xh);
                    ia[i][1] = dot_u4(ia[i][1], hi1, xh);
                }
            }
        }
        int64_t g = b >> a->gshift;
        __m256 ws0 = load_ws(a, s, blk, g, 0), ws1 = load_ws(a, s, blk, g, 1);
        UNROLL for (int i = 0; i < MR; i++) {
            __m256 xs = _mm256_set1_ps(xd[i][b]);
            acc[i][0] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(ia[i][0]), xs), ws0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(ia[i][1]), xs), ws1, acc[i][1]);
        }
    }
    UNROLL for (int i = 0; i < MR; i++)
        UNROLL for (int h = 0; h < 2; h++) store_half(a, t0 + i, rb * QK_NR + 8 * h, acc[i][h]);
}

AI void ikern(const qk_mm_args *a, qk_scheme s, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) {
    for (int64_t rb = rb0; rb < rb1; rb++) {
        int64_t t = m0;
        for (; t + 2 <= m1; t += 2) itile(a, s, 2, t, rb);
        for (; t < m1; t++) itile(a, s, 1, t, rb);
    }
}
static void QK_T_NAME(kern_q8)(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q8, m0, m1, rb0, rb1); }
static void QK_T_NAME(kern_q4)(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q4, m0, m1, rb0, rb1); }
static void QK_T_NAME(kern_q4c)(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q4C, m0, m1, rb0, rb1); }
static void QK_T_NAME(kern_q8s)(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q8S, m0, m1, rb0, rb1); }
static void QK_T_NAME(kern_q5s)(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q5S, m0, m1, rb0, rb1); }
static void QK_T_NAME(kern_q6s)(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) { ikern(a, QK_Q6S, m0, m1, rb0, rb1); }

#undef AI
#undef UNROLL
#undef lane_mask
#undef store_half
#undef load_w
#undef ftile
#undef fkern
#undef dot_q8
#undef dot_u4
#undef itile
#undef load_ws
#undef ikern
