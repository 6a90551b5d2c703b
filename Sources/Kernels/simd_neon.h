/*
 * simd_neon.h: the vector vocabulary of ops_simd_body.h / attention_simd_body.h for the aarch64 tiers
 * (Armv8.0 Advanced SIMD, 4 f32 lanes; every aarch64 CPU has it, so no target attribute is needed).
 * NEON has no masked loads: a VM is a lane count and the masked forms go through a small stack buffer
 * (tails only), so no kernel reads or writes past the end of its arrays.
 */
#include <arm_neon.h>
#include <stdint.h>
#include <string.h>

#define QK_SFX(name) name##_neon
#define VL 4
typedef float32x4_t V;
typedef int64_t VM; /* number of leading lanes in use, 0..VL */

static inline V vld(const float *p) { return vld1q_f32(p); }
static inline void vst(float *p, V v) { vst1q_f32(p, v); }
static inline V vset(float x) { return vdupq_n_f32(x); }
static inline V vzero(void) { return vdupq_n_f32(0.0f); }
static inline V vadd(V a, V b) { return vaddq_f32(a, b); }
static inline V vsub(V a, V b) { return vsubq_f32(a, b); }
static inline V vmul(V a, V b) { return vmulq_f32(a, b); }
static inline V vdiv(V a, V b) { return vdivq_f32(a, b); }
/* FMAX/FMIN return NaN when either input is NaN (the x86 tiers return b): NaN propagates either way. */
static inline V vmax(V a, V b) { return vmaxq_f32(a, b); }
static inline V vmin(V a, V b) { return vminq_f32(a, b); }
static inline V vfma(V a, V b, V c) { return vfmaq_f32(c, a, b); }   /* a * b + c, one rounding */
static inline V vfnma(V a, V b, V c) { return vfmsq_f32(c, a, b); }  /* c - a * b, one rounding */
static inline V vabs(V a) { return vabsq_f32(a); }
static inline V vround(V a) { return vrndnq_f32(a); }                 /* to nearest, ties to even */
static inline V vsel_lt0(V x, V a, V b) {                              /* sign bit of x ? a : b */
    uint32x4_t m = vreinterpretq_u32_s32(vshrq_n_s32(vreinterpretq_s32_f32(x), 31));
    return vbslq_f32(m, a, b);
}

static inline VM vmask(int64_t n) { return n; }
static inline V vldm(const float *p, VM m) {
    if (m == VL) return vld1q_f32(p);
    float t[VL] = { 0 };
    memcpy(t, p, (size_t)m * sizeof(float));
    return vld1q_f32(t);
}
static inline void vstm(float *p, VM m, V v) {
    if (m == VL) { vst1q_f32(p, v); return; }
    float t[VL];
    vst1q_f32(t, v);
    memcpy(p, t, (size_t)m * sizeof(float));
}

static inline float vhsum(V v) { return vaddvq_f32(v); }
static inline float vhmax(V v) { return vmaxvq_f32(v); }

/* p * 2^n for integral n in [-150, 128], via two exponent steps (as simd_avx2.h). */
static inline V vscale2(V p, V n) {
    int32x4_t ni = vcvtnq_s32_f32(n);
    int32x4_t n1 = vshrq_n_s32(ni, 1), n2 = vsubq_s32(ni, n1);
    V s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, vdupq_n_s32(127)), 23));
    V s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, vdupq_n_s32(127)), 23));
    return vmulq_f32(vmulq_f32(p, s1), s2);
}

/* ---- conversions: VL elements ---- */
static inline V vld_bf16(const uint16_t *p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
/* FCVTL is exact (subnormal halves included; FPCR.FZ16 is 0 on Linux); a NaN keeps its payload, made quiet. */
static inline V vld_f16(const uint16_t *p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
/* FCVTN rounds to nearest even (FPCR default), overflows to inf, keeps the top NaN payload bits, quiet. */
static inline void vst_f16(uint16_t *p, V v) { vst1_u16(p, vreinterpret_u16_f16(vcvt_f16_f32(v))); }
/* f32 -> bf16 round to nearest even; NaN -> 0x7fc0 (as c10::BFloat16). Integer steps as simd_avx2.h. */
static inline void vst_bf16(uint16_t *p, V v) {
    uint32x4_t u = vreinterpretq_u32_f32(v);
    uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    uint32x4_t r = vshrq_n_u32(vaddq_u32(u, vaddq_u32(lsb, vdupq_n_u32(0x7fff))), 16);
    uint32x4_t ord = vceqq_f32(v, v); /* all ones unless NaN */
    r = vbslq_u32(ord, r, vdupq_n_u32(0x7fc0));
    vst1_u16(p, vmovn_u32(r));
}

/* attention register blocking (32 vector registers): S^T tile 4 keys x 4 query vectors (16 accumulators),
   PV tile 4 rows x up to 6 vectors (24 accumulators + 6 value vectors + 1 broadcast). */
#define ATT_QV 4
#define ATT_CV 6
static inline V viota(void) {
    static const float k_iota[VL] = { 0, 1, 2, 3 };
    return vld1q_f32(k_iota);
}
static inline V vsel_lt(V a, V b, V x, V y) { return vbslq_f32(vcltq_f32(a, b), x, y); } /* a < b ? x : y */
static inline V vsel_eq(V a, V b, V x, V y) { return vbslq_f32(vceqq_f32(a, b), x, y); } /* a == b ? x : y */
