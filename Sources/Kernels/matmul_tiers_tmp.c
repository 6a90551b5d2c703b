/* Temporary: SIMD tiers not landed yet; they run the reference kernels. */
#include "qk_matmul_internal.h"
#if defined(__x86_64__)
#define REFTAB { .kern = { 0 }, .quantx = qk_quantize_x_ref, .q8_off = 0 }
extern const qk_mm_tier qk_mm_tier_ref;
const qk_mm_tier qk_mm_tier_avx2 = REFTAB;
const qk_mm_tier qk_mm_tier_avxvnni = REFTAB;
#endif
