/*
 * qk_ops_internal.h: the tier twins of the element-wise, row, attention, convolution and conversion
 * kernels (everything in qk.h except the matrix products). Not for use outside Kernels.
 *
 * The public qk_<op> (ops.c, attention.c, conv.c) splits the work over the thread pool into independent
 * pieces and calls the twin of the current tier on each piece; the twins are serial and have the public
 * signature, except:
 *  - qk_attention_<isa> takes one piece (a run of query rows of one query head: hq == hkv == 1 after the
 *    caller offset the pointers) plus per-thread scratch of qk_attention_scratch_bytes(p->d) bytes;
 *  - qk_conv3x3_ref is the naive direct convolution (the twin tests compare against); the fast tiers are
 *    an implicit GEMM over qk_matmul (conv.c) and need no ISA-specific code of their own;
 *  - upsampling has only the _ref twin (it is memcpy, which libc already vectorises).
 */
#ifndef QK_OPS_INTERNAL_H
#define QK_OPS_INTERNAL_H
#include "qk.h"

/* Largest head dimension the attention kernels accept (larger d is rejected with zeros + a message). */
#define QK_ATTN_MAX_D 4096
/* Attention pieces: up to QK_ATTN_BQ query rows of one head; keys in tiles of QK_ATTN_BK. */
#define QK_ATTN_BQ 128
#define QK_ATTN_BK 64
size_t qk_attention_scratch_bytes(int64_t d);

#define QK_OPS_DECLARE(sfx)                                                                                    \
    void qk_rmsnorm_##sfx(const float *x, const float *weight, int64_t rows, int64_t dim, float eps, float *y); \
    void qk_l2norm_##sfx(const float *x, const float *gamma, const float *bias, int64_t rows, int64_t dim,    \
                         float *y);                                                                            \
    void qk_silu_mul_##sfx(const float *gate, const float *up, int64_t n, float *out);                         \
    void qk_silu_##sfx(float *x, int64_t n);                                                                   \
    void qk_gelu_erf_##sfx(float *x, int64_t n);                                                               \
    void qk_gelu_tanh_##sfx(float *x, int64_t n);                                                              \
    void qk_layernorm_##sfx(const float *x, const float *weight, const float *bias, int64_t rows, int64_t dim,  \
                            float eps, float *y);                                                              \
    void qk_softmax_##sfx(float *x, int64_t rows, int64_t n);                                                  \
    void qk_rope_##sfx(float *x, int64_t rows, int64_t heads, int64_t head_dim, int64_t row_stride,            \
                       const float *cos, const float *sin);                                                    \
    void qk_attention_##sfx(const qk_attn_params *p, const float *q, const float *k, const float *v,          \
                            float *out, void *scratch);                                                        \
    void qk_bf16_to_f32_##sfx(const uint16_t *x, int64_t n, float *y);                                         \
    void qk_f16_to_f32_##sfx(const uint16_t *x, int64_t n, float *y);                                          \
    void qk_f32_to_bf16_##sfx(const float *x, int64_t n, uint16_t *y);                                         \
    void qk_f32_to_f16_##sfx(const float *x, int64_t n, uint16_t *y);

QK_OPS_DECLARE(ref)
#if defined(__x86_64__)
QK_OPS_DECLARE(avx2)
QK_OPS_DECLARE(avx512)
#endif
#if defined(__aarch64__)
QK_OPS_DECLARE(neon)   /* one float tier for neon, dotprod and i8mm (the int8 dot instructions do not help here) */
#endif

/* Naive direct 3x3 convolution (serial; output rows [oy0, oy1) only). */
void qk_conv3x3_ref(const qk_conv_params *p, const qk_weight *w, const float *x, const float *bias, float *y,
                    int64_t oy0, int64_t oy1, float *wrow_scratch);
void qk_upsample2x_ref(const float *x, int64_t h, int64_t w, int64_t c, float *y);

/* Scalar conversions shared by every tier (exact IEEE round-to-nearest-even). */
static inline float qk_cvt_bf16_to_f32_1(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
static inline uint16_t qk_cvt_f32_to_bf16_1(float f) {
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0; /* NaN -> canonical quiet NaN, as c10::BFloat16 */
    return (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16);
}
static inline float qk_cvt_f16_to_f32_1(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0x1f) u = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u); /* inf; NaN made quiet */
    else if (e != 0) u = sign | ((e + 112u) << 23) | (m << 13);
    else if (m == 0) u = sign;
    else { /* subnormal: normalise */
        e = 113;
        while (!(m & 0x400u)) { m <<= 1; e--; }
        u = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
    union { uint32_t u; float f; } v = { u };
    return v.f;
}
static inline uint16_t qk_cvt_f32_to_f16_1(float f) {
    union { float f; uint32_t u; } v = { f };
    uint32_t sign = (v.u >> 16) & 0x8000u, a = v.u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN: quiet, top payload */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);  /* rounds to >= 65536: inf */
    if (a >= 0x38800000u) {                                   /* normal half */
        uint32_t r = a + 0x0fffu + ((a >> 13) & 1u);
        return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
    }
    if (a < 0x33000000u) return (uint16_t)sign;               /* < 2^-25: rounds to zero */
    /* subnormal half: value = a_mant * 2^(e-150); unit 2^-24 */
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u, shift = 126u - e; /* 14..24 */
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}
#endif
