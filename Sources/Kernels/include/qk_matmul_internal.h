/*
 * qk_matmul_internal.h: the packed weight layout of every scheme, the activation quantization used by
 * the integer paths, and the per-tier matmul entry points (for the kernel tests).
 *
 * ==== Packed weight layout (pack format version 1) ===============================================
 *
 * W is a logical matrix [n, k] (PyTorch Linear layout). Rows are stored in ROW BLOCKS of QK_NR = 16
 * consecutive output rows; nb = ceil(n / 16) blocks. Block b holds rows 16b .. 16b+15; rows >= n in the
 * last block are padding (all bytes zero, scales zero). Block b starts at byte b * qk_rb_bytes(...)
 * from the 64-byte aligned base; every block stride is a multiple of 64 bytes. All multi-byte values
 * are little-endian. Inside a block, "lane" r (0..15) is row 16b + r.
 *
 *  QK_F32  : for kk in 0..k-1, for r in 0..15: f32 w[16b+r][kk]           (64 bytes per kk)
 *            stride = 64 * k.
 *  QK_BF16 : same order, 2-byte bfloat16 (the top half of an f32)          (32 bytes per kk)
 *  QK_F16  : same order, 2-byte IEEE binary16                              (32 bytes per kk)
 *            stride = roundup(32 * k, 64); the tail of the block is zero.
 *            (float schemes accept only group = 0.)
 *
 *  QK_Q8 and QK_Q4 (integer schemes), group g in {0, 32, 64, 128}:
 *    kp = roundup(k, g ? g : 32)  (k padded with zero weights), ng = g ? kp / g : 1 scale groups
 *    (g = 0: one group spanning all of kp, i.e. one scale per output row).
 *    A block is [scales][data]:
 *      scales: for grp in 0..ng-1, for r in 0..15: f32 scale d[16b+r][grp]   (64 bytes per group)
 *      data, QK_Q8: for s in 0..kp/4-1 (a "k4 step", kk = 4s..4s+3), for r in 0..15, for j in 0..3:
 *                   int8 q[16b+r][4s+j]                                     (64 bytes per step)
 *                   q in [-127, 127]; w ~= d * q.
 *      data, QK_Q4: for p in 0..kp/8-1 (kk = 8p..8p+7), for r in 0..15, for j in 0..3: one byte
 *                   (q[16b+r][8p+j] + 8) | (q[16b+r][8p+4+j] + 8) << 4     (64 bytes per 8 kk)
 *                   q in [-8, 7]; w ~= d * q.
 *    stride = ng * 64 + kp * 16 (Q8) or ng * 64 + kp * 8 (Q4).
 *    The 16 x 4 byte arrangement of a k4 step is exactly one 512-bit vpdpbusd operand (16 i32 lanes,
 *    one per output row, 4 consecutive k each); Q4 splits into two such operands with and/shift.
 *
 *  QK_Q4C and QK_Q8S (compact scales), group 32 only: kp = roundup(k, 32), ng = kp / 32 groups,
 *    nsup = ceil(ng / 8) super-groups (256 k; the last may be shorter). A block is
 *      [super][codes][data]:
 *      super: for sg in 0..nsup-1, for r in 0..15: f32 D[16b+r][sg]               (64 bytes per sg)
 *      codes: for grp in 0..ng-1, for r in 0..15: int8 c[16b+r][grp], zero padded to a multiple of 64
 *      data : exactly as QK_Q8 (QK_Q8S) or QK_Q4 (QK_Q4C, but the nibble is a codebook index i in
 *             0..15, stored as is, not offset by 8).
 *    The group scale is d = (float)c * D[sg of the group] (one f32 product, as the kernels compute it);
 *    QK_Q8S: w ~= d * q, q in [-127, 127]; QK_Q4C: w ~= d * qk_q4c_codebook[i].
 *    stride = nsup * 64 + roundup(ng * 16, 64) + kp * 16 (Q8S) or kp * 8 (Q4C):
 *    8.375 / 4.375 bits per weight when k is a multiple of 256.
 *
 *  QK_Q5S and QK_Q6S (compact scales, group 32 only): w ~= d * q with q in [-16, 15] (Q5S) or
 *    [-32, 31] (Q6S), stored as u = q + 16 or q + 32 (unsigned, 5 or 6 bits). A block is
 *      [super][codes][nibbles][high]:
 *      super, codes: as QK_Q8S;
 *      nibbles: exactly as QK_Q4 data, of the low 4 bits of u                      (kp * 8 bytes)
 *      high   : the bits u >> 4 (hb = 1 for Q5S, 2 for Q6S), 16 * hb bytes per 8 kk (step p):
 *               the value whose nibble is in byte e = 4 r + j of step p (r the lane, j 0..3), in the
 *               low (o = 0, kk = 8p+j) or high (o = 1, kk = 8p+4+j) half of that byte, with c = e / 16
 *               and i = e % 16, has its high bits at
 *                 Q6S: bits 2c, 2c+1 of byte 32p + 16o + i;   Q5S: bit 4o + c of byte 16p + i.
 *               (so the high bits of one 16-byte chunk c of a nibble operand are one shift and mask of
 *               one 16-byte vector: SIMD tiers OR them in above the nibble)  (kp * 2 or kp * 4 bytes)
 *    stride = nsup * 64 + roundup(ng * 16, 64) + kp * 10 (Q5S) or kp * 12 (Q6S):
 *    5.375 / 6.375 bits per weight when k is a multiple of 256.
 *
 * Weight quantization (pack time): per (row, group), one scale d (f32, either sign); candidates
 * d = f * amax / qmax for clipping factors f in 0.70...1, and for Q4 also d = f * smax / -8 (smax: the
 * weight of largest magnitude, with its sign, so the 16th level goes to whichever sign the extreme
 * has), keeping the d with the least squared error of the group (qk_set_weight_scale_search(0)
 * restores plain absmax, d = amax / qmax).
 * QK_Q4C: per (row, group) the scale d = f * smax / cb[0] or f * smax / cb[15] for 7 factors f in
 * 0.85..1.05, each followed by one least-squares step d' = sum(w q) / sum(q q) with q = codebook values
 * of the nearest entries, keeping the least squared error; QK_Q8S: the Q8 search; QK_Q5S / QK_Q6S: the
 * Q4 search over [-16, 15] / [-32, 31] (both signs of the extreme get the extra level). Then per super-group
 * D = max |d| / 127 and each group's code c = round(d / D), trying c - 1, c, c + 1 with the values
 * requantized to the rounded scale, keeping the least error. With importance imp[k]
 * (qk_weight_pack_rows_imp) every error and least-squares sum is weighted by imp of the column.
 *
 * ==== Activation quantization (integer schemes, at run time) ======================================
 * Each activation row x[kk] is split into blocks of QK_ABLK = 32 along k (zero padded to kp); per
 * (token, block): a = max|x|, xd = a / 127, q = round_to_nearest_even(x * (127 / a)) in [-127, 127].
 * Per-block scales keep a few outlier channels (100-1000x the rest, as in Qwen2.5 hidden states) from
 * wiping out the precision of every other channel: only the 31 neighbours of an outlier share its scale.
 *
 * ==== Arithmetic (identical in every tier, so tiers, thread counts and batch sizes agree bit for bit)
 * float schemes : acc = 0; for kk = 0..k-1: acc = fma(x[t][kk], (float)w[n][kk], acc); y = acc + bias.
 * integer       : acc = 0; for each activation block bk (32 k):
 *                   i = sum over the block of q_w * q_x (exact int32; q_w = the codebook value for Q4C);
 *                   acc = fma((float)i * xd[t][bk], d[n][group of bk], acc);
 *                 (compact schemes: d = (float)c * D, rounded to f32 before the fma)
 *                 y = acc + bias.
 * bf16-dot (QK_BF16 weights while qk_set_bf16_dot(1) is in force and the tier has the kernel; the CPU's
 *   bf16 dot product, vdpbf16ps): xb = x rounded to bf16 (nearest even, as qk_f32_to_bf16), k padded to
 *   an even length with zeros; acc = 0; for each pair p: acc = ftz(fma(xb[2p+1], w[2p+1], acc));
 *   acc = ftz(fma(xb[2p], w[2p], acc)), where a bf16 subnormal input counts as zero and ftz turns a
 *   subnormal sum into a zero of its sign; y = acc + bias. (Each bf16 product is exact in f32, so the
 *   fma is a rounded sum, as the instruction computes it: checked on 32 M random lanes of Zen 4.)
 * Each output depends only on its own x row and W row: row r of an M-row call equals an M = 1 call.
 *
 * ==== Error bounds (per weight element; see Tests/KernelsTests/MatmulTolerances.swift) ============
 * F32: exact. BF16: |dw| <= 2^-9 |w| (round to nearest even). F16: |dw| <= 2^-11 |w| for
 * 6.1e-5 <= |w| <= 65504, absolute 2^-25 below (subnormals); |w| > 65504 is refused by the packer.
 * Q8: |dw| <= d / 2 for unclipped values, d <= amax_group / 127.  Q4: |dw| <= d / 2, d <= amax / 7.
 * Activations (integer schemes): |dx| <= xd / 2 = amax_block / 254; (bf16-dot): |dx| <= 2^-8 |x|.
 */
#ifndef QK_MATMUL_INTERNAL_H
#define QK_MATMUL_INTERNAL_H
#include "qk_internal.h"

#define QK_NR 16
#define QK_ABLK 32
#define QK_SUPER_GROUPS 8   /* compact schemes: groups of 32 under one f32 super-scale (256 k) */

static inline int qk_scheme_is_int(qk_scheme s) { return s >= QK_Q8 && s <= QK_Q6S; }
static inline int qk_scheme_is_compact(qk_scheme s) { return s >= QK_Q4C && s <= QK_Q6S; }
/* Schemes whose data starts with the Q4 nibble bytes (Q5S / Q6S add a high-bit plane after them). */
static inline int qk_scheme_is_nibble(qk_scheme s) { return s == QK_Q4 || s == QK_Q4C || s == QK_Q5S || s == QK_Q6S; }
/* High bits per value above the nibble: 1 (Q5S), 2 (Q6S), else 0. */
static inline int qk_scheme_hbits(qk_scheme s) { return s == QK_Q5S ? 1 : s == QK_Q6S ? 2 : 0; }
/* The unsigned offset of the stored nibble values (u = q + offset): Q4 8, Q5S 16, Q6S 32; else 0. */
static inline int qk_scheme_nibble_offset(qk_scheme s) { return s == QK_Q4 ? 8 : s == QK_Q5S ? 16 : s == QK_Q6S ? 32 : 0; }
/* QK_Q4C: the value of nibble i is qk_q4c_codebook[i] times the group scale. */
extern const int8_t qk_q4c_codebook[16];

/* The signed value q of weight kk of lane `lane` in the data part of an integer block (the layout above;
   kp: the padded k). The one scalar decoder: the reference kernel and qk_weight_dequant_row use it. */
static inline int qk_packed_q(qk_scheme s, const uint8_t *data, int64_t kp, int lane, int64_t kk) {
    if (!qk_scheme_is_nibble(s)) return (int8_t)data[(kk >> 2) * 64 + lane * 4 + (kk & 3)];
    int64_t p = kk >> 3;
    int e = lane * 4 + (int)(kk & 3), o = (int)((kk >> 2) & 1);
    uint8_t byte = data[p * 64 + e];
    int u = o ? byte >> 4 : byte & 15;
    if (s == QK_Q4C) return qk_q4c_codebook[u];
    const uint8_t *high = data + kp * 8;
    if (s == QK_Q6S) u |= ((high[32 * p + 16 * o + (e & 15)] >> (2 * (e >> 4))) & 3) << 4;
    else if (s == QK_Q5S) u |= ((high[16 * p + (e & 15)] >> (4 * o + (e >> 4))) & 1) << 4;
    return u - qk_scheme_nibble_offset(s);
}

/* Layout helpers (pure functions of the arguments). Return 0 for an unsupported (scheme, group). */
int64_t qk_weight_kp(qk_scheme scheme, int32_t group, int64_t k);   /* padded k (int schemes), else k */
int64_t qk_weight_ngroups(qk_scheme scheme, int32_t group, int64_t k);
int64_t qk_weight_nsuper(qk_scheme scheme, int32_t group, int64_t k);   /* compact schemes, else 0 */
size_t qk_weight_block_bytes(qk_scheme scheme, int32_t group, int64_t k);
size_t qk_weight_scales_bytes(qk_scheme scheme, int32_t group, int64_t k);

/* 1 (default) = clipping grid search for weight scales, 0 = plain absmax, for packing on the calling thread
   (thread-local). For measurements. */
void qk_set_weight_scale_search(int on);

/* Quantized activation rows: q [kp] int8, then xd [kp/32] f32, then c [kp/32] int32 where
   c = -off * sum(q of the block) (off = 128 for Q8 on the VNNI tiers, 8 for Q4, 0 otherwise);
   row stride qk_xq_row_bytes(kp). */
size_t qk_xq_row_bytes(int64_t kp);
void qk_quantize_x_ref(const float *x, int64_t k, int64_t kp, int32_t off, void *out);

/* The matmul of one tier (same contract as qk_matmul), for tests and benchmarks. */
void qk_matmul_ref(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y);
void qk_matmul_avx2(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y);
void qk_matmul_avxvnni(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y);
void qk_matmul_avx512(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y);
/* The AVX-VNNI kernels with EVEX encoding (needs AVX-512 VL + VNNI): tests the avxvnni logic there. */
void qk_matmul_avxvnni_evex(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y);
/* aarch64 tiers (matmul_neon.c): Armv8.0 NEON, + SDOT, + SMMLA. Same arithmetic, bit for bit. */
void qk_matmul_neon(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y);
void qk_matmul_dotprod(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y);
void qk_matmul_i8mm(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y);

/* ---- between the driver (matmul.c) and the tier kernels ---------------------------------------- */
typedef struct {
    qk_scheme scheme;
    int64_t n, k, kp, ng, gblk;        /* gblk = activation blocks per scale group (0: all) */
    int gshift;                        /* group of block b = b >> gshift (63 when group = 0) */
    size_t rb_bytes, scales_bytes;     /* block stride, scale bytes at the start of an int block */
    size_t codes_off;                  /* compact schemes: offset of the int8 group-scale codes */
    const uint8_t *w;                  /* packed data */
    const float *x;                    /* float schemes: x [m, k] */
    const uint8_t *xq;                 /* int schemes: quantized rows, stride xq_stride */
    size_t xq_stride;
    const float *bias;
    float *y;                          /* y [m, n] */
} qk_mm_args;

/* Computes y rows [m0, m1) x row blocks [rb0, rb1). */
typedef void (*qk_mm_kernel)(const qk_mm_args *a, int64_t m0, int64_t m1, int64_t rb0, int64_t rb1);
typedef void (*qk_quantx_fn)(const float *x, int64_t k, int64_t kp, int32_t off, void *out);

typedef struct {
    qk_mm_kernel kern[QK_NSCHEMES];   /* by scheme; NULL: the reference kernel */
    qk_quantx_fn quantx;
    int32_t q8_off;         /* activation offset the Q8 kernel expects in c (128 with vpdpbusd, 0 else) */
} qk_mm_tier;

extern const qk_mm_tier qk_mm_tier_ref;
#if defined(__x86_64__)
extern const qk_mm_tier qk_mm_tier_avx2;
extern const qk_mm_tier qk_mm_tier_avxvnni;
extern const qk_mm_tier qk_mm_tier_avx512;
#endif
#if defined(__aarch64__)
extern const qk_mm_tier qk_mm_tier_neon;
extern const qk_mm_tier qk_mm_tier_dotprod;
extern const qk_mm_tier qk_mm_tier_i8mm;
#endif

void qk_matmul_with_tier(const qk_mm_tier *tier, const qk_weight *w, const float *x, int64_t m,
                         const float *bias, float *y);
/* The tier qk_matmul uses now (qk_tier_current). */
const qk_mm_tier *qk_mm_tier_current(void);
/* The activation offset a tier's kernel for scheme s removes through c (qk_quantize_x's off). */
int32_t qk_mm_act_off(const qk_mm_tier *tier, qk_scheme s);
/* qk_matmul on activations the caller quantized already (int schemes): rows of qk_xq_row_bytes(kp)
   bytes as tier->quantx (or qk_quantize_x_ref) writes them with off = qk_mm_act_off(tier, scheme).
   Same results as qk_matmul_with_tier on the float rows they came from. */
void qk_matmul_xq_with_tier(const qk_mm_tier *tier, const qk_weight *w, const uint8_t *xq, int64_t m,
                            const float *bias, float *y);

/* The bf16-dot kernel of a tier (qk_matmul_internal.h, "bf16-dot"): the reference twin for the ref tier,
   the AVX-512 BF16 kernel for the avx512 tier on a CPU with AVX512-BF16, else NULL (the exact f32 path
   runs). qk_matmul_with_tier uses it for QK_BF16 weights while qk_set_bf16_dot(1) is in force. */
qk_mm_kernel qk_mm_bf16dot_kernel(const qk_mm_tier *tier);
extern const qk_mm_kernel qk_mm_bf16dot_ref;
#if defined(__x86_64__)
extern const qk_mm_kernel qk_mm_bf16dot_avx512bf16;
#endif
/* qk_matmul's bf16-dot path of one tier whatever qk_set_bf16_dot says (QK_BF16 weights only; the avx512
   entry needs AVX512-BF16: qk_cpu_has_avx512bf16). Tests use these, not the process-wide switch. */
void qk_matmul_bf16dot_ref(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y);
#if defined(__x86_64__)
void qk_matmul_bf16dot_avx512(const qk_weight *w, const float *x, int64_t m, const float *bias, float *y);
#endif

/* Per-OS-thread scratch for the matmul (separate from qk_thread_scratch so a conv task that holds its
   own scratch can call qk_matmul). slot 0..3. */
void *qk_tls_scratch(int slot, size_t bytes);

/* Scalar conversions shared by the packers and the reference kernels. */
static inline float qk_bf16_bits_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v; v.u = (uint32_t)h << 16; return v.f;
}
float qk_f16_bits_to_f32_scalar(uint16_t h);

/* ---- machine limits (limits.c, for qwen-bench limits) ------------------------------------------ */
/* Run a register-only loop; return the number of operations done (flops, or int8 multiply-adds x 2). */
double qk_limits_fma(int64_t iters);
double qk_limits_int8(int64_t iters);
/* int8 dot with distinct operands per instruction, as in a GEMM tile (the limit used for % of peak). */
double qk_limits_int8_gemm(int64_t iters);
/* bf16 dot products (vdpbf16ps, GEMM-like operands), in flops; 0 where the CPU has none. */
double qk_limits_bf16dot(int64_t iters);
/* Read `bytes` (64-byte aligned, multiple of 128) with vector loads; returns a checksum. */
double qk_limits_read(const void *buf, size_t bytes);
#endif
