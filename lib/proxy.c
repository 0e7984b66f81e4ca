// SPDX-License-Identifier: MIT
/*
 * proxy.c - region registration and the mmap family (ufault_mmap / munmap /
 * mremap / mprotect / madvise), done so that regions and mappings never
 * disagree.
 *
 * Each call: compute the span of the regions it affects, write-lock that
 * span in the mm lock (never widening a held range: if the regions changed
 * meanwhile, unlock and retry), prepare every new region object (so nothing
 * but the kernel can fail after the syscall), make the syscall, then commit:
 * detach the old regions, swap them for their surviving pieces in the
 * index, wake threads parked on the changed range, retire the old regions
 * (region.h's collect/swap steps). A failed syscall changes nothing. After
 * unlocking, deferred faults are poked and retired regions reclaimed.
 *
 * Return conventions mirror the syscalls: MAP_FAILED or -1 with errno.
 */
#include <errno.h>
#include <sys/mman.h>

#include "proxy.h"
#include "worker.h"

static void *map_failed(int err)
{
	errno = err < 0 ? -err : err;
	return MAP_FAILED;
}

static int fail(int err)
{
	errno = err < 0 ? -err : err;
	return -1;
}

/* Unlock, retry the faults deferred meanwhile, free what expired. */
static void proxy_unlock(struct ufault_ctx *ctx, struct ufault__mm_held *h)
{
	ufault__mm_write_unlock(&ctx->mm, h);
	/* Faults that found this range locked or its regions detached were
	 * set aside, not waited for: tell their workers to try again. */
	ufault__workers_poke(ctx);
	ufault__regions_reclaim(&ctx->regions);
}

static void proxy_done(struct ufault_ctx *ctx)
{
	__atomic_fetch_add(&ctx->proxy_ops, 1, __ATOMIC_RELAXED);
}

/* [addr, addr + len) rounded out to system pages, or -EINVAL if it wraps. */
static int page_range(struct ufault_ctx *ctx, uint64_t addr, uint64_t len, uint64_t *end)
{
	uint64_t rounded;

	if (addr % ufault__sys_page() || !ufault__round_up(len, ufault__sys_page(), &rounded) ||
	    addr + rounded < addr) {
		ufault__warn(&ctx->log, "[%#llx, +%llu): unaligned or wraps around",
			     (unsigned long long)addr, (unsigned long long)len);
		return -EINVAL;
	}
	*end = addr + rounded;
	return 0;
}

/* Lock the span of [s1, e1) and, if e2 > s2, of [s2, e2) too: one request
 * over their union (with a FIFO range lock, taking two ranges one after
 * the other can deadlock even in address order). */
static void lock_spans(struct ufault_ctx *ctx, struct ufault__mm_held *h, uint64_t s1, uint64_t e1,
		       uint64_t s2, uint64_t e2)
{
	struct ufault__regions *set = &ctx->regions;

	for (;;) {
		uint64_t a1, b1, a2 = 0, b2 = 0, c1, d1, c2 = 0, d2 = 0;

		ufault__regions_span(set, s1, e1, &a1, &b1);
		if (e2 > s2)
			ufault__regions_span(set, s2, e2, &a2, &b2);
		ufault__mm_write_lock(&ctx->mm, h, e2 > s2 && a2 < a1 ? a2 : a1,
				      e2 > s2 && b2 > b1 ? b2 : b1);
		ufault__regions_span(set, s1, e1, &c1, &d1);
		if (e2 > s2)
			ufault__regions_span(set, s2, e2, &c2, &d2);
		if (c1 >= a1 && d1 <= b1 && c2 >= a2 && d2 <= b2)
			return;
		ufault__mm_write_unlock(&ctx->mm, h);
	}
}

/* --- write-back ------------------------------------------------------------ */

int ufault_flush(struct ufault_ctx *ctx, void *addr, size_t len)
{
	uint64_t start = (uint64_t)(uintptr_t)addr, end;
	struct ufault__mm_held h;
	int ret;

	if (!ctx)
		return -EINVAL;
	if (ufault__ctx_forked(ctx, "flush"))
		return -ECHILD;
	if (!len || page_range(ctx, start, len, &end))
		return -EINVAL;
	ufault__mm_read_lock(&ctx->mm, &h, start, end);
	ret = ufault__writeback_flush(&ctx->wb, &ctx->regions, start, end, UFAULT__FLUSH_SYNC);
	ufault__mm_read_unlock(&ctx->mm, &h);
	return ret;
}

/* Write-back regions need dirty tracking, and keep their own VMAs. */
static int writeback_args(struct ufault_ctx *ctx, unsigned int flags, int map_flags)
{
	if (!(flags & UFAULT_REGION_WRITEBACK))
		return 0;
	if (map_flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
		ufault__warn(&ctx->log, "mmap: a write-back region cannot be mapped MAP_FIXED");
		return -EINVAL;
	}
	return ufault__writeback_usable(&ctx->wb);
}

/* Shared memory: system pages (a hole is punched per page); a write-back
 * region freezes a page being evicted by write-protection, synchronous, on
 * shmem. */
static int shared_args(struct ufault_ctx *ctx, unsigned int flags, uint64_t ps)
{
	if (ps != ufault__sys_page()) {
		ufault__warn(&ctx->log,
			     "register_shared: region pages of %llu bytes: only the system page",
			     (unsigned long long)ps);
		return -EINVAL;
	}
	if ((flags & UFAULT_REGION_WRITEBACK) &&
	    (!(ctx->features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) ||
	     (ctx->features & UFFD_FEATURE_WP_ASYNC))) {
		ufault__warn(&ctx->log,
			     "register_shared: a write-back region needs the uffd set up with "
			     "UFFD_FEATURE_WP_HUGETLBFS_SHMEM and without UFFD_FEATURE_WP_ASYNC");
		return -EOPNOTSUPP;
	}
	return 0;
}

bool ufault__ctx_has_region(struct ufault_ctx *ctx, uint64_t start, uint64_t end)
{
	struct ufault__mm_held h;
	bool any;

	if (end <= start)
		return false;
	ufault__mm_read_lock(&ctx->mm, &h, start, end);
	any = ufault__regions_first(&ctx->regions, start, end) != NULL;
	ufault__mm_read_unlock(&ctx->mm, &h);
	return any;
}

bool ufault__ctx_covered(struct ufault_ctx *ctx, uint64_t start, uint64_t end)
{
	struct ufault__mm_held h;
	uint64_t at = start;

	if (end <= start)
		return false;
	ufault__mm_read_lock(&ctx->mm, &h, start, end);
	for (struct ufault_region *r; at < end; at = ufault__region_end(r)) {
		r = ufault__regions_first(&ctx->regions, at, at + 1);
		if (!r)
			break;
	}
	ufault__mm_read_unlock(&ctx->mm, &h);
	return at >= end;
}

void ufault__ctx_each_callback_region(struct ufault_ctx *ctx, ufault_fill_fn fill,
				      void (*fn)(void *arg, const struct ufault__piece *p),
				      void *arg)
{
	const uint64_t top = 1ull << 63; /* above any user address */
	struct ufault__mm_held h;

	ufault__mm_read_lock(&ctx->mm, &h, 0, top);
	for (struct ufault_region *r = ufault__regions_first(&ctx->regions, 0, top); r;
	     r = ufault__regions_next(&ctx->regions, r, top)) {
		const struct ufault_source *s = &r->src->user;

		if (s->type != UFAULT_SOURCE_CALLBACK || s->callback.fill != fill)
			continue;
		fn(arg, &(struct ufault__piece){
			    .start = ufault__region_start(r),
			    .end = ufault__region_end(r),
			    .offset = ufault__region_offset(r, ufault__region_start(r)),
			    .arg = s->callback.arg});
	}
	ufault__mm_read_unlock(&ctx->mm, &h);
}

/* --- telling sources what left (ufault_discard_fn) ------------------------- */

/* [start, end) of @r left it: its source may forget those offsets. */
static void discard_piece(struct ufault_region *r, uint64_t start, uint64_t end)
{
	uint64_t s = ufault__region_start(r) > start ? ufault__region_start(r) : start;
	uint64_t e = ufault__region_end(r) < end ? ufault__region_end(r) : end;

	if (s < e && r->src->ops->discard)
		r->src->ops->discard(&r->src->user, ufault__region_offset(r, s), e - s);
}

/* The regions of a cut (linked through next_victim) lost [start, end). */
static void discard_victims(struct ufault_region *victims, uint64_t start, uint64_t end)
{
	for (struct ufault_region *r = victims; r; r = r->next_victim)
		discard_piece(r, start, end);
}

/* The indexed regions lost [start, end)'s contents (madvise). */
static void discard_indexed(struct ufault_ctx *ctx, uint64_t start, uint64_t end)
{
	for (struct ufault_region *r = ufault__regions_first(&ctx->regions, start, end); r;
	     r = ufault__regions_next(&ctx->regions, r, end))
		discard_piece(r, start, end);
}

/* --- registration ------------------------------------------------------ */

/* Register, in shared memory (@shared: ufault_region_register_shared()) or not. */
static int do_register(struct ufault_ctx *ctx, const char *what, void *addr, size_t len,
		       const struct ufault_source *src, unsigned int flags, bool shared, int mem_fd,
		       uint64_t mem_offset, struct ufault_region **out)
{
	uint64_t start = (uint64_t)(uintptr_t)addr, ps;
	struct ufault__source *s;
	struct ufault__mm_held h;
	int ret;

	if (!ctx)
		return -EINVAL;
	if (ufault__ctx_forked(ctx, what))
		return -ECHILD;
	if (shared && !ctx->foreign) {
		ufault__warn(&ctx->log, "%s: only a foreign context's owner's memory", what);
		return -EOPNOTSUPP;
	}
	if (!addr) {
		ufault__warn(&ctx->log, "%s: NULL address", what);
		return -EINVAL;
	}
	ret = ufault__region_check_args(&ctx->regions, start, len, src, flags, &ps);
	if (!ret && shared)
		ret = shared_args(ctx, flags, ps);
	else if (!ret)
		ret = writeback_args(ctx, flags, 0);
	if (ret)
		return ret;
	ret = ufault__source_create(&ctx->regions.source_slab, &ctx->loops, src, &ctx->log, &s);
	if (ret)
		return ret;
	if (shared) {
		ret = ufault__shared_init(&s->shared, mem_fd, mem_offset, start, len, &ctx->log);
		if (ret) {
			ufault__source_abandon(s);
			return ret;
		}
	}
	ufault__mm_write_lock(&ctx->mm, &h, start, start + len);
	ret = ufault__region_create(&ctx->regions, start, len, s, flags, ps, out);
	proxy_unlock(ctx, &h);
	if (ret)
		ufault__source_abandon(s);
	else
		ufault__source_commit(s);
	return ret;
}

int ufault_region_register(struct ufault_ctx *ctx, void *addr, size_t len,
			   const struct ufault_source *src, unsigned int flags,
			   struct ufault_region **out)
{
	return do_register(ctx, "register", addr, len, src, flags, false, -1, 0, out);
}

int ufault_region_register_shared(struct ufault_ctx *ctx, void *addr, size_t len,
				  const struct ufault_source *src, unsigned int flags, int mem_fd,
				  uint64_t mem_offset, struct ufault_region **out)
{
	return do_register(ctx, "register_shared", addr, len, src, flags, true, mem_fd, mem_offset,
			   out);
}

int ufault_region_unregister(struct ufault_ctx *ctx, struct ufault_region *region)
{
	struct ufault_region *r;
	struct ufault__mm_held h;
	uint64_t start, end, s2, e2;

	if (!ctx)
		return -EINVAL;
	if (ufault__ctx_forked(ctx, "unregister"))
		return -ECHILD;
	if (!region) {
		ufault__warn(&ctx->log, "unregister: NULL region");
		return -EINVAL;
	}
	/*
	 * The region may be removed between the lookup and the lock: trust
	 * it only if the handle still names it, with the same range, once
	 * the range is locked (no region there can then change).
	 */
	r = ufault__region_from_handle(&ctx->regions, region, &start, &end);
	if (r) {
		ufault__mm_write_lock(&ctx->mm, &h, start, end);
		if (ufault__region_from_handle(&ctx->regions, region, &s2, &e2) == r &&
		    s2 == start && e2 == end) {
			/* A write-back region is flushed first; if that
			 * fails it stays, registered. */
			int ret = ufault__writeback_flush(&ctx->wb, &ctx->regions, start, end,
							  UFAULT__FLUSH_UNMAP);

			if (!ret)
				ufault__region_remove(&ctx->regions, r);
			proxy_unlock(ctx, &h);
			return ret;
		}
		proxy_unlock(ctx, &h);
	}
	ufault__warn(&ctx->log, "unregister: %p is not a live region of this context",
		     (void *)region);
	return -ENOENT;
}

/* --- mmap ------------------------------------------------------------------ */

/* mmap with the kernel choosing the address, aligned to @align. */
static void *map_aligned(void *hint, uint64_t len, uint64_t align, int prot, int flags)
{
	uint64_t extra = align > ufault__sys_page() ? align : 0, p, a;
	void *m;

	if (len + extra < len)
		return map_failed(ENOMEM);
	m = mmap(hint, len + extra, prot, flags, -1, 0);
	if (m == MAP_FAILED || !extra)
		return m;
	p = (uint64_t)(uintptr_t)m;
	a = (p + align - 1) & ~(align - 1);
	if (a > p)
		munmap(m, a - p);
	if (p + extra > a)
		munmap((void *)(uintptr_t)(a + len), p + extra - a);
	return (void *)(uintptr_t)a;
}

/*
 * Add [s, e) on uffd @idx to the replacement's regions; extends the last
 * one when it is contiguous on the same uffd, so a replaced range is one
 * region again whenever its VMAs share a uffd.
 */
static int chain_add(struct ufault_ctx *ctx, struct ufault_region ***tail,
		     struct ufault_region *last, uint64_t start, uint64_t s, uint64_t e,
		     unsigned int idx, struct ufault__source *src, unsigned int region_flags,
		     uint64_t ps)
{
	struct ufault_region *n;

	if ((s - start) % ps || (e - start) % ps)
		return -EINVAL; /* an old boundary would split a new region page */
	if (last && last->uffd_idx == idx && last->node.end == s) {
		last->node.end = e;
		return 0;
	}
	n = ufault__region_new(&ctx->regions, s, e - s, src, src->user.offset + (s - start),
			       region_flags, ps, idx);
	if (!n)
		return -ENOMEM;
	**tail = n;
	*tail = &n->next_victim;
	return 0;
}

/*
 * Map the parts of [start, end) no victim covers, PROT_NONE, and register
 * them. On failure *mapped is where the mapping stopped: what lies past it
 * is not ours (a NOREPLACE mmap that found the range taken).
 */
static int map_gaps(struct ufault_ctx *ctx, struct ufault__cut *c, uint64_t start, uint64_t end,
		    int flags, unsigned int idx, uint64_t *mapped)
{
	struct ufault_region *v = c->victims;
	uint64_t at = start;
	int ret;

	*mapped = start;
	while (at < end) {
		uint64_t gap_end = v ? (v->node.start > start ? v->node.start : start) : end;

		if (gap_end > at) {
			if (mmap((void *)(uintptr_t)at, gap_end - at, PROT_NONE, flags, -1, 0) ==
			    MAP_FAILED)
				return -errno;
			*mapped = gap_end;
			ret = ufault__uffd_register(ctx->uffds[idx], at, gap_end - at,
						    UFFDIO_REGISTER_MODE_MISSING, NULL);
			if (ret)
				return ret;
		}
		if (!v)
			break;
		at = v->node.end < end ? v->node.end : end;
		*mapped = at;
		v = v->next_victim;
	}
	return 0;
}

/* Undo map_gaps up to @mapped: the gaps were holes (NOREPLACE) or foreign
 * mappings that are gone now, as after a failed MAP_FIXED mmap(2). */
static void unmap_gaps(struct ufault__cut *c, uint64_t start, uint64_t mapped)
{
	struct ufault_region *v = c->victims;
	uint64_t at = start;

	while (at < mapped) {
		uint64_t gap_end = v ? (v->node.start > start ? v->node.start : start) : mapped;

		if (gap_end > mapped)
			gap_end = mapped;
		if (gap_end > at)
			munmap((void *)(uintptr_t)at, gap_end - at);
		if (!v)
			break;
		at = v->node.end;
		v = v->next_victim;
	}
}

/* Drop the old regions' pages (kept VMAs get new contents). Locked memory
 * needs MADV_DONTNEED_LOCKED (Linux 5.18); older kernels refuse it with
 * EINVAL, and then plain MADV_DONTNEED is all there is. */
static int drop_pages(struct ufault__cut *c, uint64_t start, uint64_t end)
{
	for (struct ufault_region *v = c->victims; v; v = v->next_victim) {
		uint64_t s = v->node.start > start ? v->node.start : start;
		uint64_t e = v->node.end < end ? v->node.end : end;
		void *p = (void *)(uintptr_t)s;

		if (madvise(p, e - s, MADV_DONTNEED_LOCKED) &&
		    (errno != EINVAL || madvise(p, e - s, MADV_DONTNEED)))
			return -errno;
	}
	return 0;
}

/*
 * MAP_FIXED and MAP_FIXED_NOREPLACE. A new mapping must never be visible
 * unregistered: a thread touching it then would get a kernel zero page
 * that no fill replaces. So the parts that regions cover keep their
 * registered VMAs and only get new contents: old regions detached, pages
 * dropped, new regions indexed on the same uffds; a thread touching them
 * meanwhile parks and is served from the new source once the proxy
 * unlocks. The gaps (holes, foreign mappings) are mapped PROT_NONE,
 * registered, and only then given their protection, so a thread touching
 * them early gets SIGSEGV as before, never zeros.
 *
 * Order: the pages are dropped before the protection changes, so a failure
 * of either leaves the old protection; pages dropped before a failing
 * mprotect are filled again from the old source.
 */
static int map_fixed(struct ufault_ctx *ctx, struct ufault__cut *c, uint64_t start, uint64_t end,
		     int prot, int flags, struct ufault__source *src, unsigned int region_flags,
		     uint64_t ps)
{
	struct ufault_region *v, *chain = NULL, *last = NULL, **tail = &chain;
	uint64_t at = start, mapped;
	unsigned int gap_idx;
	int ret = 0;

	/* Gaps go on the first old region's uffd, so the pieces can merge. */
	gap_idx = c->victims ? c->victims->uffd_idx : ufault__regions_next_uffd(&ctx->regions);
	for (v = c->victims; v && !ret; v = v->next_victim) {
		uint64_t s = v->node.start > start ? v->node.start : start;
		uint64_t e = v->node.end < end ? v->node.end : end;

		if (s > at)
			ret = chain_add(ctx, &tail, last, start, at, s, gap_idx, src, region_flags,
					ps);
		last = tail == &chain
			   ? NULL
			   : ufault__container_of(tail, struct ufault_region, next_victim);
		if (!ret)
			ret = chain_add(ctx, &tail, last, start, s, e, v->uffd_idx, src,
					region_flags, ps);
		last = ufault__container_of(tail, struct ufault_region, next_victim);
		at = e;
	}
	if (!ret && at < end)
		ret = chain_add(ctx, &tail, last, start, at, end, gap_idx, src, region_flags, ps);
	if (ret) {
		ufault__warn(&ctx->log, "mmap: [%#llx, %#llx): %s", (unsigned long long)start,
			     (unsigned long long)end, ufault_strerror(ret));
		ufault__region_free_chain(chain);
		return ret;
	}

	ufault__cut_detach(c);
	ret = map_gaps(ctx, c, start, end, flags, gap_idx, &mapped);
	if (!ret)
		ret = drop_pages(c, start, end);
	if (!ret && mprotect((void *)(uintptr_t)start, end - start, prot))
		ret = -errno;
	if (ret) {
		/* As mmap(2) would fail: no warning (NOREPLACE over a foreign
		 * mapping is a normal EEXIST). */
		ufault__debug(&ctx->log, "mmap: [%#llx, %#llx): %s", (unsigned long long)start,
			      (unsigned long long)end, ufault_strerror(ret));
		unmap_gaps(c, start, mapped);
		ufault__cut_undetach(c);
		ufault__region_free_chain(chain);
		return ret;
	}
	ufault__region_set_fork(&ctx->regions, start, end - start, src, true);
	ufault__cut_swap(&ctx->regions, c, chain);
	discard_victims(c->victims, start, end);
	ufault__cut_finish(c, start, end);
	for (v = chain; v; v = v->next_victim)
		ufault__region_wake(v);
	return 0;
}

static void *mmap_locked(struct ufault_ctx *ctx, void *addr, uint64_t len, int prot, int flags,
			 struct ufault__source *src, unsigned int region_flags, uint64_t ps)
{
	uint64_t start = (uint64_t)(uintptr_t)addr;
	struct ufault__cut c = {0};
	struct ufault__mm_held h;
	void *m;
	int ret;

	if (!(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE))) {
		/* The kernel picks a range nobody else can be using; lock it
		 * only to register it. */
		m = map_aligned(addr, len, ps, prot, flags);
		if (m == MAP_FAILED)
			return m;
		start = (uint64_t)(uintptr_t)m;
		ufault__mm_write_lock(&ctx->mm, &h, start, start + len);
		ret = ufault__region_create(&ctx->regions, start, len, src, region_flags, ps, NULL);
		proxy_unlock(ctx, &h);
		if (ret) {
			munmap(m, len);
			return map_failed(ret);
		}
		return m;
	}

	lock_spans(ctx, &h, start, start + len, 0, 0);
	ret = ufault__regions_foreign(&ctx->regions, start, start + len) ? -EBUSY : 0;
	if (!ret)
		ret = ufault__cut_collect(&ctx->regions, start, start + len, &c);
	if (!ret && (flags & MAP_FIXED_NOREPLACE) && c.victims)
		ret = -EEXIST;
	for (struct ufault_region *v = c.victims; v && !ret; v = v->next_victim) {
		/* Its written pages would be dropped unflushed. */
		if (v->flags & UFAULT_REGION_WRITEBACK) {
			ufault__warn(&ctx->log,
				     "mmap: MAP_FIXED over the write-back region at %#llx: "
				     "unmap it first (that flushes it)",
				     (unsigned long long)v->node.start);
			ret = -EINVAL;
		}
		/* Its VMA maps the memfd: it cannot be kept for anonymous memory. */
		if (v->src->ops->cache_run) {
			ufault__warn(&ctx->log,
				     "mmap: MAP_FIXED over the memfd region at %#llx: "
				     "unmap it first",
				     (unsigned long long)v->node.start);
			ret = -EINVAL;
		}
	}
	if (!ret)
		ret = map_fixed(ctx, &c, start, start + len, prot, flags, src, region_flags, ps);
	if (ret)
		ufault__cut_abort(&c);
	proxy_unlock(ctx, &h);
	return ret ? map_failed(ret) : addr;
}

void *ufault_mmap(struct ufault_ctx *ctx, void *addr, size_t len, int prot, int flags,
		  const struct ufault_source *src, unsigned int region_flags)
{
	const int need = MAP_PRIVATE | MAP_ANONYMOUS;
	const int allowed = need | MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_NORESERVE;
	uint64_t start = (uint64_t)(uintptr_t)addr, ps, rounded;
	struct ufault_source zero;
	struct ufault__source *s;
	void *m;
	int ret;

	if (!ctx)
		return map_failed(EINVAL);
	if (ufault__ctx_forked(ctx, "mmap"))
		return map_failed(ECHILD);
	if (ufault__ctx_local_only(ctx, "mmap"))
		return map_failed(EOPNOTSUPP);
	if ((flags & need) != need || (flags & ~allowed)) {
		ufault__warn(&ctx->log,
			     "mmap: flags %#x: only MAP_PRIVATE|MAP_ANONYMOUS memory, with "
			     "MAP_FIXED, MAP_FIXED_NOREPLACE or MAP_NORESERVE",
			     flags);
		return map_failed(EINVAL);
	}
	if (!len || !ufault__round_up(len, ufault__sys_page(), &rounded)) {
		ufault__warn(&ctx->log, "mmap: length %zu", len);
		return map_failed(EINVAL);
	}
	if (flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)) {
		if (!start || start + rounded < start) {
			ufault__warn(&ctx->log, "mmap: MAP_FIXED at %#llx, +%llu",
				     (unsigned long long)start, (unsigned long long)rounded);
			return map_failed(EINVAL);
		}
	} else {
		start = 0; /* a hint: the region page alignment comes later */
	}
	if (!src) {
		ufault_source_init(&zero, UFAULT_SOURCE_ZERO);
		src = &zero;
	}
	ret = ufault__region_check_args(&ctx->regions, start, rounded, src, region_flags, &ps);
	if (!ret)
		ret = writeback_args(ctx, region_flags, flags);
	if (!ret && src->type == UFAULT_SOURCE_MEMFD) {
		ufault__warn(&ctx->log, "mmap: a memfd source needs the caller's own mapping of "
					"the memfd: map it, then ufault_region_register()");
		ret = -EINVAL;
	}
	if (!ret)
		ret = ufault__source_create(&ctx->regions.source_slab, &ctx->loops, src, &ctx->log,
					    &s);
	if (ret)
		return map_failed(ret);
	m = mmap_locked(ctx, addr, rounded, prot, flags, s, region_flags, ps);
	if (m == MAP_FAILED) {
		ret = errno;
		ufault__source_abandon(s);
		errno = ret;
		return m;
	}
	ufault__source_commit(s);
	proxy_done(ctx);
	return m;
}

/* --- munmap -------------------------------------------------------------- */

int ufault_munmap(struct ufault_ctx *ctx, void *addr, size_t len)
{
	uint64_t start = (uint64_t)(uintptr_t)addr, end;
	struct ufault__mm_held h;
	struct ufault__cut c = {0};
	int ret;

	if (!ctx)
		return fail(EINVAL);
	if (ufault__ctx_forked(ctx, "munmap"))
		return fail(ECHILD);
	if (ufault__ctx_local_only(ctx, "munmap"))
		return fail(EOPNOTSUPP);
	if (!len || page_range(ctx, start, len, &end))
		return fail(EINVAL);
	lock_spans(ctx, &h, start, end, 0, 0);
	ret = ufault__regions_foreign(&ctx->regions, start, end) ? -EBUSY : 0;
	if (ret) {
		ufault__warn(&ctx->log, "munmap: [%#llx, %#llx) holds another context's region",
			     (unsigned long long)start, (unsigned long long)end);
		goto unlock;
	}
	/* Write-back regions are flushed first; if that fails, nothing is
	 * unmapped. */
	ret = ufault__writeback_flush(&ctx->wb, &ctx->regions, start, end, UFAULT__FLUSH_UNMAP);
	if (!ret)
		ret = ufault__cut_collect(&ctx->regions, start, end, &c);
	if (ret)
		goto unlock;
	ufault__cut_detach(&c);
	if (munmap(addr, end - start)) {
		ret = -errno;
		ufault__cut_undetach(&c);
		ufault__cut_abort(&c);
		goto unlock;
	}
	ufault__cut_swap(&ctx->regions, &c, NULL);
	discard_victims(c.victims, start, end);
	ufault__cut_finish(&c, start, end);
unlock:
	proxy_unlock(ctx, &h);
	if (ret)
		return fail(ret);
	proxy_done(ctx);
	return 0;
}

/* --- mremap -------------------------------------------------------------- */

/*
 * mremap(2), announced so that its UFFD_EVENT_REMAP is recognised as ours
 * (remap.h). The event is *read* before the syscall returns; the
 * announcement is withdrawn once the workers have *handled* what they read.
 * A move the kernel would place (MAYMOVE without FIXED) of a region with
 * pages larger than the system page goes to an aligned reservation of ours
 * instead, unless it can grow in place.
 */
static void *proxy_mremap(struct ufault_ctx *ctx, void *old, uint64_t old_len, uint64_t new_len,
			  int flags, void *new_addr, uint64_t ps)
{
	struct ufault__remap a;
	void *res, *dst;
	int err;

	ufault__remap_announce(&ctx->remaps, &a, (uint64_t)(uintptr_t)old,
			       old_len < new_len ? old_len : new_len);
	if ((flags & MREMAP_MAYMOVE) && !(flags & MREMAP_FIXED) && ps > ufault__sys_page()) {
		res = mremap(old, old_len, new_len, 0);
		if (res == MAP_FAILED && errno == ENOMEM) {
			dst = map_aligned(NULL, new_len, ps, PROT_NONE,
					  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE);
			if (dst != MAP_FAILED) {
				res = mremap(old, old_len, new_len, MREMAP_MAYMOVE | MREMAP_FIXED,
					     dst);
				err = errno;
				if (res == MAP_FAILED)
					munmap(dst, new_len);
				errno = err;
			}
		}
	} else {
		res = mremap(old, old_len, new_len, flags, new_addr);
	}
	err = errno;
	if (res != MAP_FAILED && res != old)
		ufault__workers_sync(ctx);
	ufault__remap_withdraw(&ctx->remaps, &a);
	errno = err;
	return res;
}

/* Checks of the region being remapped; under the mm write lock. */
static int mremap_check(struct ufault_ctx *ctx, struct ufault__cut *c, uint64_t old,
			uint64_t old_end, uint64_t new_len, int flags, uint64_t dst)
{
	struct ufault_region *a = c->victims;

	if (!a || a->next_victim || a->node.start > old || a->node.end < old_end ||
	    (old - a->node.start) % a->page_size || (old_end - old) % a->page_size ||
	    new_len % a->page_size ||
	    ufault__region_offset(a, old) + new_len < ufault__region_offset(a, old)) {
		ufault__warn(&ctx->log,
			     "mremap: [%#llx, %#llx) is not whole region pages of one region",
			     (unsigned long long)old, (unsigned long long)old_end);
		return -EINVAL;
	}
	if ((flags & MREMAP_FIXED) && dst % a->page_size) {
		ufault__warn(&ctx->log,
			     "mremap: destination %#llx is not aligned to the region page %llu",
			     (unsigned long long)dst, (unsigned long long)a->page_size);
		return -EINVAL;
	}
	return 0;
}

void *ufault_mremap(struct ufault_ctx *ctx, void *old_addr, size_t old_len, size_t new_len,
		    int flags, void *new_addr)
{
	uint64_t old = (uint64_t)(uintptr_t)old_addr, dst = (uint64_t)(uintptr_t)new_addr;
	uint64_t old_end, new_end, grow_end, dst_end = 0, res_start;
	struct ufault__cut src_cut = {0}, dst_cut = {0};
	struct ufault_region *a, *moved = NULL;
	bool fixed = flags & MREMAP_FIXED;
	struct ufault__mm_held h;
	void *res;
	int ret;

	if (!ctx)
		return map_failed(EINVAL);
	if (ufault__ctx_forked(ctx, "mremap"))
		return map_failed(ECHILD);
	if (ufault__ctx_local_only(ctx, "mremap"))
		return map_failed(EOPNOTSUPP);
	if (!old_len || !new_len || (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED)) ||
	    (fixed && !(flags & MREMAP_MAYMOVE)) || page_range(ctx, old, old_len, &old_end) ||
	    page_range(ctx, old, new_len, &new_end) ||
	    (fixed && page_range(ctx, dst, new_len, &dst_end)))
		return map_failed(EINVAL);
	if ((flags & MREMAP_MAYMOVE) && !(ctx->features & UFFD_FEATURE_EVENT_REMAP)) {
		/* Without it the kernel unregisters the moved range. */
		ufault__warn(&ctx->log, "mremap: moving needs UFFD_FEATURE_EVENT_REMAP");
		return map_failed(EOPNOTSUPP);
	}
	old_len = old_end - old;
	new_len = new_end - old;
	grow_end = old_end > new_end ? old_end : new_end;
	/* mremap(2) refuses a destination overlapping the old range. */
	if (fixed && dst < old_end && old < dst_end)
		return map_failed(EINVAL);
	lock_spans(ctx, &h, old, grow_end, dst, dst_end);

	/* The region loses [old, old_end); keep its outside pieces. */
	ret = ufault__cut_collect(&ctx->regions, old, old_end, &src_cut);
	if (!ret)
		ret = mremap_check(ctx, &src_cut, old, old_end, new_len, flags, dst);
	if (!ret && fixed && ufault__regions_foreign(&ctx->regions, dst, dst_end))
		ret = -EBUSY;
	if (!ret && fixed)
		ret = ufault__cut_collect(&ctx->regions, dst, dst_end, &dst_cut);
	if (ret)
		goto unlock;
	a = src_cut.victims;
	moved = ufault__region_new(&ctx->regions, 0, new_len, a->src, ufault__region_offset(a, old),
				   a->flags, a->page_size, a->uffd_idx);
	if (!moved) {
		ret = -ENOMEM;
		goto unlock;
	}

	ufault__cut_detach(&src_cut);
	ufault__cut_detach(&dst_cut);
	res = proxy_mremap(ctx, old_addr, old_len, new_len, flags, new_addr, a->page_size);
	if (res == MAP_FAILED) {
		ret = -errno;
		ufault__cut_undetach(&src_cut);
		ufault__cut_undetach(&dst_cut);
		goto unlock;
	}
	res_start = (uint64_t)(uintptr_t)res;
	moved->node.start = res_start;
	moved->node.end = res_start + new_len;
	ufault__cut_swap(&ctx->regions, &dst_cut, NULL);
	ufault__cut_swap(&ctx->regions, &src_cut, moved);
	discard_victims(dst_cut.victims, dst, dst_end);
	if (new_len < old_len)
		discard_victims(src_cut.victims, old + new_len, old_end);
	/* In place, a grown VMA keeps its registration; a moved one keeps it
	 * thanks to UFFD_EVENT_REMAP. Nothing to register again. */
	ufault__cut_finish(&dst_cut, dst, dst_end);
	ufault__cut_finish(&src_cut, old, old_end);
	ufault__region_wake(moved);
	proxy_unlock(ctx, &h);
	proxy_done(ctx);
	return res;

unlock:
	ufault__cut_abort(&src_cut);
	ufault__cut_abort(&dst_cut);
	if (moved)
		ufault__region_free_chain(moved);
	proxy_unlock(ctx, &h);
	return map_failed(ret);
}

/* --- mprotect, madvise ------------------------------------------------------ */

/* They change no region: lock the range, make the call. A range that
 * starts or ends inside a region page would split its VMA there, and the
 * page could no longer be installed with one ioctl: refused. @drops: the
 * call drops the range's contents (the sources are told). */
static int locked_call(struct ufault_ctx *ctx, const char *name, void *addr, size_t len, int arg,
		       int (*call)(void *, size_t, int), bool drops)
{
	uint64_t start = (uint64_t)(uintptr_t)addr, end;
	struct ufault__mm_held h;
	int ret;

	if (!ctx)
		return fail(EINVAL);
	if (ufault__ctx_forked(ctx, name))
		return fail(ECHILD);
	if (ufault__ctx_local_only(ctx, name))
		return fail(EOPNOTSUPP);
	if (page_range(ctx, start, len, &end))
		return fail(EINVAL);
	if (end == start)
		return call(addr, len, arg); /* the syscall defines len 0 */
	ufault__mm_write_lock(&ctx->mm, &h, start, end);
	if (ufault__regions_cut_page(&ctx->regions, start, end)) {
		ufault__warn(&ctx->log, "%s: [%#llx, %#llx) would split a region page", name,
			     (unsigned long long)start, (unsigned long long)end);
		errno = EINVAL;
		ret = -1;
	} else {
		ret = call(addr, len, arg);
	}
	ret = ret ? -errno : 0;
	if (!ret && drops)
		discard_indexed(ctx, start, end);
	proxy_unlock(ctx, &h);
	if (ret)
		return fail(ret);
	proxy_done(ctx);
	return 0;
}

int ufault_mprotect(struct ufault_ctx *ctx, void *addr, size_t len, int prot)
{
	return locked_call(ctx, "mprotect", addr, len, prot, mprotect, false);
}

int ufault_madvise(struct ufault_ctx *ctx, void *addr, size_t len, int advice)
{
	bool drops = advice == MADV_DONTNEED || advice == MADV_DONTNEED_LOCKED ||
		     advice == MADV_FREE || advice == MADV_REMOVE;

	return locked_call(ctx, "madvise", addr, len, advice, madvise, drops);
}
