/* matmul_ref.c: scalar reference tier. Walks the packed layout directly and performs exactly the
   arithmetic specified in qk_matmul_internal.h (fma chains in k order; exact int32 block sums), so
   every SIMD tier must agree with it bit for bit. */
#include "qk_matmul_internal.h"
#include <math.h>
#include <string.h>

void qk_quantize_x_ref(const float *x, int64_t k, int64_t kp, int32_t off, void *out) {
    int8_t *q = out;
    int64_t nblk = kp / QK_ABLK;
    float *xd = (float *)((uint8_t *)out + kp);
    int32_t *c = (int32_t *)(xd + nblk);
    for (int64_t b = 0; b < nblk; b++) {
        int64_t k0 = b * QK_ABLK;
        float amax = 0;
        for (int64_t i = k0; i < k0 + QK_ABLK && i < k; i++) { float a = fabsf(x[i]); if (a > amax) amax = a; }
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        for (int64_t i = k0; i < k0 + QK_ABLK; i++) {
            int v = 0;
            if (i < k) {
                float r = nearbyintf(x[i] * id);
                v = r > 127 ? 127 : (r < -127 ? -127 : (int)r);
            }
            q[i] = (int8_t)v;
            sum += v;
        }
        xd[b] = amax / 127.0f;
        c[b] = -off * sum;
    }
}

static inline float wval(qk_scheme s, const uint8_t *blk, int64_t kk, int lane) {
    switch (s) {
    case QK_F32: return ((const float *)blk)[kk * QK_NR + lane];
    case QK_BF16: return qk_bf16_bits_to_f32(((const uint16_t *)blk)[kk * QK_NR + lane]);
    default: return qk_f16_bits_to_f32_scalar(((const uint16_t *)blk)[kk * QK_NR + lane]);
    }
}

static void kern_float_ref(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) {
    for (int64_t rb = rb0; rb < rb1; rb++) {
        const uint8_t *blk = a->w + (size_t)rb * a->rb_bytes;
        for (int lane = 0; lane < QK_NR; lane++) {
            int64_t col = rb * QK_NR + lane;
            if (col >= a->n) break;
            for (int64_t t = m0; t < m1; t++) {
                const float *xr = a->x + t * a->k;
                float acc = 0;
                for (int64_t kk = 0; kk < a->k; kk++) acc = fmaf(xr[kk], wval(a->scheme, blk, kk, lane), acc);
                a->y[t * a->n + col] = a->bias ? acc + a->bias[col] : acc;
            }
        }
    }
}

static void kern_int_ref(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) {
    int64_t nblk = a->kp / QK_ABLK;
    for (int64_t rb = rb0; rb < rb1; rb++) {
        const uint8_t *blk = a->w + (size_t)rb * a->rb_bytes;
        const float *scales = (const float *)blk;
        const int8_t *codes = (const int8_t *)(blk + a->codes_off);
        const uint8_t *data = blk + a->scales_bytes;
        const int compact = qk_scheme_is_compact(a->scheme);
        for (int lane = 0; lane < QK_NR; lane++) {
            int64_t col = rb * QK_NR + lane;
            if (col >= a->n) break;
            for (int64_t t = m0; t < m1; t++) {
                const int8_t *xq = (const int8_t *)(a->xq + (size_t)t * a->xq_stride);
                const float *xd = (const float *)(a->xq + (size_t)t * a->xq_stride + a->kp);
                float acc = 0;
                for (int64_t b = 0; b < nblk; b++) {
                    int32_t isum = 0;
                    for (int64_t i = b * QK_ABLK; i < (b + 1) * QK_ABLK; i++)
                        isum += qk_packed_q(a->scheme, data, a->kp, lane, i) * xq[i];
                    int64_t g = a->gblk ? b / a->gblk : 0;
                    float ws = compact ? (float)codes[g * QK_NR + lane] * scales[(g / QK_SUPER_GROUPS) * QK_NR + lane]
                                       : scales[g * QK_NR + lane];
                    acc = fmaf((float)isum * xd[b], ws, acc);
                }
                a->y[t * a->n + col] = a->bias ? acc + a->bias[col] : acc;
            }
        }
    }
}

/* bf16-dot (qk_matmul_internal.h): a->xq holds the activation rows rounded to bf16, zero padded to an
   even length. vdpbf16ps semantics: bf16 subnormal inputs count as zero (DAZ), every rounded sum that is
   subnormal becomes a zero of its sign (FTZ). */
static inline float daz_bf16(uint16_t h) { return (h & 0x7f80u) ? qk_bf16_bits_to_f32(h) : ((h & 0x8000u) ? -0.0f : 0.0f); }
static inline float ftz(float v) { return fabsf(v) < 0x1p-126f ? copysignf(0.0f, v) : v; }

static void kern_bf16dot_ref(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) {
    int64_t np = (a->k + 1) / 2;
    for (int64_t rb = rb0; rb < rb1; rb++) {
        const uint16_t *blk = (const uint16_t *)(a->w + (size_t)rb * a->rb_bytes);
        for (int lane = 0; lane < QK_NR; lane++) {
            int64_t col = rb * QK_NR + lane;
            if (col >= a->n) break;
            for (int64_t t = m0; t < m1; t++) {
                const uint16_t *xr = (const uint16_t *)(a->xq + (size_t)t * a->xq_stride);
                float acc = 0;
                for (int64_t p = 0; p < np; p++) {
                    acc = ftz(fmaf(daz_bf16(xr[2 * p + 1]), daz_bf16(blk[(2 * p + 1) * QK_NR + lane]), acc));
                    acc = ftz(fmaf(daz_bf16(xr[2 * p]), daz_bf16(blk[2 * p * QK_NR + lane]), acc));
                }
                a->y[t * a->n + col] = a->bias ? acc + a->bias[col] : acc;
            }
        }
    }
}
const qk_mm_kernel qk_mm_bf16dot_ref = kern_bf16dot_ref;

const qk_mm_tier qk_mm_tier_ref = {
    .kern = { kern_float_ref, kern_float_ref, kern_float_ref, kern_int_ref, kern_int_ref, kern_int_ref, kern_int_ref, kern_int_ref, kern_int_ref },
    .quantx = qk_quantize_x_ref,
    .q8_off = 0,
};
