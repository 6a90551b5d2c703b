/* matmul_neon.c: the aarch64 matmul tiers (kernels in matmul_neon_body.h), chosen at run time from
   AT_HWCAP / AT_HWCAP2 (dispatch.c):
     neon    Armv8.0 Advanced SIMD (baseline of every aarch64 CPU; no target attribute)
     dotprod + SDOT          target arch=armv8.2-a+dotprod   (Cortex-A76, Neoverse N1 / Graviton2)
     i8mm    + SMMLA         target arch=armv8.6-a+i8mm      (Neoverse V1/V2 / Graviton3/4)
   The target pragmas cover only the functions of one instantiation; nothing here changes the
   package's compiler flags. The float schemes are the same FMA code in all three tiers. */
#include "qk_matmul_internal.h"
#if defined(__aarch64__)
#include <arm_neon.h>
#include <string.h>

/* Activation quantization (qk_matmul_internal.h): per 32-block amax, q = round-to-nearest-even of
   x * (127 / amax) clamped to [-127, 127] (FCVTNS rounds ties to even, as nearbyintf in the default mode). */
static void quantx_neon(const float *x, int64_t k, int64_t kp, int32_t off, void *out) {
    int8_t *q = out;
    int64_t nblk = kp / QK_ABLK;
    float *xd = (float *)((uint8_t *)out + kp);
    int32_t *c = (int32_t *)(xd + nblk);
    const int32x4_t lim = vdupq_n_s32(127), nlim = vdupq_n_s32(-127);
    for (int64_t b = 0; b < nblk; b++) {
        int64_t k0 = b * QK_ABLK, rem = k - k0;
        float32x4_t v[8];
        if (rem >= QK_ABLK) {
            for (int h = 0; h < 8; h++) v[h] = vld1q_f32(x + k0 + 4 * h);
        } else {   /* the tail: zero padded (rem <= 0 for whole padding blocks when the group exceeds 32) */
            float t[QK_ABLK] = { 0 };
            if (rem > 0) memcpy(t, x + k0, (size_t)rem * sizeof(float));
            for (int h = 0; h < 8; h++) v[h] = vld1q_f32(t + 4 * h);
        }
        float32x4_t mx = vabsq_f32(v[0]);
        for (int h = 1; h < 8; h++) mx = vmaxq_f32(mx, vabsq_f32(v[h]));
        float amax = vmaxvq_f32(mx);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        int32x4_t sum = vdupq_n_s32(0);
        int16x8_t q16[4];
        for (int h = 0; h < 8; h += 2) {
            int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(v[h], id)), bq = vcvtnq_s32_f32(vmulq_n_f32(v[h + 1], id));
            a = vmaxq_s32(vminq_s32(a, lim), nlim);
            bq = vmaxq_s32(vminq_s32(bq, lim), nlim);
            sum = vaddq_s32(sum, vaddq_s32(a, bq));
            q16[h / 2] = vcombine_s16(vmovn_s32(a), vmovn_s32(bq));
        }
        vst1q_s8(q + k0, vcombine_s8(vmovn_s16(q16[0]), vmovn_s16(q16[1])));
        vst1q_s8(q + k0 + 16, vcombine_s8(vmovn_s16(q16[2]), vmovn_s16(q16[3])));
        xd[b] = amax / 127.0f;
        c[b] = -off * vaddvq_s32(sum);
    }
}

#define QK_T_DOT 0
#define QK_T_NAME(x) x##_neon
#include "matmul_neon_body.h"
#undef QK_T_DOT
#undef QK_T_NAME

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("arch=armv8.2-a+dotprod"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
#define QK_T_DOT 1
#define QK_T_NAME(x) x##_dotprod
#include "matmul_neon_body.h"
#undef QK_T_DOT
#undef QK_T_NAME
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("arch=armv8.6-a+i8mm"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("arch=armv8.6-a+i8mm")
#endif
#define QK_T_DOT 2
#define QK_T_NAME(x) x##_i8mm
#include "matmul_neon_body.h"
#undef QK_T_DOT
#undef QK_T_NAME
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const qk_mm_tier qk_mm_tier_neon = {
    .kern = { kern_f32_neon, kern_bf16_neon, kern_f16_neon, kern_q8_neon, kern_q4_neon, kern_q4c_neon, kern_q8s_neon, kern_q5s_neon, kern_q6s_neon },
    .quantx = quantx_neon,
    .q8_off = 0,
};
const qk_mm_tier qk_mm_tier_dotprod = {
    .kern = { kern_f32_dotprod, kern_bf16_dotprod, kern_f16_dotprod, kern_q8_dotprod, kern_q4_dotprod, kern_q4c_dotprod, kern_q8s_dotprod, kern_q5s_dotprod, kern_q6s_dotprod },
    .quantx = quantx_neon,
    .q8_off = 0,
};
const qk_mm_tier qk_mm_tier_i8mm = {
    .kern = { kern_f32_i8mm, kern_bf16_i8mm, kern_f16_i8mm, kern_q8_i8mm, kern_q4_i8mm, kern_q4c_i8mm, kern_q8s_i8mm, kern_q5s_i8mm, kern_q6s_i8mm },
    .quantx = quantx_neon,
    .q8_off = 0,
};
#else
typedef int qk_matmul_neon_unused;
#endif
