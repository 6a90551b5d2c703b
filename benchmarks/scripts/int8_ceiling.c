/* int8_ceiling.c: times qk_matmul on one weight shape for int8_ceiling.py (built against a copy of
   Sources/Kernels whose block epilogue the script may have rewritten).

   usage: int8_ceiling SCHEME M K N THREADS REPS   (SCHEME: the qk_scheme number, group 32)
   prints one JSON line: the median and best milliseconds of REPS timed calls after one untimed call,
   and the first output value (a rewritten epilogue computes something else: the value only shows
   that the call ran). */
#include "qk.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s SCHEME M K N THREADS REPS\n", argv[0]);
        return 2;
    }
    int scheme = atoi(argv[1]), threads = atoi(argv[5]), reps = atoi(argv[6]);
    long m = atol(argv[2]), k = atol(argv[3]), n = atol(argv[4]);
    if (reps < 1 || reps > 1000 || m < 1 || k < 1 || n < 1 || threads < 1) {
        fprintf(stderr, "%s: bad arguments\n", argv[0]);
        return 2;
    }
    qk_set_threads(threads);
    size_t bytes = qk_weight_bytes((qk_scheme)scheme, 32, n, k);
    if (bytes == 0) {
        fprintf(stderr, "%s: scheme %d does not take group 32\n", argv[0], scheme);
        return 2;
    }
    float *w = malloc(sizeof(float) * n * k), *x = malloc(sizeof(float) * m * k), *y = malloc(sizeof(float) * m * n);
    void *data = aligned_alloc(64, (bytes + 63) / 64 * 64);
    double *ms = malloc(sizeof(double) * reps);
    if (!w || !x || !y || !data || !ms) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        return 1;
    }
    srand(1);
    for (long i = 0; i < n * k; i++) w[i] = rand() / (float)RAND_MAX - 0.5f;
    for (long i = 0; i < m * k; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    if (qk_weight_pack_rows((qk_scheme)scheme, 32, n, k, 0, n, w, data) != 0) {
        fprintf(stderr, "%s: qk_weight_pack_rows failed\n", argv[0]);
        return 1;
    }
    free(w);
    qk_weight wt = {(qk_scheme)scheme, 32, n, k, data};
    qk_matmul(&wt, x, m, NULL, y);
    for (int r = 0; r < reps; r++) {
        double t = now();
        qk_matmul(&wt, x, m, NULL, y);
        ms[r] = (now() - t) * 1e3;
    }
    qsort(ms, reps, sizeof(double), cmp);
    printf("{\"isa\":\"%s\",\"ms_median\":%.4f,\"ms_best\":%.4f,\"y0\":\"%g\"}\n", qk_isa_name(), ms[reps / 2], ms[0], y[0]);
    return 0;
}
