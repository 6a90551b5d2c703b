/* ops_neon.c: the aarch64 tier of the element-wise, row, rope and conversion kernels (all three ARM
   tiers use it: dotprod and i8mm add only int8 instructions). Armv8.0 NEON needs no target attribute. */
#if defined(__aarch64__)
#include <math.h>
#include "qk_ops_internal.h"
#include "simd_neon.h"
#include "ops_simd_body.h"
#else
typedef int qk_ops_neon_unused;
#endif
