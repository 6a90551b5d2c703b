/* pack.c: weight layout sizes, packing (f32 / bf16 sources) and row dequantization.
   The layout is specified in include/qk_matmul_internal.h. Plain C; runs at conversion time. */
#include "qk_matmul_internal.h"
#include <math.h>
#include <pthread.h>
#include <string.h>

_Static_assert(QK_NR == 16, "the packed layout is pinned to 16-row blocks");
_Static_assert(QK_ABLK == 32, "activation blocks are pinned to 32");
_Static_assert(QK_NR * 4 == 64, "one k4 step of a Q8 block is one 64-byte vector");

static int group_ok(qk_scheme s, int32_t g) {
    switch (s) {
    case QK_F32: case QK_BF16: case QK_F16: return g == 0;
    case QK_Q8: case QK_Q4: return g == 0 || g == 32 || g == 64 || g == 128;
    case QK_Q4C: case QK_Q8S: case QK_Q5S: case QK_Q6S: return g == 32;
    }
    return 0;
}

int64_t qk_weight_kp(qk_scheme s, int32_t g, int64_t k) {
    if (!group_ok(s, g) || k <= 0) return 0;
    if (qk_scheme_is_int(s)) { int64_t a = g ? g : QK_ABLK; return (k + a - 1) / a * a; }
    return k;
}

int64_t qk_weight_ngroups(qk_scheme s, int32_t g, int64_t k) {
    int64_t kp = qk_weight_kp(s, g, k);
    if (!kp) return 0;
    if (qk_scheme_is_int(s)) return g ? kp / g : 1;
    return 0;
}

int64_t qk_weight_nsuper(qk_scheme s, int32_t g, int64_t k) {
    if (!qk_scheme_is_compact(s)) return 0;
    return (qk_weight_ngroups(s, g, k) + QK_SUPER_GROUPS - 1) / QK_SUPER_GROUPS;
}

size_t qk_weight_scales_bytes(qk_scheme s, int32_t g, int64_t k) {
    int64_t ng = qk_weight_ngroups(s, g, k);
    if (qk_scheme_is_compact(s))
        return (size_t)qk_weight_nsuper(s, g, k) * QK_NR * 4 + ((size_t)ng * QK_NR + 63) / 64 * 64;
    return (size_t)ng * QK_NR * 4;
}

size_t qk_weight_block_bytes(qk_scheme s, int32_t g, int64_t k) {
    int64_t kp = qk_weight_kp(s, g, k);
    if (!kp) return 0;
    switch (s) {
    case QK_F32: return (size_t)kp * 64;
    case QK_BF16: case QK_F16: return ((size_t)kp * 32 + 63) / 64 * 64;
    case QK_Q8: case QK_Q8S: return qk_weight_scales_bytes(s, g, k) + (size_t)kp * 16;
    case QK_Q4: case QK_Q4C: return qk_weight_scales_bytes(s, g, k) + (size_t)kp * 8;
    case QK_Q5S: return qk_weight_scales_bytes(s, g, k) + (size_t)kp * 10;
    case QK_Q6S: return qk_weight_scales_bytes(s, g, k) + (size_t)kp * 12;
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
/* Per thread (packing never leaves the calling thread): a test or benchmark measuring plain absmax does
   not change the packs other threads make meanwhile (a converter test once got absmax scales that way). */
static _Thread_local int g_scale_search = 1;
void qk_set_weight_scale_search(int on) { g_scale_search = on ? 1 : 0; }

/* The QK_Q4C codebook: 16 levels fitted by Lloyd iterations to groups of 32 Gaussian weights, each
   group scaled by its own least-squares scale, rounded to integers. benchmarks/scripts/q4c_codebook.py
   repeats the fit: the optimum is flat (its levels differ from these by up to 8, at the same weight
   error within 0.2%: 0.0730 against 0.0729; q4's uniform [-8, 7] levels give 0.0807).
   Asymmetric, so a negative scale mirrors it and each group takes the finer side for its extreme. */
const int8_t qk_q4c_codebook[16] = { -127, -100, -79, -63, -48, -34, -22, -9, 2, 14, 25, 37, 50, 65, 83, 108 };

/* Errors are sums of squares (times the column importance when one is given). Rounding is to nearest
   even through the 1.5 * 2^23 trick (exact for |v / d| < 2^22; here |v / d| <= 127 / 0.70). Sixteen
   float lanes summed in a fixed order, so the result (and the scale it picks) is the same on every
   machine and instruction set; the compiler maps the lanes onto whatever vectors it has. */
typedef float qk_f16v __attribute__((vector_size(64)));
typedef int32_t qk_i16v __attribute__((vector_size(64)));

/* (macro and pointer forms: a 64-byte vector passed by value would change the ABI without AVX-512) */
#define LOAD16(p) ({ qk_f16v v_; memcpy(&v_, (p), sizeof v_); v_; })
static inline float hsum16(const qk_f16v *v) { float s = 0; for (int l = 0; l < 16; l++) s += (*v)[l]; return s; }

/* The code of x at inverse step id, rounded to nearest even and clamped (the scalar twin of the lanes below). */
static inline float quant_code(float x, float id, float qmin, float qmax) {
#pragma clang fp contract(off)
    float r = (x * id + 12582912.0f) - 12582912.0f;
    return r > qmax ? qmax : r < qmin ? qmin : r;
}

/* The two hot loops of the scale searches, compiled also for AVX2 and AVX-512 and chosen at load time:
   the same lane-wise IEEE operations in the same order, so the same results on every instruction set. */
#if defined(__x86_64__) && defined(__clang__)
#define QK_SEARCH_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QK_SEARCH_CLONES
#endif

QK_SEARCH_CLONES
static float group_sq_error(const float *v, const float *imp, int64_t len, float d, float qmin, float qmax) {
#pragma clang fp contract(off)   /* no fused multiply-adds: the same picks with or without FMA */
    if (d == 0) {
        float s = 0;
        for (int64_t i = 0; i < len; i++) s += imp ? v[i] * v[i] * imp[i] : v[i] * v[i];
        return s;
    }
    const float magic = 12582912.0f, id = 1.0f / d;
    const qk_f16v lo = (qk_f16v){0} + qmin, hi = (qk_f16v){0} + qmax;
    qk_f16v acc = {0};
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        qk_f16v x = LOAD16(v + i), r;
        r = (x * id + magic) - magic;
#if defined(__clang__)
        r = __builtin_elementwise_max(__builtin_elementwise_min(r, hi), lo);
#else   /* GCC (used only to cross-check the kernels): the same clamp as lane masks (codes are never NaN) */
        qk_i16v above = r > hi, below = r < lo;
        r = (qk_f16v)(((qk_i16v)r & ~above) | ((qk_i16v)hi & above));
        r = (qk_f16v)(((qk_i16v)r & ~below) | ((qk_i16v)lo & below));
#endif
        qk_f16v e = x - r * d;
        acc += imp ? e * e * LOAD16(imp + i) : e * e;
    }
    float tail = 0;
    for (; i < len; i++) {
        float e = v[i] - quant_code(v[i], id, qmin, qmax) * d;
        tail += imp ? e * e * imp[i] : e * e;
    }
    return hsum16(&acc) + tail;
}

/* Quantizes v[len] (zero padded beyond by the caller) to q in [qmin, qmax]; returns d. */
static float quant_group(const float *v, const float *imp, int64_t len, int qmin, int qmax, int8_t *q) {
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
            float err = group_sq_error(v, imp, len, cands[c], (float)qmin, (float)qmax);
            if (err < best_err) { best_err = err; best_d = cands[c]; }
        }
    }
    float id = 1.0f / best_d;
    for (int64_t i = 0; i < len; i++) q[i] = (int8_t)quant_code(v[i], id, (float)qmin, (float)qmax);
    return best_d;
}

/* ---- the Q4C codebook: nearest level, error and least-squares sums of a group at scale d ---------- */
static float cb_mid[15], cb_step[15];
static void cb_init_once(void) {   /* exact: halves and differences of small integers */
    for (int i = 0; i < 15; i++) {
        cb_mid[i] = 0.5f * ((float)qk_q4c_codebook[i] + (float)qk_q4c_codebook[i + 1]);
        cb_step[i] = (float)qk_q4c_codebook[i + 1] - (float)qk_q4c_codebook[i];
    }
}

/* Index of the level nearest to u (in codebook units); ties go down. */
static inline int cb_index(float u) {
    int i = 0;
    for (int j = 0; j < 15; j++) i += u > cb_mid[j];
    return i;
}

/* Over the group at scale d (d != 0): err = sum imp (v - d q)^2, sxq = sum imp v q, sqq = sum imp q q
   with q the nearest codebook value of v / d. Lanes as in group_sq_error. */
QK_SEARCH_CLONES
static void cb_group_stats(const float *v, const float *imp, int64_t len, float d, float *err, float *sxq, float *sqq) {
#pragma clang fp contract(off)
    const float id = 1.0f / d;
    qk_f16v ae = {0}, axq = {0}, aqq = {0};
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        qk_f16v x = LOAD16(v + i), u = x * id, q = (qk_f16v){0} + (float)qk_q4c_codebook[0];
        for (int j = 0; j < 15; j++) {
            qk_i16v m = u > ((qk_f16v){0} + cb_mid[j]);
            q += (qk_f16v)((qk_i16v)((qk_f16v){0} + cb_step[j]) & m);
        }
        qk_f16v e = x - q * d, w = imp ? LOAD16(imp + i) : (qk_f16v){0} + 1.0f;
        ae += e * e * w; axq += x * q * w; aqq += q * q * w;
    }
    float te = 0, txq = 0, tqq = 0;
    for (; i < len; i++) {
        float q = (float)qk_q4c_codebook[cb_index(v[i] * id)], e = v[i] - q * d, w = imp ? imp[i] : 1.0f;
        te += e * e * w; txq += v[i] * q * w; tqq += q * q * w;
    }
    *err = hsum16(&ae) + te; *sxq = hsum16(&axq) + txq; *sqq = hsum16(&aqq) + tqq;
}

static float cb_group_error(const float *v, const float *imp, int64_t len, float d) {
    if (d == 0) return group_sq_error(v, imp, len, 0, 0, 0);
    float e, a, b;
    cb_group_stats(v, imp, len, d, &e, &a, &b);
    return e;
}

/* The Q4C scale of v[len] (0 for an all-zero group). */
static float cb_group_scale(const float *v, const float *imp, int64_t len) {
#pragma clang fp contract(off)
    float amax = 0, smax = 0;
    for (int64_t i = 0; i < len; i++) {
        float a = fabsf(v[i]);
        if (a > amax) { amax = a; smax = v[i]; }
    }
    if (amax == 0) return 0;
    static const float grid[] = { 1.0f, 1.05f, 0.967f, 0.933f, 0.9f, 0.867f, 0.833f };
    const float ends[2] = { (float)qk_q4c_codebook[0], (float)qk_q4c_codebook[15] };
    float best_d = smax / ends[0], best_err = INFINITY, best_sxq = 0, best_sqq = 0;
    if (!g_scale_search) return best_d;   /* plain: the extreme onto the outer level -127 */
    for (int e = 0; e < 2; e++)
        for (size_t f = 0; f < sizeof grid / sizeof grid[0]; f++) {
            float d = grid[f] * smax / ends[e], err, sxq, sqq;
            cb_group_stats(v, imp, len, d, &err, &sxq, &sqq);
            if (err < best_err) { best_err = err; best_d = d; best_sxq = sxq; best_sqq = sqq; }
        }
    /* Two least-squares steps from the best candidate, each kept only if it lowers the error
       (measured on Gaussian groups: within 0.1% of refining every candidate, at 16 passes instead of 28). */
    for (int it = 0; it < 2 && best_sqq > 0 && best_sxq != 0; it++) {
        float d2 = best_sxq / best_sqq, err2, sxq2, sqq2;
        cb_group_stats(v, imp, len, d2, &err2, &sxq2, &sqq2);
        if (!(err2 < best_err)) break;
        best_err = err2; best_d = d2; best_sxq = sxq2; best_sqq = sqq2;
    }
    return best_d;
}

/* Compact-scale schemes: one row's groups quantized under 8-bit codes of an f32 scale per 256 k.
   Writes D (lane `lane` of the super-scales), the codes and qtmp[kp] (Q8S, Q5S, Q6S: the values; Q4C:
   the codebook indices). dg: scratch of ng floats. */
static void pack_compact_row(qk_scheme s, int64_t k, int64_t kp, const float *row, const float *imp,
                             float *D, int8_t *codes, int lane, int8_t *qtmp, float *dg) {
#pragma clang fp contract(off)
    int64_t ng = kp / 32, nsup = (ng + QK_SUPER_GROUPS - 1) / QK_SUPER_GROUPS;
    const int qmin = s == QK_Q5S ? -16 : s == QK_Q6S ? -32 : -127, qmax = s == QK_Q5S ? 15 : s == QK_Q6S ? 31 : 127;
    for (int64_t gi = 0; gi < ng; gi++) {
        int64_t k0 = gi * 32, len = k - k0 < 32 ? k - k0 : 32;
        const float *wi = imp ? imp + k0 : NULL;
        dg[gi] = s == QK_Q4C ? cb_group_scale(row + k0, wi, len) : quant_group(row + k0, wi, len, qmin, qmax, qtmp + k0);
    }
    for (int64_t sg = 0; sg < nsup; sg++) {
        int64_t g0 = sg * QK_SUPER_GROUPS, g1 = g0 + QK_SUPER_GROUPS < ng ? g0 + QK_SUPER_GROUPS : ng;
        float amax = 0;
        for (int64_t gi = g0; gi < g1; gi++) if (fabsf(dg[gi]) > amax) amax = fabsf(dg[gi]);
        float ds = amax / 127.0f;
        D[sg * QK_NR + lane] = ds;
        for (int64_t gi = g0; gi < g1; gi++) {
            int64_t k0 = gi * 32, len = k - k0 < 32 ? k - k0 : 32;
            const float *wi = imp ? imp + k0 : NULL;
            int best_c = 0;
            if (ds > 0) {
                float c0 = nearbyintf(dg[gi] / ds), best_err = INFINITY;
                for (int t = g_scale_search ? -1 : 0; t <= (g_scale_search ? 1 : 0); t++) {
                    float c = c0 + (float)t;
                    if (c < -127 || c > 127) continue;
                    float d = c * ds;
                    float err = s == QK_Q4C ? cb_group_error(row + k0, wi, len, d) : group_sq_error(row + k0, wi, len, d, (float)qmin, (float)qmax);
                    if (err < best_err) { best_err = err; best_c = (int)c; }
                }
            }
            codes[gi * QK_NR + lane] = (int8_t)best_c;
            float d = (float)best_c * ds, id = d != 0 ? 1.0f / d : 0.0f;
            for (int64_t i = 0; i < 32; i++) {
                float v = i < len ? row[k0 + i] : 0.0f;
                if (s == QK_Q4C) qtmp[k0 + i] = (int8_t)(d != 0 ? cb_index(v * id) : 8);
                else qtmp[k0 + i] = (int8_t)(d != 0 ? quant_code(v, id, (float)qmin, (float)qmax) : 0);
            }
        }
    }
}

/* Packs one logical row (f32, length k) into lane `lane` of the block at `blk`. */
static int pack_row(qk_scheme s, int32_t g, int64_t k, const float *row, const float *imp, uint8_t *blk,
                    int lane, int8_t *qtmp, float *dg) {
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
    case QK_Q8: case QK_Q4: case QK_Q4C: case QK_Q8S: case QK_Q5S: case QK_Q6S: {
        for (int64_t i = 0; i < k; i++) if (!isfinite(row[i])) return -1;
        uint8_t *data = blk + qk_weight_scales_bytes(s, g, k);
        if (qk_scheme_is_compact(s)) {
            int64_t nsup = qk_weight_nsuper(s, g, k);
            pack_compact_row(s, k, kp, row, imp, (float *)blk, (int8_t *)(blk + nsup * QK_NR * 4), lane, qtmp, dg);
        } else {
            int64_t gl = g ? g : kp, ng = kp / gl;
            float *scales = (float *)blk;
            for (int64_t gi = 0; gi < ng; gi++) {
                int64_t k0 = gi * gl, len = k - k0 < gl ? k - k0 : gl;
                if (len < 0) len = 0;
                float d = quant_group(row + k0, imp ? imp + k0 : NULL, len, s == QK_Q8 ? -127 : -8, s == QK_Q8 ? 127 : 7, qtmp + k0);
                for (int64_t i = k0 + len; i < k0 + gl; i++) qtmp[i] = 0;
                scales[gi * QK_NR + lane] = d;
            }
        }
        if (!qk_scheme_is_nibble(s)) {
            for (int64_t i = 0; i < kp; i++) data[(i >> 2) * 64 + lane * 4 + (i & 3)] = (uint8_t)qtmp[i];
        } else {
            const int off = qk_scheme_nibble_offset(s);
            uint8_t *high = data + kp * 8;
            for (int64_t p = 0; p < kp / 8; p++)
                for (int j = 0; j < 4; j++) {
                    int lo = qtmp[8 * p + j] + off, hi = qtmp[8 * p + 4 + j] + off, e = lane * 4 + j, c = e >> 4, i = e & 15;
                    data[p * 64 + e] = (uint8_t)((lo & 15) | (hi & 15) << 4);
                    if (s == QK_Q6S) {
                        high[32 * p + i] |= (uint8_t)((lo >> 4) << (2 * c));
                        high[32 * p + 16 + i] |= (uint8_t)((hi >> 4) << (2 * c));
                    } else if (s == QK_Q5S) {
                        high[16 * p + i] |= (uint8_t)((lo >> 4) << c | (hi >> 4) << (4 + c));
                    }
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

static pthread_once_t cb_once = PTHREAD_ONCE_INIT;

static int pack_rows(qk_scheme s, int32_t g, int64_t n, int64_t k, int64_t row0, int64_t nrows,
                     const void *w, const float *imp, row_src_fn src, void *out) {
    if (check_chunk(s, g, n, k, row0, nrows, w, out)) return -1;
    if (imp) for (int64_t i = 0; i < k; i++) if (!(imp[i] >= 0) || !isfinite(imp[i])) return -1;
    pthread_once(&cb_once, cb_init_once);
    int64_t kp = qk_weight_kp(s, g, k);
    size_t rbb = qk_weight_block_bytes(s, g, k);
    /* scratch: converted row (k floats), group scales (kp / 32 floats), quantized row (kp bytes);
       allocated once per thread */
    float *tmp = qk_tls_scratch(3, (size_t)k * 4 + (size_t)kp / 32 * 4 + (size_t)kp + 64);
    if (!tmp) return -1;
    float *dg = tmp + k;
    int8_t *qtmp = (int8_t *)(dg + kp / 32);
    int64_t b0 = row0 / QK_NR, b1 = (row0 + nrows + QK_NR - 1) / QK_NR;
    for (int64_t b = b0; b < b1; b++) {
        uint8_t *blk = (uint8_t *)out + (size_t)b * rbb;
        memset(blk, 0, rbb);
        for (int lane = 0; lane < QK_NR; lane++) {
            int64_t r = b * QK_NR + lane;
            if (r >= n) break;
            if (pack_row(s, g, k, src(w, r - row0, k, tmp), imp, blk, lane, qtmp, dg)) return -1;
        }
    }
    return 0;
}

int qk_weight_pack_rows(qk_scheme s, int32_t g, int64_t n, int64_t k, int64_t row0, int64_t nrows,
                        const float *w, void *out) {
    return pack_rows(s, g, n, k, row0, nrows, w, NULL, src_f32, out);
}

int qk_weight_pack_rows_imp(qk_scheme s, int32_t g, int64_t n, int64_t k, int64_t row0, int64_t nrows,
                            const float *w, const float *imp, void *out) {
    return pack_rows(s, g, n, k, row0, nrows, w, imp, src_f32, out);
}

int qk_weight_pack_rows_bf16(qk_scheme s, int32_t g, int64_t n, int64_t k, int64_t row0, int64_t nrows,
                             const uint16_t *w, void *out) {
    if (s != QK_BF16) return pack_rows(s, g, n, k, row0, nrows, w, NULL, src_bf16, out);
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
    case QK_Q8: case QK_Q4: case QK_Q4C: case QK_Q8S: case QK_Q5S: case QK_Q6S: {
        int64_t gl = w->group ? w->group : kp;
        const float *scales = (const float *)blk;
        const int8_t *codes = (const int8_t *)(blk + qk_weight_nsuper(s, w->group, k) * QK_NR * 4);
        const uint8_t *data = blk + qk_weight_scales_bytes(s, w->group, k);
        for (int64_t i = 0; i < k; i++) {
            int q = qk_packed_q(s, data, kp, lane, i);
            int64_t gi = i / gl;
            float d = qk_scheme_is_compact(s)
                ? (float)codes[gi * QK_NR + lane] * scales[(gi / QK_SUPER_GROUPS) * QK_NR + lane]
                : scales[gi * QK_NR + lane];
            out[i] = (float)q * d;
        }
        break;
    }
    }
}
