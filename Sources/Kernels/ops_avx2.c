/* ops_avx2.c: the AVX2 + FMA + F16C tier of the element-wise, row, rope and conversion kernels. */
#if defined(__x86_64__)
#include <math.h>
#include "qk_ops_internal.h"
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#include "simd_avx2.h"
#include "ops_simd_body.h"
#pragma clang attribute pop
#else
typedef int qk_ops_avx2_unused;
#endif
