/* pack.c: weight layout sizes, packing (f32 / bf16 sources) and row dequantization.
   The layout is specified in include/qk_matmul_internal.h. Plain C; runs at conversion time. */
#include "qk_matmul_internal.h"
#include <math.h>
#include <string.h>

_Static_assert(QK_NR == 16, "the packed layout is pinned to 16-row blocks");
_Static_assert(QK_ABLK == 32, "activation blocks are pinned to 32");
_Static_assert(QK_NR * 4 == 64, "one k4 step of a Q8 block is one 64-byte vector");

static int group_ok(qk_scheme s, int32_t g) {
    switch (s) {
    case QK_F32: case QK_BF16: case QK_F16: return g == 0;
    case QK_Q8: case QK_Q4: return g == 0 || g == 32 || g == 64 || g == 128;
    }
    return 0;
}

int64_t qk_weight_kp(qk_scheme s, int32_t g, int64_t k) {
    if (!group_ok(s, g) || k <= 0) return 0;
    if (s == QK_Q8 || s == QK_Q4) { int64_t a = g ? g : QK_ABLK; return (k + a - 1) / a * a; }
    return k;
}

int64_t qk_weight_ngroups(qk_scheme s, int32_t g, int64_t k) {
    int64_t kp = qk_weight_kp(s, g, k);
    if (!kp) return 0;
    if (s == QK_Q8 || s == QK_Q4) return g ? kp / g : 1;
    return 0;
}

size_t qk_weight_scales_bytes(qk_scheme s, int32_t g, int64_t k) {
    return (size_t)qk_weight_ngroups(s, g, k) * QK_NR * 4;
}

size_t qk_weight_block_bytes(qk_scheme s, int32_t g, int64_t k) {
    int64_t kp = qk_weight_kp(s, g, k);
    if (!kp) return 0;
    switch (s) {
    case QK_F32: return (size_t)kp * 64;
    case QK_BF16: case QK_F16: return ((size_t)kp * 32 + 63) / 64 * 64;
    case QK_Q8: return qk_weight_scales_bytes(s, g, k) + (size_t)kp * 16;
    case QK_Q4: return qk_weight_scales_bytes(s, g, k) + (size_t)kp * 8;
    }
    return 0;
}

size_t qk_weight_bytes(qk_scheme s, int32_t g, int64_t n, int64_t k) {
    if (n <= 0) return 0;
    size_t rb = qk_weight_block_bytes(s, g, k);
    return rb * (size_t)((n + QK_NR - 1) / QK_NR);
}

int64_t qk_weight_row_align(qk_scheme s) { (void)s; return QK_NR; }

/* ---- scalar conversions ------------------------------------------------------------------------- */
float qk_f16_bits_to_f32_scalar(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    union { uint32_t u; float f; } v;
    if (e == 0) {
        float f = ldexpf((float)m, -24);
        return sign ? -f : f;
    }
    if (e == 31) v.u = sign | 0x7f800000u | (m << 13);
    else v.u = sign | ((e + 112) << 23) | (m << 13);
    return v.f;
}

static uint16_t f32_to_bf16_rne(float f) {
    union { float f; uint32_t u; } v = { f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);  /* quiet NaN */
    uint32_t r = v.u + 0x7fff + ((v.u >> 16) & 1);
    return (uint16_t)(r >> 16);
}

/* Round to nearest even; returns -1 when a finite value does not fit in f16 (|x| > 65504). */
static int f32_to_f16_rne(float f, uint16_t *out) {
    union { float f; uint32_t u; } v = { f };
    uint32_t sign = (v.u >> 16) & 0x8000, a = v.u & 0x7fffffffu;
    if (a >= 0x47800000u) return -1;   /* >= 65536, inf or NaN */
    if (a < 0x38800000u) {    /* below the smallest normal f16 (2^-14): subnormal or zero */
        float af = fabsf(f);
        float q = nearbyintf(af * 16777216.0f);   /* units of 2^-24; exact scaling, RNE */
        *out = (uint16_t)(sign | (uint16_t)q);    /* q <= 1024 carries into the exponent correctly */
        return 0;
    }
    uint32_t e = (a >> 23) - 112, m = a & 0x7fffff;
    uint32_t r = (e << 10) | (m >> 13);
    uint32_t rem = m & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    if (r >= 0x7c00) return -1;   /* rounds above 65504 */
    *out = (uint16_t)(sign | r);
    return 0;
}

/* ---- weight quantization ------------------------------------------------------------------------ */
static int g_scale_search = 1;
void qk_set_weight_scale_search(int on) { g_scale_search = on ? 1 : 0; }

/* Squared error of quantizing v[len] with step d, codes clamped to [qmin, qmax]. Rounding is to
   nearest even through the 1.5 * 2^23 trick (exact for |v / d| < 2^22; here |v / d| <= qmax / 0.70).
   Sixteen float lanes summed in a fixed order, so the result (and the scale it picks) is the same on
   every machine and instruction set; the compiler maps the lanes onto whatever vectors it has. */
typedef float qk_f16v __attribute__((vector_size(64)));
#if !defined(__clang__)
typedef int32_t qk_i16v __attribute__((vector_size(64)));
#endif

/* The code of x at inverse step id, rounded to nearest even and clamped (the scalar twin of the lanes below). */
static inline float quant_code(float x, float id, float qmin, float qmax) {
#pragma clang fp contract(off)
    float r = (x * id + 12582912.0f) - 12582912.0f;
    return r > qmax ? qmax : r < qmin ? qmin : r;
}

static float group_sq_error(const float *v, int64_t len, float d, float qmin, float qmax) {
#pragma clang fp contract(off)   /* no fused multiply-adds: the same picks with or without FMA */
    const float magic = 12582912.0f, id = 1.0f / d;
    const qk_f16v lo = (qk_f16v){0} + qmin, hi = (qk_f16v){0} + qmax;
    qk_f16v acc = {0};
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        qk_f16v x, r;
        memcpy(&x, v + i, sizeof x);
        r = (x * id + magic) - magic;
#if defined(__clang__)
        r = __builtin_elementwise_max(__builtin_elementwise_min(r, hi), lo);
#else   /* GCC (used only to cross-check the kernels): the same clamp as lane masks (codes are never NaN) */
        qk_i16v above = r > hi, below = r < lo;
        r = (qk_f16v)(((qk_i16v)r & ~above) | ((qk_i16v)hi & above));
        r = (qk_f16v)(((qk_i16v)r & ~below) | ((qk_i16v)lo & below));
#endif
        qk_f16v e = x - r * d;
        acc += e * e;
    }
    float tail = 0;
    for (; i < len; i++) {
        float e = v[i] - quant_code(v[i], id, qmin, qmax) * d;
        tail += e * e;
    }
    float sum = 0;
    for (int l = 0; l < 16; l++) sum += acc[l];
    return sum + tail;
}

/* Quantizes v[len] (zero padded beyond by the caller) to q in [qmin, qmax]; returns d. */
static float quant_group(const float *v, int64_t len, int qmin, int qmax, int8_t *q) {
#pragma clang fp contract(off)
    float amax = 0, smax = 0;
    for (int64_t i = 0; i < len; i++) {
        float a = fabsf(v[i]);
        if (a > amax) { amax = a; smax = v[i]; }
    }
    if (amax == 0) { for (int64_t i = 0; i < len; i++) q[i] = 0; return 0; }
    float best_d = amax / (float)qmax;
    if (g_scale_search) {
        /* Candidates: the step that maps amax onto qmax, and smaller steps that clip the largest few
           weights (f < 1: d = f * amax / qmax). For an asymmetric range (Q4: [-8, 7]) also the steps
           that map the signed extreme onto qmin, clipped the same way; the step is negative when that
           extreme is positive (w ~= d * q either way), so both signs of extreme get all 16 levels, as
           ggml's Q4_0 does. Least squared error wins (first on ties). */
        static const float grid[] = { 1.0f, 0.95f, 0.90f, 0.85f, 0.80f, 0.75f, 0.70f };
        enum { NG = sizeof grid / sizeof grid[0] };
        float cands[2 * NG]; int nc = 0;
        for (int i = 0; i < NG; i++) cands[nc++] = grid[i] * amax / (float)qmax;
        if (-qmin > qmax)
            for (int i = 0; i < NG; i++) cands[nc++] = grid[i] * smax / (float)qmin;
        float best_err = INFINITY;
        for (int c = 0; c < nc; c++) {
            float err = group_sq_error(v, len, cands[c], (float)qmin, (float)qmax);
            if (err < best_err) { best_err = err; best_d = cands[c]; }
        }
    }
    float id = 1.0f / best_d;
    for (int64_t i = 0; i < len; i++) q[i] = (int8_t)quant_code(v[i], id, (float)qmin, (float)qmax);
    return best_d;
}

/* Packs one logical row (f32, length k) into lane `lane` of the block at `blk`. */
static int pack_row(qk_scheme s, int32_t g, int64_t k, const float *row, uint8_t *blk, int lane, int8_t *qtmp) {
    int64_t kp = qk_weight_kp(s, g, k);
    switch (s) {
    case QK_F32: {
        float *d = (float *)blk;
        for (int64_t i = 0; i < k; i++) d[i * QK_NR + lane] = row[i];
        return 0;
    }
    case QK_BF16: {
        uint16_t *d = (uint16_t *)blk;
        for (int64_t i = 0; i < k; i++) d[i * QK_NR + lane] = f32_to_bf16_rne(row[i]);
        return 0;
    }
    case QK_F16: {
        uint16_t *d = (uint16_t *)blk;
        for (int64_t i = 0; i < k; i++) if (f32_to_f16_rne(row[i], &d[i * QK_NR + lane])) return -1;
        return 0;
    }
    case QK_Q8: case QK_Q4: {
        for (int64_t i = 0; i < k; i++) if (!isfinite(row[i])) return -1;
        int64_t gl = g ? g : kp, ng = kp / gl;
        float *scales = (float *)blk;
        uint8_t *data = blk + qk_weight_scales_bytes(s, g, k);
        for (int64_t gi = 0; gi < ng; gi++) {
            int64_t k0 = gi * gl, len = k - k0 < gl ? k - k0 : gl;
            if (len < 0) len = 0;
            float d = quant_group(row + k0, len, s == QK_Q8 ? -127 : -8, s == QK_Q8 ? 127 : 7, qtmp + k0);
            for (int64_t i = k0 + len; i < k0 + gl; i++) qtmp[i] = 0;
            scales[gi * QK_NR + lane] = d;
        }
        if (s == QK_Q8) {
            for (int64_t i = 0; i < kp; i++) data[(i >> 2) * 64 + lane * 4 + (i & 3)] = (uint8_t)qtmp[i];
        } else {
            for (int64_t p = 0; p < kp / 8; p++)
                for (int j = 0; j < 4; j++) {
                    int lo = qtmp[8 * p + j] + 8, hi = qtmp[8 * p + 4 + j] + 8;
                    data[p * 64 + lane * 4 + j] = (uint8_t)(lo | (hi << 4));
                }
        }
        return 0;
    }
    }
    return -1;
}

static int check_chunk(qk_scheme s, int32_t g, int64_t n, int64_t k, int64_t row0, int64_t nrows,
                       const void *w, void *out) {
    if (!w || !out || n <= 0 || k <= 0 || !qk_weight_kp(s, g, k)) return -1;
    if (row0 < 0 || nrows <= 0 || row0 + nrows > n || row0 % QK_NR) return -1;
    if (nrows % QK_NR && row0 + nrows != n) return -1;
    return 0;
}

typedef float *(*row_src_fn)(const void *w, int64_t r, int64_t k, float *tmp);
static float *src_f32(const void *w, int64_t r, int64_t k, float *tmp) { (void)tmp; return (float *)w + r * k; }
static float *src_bf16(const void *w, int64_t r, int64_t k, float *tmp) {
    const uint16_t *p = (const uint16_t *)w + r * k;
    for (int64_t i = 0; i < k; i++) tmp[i] = qk_bf16_bits_to_f32(p[i]);
    return tmp;
}

static int pack_rows(qk_scheme s, int32_t g, int64_t n, int64_t k, int64_t row0, int64_t nrows,
                     const void *w, row_src_fn src, void *out) {
    if (check_chunk(s, g, n, k, row0, nrows, w, out)) return -1;
    int64_t kp = qk_weight_kp(s, g, k);
    size_t rbb = qk_weight_block_bytes(s, g, k);
    /* scratch: converted row (k floats) + quantized row (kp bytes); allocated once per thread */
    float *tmp = qk_tls_scratch(3, (size_t)k * 4 + (size_t)kp + 64);
    if (!tmp) return -1;
    int8_t *qtmp = (int8_t *)(tmp + k);
    int64_t b0 = row0 / QK_NR, b1 = (row0 + nrows + QK_NR - 1) / QK_NR;
    for (int64_t b = b0; b < b1; b++) {
        uint8_t *blk = (uint8_t *)out + (size_t)b * rbb;
        memset(blk, 0, rbb);
        for (int lane = 0; lane < QK_NR; lane++) {
            int64_t r = b * QK_NR + lane;
            if (r >= n) break;
            if (pack_row(s, g, k, src(w, r - row0, k, tmp), blk, lane, qtmp)) return -1;
        }
    }
    return 0;
}

int qk_weight_pack_rows(qk_scheme s, int32_t g, int64_t n, int64_t k, int64_t row0, int64_t nrows,
                        const float *w, void *out) {
    return pack_rows(s, g, n, k, row0, nrows, w, src_f32, out);
}

int qk_weight_pack_rows_bf16(qk_scheme s, int32_t g, int64_t n, int64_t k, int64_t row0, int64_t nrows,
                             const uint16_t *w, void *out) {
    if (s != QK_BF16) return pack_rows(s, g, n, k, row0, nrows, w, src_bf16, out);
    if (check_chunk(s, g, n, k, row0, nrows, w, out)) return -1;
    size_t rbb = qk_weight_block_bytes(s, g, k);
    int64_t b0 = row0 / QK_NR, b1 = (row0 + nrows + QK_NR - 1) / QK_NR;
    for (int64_t b = b0; b < b1; b++) {   /* bit-exact copy, transposed into the block layout */
        uint16_t *blk = (uint16_t *)((uint8_t *)out + (size_t)b * rbb);
        memset(blk, 0, rbb);
        for (int lane = 0; lane < QK_NR; lane++) {
            int64_t r = b * QK_NR + lane;
            if (r >= n) break;
            const uint16_t *src = w + (r - row0) * k;
            for (int64_t i = 0; i < k; i++) blk[i * QK_NR + lane] = src[i];
        }
    }
    return 0;
}

void qk_weight_dequant_row(const qk_weight *w, int64_t row, float *out) {
    if (!w || !out || row < 0 || row >= w->n) return;
    qk_scheme s = w->scheme;
    int64_t k = w->k, kp = qk_weight_kp(s, w->group, k);
    if (!kp) return;
    size_t rbb = qk_weight_block_bytes(s, w->group, k);
    const uint8_t *blk = (const uint8_t *)w->data + (size_t)(row / QK_NR) * rbb;
    int lane = (int)(row % QK_NR);
    switch (s) {
    case QK_F32: for (int64_t i = 0; i < k; i++) out[i] = ((const float *)blk)[i * QK_NR + lane]; break;
    case QK_BF16: for (int64_t i = 0; i < k; i++) out[i] = qk_bf16_bits_to_f32(((const uint16_t *)blk)[i * QK_NR + lane]); break;
    case QK_F16: for (int64_t i = 0; i < k; i++) out[i] = qk_f16_bits_to_f32_scalar(((const uint16_t *)blk)[i * QK_NR + lane]); break;
    case QK_Q8: case QK_Q4: {
        int64_t gl = w->group ? w->group : kp;
        const float *scales = (const float *)blk;
        const uint8_t *data = blk + qk_weight_scales_bytes(s, w->group, k);
        for (int64_t i = 0; i < k; i++) {
            int q;
            if (s == QK_Q8) q = (int8_t)data[(i >> 2) * 64 + lane * 4 + (i & 3)];
            else {
                uint8_t byte = data[(i >> 3) * 64 + lane * 4 + (i & 3)];
                q = ((i & 4) ? (byte >> 4) : (byte & 15)) - 8;
            }
            out[i] = (float)q * scales[(i / gl) * QK_NR + lane];
        }
        break;
    }
    }
}
