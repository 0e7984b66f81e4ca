/* SPDX-License-Identifier: MIT */
/*
 * alloc.h - ufault's own metadata memory. Mapped with raw syscalls, never
 * libc malloc, so proxies and the fault path can run inside an application's
 * malloc -> mmap call (the future preload shim) and never land in registered
 * memory.
 */
#ifndef UFAULT_LIB_ALLOC_H
#define UFAULT_LIB_ALLOC_H

#include <pthread.h>
#include <stddef.h>

/* Anonymous private read-write pages via syscall(SYS_mmap); NULL on failure
 * (errno set). @len is rounded up to the page size. */
void *ufault__pages_map(size_t len);
void ufault__pages_unmap(void *p, size_t len);

/* Fixed-size object cache. Thread-safe. Chunks (64 KiB, or one object if
 * larger) stay mapped until destroy, so reading a freed object's memory
 * never faults. Objects are aligned to 64 bytes if objsize >= 64, else to
 * 16. A freed object's first pointer-sized word holds the free-list link;
 * the rest keeps its contents until the slot is allocated again. */
struct ufault__slab_chunk;
struct ufault__slab {
	size_t objsize;
	size_t stride;	   /* objsize rounded up to the alignment */
	size_t chunk_size; /* bytes mapped per chunk */
	size_t per_chunk;  /* object slots per chunk */
	pthread_mutex_t lock;
	void *free_list;
	struct ufault__slab_chunk *chunks; /* newest first; only ever grows */
	size_t nr_live;
};

int ufault__slab_init(struct ufault__slab *s, size_t objsize); /* 0 / -EINVAL */
void *ufault__slab_alloc(struct ufault__slab *s);	       /* zeroed; NULL + errno=ENOMEM */
void ufault__slab_free(struct ufault__slab *s, void *obj);
void ufault__slab_destroy(struct ufault__slab *s); /* unmaps all chunks */
/* True if @p points at the start of an object slot (live or free) of this
 * slab. Takes no lock (chunks are only added, with a release store) and
 * never dereferences @p, so any value is safe; O(number of chunks). */
int ufault__slab_owns(const struct ufault__slab *s, const void *p);

#endif
