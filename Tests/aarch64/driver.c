/*
 * driver.c: the aarch64 kernel tiers (neon, dotprod, i8mm) against their scalar twins, run under
 * qemu-user by run.sh (the Swift kernel tests cannot run there: no arm64 Swift toolchain). Mirrors
 * Tests/KernelsTests: the same shapes (loop tails, odd k, m = 1 and m past every tile), the same
 * tolerances (MatmulTolerances.swift, OpsTolerances.swift; values repeated below with their names) and
 * the same bit-identity checks (matmul tiers vs ref, rope, conversions, 1 vs N threads).
 * Tiers this CPU lacks are reported as skipped. Prints one line per failure and per section, then
 * "N passed, M failed"; exits 1 on any failure.
 */
#include "qk.h"
#include "qk_internal.h"
#include "qk_matmul_internal.h"
#include "qk_ops_internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- tolerances (Tests/KernelsTests/OpsTolerances.swift) ---------------------------------------- */
#define TOL_ELEMENT_REL 2e-6f   /* OpsTolerance.elementRel */
#define TOL_ELEMENT_ABS 1e-7f   /* OpsTolerance.elementAbs */
#define TOL_NORM_REL 1e-5f      /* OpsTolerance.normRel */
#define TOL_NORM_ABS 1e-7f      /* OpsTolerance.normAbs */
#define TOL_ATTN_RELL2 2e-6     /* OpsTolerance.attentionRelL2 */
#define TOL_CONV_RELL2 2e-6     /* OpsTolerance.convRelL2F32 */

static int g_pass, g_fail;
static void check(int ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static void check(int ok, const char *fmt, ...) {
    if (ok) { g_pass++; return; }
    g_fail++;
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* ---- data ------------------------------------------------------------------------------------ */
typedef struct { uint64_t s; } rng_t;   /* splitmix64, as MMRng */
static uint64_t rnext(rng_t *r) {
    r->s += 0x9E3779B97F4A7C15ull;
    uint64_t z = r->s;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float rfloat(rng_t *r) { return (float)((int64_t)rnext(r) >> 40) / (float)(1 << 23); } /* [-1, 1) */
static float *rfloats(rng_t *r, int64_t n, float scale) {
    float *v = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    for (int64_t i = 0; i < n; i++) v[i] = rfloat(r) * scale;
    return v;
}
static int bits_equal(const float *a, const float *b, int64_t n) { return memcmp(a, b, (size_t)n * sizeof(float)) == 0; }
/* max over i of |a - b| / (abs + rel |b|); <= 1 passes (NaN must match NaN). */
static float tol_ratio(const float *a, const float *b, int64_t n, float abs_tol, float rel) {
    float worst = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(a[i]) || isnan(b[i])) { if (isnan(a[i]) != isnan(b[i])) return INFINITY; continue; }
        float r = fabsf(a[i] - b[i]) / (abs_tol + rel * fabsf(b[i]));
        if (r > worst) worst = r;
    }
    return worst;
}
static double rel_l2(const float *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) { double d = (double)a[i] - b[i]; num += d * d; den += b[i] * b[i]; }
    return sqrt(num / (den > 1e-300 ? den : 1e-300));
}

/* ---- tiers ----------------------------------------------------------------------------------- */
typedef void (*mm_fn)(const qk_weight *, const float *, int64_t, const float *, float *);
typedef struct { const char *name; qk_tier tier; mm_fn mm; } arm_tier;
static const arm_tier k_tiers[] = {
    { "neon", QK_TIER_NEON, qk_matmul_neon },
    { "dotprod", QK_TIER_DOTPROD, qk_matmul_dotprod },
    { "i8mm", QK_TIER_I8MM, qk_matmul_i8mm },
};
#define NT (int)(sizeof k_tiers / sizeof k_tiers[0])

/* ---- matmul ---------------------------------------------------------------------------------- */
typedef struct { qk_scheme s; int32_t g; const char *name; } scheme_t;
static const scheme_t k_schemes[] = {
    { QK_F32, 0, "f32" }, { QK_BF16, 0, "bf16" }, { QK_F16, 0, "f16" },
    { QK_Q8, 0, "q8/g0" }, { QK_Q8, 32, "q8/g32" }, { QK_Q8, 64, "q8/g64" }, { QK_Q8, 128, "q8/g128" },
    { QK_Q4, 0, "q4/g0" }, { QK_Q4, 32, "q4/g32" }, { QK_Q4, 64, "q4/g64" }, { QK_Q4, 128, "q4/g128" },
    { QK_Q4C, 32, "q4c" }, { QK_Q8S, 32, "q8s" }, { QK_Q5S, 32, "q5s" }, { QK_Q6S, 32, "q6s" },
};
#define NS (int)(sizeof k_schemes / sizeof k_schemes[0])

typedef struct { qk_weight w; void *buf; } packed_t;
static packed_t pack(scheme_t sc, int64_t n, int64_t k, const float *v) {
    packed_t p;
    size_t bytes = qk_weight_bytes(sc.s, sc.g, n, k);
    p.buf = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (qk_weight_pack_rows(sc.s, sc.g, n, k, 0, n, v, p.buf) != 0) { printf("pack failed %s\n", sc.name); exit(2); }
    p.w = (qk_weight){ .scheme = sc.s, .group = sc.g, .n = n, .k = k, .data = p.buf };
    return p;
}

/* x [m, k] with outlier channels scaled (the pattern of Qwen2.5 hidden states), as mmActivations. */
static float *activations(int64_t m, int64_t k, uint64_t seed, int64_t oc, float os) {
    rng_t r = { seed };
    float *x = rfloats(&r, m * k, 1);
    if (oc >= 0 && oc < k) for (int64_t i = 0; i < m; i++) x[i * k + oc] *= os;
    return x;
}

/* Runs fn with x and y at a float offset `mis` (unaligned), y prefilled with NaN; returns y [m, n]. */
static float *mm_run(mm_fn fn, const packed_t *w, const float *x, int64_t m, const float *bias, int mis) {
    int64_t n = w->w.n, k = w->w.k;
    float *xs = malloc((size_t)(m * k + 16) * sizeof(float)), *ys = malloc((size_t)(m * n + 16) * sizeof(float));
    memcpy(xs + mis, x, (size_t)(m * k) * sizeof(float));
    for (int64_t i = 0; i < m * n + 16; i++) ys[i] = NAN;
    fn(&w->w, xs + mis, m, bias, ys + mis);
    float *y = malloc((size_t)(m * n) * sizeof(float));
    memcpy(y, ys + mis, (size_t)(m * n) * sizeof(float));
    free(xs); free(ys);
    return y;
}

static void test_matmul_tiers(void) {
    /* MatmulTests.shapes, then odd k (3420 = a Qwen-Image width that is no multiple of 64 or 128),
       m = 1 and m past the i8mm / dotprod / float tiles and the driver's 96-row chunks. */
    static const int tailK[] = { 1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 63, 127, 129, 1023 };
    static const int tailN[] = { 1, 2, 3, 5, 7, 15, 16, 17, 31, 33, 63, 127, 129 };
    static const int tailM[] = { 1, 2, 3, 5, 7, 13, 17, 33 };
    int shapes[64][3], ns = 0;
    for (int i = 0; i < 14; i++) { shapes[ns][0] = tailM[i % 8]; shapes[ns][1] = tailN[(i * 5) % 13]; shapes[ns][2] = tailK[i]; ns++; }
    for (int i = 0; i < 13; i++) { shapes[ns][0] = 3; shapes[ns][1] = tailN[i]; shapes[ns][2] = 37; ns++; }
    for (int i = 0; i < 8; i++) { shapes[ns][0] = tailM[i]; shapes[ns][1] = 33; shapes[ns][2] = 65; ns++; }
    static const int extra[][3] = { { 2, 20, 200 }, { 1, 129, 300 }, { 1, 40, 3420 }, { 6, 33, 3420 }, { 4, 16, 64 },
                                    { 8, 17, 96 }, { 11, 48, 160 }, { 100, 33, 65 }, { 1, 300, 77 } };
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) { memcpy(shapes[ns], extra[i], sizeof extra[i]); ns++; }

    int before = g_fail, pass0 = g_pass;
    for (int si = 0; si < NS; si++) {
        for (int idx = 0; idx < ns; idx++) {
            int64_t m = shapes[idx][0], n = shapes[idx][1], k = shapes[idx][2];
            rng_t r = { (uint64_t)(idx * 31 + 7) };
            float *wv = rfloats(&r, n * k, 1);
            packed_t w = pack(k_schemes[si], n, k, wv);
            float *x = activations(m, k, (uint64_t)idx, 3, 200);
            float *bias = idx % 2 == 0 ? rfloats(&r, n, 1) : NULL;
            float *ref = mm_run(qk_matmul_ref, &w, x, m, bias, 0);
            int finite = 1;
            for (int64_t i = 0; i < m * n; i++) finite &= isfinite(ref[i]) != 0;
            check(finite, "ref %s m=%lld n=%lld k=%lld: non-finite output", k_schemes[si].name, (long long)m, (long long)n, (long long)k);
            for (int t = 0; t < NT; t++) {
                if (!qk_tier_supported(k_tiers[t].tier)) continue;
                float *y = mm_run(k_tiers[t].mm, &w, x, m, bias, 1 + idx % 3);
                float worst = 0;
                for (int64_t i = 0; i < m * n; i++) if (fabsf(y[i] - ref[i]) > worst || isnan(y[i])) worst = isnan(y[i]) ? NAN : fabsf(y[i] - ref[i]);
                check(bits_equal(y, ref, m * n), "matmul %s %s m=%lld n=%lld k=%lld: differs from ref (max abs diff %g)",
                      k_tiers[t].name, k_schemes[si].name, (long long)m, (long long)n, (long long)k, worst);
                free(y);
            }
            free(ref); free(x); free(bias); free(wv); free(w.buf);
        }
    }
    printf("matmul tiers vs ref (bit-exact, %d shapes x %d schemes): %d passed, %d failed\n", ns, NS,
           g_pass - pass0, g_fail - before);
}

/* 1 vs 2, 3, 5 threads and one row alone vs the batch, through the public qk_matmul (MatmulTests). */
static void test_matmul_threads(void) {
    int before = g_fail, pass0 = g_pass;
    const int64_t m = 37, n = 70, k = 300;
    rng_t r = { 99 };
    float *wv = rfloats(&r, n * k, 1);
    float *x = activations(m, k, 4, 17, 500);
    float *bias = rfloats(&r, n, 1);
    for (int t = 0; t < NT; t++) {
        if (qk_set_isa(k_tiers[t].name) != 0) continue;
        check(strcmp(qk_isa_name(), k_tiers[t].name) == 0, "qk_set_isa(%s) selected %s", k_tiers[t].name, qk_isa_name());
        for (int si = 0; si < NS; si++) {
            packed_t w = pack(k_schemes[si], n, k, wv);
            qk_set_threads(1);
            float *y1 = mm_run(qk_matmul, &w, x, m, bias, 0);
            float *yd = mm_run(k_tiers[t].mm, &w, x, m, bias, 0);
            check(bits_equal(y1, yd, m * n), "%s %s: qk_matmul does not dispatch to the tier", k_tiers[t].name, k_schemes[si].name);
            static const int th[] = { 2, 3, 5 };
            for (int i = 0; i < 3; i++) {
                qk_set_threads(th[i]);
                float *y = mm_run(qk_matmul, &w, x, m, bias, 0);
                check(bits_equal(y, y1, m * n), "%s %s: %d threads differ from 1", k_tiers[t].name, k_schemes[si].name, th[i]);
                free(y);
            }
            static const int rows[] = { 0, 5, 36 };
            for (int i = 0; i < 3; i++) {
                float *y = mm_run(qk_matmul, &w, x + rows[i] * k, 1, bias, 0);
                check(bits_equal(y, y1 + rows[i] * n, n), "%s %s: row %d alone differs from the batch", k_tiers[t].name,
                      k_schemes[si].name, rows[i]);
                free(y);
            }
            free(y1); free(yd); free(w.buf);
        }
    }
    qk_set_isa("ref");
    qk_set_threads(2);
    free(wv); free(x); free(bias);
    printf("matmul threads / batch invariance: %d passed, %d failed\n", g_pass - pass0, g_fail - before);
}

/* ---- element-wise, row, rope, conversions ------------------------------------------------------ */
static const int k_tail[] = { 1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33, 63, 64, 127, 129, 1023 };
#define NTAIL (int)(sizeof k_tail / sizeof k_tail[0])

/* a copy of v[n] one float past a 64-byte boundary (the unaligned() helper of OpsTests) */
static float *unaligned(float *store, const float *v, int64_t n) { memcpy(store + 1, v, (size_t)n * sizeof(float)); return store + 1; }

static void test_ops(void) {
    int before = g_fail, pass0 = g_pass;
    rng_t r = { 1 };
    float *s1 = aligned_alloc(64, 4096 * sizeof(float)), *s2 = aligned_alloc(64, 4096 * sizeof(float));
    for (int ti = 0; ti < NTAIL; ti++) {
        int64_t n = k_tail[ti];
        float *x = rfloats(&r, n, 12), *up = rfloats(&r, n, 2);
        float *ref = malloc((size_t)n * sizeof(float)), *got;
        memcpy(ref, x, (size_t)n * sizeof(float)); qk_silu_ref(ref, n);
        got = unaligned(s1, x, n); qk_silu_neon(got, n);
        check(tol_ratio(got, ref, n, TOL_ELEMENT_ABS, TOL_ELEMENT_REL) <= 1, "silu neon n=%lld", (long long)n);
        memcpy(ref, x, (size_t)n * sizeof(float)); qk_gelu_erf_ref(ref, n);
        got = unaligned(s1, x, n); qk_gelu_erf_neon(got, n);
        check(tol_ratio(got, ref, n, TOL_ELEMENT_ABS * 12, TOL_ELEMENT_REL) <= 1, "gelu neon n=%lld", (long long)n);
        memcpy(ref, x, (size_t)n * sizeof(float)); qk_gelu_tanh_ref(ref, n);
        got = unaligned(s1, x, n); qk_gelu_tanh_neon(got, n);
        check(tol_ratio(got, ref, n, TOL_ELEMENT_ABS * 12, TOL_ELEMENT_REL) <= 1, "gelu_tanh neon n=%lld", (long long)n);
        qk_silu_mul_ref(x, up, n, ref);
        float *out = malloc((size_t)n * sizeof(float));
        qk_silu_mul_neon(unaligned(s1, x, n), unaligned(s2, up, n), n, out);
        check(tol_ratio(out, ref, n, TOL_ELEMENT_ABS, TOL_ELEMENT_REL) <= 1, "silu_mul neon n=%lld", (long long)n);
        free(x); free(up); free(ref); free(out);
    }
    rng_t r2 = { 2 };
    for (int ti = 0; ti < NTAIL; ti++) {
        int64_t dim = k_tail[ti], rows = 3;
        float *x = rfloats(&r2, rows * dim, 3), *w = rfloats(&r2, dim, 1), *b = rfloats(&r2, dim, 1);
        float *y = malloc((size_t)(rows * dim) * sizeof(float)), *yr = malloc((size_t)(rows * dim) * sizeof(float));
        qk_rmsnorm_ref(x, w, rows, dim, 1e-6f, yr);
        qk_rmsnorm_neon(unaligned(s1, x, rows * dim), w, rows, dim, 1e-6f, y);
        check(tol_ratio(y, yr, rows * dim, TOL_NORM_ABS, TOL_NORM_REL) <= 1, "rmsnorm neon dim=%lld", (long long)dim);
        float *sh = malloc((size_t)(rows * dim) * sizeof(float));
        for (int64_t i = 0; i < rows * dim; i++) sh[i] = x[i] + 40;   /* a large common offset */
        qk_layernorm_ref(sh, w, b, rows, dim, 1e-6f, yr);
        qk_layernorm_neon(unaligned(s1, sh, rows * dim), w, b, rows, dim, 1e-6f, y);
        check(tol_ratio(y, yr, rows * dim, TOL_NORM_ABS * 40, TOL_NORM_REL * 40) <= 1, "layernorm neon dim=%lld", (long long)dim);
        free(sh);
        for (int bi = 0; bi < 2; bi++) {
            qk_l2norm_ref(x, w, bi ? b : NULL, rows, dim, yr);
            qk_l2norm_neon(unaligned(s1, x, rows * dim), w, bi ? b : NULL, rows, dim, y);
            check(tol_ratio(y, yr, rows * dim, TOL_NORM_ABS, TOL_NORM_REL) <= 1, "l2norm neon dim=%lld bias=%d", (long long)dim, bi);
        }
        float *s = rfloats(&r2, rows * dim, 30);
        memcpy(yr, s, (size_t)(rows * dim) * sizeof(float)); qk_softmax_ref(yr, rows, dim);
        float *got = unaligned(s1, s, rows * dim); qk_softmax_neon(got, rows, dim);
        check(tol_ratio(got, yr, rows * dim, 1e-9f, TOL_ELEMENT_REL) <= 1, "softmax neon n=%lld", (long long)dim);
        free(x); free(w); free(b); free(y); free(yr); free(s);
    }
    /* rope: same two products and sum as the ref twin: bit-identical */
    static const int halves[] = { 1, 2, 3, 7, 8, 16, 17, 20, 33, 40, 64 };
    rng_t r3 = { 3 };
    for (size_t hi = 0; hi < sizeof halves / sizeof halves[0]; hi++) {
        int64_t half = halves[hi], hd = 2 * half, rows = 3, heads = 2, stride = heads * hd + 5;
        float *x = rfloats(&r3, rows * stride, 4), *c = rfloats(&r3, rows * half, 1), *sn = rfloats(&r3, rows * half, 1);
        float *ref = malloc((size_t)(rows * stride) * sizeof(float));
        memcpy(ref, x, (size_t)(rows * stride) * sizeof(float));
        qk_rope_ref(ref, rows, heads, hd, stride, c, sn);
        float *got = unaligned(s1, x, rows * stride);
        qk_rope_neon(got, rows, heads, hd, stride, c, sn);
        check(bits_equal(got, ref, rows * stride), "rope neon head_dim=%lld", (long long)hd);
        free(x); free(c); free(sn); free(ref);
    }
    free(s1); free(s2);
    printf("ops neon vs ref (silu, gelu, silu_mul, rmsnorm, l2norm, softmax, rope): %d passed, %d failed\n",
           g_pass - pass0, g_fail - before);
}

/* Every f16 / bf16 bit pattern, and f32 patterns around every rounding boundary: bit-identical. */
static void test_conversions(void) {
    int before = g_fail, pass0 = g_pass;
    enum { NALL = 65536 };
    uint16_t *all = malloc(NALL * sizeof(uint16_t));
    for (int i = 0; i < NALL; i++) all[i] = (uint16_t)i;
    float *a = malloc(NALL * sizeof(float)), *b = malloc(NALL * sizeof(float));
    qk_bf16_to_f32_ref(all, NALL, a); qk_bf16_to_f32_neon(all, NALL, b);
    check(bits_equal(a, b, NALL), "bf16->f32 neon");
    qk_f16_to_f32_ref(all, NALL, a); qk_f16_to_f32_neon(all, NALL, b);
    check(bits_equal(a, b, NALL), "f16->f32 neon");
    static const float special[] = { 0, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 0 /* signalling NaN, below */, 65504,
                                     65519.99f, 65520, -65520, 1e-8f, 2.98e-8f, 2.9802322e-8f, 5.96e-8f, 6.1e-5f,
                                     1.17549435e-38f, 1.4e-45f, 3.40282347e38f };
    int64_t nsp = sizeof special / sizeof special[0], nf = nsp + 2 * NALL + 120000;
    float *f = malloc((size_t)nf * sizeof(float));
    memcpy(f, special, sizeof special);
    uint32_t u = 0x7f800001u;
    memcpy(&f[6], &u, 4);
    int64_t o = nsp;
    for (int i = 0; i < NALL; i++) { u = (uint32_t)i << 16 | 0x8000u; memcpy(&f[o++], &u, 4); }   /* bf16 ties */
    for (int i = 0; i < NALL; i++) { u = (uint32_t)i << 16 | 0x7fffu; memcpy(&f[o++], &u, 4); }
    rng_t r = { 4 };
    for (int i = 0; i < 60000; i++) { u = (uint32_t)rnext(&r); memcpy(&f[o++], &u, 4); }
    for (int i = 0; i < 60000; i++) { u = 0x33000000u + (uint32_t)i * 1117u; memcpy(&f[o++], &u, 4); } /* f16 subnormal/normal */
    uint16_t *h = malloc((size_t)nf * sizeof(uint16_t)), *hr = malloc((size_t)nf * sizeof(uint16_t));
    qk_f32_to_f16_ref(f, nf, hr); qk_f32_to_f16_neon(f, nf, h);
    int64_t first = -1;
    for (int64_t i = 0; i < nf && first < 0; i++) if (h[i] != hr[i]) first = i;
    if (first >= 0) memcpy(&u, &f[first], 4);
    check(first < 0, "f32->f16 neon: first difference at %lld (f32 %08x: %04x vs ref %04x)", (long long)first,
          first >= 0 ? u : 0, first >= 0 ? h[first] : 0, first >= 0 ? hr[first] : 0);
    qk_f32_to_bf16_ref(f, nf, hr); qk_f32_to_bf16_neon(f, nf, h);
    first = -1;
    for (int64_t i = 0; i < nf && first < 0; i++) if (h[i] != hr[i]) first = i;
    check(first < 0, "f32->bf16 neon: first difference at %lld", (long long)first);
    free(all); free(a); free(b); free(f); free(h); free(hr);
    printf("conversions neon vs ref (bit-exact): %d passed, %d failed\n", g_pass - pass0, g_fail - before);
}

/* public ops through the pool under the neon tier: 1 vs 2 threads bit-identical (OpsTests) */
static void test_ops_threads(void) {
    int before = g_fail, pass0 = g_pass;
    if (qk_set_isa("neon") != 0) { printf("ops threads: neon unsupported?\n"); g_fail++; return; }
    const int64_t rows = 300, dim = 1000, n = rows * dim;
    rng_t r = { 6 };
    float *x = rfloats(&r, n, 5), *w = rfloats(&r, dim, 1);
    float *y[2];
    for (int t = 0; t < 2; t++) {
        qk_set_threads(t + 1);
        float *o = malloc((size_t)(5 * n) * sizeof(float));
        qk_rmsnorm(x, w, rows, dim, 1e-6f, o);
        qk_l2norm(x, w, w, rows, dim, o + n);
        memcpy(o + 2 * n, x, (size_t)n * sizeof(float)); qk_softmax(o + 2 * n, rows, dim);
        memcpy(o + 3 * n, x, (size_t)n * sizeof(float)); qk_gelu_erf(o + 3 * n, n);
        qk_silu_mul(x, o + 3 * n, n, o + 4 * n);
        y[t] = o;
    }
    check(bits_equal(y[0], y[1], 5 * n), "public ops (neon): 1 vs 2 threads differ");
    /* dotprod and i8mm dispatch these ops to the same NEON twins */
    for (int t = 1; t < NT; t++) {
        if (qk_set_isa(k_tiers[t].name) != 0) continue;
        float *o = malloc((size_t)(5 * n) * sizeof(float));
        qk_rmsnorm(x, w, rows, dim, 1e-6f, o);
        qk_l2norm(x, w, w, rows, dim, o + n);
        memcpy(o + 2 * n, x, (size_t)n * sizeof(float)); qk_softmax(o + 2 * n, rows, dim);
        memcpy(o + 3 * n, x, (size_t)n * sizeof(float)); qk_gelu_erf(o + 3 * n, n);
        qk_silu_mul(x, o + 3 * n, n, o + 4 * n);
        check(bits_equal(o, y[1], 5 * n), "public ops under %s differ from neon", k_tiers[t].name);
        free(o);
    }
    /* rmsnorm against the formula in Double (OpsTests: relative 1e-5 with a 1e-3 floor) */
    double worst = 0;
    for (int64_t rr = 0; rr < rows; rr++) {
        double ms = 0;
        for (int64_t i = 0; i < dim; i++) ms += (double)x[rr * dim + i] * x[rr * dim + i];
        ms /= (double)dim;
        for (int64_t i = 0; i < dim; i++) {
            double e = x[rr * dim + i] / sqrt(ms + 1e-6) * w[i], d = fabs(y[0][rr * dim + i] - e) / (fabs(e) + 1e-3);
            if (d > worst) worst = d;
        }
    }
    check(worst < 1e-5, "public rmsnorm (neon) vs formula: %g", worst);
    qk_set_isa("ref");
    qk_set_threads(2);
    free(x); free(w); free(y[0]); free(y[1]);
    printf("public ops threads (neon): %d passed, %d failed\n", g_pass - pass0, g_fail - before);
}

/* ---- attention ------------------------------------------------------------------------------- */
typedef struct {
    int lq, lk, hq, hkv, d, causal, q_offset, kv_len; /* kv_len < 0: lk */
    const int32_t *qseg, *kseg;
} attn_case;

typedef struct { attn_case c; float *q, *k, *v; int64_t qs, ks, vs, os; float scale; } attn_data;

static attn_data attn_make(attn_case c, uint64_t seed) {
    attn_data a = { .c = c };
    int pad = 3;
    a.qs = c.hq * c.d + pad; a.ks = c.hkv * c.d + pad + 1; a.vs = c.hkv * c.d + pad + 2; a.os = c.hq * c.d + 1;
    rng_t r = { seed };
    a.q = rfloats(&r, c.lq * a.qs, 2); a.k = rfloats(&r, c.lk * a.ks, 2); a.v = rfloats(&r, c.lk * a.vs, 1);
    a.scale = 1.0f / sqrtf((float)c.d);
    return a;
}
static qk_attn_params attn_params(const attn_data *a) {
    const attn_case *c = &a->c;
    return (qk_attn_params){ .lq = c->lq, .lk = c->lk, .hq = c->hq, .hkv = c->hkv, .d = c->d, .q_stride = a->qs,
                             .k_stride = a->ks, .v_stride = a->vs, .o_stride = a->os, .scale = a->scale,
                             .causal = c->causal, .q_offset = c->q_offset, .kv_len = c->kv_len < 0 ? c->lk : c->kv_len,
                             .q_seg = c->qseg, .k_seg = c->kseg };
}
/* softmax(Q K^T) V in double; rows that see no key are zero. out [lq, hq * d]. */
static double *attn_naive(const attn_data *a) {
    const attn_case *c = &a->c;
    int64_t hd = (int64_t)c->hq * c->d, group = c->hq / c->hkv, lim = c->kv_len < 0 || c->kv_len > c->lk ? c->lk : c->kv_len;
    double *out = calloc((size_t)(c->lq * hd), sizeof(double)), *e = malloc((size_t)c->lk * sizeof(double));
    for (int64_t i = 0; i < c->lq; i++)
        for (int64_t h = 0; h < c->hq; h++) {
            int64_t hk = h / group;
            double mx = -INFINITY;
            for (int64_t j = 0; j < lim; j++) {
                int vis = (!c->causal || j <= c->q_offset + i) && (!c->qseg || c->qseg[i] == c->kseg[j]);
                if (!vis) { e[j] = NAN; continue; }
                double s = 0;
                for (int64_t x = 0; x < c->d; x++) s += (double)a->q[i * a->qs + h * c->d + x] * a->k[j * a->ks + hk * c->d + x];
                e[j] = s * a->scale;
                if (e[j] > mx) mx = e[j];
            }
            double z = 0;
            for (int64_t j = 0; j < lim; j++) if (!isnan(e[j])) { e[j] = exp(e[j] - mx); z += e[j]; }
            for (int64_t j = 0; j < lim; j++) {
                if (isnan(e[j])) continue;
                for (int64_t x = 0; x < c->d; x++) out[i * hd + h * c->d + x] += e[j] / z * a->v[j * a->vs + hk * c->d + x];
            }
        }
    free(e);
    return out;
}
static float *attn_public(const attn_data *a) {
    float *o = malloc((size_t)(a->c.lq * a->os) * sizeof(float));
    for (int64_t i = 0; i < a->c.lq * a->os; i++) o[i] = NAN;
    qk_attn_params p = attn_params(a);
    qk_attention(&p, a->q, a->k, a->v, o);
    int64_t hd = (int64_t)a->c.hq * a->c.d;
    float *y = malloc((size_t)(a->c.lq * hd) * sizeof(float));
    for (int64_t i = 0; i < a->c.lq; i++) memcpy(y + i * hd, o + i * a->os, (size_t)hd * sizeof(float));
    free(o);
    return y;
}

static void test_attention(void) {
    int before = g_fail, pass0 = g_pass;
    static int32_t seg_a[130], seg_b[50], seg_c[60], seg_d[101], seg_e[77];
    for (int i = 0; i < 130; i++) seg_a[i] = i < 64 ? 0 : i < 94 ? 1 : 2;
    for (int i = 0; i < 50; i++) seg_b[i] = i < 10 ? 1 : i < 35 ? 2 : 3;
    for (int i = 0; i < 60; i++) seg_c[i] = i < 20 ? 0 : i < 35 ? 1 : 2;
    for (int i = 0; i < 101; i++) seg_d[i] = i < 30 ? 0 : 1;
    for (int i = 0; i < 77; i++) seg_e[i] = i < 40 ? 0 : 1;
    static const int32_t qs12[12] = { 0, 1, 0, 1, 2, 2, 0, 9, 1, 1, 0, 0 }, ks12[12] = { 1, 0, 0, 1, 2, 1, 0, 0, 2, 1, 1, 0 };
    /* AttentionTests.cases, then the extra single-head pieces of tiersMatchNaive */
    const attn_case cases[] = {
        { 1, 1, 1, 1, 1, 0, 0, -1, NULL, NULL },
        { 5, 7, 2, 2, 3, 0, 0, -1, NULL, NULL },
        { 17, 33, 4, 2, 17, 0, 0, -1, NULL, NULL },
        { 70, 70, 4, 1, 16, 1, 0, -1, NULL, NULL },
        { 33, 130, 2, 1, 20, 1, 97, -1, NULL, NULL },
        { 9, 65, 2, 2, 31, 0, 0, 40, NULL, NULL },
        { 20, 20, 2, 2, 8, 1, -3, -1, NULL, NULL },
        { 130, 130, 2, 2, 80, 0, 0, -1, seg_a, seg_a },
        { 50, 60, 3, 1, 33, 1, 10, 55, seg_b, seg_c },
        { 12, 12, 1, 1, 7, 0, 0, -1, qs12, ks12 },
        { 65, 200, 1, 1, 128, 1, 135, -1, NULL, NULL },
        { 40, 150, 1, 1, 384, 0, 0, -1, NULL, NULL },
        { 64, 129, 1, 1, 63, 1, 65, -1, NULL, NULL },
        { 128, 150, 1, 1, 40, 1, 22, -1, NULL, NULL },
        { 101, 77, 1, 1, 24, 0, 0, 70, seg_d, seg_e },
        { 3, 257, 1, 1, 2, 0, 0, 250, NULL, NULL },
    };
    int ncase = (int)(sizeof cases / sizeof cases[0]);
    void *scratch = aligned_alloc(64, (qk_attention_scratch_bytes(QK_ATTN_MAX_D) + 63) / 64 * 64);
    for (int n = 0; n < ncase; n++) {
        attn_data a = attn_make(cases[n], (uint64_t)(n + 10));
        double *ref = attn_naive(&a);
        int64_t hd = (int64_t)a.c.hq * a.c.d, tot = a.c.lq * hd;
        /* the twin on a single-head piece of <= 128 rows (what the dispatcher hands it) */
        if (a.c.hq == 1 && a.c.hkv == 1 && a.c.lq <= 128) {
            qk_attn_params p = attn_params(&a);
            float *o = malloc((size_t)(a.c.lq * a.os) * sizeof(float)), *y = malloc((size_t)tot * sizeof(float));
            for (int64_t i = 0; i < a.c.lq * a.os; i++) o[i] = NAN;
            qk_attention_neon(&p, a.q, a.k, a.v, o, scratch);
            for (int64_t i = 0; i < a.c.lq; i++) memcpy(y + i * hd, o + i * a.os, (size_t)hd * sizeof(float));
            double err = rel_l2(y, ref, tot);
            check(err <= TOL_ATTN_RELL2, "attention_neon piece %d: rel L2 %g", n, err);
            free(o); free(y);
        }
        /* the public kernel under the neon tier: 1 vs 2 threads, vs naive, empty rows exactly zero */
        qk_set_isa("neon");
        qk_set_threads(1);
        float *y1 = attn_public(&a);
        qk_set_threads(2);
        float *y2 = attn_public(&a);
        check(bits_equal(y1, y2, tot), "attention case %d: 1 vs 2 threads", n);
        for (int t = 1; t < NT; t++) {   /* dotprod and i8mm dispatch to the same NEON kernel */
            if (qk_set_isa(k_tiers[t].name) != 0) continue;
            float *yt = attn_public(&a);
            check(bits_equal(yt, y2, tot), "attention case %d under %s differs from neon", n, k_tiers[t].name);
            free(yt);
        }
        qk_set_isa("ref");
        double err = rel_l2(y1, ref, tot);
        check(err <= TOL_ATTN_RELL2, "attention case %d: rel L2 %g", n, err);
        int zero_ok = 1;
        for (int64_t i = 0; i < a.c.lq * a.c.hq; i++) {
            int empty = 1;
            for (int64_t x = 0; x < a.c.d; x++) empty &= ref[i * a.c.d + x] == 0;
            if (empty) for (int64_t x = 0; x < a.c.d; x++) zero_ok &= y1[i * a.c.d + x] == 0;
        }
        check(zero_ok, "attention case %d: a row with no visible key is not zero", n);
        free(y1); free(y2); free(ref); free(a.q); free(a.k); free(a.v);
    }
    free(scratch);
    printf("attention neon vs naive: %d passed, %d failed\n", g_pass - pass0, g_fail - before);
}

/* ---- convolution ----------------------------------------------------------------------------- */
typedef struct { int h, w, cin, cout, stride, pt, pb, pl, pr; } conv_case;
static int64_t conv_oh(const conv_case *c) { return (c->h + c->pt + c->pb - 3) / c->stride + 1; }
static int64_t conv_ow(const conv_case *c) { return (c->w + c->pl + c->pr - 3) / c->stride + 1; }
static qk_conv_params conv_params(const conv_case *c, int acc) {
    return (qk_conv_params){ .h = c->h, .w = c->w, .cin = c->cin, .cout = c->cout, .stride = c->stride,
                             .pad_t = c->pt, .pad_b = c->pb, .pad_l = c->pl, .pad_r = c->pr, .accumulate = acc };
}
/* im2col row of output pixel (oy, ox), (ky, kx, cin) order, zeros outside the image */
static void conv_patch(const conv_case *c, const float *x, int64_t oy, int64_t ox, float *row) {
    memset(row, 0, (size_t)(9 * c->cin) * sizeof(float));
    for (int ky = 0; ky < 3; ky++) {
        int64_t iy = oy * c->stride - c->pt + ky;
        if (iy < 0 || iy >= c->h) continue;
        for (int kx = 0; kx < 3; kx++) {
            int64_t ix = ox * c->stride - c->pl + kx;
            if (ix < 0 || ix >= c->w) continue;
            memcpy(row + (ky * 3 + kx) * c->cin, x + (iy * c->w + ix) * c->cin, (size_t)c->cin * sizeof(float));
        }
    }
}

static void test_conv(void) {
    int before = g_fail, pass0 = g_pass;
    const conv_case cases[] = {   /* ConvTests.cases */
        { 1, 1, 1, 1, 1, 1, 1, 1, 1 }, { 5, 7, 3, 5, 1, 1, 1, 1, 1 }, { 9, 6, 17, 16, 1, 0, 0, 0, 0 },
        { 8, 11, 8, 7, 2, 0, 1, 0, 1 }, { 7, 9, 5, 9, 2, 1, 1, 1, 1 }, { 6, 5, 4, 3, 1, 2, 0, 0, 2 },
        { 12, 13, 33, 31, 1, 1, 1, 1, 1 }, { 2, 4, 2, 2, 2, 1, 0, 0, 0 },
    };
    rng_t r = { 40 };
    scheme_t f32 = { QK_F32, 0, "f32" };
    for (int n = 0; n < (int)(sizeof cases / sizeof cases[0]); n++) {
        const conv_case *c = &cases[n];
        int64_t oh = conv_oh(c), ow = conv_ow(c), k9 = 9 * c->cin, ny = oh * ow * c->cout;
        float *x = rfloats(&r, (int64_t)c->h * c->w * c->cin, 1), *wv = rfloats(&r, c->cout * k9, 1), *bias = rfloats(&r, c->cout, 1);
        packed_t w = pack(f32, c->cout, k9, wv);
        double *ref = malloc((size_t)ny * sizeof(double));
        float *row = malloc((size_t)k9 * sizeof(float));
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                conv_patch(c, x, oy, ox, row);
                for (int64_t co = 0; co < c->cout; co++) {
                    double s = bias[co];
                    for (int64_t i = 0; i < k9; i++) s += (double)row[i] * wv[co * k9 + i];
                    ref[(oy * ow + ox) * c->cout + co] = s;
                }
            }
        for (int t = 0; t < NT; t++) {
            if (qk_set_isa(k_tiers[t].name) != 0) continue;
            qk_conv_params p = conv_params(c, 0);
            float *y1 = malloc((size_t)ny * sizeof(float)), *y2 = malloc((size_t)ny * sizeof(float));
            qk_set_threads(1); qk_conv3x3(&p, &w.w, x, bias, y1);
            qk_set_threads(2); qk_conv3x3(&p, &w.w, x, bias, y2);
            check(bits_equal(y1, y2, ny), "conv %s case %d: 1 vs 2 threads", k_tiers[t].name, n);
            double err = rel_l2(y1, ref, ny);
            check(err <= TOL_CONV_RELL2, "conv %s case %d: rel L2 %g", k_tiers[t].name, n, err);
            /* accumulate: y += conv(x) + bias */
            float *prior = rfloats(&r, ny, 1);
            double *want = malloc((size_t)ny * sizeof(double));
            for (int64_t i = 0; i < ny; i++) want[i] = ref[i] + prior[i];
            p.accumulate = 1;
            qk_conv3x3(&p, &w.w, x, bias, prior);
            err = rel_l2(prior, want, ny);
            check(err <= TOL_CONV_RELL2, "conv %s accumulate case %d: rel L2 %g", k_tiers[t].name, n, err);
            free(y1); free(y2); free(prior); free(want);
        }
        qk_set_isa("ref");
        free(x); free(wv); free(bias); free(w.buf); free(ref); free(row);
    }
    /* the implicit GEMM feeds qk_matmul exactly the im2col rows: identical bits to an explicit im2col */
    conv_case c = { 21, 19, 24, 20, 1, 1, 1, 1, 1 };
    rng_t r2 = { 41 };
    int64_t oh = conv_oh(&c), ow = conv_ow(&c), k9 = 9 * c.cin, np = oh * ow, ny = np * c.cout;
    float *x = rfloats(&r2, (int64_t)c.h * c.w * c.cin, 1), *wv = rfloats(&r2, c.cout * k9, 1), *bias = rfloats(&r2, c.cout, 1);
    float *cols = malloc((size_t)(np * k9) * sizeof(float));
    for (int64_t oy = 0; oy < oh; oy++) for (int64_t ox = 0; ox < ow; ox++) conv_patch(&c, x, oy, ox, cols + (oy * ow + ox) * k9);
    const scheme_t ss[] = { { QK_F32, 0, "f32" }, { QK_BF16, 0, "bf16" }, { QK_F16, 0, "f16" }, { QK_Q8, 0, "q8/g0" },
                            { QK_Q8, 32, "q8/g32" }, { QK_Q4, 32, "q4/g32" } };
    for (int t = 0; t < NT; t++) {
        if (qk_set_isa(k_tiers[t].name) != 0) continue;
        for (int si = 0; si < 6; si++) {
            packed_t w = pack(ss[si], c.cout, k9, wv);
            float *y = malloc((size_t)ny * sizeof(float)), *g = malloc((size_t)ny * sizeof(float));
            qk_matmul(&w.w, cols, np, bias, y);
            qk_conv_params p = conv_params(&c, 0);
            qk_conv3x3(&p, &w.w, x, bias, g);
            check(bits_equal(g, y, ny), "conv %s %s: implicit GEMM differs from explicit im2col", k_tiers[t].name, ss[si].name);
            free(y); free(g); free(w.buf);
        }
    }
    qk_set_isa("ref");
    free(x); free(wv); free(bias); free(cols);
    /* integer schemes with cin a multiple of 32 (quantize once per band, int8 patch rows): the same bits
       (ConvTests.quantizeOnceEqualsExplicitIm2col) */
    const conv_case qc[] = { { 23, 9, 32, 20, 1, 1, 1, 1, 1 }, { 17, 12, 64, 33, 2, 0, 1, 0, 1 }, { 9, 7, 96, 16, 1, 2, 0, 0, 2 } };
    const scheme_t qs[] = { { QK_Q8, 0, "q8/g0" }, { QK_Q8, 128, "q8/g128" }, { QK_Q4, 64, "q4/g64" }, { QK_Q8S, 32, "q8s" },
                            { QK_Q4C, 32, "q4c" }, { QK_Q5S, 32, "q5s" }, { QK_Q6S, 32, "q6s" } };
    for (int n = 0; n < 3; n++) {
        const conv_case *cq = &qc[n];
        int64_t qoh = conv_oh(cq), qow = conv_ow(cq), qk9 = 9 * cq->cin, qnp = qoh * qow, qny = qnp * cq->cout;
        float *qx = rfloats(&r2, (int64_t)cq->h * cq->w * cq->cin, 1), *qwv = rfloats(&r2, cq->cout * qk9, 1);
        float *qb = rfloats(&r2, cq->cout, 1), *qcols = malloc((size_t)(qnp * qk9) * sizeof(float));
        for (int64_t oy = 0; oy < qoh; oy++) for (int64_t ox = 0; ox < qow; ox++) conv_patch(cq, qx, oy, ox, qcols + (oy * qow + ox) * qk9);
        for (int t = 0; t < NT; t++) {
            if (qk_set_isa(k_tiers[t].name) != 0) continue;
            for (int si = 0; si < (int)(sizeof qs / sizeof qs[0]); si++) {
                packed_t w = pack(qs[si], cq->cout, qk9, qwv);
                float *y = malloc((size_t)qny * sizeof(float)), *g1 = malloc((size_t)qny * sizeof(float)), *g2 = malloc((size_t)qny * sizeof(float));
                qk_matmul(&w.w, qcols, qnp, qb, y);
                qk_conv_params p = conv_params(cq, 0);
                qk_set_threads(1); qk_conv3x3(&p, &w.w, qx, qb, g1);
                qk_set_threads(2); qk_conv3x3(&p, &w.w, qx, qb, g2);
                check(bits_equal(g1, y, qny) && bits_equal(g2, y, qny), "conv %s %s case %d: quantize-once path differs from explicit im2col",
                      k_tiers[t].name, qs[si].name, n);
                free(y); free(g1); free(g2); free(w.buf);
            }
        }
        qk_set_isa("ref");
        free(qx); free(qwv); free(qb); free(qcols);
    }
    /* qk_conv2x2 (the upsamplers' parity convolutions) equals qk_matmul on the gathered 2x2 patches
       (ConvTests.conv2x2EqualsGatheredMatmul, first case: window offsets -1, quantize-once path) */
    {
        const int64_t rows = 13, cols = 9, cin = 32, cout = 24, k4 = 4 * cin, np2 = rows * cols;
        float *x2 = rfloats(&r2, rows * cols * cin, 1), *w2 = rfloats(&r2, cout * k4, 1), *b2 = rfloats(&r2, cout, 1);
        float *cols2 = calloc((size_t)(np2 * k4), sizeof(float));
        for (int64_t rr = 0; rr < rows; rr++) for (int64_t cc = 0; cc < cols; cc++) for (int a = 0; a < 2; a++) for (int b = 0; b < 2; b++) {
            int64_t u = rr - 1 + a, v = cc - 1 + b;
            if (u < 0 || u >= rows || v < 0 || v >= cols) continue;
            memcpy(cols2 + ((rr * cols + cc) * 4 + a * 2 + b) * cin, x2 + (u * cols + v) * cin, (size_t)cin * sizeof(float));
        }
        const scheme_t s2[] = { { QK_F32, 0, "f32" }, { QK_Q8, 32, "q8/g32" }, { QK_Q8S, 32, "q8s" } };
        for (int t = 0; t < NT; t++) {
            if (qk_set_isa(k_tiers[t].name) != 0) continue;
            for (int si = 0; si < 3; si++) {
                packed_t w = pack(s2[si], cout, k4, w2);
                float *want = malloc((size_t)(np2 * cout) * sizeof(float)), *got = malloc((size_t)(np2 * cout) * sizeof(float));
                qk_matmul(&w.w, cols2, np2, b2, want);
                qk_conv2x2_params p2 = { .rows = rows, .cols = cols, .cin = cin, .cout = cout, .x_row_stride = cols * cin,
                                         .dy0 = -1, .dx0 = -1, .vh = rows, .vw = cols, .y_row_stride = cols * cout, .y_col_stride = cout };
                qk_set_threads(2); qk_conv2x2(&p2, &w.w, x2, b2, got);
                check(bits_equal(got, want, np2 * cout), "conv2x2 %s %s: differs from the gathered matmul", k_tiers[t].name, s2[si].name);
                free(want); free(got); free(w.buf);
            }
        }
        qk_set_isa("ref");
        free(x2); free(w2); free(b2); free(cols2);
    }
    printf("conv3x3 (implicit GEMM over the ARM matmul tiers): %d passed, %d failed\n", g_pass - pass0, g_fail - before);
}

/* qwen-bench limits loops: they run and count what they claim (not a speed test under emulation). */
static void test_limits(void) {
    int before = g_fail, pass0 = g_pass;
    check(qk_limits_fma(800) == 12.0 * 8.0 * 800, "qk_limits_fma: %g", qk_limits_fma(800));
    double i8 = qk_limits_int8(800), i8g = qk_limits_int8_gemm(800);
    double want = qk_tier_supported(QK_TIER_DOTPROD) ? 12.0 * 32.0 * 800 : 8.0 * 16.0 * 800;
    check(i8 == want, "qk_limits_int8: %g, expected %g", i8, want);
    check(i8g == want, "qk_limits_int8_gemm: %g, expected %g", i8g, want);
    uint32_t *buf = aligned_alloc(64, 4096);
    for (int i = 0; i < 1024; i++) buf[i] = 1;
    check(qk_limits_read(buf, 4096) == 256, "qk_limits_read: %g", qk_limits_read(buf, 4096));
    free(buf);
    printf("limits loops: %d passed, %d failed\n", g_pass - pass0, g_fail - before);
}

int main(void) {
    printf("aarch64 kernel driver: best tier on this CPU: %s; supported:", qk_isa_name());
    for (int t = 0; t < NT; t++) printf(" %s=%s", k_tiers[t].name, qk_tier_supported(k_tiers[t].tier) ? "yes" : "no (skipped)");
    printf("\n");
    qk_set_threads(2);
    test_matmul_tiers();
    test_matmul_threads();
    test_ops();
    test_conversions();
    test_ops_threads();
    test_attention();
    test_conv();
    test_limits();
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}
