/*
 * conv.c: public qk_conv3x3. SIMD tiers: implicit GEMM. A task owns a tile of consecutive output pixels,
 * gathers their 3x3 patches into its thread's scratch as rows of a [tile, 9 * cin] matrix (k order
 * (ky, kx, cin), zeros where the patch leaves the padded image) and multiplies by the weight with
 * qk_matmul (nested in the pool, so it runs serially on this thread). No full im2col buffer.
 * The ref tier runs the naive direct convolution (conv_ref.c), split over output rows.
 * accumulate != 0: y += conv(x) + bias (bias may be NULL).
 */
#include "qk_internal.h"
#include "qk_ops_internal.h"
#include <string.h>

typedef struct {
    const qk_conv_params *p;
    const qk_weight *w;
    const float *x, *bias;
    float *y;
    int64_t oh, ow, tile, ntiles;
} conv_ctx;

/* Output pixels per tile: the patch rows fill about 384 KiB (L2-resident next to the weight stream),
   a multiple of 16 between 16 and 512. */
static int64_t conv_tile(int64_t cin, int64_t npix) {
    int64_t t = (393216 / 4) / (9 * cin);
    t = t / 16 * 16;
    if (t < 16) t = 16;
    if (t > 512) t = 512;
    return t < npix ? t : npix;
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
                if (s == 1) memcpy(dst, src + ix0 * cin, (size_t)(3 * cin) * sizeof(float));
                else for (int64_t kx = 0; kx < 3; kx++)
                    memcpy(dst + kx * cin, src + (ix0 + kx) * cin, (size_t)cin * sizeof(float));
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
    c.tile = conv_tile(p->cin, c.oh * c.ow);
    c.ntiles = (c.oh * c.ow + c.tile - 1) / c.tile;
    qk_parallel_for(c.ntiles, conv_gemm_task, &c);
}
