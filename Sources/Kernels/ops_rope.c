/*
 * ops_rope.c: rotary tables. Computed the way transformers does it in float32 (inv_freq rounded to f32,
 * angle = f32(position) * inv_freq rounded to f32), then cos/sin of that f32 angle (evaluated in double
 * and rounded, i.e. correctly rounded where torch is within an ulp).
 *
 * Table layout (both functions): cos/sin are [rows, head_dim / 2]; entry [r, i] is the angle of
 * frequency slot i, applied to the pair (x[i], x[i + head_dim/2]) by qk_rope (rotate-half). This is the
 * first half of transformers' cos/sin tensors, whose second half repeats the first.
 */
#include "qk_ops_internal.h"
#include <math.h>

/* 1 / base^(2j / dim) in float32, as `1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))`. */
static float inv_freq_f32(double theta, int64_t j, int64_t dim) {
    float e = (float)(2 * j) / (float)dim;
    float p = (float)pow((double)(float)theta, (double)e);
    return 1.0f / p;
}

static void put_angle(float angle, float *c, float *s) {
    *c = (float)cos((double)angle);
    *s = (float)sin((double)angle);
}

/* The axis (0 t, 1 h, 2 w) whose position frequency slot i takes.
   Chunked (transformers Qwen2_5_VLRotaryEmbedding, "mrope", recomposition_frequencies): t for i < s0, h for
   s0 <= i < s0 + s1, w for the rest (sections = rope_parameters.mrope_section, e.g. [16, 24, 24] for head_dim 128).
   Interleaved (Qwen3VLTextRotaryEmbedding, apply_interleaved_mrope): h when i % 3 == 1 and i < 3 s1, w when
   i % 3 == 2 and i < 3 s2, else t ([24, 20, 20] for head_dim 128 give t h w t h w ... then four t).
   Text-only input has pos_t == pos_h == pos_w either way (plain 1-D rope). */
static int mrope_axis(int64_t i, const int32_t sections[3], int interleaved) {
    if (interleaved) return (i % 3 == 1 && i < 3 * (int64_t)sections[1]) ? 1 : (i % 3 == 2 && i < 3 * (int64_t)sections[2]) ? 2 : 0;
    return i < sections[0] ? 0 : i < (int64_t)sections[0] + sections[1] ? 1 : 2;
}

static void rope_table_3axis(const int64_t *pos_t, const int64_t *pos_h, const int64_t *pos_w, int64_t rows,
                             int64_t head_dim, const int32_t sections[3], double theta, int interleaved,
                             float *cos_out, float *sin_out) {
    const int64_t *axes[3] = { pos_t, pos_h, pos_w };
    int64_t half = head_dim / 2;
    for (int64_t i = 0; i < half; i++) {
        float f = inv_freq_f32(theta, i, head_dim);
        const int64_t *pos = axes[mrope_axis(i, sections, interleaved)];
        for (int64_t r = 0; r < rows; r++)
            put_angle((float)pos[r] * f, cos_out + r * half + i, sin_out + r * half + i);
    }
}

void qk_rope_table_mrope(const int64_t *pos_t, const int64_t *pos_h, const int64_t *pos_w, int64_t rows,
                         int64_t head_dim, const int32_t sections[3], double theta, float *cos_out,
                         float *sin_out) {
    rope_table_3axis(pos_t, pos_h, pos_w, rows, head_dim, sections, theta, 0, cos_out, sin_out);
}

void qk_rope_table_mrope_interleaved(const int64_t *pos_t, const int64_t *pos_h, const int64_t *pos_w, int64_t rows,
                                     int64_t head_dim, const int32_t sections[3], double theta, float *cos_out,
                                     float *sin_out) {
    rope_table_3axis(pos_t, pos_h, pos_w, rows, head_dim, sections, theta, 1, cos_out, sin_out);
}

/* transformers Qwen2_5_VLVisionRotaryEmbedding ("axial"): spatial_dim = head_dim / 2,
   inv_freq[j] = 1 / theta^(2j / spatial_dim) for j < head_dim / 4; slot i < head_dim/4 uses pos_h with
   inv_freq[i], slot head_dim/4 + j uses pos_w with inv_freq[j] (recomposition_frequencies: [h, w]). */
void qk_rope_table_2d(const int64_t *pos_h, const int64_t *pos_w, int64_t rows, int64_t head_dim,
                      double theta, float *cos_out, float *sin_out) {
    int64_t half = head_dim / 2, quarter = head_dim / 4;
    for (int64_t j = 0; j < quarter; j++) {
        float f = inv_freq_f32(theta, j, half);
        for (int64_t r = 0; r < rows; r++) {
            put_angle((float)pos_h[r] * f, cos_out + r * half + j, sin_out + r * half + j);
            put_angle((float)pos_w[r] * f, cos_out + r * half + quarter + j, sin_out + r * half + quarter + j);
        }
    }
}
