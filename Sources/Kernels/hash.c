/* hash.c: XXH64's bulk loop (the pack's payload checksum, Quant's XXH64): four 64-bit lanes, each
   acc = rotl(acc + input * P2, 31) * P1 per 8 input bytes. The ref tier runs the rounds in scalar
   code; the avx512 tier keeps the four lanes in one ymm (vpmullq, vprolq: AVX-512 DQ / VL), about 1.3x
   the scalar rate and 1.9x the Swift loop it replaces (one multiply chain per lane either way). Same
   value on every tier: integer arithmetic, no rounding. */
#include "qk_internal.h"
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define XXH_P1 0x9E3779B185EBCA87ull
#define XXH_P2 0xC2B2AE3D27D4EB4Full

static inline uint64_t xxh_round(uint64_t acc, uint64_t input) {
    acc += input * XXH_P2;
    acc = (acc << 31) | (acc >> 33);
    return acc * XXH_P1;
}

void qk_xxh64_stripes_ref(uint64_t v[4], const void *p, size_t nstripes) {
    const uint8_t *b = p;
    uint64_t a = v[0], c = v[1], d = v[2], e = v[3];
    for (size_t s = 0; s < nstripes; s++, b += 32) {
        uint64_t x[4];
        memcpy(x, b, 32);   /* little-endian hosts only (x86-64, aarch64 Linux), as the pack format */
        a = xxh_round(a, x[0]);
        c = xxh_round(c, x[1]);
        d = xxh_round(d, x[2]);
        e = xxh_round(e, x[3]);
    }
    v[0] = a; v[1] = c; v[2] = d; v[3] = e;
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512vl,avx512dq")))
void qk_xxh64_stripes_avx512(uint64_t v[4], const void *p, size_t nstripes) {
    const uint8_t *b = p;
    __m256i acc = _mm256_loadu_si256((const __m256i *)v);
    const __m256i p1 = _mm256_set1_epi64x((long long)XXH_P1), p2 = _mm256_set1_epi64x((long long)XXH_P2);
    for (size_t s = 0; s < nstripes; s++, b += 32) {
        __m256i x = _mm256_loadu_si256((const __m256i *)b);
        acc = _mm256_mullo_epi64(_mm256_rol_epi64(_mm256_add_epi64(acc, _mm256_mullo_epi64(x, p2)), 31), p1);
    }
    _mm256_storeu_si256((__m256i *)v, acc);
}
#endif

void qk_xxh64_stripes(uint64_t v[4], const void *p, size_t nstripes) {
#if defined(__x86_64__)
    if (qk_tier_current() >= QK_TIER_AVX512) { qk_xxh64_stripes_avx512(v, p, nstripes); return; }
#endif
    qk_xxh64_stripes_ref(v, p, nstripes);
}
