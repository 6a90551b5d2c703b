/* qmapguard.c: see include/qmapguard.h. The handler only reads the slot table (atomics) and calls
   async-signal-safe functions (write, _exit, sigaction, raise). */
#define _GNU_SOURCE
#include "qmapguard.h"
#include <fcntl.h>
#include <sys/mman.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QMG_SLOTS 4096   /* live mappings at once: a 7B pack has ~40 shards, a checkpoint ~10 files */

typedef struct {
    _Atomic(uintptr_t) begin, end;   /* end == 0: free */
    _Atomic(char *) path;
} qmg_slot;

static qmg_slot slots[QMG_SLOTS];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w; n -= (size_t)w;
    }
}

static void on_sigbus(int sig, siginfo_t *info, void *ctx) {
    (void)ctx;
    uintptr_t a = (uintptr_t)info->si_addr;
    for (int i = 0; i < QMG_SLOTS; i++) {
        uintptr_t e = atomic_load(&slots[i].end);
        if (e == 0 || a < atomic_load(&slots[i].begin) || a >= e) continue;
        char *p = atomic_load(&slots[i].path);
        say("error: ");
        say(p ? p : "(a mapped input file)");
        say(": the file was truncated or replaced while it was being read (is another program writing it?); "
            "stopped, nothing was written\n");
        _exit(1);
    }
    /* Not ours: the default action (core dump) on return, as if no handler had been installed. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(sig, &sa, NULL);
}

static void install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, NULL);
}

int qmg_register(const void *base, size_t size, const char *path) {
    if (!base || size == 0) return -1;
    pthread_once(&once, install);
    char *copy = strdup(path ? path : "");
    pthread_mutex_lock(&lock);
    for (int i = 0; i < QMG_SLOTS; i++) {
        if (atomic_load(&slots[i].end) != 0) continue;
        atomic_store(&slots[i].path, copy);
        atomic_store(&slots[i].begin, (uintptr_t)base);
        atomic_store(&slots[i].end, (uintptr_t)base + size);
        pthread_mutex_unlock(&lock);
        return i;
    }
    pthread_mutex_unlock(&lock);
    free(copy);
    return -1;
}

void qmg_unregister(int slot) {
    if (slot < 0 || slot >= QMG_SLOTS) return;
    pthread_mutex_lock(&lock);
    atomic_store(&slots[slot].end, 0);
    char *p = atomic_exchange(&slots[slot].path, NULL);
    pthread_mutex_unlock(&lock);
    /* The handler may be reading p on another thread only if that thread faults inside this mapping,
       which the caller is about to unmap: it no longer reads it. */
    free(p);
}

int qmg_open_direct(const char *path) {
#if defined(__linux__) && defined(O_DIRECT)
    return open(path, O_RDONLY | O_DIRECT | O_CLOEXEC | O_NONBLOCK);
#else
    (void)path;
    return -1;
#endif
}

size_t qmg_resident_bytes(const void *base, size_t size) {
#if defined(__linux__)
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = (size + page - 1) / page;
    unsigned char *vec = malloc(pages ? pages : 1);
    if (!vec) return size;
    if (mincore((void *)base, size, vec) != 0) { free(vec); return size; }
    size_t n = 0;
    for (size_t i = 0; i < pages; i++) n += vec[i] & 1;
    free(vec);
    return n * page < size ? n * page : size;
#else
    (void)base;
    return size;
#endif
}
