/* limits.c: the simple loops that measure this machine's limits (qwen-bench limits): peak f32 FMA and
   int8 dot rates with independent register accumulators, and streaming read bandwidth. Not kernels;
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
#endif

double qk_limits_fma(int64_t iters) {
#if defined(__x86_64__)
    if (qk_tier_supported(QK_TIER_AVX512)) return fma_peak_512(iters);
    if (qk_tier_supported(QK_TIER_AVX2)) return fma_peak_256(iters);
#endif
    (void)iters;
    return 0;
}

double qk_limits_int8(int64_t iters) {
#if defined(__x86_64__)
    if (qk_tier_supported(QK_TIER_AVX512)) return vnni_peak_512(iters);
    if (qk_tier_supported(QK_TIER_AVX2)) return int8_peak_256(iters);
#endif
    (void)iters;
    return 0;
}

double qk_limits_int8_gemm(int64_t iters) {
#if defined(__x86_64__)
    if (qk_tier_supported(QK_TIER_AVX512)) return vnni_gemm_512(iters);
    if (qk_tier_supported(QK_TIER_AVX2)) return int8_peak_256(iters);
#endif
    (void)iters;
    return 0;
}

double qk_limits_read(const void *buf, size_t bytes) {
#if defined(__x86_64__)
    if (qk_tier_supported(QK_TIER_AVX2)) return read_256(buf, bytes);
#endif
    const uint64_t *p = buf;
    uint64_t s = 0;
    for (size_t i = 0; i < bytes / 8; i++) s += p[i];
    return (double)s;
}
