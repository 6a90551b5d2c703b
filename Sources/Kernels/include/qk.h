/*
 * qk.h: the public header of the Kernels target (C, no I/O, no allocation on hot paths); the one
 * process-wide allocator setting lives apart in qk_process.h.
 *
 * Conventions
 *  - Activations are f32, row-major. A "token" / "pixel" is a row; features are contiguous.
 *  - Every kernel qk_<op> dispatches through a table filled once from cpuid to qk_<op>_<isa>;
 *    each has a scalar qk_<op>_ref twin with the same signature (declared in qk_internal.h).
 *    QK_ISA=ref|avx2|avxvnni|avx512 (x86-64) or ref|neon|dotprod|i8mm (aarch64) forces one tier
 *    (tests compare every tier on one machine).
 *  - Threading: a persistent pool (caller works too, dynamic chunks). Work is split only over
 *    independent outputs, never inside a reduction, so results are bit-identical for any thread count.
 *
 * Weight matrices (qk_weight)
 *  - A logical matrix W[n, k] (n outputs, k inputs; PyTorch Linear layout) stored in one of the
 *    schemes below, in the layout the kernels consume. The packed layout is private to this target:
 *    other code only calls qk_weight_bytes / qk_weight_pack_rows / qk_weight_dequant_row.
 *  - group = 0 means one scale per output row (per-channel); otherwise 32, 64 or 128 along k.
 *    k need not be a multiple of the group (the last group is padded with zeros). The compact-scale
 *    schemes QK_Q4C / QK_Q5S / QK_Q6S / QK_Q8S take group 32 only (their scales are 8-bit codes under one f32 scale per
 *    256 k, so the group costs 0.375 bits per weight instead of 1.0 for f32 scales per 32).
 *  - Packing is row-chunked so converters can stream huge tensors: rows [row0, row0+nrows) can be
 *    packed independently when row0 and nrows are multiples of qk_weight_row_align(scheme)
 *    (except for the final chunk, which may end at n).
 */
#ifndef QK_H
#define QK_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    QK_F32 = 0,
    QK_BF16 = 1,
    QK_F16 = 2,
    QK_Q8 = 3,
    QK_Q4 = 4,
    QK_Q4C = 5,   /* 4-bit codebook values, 8-bit group scales under a per-256 f32 scale: 4.375 bits/weight */
    QK_Q8S = 6,   /* 8-bit values with the same compact scales: 8.375 bits/weight */
    QK_Q5S = 7,   /* 5-bit values (levels -16..15) with the same compact scales: 5.375 bits/weight */
    QK_Q6S = 8,   /* 6-bit values (levels -32..31) with the same compact scales: 6.375 bits/weight */
} qk_scheme;
#define QK_NSCHEMES 9

typedef struct {
    qk_scheme scheme;
    int32_t group;      /* 0 = per output row; else 32, 64, 128 */
    int64_t n;          /* output rows */
    int64_t k;          /* input columns */
    const void *data;   /* qk_weight_bytes(scheme, group, n, k) bytes, 64-byte aligned */
} qk_weight;

/* ---- runtime ---------------------------------------------------------------------------------- */
/* Selected instruction-set tier: "ref", "avx2", "avxvnni", "avx512" (x86-64), "neon", "dotprod", "i8mm" (aarch64). */
const char *qk_isa_name(void);
/* Force a tier (name as above); returns 0 on success, -1 if unknown or unsupported by this CPU. */
int qk_set_isa(const char *name);
/* Number of worker threads including the caller (>= 1). Default: number of online CPUs. */
void qk_set_threads(int n);
int qk_get_threads(void);

/* ---- weight layout ---------------------------------------------------------------------------- */
/* Returns 0 for an unsupported (scheme, group). */
size_t qk_weight_bytes(qk_scheme scheme, int32_t group, int64_t n, int64_t k);
int64_t qk_weight_row_align(qk_scheme scheme);
/* Quantize / convert rows [row0, row0+nrows) of a row-major f32 matrix w[nrows, k] into `out`
   (the whole packed buffer of size qk_weight_bytes(...)). Returns 0, or -1 for bad arguments. */
int qk_weight_pack_rows(qk_scheme scheme, int32_t group, int64_t n, int64_t k,
                        int64_t row0, int64_t nrows, const float *w, void *out);
/* Same from bf16 source rows (the checkpoint dtype); bf16 -> QK_BF16 is a bit-exact copy. */
int qk_weight_pack_rows_bf16(qk_scheme scheme, int32_t group, int64_t n, int64_t k,
                             int64_t row0, int64_t nrows, const uint16_t *w, void *out);
/* The same with per-input-column importance imp[k] (>= 0, finite; e.g. the mean square of each input
   channel over calibration activations): the scale search of the integer schemes minimises
   sum_j imp[j] * (w[j] - dq(w)[j])^2 instead of the plain squared error. imp = NULL is the plain error
   (the two functions above). Float schemes ignore it. */
int qk_weight_pack_rows_imp(qk_scheme scheme, int32_t group, int64_t n, int64_t k,
                            int64_t row0, int64_t nrows, const float *w, const float *imp, void *out);
/* Dequantize one logical row to f32 out[k] (embedding lookup, verification). */
void qk_weight_dequant_row(const qk_weight *w, int64_t row, float *out);

/* ---- matrix products -------------------------------------------------------------------------- */
/* y[m, w->n] = x[m, w->k] . W^T (+ bias[n] if bias != NULL). x and y are dense row-major. */
void qk_matmul(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y);

/* bf16 packs, fast arithmetic: with on = 1, products with QK_BF16 weights round the activations to bf16
   and use the CPU's bf16 dot product (AVX512-BF16 vdpbf16ps: twice the f32 FMA rate), whose relative
   error is about that of the bf16 activations (2^-9 per value), as PyTorch's bf16 inference; 0 (the
   default) keeps the exact f32 path. Process-wide. Returns qk_bf16_dot_active(). */
int qk_set_bf16_dot(int on);
/* 1 when the fast bf16 arithmetic is on and the current tier has it (avx512 with AVX512-BF16, or the
   reference tier, which runs its scalar twin); 0 otherwise (QK_BF16 products take the exact path). */
int qk_bf16_dot_active(void);

/* ---- element-wise and row operations ----------------------------------------------------------- */
/* y[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight (in place allowed). transformers Qwen2RMSNorm,
   computed in f32: weight * (x * rsqrt(mean + eps)). */
void qk_rmsnorm(const float *x, const float *weight, int64_t rows, int64_t dim, float eps, float *y);
/* VAE norm: y[r, :] = x[r, :] / max(||x[r, :]||_2, 1e-12) * sqrt(dim) * gamma (+ bias if not NULL).
   diffusers QwenImage RMS_norm (F.normalize over channels); in place allowed. */
void qk_l2norm(const float *x, const float *gamma, const float *bias, int64_t rows, int64_t dim, float *y);
/* torch LayerNorm over the last dimension: y = (x - mean) / sqrt(var + eps) * weight + bias, var biased;
   computed in f32 (in place allowed). */
void qk_layernorm(const float *x, const float *weight, const float *bias, int64_t rows, int64_t dim, float eps,
                  float *y);
/* out[i] = silu(gate[i]) * up[i], silu(x) = x / (1 + exp(-x)); out may alias gate or up. */
void qk_silu_mul(const float *gate, const float *up, int64_t n, float *out);
void qk_silu(float *x, int64_t n);
/* Exact GELU: 0.5 x (1 + erf(x / sqrt 2)) (SIMD tiers evaluate x * erfc(-x / sqrt 2) / 2, relative error
   ~3e-7 even in the far negative tail). */
void qk_gelu_erf(float *x, int64_t n);
/* GELU, tanh approximation (transformers "gelu_pytorch_tanh"): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
   SIMD tiers evaluate the same function as x / (1 + exp(-2u)). */
void qk_gelu_tanh(float *x, int64_t n);
/* Row softmax in place. */
void qk_softmax(float *x, int64_t rows, int64_t n);

/* Rotary embedding, rotate-half convention (HF): for each row r and head h, with d = rot_dim / 2,
   (x[i], x[i+d]) <- (x[i] cos[r,i] - x[i+d] sin[r,i], x[i+d] cos[r,i] + x[i] sin[r,i]), i < d.
   x: [rows, heads, head_dim] with row stride `row_stride` floats; cos/sin: [rows, d]; rot_dim = head_dim. */
void qk_rope(float *x, int64_t rows, int64_t heads, int64_t head_dim, int64_t row_stride,
             const float *cos, const float *sin);
/* Rope tables. Layout of both: cos/sin [rows, head_dim / 2]; entry [r, i] is the angle of frequency slot i,
   applied by qk_rope to the pair (x[i], x[i + head_dim/2]) (the first half of transformers' cos/sin, whose
   second half repeats it). Computed as transformers does in f32: inv_freq rounded to f32, angle =
   f32(pos) * inv_freq rounded to f32, then cos/sin of that angle.
   3-axis multi-section rope (text model, Qwen2_5_VLRotaryEmbedding): inv_freq[i] = theta^(-2i/head_dim);
   slot i takes its position from pos_t for i < s0, pos_h for s0 <= i < s0 + s1, pos_w otherwise
   (sections = mrope_section, e.g. [16, 24, 24] for head_dim 128; text-only input: all three equal). */
void qk_rope_table_mrope(const int64_t *pos_t, const int64_t *pos_h, const int64_t *pos_w, int64_t rows,
                         int64_t head_dim, const int32_t sections[3], double theta, float *cos, float *sin);
/* The same with the slots interleaved over the axes (Qwen3VLTextRotaryEmbedding): slot i takes pos_h when
   i % 3 == 1 and i < 3 s1, pos_w when i % 3 == 2 and i < 3 s2, else pos_t. */
void qk_rope_table_mrope_interleaved(const int64_t *pos_t, const int64_t *pos_h, const int64_t *pos_w, int64_t rows,
                                     int64_t head_dim, const int32_t sections[3], double theta, float *cos, float *sin);
/* Vision tower 2-D rope (Qwen2_5_VLVisionRotaryEmbedding, "axial"): q = head_dim/4 frequencies
   inv_freq[j] = theta^(-2j / (head_dim/2)) (theta 10000); slot j < q uses pos_h * inv_freq[j], slot q + j
   uses pos_w * inv_freq[j] ([h freqs, w freqs]). */
void qk_rope_table_2d(const int64_t *pos_h, const int64_t *pos_w, int64_t rows, int64_t head_dim,
                      double theta, float *cos, float *sin);

/* Attention without an L x L matrix (online softmax over key tiles).
   q: [lq, hq, d] (row stride q_stride), k, v: [lk, hkv, d] (strides k_stride, v_stride),
   out: [lq, hq, d] (stride o_stride). hq % hkv == 0 (grouped-query). scale = 1/sqrt(d) typically.
   Masks (any combination):
     causal   : query i (absolute position q_offset + i) sees keys j <= q_offset + i;
     kv_len   : keys j >= kv_len are padding (pass lk for none);
     segments : if q_seg and k_seg are not NULL, query i sees key j only when q_seg[i] == k_seg[j]
                (window attention / several images in one sequence).
   A query row that sees no key at all gets zeros. d <= 4096 (the VAE 2.1 mid block attends over d = 1152). Results do not depend on the thread count.
   Work is split over (query head, 64-row block); window attention is fastest when each segment's keys
   are contiguous. */
typedef struct {
    int64_t lq, lk, hq, hkv, d;
    int64_t q_stride, k_stride, v_stride, o_stride;
    float scale;
    int32_t causal;
    int64_t q_offset;
    int64_t kv_len;
    const int32_t *q_seg;
    const int32_t *k_seg;
} qk_attn_params;
void qk_attention(const qk_attn_params *p, const float *q, const float *k, const float *v, float *out);

/* 3x3 convolution on a channels-last image x[h, w, cin] -> y[oh, ow, cout].
   The weight is a qk_weight with n = cout, k = 9 * cin in (ky, kx, cin) order.
   Padding (top, bottom, left, right) is zero padding; stride 1 or 2;
   oh = (h + pad_t + pad_b - 3) / stride + 1, likewise ow. bias may be NULL.
   accumulate != 0 adds into y instead of overwriting (summing the temporal slices of a 3-D conv):
   y += conv(x) + bias (pass bias with one slice only). Implicit GEMM over qk_matmul (same numerics as
   qk_matmul on the im2col rows, including activation quantization for q8/q4); the ref tier runs a
   naive direct loop. */
typedef struct {
    int64_t h, w, cin, cout;
    int32_t stride;
    int32_t pad_t, pad_b, pad_l, pad_r;
    int32_t accumulate;
} qk_conv_params;
void qk_conv3x3(const qk_conv_params *p, const qk_weight *w, const float *x, const float *bias, float *y);

/* 2x2 convolution with a strided output (one parity of a 3x3 convolution over a nearest x2 upsampling,
   whose taps the caller summed into a [cout, (a, b, cin)] weight, k = 4 * cin):
   y[r * y_row_stride + c * y_col_stride + o] = bias[o] + sum_{a, b, i} w[o, (a, b, i)] * X(r + dy0 + a, c + dx0 + b)[i]
   for output pixels r < rows, c < cols, where X(u, v) = x[u * x_row_stride + v * cin ...] inside the valid
   window 0 <= u < vh, 0 <= v < vw and zero outside. Same numerics as qk_matmul on the gathered [rows * cols,
   4 * cin] patch rows (integer schemes with cin a multiple of 32 quantize each input row once per band);
   runs on the pool. bias may be NULL. */
typedef struct {
    int64_t rows, cols, cin, cout;
    int64_t x_row_stride;
    int64_t dy0, dx0, vh, vw;
    int64_t y_row_stride, y_col_stride;
} qk_conv2x2_params;
void qk_conv2x2(const qk_conv2x2_params *p, const qk_weight *w, const float *x, const float *bias, float *y);

/* Nearest-neighbour x2 upsampling of channels-last x[h, w, c] -> y[2h, 2w, c]. */
void qk_upsample2x(const float *x, int64_t h, int64_t w, int64_t c, float *y);

/* ---- conversions ------------------------------------------------------------------------------ */
void qk_bf16_to_f32(const uint16_t *x, int64_t n, float *y);
void qk_f16_to_f32(const uint16_t *x, int64_t n, float *y);
/* Round to nearest even; inf preserved; bf16: NaN -> 0x7fc0 (as c10::BFloat16), subnormals kept;
   f16: overflow to inf, subnormals rounded, NaN -> quiet NaN with the top payload bits (as F16C). */
void qk_f32_to_bf16(const float *x, int64_t n, uint16_t *y);
void qk_f32_to_f16(const float *x, int64_t n, uint16_t *y);

/* ---- checksums -------------------------------------------------------------------------------- */
/* XXH64's bulk loop for Quant's XXH64: updates the four lane accumulators v over nstripes 32-byte
   stripes at p (the caller keeps the buffering, the length and the final mix). Every tier gives the
   same value (integer arithmetic). */
void qk_xxh64_stripes(uint64_t v[4], const void *p, size_t nstripes);

#ifdef __cplusplus
}
#endif
#endif
