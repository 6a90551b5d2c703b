/*
 * conv.c: public qk_conv3x3. SIMD tiers: implicit GEMM. Integer schemes with cin a multiple of 32
 * (every VAE convolution but the first): a task owns a band of output rows, quantizes the band's input
 * rows once and gathers int8 patch rows for qk_matmul_xq_with_tier (conv_q_task). Other schemes: a
 * task owns a tile of consecutive output pixels, gathers their f32 3x3 patches into its thread's
 * scratch as rows of a [tile, 9 * cin] matrix (k order (ky, kx, cin), zeros where the patch leaves the
 * padded image) and multiplies by the weight with qk_matmul. Both nest in the pool (the matmul runs
 * serially on the task's thread); no full im2col buffer. Both equal qk_matmul on the explicit im2col.
 * The ref tier runs the naive direct convolution (conv_ref.c), split over output rows.
 * accumulate != 0: y += conv(x) + bias (bias may be NULL).
 */
#include "qk_internal.h"
#include "qk_matmul_internal.h"
#include "qk_ops_internal.h"
#include <string.h>

typedef struct {
    const qk_conv_params *p;
    const qk_weight *w;
    const float *x, *bias;
    float *y;
    int64_t oh, ow, tile, ntiles;
    /* quantize-once path: output rows per task, padded k, patch row bytes, the tier and its offset */
    int64_t band, kp;
    size_t xs;
    const qk_mm_tier *tier;
    int32_t off;
} conv_ctx;

/* Pixels per matmul call: patch rows of row_bytes each fill about 384 KiB (L2-resident next to the
   weight stream), a multiple of 16 between 16 and 512. */
static int64_t patch_tile(int64_t row_bytes) {
    int64_t t = 393216 / row_bytes / 16 * 16;
    return t < 16 ? 16 : t > 512 ? 512 : t;
}

/* Output rows per task: at most cap, at least 4 tasks per thread when there are the rows, at least 1. */
static int64_t band_rows(int64_t cap, int64_t rows) {
    int64_t per = (rows + 4 * qk_get_threads() - 1) / (4 * qk_get_threads());
    int64_t b = cap < per ? cap : per;
    return b < 1 ? 1 : b;
}

/* Bytes of n pixels of cin values quantized by a tier's quantx: q [n * cin], then xd and c [n * cin / 32]. */
static size_t qrow_bytes(int64_t n, int64_t cin) { return (size_t)(n * cin) + (size_t)(n * (cin / QK_ABLK)) * 8; }

/* Quantizes `rows` rows of n pixels (row r at x + r * stride floats) into out, qrow_bytes(n, cin) apart:
   one quantx call per row (32-value blocks never straddle pixels when cin is a multiple of 32). */
static void quantize_rows(const qk_mm_tier *tier, int32_t off, const float *x, int64_t stride, int64_t rows,
                          int64_t n, int64_t cin, uint8_t *out) {
    qk_quantx_fn qf = tier->quantx ? tier->quantx : qk_quantize_x_ref;
    for (int64_t r = 0; r < rows; r++) qf(x + r * stride, n * cin, n * cin, off, out + (size_t)r * qrow_bytes(n, cin));
}

static void gather(const conv_ctx *c, int64_t p0, int64_t np, float *patch) {
    const qk_conv_params *p = c->p;
    int64_t cin = p->cin, s = p->stride, k9 = 9 * cin;
    for (int64_t t = 0; t < np; t++) {
        int64_t oy = (p0 + t) / c->ow, ox = (p0 + t) % c->ow;
        float *row = patch + t * k9;
        for (int64_t ky = 0; ky < 3; ky++) {
            int64_t iy = oy * s - p->pad_t + ky;
            float *dst = row + ky * 3 * cin;
            if (iy < 0 || iy >= p->h) { memset(dst, 0, (size_t)(3 * cin) * sizeof(float)); continue; }
            int64_t ix0 = ox * s - p->pad_l;
            const float *src = c->x + (iy * p->w) * cin;
            if (ix0 >= 0 && ix0 + 2 < p->w) {
                memcpy(dst, src + ix0 * cin, (size_t)(3 * cin) * sizeof(float));   /* taps kx = 0..2: consecutive pixels */
                continue;
            }
            for (int64_t kx = 0; kx < 3; kx++) {
                int64_t ix = ix0 + kx;
                if (ix < 0 || ix >= p->w) memset(dst + kx * cin, 0, (size_t)cin * sizeof(float));
                else memcpy(dst + kx * cin, src + ix * cin, (size_t)cin * sizeof(float));
            }
        }
    }
}

static void conv_gemm_task(void *ctx, int64_t task, int thread_id) {
    const conv_ctx *c = (const conv_ctx *)ctx;
    const qk_conv_params *p = c->p;
    int64_t npix = c->oh * c->ow, p0 = task * c->tile, np = npix - p0 < c->tile ? npix - p0 : c->tile;
    size_t patch_bytes = ((size_t)(np * 9 * p->cin) * sizeof(float) + 63) / 64 * 64;
    size_t out_bytes = p->accumulate ? (size_t)(np * p->cout) * sizeof(float) : 0;
    char *scratch = (char *)qk_thread_scratch(thread_id, patch_bytes + out_bytes);
    float *patch = (float *)scratch;
    gather(c, p0, np, patch);
    float *y = c->y + p0 * p->cout;
    if (!p->accumulate) {
        qk_matmul(c->w, patch, np, c->bias, y);
        return;
    }
    float *tmp = (float *)(scratch + patch_bytes);
    qk_matmul(c->w, patch, np, c->bias, tmp);
    for (int64_t i = 0; i < np * p->cout; i++) y[i] += tmp[i];
}

/* Quantized rows: tier->quantx on n pixels of cin values writes q [n * cin], xd [n * cin / 32], c [n * cin / 32].
   put_taps copies pixels v .. v + ntaps - 1 of such a row (src; NULL: zeros, as quantx writes them for zero
   values) into taps tap .. tap + ntaps - 1 of a patch row in the qk_xq_row_bytes(kp) layout (three copies
   however many taps: a 3x3 patch row's taps are consecutive pixels); zero_tail clears the blocks past ntaps
   taps (k padded to the weight's group). */
static inline void put_taps(uint8_t *row, int64_t kp, int64_t tap, int64_t ntaps, int64_t cin, const uint8_t *src, int64_t n, int64_t v) {
    const int64_t nb = cin / QK_ABLK;
    float *xd = (float *)(row + kp);
    int32_t *cc = (int32_t *)(xd + kp / QK_ABLK);
    if (!src) {
        memset(row + tap * cin, 0, (size_t)(ntaps * cin));
        memset(xd + tap * nb, 0, (size_t)(ntaps * nb) * sizeof(float));
        memset(cc + tap * nb, 0, (size_t)(ntaps * nb) * sizeof(int32_t));
        return;
    }
    const float *sxd = (const float *)(src + n * cin);
    const int32_t *sc = (const int32_t *)(sxd + n * nb);
    memcpy(row + tap * cin, src + v * cin, (size_t)(ntaps * cin));
    memcpy(xd + tap * nb, sxd + v * nb, (size_t)(ntaps * nb) * sizeof(float));
    memcpy(cc + tap * nb, sc + v * nb, (size_t)(ntaps * nb) * sizeof(int32_t));
}

static inline void zero_tail(uint8_t *row, int64_t kp, int64_t ntaps, int64_t cin) {
    const int64_t used = ntaps * cin / QK_ABLK, kb = kp / QK_ABLK;
    if (kb <= used) return;
    float *xd = (float *)(row + kp);
    int32_t *cc = (int32_t *)(xd + kb);
    memset(row + ntaps * cin, 0, (size_t)(kp - ntaps * cin));
    memset(xd + used, 0, (size_t)(kb - used) * sizeof(float));
    memset(cc + used, 0, (size_t)(kb - used) * sizeof(int32_t));
}

/* Integer schemes with cin a multiple of 32: each 32-value activation block of a patch row is one
   input pixel's, so its int8 values, scale and c are the same in every patch that holds the pixel.
   A task owns a band of output rows: it quantizes the band's input rows once (tier->quantx on a whole
   row: blocks never straddle pixels), gathers int8 patch rows from them (qk_xq_row_bytes layout) and
   multiplies with qk_matmul_xq_with_tier. Same results as quantizing the f32 patch rows (the old path
   did that for every patch, 9 times per pixel), so bit-identical to qk_matmul on im2col. */
static void conv_q_task(void *ctx, int64_t task, int thread_id) {
    const conv_ctx *c = (const conv_ctx *)ctx;
    const qk_conv_params *p = c->p;
    const int64_t cin = p->cin, s = p->stride, kp = c->kp;
    const int64_t oy0 = task * c->band, oy1 = oy0 + c->band < c->oh ? oy0 + c->band : c->oh;
    int64_t qy0 = oy0 * s - p->pad_t, qy1 = (oy1 - 1) * s - p->pad_t + 3;
    if (qy0 < 0) qy0 = 0;
    if (qy1 > p->h) qy1 = p->h;
    const int64_t nrows = qy1 > qy0 ? qy1 - qy0 : 0;
    const size_t rowq = qrow_bytes(p->w, cin), xs = c->xs;
    const size_t qbytes = ((size_t)nrows * rowq + 63) / 64 * 64, patch_bytes = (size_t)c->tile * xs;
    const size_t out_bytes = p->accumulate ? (size_t)(c->tile * p->cout) * sizeof(float) : 0;
    uint8_t *scratch = (uint8_t *)qk_thread_scratch(thread_id, qbytes + patch_bytes + out_bytes);
    uint8_t *qrows = scratch, *patch = scratch + qbytes;
    float *tmp = (float *)(patch + patch_bytes);
    quantize_rows(c->tier, c->off, c->x + qy0 * p->w * cin, p->w * cin, nrows, p->w, cin, qrows);
    const int64_t pend = oy1 * c->ow;
    for (int64_t p0 = oy0 * c->ow; p0 < pend; p0 += c->tile) {
        int64_t np = pend - p0 < c->tile ? pend - p0 : c->tile;
        for (int64_t t = 0; t < np; t++) {
            int64_t oy = (p0 + t) / c->ow, ox = (p0 + t) % c->ow;
            uint8_t *q = patch + (size_t)t * xs;
            for (int64_t ky = 0; ky < 3; ky++) {
                int64_t iy = oy * s - p->pad_t + ky;
                const uint8_t *src = iy >= 0 && iy < p->h ? qrows + (size_t)(iy - qy0) * rowq : NULL;
                int64_t ix0 = ox * s - p->pad_l;
                if (!src || (ix0 >= 0 && ix0 + 2 < p->w)) {   /* the row's three taps are consecutive pixels */
                    put_taps(q, kp, ky * 3, 3, cin, src, p->w, ix0);
                    continue;
                }
                for (int64_t kx = 0; kx < 3; kx++) {
                    int64_t ix = ix0 + kx;
                    put_taps(q, kp, ky * 3 + kx, 1, cin, ix >= 0 && ix < p->w ? src : NULL, p->w, ix);
                }
            }
            zero_tail(q, kp, 9, cin);
        }
        float *y = c->y + p0 * p->cout;
        if (!p->accumulate) {
            qk_matmul_xq_with_tier(c->tier, c->w, patch, np, c->bias, y);
            continue;
        }
        qk_matmul_xq_with_tier(c->tier, c->w, patch, np, c->bias, tmp);
        for (int64_t i = 0; i < np * p->cout; i++) y[i] += tmp[i];
    }
}

static void conv_ref_task(void *ctx, int64_t task, int thread_id) {
    const conv_ctx *c = (const conv_ctx *)ctx;
    int64_t oy0 = task * c->tile, oy1 = oy0 + c->tile < c->oh ? oy0 + c->tile : c->oh;
    float *wrow = (float *)qk_thread_scratch(thread_id, (size_t)(9 * c->p->cin) * sizeof(float));
    qk_conv3x3_ref(c->p, c->w, c->x, c->bias, c->y, oy0, oy1, wrow);
}

void qk_conv3x3(const qk_conv_params *p, const qk_weight *w, const float *x, const float *bias, float *y) {
    if (p->stride < 1 || p->h + p->pad_t + p->pad_b < 3 || p->w + p->pad_l + p->pad_r < 3) return;
    conv_ctx c = { .p = p, .w = w, .x = x, .bias = bias, .y = y };
    c.oh = (p->h + p->pad_t + p->pad_b - 3) / p->stride + 1;
    c.ow = (p->w + p->pad_l + p->pad_r - 3) / p->stride + 1;
    if (c.oh <= 0 || c.ow <= 0 || p->cin <= 0 || p->cout <= 0) return;
    if (qk_tier_current() == QK_TIER_REF) {
        c.tile = 1;
        qk_parallel_for(c.oh, conv_ref_task, &c);
        return;
    }
    const qk_mm_tier *tier = qk_mm_tier_current();
    int64_t kp = qk_weight_kp(w->scheme, w->group, w->k);
    if (qk_scheme_is_int(w->scheme) && p->cin % QK_ABLK == 0 && w->k == 9 * p->cin && kp >= w->k) {
        c.tier = tier;
        c.off = qk_mm_act_off(tier, w->scheme);
        c.kp = kp;
        c.xs = qk_xq_row_bytes(kp);
        c.tile = patch_tile((int64_t)c.xs);
        /* the band's quantized input rows within about 512 KiB (each band requantizes its 2 halo rows) */
        c.band = band_rows(((1 << 19) / (int64_t)qrow_bytes(p->w, p->cin) - 2) / p->stride, c.oh);
        qk_parallel_for((c.oh + c.band - 1) / c.band, conv_q_task, &c);
        return;
    }
    c.tile = patch_tile(9 * p->cin * (int64_t)sizeof(float));
    if (c.tile > c.oh * c.ow) c.tile = c.oh * c.ow;
    c.ntiles = (c.oh * c.ow + c.tile - 1) / c.tile;
    qk_parallel_for(c.ntiles, conv_gemm_task, &c);
}

/* ---- qk_conv2x2: the upsamplers' parity convolutions ------------------------------------------- */
typedef struct {
    const qk_conv2x2_params *p;
    const qk_weight *w;
    const float *x, *bias;
    float *y;
    int64_t band, tile, kp;
    size_t xs;                  /* patch row bytes: int8 (qk_xq_row_bytes) or f32 */
    int quant;                  /* integer scheme, cin a multiple of 32: quantize input rows once */
    const qk_mm_tier *tier;
    int32_t off;
} conv2_ctx;

static void conv2_task(void *ctx, int64_t task, int thread_id) {
    const conv2_ctx *c = (const conv2_ctx *)ctx;
    const qk_conv2x2_params *p = c->p;
    const int64_t cin = p->cin, cout = p->cout, r0 = task * c->band;
    const int64_t r1 = r0 + c->band < p->rows ? r0 + c->band : p->rows;
    /* input rows u in [u0, u1) and columns v in [v0, v1) the band reads, inside the valid window */
    int64_t u0 = r0 + p->dy0, u1 = r1 + p->dy0 + 1, v0 = p->dx0, v1 = p->cols + p->dx0 + 1;
    if (u0 < 0) u0 = 0;
    if (u1 > p->vh) u1 = p->vh;
    if (v0 < 0) v0 = 0;
    if (v1 > p->vw) v1 = p->vw;
    const int64_t nu = u1 > u0 ? u1 - u0 : 0, nv = v1 > v0 ? v1 - v0 : 0;
    const int64_t kp = c->kp;
    const size_t rowq = c->quant ? qrow_bytes(nv, cin) : 0, xs = c->xs;
    const size_t qbytes = ((size_t)nu * rowq + 63) / 64 * 64;
    const size_t patch_bytes = ((size_t)c->tile * xs + 63) / 64 * 64;
    uint8_t *scratch = (uint8_t *)qk_thread_scratch(thread_id, qbytes + patch_bytes + (size_t)(c->tile * cout) * sizeof(float));
    uint8_t *qrows = scratch, *patch = scratch + qbytes;
    float *res = (float *)(patch + patch_bytes);
    if (c->quant) quantize_rows(c->tier, c->off, c->x + u0 * p->x_row_stride + v0 * cin, p->x_row_stride, nu, nv, cin, qrows);
    const int64_t pend = r1 * p->cols;
    for (int64_t q0 = r0 * p->cols; q0 < pend; q0 += c->tile) {
        int64_t np = pend - q0 < c->tile ? pend - q0 : c->tile;
        for (int64_t t = 0; t < np; t++) {
            int64_t r = (q0 + t) / p->cols, col = (q0 + t) % p->cols;
            uint8_t *row = patch + (size_t)t * xs;
            for (int64_t a = 0; a < 2; a++) {
                int64_t u = r + p->dy0 + a;
                for (int64_t b = 0; b < 2; b++) {
                    int64_t v = col + p->dx0 + b, tap = a * 2 + b;
                    int inside = u >= 0 && u < p->vh && v >= 0 && v < p->vw;
                    if (c->quant) {
                        put_taps(row, kp, tap, 1, cin, inside ? qrows + (size_t)(u - u0) * rowq : NULL, nv, v - v0);
                    } else if (inside) {
                        memcpy((float *)row + tap * cin, c->x + u * p->x_row_stride + v * cin, (size_t)cin * sizeof(float));
                    } else {
                        memset((float *)row + tap * cin, 0, (size_t)cin * sizeof(float));
                    }
                }
            }
            if (c->quant) zero_tail(row, kp, 4, cin);
        }
        if (c->quant) qk_matmul_xq_with_tier(c->tier, c->w, patch, np, c->bias, res);
        else qk_matmul(c->w, (const float *)patch, np, c->bias, res);
        for (int64_t t = 0; t < np; t++) {
            int64_t r = (q0 + t) / p->cols, col = (q0 + t) % p->cols;
            memcpy(c->y + r * p->y_row_stride + col * p->y_col_stride, res + t * cout, (size_t)cout * sizeof(float));
        }
    }
}

void qk_conv2x2(const qk_conv2x2_params *p, const qk_weight *w, const float *x, const float *bias, float *y) {
    if (p->rows <= 0 || p->cols <= 0 || p->cin <= 0 || p->cout <= 0) return;
    conv2_ctx c = { .p = p, .w = w, .x = x, .bias = bias, .y = y };
    c.tier = qk_mm_tier_current();
    c.kp = qk_weight_kp(w->scheme, w->group, w->k);
    c.quant = qk_scheme_is_int(w->scheme) && p->cin % QK_ABLK == 0 && w->k == 4 * p->cin && c.kp >= w->k;
    c.off = c.quant ? qk_mm_act_off(c.tier, w->scheme) : 0;
    c.xs = c.quant ? qk_xq_row_bytes(c.kp) : (size_t)(4 * p->cin) * sizeof(float);
    c.tile = patch_tile((int64_t)c.xs);
    /* the band's quantized input rows (one halo row) within about 512 KiB; f32: one tile of pixels */
    c.band = band_rows(c.quant ? (1 << 19) / (int64_t)qrow_bytes(p->cols + 1, p->cin) - 1 : (c.tile + p->cols - 1) / p->cols, p->rows);
    qk_parallel_for((p->rows + c.band - 1) / c.band, conv2_task, &c);
}
