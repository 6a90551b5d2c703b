/*
 * qmapguard.h: turns a SIGBUS on a memory-mapped input file into an error message naming the file.
 *
 * Reading a mapped page of a file that another program truncated raises SIGBUS, which would kill the
 * process without a word. Every mapping of an input (pack shards, safetensors files) is registered
 * here; the handler looks up the faulting address and, when it lies in a registered mapping, writes
 *   error: PATH: the file was truncated or replaced while it was being read ...
 * to stderr and exits with status 1 (outputs are written to temporary names and renamed only at the
 * end, so nothing half-written is left that looks complete). A SIGBUS elsewhere keeps its default action.
 */
#ifndef QMAPGUARD_H
#define QMAPGUARD_H
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Registers [base, base + size) as a mapping of `path` (copied); installs the handler on first use.
   Returns a slot id for qmg_unregister, or -1 when the table is full (the mapping is then unguarded). */
int qmg_register(const void *base, size_t size, const char *path);
void qmg_unregister(int slot);

#ifdef __cplusplus
}
#endif
#endif
