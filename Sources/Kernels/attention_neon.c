/* attention_neon.c: the aarch64 tier of qk_attention (kernel in attention_simd_body.h). */
#if defined(__aarch64__)
#include <math.h>
#include "qk_ops_internal.h"
#include "simd_neon.h"
#include "attention_simd_body.h"
#else
typedef int qk_attention_neon_unused;
#endif
