/* matmul_avxvnni.c: AVX2 + AVX-VNNI tier (kernels in matmul_avx2_body.h, int8 dots by vpdpbusd).
   Not exercised on CPUs without AVX-VNNI (tests skip it there). */
#include "qk_matmul_internal.h"
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avxvnni"))), apply_to = function)
#define QK_T_VNNI 1
#define QK_T_NAME(x) x##_avxvnni
#include "matmul_avx2_body.h"
#pragma clang attribute pop

const qk_mm_tier qk_mm_tier_avxvnni = {
    .kern = { kern_f32_avxvnni, kern_bf16_avxvnni, kern_f16_avxvnni, kern_q8_avxvnni, kern_q4_avxvnni, kern_q4c_avxvnni, kern_q8s_avxvnni, kern_q5s_avxvnni, kern_q6s_avxvnni },
    .quantx = quantx_avxvnni,
    .q8_off = 128,
};
#endif

/* The same kernels with EVEX-encoded 256-bit vpdpbusd (AVX512-VL + VNNI): lets CPUs without AVX-VNNI
   but with AVX-512 VNNI (e.g. AMD Zen 4) test the AVX-VNNI tier's arithmetic. Tests only. */
#if defined(__x86_64__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512vnni"))), apply_to = function)
#undef QK_T_VNNI
#undef QK_T_NAME
#define QK_T_VNNI 2
#define QK_T_NAME(x) x##_vnni_evex
#include "matmul_avx2_body.h"
#pragma clang attribute pop

static const qk_mm_tier tier_vnni_evex = {
    .kern = { kern_f32_vnni_evex, kern_bf16_vnni_evex, kern_f16_vnni_evex, kern_q8_vnni_evex, kern_q4_vnni_evex, kern_q4c_vnni_evex, kern_q8s_vnni_evex, kern_q5s_vnni_evex, kern_q6s_vnni_evex },
    .quantx = quantx_vnni_evex,
    .q8_off = 128,
};
void qk_matmul_avxvnni_evex(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    qk_matmul_with_tier(&tier_vnni_evex, w, x, m, bias, y);
}
#endif
