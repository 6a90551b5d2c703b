/* runtime.c: scratch memory (the only allocation in Kernels). */
#include "qk_matmul_internal.h"
#include "qk_process.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#define QK_MAX_THREADS 256

typedef struct { void *p; size_t cap; } scratch_buf;

static void *grow(scratch_buf *b, size_t bytes) {
    if (bytes == 0) bytes = 64;
    if (b->cap >= bytes) return b->p;
    size_t cap = (bytes + 4095) / 4096 * 4096;
    void *p = NULL;
    if (posix_memalign(&p, 64, cap)) {
        fprintf(stderr, "qk: out of memory allocating %zu bytes of kernel scratch\n", cap);
        abort();
    }
    free(b->p);
    b->p = p; b->cap = cap;
    return p;
}

/* qk_thread_scratch: indexed by pool thread id (contract in qk_internal.h). */
static scratch_buf g_scratch[QK_MAX_THREADS];

void *qk_thread_scratch(int thread_id, size_t bytes) {
    if (thread_id < 0 || thread_id >= QK_MAX_THREADS) {
        fprintf(stderr, "qk_thread_scratch: thread id %d out of range\n", thread_id);
        abort();
    }
    return grow(&g_scratch[thread_id], bytes);
}

/* Per-OS-thread scratch for the matmul, freed when the thread exits. */
#define QK_TLS_SLOTS 4
static pthread_key_t g_tls_key;
static pthread_once_t g_tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *v) {
    scratch_buf *b = v;
    for (int i = 0; i < QK_TLS_SLOTS; i++) free(b[i].p);
    free(b);
}
static void tls_init(void) { pthread_key_create(&g_tls_key, tls_free); }

void *qk_tls_scratch(int slot, size_t bytes) {
    pthread_once(&g_tls_once, tls_init);
    scratch_buf *b = pthread_getspecific(g_tls_key);
    if (!b) {
        b = calloc(QK_TLS_SLOTS, sizeof *b);
        if (!b) { fprintf(stderr, "qk: out of memory\n"); abort(); }
        pthread_setspecific(g_tls_key, b);
    }
    if (slot < 0 || slot >= QK_TLS_SLOTS) abort();
    return grow(&b[slot], bytes);
}

void qk_return_large_blocks_to_system(size_t bytes) {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, (int)(bytes > (size_t)(32 << 20) ? (32 << 20) : bytes));
#else
    (void)bytes;
#endif
}
