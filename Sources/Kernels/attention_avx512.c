/* attention_avx512.c: the avx512 tier of qk_attention (kernel in attention_simd_body.h). */
#if defined(__x86_64__)
#include <math.h>
#include "qk_ops_internal.h"
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c"))), apply_to = function)
#include "simd_avx512.h"
#include "attention_simd_body.h"
#pragma clang attribute pop
#else
typedef int qk_attention_avx512_unused;
#endif
