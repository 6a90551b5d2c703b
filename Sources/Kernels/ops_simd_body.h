/*
 * ops_simd_body.h: element-wise / row / rope / conversion kernels written once over the vector
 * vocabulary of simd_avx2.h or simd_avx512.h (V, VL, vld, vfma, ...); ops_avx2.c and ops_avx512.c
 * include it after their vocabulary to instantiate QK_SFX(qk_<op>) for their tier.
 * Tails use masked loads/stores (no scalar tails, no reads past the end).
 */
#include "qk_ops_internal.h"
#include "simd_math.h"

static inline V vsilu(V x) { return vdiv(x, vadd(vset(1.0f), vexp(vsub(vzero(), x)))); }

/* GELU(x) = x * Phi(x), Phi(x) = erfc(-x / sqrt 2) / 2. erfc(z), z >= 0, by the Chebyshev fit
   t exp(-z^2 + P(t)), t = 1 / (1 + z/2) (Numerical Recipes erfcc: relative error < 1.2e-7 for all
   z >= 0), so Phi keeps its relative accuracy in the far negative tail where 1 + erf(.) cancels. */
static inline V vgelu(V x) {
    V z = vmul(vabs(x), vset(0.70710678118654752f));
    V t = vdiv(vset(1.0f), vfma(z, vset(0.5f), vset(1.0f)));
    V p = vset(0.17087277f);
    p = vfma(p, t, vset(-0.82215223f));
    p = vfma(p, t, vset(1.48851587f));
    p = vfma(p, t, vset(-1.13520398f));
    p = vfma(p, t, vset(0.27886807f));
    p = vfma(p, t, vset(-0.18628806f));
    p = vfma(p, t, vset(0.09678418f));
    p = vfma(p, t, vset(0.37409196f));
    p = vfma(p, t, vset(1.00002368f));
    p = vfma(p, t, vset(-1.26551223f));
    V half_erfc = vmul(vset(0.5f), vmul(t, vexp(vfnma(z, z, p))));  /* Phi(-|x|) */
    V phi = vsel_lt0(x, half_erfc, vsub(vset(1.0f), half_erfc));
    return vmul(x, phi);
}

void QK_SFX(qk_silu_mul)(const float *gate, const float *up, int64_t n, float *out) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vst(out + i, vmul(vsilu(vld(gate + i)), vld(up + i)));
    if (i < n) {
        VM m = vmask(n - i);
        vstm(out + i, m, vmul(vsilu(vldm(gate + i, m)), vldm(up + i, m)));
    }
}

void QK_SFX(qk_silu)(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vst(x + i, vsilu(vld(x + i)));
    if (i < n) {
        VM m = vmask(n - i);
        vstm(x + i, m, vsilu(vldm(x + i, m)));
    }
}

void QK_SFX(qk_gelu_erf)(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vst(x + i, vgelu(vld(x + i)));
    if (i < n) {
        VM m = vmask(n - i);
        vstm(x + i, m, vgelu(vldm(x + i, m)));
    }
}

/* GELU, tanh form: 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3). For
   x << 0, exp overflows to inf and the result is -0 (torch gives -0 or a denormal there). */
static inline V vgelu_tanh(V x) {
    V x2 = vmul(x, x);
    V u2 = vmul(vmul(x, vset(-2.0f * 0.7978845608028654f)), vfma(x2, vset(0.044715f), vset(1.0f)));  /* -2u */
    return vdiv(x, vadd(vset(1.0f), vexp(u2)));
}

void QK_SFX(qk_gelu_tanh)(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vst(x + i, vgelu_tanh(vld(x + i)));
    if (i < n) {
        VM m = vmask(n - i);
        vstm(x + i, m, vgelu_tanh(vldm(x + i, m)));
    }
}

/* sum of squares of x[0, n) with four independent accumulators */
static inline float sumsq(const float *x, int64_t n) {
    V a0 = vzero(), a1 = vzero(), a2 = vzero(), a3 = vzero();
    int64_t i = 0;
    for (; i + 4 * VL <= n; i += 4 * VL) {
        V x0 = vld(x + i), x1 = vld(x + i + VL), x2 = vld(x + i + 2 * VL), x3 = vld(x + i + 3 * VL);
        a0 = vfma(x0, x0, a0); a1 = vfma(x1, x1, a1); a2 = vfma(x2, x2, a2); a3 = vfma(x3, x3, a3);
    }
    for (; i + VL <= n; i += VL) { V x0 = vld(x + i); a0 = vfma(x0, x0, a0); }
    if (i < n) { V x0 = vldm(x + i, vmask(n - i)); a1 = vfma(x0, x0, a1); }
    return vhsum(vadd(vadd(a0, a1), vadd(a2, a3)));
}

void QK_SFX(qk_rmsnorm)(const float *x, const float *weight, int64_t rows, int64_t dim, float eps, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        V inv = vset(1.0f / sqrtf(sumsq(xr, dim) / (float)dim + eps));
        int64_t i = 0;
        for (; i + VL <= dim; i += VL) vst(yr + i, vmul(vld(weight + i), vmul(vld(xr + i), inv)));
        if (i < dim) {
            VM m = vmask(dim - i);
            vstm(yr + i, m, vmul(vldm(weight + i, m), vmul(vldm(xr + i, m), inv)));
        }
    }
}

/* Two passes over the row: the mean, then the variance of x - mean (as stable as torch's Welford). */
void QK_SFX(qk_layernorm)(const float *x, const float *weight, const float *bias, int64_t rows, int64_t dim,
                          float eps, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        V s0 = vzero(), s1 = vzero();
        int64_t i = 0;
        for (; i + 2 * VL <= dim; i += 2 * VL) { s0 = vadd(s0, vld(xr + i)); s1 = vadd(s1, vld(xr + i + VL)); }
        for (; i < dim; i += VL) s0 = vadd(s0, vldm(xr + i, vmask(dim - i < VL ? dim - i : VL)));
        float mean = vhsum(vadd(s0, s1)) / (float)dim;
        V vm = vset(mean), q0 = vzero();
        for (i = 0; i + VL <= dim; i += VL) { V d = vsub(vld(xr + i), vm); q0 = vfma(d, d, q0); }
        float tail = 0;   /* masked-off lanes would add mean^2: the tail in scalar */
        for (; i < dim; i++) { float d = xr[i] - mean; tail += d * d; }
        V inv = vset(1.0f / sqrtf((vhsum(q0) + tail) / (float)dim + eps));
        for (i = 0; i < dim; i += VL) {
            VM m = vmask(dim - i < VL ? dim - i : VL);
            vstm(yr + i, m, vfma(vmul(vsub(vldm(xr + i, m), vm), inv), vldm(weight + i, m), vldm(bias + i, m)));
        }
    }
}

void QK_SFX(qk_l2norm)(const float *x, const float *gamma, const float *bias, int64_t rows, int64_t dim, float *y) {
    V scale = vset((float)sqrt((double)dim));
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        V denom = vset(fmaxf(sqrtf(sumsq(xr, dim)), 1e-12f));
        for (int64_t i = 0; i < dim; i += VL) {
            VM m = vmask(dim - i < VL ? dim - i : VL);
            V v = vmul(vmul(vdiv(vldm(xr + i, m), denom), scale), vldm(gamma + i, m));
            if (bias) v = vadd(v, vldm(bias + i, m));
            vstm(yr + i, m, v);
        }
    }
}

void QK_SFX(qk_softmax)(float *x, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * n;
        V mx = vset(-INFINITY);
        int64_t i = 0;
        for (; i + VL <= n; i += VL) mx = vmax(mx, vld(xr + i));
        float m = vhmax(mx);
        for (; i < n; i++) m = fmaxf(m, xr[i]);
        V vm = vset(m), s = vzero();
        for (i = 0; i + VL <= n; i += VL) {
            V e = vexp(vsub(vld(xr + i), vm));
            vst(xr + i, e);
            s = vadd(s, e);
        }
        if (i < n) {
            VM mk = vmask(n - i);
            V e = vexp(vsub(vldm(xr + i, mk), vm));
            vstm(xr + i, mk, e);
            s = vadd(s, vldm(xr + i, mk));
        }
        V inv = vset(1.0f / vhsum(s));
        for (i = 0; i + VL <= n; i += VL) vst(xr + i, vmul(vld(xr + i), inv));
        if (i < n) { VM mk = vmask(n - i); vstm(xr + i, mk, vmul(vldm(xr + i, mk), inv)); }
    }
}

/* Same operations and rounding order as qk_rope_ref (two products, then the sum): bit-identical. */
void QK_SFX(qk_rope)(float *x, int64_t rows, int64_t heads, int64_t head_dim, int64_t row_stride,
                     const float *cos, const float *sin) {
    int64_t d = head_dim / 2;
    for (int64_t r = 0; r < rows; r++) {
        const float *c = cos + r * d, *s = sin + r * d;
        for (int64_t h = 0; h < heads; h++) {
            float *xh = x + r * row_stride + h * head_dim;
            for (int64_t i = 0; i < d; i += VL) {
                VM m = vmask(d - i < VL ? d - i : VL);
                V a = vldm(xh + i, m), b = vldm(xh + i + d, m), cv = vldm(c + i, m), sv = vldm(s + i, m);
                vstm(xh + i, m, vsub(vmul(a, cv), vmul(b, sv)));
                vstm(xh + i + d, m, vadd(vmul(b, cv), vmul(a, sv)));
            }
        }
    }
}

void QK_SFX(qk_bf16_to_f32)(const uint16_t *x, int64_t n, float *y) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vst(y + i, vld_bf16(x + i));
    for (; i < n; i++) y[i] = qk_cvt_bf16_to_f32_1(x[i]);
}
void QK_SFX(qk_f16_to_f32)(const uint16_t *x, int64_t n, float *y) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vst(y + i, vld_f16(x + i));
    for (; i < n; i++) y[i] = qk_cvt_f16_to_f32_1(x[i]);
}
void QK_SFX(qk_f32_to_bf16)(const float *x, int64_t n, uint16_t *y) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vst_bf16(y + i, vld(x + i));
    for (; i < n; i++) y[i] = qk_cvt_f32_to_bf16_1(x[i]);
}
void QK_SFX(qk_f32_to_f16)(const float *x, int64_t n, uint16_t *y) {
    int64_t i = 0;
    for (; i + VL <= n; i += VL) vst_f16(y + i, vld(x + i));
    for (; i < n; i++) y[i] = qk_cvt_f32_to_f16_1(x[i]);
}
