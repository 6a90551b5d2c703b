/*
 * attention_ref.c: scalar reference attention, one query row at a time with a running (online) softmax
 * over single keys. Handles the full parameter set (any hq/hkv); the dispatcher gives it one head.
 */
#include "qk_ops_internal.h"
#include <math.h>
#include <string.h>

size_t qk_attention_scratch_bytes(int64_t d) {
    /* SIMD tiers (attention_simd_body.h), with dp = d rounded up to 16: Qt [dp][BQ], S^T [BK + 4][BQ],
       O [BQ][dp], m, l, alpha [BQ]. The ref twin uses the first d floats. */
    int64_t dp = (d + 15) / 16 * 16, bq = QK_ATTN_BQ;
    return (size_t)(bq * dp + (QK_ATTN_BK + 4) * bq + bq * dp + 3 * bq) * sizeof(float) + 256;
}

void qk_attention_ref(const qk_attn_params *p, const float *q, const float *k, const float *v, float *out,
                      void *scratch) {
    int64_t d = p->d, group = p->hq / p->hkv;
    int64_t kv_lim = p->kv_len < p->lk ? p->kv_len : p->lk;
    float *acc = (float *)scratch; /* [d] */
    for (int64_t i = 0; i < p->lq; i++) {
        int64_t jmax = kv_lim;
        if (p->causal && p->q_offset + i + 1 < jmax) jmax = p->q_offset + i + 1;
        for (int64_t h = 0; h < p->hq; h++) {
            const float *qi = q + i * p->q_stride + h * d;
            int64_t hk = h / group;
            float m = -INFINITY, l = 0;
            memset(acc, 0, (size_t)d * sizeof(float));
            for (int64_t j = 0; j < jmax; j++) {
                if (p->q_seg && p->k_seg && p->q_seg[i] != p->k_seg[j]) continue;
                const float *kj = k + j * p->k_stride + hk * d, *vj = v + j * p->v_stride + hk * d;
                float s = 0;
                for (int64_t c = 0; c < d; c++) s += qi[c] * kj[c];
                s *= p->scale;
                float mn = s > m ? s : m;
                float alpha = expf(m - mn), pj = expf(s - mn);
                l = l * alpha + pj;
                for (int64_t c = 0; c < d; c++) acc[c] = acc[c] * alpha + pj * vj[c];
                m = mn;
            }
            float *oi = out + i * p->o_stride + h * d;
            float inv = l > 0 ? 1.0f / l : 0.0f; /* no visible key: zeros */
            for (int64_t c = 0; c < d; c++) oi[c] = acc[c] * inv;
        }
    }
}
