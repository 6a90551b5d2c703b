/* attention_avx2.c: the avx2 tier of qk_attention (kernel in attention_simd_body.h). */
#if defined(__x86_64__)
#include <math.h>
#include "qk_ops_internal.h"
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#include "simd_avx2.h"
#include "attention_simd_body.h"
#pragma clang attribute pop
#else
typedef int qk_attention_avx2_unused;
#endif
