/* pool.c: persistent thread pool. The caller works too; tasks are handed out in dynamic chunks from
   one atomic ticket, so a descheduled worker delays nothing but the chunk it holds. Workers spin
   briefly between jobs (tiny back-to-back calls scale) and then sleep on a condition variable.

   The ticket packs (generation << 32 | next task). A worker may only run tasks it claimed with a
   compare-and-swap on a ticket of the current generation; between jobs the caller first "closes" the
   ticket (new generation, next = CLOSED) so no stale claim can succeed while it rewrites the job.
   Top-level calls are serialized by a mutex (thread ids and scratch slots are then unambiguous);
   a call from inside a task runs serially on that thread. */
#include "qk_internal.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sched.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield")
#else
#define cpu_relax() ((void)0)
#endif

#define MAX_THREADS 256
#define CLOSED 0xffffffffu
#define SPIN_ITERS 4000   /* ~70 us of pause: covers the gaps between back-to-back kernels */

typedef struct {
    qk_task_fn fn;
    void *ctx;
    int64_t ntasks;
    int64_t chunk;
    int nthreads;
    _Atomic int64_t done;
} job_t;

static job_t g_job;
static _Atomic uint64_t g_ticket = ((uint64_t)0 << 32) | CLOSED;
static uint32_t g_gen;                 /* written by the caller holding g_call_lock */
static pthread_mutex_t g_call_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_sleep_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_sleep_cond = PTHREAD_COND_INITIALIZER;
static _Atomic int g_sleepers;
static int g_nworkers;                 /* started worker threads */
static _Atomic int g_threads;          /* 0 = not yet set (online CPUs) */
static _Thread_local int t_in_task;
static _Thread_local int t_tid;

static int online_cpus(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    return (int)n;
}

void qk_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    pthread_mutex_lock(&g_call_lock);
    atomic_store(&g_threads, n);
    pthread_mutex_unlock(&g_call_lock);
}

int qk_get_threads(void) {
    int n = atomic_load(&g_threads);
    return n ? n : online_cpus();
}

/* Claims and runs chunks of the job of generation `gen`; returns when none are left. */
static void work(uint32_t gen, int tid) {
    for (;;) {
        uint64_t t = atomic_load(&g_ticket);
        if ((uint32_t)(t >> 32) != gen) return;
        uint32_t next = (uint32_t)t;
        int64_t ntasks = g_job.ntasks, chunk = g_job.chunk;
        qk_task_fn fn = g_job.fn;
        void *ctx = g_job.ctx;
        if (next == CLOSED || (int64_t)next >= ntasks) return;
        int64_t end = next + chunk < ntasks ? next + chunk : ntasks;
        if (!atomic_compare_exchange_weak(&g_ticket, &t, ((uint64_t)gen << 32) | (uint32_t)end)) continue;
        for (int64_t i = next; i < end; i++) fn(ctx, i, tid);
        atomic_fetch_add(&g_job.done, end - next);
    }
}

static void *worker_main(void *arg) {
    int tid = (int)(intptr_t)arg;
    t_tid = tid;
    t_in_task = 1;   /* anything a worker runs is inside a task: nested calls stay serial */
    uint32_t seen = 0;
    for (;;) {
        uint64_t t = atomic_load(&g_ticket);
        int spins = 0;
        while ((uint32_t)(t >> 32) == seen || (uint32_t)t == CLOSED) {
            if (++spins < SPIN_ITERS) { cpu_relax(); t = atomic_load(&g_ticket); continue; }
            pthread_mutex_lock(&g_sleep_lock);
            atomic_fetch_add(&g_sleepers, 1);
            for (;;) {
                t = atomic_load(&g_ticket);
                if ((uint32_t)(t >> 32) != seen && (uint32_t)t != CLOSED) break;
                pthread_cond_wait(&g_sleep_cond, &g_sleep_lock);
            }
            atomic_fetch_sub(&g_sleepers, 1);
            pthread_mutex_unlock(&g_sleep_lock);
            break;
        }
        seen = (uint32_t)(t >> 32);
        if (tid < g_job.nthreads) work(seen, tid);   /* a stale nthreads read can only fail the claim */
    }
    return NULL;
}

static void start_workers(int want) {
    while (g_nworkers < want) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 8 << 20);
        int tid = g_nworkers + 1;
        if (pthread_create(&th, &attr, worker_main, (void *)(intptr_t)tid)) {
            pthread_attr_destroy(&attr);
            fprintf(stderr, "qk: could not start worker thread %d; continuing with %d threads\n", tid, tid);
            break;
        }
        pthread_attr_destroy(&attr);
        pthread_detach(th);
        g_nworkers++;
    }
}

static void run_serial(int64_t ntasks, qk_task_fn fn, void *ctx, int tid) {
    int was = t_in_task;
    t_in_task = 1;
    for (int64_t i = 0; i < ntasks; i++) fn(ctx, i, tid);
    t_in_task = was;
}

void qk_parallel_for(int64_t ntasks, qk_task_fn fn, void *ctx) {
    if (ntasks <= 0) return;
    if (t_in_task) { run_serial(ntasks, fn, ctx, t_tid); return; }
    pthread_mutex_lock(&g_call_lock);
    int nt = qk_get_threads();
    if (nt > 1 && ntasks > 1 && ntasks < CLOSED) {
        start_workers(nt - 1);
        if (g_nworkers + 1 < nt) nt = g_nworkers + 1;
    }
    if (nt <= 1 || ntasks == 1 || ntasks >= CLOSED) {
        t_tid = 0;
        run_serial(ntasks, fn, ctx, 0);
        pthread_mutex_unlock(&g_call_lock);
        return;
    }
    /* close the previous generation, publish the job, open the new generation */
    g_gen += 2;
    atomic_store(&g_ticket, ((uint64_t)(g_gen - 1) << 32) | CLOSED);
    g_job.fn = fn;
    g_job.ctx = ctx;
    g_job.ntasks = ntasks;
    int64_t chunk = ntasks / ((int64_t)nt * 8);
    g_job.chunk = chunk < 1 ? 1 : chunk;
    g_job.nthreads = nt;
    atomic_store(&g_job.done, 0);
    atomic_store(&g_ticket, (uint64_t)g_gen << 32);
    if (atomic_load(&g_sleepers) > 0) {
        pthread_mutex_lock(&g_sleep_lock);
        pthread_cond_broadcast(&g_sleep_cond);
        pthread_mutex_unlock(&g_sleep_lock);
    }
    t_tid = 0;
    t_in_task = 1;
    work(g_gen, 0);
    t_in_task = 0;
    int spins = 0;
    while (atomic_load(&g_job.done) < ntasks) {
        if (++spins < SPIN_ITERS) cpu_relax();
        else sched_yield();
    }
    pthread_mutex_unlock(&g_call_lock);
}
