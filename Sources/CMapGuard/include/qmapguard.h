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

/* Streaming helpers beside the mappings (Linux; elsewhere they report "unavailable"):
   qmg_open_direct opens a file read-only for O_DIRECT reads (no page cache; buffers, offsets and lengths
   4096-aligned), -1 when that is not possible (then map it instead); qmg_resident_bytes counts the bytes of
   the mapping [base, base + size) whose pages are in the page cache (mincore), or returns size when it
   cannot tell. */
int qmg_open_direct(const char *path);
size_t qmg_resident_bytes(const void *base, size_t size);

#ifdef __cplusplus
}
#endif
#endif
