/*
 * simd_avx2.h: the vector vocabulary of the *_simd.inc kernel templates for the AVX2 + FMA + F16C tier
 * (8 f32 lanes). Include only from a file that wraps it in
 * `#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)`.
 */
#include <immintrin.h>
#include <stdint.h>

#define QK_SFX(name) name##_avx2
#define VL 8
typedef __m256 V;
typedef __m256i VM; /* lane mask */

static inline V vld(const float *p) { return _mm256_loadu_ps(p); }
static inline void vst(float *p, V v) { _mm256_storeu_ps(p, v); }
static inline V vset(float x) { return _mm256_set1_ps(x); }
static inline V vzero(void) { return _mm256_setzero_ps(); }
static inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
static inline V vsub(V a, V b) { return _mm256_sub_ps(a, b); }
static inline V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
static inline V vdiv(V a, V b) { return _mm256_div_ps(a, b); }
/* vmax/vmin return b when either is NaN: pass the data as b to propagate NaN. */
static inline V vmax(V a, V b) { return _mm256_max_ps(a, b); }
static inline V vmin(V a, V b) { return _mm256_min_ps(a, b); }
static inline V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }   /* a * b + c */
static inline V vfnma(V a, V b, V c) { return _mm256_fnmadd_ps(a, b, c); } /* c - a * b */
static inline V vabs(V a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
static inline V vround(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
static inline V vsel_lt0(V x, V a, V b) { return _mm256_blendv_ps(b, a, x); } /* sign bit of x ? a : b */

static const int32_t qk_mask_table_avx2[16] = { -1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0 };
static inline VM vmask(int64_t n) { return _mm256_loadu_si256((const __m256i *)(qk_mask_table_avx2 + 8 - n)); }
static inline V vldm(const float *p, VM m) { return _mm256_maskload_ps(p, m); }
static inline void vstm(float *p, VM m, V v) { _mm256_maskstore_ps(p, m, v); }

static inline float vhsum(V v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float vhmax(V v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* p * 2^n for integral n in [-150, 128], via two exponent steps so subnormal and overflow results round
   once, like a real ldexp. */
static inline V vscale2(V p, V n) {
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    V s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    V s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}

/* ---- conversions: VL elements ---- */
static inline V vld_bf16(const uint16_t *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
static inline V vld_f16(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static inline void vst_f16(uint16_t *p, V v) {
    _mm_storeu_si128((__m128i *)p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
/* f32 -> bf16 round to nearest even; NaN -> 0x7fc0 (as c10::BFloat16). */
static inline void vst_bf16(uint16_t *p, V v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), nan);
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(packed));
}

/* attention register blocking: S^T tile 4 keys x 2 query vectors, PV tile 4 rows x 2 vectors (no spills in 16 ymm) */
#define ATT_QV 2
#define ATT_CV 2
static inline V viota(void) { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }
static inline V vsel_lt(V a, V b, V x, V y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_LT_OQ)); } /* a < b ? x : y */
static inline V vsel_eq(V a, V b, V x, V y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_EQ_OQ)); } /* a == b ? x : y */
