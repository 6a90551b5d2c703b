/*
 * qk_internal.h: what the kernel files share (tiers and the thread pool). Not for use outside Kernels
 * except by the kernel tests. Each op family declares its _ref / _<isa> twins in its own header
 * (qk_matmul_internal.h, qk_ops_internal.h).
 */
#ifndef QK_INTERNAL_H
#define QK_INTERNAL_H
#include "qk.h"

typedef enum {
    QK_TIER_REF = 0,
    QK_TIER_AVX2 = 1,     /* AVX2 + FMA + F16C */
    QK_TIER_AVXVNNI = 2,  /* AVX2 tier + AVX-VNNI (256-bit vpdpbusd) */
    QK_TIER_AVX512 = 3,   /* AVX-512 F/BW/VL/DQ + VNNI (+ BF16 where present) */
    QK_TIER_NEON = 4,     /* aarch64 Armv8.0 Advanced SIMD (every aarch64 CPU: Cortex-A53/A72, ...) */
    QK_TIER_DOTPROD = 5,  /* NEON + Armv8.2 SDOT (Cortex-A76, Neoverse N1 / Graviton2) */
    QK_TIER_I8MM = 6,     /* dotprod + Armv8.6 SMMLA (Neoverse V1/V2 / Graviton3/4) */
} qk_tier;

/* The tier in force: the best the CPU supports, unless QK_ISA or qk_set_isa() chose another. */
qk_tier qk_tier_current(void);
/* Whether this CPU can run a tier. */
int qk_tier_supported(qk_tier t);
/* Finer feature bits (AVX-512 BF16, F16C, ...). */
int qk_cpu_has_avx512bf16(void);

/* Persistent thread pool. Runs fn(ctx, task, thread_id) for task in [0, ntasks) with dynamic
   chunking; the caller works too; returns when all tasks are done. thread_id < qk_get_threads().
   Nested calls from inside a task run serially on the calling thread. */
typedef void (*qk_task_fn)(void *ctx, int64_t task, int thread_id);
void qk_parallel_for(int64_t ntasks, qk_task_fn fn, void *ctx);

/* Per-thread scratch memory, 64-byte aligned, grown on demand (the only allocation in Kernels, and
   only when a larger size is first needed). Valid until the next call with the same thread_id. */
void *qk_thread_scratch(int thread_id, size_t bytes);

/* qk_xxh64_stripes' twins (hash.c): the scalar rounds, and the four lanes in one ymm (AVX-512 DQ / VL,
   which the avx512 tier implies). */
void qk_xxh64_stripes_ref(uint64_t v[4], const void *p, size_t nstripes);
#if defined(__x86_64__)
void qk_xxh64_stripes_avx512(uint64_t v[4], const void *p, size_t nstripes);
#endif

#endif
