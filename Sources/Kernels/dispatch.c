/* dispatch.c: instruction-set tier detection (cpuid on x86-64, getauxval(AT_HWCAP/AT_HWCAP2) on aarch64
   Linux; once) and selection (QK_ISA, qk_set_isa).
   Kernels read qk_tier_current() on every call; tests switch tiers with qk_set_isa. */
#include "qk_internal.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
/* Linux arm64 hwcap bits (arch/arm64/include/uapi/asm/hwcap.h), spelled out so old headers do too. */
#define QK_HWCAP_ASIMD (1ul << 1)
#define QK_HWCAP_ASIMDDP (1ul << 20)
#define QK_HWCAP2_I8MM (1ul << 13)
#endif

/* Indexed by qk_tier. best() takes the highest supported index, so within each architecture a later
   tier must be a superset of the earlier ones. */
static const char *const k_names[] = { "ref", "avx2", "avxvnni", "avx512", "neon", "dotprod", "i8mm" };
#define NTIERS 7
#if defined(__aarch64__)
#define KNOWN_TIERS "ref, neon, dotprod, i8mm"
#else
#define KNOWN_TIERS "ref, avx2, avxvnni, avx512"
#endif

static int g_supported[NTIERS];
static int g_avx512bf16;
static _Atomic int g_tier = -1;

#if defined(__x86_64__)
static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static void detect(void) {
    g_supported[0] = 1;
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int fma = (c >> 12) & 1, f16c = (c >> 29) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return;
    uint64_t xcr0 = xgetbv0();
    int ymm_os = (xcr0 & 6) == 6, zmm_os = (xcr0 & 0xe6) == 0xe6;
    unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0, a71 = 0, b71 = 0, c71 = 0, d71 = 0;
    __get_cpuid_count(7, 0, &a7, &b7, &c7, &d7);
    if (a7 >= 1) __get_cpuid_count(7, 1, &a71, &b71, &c71, &d71);
    int avx2 = (b7 >> 5) & 1;
    int f512 = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1;
    int vnni512 = (c7 >> 11) & 1, avxvnni = (a71 >> 4) & 1, bf16 = (a71 >> 5) & 1;
    int t_avx2 = ymm_os && avx2 && fma && f16c;
    g_supported[1] = t_avx2;
    g_supported[2] = t_avx2 && avxvnni;
    g_supported[3] = t_avx2 && zmm_os && f512 && dq && bw && vl && vnni512;
    g_avx512bf16 = g_supported[3] && bf16;
#elif defined(__aarch64__) && defined(__linux__)
    /* Advanced SIMD is mandatory in Armv8-A; the hwcap check only guards odd kernels. i8mm implies
       dotprod from Armv8.6 on, but a CPU may report them separately, so the i8mm tier needs both. */
    unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
    int neon = (hw & QK_HWCAP_ASIMD) != 0, dot = (hw & QK_HWCAP_ASIMDDP) != 0, i8mm = (hw2 & QK_HWCAP2_I8MM) != 0;
    g_supported[QK_TIER_NEON] = neon;
    g_supported[QK_TIER_DOTPROD] = neon && dot;
    g_supported[QK_TIER_I8MM] = neon && dot && i8mm;
#elif defined(__aarch64__)
    g_supported[QK_TIER_NEON] = 1;   /* no hwcaps to read: the Armv8.0 baseline only */
#endif
}

static int best(void) {
    for (int t = NTIERS - 1; t >= 0; t--) if (g_supported[t]) return t;
    return 0;
}

static int name_to_tier(const char *name) {
    if (!name) return -1;
    for (int t = 0; t < NTIERS; t++) if (!strcmp(name, k_names[t])) return t;
    return -1;
}

static void init_once(void) {
    detect();
    int t = best();
    const char *env = getenv("QK_ISA");
    if (env && *env) {
        int e = name_to_tier(env);
        if (e < 0 || !g_supported[e])
            fprintf(stderr, "warning: QK_ISA=%s is %s on this CPU; using %s\n", env,
                    e < 0 ? "not a known tier (" KNOWN_TIERS ")" : "not supported", k_names[t]);
        else t = e;
    }
    atomic_store(&g_tier, t);
}

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void ensure(void) { if (atomic_load_explicit(&g_tier, memory_order_acquire) < 0) pthread_once(&g_once, init_once); }

qk_tier qk_tier_current(void) { ensure(); return (qk_tier)atomic_load_explicit(&g_tier, memory_order_relaxed); }
const char *qk_isa_name(void) { return k_names[qk_tier_current()]; }
int qk_tier_supported(qk_tier t) { ensure(); return (int)t >= 0 && (int)t < NTIERS && g_supported[t]; }
int qk_cpu_has_avx512bf16(void) { ensure(); return g_avx512bf16; }

int qk_set_isa(const char *name) {
    ensure();
    int t = name_to_tier(name);
    if (t < 0 || !g_supported[t]) return -1;
    atomic_store(&g_tier, t);
    return 0;
}
