/*
 * simd_avx512.h: the vector vocabulary of the *_simd.inc kernel templates for the AVX-512 tier
 * (16 f32 lanes). Include only from a file that wraps it in
 * `#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c"))), ...)`.
 */
#include <immintrin.h>
#include <stdint.h>

#define QK_SFX(name) name##_avx512
#define VL 16
typedef __m512 V;
typedef __mmask16 VM;

static inline V vld(const float *p) { return _mm512_loadu_ps(p); }
static inline void vst(float *p, V v) { _mm512_storeu_ps(p, v); }
static inline V vset(float x) { return _mm512_set1_ps(x); }
static inline V vzero(void) { return _mm512_setzero_ps(); }
static inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
static inline V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
static inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
static inline V vdiv(V a, V b) { return _mm512_div_ps(a, b); }
static inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }
static inline V vmin(V a, V b) { return _mm512_min_ps(a, b); }
static inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
static inline V vfnma(V a, V b, V c) { return _mm512_fnmadd_ps(a, b, c); }
static inline V vabs(V a) { return _mm512_abs_ps(a); }
static inline V vround(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline V vsel_lt0(V x, V a, V b) {
    __mmask16 m = _mm512_movepi32_mask(_mm512_castps_si512(x));
    return _mm512_mask_blend_ps(m, b, a);
}

static inline VM vmask(int64_t n) { return (VM)((1u << n) - 1u); }
static inline V vldm(const float *p, VM m) { return _mm512_maskz_loadu_ps(m, p); }
static inline void vstm(float *p, VM m, V v) { _mm512_mask_storeu_ps(p, m, v); }

static inline float vhsum(V v) { return _mm512_reduce_add_ps(v); }
static inline float vhmax(V v) { return _mm512_reduce_max_ps(v); }

static inline V vscale2(V p, V n) { return _mm512_scalef_ps(p, n); }

static inline V vld_bf16(const uint16_t *p) {
    __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
static inline V vld_f16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static inline void vst_f16(uint16_t *p, V v) {
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
static inline void vst_bf16(uint16_t *p, V v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    r = _mm512_mask_blend_epi32(nan, r, _mm512_set1_epi32(0x7fc0));
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(r));
}

/* attention register blocking: S^T tile 4 keys x 4 query vectors, PV tile 4 rows x up to 6 vectors */
#define ATT_QV 4
#define ATT_CV 6
static inline V viota(void) { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
static inline V vsel_lt(V a, V b, V x, V y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_LT_OQ), y, x); }
static inline V vsel_eq(V a, V b, V x, V y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ), y, x); }
