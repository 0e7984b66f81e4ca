/* SPDX-License-Identifier: MIT */
/*
 * writeback.h - write-back regions (UFAULT_REGION_WRITEBACK): which pages
 * were written, and storing them in their source.
 *
 * The written state lives in the kernel's page tables, not in ufault: a
 * write-back region is registered for write-protect faults too, and every
 * page is installed write-protected (UFFDIO_COPY_MODE_WP), so "written since
 * the last flush" is "no longer write-protected". Region splits, moves and
 * protection changes by the proxies carry it along for free.
 *  - ASYNC (UFFD_FEATURE_WP_ASYNC): the kernel resolves the write-protect
 *    fault itself; one PAGEMAP_SCAN with PM_SCAN_WP_MATCHING finds the
 *    written pages and protects them again, atomically.
 *  - SYNC: a worker resolves each write-protect fault (worker.c); a flush
 *    finds the unprotected pages (PAGEMAP_SCAN, or /proc/self/pagemap's
 *    uffd-wp bit before Linux 6.7) and protects them with
 *    UFFDIO_WRITEPROTECT before reading them.
 * Either way a page is protected again before its bytes are read for the
 * source, so a write landing during its write-back leaves it written for the
 * next flush: never lost. A page whose write-back fails is unprotected
 * again (written), for the next flush to retry.
 */
#ifndef UFAULT_LIB_WRITEBACK_H
#define UFAULT_LIB_WRITEBACK_H

#include <stdbool.h>
#include <stdint.h>

#include <ufault/ufault.h>

#include "log.h"
#include "region.h"

struct ufault__writeback {
	const struct ufault__log *log;
	int pagemap_fd;	       /* /proc/self/pagemap; -1: no write-back regions */
	bool scan;	       /* PAGEMAP_SCAN works */
	bool async;	       /* UFFD_FEATURE_WP_ASYNC is on for every uffd */
	uint64_t written_back; /* atomic: system pages stored in sources */
};

/*
 * Decide the mode for @mode on a kernel offering @kernel_features: *want gets
 * the features to ask UFFDIO_API for (UFFD_FEATURE_WP_ASYNC or nothing).
 * 0, or -EOPNOTSUPP (logged) when ASYNC is asked for and missing. Without
 * /proc/self/pagemap the context works, without write-back regions.
 */
int ufault__writeback_init(struct ufault__writeback *wb, enum ufault_dirty_mode mode,
			   uint64_t kernel_features, const struct ufault__log *log, uint64_t *want);
/* The uffds were opened with @granted features: the mode in effect. */
void ufault__writeback_start(struct ufault__writeback *wb, uint64_t granted);
void ufault__writeback_destroy(struct ufault__writeback *wb);

/* Can write-back regions be registered (-EOPNOTSUPP, logged, if not)? */
int ufault__writeback_usable(const struct ufault__writeback *wb);

/* Is the page at @addr mapped (present or swapped), so that reading it
 * cannot fault to ufault? (/proc/self/pagemap) */
bool ufault__writeback_mapped(struct ufault__writeback *wb, uint64_t addr);

/* Count [start, start + len) as written again (its bytes were not stored):
 * its protection comes off, waiting out events pending. 0 or -errno. */
int ufault__writeback_mark_written(int uffd, uint64_t start, uint64_t len);

/* Was [start, end) written? Found (and protected again) as a flush does:
 * its bytes read from now on are what the source must get. 0 or -errno. */
int ufault__writeback_test(struct ufault__writeback *wb, int uffd, uint64_t start, uint64_t end,
			   bool *written);

/*
 * Store the written pages of [start, end), inside write-back region @r, in
 * its source, then sync it. The caller holds the mm lock for reading over
 * the range (the region stays). 0 or the first -errno; pages that failed
 * stay written.
 */
int ufault__writeback_range(struct ufault__writeback *wb, struct ufault_region *r, uint64_t start,
			    uint64_t end);

/* Why a flush runs: UNMAP (munmap, unregister, destroy) leaves out the
 * regions flagged UFAULT_REGION_DISCARD. */
enum ufault__flush_why { UFAULT__FLUSH_SYNC, UFAULT__FLUSH_UNMAP };

/*
 * ufault_flush()'s walk: every write-back region overlapping [start, end),
 * its part of the range stored. The caller holds the mm lock over the range
 * (read or write), so the regions stay. The first error.
 */
int ufault__writeback_flush(struct ufault__writeback *wb, struct ufault__regions *set,
			    uint64_t start, uint64_t end, enum ufault__flush_why why);

#endif
