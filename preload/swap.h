/* SPDX-License-Identifier: MIT */
/*
 * swap.h - UFAULT_MEMORY_LIMIT's store (swap.c): one unlinked file of
 * page-sized slots that the regions' evicted pages are written to, as a
 * ufault callback source with write-back and discard. Each region made
 * under the limit has an area of its own (its source offsets, from 0, are
 * page numbers in the area's slot table); the pieces a munmap or mremap
 * makes of it share the area.
 */
#ifndef UFAULT_PRELOAD_SWAP_H
#define UFAULT_PRELOAD_SWAP_H

#include <stdbool.h>
#include <stddef.h>

#include <ufault/ufault.h>

struct ufault_ctx;

/* Open the file in $UFAULT_SWAP_DIR, else $TMPDIR, else /var/tmp. 0, or
 * -errno (and the reason said on stderr). */
int swap_open(void);

/* A source for a new region: an area of its own. false if out of memory
 * (the region is then made without the limit). */
bool swap_source(struct ufault_source *src);

/* Before a fork: read back every page of @ctx's swap regions that is in
 * the file, so that the child's copy of them is whole (the child has no
 * context: its regions are plain memory), and let the child have them
 * (MADV_DOFORK). The caller removed the budget first, so what is read
 * stays. After the fork, in the parent: swap_after_fork() makes them
 * MADV_DONTFORK again, as ufault made them. */
void swap_bring_back(struct ufault_ctx *ctx);
void swap_after_fork(struct ufault_ctx *ctx);

/* Pages in the file now, and ever written to it (for the report). */
void swap_counts(unsigned long long *stored, unsigned long long *written);

#endif
