/* qk_process.h: process-wide settings that are not kernels (kept out of qk.h, whose functions do no
   allocation and no I/O). */
#ifndef QK_PROCESS_H
#define QK_PROCESS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* glibc raises its mmap threshold after each large free (up to 32 MiB), so buffers of a few MiB that
   are allocated and freed per tensor land in the heap and fragment it (the converter's peak RSS varied
   from 0.37 to 1.1 GiB between identical runs). This fixes the threshold at `bytes`, so large blocks
   get their own mappings and go back to the system when freed. No-op without glibc. */
void qk_return_large_blocks_to_system(size_t bytes);

#ifdef __cplusplus
}
#endif

#endif
