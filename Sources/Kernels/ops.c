/*
 * ops.c: the public element-wise, row, rope, upsampling and conversion kernels. Each picks the twin of
 * the current tier and splits the rows (or elements) into independent chunks over the thread pool; a
 * chunk is computed exactly as the whole would be, so results do not depend on the thread count.
 */
#include "qk_internal.h"
#include "qk_ops_internal.h"

#if defined(__x86_64__)
#define QK_SELECT(t, name)                                                                                     \
    ((t) == QK_TIER_AVX512 ? name##_avx512                                                                     \
                           : ((t) == QK_TIER_AVX2 || (t) == QK_TIER_AVXVNNI) ? name##_avx2 : name##_ref)
#elif defined(__aarch64__)
#define QK_SELECT(t, name)                                                                                     \
    (((t) == QK_TIER_NEON || (t) == QK_TIER_DOTPROD || (t) == QK_TIER_I8MM) ? name##_neon : name##_ref)
#else
#define QK_SELECT(t, name) ((void)(t), name##_ref)
#endif

/* About 32K elements per task: a few microseconds of work, well above the pool's dispatch cost. */
#define QK_CHUNK_ELEMS 32768

static int64_t rows_per_task(int64_t rows, int64_t dim) {
    int64_t c = dim > 0 ? QK_CHUNK_ELEMS / dim : rows;
    if (c < 1) c = 1;
    return c < rows ? c : rows;
}

/* ---- row operations ---------------------------------------------------------------------------- */
typedef struct {
    int op; /* 0 rmsnorm, 1 l2norm, 2 softmax, 3 layernorm */
    const float *x, *wa, *wb;
    float *y;
    int64_t rows, dim, chunk;
    float eps;
    qk_tier tier;
} row_ctx;

static void row_run(const row_ctx *c, int64_t r0, int64_t nr) {
    const float *x = c->x + r0 * c->dim;
    float *y = c->y + r0 * c->dim;
    switch (c->op) {
    case 0: QK_SELECT(c->tier, qk_rmsnorm)(x, c->wa, nr, c->dim, c->eps, y); break;
    case 1: QK_SELECT(c->tier, qk_l2norm)(x, c->wa, c->wb, nr, c->dim, y); break;
    case 3: QK_SELECT(c->tier, qk_layernorm)(x, c->wa, c->wb, nr, c->dim, c->eps, y); break;
    default: QK_SELECT(c->tier, qk_softmax)(y, nr, c->dim); break;
    }
}

static void row_task(void *ctx, int64_t task, int thread_id) {
    (void)thread_id;
    const row_ctx *c = (const row_ctx *)ctx;
    int64_t r0 = task * c->chunk, nr = c->rows - r0 < c->chunk ? c->rows - r0 : c->chunk;
    row_run(c, r0, nr);
}

static void row_dispatch(row_ctx *c) {
    if (c->rows <= 0 || c->dim <= 0) return;
    c->tier = qk_tier_current();
    c->chunk = rows_per_task(c->rows, c->dim);
    int64_t ntasks = (c->rows + c->chunk - 1) / c->chunk;
    if (ntasks == 1) row_run(c, 0, c->rows);
    else qk_parallel_for(ntasks, row_task, c);
}

void qk_rmsnorm(const float *x, const float *weight, int64_t rows, int64_t dim, float eps, float *y) {
    row_ctx c = { .op = 0, .x = x, .wa = weight, .y = y, .rows = rows, .dim = dim, .eps = eps };
    row_dispatch(&c);
}

void qk_l2norm(const float *x, const float *gamma, const float *bias, int64_t rows, int64_t dim, float *y) {
    row_ctx c = { .op = 1, .x = x, .wa = gamma, .wb = bias, .y = y, .rows = rows, .dim = dim };
    row_dispatch(&c);
}

void qk_layernorm(const float *x, const float *weight, const float *bias, int64_t rows, int64_t dim, float eps,
                  float *y) {
    row_ctx c = { .op = 3, .x = x, .wa = weight, .wb = bias, .y = y, .rows = rows, .dim = dim, .eps = eps };
    row_dispatch(&c);
}

void qk_softmax(float *x, int64_t rows, int64_t n) {
    row_ctx c = { .op = 2, .x = x, .y = x, .rows = rows, .dim = n };
    row_dispatch(&c);
}

/* ---- element-wise operations and conversions ---------------------------------------------------- */
typedef struct {
    int op; /* 0 silu_mul, 1 silu, 2 gelu, 3 bf16->f32, 4 f16->f32, 5 f32->bf16, 6 f32->f16, 7 gelu tanh */
    const void *a, *b;
    void *y;
    int64_t n;
    qk_tier tier;
} elem_ctx;

static void elem_run(const elem_ctx *c, int64_t i0, int64_t len) {
    qk_tier t = c->tier;
    switch (c->op) {
    case 0: QK_SELECT(t, qk_silu_mul)((const float *)c->a + i0, (const float *)c->b + i0, len, (float *)c->y + i0); break;
    case 1: QK_SELECT(t, qk_silu)((float *)c->y + i0, len); break;
    case 2: QK_SELECT(t, qk_gelu_erf)((float *)c->y + i0, len); break;
    case 3: QK_SELECT(t, qk_bf16_to_f32)((const uint16_t *)c->a + i0, len, (float *)c->y + i0); break;
    case 4: QK_SELECT(t, qk_f16_to_f32)((const uint16_t *)c->a + i0, len, (float *)c->y + i0); break;
    case 7: QK_SELECT(t, qk_gelu_tanh)((float *)c->y + i0, len); break;
    case 5: QK_SELECT(t, qk_f32_to_bf16)((const float *)c->a + i0, len, (uint16_t *)c->y + i0); break;
    default: QK_SELECT(t, qk_f32_to_f16)((const float *)c->a + i0, len, (uint16_t *)c->y + i0); break;
    }
}

static void elem_task(void *ctx, int64_t task, int thread_id) {
    (void)thread_id;
    const elem_ctx *c = (const elem_ctx *)ctx;
    int64_t i0 = task * QK_CHUNK_ELEMS, len = c->n - i0 < QK_CHUNK_ELEMS ? c->n - i0 : QK_CHUNK_ELEMS;
    elem_run(c, i0, len);
}

static void elem_dispatch(elem_ctx *c) {
    if (c->n <= 0) return;
    c->tier = qk_tier_current();
    int64_t ntasks = (c->n + QK_CHUNK_ELEMS - 1) / QK_CHUNK_ELEMS;
    if (ntasks == 1) elem_run(c, 0, c->n);
    else qk_parallel_for(ntasks, elem_task, c);
}

void qk_silu_mul(const float *gate, const float *up, int64_t n, float *out) {
    elem_ctx c = { .op = 0, .a = gate, .b = up, .y = out, .n = n };
    elem_dispatch(&c);
}
void qk_silu(float *x, int64_t n) {
    elem_ctx c = { .op = 1, .y = x, .n = n };
    elem_dispatch(&c);
}
void qk_gelu_erf(float *x, int64_t n) {
    elem_ctx c = { .op = 2, .y = x, .n = n };
    elem_dispatch(&c);
}
void qk_gelu_tanh(float *x, int64_t n) {
    elem_ctx c = { .op = 7, .y = x, .n = n };
    elem_dispatch(&c);
}
void qk_bf16_to_f32(const uint16_t *x, int64_t n, float *y) {
    elem_ctx c = { .op = 3, .a = x, .y = y, .n = n };
    elem_dispatch(&c);
}
void qk_f16_to_f32(const uint16_t *x, int64_t n, float *y) {
    elem_ctx c = { .op = 4, .a = x, .y = y, .n = n };
    elem_dispatch(&c);
}
void qk_f32_to_bf16(const float *x, int64_t n, uint16_t *y) {
    elem_ctx c = { .op = 5, .a = x, .y = y, .n = n };
    elem_dispatch(&c);
}
void qk_f32_to_f16(const float *x, int64_t n, uint16_t *y) {
    elem_ctx c = { .op = 6, .a = x, .y = y, .n = n };
    elem_dispatch(&c);
}

/* ---- rope ---------------------------------------------------------------------------------------- */
typedef struct {
    float *x;
    const float *cos, *sin;
    int64_t rows, heads, head_dim, row_stride, chunk;
    qk_tier tier;
} rope_ctx;

static void rope_task(void *ctx, int64_t task, int thread_id) {
    (void)thread_id;
    const rope_ctx *c = (const rope_ctx *)ctx;
    int64_t r0 = task * c->chunk, nr = c->rows - r0 < c->chunk ? c->rows - r0 : c->chunk, half = c->head_dim / 2;
    QK_SELECT(c->tier, qk_rope)(c->x + r0 * c->row_stride, nr, c->heads, c->head_dim, c->row_stride,
                                c->cos + r0 * half, c->sin + r0 * half);
}

void qk_rope(float *x, int64_t rows, int64_t heads, int64_t head_dim, int64_t row_stride,
             const float *cos, const float *sin) {
    if (rows <= 0 || heads <= 0 || head_dim < 2) return;
    rope_ctx c = { .x = x, .cos = cos, .sin = sin, .rows = rows, .heads = heads, .head_dim = head_dim,
                   .row_stride = row_stride, .tier = qk_tier_current() };
    c.chunk = rows_per_task(rows, heads * head_dim);
    int64_t ntasks = (rows + c.chunk - 1) / c.chunk;
    if (ntasks == 1) rope_task(&c, 0, 0);
    else qk_parallel_for(ntasks, rope_task, &c);
}

/* ---- upsampling ---------------------------------------------------------------------------------- */
typedef struct {
    const float *x;
    float *y;
    int64_t h, w, c, chunk;
} up_ctx;

static void up_task(void *ctx, int64_t task, int thread_id) {
    (void)thread_id;
    const up_ctx *u = (const up_ctx *)ctx;
    int64_t r0 = task * u->chunk, nr = u->h - r0 < u->chunk ? u->h - r0 : u->chunk;
    qk_upsample2x_ref(u->x + r0 * u->w * u->c, nr, u->w, u->c, u->y + 4 * r0 * u->w * u->c);
}

void qk_upsample2x(const float *x, int64_t h, int64_t w, int64_t c, float *y) {
    if (h <= 0 || w <= 0 || c <= 0) return;
    up_ctx u = { .x = x, .y = y, .h = h, .w = w, .c = c };
    u.chunk = rows_per_task(h, 4 * w * c);
    int64_t ntasks = (h + u.chunk - 1) / u.chunk;
    if (ntasks == 1) up_task(&u, 0, 0);
    else qk_parallel_for(ntasks, up_task, &u);
}
