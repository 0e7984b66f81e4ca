// SPDX-License-Identifier: MIT
/*
 * writeback.c - write-back regions (writeback.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "source.h"
#include "uffd.h"
#include "util.h"
#include "writeback.h"

#define RUNS 64 /* page runs per PAGEMAP_SCAN call */
#define MAPPED (PAGE_IS_PRESENT | PAGE_IS_SWAPPED)
#define PAGEMAP_CHUNK 512 /* /proc/self/pagemap entries per read */
#define EAGAIN_SLEEP_NS 50000
#define EAGAIN_TRIES 20000 /* about a second of events pending */

int ufault__writeback_init(struct ufault__writeback *wb, enum ufault_dirty_mode mode,
			   uint64_t kernel_features, const struct ufault__log *log, uint64_t *want)
{
	struct page_region one;
	uint64_t walk_end, page = (uint64_t)(uintptr_t)&one & ~(ufault__sys_page() - 1);

	wb->log = log;
	wb->async = false;
	wb->scan = false;
	wb->written_back = 0;
	*want = 0;
	wb->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (wb->pagemap_fd >= 0)
		wb->scan = ufault__pagemap_scan(wb->pagemap_fd, page, page + ufault__sys_page(), 0,
						PAGE_IS_WRITTEN, 0, 0, &one, 1, &walk_end) >= 0;
	else
		ufault__info(log, "/proc/self/pagemap: %s: no write-back regions",
			     ufault_strerror(-errno));
	if (mode == UFAULT_DIRTY_SYNC)
		return 0;
	if (wb->scan && (kernel_features & UFFD_FEATURE_WP_ASYNC)) {
		*want = UFFD_FEATURE_WP_ASYNC;
		return 0;
	}
	if (mode == UFAULT_DIRTY_ASYNC) {
		ufault__warn(log, "config: UFAULT_DIRTY_ASYNC needs UFFD_FEATURE_WP_ASYNC and "
				  "PAGEMAP_SCAN (Linux 6.7), which this kernel lacks");
		if (wb->pagemap_fd >= 0)
			close(wb->pagemap_fd);
		wb->pagemap_fd = -1;
		return -EOPNOTSUPP;
	}
	return 0;
}

void ufault__writeback_start(struct ufault__writeback *wb, uint64_t granted)
{
	wb->async = (granted & UFFD_FEATURE_WP_ASYNC) != 0;
}

void ufault__writeback_destroy(struct ufault__writeback *wb)
{
	if (wb->pagemap_fd >= 0)
		close(wb->pagemap_fd);
	wb->pagemap_fd = -1;
}

int ufault__writeback_usable(const struct ufault__writeback *wb)
{
	if (wb->pagemap_fd >= 0)
		return 0;
	ufault__warn(wb->log, "write-back region: /proc/self/pagemap cannot be read here");
	return -EOPNOTSUPP;
}

/* UFFDIO_WRITEPROTECT, waiting out events pending (a worker reads them). */
static int protect(int uffd, uint64_t start, uint64_t len, bool on)
{
	int ret;

	for (int i = 0; (ret = ufault__uffd_writeprotect(uffd, start, len, on, true)) == -EAGAIN &&
			i < EAGAIN_TRIES;
	     i++)
		ufault__sleep_ns(EAGAIN_SLEEP_NS);
	return ret;
}

/*
 * Without PAGEMAP_SCAN (SYNC before Linux 6.7): the runs of pages present
 * (or swapped) and not write-protected, from /proc/self/pagemap.
 */
static int pagemap_runs(struct ufault__writeback *wb, uint64_t start, uint64_t end,
			struct page_region *vec, size_t n, uint64_t *walk_end)
{
	uint64_t sys = ufault__sys_page(), e[PAGEMAP_CHUNK], a = start;
	size_t runs = 0;

	while (a < end && runs < n) {
		uint64_t pages = (end - a) / sys < PAGEMAP_CHUNK ? (end - a) / sys : PAGEMAP_CHUNK;
		ssize_t got =
		    pread(wb->pagemap_fd, e, pages * sizeof(e[0]), (off_t)(a / sys * sizeof(e[0])));

		if (got < 0)
			return -errno;
		if (got < (ssize_t)sizeof(e[0]))
			return -EIO;
		pages = (uint64_t)got / sizeof(e[0]);
		for (uint64_t i = 0; i < pages; i++, a += sys) {
			bool written = (e[i] & (UFAULT__PM_PRESENT | UFAULT__PM_SWAPPED)) &&
				       !(e[i] & UFAULT__PM_UFFD_WP);

			if (!written)
				continue;
			if (runs && vec[runs - 1].end == a) {
				vec[runs - 1].end = a + sys;
			} else if (runs == n) {
				*walk_end = a;
				return (int)runs;
			} else {
				vec[runs++] = (struct page_region){a, a + sys, PAGE_IS_WRITTEN};
			}
		}
	}
	*walk_end = a < end ? a : end;
	return (int)runs;
}

/*
 * The next runs of written pages in [start, end), protected again before
 * this returns (so their bytes can be read for the source); *walk_end:
 * where to go on from.
 */
static int written_runs(struct ufault__writeback *wb, int uffd, uint64_t start, uint64_t end,
			struct page_region *vec, size_t n, uint64_t *walk_end)
{
	int runs, ret;

	/* A page never installed has no protection either: only mapped
	 * pages (present or swapped) can have been written; and the shared
	 * zero page (mapped by a read before the registration) never was. */
	if (wb->async)
		return ufault__pagemap_scan(
		    wb->pagemap_fd, start, end, PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		    PAGE_IS_WRITTEN, PAGE_IS_PFNZERO, MAPPED, vec, n, walk_end);
	runs = wb->scan ? ufault__pagemap_scan(wb->pagemap_fd, start, end, 0, PAGE_IS_WRITTEN,
					       PAGE_IS_PFNZERO, MAPPED, vec, n, walk_end)
			: pagemap_runs(wb, start, end, vec, n, walk_end);
	for (int i = 0; i < runs; i++) {
		ret = protect(uffd, vec[i].start, vec[i].end - vec[i].start, true);
		if (ret)
			return ret;
	}
	return runs;
}

bool ufault__writeback_mapped(struct ufault__writeback *wb, uint64_t addr)
{
	uint64_t e;

	if (pread(wb->pagemap_fd, &e, sizeof(e), (off_t)(addr / ufault__sys_page() * sizeof(e))) !=
	    sizeof(e))
		return false;
	return (e & (UFAULT__PM_PRESENT | UFAULT__PM_SWAPPED)) != 0;
}

int ufault__writeback_mark_written(int uffd, uint64_t start, uint64_t len)
{
	return protect(uffd, start, len, false);
}

int ufault__writeback_test(struct ufault__writeback *wb, int uffd, uint64_t start, uint64_t end,
			   bool *written)
{
	struct page_region vec[1];
	uint64_t walk_end;
	int runs = written_runs(wb, uffd, start, end, vec, 1, &walk_end);

	if (runs < 0)
		return runs;
	*written = runs > 0;
	return 0;
}

/* Store a batch of runs: at once where the source can, else one by one. */
static void store(const struct ufault__source *s, struct ufault__wb_io *io, unsigned int n)
{
	if (!n)
		return;
	if (s->ops->write_batch) {
		s->ops->write_batch(&s->user, io, n);
		return;
	}
	for (unsigned int i = 0; i < n; i++)
		io[i].result = s->ops->write(&s->user, io[i].off, io[i].buf, io[i].len);
}

/* Store the written pages of [start, end) of @r, tracked by protection
 * (writeback.h); the pages stored added to *@pages; 0 or the first -errno. */
static int store_written(struct ufault__writeback *wb, struct ufault_region *r, uint64_t start,
			 uint64_t end, uint64_t *pages)
{
	const struct ufault__source *s = r->src;
	int uffd = ufault__region_uffd(r), first = 0;
	struct page_region vec[RUNS];
	struct ufault__wb_io io[RUNS];

	while (start < end) {
		uint64_t walk_end = end;
		int runs = written_runs(wb, uffd, start, end, vec, RUNS, &walk_end);

		if (runs < 0) {
			ufault__warn(wb->log,
				     "write-back: finding written pages in [%#llx, %#llx): %s",
				     (unsigned long long)start, (unsigned long long)end,
				     ufault_strerror(runs));
			return first ? first : runs;
		}
		for (int i = 0; i < runs; i++)
			io[i] = (struct ufault__wb_io){
			    .off = ufault__region_offset(r, vec[i].start),
			    .buf = (const void *)(uintptr_t)vec[i].start,
			    .len = vec[i].end - vec[i].start,
			};
		store(s, io, (unsigned int)(runs > 0 ? runs : 0));
		for (int i = 0; i < runs; i++) {
			if (io[i].result) {
				/* Written again: the next flush retries it. */
				protect(uffd, vec[i].start, io[i].len, false);
				if (!first)
					first = io[i].result;
				continue;
			}
			*pages += io[i].len / ufault__sys_page();
		}
		if (walk_end <= start)
			break;
		start = walk_end;
	}
	return first;
}

int ufault__writeback_range(struct ufault__writeback *wb, struct ufault_region *r, uint64_t start,
			    uint64_t end)
{
	const struct ufault__source *s = r->src;
	struct ufault__source *so = ufault__source_of(&s->user);
	int uffd = ufault__region_uffd(r), first;
	uint64_t pages = 0;
	bool unsynced;

	/* In a foreign owner's shared memory, written means different. */
	first = s->shared.on ? ufault__shared_store_range(&s->shared, s, start, end,
							  ufault__region_offset(r, start), &pages)
			     : store_written(wb, r, start, end, &pages);
	/* Also what the evictor wrote back since the last sync. */
	unsynced = __atomic_exchange_n(&so->unsynced, false, __ATOMIC_ACQ_REL);
	if ((pages || unsynced) && !first && s->ops->sync) {
		first = s->ops->sync(&s->user);
		if (first) {
			/* Which pages are durable is unknown: the resident
			 * ones are written again, the evicted ones synced
			 * again next time. */
			if (!s->shared.on) /* there: compared again */
				protect(uffd, ufault__region_start(r),
					ufault__region_end(r) - ufault__region_start(r), false);
			__atomic_store_n(&so->unsynced, true, __ATOMIC_RELEASE);
		}
	} else if (unsynced && first) {
		__atomic_store_n(&so->unsynced, true, __ATOMIC_RELEASE);
	}
	if (first)
		ufault__warn(wb->log, "write-back to the %s source: %s", s->ops->name,
			     ufault_strerror(first));
	__atomic_fetch_add(&wb->written_back, first ? 0 : pages, __ATOMIC_RELAXED);
	return first;
}

int ufault__writeback_flush(struct ufault__writeback *wb, struct ufault__regions *set,
			    uint64_t start, uint64_t end, enum ufault__flush_why why)
{
	struct ufault_region *r;
	int first = 0;

	for (r = ufault__regions_first(set, start, end); r; r = ufault__regions_next(set, r, end)) {
		uint64_t s = ufault__region_start(r) > start ? ufault__region_start(r) : start;
		uint64_t e = ufault__region_end(r) < end ? ufault__region_end(r) : end;
		int ret;

		if (!(r->flags & UFAULT_REGION_WRITEBACK) ||
		    (why == UFAULT__FLUSH_UNMAP && (r->flags & UFAULT_REGION_DISCARD)))
			continue;
		ret = ufault__writeback_range(wb, r, s, e);
		if (ret && !first)
			first = ret;
	}
	return first;
}
