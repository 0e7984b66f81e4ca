/* SPDX-License-Identifier: MIT */
/*
 * shared.h - a foreign owner's shared memory (ufault_region_register_shared()):
 * the memfd (or other tmpfs file) the owner maps MAP_SHARED over a
 * registration, which this process holds too.
 *
 * That fd is what lets a foreign context write pages back and evict them
 * without a way into the owner's address space: a page's bytes are read from
 * the memfd (pread(2), which never fills a hole), compared with the source's
 * (written means different: no dirty tracking), stored if they differ, and
 * the page is freed by punching it out of the memfd, which unmaps it from
 * the owner too (its next touch is a missing fault again, filled from the
 * source). While a page is evicted it is write-protected in the owner (the
 * owner registers UFFDIO_REGISTER_MODE_WP, without UFFD_FEATURE_WP_ASYNC):
 * a write waits for the eviction (worker.c defers its write-protect fault
 * while the page is busy) and is never lost.
 */
#ifndef UFAULT_LIB_SHARED_H
#define UFAULT_LIB_SHARED_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"

struct ufault__source;

struct ufault__shared {
	bool on;
	int fd;		 /* this process's dup of the memfd */
	uint64_t offset; /* in fd, of base */
	uint64_t base;	 /* the owner's address of the registration's start */
	uint64_t len;
};

/* Check @fd (a tmpfs file, memfd included, at least @offset + @len bytes)
 * and keep a dup of it for [@base, @base + @len). 0 or -errno (logged). */
int ufault__shared_init(struct ufault__shared *sh, int fd, uint64_t offset, uint64_t base,
			uint64_t len, const struct ufault__log *log);
void ufault__shared_fini(struct ufault__shared *sh);

/* Is the owner's page at @addr in the memfd (SEEK_DATA)? */
bool ufault__shared_resident(const struct ufault__shared *sh, uint64_t addr);

/* Punch [@addr, @addr + @len) out of the memfd (and the owner's page
 * tables). 0 or -errno. */
int ufault__shared_punch(const struct ufault__shared *sh, uint64_t addr, uint64_t len);

/*
 * Store the owner's page at @addr (resident or not: a hole stores nothing)
 * in source @s at @off if its bytes differ from the source's (a source
 * without a read op: always). @buf: two system pages. 1 if stored, 0 if
 * not, or -errno.
 */
int ufault__shared_store(const struct ufault__shared *sh, const struct ufault__source *s,
			 uint64_t addr, uint64_t off, void *buf);

/* ufault__shared_store() over the resident pages of [@start, @end), whose
 * first is at source offset @off; the pages stored (added to *@stored) or
 * the first -errno (the rest still tried). */
int ufault__shared_store_range(const struct ufault__shared *sh, const struct ufault__source *s,
			       uint64_t start, uint64_t end, uint64_t off, uint64_t *stored);

#endif
