/* limits.c: the simple loops that measure this machine's limits (qwen-bench limits): peak f32 FMA and
   int8 dot rates with independent register accumulators, and streaming read bandwidth (x86-64 and
   aarch64; the i8mm tier is measured by its SDOT rate, the instruction its GEMV uses). Not kernels;
   they live here because only C can reach the instructions. */
#include "qk_matmul_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>

/* 8 zmm x 16 lanes x 2 flops per FMA per iteration, 12 independent chains (> latency x throughput). */
__attribute__((target("avx512f"))) static double fma_peak_512(int64_t iters) {
    __m512 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps(1.0f + i * 1e-3f);
    const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; it++) {
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], m, c);
        __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]));
    }
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    return _mm512_reduce_add_ps(s) * 0 + 12.0 * 32.0 * (double)iters;
}
__attribute__((target("avx2,fma"))) static double fma_peak_256(int64_t iters) {
    __m256 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(1.0f + i * 1e-3f);
    const __m256 m = _mm256_set1_ps(0.999999f), c = _mm256_set1_ps(1e-7f);
    for (int64_t it = 0; it < iters; it++) {
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], m, c);
        __asm__ volatile("" : "+x"(a[0]), "+x"(a[1]), "+x"(a[2]), "+x"(a[3]), "+x"(a[4]), "+x"(a[5]));
    }
    volatile float sink = a[0][0] + a[11][0];
    (void)sink;
    return 12.0 * 16.0 * (double)iters;
}
/* vpdpbusd: 64 multiply-adds (128 ops) per zmm instruction. */
__attribute__((target("avx512f,avx512vnni"))) static double vnni_peak_512(int64_t iters) {
    __m512i a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_epi32(i);
    const __m512i u = _mm512_set1_epi8(3), s = _mm512_set1_epi8(-2);
    for (int64_t it = 0; it < iters; it++) {
        for (int i = 0; i < 12; i++) a[i] = _mm512_dpbusd_epi32(a[i], u, s);
        __asm__ volatile("" : "+v"(a[0]), "+v"(a[1]), "+v"(a[2]), "+v"(a[3]), "+v"(a[4]), "+v"(a[5]));
    }
    volatile int sink = _mm512_reduce_add_epi32(a[0]) + _mm512_reduce_add_epi32(a[11]);
    (void)sink;
    return 12.0 * 128.0 * (double)iters;
}
/* The same with distinct operands, as in a GEMM tile: 12 accumulators, 12 activation registers, a weight
   vector loaded from L1 every 12 instructions. On AMD Zen 4 this runs at about 60% of the loop above
   (which repeats one operand pair), so this is the int8 limit a GEMM can approach. */
__attribute__((target("avx512f,avx512vnni"))) static double vnni_gemm_512(int64_t iters) {
    static const int8_t wbuf[8 * 64] __attribute__((aligned(64))) = { 1, 2, 3 };
    __m512i a[12], xr[12];
    for (int i = 0; i < 12; i++) { a[i] = _mm512_set1_epi32(i); xr[i] = _mm512_set1_epi32(i * 3 + 1); }
    for (int64_t it = 0; it < iters / 8; it++) {
        for (int st = 0; st < 8; st++) {
            __m512i w = _mm512_load_si512(wbuf + st * 64);
            for (int i = 0; i < 12; i++) a[i] = _mm512_dpbusd_epi32(a[i], w, xr[i]);
        }
        __asm__ volatile("" : "+v"(xr[0]), "+v"(xr[1]), "+v"(xr[2]) :: "memory");
    }
    __m512i s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_epi32(s, a[i]);
    volatile int sink = _mm512_reduce_add_epi32(s);
    (void)sink;
    return 12.0 * 128.0 * 8.0 * (double)(iters / 8);
}
/* vdpbf16ps in a GEMM-like pattern (as vnni_gemm_512): 32 multiply-adds (64 flops) per zmm instruction. */
__attribute__((target("avx512f,avx512bw,avx512bf16"))) static double bf16dot_gemm_512(int64_t iters) {
    static const uint16_t wbuf[8 * 32] __attribute__((aligned(64))) = { 0x3f80, 0x3f00, 0x3e80 };
    __m512 a[12];
    __m512i xr[12];
    for (int i = 0; i < 12; i++) { a[i] = _mm512_setzero_ps(); xr[i] = _mm512_set1_epi32(0x3f803f80 + i); }
    for (int64_t it = 0; it < iters / 8; it++) {
        for (int st = 0; st < 8; st++) {
            __m512bh w = (__m512bh)_mm512_load_si512(wbuf + st * 32);
            for (int i = 0; i < 12; i++) a[i] = _mm512_dpbf16_ps(a[i], w, (__m512bh)xr[i]);
        }
        __asm__ volatile("" : "+v"(xr[0]), "+v"(xr[1]), "+v"(xr[2]) :: "memory");
    }
    __m512 s = a[0];
    for (int i = 1; i < 12; i++) s = _mm512_add_ps(s, a[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return 12.0 * 64.0 * 8.0 * (double)(iters / 8);
}
/* AVX2 without VNNI: vpmaddubsw + vpmaddwd + vpaddd = 32 multiply-adds per 3 instructions. */
__attribute__((target("avx2"))) static double int8_peak_256(int64_t iters) {
    __m256i a[8];
    for (int i = 0; i < 8; i++) a[i] = _mm256_set1_epi32(i);
    const __m256i u = _mm256_set1_epi8(3), s = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
    for (int64_t it = 0; it < iters; it++) {
        for (int i = 0; i < 8; i++) a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), ones));
        __asm__ volatile("" : "+x"(a[0]), "+x"(a[1]), "+x"(a[2]), "+x"(a[3]), "+x"(a[4]), "+x"(a[5]));
    }
    volatile int sink = _mm256_extract_epi32(a[0], 0) + _mm256_extract_epi32(a[7], 0);
    (void)sink;
    return 8.0 * 64.0 * (double)iters;
}
__attribute__((target("avx2"))) static double read_256(const void *buf, size_t bytes) {
    const __m256i *p = buf;
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 4 <= bytes / 32; i += 4) {
        s0 = _mm256_add_epi32(s0, _mm256_load_si256(p + i));
        s1 = _mm256_add_epi32(s1, _mm256_load_si256(p + i + 1));
        s2 = _mm256_add_epi32(s2, _mm256_load_si256(p + i + 2));
        s3 = _mm256_add_epi32(s3, _mm256_load_si256(p + i + 3));
    }
    s0 = _mm256_add_epi32(_mm256_add_epi32(s0, s1), _mm256_add_epi32(s2, s3));
    return (double)_mm256_extract_epi32(s0, 0);
}
#elif defined(__aarch64__)
#include <arm_neon.h>

/* 12 FMLA chains x 4 lanes x 2 flops per iteration (enough chains for 4 pipes x 4 cycles of latency
   with accumulator forwarding). */
static double fma_peak_neon(int64_t iters) {
    float32x4_t a[12];
    for (int i = 0; i < 12; i++) a[i] = vdupq_n_f32(1.0f + (float)i * 1e-3f);
    const float32x4_t m = vdupq_n_f32(0.999999f), c = vdupq_n_f32(1e-7f);
    for (int64_t it = 0; it < iters; it++) {
        for (int i = 0; i < 12; i++) a[i] = vfmaq_f32(c, a[i], m);
        __asm__ volatile("" : "+w"(a[0]), "+w"(a[1]), "+w"(a[2]), "+w"(a[3]), "+w"(a[4]), "+w"(a[5]));
    }
    volatile float sink = vgetq_lane_f32(a[0], 0) + vgetq_lane_f32(a[11], 0);
    (void)sink;
    return 12.0 * 8.0 * (double)iters;
}
/* Armv8.0 int8: SMULL (8 multiply-adds) + SADALP per 8 lanes, as the neon matmul tier does. */
static double int8_peak_neon(int64_t iters) {
    int32x4_t a[8];
    for (int i = 0; i < 8; i++) a[i] = vdupq_n_s32(i);
    const int8x8_t u = vdup_n_s8(3), s = vdup_n_s8(-2);
    for (int64_t it = 0; it < iters; it++) {
        for (int i = 0; i < 8; i++) a[i] = vpadalq_s16(a[i], vmull_s8(u, s));
        __asm__ volatile("" : "+w"(a[0]), "+w"(a[1]), "+w"(a[2]), "+w"(a[3]), "+w"(a[4]), "+w"(a[5]));
    }
    volatile int sink = vgetq_lane_s32(a[0], 0) + vgetq_lane_s32(a[7], 0);
    (void)sink;
    return 8.0 * 16.0 * (double)iters;
}
static double read_neon(const void *buf, size_t bytes) {
    const uint32_t *p = buf;
    uint32x4_t s0 = vdupq_n_u32(0), s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 16 <= bytes / 4; i += 16) {
        s0 = vaddq_u32(s0, vld1q_u32(p + i));
        s1 = vaddq_u32(s1, vld1q_u32(p + i + 4));
        s2 = vaddq_u32(s2, vld1q_u32(p + i + 8));
        s3 = vaddq_u32(s3, vld1q_u32(p + i + 12));
    }
    s0 = vaddq_u32(vaddq_u32(s0, s1), vaddq_u32(s2, s3));
    return (double)vgetq_lane_u32(s0, 0);
}

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("arch=armv8.2-a+dotprod"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif
/* SDOT: 16 multiply-adds (32 ops) per instruction, 12 chains. */
static double sdot_peak(int64_t iters) {
    int32x4_t a[12];
    for (int i = 0; i < 12; i++) a[i] = vdupq_n_s32(i);
    const int8x16_t u = vdupq_n_s8(3), s = vdupq_n_s8(-2);
    for (int64_t it = 0; it < iters; it++) {
        for (int i = 0; i < 12; i++) a[i] = vdotq_s32(a[i], u, s);
        __asm__ volatile("" : "+w"(a[0]), "+w"(a[1]), "+w"(a[2]), "+w"(a[3]), "+w"(a[4]), "+w"(a[5]));
    }
    volatile int sink = vgetq_lane_s32(a[0], 0) + vgetq_lane_s32(a[11], 0);
    (void)sink;
    return 12.0 * 32.0 * (double)iters;
}
/* The same with distinct operands, as in the 3-token SDOT tile: 12 accumulators, 3 activation registers
   used by lane, 4 weight vectors loaded from L1 per step. */
static double sdot_gemm(int64_t iters) {
    static const int8_t wbuf[8 * 64] __attribute__((aligned(64))) = { 1, 2, 3 };
    int32x4_t a[12];
    int8x16_t xr[3];
    for (int i = 0; i < 12; i++) a[i] = vdupq_n_s32(i);
    for (int i = 0; i < 3; i++) xr[i] = vdupq_n_s8((int8_t)(i * 3 + 1));
    for (int64_t it = 0; it < iters / 8; it++) {
        for (int st = 0; st < 8; st++) {
            int8x16_t w[4];
            for (int q = 0; q < 4; q++) w[q] = vld1q_s8(wbuf + st * 64 + 16 * q);
            for (int i = 0; i < 3; i++)
                for (int q = 0; q < 4; q++) a[4 * i + q] = vdotq_laneq_s32(a[4 * i + q], w[q], xr[i], 0);
        }
        __asm__ volatile("" : "+w"(xr[0]), "+w"(xr[1]), "+w"(xr[2]) :: "memory");
    }
    int32x4_t s = a[0];
    for (int i = 1; i < 12; i++) s = vaddq_s32(s, a[i]);
    volatile int sink = vaddvq_s32(s);
    (void)sink;
    return 12.0 * 32.0 * 8.0 * (double)(iters / 8);
}
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

double qk_limits_fma(int64_t iters) {
#if defined(__x86_64__)
    if (qk_tier_supported(QK_TIER_AVX512)) return fma_peak_512(iters);
    if (qk_tier_supported(QK_TIER_AVX2)) return fma_peak_256(iters);
#elif defined(__aarch64__)
    if (qk_tier_supported(QK_TIER_NEON)) return fma_peak_neon(iters);
#endif
    (void)iters;
    return 0;
}

double qk_limits_int8(int64_t iters) {
#if defined(__x86_64__)
    if (qk_tier_supported(QK_TIER_AVX512)) return vnni_peak_512(iters);
    if (qk_tier_supported(QK_TIER_AVX2)) return int8_peak_256(iters);
#elif defined(__aarch64__)
    if (qk_tier_supported(QK_TIER_DOTPROD)) return sdot_peak(iters);
    if (qk_tier_supported(QK_TIER_NEON)) return int8_peak_neon(iters);
#endif
    (void)iters;
    return 0;
}

double qk_limits_int8_gemm(int64_t iters) {
#if defined(__x86_64__)
    if (qk_tier_supported(QK_TIER_AVX512)) return vnni_gemm_512(iters);
    if (qk_tier_supported(QK_TIER_AVX2)) return int8_peak_256(iters);
#elif defined(__aarch64__)
    if (qk_tier_supported(QK_TIER_DOTPROD)) return sdot_gemm(iters);
    if (qk_tier_supported(QK_TIER_NEON)) return int8_peak_neon(iters);
#endif
    (void)iters;
    return 0;
}

double qk_limits_bf16dot(int64_t iters) {
#if defined(__x86_64__)
    if (qk_tier_supported(QK_TIER_AVX512) && qk_cpu_has_avx512bf16()) return bf16dot_gemm_512(iters);
#endif
    (void)iters;
    return 0;
}

double qk_limits_read(const void *buf, size_t bytes) {
#if defined(__x86_64__)
    if (qk_tier_supported(QK_TIER_AVX2)) return read_256(buf, bytes);
#elif defined(__aarch64__)
    if (qk_tier_supported(QK_TIER_NEON)) return read_neon(buf, bytes);
#endif
    const uint64_t *p = buf;
    uint64_t s = 0;
    for (size_t i = 0; i < bytes / 8; i++) s += p[i];
    return (double)s;
}
