/* matmul_neon_body.h: the aarch64 matmul kernels, compiled three times by matmul_neon.c:
     QK_T_DOT 0: Armv8.0 NEON (int8 dot as SMULL/SMLAL into int16 pairs, then SADALP into int32)
     QK_T_DOT 1: + SDOT (Armv8.2 dotprod): one instruction = 4 rows x 4 k per 128-bit vector
     QK_T_DOT 2: + SMMLA (Armv8.6 i8mm): 2 tokens x 2 rows x 8 k per instruction; GEMM tiles only,
                 GEMV (and an odd last token) use the SDOT code.
   Define QK_T_DOT, QK_T_NAME(x) and the target pragma before including.
   A 16-row block is four "quads" of 4 rows (one float32x4 of outputs each). The packed bytes of one Q8
   k4 step (16 rows x 4 k) are four SDOT operands as they stand; SMMLA wants 2 rows x 8 consecutive k,
   which is a 32-bit zip of two k4 steps (Q8) or of a Q4 step's low and high nibbles.
   Q4 nibbles stay unsigned (q + 8, a non-negative int8; Q5S / Q6S q + 16 / q + 32 with their high bits
   ORed in); the offset is removed by starting each block's int32 sum at c = -8 * sum(q_x) (qk_quantize_x). Q8 uses signed x signed products (offset 0).
   Arithmetic and order follow qk_matmul_internal.h exactly (int32 block sums are exact, then
   fma((float)isum * xd, d, acc) per block), so results equal the reference bit for bit. */
#include <arm_neon.h>

#define AI static inline __attribute__((always_inline))
#if defined(__clang__)
#define UNROLL _Pragma("clang loop unroll(full)")
#else
#define UNROLL _Pragma("GCC unroll 16")
#endif
#define store_quad QK_T_NAME(store_quad)
#define load_w QK_T_NAME(load_w)
#define ftile QK_T_NAME(ftile)
#define fkern QK_T_NAME(fkern)
#define bcast4 QK_T_NAME(bcast4)
#define dot_lane QK_T_NAME(dot_lane)
#define isum_to_acc QK_T_NAME(isum_to_acc)
#define itile QK_T_NAME(itile)
#define itile_mm QK_T_NAME(itile_mm)
#define ikern QK_T_NAME(ikern)
#define load_ws QK_T_NAME(load_ws)
#define with_hbits QK_T_NAME(with_hbits)

/* y[t, col .. col+3] = v (+ bias), only the columns < n. */
AI void store_quad(const qk_mm_args *a, int64_t t, int64_t col, float32x4_t v) {
    int64_t rem = a->n - col;
    if (rem <= 0) return;
    float *y = a->y + t * a->n + col;
    if (rem >= 4) {
        if (a->bias) v = vaddq_f32(v, vld1q_f32(a->bias + col));
        vst1q_f32(y, v);
        return;
    }
    float tmp[4];
    vst1q_f32(tmp, v);
    for (int64_t l = 0; l < rem; l++) y[l] = a->bias ? tmp[l] + a->bias[col + l] : tmp[l];
}

/* ---- float schemes ------------------------------------------------------------------------------ */
/* The 16 weights of step kk of a block, widened to f32 (bf16: shift; f16: FCVTL, exact). */
AI void load_w(qk_scheme s, const uint8_t *p, int64_t kk, float32x4_t v[4]) {
    if (s == QK_F32) {
        const float *f = (const float *)p + kk * QK_NR;
        UNROLL for (int h = 0; h < 4; h++) v[h] = vld1q_f32(f + 4 * h);
        return;
    }
    const uint16_t *h = (const uint16_t *)p + kk * QK_NR;
    uint16x8_t lo = vld1q_u16(h), hi = vld1q_u16(h + 8);
    if (s == QK_BF16) {
        v[0] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(lo), 16));
        v[1] = vreinterpretq_f32_u32(vshll_high_n_u16(lo, 16));
        v[2] = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(hi), 16));
        v[3] = vreinterpretq_f32_u32(vshll_high_n_u16(hi, 16));
    } else {
        float16x8_t flo = vreinterpretq_f16_u16(lo), fhi = vreinterpretq_f16_u16(hi);
        v[0] = vcvt_f32_f16(vget_low_f16(flo));
        v[1] = vcvt_high_f32_f16(flo);
        v[2] = vcvt_f32_f16(vget_low_f16(fhi));
        v[3] = vcvt_high_f32_f16(fhi);
    }
}

/* MR tokens x NB blocks (4 quads each): MR * NB * 4 accumulators, one FMA chain per output in k order. */
AI void ftile(const qk_mm_args *a, qk_scheme s, const int MR, const int NB, int64_t t0, int64_t rb) {
    float32x4_t acc[6][16];
    UNROLL for (int i = 0; i < MR; i++) UNROLL for (int j = 0; j < 4 * NB; j++) acc[i][j] = vdupq_n_f32(0.0f);
    const uint8_t *w0 = a->w + (size_t)rb * a->rb_bytes;
    const size_t rbb = a->rb_bytes;
    const int64_t k = a->k;
    const float *x = a->x + t0 * k;
    for (int64_t kk = 0; kk < k; kk++) {
        /* one block's 4 weight vectors at a time, each x value loaded where it is used: 16 weight
           vectors + 16 accumulators (1 x 4 tile) or 6 x values + 24 accumulators (6 x 1) would not fit
           in 32 registers, and LLVM then spills and shuffles registers every iteration */
        UNROLL for (int j = 0; j < NB; j++) {
            float32x4_t v[4];
            load_w(s, w0 + j * rbb, kk, v);
            UNROLL for (int i = 0; i < MR; i++) {
                float32x4_t xs = vld1q_dup_f32(x + i * k + kk);
                UNROLL for (int q = 0; q < 4; q++) acc[i][4 * j + q] = vfmaq_f32(acc[i][4 * j + q], v[q], xs);
            }
        }
    }
    UNROLL for (int i = 0; i < MR; i++)
        UNROLL for (int j = 0; j < 4 * NB; j++) store_quad(a, t0 + i, (rb + (j >> 2)) * QK_NR + 4 * (j & 3), acc[i][j]);
}

AI void fkern(const qk_mm_args *a, qk_scheme s, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) {
    if (m1 - m0 < 4) {   /* GEMV-like: one token at a time over up to 4 blocks = 16 independent chains */
        for (int64_t rb = rb0; rb < rb1; rb += 4) {
            int64_t nbl = rb1 - rb < 4 ? rb1 - rb : 4;
            for (int64_t t = m0; t < m1; t++) {
                if (nbl == 4) ftile(a, s, 1, 4, t, rb);
                else if (nbl == 3) ftile(a, s, 1, 3, t, rb);
                else if (nbl == 2) ftile(a, s, 1, 2, t, rb);
                else ftile(a, s, 1, 1, t, rb);
            }
        }
        return;
    }
    for (int64_t rb = rb0; rb < rb1; rb++) {   /* 6 tokens x 1 block = 24 accumulators of 32 registers */
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
/* 4 activation bytes repeated over the 16 bytes (the x operand of a 4 rows x 4 k step). */
AI int8x16_t bcast4(const uint8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

#if QK_T_DOT >= 1
/* acc += w . (4-byte group `lane` of x16, broadcast): SDOT by element, so 16 activation bytes (4 k4 steps)
   come in with one load instead of four broadcast loads. `lane` is a constant after unrolling. */
AI int32x4_t dot_lane(int32x4_t acc, int8x16_t w, int8x16_t x16, const int lane) {
    switch (lane) {
    case 0: return vdotq_laneq_s32(acc, w, x16, 0);
    case 1: return vdotq_laneq_s32(acc, w, x16, 1);
    case 2: return vdotq_laneq_s32(acc, w, x16, 2);
    default: return vdotq_laneq_s32(acc, w, x16, 3);
    }
}
#endif

/* acc += ((float)isum * xd) * d: the per-block float step of the contract, 4 rows. `biased` is
   isum + QK_I2F_BIAS: the bits of 0x4B400000 + i are the float 1.5 * 2^23 + i exactly for |i| < 2^22
   (|isum| <= 32 * 127 * 127 < 2^19), so one FSUB gives (float)isum exactly, where SCVTF costs two uops on
   one pipe (Neoverse N1/V1 guides); the bias rides on the block's start value c. */
#ifndef QK_I2F_BIAS
#define QK_I2F_BIAS 0x4B400000
#endif
AI float32x4_t isum_to_acc(float32x4_t acc, int32x4_t biased, float xd, float32x4_t d) {
    float32x4_t f = vsubq_f32(vreinterpretq_f32_s32(biased), vdupq_n_f32(12582912.0f));
    return vfmaq_f32(acc, vmulq_n_f32(f, xd), d);
}

/* Weight scales of group g, rows 4h .. 4h+3 of the block: f32 (Q8, Q4) or int8 code x f32 super-scale
   (Q8S, Q4C; one rounded product, as the reference). */
AI float32x4_t load_ws(const qk_mm_args *a, qk_scheme s, const uint8_t *blk, int64_t g, int h) {
    if (!qk_scheme_is_compact(s)) return vld1q_f32((const float *)blk + g * QK_NR + 4 * h);
    int32_t c4;
    memcpy(&c4, blk + a->codes_off + g * QK_NR + 4 * h, 4);
    int16x8_t c16 = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(c4)));
    float32x4_t c = vcvtq_f32_s32(vmovl_s16(vget_low_s16(c16)));
    return vmulq_f32(c, vld1q_f32((const float *)blk + (g / QK_SUPER_GROUPS) * QK_NR + 4 * h));
}

/* Q5S / Q6S: the nibbles of chunk c (0..3) of a step's low (o = 0) or high (o = 1) operand with the
   high bits u >> 4 ORed in above them, from the step's high-bit plane hp (qk_matmul_internal.h); other
   schemes: the nibbles as they are. `o` and `c` are constants after unrolling. */
AI uint8x16_t with_hbits(qk_scheme s, uint8x16_t nib, const uint8_t *hp, int o, int c) {
    const int hb = qk_scheme_hbits(s);
    if (!hb) return nib;
    uint8x16_t h = vld1q_u8(hp + (hb == 2 ? 16 * o : 0));
    h = vshlq_u8(h, vdupq_n_s8((int8_t)-(hb == 2 ? 2 * c : 4 * o + c)));   /* right shift */
    return vorrq_u8(nib, vshlq_n_u8(vandq_u8(h, vdupq_n_u8(hb == 2 ? 3 : 1)), 4));
}

/* MR tokens x NB blocks with SDOT (QK_T_DOT >= 1) or SMULL/SADALP (QK_T_DOT == 0). */
AI void itile(const qk_mm_args *a, qk_scheme s, const int MR, const int NB, int64_t t0, int64_t rb) {
    const int64_t kp = a->kp, nblk = kp / QK_ABLK;
    const size_t rbb = a->rb_bytes;
    const uint8_t *blk0 = a->w + (size_t)rb * rbb;
    const uint8_t *d0 = blk0 + a->scales_bytes;
    const uint8_t *xr[3];
    const float *xd[3];
    const int32_t *xc[3];
    UNROLL for (int i = 0; i < MR; i++) {
        xr[i] = a->xq + (size_t)(t0 + i) * a->xq_stride;
        xd[i] = (const float *)(xr[i] + kp);
        xc[i] = (const int32_t *)(xd[i] + nblk);
    }
    const uint8x16_t low4 = vdupq_n_u8(0x0f);
    const int8x16_t cb = vld1q_s8(qk_q4c_codebook);   /* Q4C: nibble -> signed value (TBL) */
    float32x4_t acc[3][8];
    UNROLL for (int i = 0; i < MR; i++) UNROLL for (int q = 0; q < 4 * NB; q++) acc[i][q] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nblk; b++) {
        int32x4_t isum[3][8];
#if QK_T_DOT >= 1
        UNROLL for (int i = 0; i < MR; i++) UNROLL for (int q = 0; q < 4 * NB; q++) isum[i][q] = vdupq_n_s32(xc[i][b] + QK_I2F_BIAS);
        if (!qk_scheme_is_nibble(s)) {
            UNROLL for (int st = 0; st < 8; st++) {
                int8x16_t w[8], x16[3];
                UNROLL for (int q = 0; q < 4 * NB; q++)
                    w[q] = vld1q_s8((const int8_t *)(d0 + (q >> 2) * rbb + (b * 8 + st) * 64 + 16 * (q & 3)));
                UNROLL for (int i = 0; i < MR; i++) {
                    x16[i] = vld1q_s8((const int8_t *)xr[i] + b * 32 + (st >> 2) * 16);
                    UNROLL for (int q = 0; q < 4 * NB; q++) isum[i][q] = dot_lane(isum[i][q], w[q], x16[i], st & 3);
                }
            }
        } else {
            UNROLL for (int p = 0; p < 4; p++) {
                int8x16_t lo[8], hi[8];
                UNROLL for (int q = 0; q < 4 * NB; q++) {
                    uint8x16_t v = vld1q_u8(d0 + (q >> 2) * rbb + (b * 4 + p) * 64 + 16 * (q & 3));
                    const uint8_t *hp = d0 + (q >> 2) * rbb + kp * 8 + (b * 4 + p) * 16 * qk_scheme_hbits(s);
                    lo[q] = vreinterpretq_s8_u8(with_hbits(s, vandq_u8(v, low4), hp, 0, q & 3));
                    hi[q] = vreinterpretq_s8_u8(with_hbits(s, vshrq_n_u8(v, 4), hp, 1, q & 3));
                    if (s == QK_Q4C) { lo[q] = vqtbl1q_s8(cb, vreinterpretq_u8_s8(lo[q])); hi[q] = vqtbl1q_s8(cb, vreinterpretq_u8_s8(hi[q])); }
                }
                UNROLL for (int i = 0; i < MR; i++) {
                    int8x16_t x16 = vld1q_s8((const int8_t *)xr[i] + b * 32 + (p >> 1) * 16);
                    UNROLL for (int q = 0; q < 4 * NB; q++) {
                        isum[i][q] = dot_lane(isum[i][q], lo[q], x16, 2 * (p & 1));
                        isum[i][q] = dot_lane(isum[i][q], hi[q], x16, 2 * (p & 1) + 1);
                    }
                }
            }
        }
#else
        /* Per quad: int16 lanes hold (row, j) partial sums (rows 0-1 in `lo`, rows 2-3 in `hi`), widened
           pairwise into int32 [r(j0+j1), r(j2+j3), r'(..), r'(..)]; a final pairwise add gives the 4 rows.
           Q8: |q_w q_x| <= 127^2, two products per int16 lane (<= 32258); Q4: <= 15 * 127, all eight
           (Q5S: 31 * 127 * 8 = 31496 still fits; Q6S, 63 * 127, takes the two-product path). */
        int32x4_t plo[3][8], phi[3][8];
        UNROLL for (int i = 0; i < MR; i++) UNROLL for (int q = 0; q < 4 * NB; q++) plo[i][q] = phi[i][q] = vdupq_n_s32(0);
        if (s != QK_Q4 && s != QK_Q5S) {   /* Q8, Q8S, and Q4C / Q6S decoded to values (Q4's int16 sums would overflow) */
            UNROLL for (int st = 0; st < 8; st += 2) {
                /* 8-byte weight loads: against a broadcast x, LLVM turns SMULL2 into EXT + SMULL */
                int8x8_t w0l[8], w0h[8], w1l[8], w1h[8];
                UNROLL for (int q = 0; q < 4 * NB; q++) {
                    if (s == QK_Q4C || s == QK_Q6S) {   /* the nibbles of 8 k = Q8 steps st (low) and st + 1 (high) */
                        uint8x16_t v = vld1q_u8(d0 + (q >> 2) * rbb + (b * 4 + st / 2) * 64 + 16 * (q & 3));
                        int8x16_t l, h;
                        if (s == QK_Q4C) { l = vqtbl1q_s8(cb, vandq_u8(v, low4)); h = vqtbl1q_s8(cb, vshrq_n_u8(v, 4)); }
                        else {
                            const uint8_t *hp = d0 + (q >> 2) * rbb + kp * 8 + (b * 4 + st / 2) * 32;
                            l = vreinterpretq_s8_u8(with_hbits(s, vandq_u8(v, low4), hp, 0, q & 3));
                            h = vreinterpretq_s8_u8(with_hbits(s, vshrq_n_u8(v, 4), hp, 1, q & 3));
                        }
                        w0l[q] = vget_low_s8(l); w0h[q] = vget_high_s8(l);
                        w1l[q] = vget_low_s8(h); w1h[q] = vget_high_s8(h);
                        continue;
                    }
                    const int8_t *p = (const int8_t *)(d0 + (q >> 2) * rbb + (b * 8 + st) * 64 + 16 * (q & 3));
                    w0l[q] = vld1_s8(p); w0h[q] = vld1_s8(p + 8);
                    w1l[q] = vld1_s8(p + 64); w1h[q] = vld1_s8(p + 72);
                }
                UNROLL for (int i = 0; i < MR; i++) {
                    int8x8_t x0 = vget_low_s8(bcast4(xr[i] + b * 32 + st * 4)), x1 = vget_low_s8(bcast4(xr[i] + b * 32 + st * 4 + 4));
                    UNROLL for (int q = 0; q < 4 * NB; q++) {
                        int16x8_t l = vmlal_s8(vmull_s8(w0l[q], x0), w1l[q], x1);
                        int16x8_t h = vmlal_s8(vmull_s8(w0h[q], x0), w1h[q], x1);
                        plo[i][q] = vpadalq_s16(plo[i][q], l);
                        phi[i][q] = vpadalq_s16(phi[i][q], h);
                    }
                }
            }
        } else {
            int16x8_t l16[3][8], h16[3][8];
            UNROLL for (int i = 0; i < MR; i++) UNROLL for (int q = 0; q < 4 * NB; q++) l16[i][q] = h16[i][q] = vdupq_n_s16(0);
            UNROLL for (int p = 0; p < 4; p++) {
                int8x16_t lo[8], hi[8];
                UNROLL for (int q = 0; q < 4 * NB; q++) {
                    uint8x16_t v = vld1q_u8(d0 + (q >> 2) * rbb + (b * 4 + p) * 64 + 16 * (q & 3));
                    const uint8_t *hp = d0 + (q >> 2) * rbb + kp * 8 + (b * 4 + p) * 16 * qk_scheme_hbits(s);
                    lo[q] = vreinterpretq_s8_u8(with_hbits(s, vandq_u8(v, low4), hp, 0, q & 3));
                    hi[q] = vreinterpretq_s8_u8(with_hbits(s, vshrq_n_u8(v, 4), hp, 1, q & 3));
                }
                UNROLL for (int i = 0; i < MR; i++) {
                    int8x16_t xl = bcast4(xr[i] + b * 32 + p * 8), xh = bcast4(xr[i] + b * 32 + p * 8 + 4);
                    /* an empty asm hides that xl/xh are broadcasts: otherwise LLVM rewrites each SMLAL2
                       into EXT + SMLAL (one more uop per product pair) */
                    __asm__("" : "+w"(xl), "+w"(xh));
                    UNROLL for (int q = 0; q < 4 * NB; q++) {
                        l16[i][q] = vmlal_s8(l16[i][q], vget_low_s8(lo[q]), vget_low_s8(xl));
                        l16[i][q] = vmlal_s8(l16[i][q], vget_low_s8(hi[q]), vget_low_s8(xh));
                        h16[i][q] = vmlal_high_s8(h16[i][q], lo[q], xl);
                        h16[i][q] = vmlal_high_s8(h16[i][q], hi[q], xh);
                    }
                }
            }
            UNROLL for (int i = 0; i < MR; i++) UNROLL for (int q = 0; q < 4 * NB; q++) {
                plo[i][q] = vpaddlq_s16(l16[i][q]);
                phi[i][q] = vpaddlq_s16(h16[i][q]);
            }
        }
        UNROLL for (int i = 0; i < MR; i++) UNROLL for (int q = 0; q < 4 * NB; q++)
            isum[i][q] = vaddq_s32(vpaddq_s32(plo[i][q], phi[i][q]), vdupq_n_s32(xc[i][b] + QK_I2F_BIAS));
#endif
        int64_t g = b >> a->gshift;
        float32x4_t ws[8];
        UNROLL for (int q = 0; q < 4 * NB; q++) ws[q] = load_ws(a, s, blk0 + (q >> 2) * rbb, g, q & 3);
        UNROLL for (int i = 0; i < MR; i++) {
            float xs = xd[i][b];
            UNROLL for (int q = 0; q < 4 * NB; q++) acc[i][q] = isum_to_acc(acc[i][q], isum[i][q], xs, ws[q]);
        }
    }
    UNROLL for (int i = 0; i < MR; i++)
        UNROLL for (int q = 0; q < 4 * NB; q++) store_quad(a, t0 + i, (rb + (q >> 2)) * QK_NR + 4 * (q & 3), acc[i][q]);
}

#if QK_T_DOT == 2
/* SMMLA tile: NP token pairs (2 NP tokens) x half a block (quads 2h, 2h+1 = rows 8h .. 8h+7).
   vmmlaq_s32(r, x, w): r[2x2] += x[2 tokens x 8 k] . w[2 rows x 8 k]^T = [t0.w0, t0.w1, t1.w0, t1.w1]. */
AI void itile_mm(const qk_mm_args *a, qk_scheme s, const int NP, int64_t t0, int64_t rb, int h) {
    const int64_t kp = a->kp, nblk = kp / QK_ABLK;
    const uint8_t *blk = a->w + (size_t)rb * a->rb_bytes;
    const uint8_t *d = blk + a->scales_bytes;
    const uint8_t *xr[4];
    const float *xd[4];
    const int32_t *xc[4];
    UNROLL for (int i = 0; i < 2 * NP; i++) {
        xr[i] = a->xq + (size_t)(t0 + i) * a->xq_stride;
        xd[i] = (const float *)(xr[i] + kp);
        xc[i] = (const int32_t *)(xd[i] + nblk);
    }
    const uint8x16_t low4 = vdupq_n_u8(0x0f);
    const int8x16_t cb = vld1q_s8(qk_q4c_codebook);
    float32x4_t acc[4][2];
    UNROLL for (int i = 0; i < 2 * NP; i++) UNROLL for (int q = 0; q < 2; q++) acc[i][q] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nblk; b++) {
        int32x4_t mm[2][2][2];   /* [pair][quad][rows 01 | rows 23] */
        UNROLL for (int pr = 0; pr < NP; pr++) UNROLL for (int q = 0; q < 2; q++) mm[pr][q][0] = mm[pr][q][1] = vdupq_n_s32(0);
        int64x2_t x0[2], x1[2];
        UNROLL for (int e = 0; e < 4; e++) {   /* 8 k per step: Q8 steps 2e, 2e+1; Q4 step e */
            int8x16_t op[2][2];
            UNROLL for (int q = 0; q < 2; q++) {
                int32x4_t u, v;
                if (!qk_scheme_is_nibble(s)) {
                    const int8_t *p = (const int8_t *)(d + (b * 8 + 2 * e) * 64 + 16 * (2 * h + q));
                    u = vreinterpretq_s32_s8(vld1q_s8(p));
                    v = vreinterpretq_s32_s8(vld1q_s8(p + 64));
                } else {
                    uint8x16_t raw = vld1q_u8(d + (b * 4 + e) * 64 + 16 * (2 * h + q));
                    const uint8_t *hp = d + kp * 8 + (b * 4 + e) * 16 * qk_scheme_hbits(s);
                    u = vreinterpretq_s32_u8(with_hbits(s, vandq_u8(raw, low4), hp, 0, 2 * h + q));
                    v = vreinterpretq_s32_u8(with_hbits(s, vshrq_n_u8(raw, 4), hp, 1, 2 * h + q));
                    if (s == QK_Q4C) {
                        u = vreinterpretq_s32_s8(vqtbl1q_s8(cb, vreinterpretq_u8_s32(u)));
                        v = vreinterpretq_s32_s8(vqtbl1q_s8(cb, vreinterpretq_u8_s32(v)));
                    }
                }
                op[q][0] = vreinterpretq_s8_s32(vzip1q_s32(u, v));   /* rows 0, 1 of the quad, 8 k each */
                op[q][1] = vreinterpretq_s8_s32(vzip2q_s32(u, v));   /* rows 2, 3 */
            }
            UNROLL for (int pr = 0; pr < NP; pr++) {
                if (!(e & 1)) {   /* 16 k of both tokens; step e takes its 8-byte half of each */
                    x0[pr] = vreinterpretq_s64_s8(vld1q_s8((const int8_t *)xr[2 * pr] + b * 32 + 8 * e));
                    x1[pr] = vreinterpretq_s64_s8(vld1q_s8((const int8_t *)xr[2 * pr + 1] + b * 32 + 8 * e));
                }
                int8x16_t xa = vreinterpretq_s8_s64((e & 1) ? vzip2q_s64(x0[pr], x1[pr]) : vzip1q_s64(x0[pr], x1[pr]));
                UNROLL for (int q = 0; q < 2; q++) {
                    mm[pr][q][0] = vmmlaq_s32(mm[pr][q][0], xa, op[q][0]);
                    mm[pr][q][1] = vmmlaq_s32(mm[pr][q][1], xa, op[q][1]);
                }
            }
        }
        int64_t g = b >> a->gshift;
        float32x4_t ws[2];
        UNROLL for (int q = 0; q < 2; q++) ws[q] = load_ws(a, s, blk, g, 2 * h + q);
        UNROLL for (int pr = 0; pr < NP; pr++) UNROLL for (int q = 0; q < 2; q++) {
            int64x2_t r01 = vreinterpretq_s64_s32(mm[pr][q][0]), r23 = vreinterpretq_s64_s32(mm[pr][q][1]);
            int32x4_t s0 = vaddq_s32(vreinterpretq_s32_s64(vzip1q_s64(r01, r23)), vdupq_n_s32(xc[2 * pr][b] + QK_I2F_BIAS));
            int32x4_t s1 = vaddq_s32(vreinterpretq_s32_s64(vzip2q_s64(r01, r23)), vdupq_n_s32(xc[2 * pr + 1][b] + QK_I2F_BIAS));
            acc[2 * pr][q] = isum_to_acc(acc[2 * pr][q], s0, xd[2 * pr][b], ws[q]);
            acc[2 * pr + 1][q] = isum_to_acc(acc[2 * pr + 1][q], s1, xd[2 * pr + 1][b], ws[q]);
        }
    }
    UNROLL for (int i = 0; i < 2 * NP; i++)
        UNROLL for (int q = 0; q < 2; q++) store_quad(a, t0 + i, rb * QK_NR + 4 * (2 * h + q), acc[i][q]);
}
#endif

AI void ikern(const qk_mm_args *a, qk_scheme s, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) {
#if QK_T_DOT >= 1
    if (m1 - m0 < 3) {   /* GEMV-like: one token over 2 blocks = 8 independent SDOT chains */
        for (int64_t rb = rb0; rb < rb1; rb += 2)
            for (int64_t t = m0; t < m1; t++) {
                if (rb + 1 < rb1) itile(a, s, 1, 2, t, rb);
                else itile(a, s, 1, 1, t, rb);
            }
        return;
    }
#endif
    for (int64_t rb = rb0; rb < rb1; rb++) {
        int64_t t = m0;
#if QK_T_DOT == 2
        for (; t + 4 <= m1; t += 4) { itile_mm(a, s, 2, t, rb, 0); itile_mm(a, s, 2, t, rb, 1); }
        for (; t + 2 <= m1; t += 2) { itile_mm(a, s, 1, t, rb, 0); itile_mm(a, s, 1, t, rb, 1); }
#elif QK_T_DOT == 1
        for (; t + 3 <= m1; t += 3) itile(a, s, 3, 1, t, rb);
#endif   /* neon: one token per tile (two tokens' int16/int32 partial sums do not fit in 32 registers) */
        for (; t < m1; t++) itile(a, s, 1, 1, t, rb);
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
#undef store_quad
#undef load_w
#undef ftile
#undef fkern
#undef bcast4
#undef dot_lane
#undef isum_to_acc
#undef itile
#undef itile_mm
#undef ikern
#undef load_ws
#undef with_hbits
