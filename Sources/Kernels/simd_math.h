/* simd_math.h: vector exp over the vocabulary of simd_avx2.h / simd_avx512.h (included by the *_simd_body.h). */
#ifndef QK_SIMD_MATH_H
#define QK_SIMD_MATH_H
/* exp(x), about 1 ulp on [-87, 88]; overflow to inf, underflow to (sub)normal/0; NaN propagates.
   Cephes expf: x = n ln2 + r, |r| <= ln2 / 2, degree-6 polynomial, then scale by 2^n. */
static inline V vexp(V x) {
    x = vmin(vset(88.8f), x);
    x = vmax(vset(-104.0f), x);
    V n = vround(vmul(x, vset(1.44269504088896341f)));
    V r = vfnma(n, vset(0.693359375f), x);
    r = vfnma(n, vset(-2.12194440e-4f), r);
    V p = vset(1.9875691500e-4f);
    p = vfma(p, r, vset(1.3981999507e-3f));
    p = vfma(p, r, vset(8.3334519073e-3f));
    p = vfma(p, r, vset(4.1665795894e-2f));
    p = vfma(p, r, vset(1.6666665459e-1f));
    p = vfma(p, r, vset(5.0000001201e-1f));
    p = vfma(p, vmul(r, r), vadd(r, vset(1.0f)));
    return vscale2(p, n);
}

#endif
