// SPDX-License-Identifier: MIT
/*
 * swap.c - UFAULT_MEMORY_LIMIT's store (swap.h).
 *
 * The file: unlinked from the start (O_TMPFILE, or a name removed at
 * once), so nothing is left behind whatever way the process ends. Slot s
 * holds one system page at file offset s * page; freed slots are reused
 * (a stack), so the file grows to the most pages evicted at once and no
 * further. Reads and writes go through the page cache (O_DIRECT would need
 * aligned buffers everywhere, and tmpfs refuses it): the kernel keeps the
 * recent ones there as reclaimable cache, not the process's memory.
 *
 * An area (one per region made under the limit) maps its pages to slots:
 * a table of uint32_t, slot + 1 per page (0: nothing stored; the page
 * reads zeros), made at the first page evicted and grown when an evicted
 * page lies past it (a region grown by mremap). The callbacks:
 *   fill       the slot's page, or zeros;
 *   writeback  into the page's slot (a new one if it has none);
 *   discard    the pages' slots go back to the stack: the memory was
 *              unmapped or dropped, and must read zeros if mapped again;
 *   release    (every piece gone) all of the area's slots back, its table
 *              unmapped, the area kept for the next region.
 * Areas are never returned to the system, so a pointer to one stays
 * readable (swap_bring_back() reads areas of regions that may be going).
 *
 * One lock over all of it, held across the I/O (each call is one page, or
 * a few: the page cache makes it a copy, usually).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proxy.h"
#include "shim.h"
#include "swap.h"

#define AREA_CHUNK (64u << 10) /* areas are carved from chunks this size */

struct area {
	uint32_t *slot; /* slot + 1 per page; NULL: none stored yet */
	uint64_t cap;	/* pages the table covers */
	bool live;
	struct area *next_free;
};

static struct {
	pthread_mutex_t lock;
	int fd;
	uint64_t ps;
	uint32_t next;	/* slots ever handed out */
	uint32_t *free; /* stack of free slots */
	uint64_t nr_free, free_cap;
	struct area *spare; /* areas to reuse */
	struct area *chunk; /* the chunk areas are carved from */
	unsigned int chunk_used;
	uint64_t stored, written;
} W = {.lock = PTHREAD_MUTEX_INITIALIZER, .fd = -1};

static void *raw_remap(void *old, size_t old_len, size_t len)
{
	void *p = (void *)syscall(SYS_mremap, old, old_len, len, MREMAP_MAYMOVE);

	return p == MAP_FAILED ? NULL : p;
}

static size_t round_page(size_t n)
{
	return (n + W.ps - 1) & ~(size_t)(W.ps - 1);
}

int swap_open(void)
{
	const char *dir = getenv("UFAULT_SWAP_DIR");
	char path[4096];
	int fd, err;

	W.ps = (uint64_t)sysconf(_SC_PAGESIZE);
	if (!dir || !*dir)
		dir = getenv("TMPDIR");
	if (!dir || !*dir)
		dir = "/var/tmp";
	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* No O_TMPFILE there: a name, removed at once. */
		if ((size_t)snprintf(path, sizeof(path), "%s/ufault-swap-XXXXXX", dir) <
		    sizeof(path)) {
			fd = mkostemp(path, O_CLOEXEC);
			if (fd >= 0)
				unlink(path);
		} else {
			errno = ENAMETOOLONG;
		}
	}
	if (fd < 0) {
		err = errno;
		shim_say("ufault_preload: UFAULT_MEMORY_LIMIT: no swap file in %s: %s\n", dir,
			 strerror(err));
		return -err;
	}
	W.fd = fd;
	return 0;
}

static int io(bool wr, void *buf, uint64_t off)
{
	size_t done = 0;

	while (done < W.ps) {
		ssize_t n =
		    wr ? pwrite(W.fd, (const char *)buf + done, W.ps - done, (off_t)(off + done))
		       : pread(W.fd, (char *)buf + done, W.ps - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0) { /* read past the end: never written, zeros */
			memset((char *)buf + done, 0, W.ps - done);
			return 0;
		}
		done += (size_t)n;
	}
	return 0;
}

/* Slot @s (under the lock) back on the stack. */
static void slot_free(uint32_t s)
{
	if (W.nr_free == W.free_cap) {
		uint64_t cap = W.free_cap ? W.free_cap * 2 : W.ps / sizeof(uint32_t);
		uint32_t *f = W.free ? raw_remap(W.free, W.free_cap * sizeof(uint32_t),
						 cap * sizeof(uint32_t))
				     : shim_pages(cap * sizeof(uint32_t));

		if (!f)
			return; /* out of memory: the slot is not reused */
		W.free = f;
		W.free_cap = cap;
	}
	W.free[W.nr_free++] = s;
	W.stored--;
}

static int area_fill(void *arg, uint64_t off, void *buf, size_t len)
{
	struct area *a = arg;
	int ret = 0;

	pthread_mutex_lock(&W.lock);
	for (size_t k = 0; k < len && !ret; k += W.ps) {
		uint64_t pg = (off + k) / W.ps;
		uint32_t s = a->slot && pg < a->cap ? a->slot[pg] : 0;

		if (s)
			ret = io(false, (char *)buf + k, (uint64_t)(s - 1) * W.ps);
		else
			memset((char *)buf + k, 0, W.ps);
	}
	pthread_mutex_unlock(&W.lock);
	if (ret)
		shim_say("ufault_preload: reading the swap file: %s\n", strerror(-ret));
	return ret;
}

/* The table covers page @pg (under the lock); false if out of memory. */
static bool area_reach(struct area *a, uint64_t pg)
{
	uint64_t cap = a->cap ? a->cap : W.ps / sizeof(uint32_t);
	uint32_t *t;

	if (a->slot && pg < a->cap)
		return true;
	while (cap <= pg)
		cap *= 2;
	t = a->slot ? raw_remap(a->slot, round_page(a->cap * sizeof(uint32_t)),
				round_page(cap * sizeof(uint32_t)))
		    : shim_pages(round_page(cap * sizeof(uint32_t)));
	if (!t)
		return false;
	a->slot = t;
	a->cap = round_page(cap * sizeof(uint32_t)) / sizeof(uint32_t);
	return true;
}

static int area_store(void *arg, uint64_t off, const void *buf, size_t len)
{
	struct area *a = arg;
	int ret = 0;

	pthread_mutex_lock(&W.lock);
	for (size_t k = 0; k < len && !ret; k += W.ps) {
		uint64_t pg = (off + k) / W.ps;
		uint32_t s;

		if (!area_reach(a, pg)) {
			ret = -ENOMEM;
			break;
		}
		s = a->slot[pg];
		if (!s) {
			if (W.nr_free)
				s = W.free[--W.nr_free] + 1;
			else if (W.next < UINT32_MAX - 1)
				s = ++W.next;
			else {
				ret = -ENOSPC;
				break;
			}
			W.stored++;
		}
		ret = io(true, (void *)((const char *)buf + k), (uint64_t)(s - 1) * W.ps);
		if (ret) {
			if (!a->slot[pg])
				slot_free(s - 1);
			break;
		}
		a->slot[pg] = s;
		W.written++;
	}
	pthread_mutex_unlock(&W.lock);
	if (ret) /* the page stays in memory, written: ufault logs it too */
		shim_say("ufault_preload: writing the swap file: %s\n", strerror(-ret));
	return ret;
}

/* Pages [first, first + n) of @a forget their slots (under the lock). */
static void area_forget(struct area *a, uint64_t first, uint64_t n)
{
	for (uint64_t pg = first; a->slot && pg < first + n && pg < a->cap; pg++)
		if (a->slot[pg]) {
			slot_free(a->slot[pg] - 1);
			a->slot[pg] = 0;
		}
}

static void area_discard(void *arg, uint64_t off, uint64_t len)
{
	pthread_mutex_lock(&W.lock);
	area_forget(arg, off / W.ps, len / W.ps);
	pthread_mutex_unlock(&W.lock);
}

static void area_release(void *arg)
{
	struct area *a = arg;

	pthread_mutex_lock(&W.lock);
	area_forget(a, 0, a->cap);
	if (a->slot)
		syscall(SYS_munmap, a->slot, round_page(a->cap * sizeof(uint32_t)));
	a->slot = NULL;
	a->cap = 0;
	a->live = false;
	a->next_free = W.spare;
	W.spare = a;
	pthread_mutex_unlock(&W.lock);
}

bool swap_source(struct ufault_source *src)
{
	struct area *a;

	pthread_mutex_lock(&W.lock);
	a = W.spare;
	if (a) {
		W.spare = a->next_free;
	} else {
		if (!W.chunk || W.chunk_used == AREA_CHUNK / sizeof(*a)) {
			W.chunk = shim_pages(AREA_CHUNK);
			W.chunk_used = 0;
		}
		a = W.chunk ? &W.chunk[W.chunk_used++] : NULL;
	}
	if (a)
		*a = (struct area){.live = true};
	pthread_mutex_unlock(&W.lock);
	if (!a)
		return false;
	ufault_source_init(src, UFAULT_SOURCE_CALLBACK);
	src->callback.fill = area_fill;
	src->callback.writeback = area_store;
	src->callback.discard = area_discard;
	src->callback.arg = a;
	src->release = area_release;
	src->release_arg = a;
	return true;
}

/* Read a byte of each page in @pages[0..@n) through the kernel
 * (process_vm_readv(2) of this process): a page that was unmapped
 * meanwhile is EFAULT, never a SIGSEGV. */
static void read_pages(const uint64_t *pages, size_t n)
{
	struct iovec local, remote[64];
	char sink[64];

	for (size_t i = 0; i < n;) {
		size_t k = 0;

		for (; k < 64 && i + k < n; k++)
			remote[k] = (struct iovec){.iov_base = (void *)(uintptr_t)pages[i + k],
						   .iov_len = 1};
		local = (struct iovec){.iov_base = sink, .iov_len = k};
		/* It stops at the first page it cannot read: go on after it. */
		ssize_t got = process_vm_readv(getpid(), &local, 1, remote, k, 0);

		i += got > 0 ? (size_t)got : 1;
	}
}

/* What a fork's bring-back collects: the pages that are in the file. */
struct collect {
	uint64_t *list;
	size_t nr, cap;
};

static void collect_piece(void *arg, const struct ufault__piece *pc)
{
	struct collect *c = arg;
	struct area *a = pc->arg;
	uint64_t first = pc->offset / W.ps, pages = (pc->end - pc->start) / W.ps;

	pthread_mutex_lock(&W.lock);
	for (uint64_t k = 0; a->slot && k < pages && first + k < a->cap; k++) {
		if (!a->slot[first + k])
			continue;
		if (c->nr == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : W.ps;
			uint64_t *l =
			    c->list ? raw_remap(c->list, c->cap * 8, cap * 8) : shim_pages(cap * 8);

			if (!l)
				break;
			c->list = l;
			c->cap = cap;
		}
		c->list[c->nr++] = pc->start + k * W.ps;
	}
	pthread_mutex_unlock(&W.lock);
}

/* ufault makes regions with a source MADV_DONTFORK (a child could not
 * fill them: it would read zeros where the source has bytes). */
static void dofork_piece(void *arg, const struct ufault__piece *pc)
{
	syscall(SYS_madvise, pc->start, pc->end - pc->start, (int)(intptr_t)arg);
}

void swap_bring_back(struct ufault_ctx *ctx)
{
	struct collect c = {0};

	ufault__ctx_each_callback_region(ctx, area_fill, collect_piece, &c);
	read_pages(c.list, c.nr);
	if (c.list)
		syscall(SYS_munmap, c.list, c.cap * 8);
	/* Whole now: the child may have them. */
	ufault__ctx_each_callback_region(ctx, area_fill, dofork_piece,
					 (void *)(intptr_t)MADV_DOFORK);
}

void swap_after_fork(struct ufault_ctx *ctx)
{
	ufault__ctx_each_callback_region(ctx, area_fill, dofork_piece,
					 (void *)(intptr_t)MADV_DONTFORK);
}

void swap_counts(unsigned long long *stored, unsigned long long *written)
{
	pthread_mutex_lock(&W.lock);
	*stored = W.stored;
	*written = W.written;
	pthread_mutex_unlock(&W.lock);
}
