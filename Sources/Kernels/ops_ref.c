/*
 * ops_ref.c: scalar reference twins of the element-wise and row operations, rope and the conversions.
 * Plain loops with libm; they define the semantics the SIMD tiers are tested against. Formulas follow
 * PyTorch / transformers / diffusers (provenance at each function).
 */
#include "qk_ops_internal.h"
#include <math.h>
#include <string.h>

/* transformers Qwen2RMSNorm: x * rsqrt(mean(x^2) + eps), then weight * (that). f32 result; the mean is
   accumulated in double here (PyTorch sums in f32 pairwise: both are within a few ulp of the exact sum). */
void qk_rmsnorm_ref(const float *x, const float *weight, int64_t rows, int64_t dim, float eps, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        double ss = 0;
        for (int64_t i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float inv = 1.0f / sqrtf((float)(ss / (double)dim) + eps);
        for (int64_t i = 0; i < dim; i++) yr[i] = weight[i] * (xr[i] * inv);
    }
}

/* diffusers QwenImageRMS_norm: F.normalize(x, dim=C) * sqrt(C) * gamma (+ bias); F.normalize divides by
   max(||x||_2, 1e-12). */
void qk_l2norm_ref(const float *x, const float *gamma, const float *bias, int64_t rows, int64_t dim, float *y) {
    float scale = (float)sqrt((double)dim);
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        double ss = 0;
        for (int64_t i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float denom = fmaxf((float)sqrt(ss), 1e-12f);
        for (int64_t i = 0; i < dim; i++) {
            float v = xr[i] / denom * scale * gamma[i];
            yr[i] = bias ? v + bias[i] : v;
        }
    }
}

/* torch.nn.functional.silu: x / (1 + exp(-x)). */
static inline float silu1(float x) { return x / (1.0f + expf(-x)); }

void qk_silu_mul_ref(const float *gate, const float *up, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) out[i] = silu1(gate[i]) * up[i];
}

void qk_silu_ref(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = silu1(x[i]);
}

/* torch GELU (approximate='none'): x * 0.5 * (1 + erf(x / sqrt 2)). */
void qk_gelu_erf_ref(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] * 0.5f * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

/* torch GELU (approximate='tanh'): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
void qk_gelu_tanh_ref(float *x, int64_t n) {
    const float beta = 0.7978845608028654f, kappa = 0.044715f;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(beta * (v + kappa * v * v * v)));
    }
}

/* torch.nn.LayerNorm: (x - mean) / sqrt(var + eps) * weight + bias, biased variance; the sums in double. */
void qk_layernorm_ref(const float *x, const float *weight, const float *bias, int64_t rows, int64_t dim, float eps,
                      float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        double s = 0, ss = 0;
        for (int64_t i = 0; i < dim; i++) s += xr[i];
        float mean = (float)(s / (double)dim);
        for (int64_t i = 0; i < dim; i++) { double d = (double)xr[i] - mean; ss += d * d; }
        float inv = 1.0f / sqrtf((float)(ss / (double)dim) + eps);
        for (int64_t i = 0; i < dim; i++) yr[i] = (xr[i] - mean) * inv * weight[i] + bias[i];
    }
}

void qk_softmax_ref(float *x, int64_t rows, int64_t n) {
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * n;
        float m = -INFINITY;
        for (int64_t i = 0; i < n; i++) m = fmaxf(m, xr[i]);
        double s = 0;
        for (int64_t i = 0; i < n; i++) { xr[i] = expf(xr[i] - m); s += xr[i]; }
        float inv = (float)(1.0 / s);
        for (int64_t i = 0; i < n; i++) xr[i] *= inv;
    }
}

/* transformers rotate_half: x * cos + rotate_half(x) * sin with rotate_half(x) = [-x2, x1]. */
void qk_rope_ref(float *x, int64_t rows, int64_t heads, int64_t head_dim, int64_t row_stride,
                 const float *cos, const float *sin) {
    int64_t d = head_dim / 2;
    for (int64_t r = 0; r < rows; r++) {
        const float *c = cos + r * d, *s = sin + r * d;
        for (int64_t h = 0; h < heads; h++) {
            float *xh = x + r * row_stride + h * head_dim;
            for (int64_t i = 0; i < d; i++) {
                /* products in their own statements: C lets a compiler fuse `a * c - b * s` into one FMA
                   (clang does on aarch64, where FMA is baseline); the SIMD tiers round both products */
                float a = xh[i], b = xh[i + d];
                float ac = a * c[i], bs = b * s[i], bc = b * c[i], as = a * s[i];
                xh[i] = ac - bs;
                xh[i + d] = bc + as;
            }
        }
    }
}

void qk_bf16_to_f32_ref(const uint16_t *x, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = qk_cvt_bf16_to_f32_1(x[i]);
}
void qk_f16_to_f32_ref(const uint16_t *x, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = qk_cvt_f16_to_f32_1(x[i]);
}
void qk_f32_to_bf16_ref(const float *x, int64_t n, uint16_t *y) {
    for (int64_t i = 0; i < n; i++) y[i] = qk_cvt_f32_to_bf16_1(x[i]);
}
void qk_f32_to_f16_ref(const float *x, int64_t n, uint16_t *y) {
    for (int64_t i = 0; i < n; i++) y[i] = qk_cvt_f32_to_f16_1(x[i]);
}

/* Nearest x2 (diffusers Upsample with mode "nearest-exact", identical to "nearest" at scale 2):
   y[2i + a, 2j + b, :] = x[i, j, :]. */
void qk_upsample2x_ref(const float *x, int64_t h, int64_t w, int64_t c, float *y) {
    for (int64_t i = 0; i < h; i++) {
        float *y0 = y + (2 * i) * (2 * w) * c;
        for (int64_t j = 0; j < w; j++) {
            const float *src = x + (i * w + j) * c;
            memcpy(y0 + (2 * j) * c, src, (size_t)c * sizeof(float));
            memcpy(y0 + (2 * j + 1) * c, src, (size_t)c * sizeof(float));
        }
        memcpy(y0 + 2 * w * c, y0, (size_t)(2 * w * c) * sizeof(float));
    }
}
