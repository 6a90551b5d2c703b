/* matmul_avx512bf16.c: the bf16-dot kernel for QK_BF16 weights (qk_set_bf16_dot), AVX-512 BF16. One zmm
   holds one 16-row block of outputs, as in matmul_avx512.c. The packed bf16 block stores a k pair as
   [kk: rows 0..15][kk+1: rows 0..15]; one vpermw turns it into the 16 (kk, kk+1) pairs vdpbf16ps wants,
   shared by every activation row of the tile. vdpbf16ps adds the odd product, rounds, then the even
   product, rounds (DAZ in, FTZ out): exactly the arithmetic of qk_matmul_internal.h. */
#include "qk_matmul_internal.h"
#if defined(__x86_64__)
#include <immintrin.h>

#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))), apply_to = function)

#define AI static inline __attribute__((always_inline))
#define UNROLL _Pragma("clang loop unroll(full)")

AI void store_block(const qk_mm_args *a, int64_t t, int64_t rb, __m512 v) {
    int64_t col = rb * QK_NR, rem = a->n - col;
    __mmask16 mk = rem >= 16 ? 0xffff : (__mmask16)((1u << rem) - 1);
    if (a->bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mk, a->bias + col));
    _mm512_mask_storeu_ps(a->y + t * a->n + col, mk, v);
}

AI void btile(const qk_mm_args *a, const int MR, const int NB, int64_t t0, int64_t rb) {
    /* word 2j <- row j at kk (word j), word 2j + 1 <- row j at kk + 1 (word 16 + j) */
    const __m512i idx = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                         23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    __m512 acc[12][4];
    UNROLL for (int i = 0; i < MR; i++) for (int j = 0; j < NB; j++) acc[i][j] = _mm512_setzero_ps();
    const uint8_t *w0 = a->w + (size_t)rb * a->rb_bytes;
    const size_t rbb = a->rb_bytes;
    const int64_t np = (a->k + 1) / 2;
    const int32_t *xr[12];
    UNROLL for (int i = 0; i < MR; i++) xr[i] = (const int32_t *)(a->xq + (size_t)(t0 + i) * a->xq_stride);
    for (int64_t p = 0; p < np; p++) {
        __m512bh v[4];
        UNROLL for (int j = 0; j < NB; j++)
            v[j] = (__m512bh)_mm512_permutexvar_epi16(idx, _mm512_loadu_si512(w0 + j * rbb + p * 64));
        UNROLL for (int i = 0; i < MR; i++) {
            __m512bh xb = (__m512bh)_mm512_set1_epi32(xr[i][p]);
            UNROLL for (int j = 0; j < NB; j++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], v[j], xb);
        }
    }
    UNROLL for (int i = 0; i < MR; i++) for (int j = 0; j < NB; j++) store_block(a, t0 + i, rb + j, acc[i][j]);
}

static void kern_bf16dot(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1) {
    if (m1 - m0 < 4) {   /* GEMV-like: one row at a time, 4 blocks = 4 independent chains */
        for (int64_t rb = rb0; rb < rb1; rb += 4) {
            int64_t nbl = rb1 - rb < 4 ? rb1 - rb : 4;
            for (int64_t t = m0; t < m1; t++) {
                if (nbl == 4) btile(a, 1, 4, t, rb);
                else if (nbl == 3) btile(a, 1, 3, t, rb);
                else if (nbl == 2) btile(a, 1, 2, t, rb);
                else btile(a, 1, 1, t, rb);
            }
        }
        return;
    }
    for (int64_t rb = rb0; rb < rb1; rb += 2) {
        int nb2 = rb + 1 < rb1;
        int64_t t = m0;
        if (nb2) {
            for (; t + 12 <= m1; t += 12) btile(a, 12, 2, t, rb);
            for (; t + 4 <= m1; t += 4) btile(a, 4, 2, t, rb);
            for (; t < m1; t++) btile(a, 1, 2, t, rb);
        } else {
            for (; t + 12 <= m1; t += 12) btile(a, 12, 1, t, rb);
            for (; t + 4 <= m1; t += 4) btile(a, 4, 1, t, rb);
            for (; t < m1; t++) btile(a, 1, 1, t, rb);
        }
    }
}

#pragma clang attribute pop

const qk_mm_kernel qk_mm_bf16dot_avx512bf16 = kern_bf16dot;
#endif
