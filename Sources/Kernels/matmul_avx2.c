/* matmul_avx2.c: AVX2 + FMA + F16C tier (kernels in matmul_avx2_body.h). */
#include "qk_matmul_internal.h"
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#define QK_T_VNNI 0
#define QK_T_NAME(x) x##_avx2
#include "matmul_avx2_body.h"
#pragma clang attribute pop

const qk_mm_tier qk_mm_tier_avx2 = {
    .kern = { kern_f32_avx2, kern_bf16_avx2, kern_f16_avx2, kern_q8_avx2, kern_q4_avx2, kern_q4c_avx2, kern_q8s_avx2, kern_q5s_avx2, kern_q6s_avx2 },
    .quantx = quantx_avx2,
    .q8_off = 0,
};
#endif
