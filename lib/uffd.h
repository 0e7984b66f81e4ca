/* SPDX-License-Identifier: MIT */
/*
 * uffd.h - the kernel interface: opening a userfaultfd, the UFFDIO_API
 * handshake, a run-time feature probe, and one wrapper per ioctl. Wrappers
 * return 0 or -errno and never log; callers judge errors with
 * ufault__uffd_classify(), the one place benign races are decided.
 */
#ifndef UFAULT_LIB_UFFD_H
#define UFAULT_LIB_UFFD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "compat.h"

/* What the kernel offers (probed once per process) or granted (per fd). */
struct ufault__uffd_caps {
	uint64_t features; /* UFFD_FEATURE_* */
	uint64_t ioctls;   /* 1 << _UFFDIO_* valid on registered ranges */
};

/*
 * Open a userfaultfd (O_CLOEXEC | O_NONBLOCK, user-mode faults only): the
 * syscall first, then /dev/userfaultfd + USERFAULTFD_IOC_NEW (for processes
 * where vm.unprivileged_userfaultfd forbids the syscall). Returns fd or -errno.
 */
int ufault__uffd_open(void);

/*
 * UFFDIO_API handshake asking for @want features; features the kernel lacks
 * are dropped rather than failing (the probe tells which). On success fills
 * @got with the features granted (@want & supported) and the fd's ioctls.
 * Returns 0 / -errno.
 */
int ufault__uffd_api(int fd, uint64_t want, struct ufault__uffd_caps *got);

/* Features the running kernel supports (cached after the first call). */
int ufault__uffd_probe(struct ufault__uffd_caps *out);

/* Registration (UFFDIO_REGISTER_MODE_*); returns the range's ioctls in *ioctls. */
int ufault__uffd_register(int fd, uint64_t start, uint64_t len, uint64_t mode, uint64_t *ioctls);
int ufault__uffd_unregister(int fd, uint64_t start, uint64_t len);

/*
 * The fill wrappers skip a page that already exists (EEXIST) in steps of the
 * system page, so they are for anonymous and shmem ranges, not hugetlbfs.
 *
 * UFFDIO_COPY of @len bytes. Partial copies are continued; -EAGAIN after some
 * progress is continued too; -EAGAIN with no progress is returned (the caller
 * defers and retries after draining events: never spin). *done receives the
 * bytes copied by this call (also on error).
 */
int ufault__uffd_copy(int fd, uint64_t dst, const void *src, uint64_t len, bool wake,
		      uint64_t *done);
/* The same, installing the pages write-protected (write-back regions). */
int ufault__uffd_copy_wp(int fd, uint64_t dst, const void *src, uint64_t len, bool wake,
			 uint64_t *done);
int ufault__uffd_zeropage(int fd, uint64_t dst, uint64_t len, bool wake, uint64_t *done);
int ufault__uffd_poison(int fd, uint64_t dst, uint64_t len, bool wake, uint64_t *done);
/* Map what the (shmem) page cache holds at [dst, dst + len): MINOR faults. */
int ufault__uffd_continue(int fd, uint64_t dst, uint64_t len, bool wake, uint64_t *done);
int ufault__uffd_wake(int fd, uint64_t start, uint64_t len);
/* UFFDIO_MOVE of @len bytes from @src to @dst (registered on @fd, missing):
 * the pages leave @src atomically. 0 or -errno (-ENOENT: no page at @src,
 * -EBUSY: one the kernel cannot move, e.g. shared or pinned; -EAGAIN:
 * events pending). */
int ufault__uffd_move(int fd, uint64_t dst, uint64_t src, uint64_t len, bool wake);
/* UFFDIO_WRITEPROTECT: set (@protect) or clear the uffd write protection
 * of [start, start + len); clearing it wakes threads waiting on it unless
 * !@wake. 0 or -errno (-EAGAIN: events pending, nothing changed). */
int ufault__uffd_writeprotect(int fd, uint64_t start, uint64_t len, bool protect, bool wake);
/*
 * PAGEMAP_SCAN on @pagemap_fd (/proc/self/pagemap) over [start, end): the
 * runs of pages in every category of @category_mask, in none of @inverted,
 * and in one at least of @anyof_mask (0: any), into @vec (@n runs at most),
 * with PM_SCAN_* @flags. Returns the number of runs or -errno
 * (-ENOTTY before Linux 6.7); *walk_end: where the walk stopped (end, or
 * earlier when @vec filled up).
 */
int ufault__pagemap_scan(int pagemap_fd, uint64_t start, uint64_t end, uint64_t flags,
			 uint64_t category_mask, uint64_t inverted, uint64_t anyof_mask,
			 struct page_region *vec, size_t n, uint64_t *walk_end);

/* How to treat an error of the fill ioctls (COPY, ZEROPAGE, POISON), WAKE
 * and UNREGISTER. */
enum ufault__uffd_verdict {
	UFAULT__UFFD_OK = 0,   /* success */
	UFAULT__UFFD_RESOLVED, /* EEXIST: someone else installed it: success */
	UFAULT__UFFD_LATER,    /* EAGAIN: events pending (mmap_changing): defer */
	UFAULT__UFFD_NOVMA,    /* ENOENT: the destination is not inside one VMA
				* (unmapped, or split by mprotect/madvise):
				* the faulting thread may still be parked */
	UFAULT__UFFD_GONE,     /* ESRCH: the mm is exiting: nobody waits */
	UFAULT__UFFD_FATAL,    /* anything else: a real error */
};
enum ufault__uffd_verdict ufault__uffd_classify(int err);

#endif
