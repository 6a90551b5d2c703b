#include "qk.h"
#include <stdio.h>
#include <stdlib.h>
/* Placeholder until the kernels land: aborts loudly rather than computing garbage. */
void qk_matmul(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y) {
    (void)w; (void)x; (void)m; (void)bias; (void)y;
    fprintf(stderr, "qk_matmul: not implemented yet\n"); abort();
}
void qk_weight_dequant_row(const qk_weight *w, int64_t row, float *out) {
    (void)w; (void)row; (void)out;
    fprintf(stderr, "qk_weight_dequant_row: not implemented yet\n"); abort();
}
static int g_threads = 1;
void qk_set_threads(int n) { g_threads = n > 0 ? n : 1; }
int qk_get_threads(void) { return g_threads; }
