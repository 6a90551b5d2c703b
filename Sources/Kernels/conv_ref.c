/*
 * conv_ref.c: naive direct 3x3 convolution, the reference the implicit-GEMM path is tested against.
 * Weight rows are dequantized one output channel at a time with qk_weight_dequant_row.
 */
#include "qk_ops_internal.h"

void qk_conv3x3_ref(const qk_conv_params *p, const qk_weight *w, const float *x, const float *bias, float *y,
                    int64_t oy0, int64_t oy1, float *wrow) {
    int64_t s = p->stride, cin = p->cin, cout = p->cout;
    int64_t ow = (p->w + p->pad_l + p->pad_r - 3) / s + 1;
    for (int64_t co = 0; co < cout; co++) {
        qk_weight_dequant_row(w, co, wrow); /* [9 * cin] in (ky, kx, cin) order */
        for (int64_t oy = oy0; oy < oy1; oy++) {
            for (int64_t ox = 0; ox < ow; ox++) {
                float acc = 0;
                for (int64_t ky = 0; ky < 3; ky++) {
                    int64_t iy = oy * s - p->pad_t + ky;
                    if (iy < 0 || iy >= p->h) continue;
                    for (int64_t kx = 0; kx < 3; kx++) {
                        int64_t ix = ox * s - p->pad_l + kx;
                        if (ix < 0 || ix >= p->w) continue;
                        const float *xp = x + (iy * p->w + ix) * cin, *wp = wrow + (ky * 3 + kx) * cin;
                        for (int64_t c = 0; c < cin; c++) acc += xp[c] * wp[c];
                    }
                }
                if (bias) acc += bias[co];
                float *yp = y + (oy * ow + ox) * cout + co;
                *yp = p->accumulate ? *yp + acc : acc;
            }
        }
    }
}
