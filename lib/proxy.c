// SPDX-License-Identifier: MIT
/*
 * proxy.c - ufault_mmap / munmap / mremap / mprotect / madvise: the mmap
 * family, done so that regions and mappings never disagree.
 *
 * Each proxy: compute the span of the regions it affects, lock that span
 * (never widening a held range: if the regions changed meanwhile, unlock and
 * retry), prepare every new region object (so nothing but the kernel can
 * fail after the syscall), make the syscall, then commit: detach the old
 * regions under their write locks, swap them for their surviving pieces in
 * the index under the tree lock, wake threads parked on the changed range,
 * and retire the old regions. A failed syscall changes nothing.
 *
 * Return conventions mirror the syscalls: MAP_FAILED or -1 with errno.
 */
#include <errno.h>
#include <sys/mman.h>

#include "ctx.h"

static uint64_t round_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) & ~(a - 1);
}

/* Span of [start, end) widened to the regions it overlaps. */
static void span_of(struct ufault_ctx *ctx, uint64_t start, uint64_t end, uint64_t *s, uint64_t *e)
{
	struct ufault_region *r, *last = NULL;

	*s = start;
	*e = end;
	pthread_mutex_lock(&ctx->tree_lock);
	r = ufault__region_first_locked(ctx, start, end);
	if (r && r->node.start < *s)
		*s = r->node.start;
	for (; r; r = ufault__region_next_locked(ctx, r, end))
		last = r;
	if (last && last->node.end > *e)
		*e = last->node.end;
	pthread_mutex_unlock(&ctx->tree_lock);
}

/* Lock the span of [s1, e1) and, if e2 > s2, of [s2, e2) too. */
static void lock_spans(struct ufault_ctx *ctx, struct ufault__wlock *w, uint64_t s1, uint64_t e1,
		       uint64_t s2, uint64_t e2)
{
	for (;;) {
		uint64_t a1, b1, a2 = 0, b2 = 0, c1, d1, c2 = 0, d2 = 0;

		span_of(ctx, s1, e1, &a1, &b1);
		if (e2 > s2)
			span_of(ctx, s2, e2, &a2, &b2);
		if (e2 > s2)
			ufault__wlock2(ctx, w, a1, b1, a2, b2);
		else
			ufault__wlock(ctx, w, a1, b1);
		span_of(ctx, s1, e1, &c1, &d1);
		if (e2 > s2)
			span_of(ctx, s2, e2, &c2, &d2);
		if (c1 >= a1 && d1 <= b1 && c2 >= a2 && d2 <= b2)
			return;
		ufault__wunlock(ctx, w);
	}
}

/* Regions cut by a change of [start, end): removed, with surviving pieces. */
struct cut {
	struct ufault_region *victims; /* linked through next_victim */
	struct ufault_region *left, *right;
};

static int cut_prepare(struct ufault_ctx *ctx, uint64_t start, uint64_t end, struct cut *c)
{
	struct ufault_region *r, *first = NULL, *last = NULL, **tail = &c->victims;
	int ret = 0;

	c->victims = c->left = c->right = NULL;
	pthread_mutex_lock(&ctx->tree_lock);
	for (r = ufault__region_first_locked(ctx, start, end); r;
	     r = ufault__region_next_locked(ctx, r, end)) {
		if (!first)
			first = r;
		last = r;
		r->next_victim = NULL;
		*tail = r;
		tail = &r->next_victim;
	}
	if (first && first->node.start < start && (start - first->node.start) % first->page_size)
		ret = -EINVAL;
	if (last && last->node.end > end && (end - last->node.start) % last->page_size)
		ret = -EINVAL;
	pthread_mutex_unlock(&ctx->tree_lock);
	if (ret) {
		ufault__warn(&ctx->log, "[%#llx, %#llx) would split a region page",
			     (unsigned long long)start, (unsigned long long)end);
		c->victims = NULL;
		return ret;
	}
	if (first && first->node.start < start) {
		c->left = ufault__region_alloc(ctx);
		if (!c->left)
			goto nomem;
		ufault__region_init_piece(c->left, first, first->node.start, start);
	}
	if (last && last->node.end > end) {
		c->right = ufault__region_alloc(ctx);
		if (!c->right)
			goto nomem;
		ufault__region_init_piece(c->right, last, end, last->node.end);
	}
	return 0;
nomem:
	if (c->left)
		ufault__region_free_now(c->left);
	c->victims = c->left = NULL;
	return -ENOMEM;
}

static void cut_abort(struct cut *c)
{
	if (c->left)
		ufault__region_free_now(c->left);
	if (c->right)
		ufault__region_free_now(c->right);
	c->victims = c->left = c->right = NULL;
}

/*
 * Detach the victims before the syscall: from then on a fault that finds
 * one is deferred until the proxy unlocks, so no fault can fill the changed
 * range from an old source, and none is left to a lookup that finds
 * nothing. If the syscall fails, the victims are undetached.
 */
static void cut_detach(struct cut *c)
{
	for (struct ufault_region *r = c->victims; r; r = r->next_victim)
		ufault__region_detach(r);
}

static void cut_undetach(struct cut *c)
{
	for (struct ufault_region *r = c->victims; r; r = r->next_victim)
		ufault__region_undetach(r);
}

static void insert_locked(struct ufault_ctx *ctx, struct ufault_region *r)
{
	int ret;

	r->gen = ++ctx->next_gen;
	ret = ufault__index_insert(&ctx->index, &r->node);
	if (ret) /* only if memory changed behind ufault's back */
		ufault__err(&ctx->log, "index insert [%#llx, %#llx): %s",
			    (unsigned long long)r->node.start, (unsigned long long)r->node.end,
			    ufault_strerror(ret));
}

/* Swap the (detached) victims for their pieces and @extra in the index. */
static void cut_swap(struct ufault_ctx *ctx, struct cut *c, struct ufault_region *extra)
{
	pthread_mutex_lock(&ctx->tree_lock);
	for (struct ufault_region *r = c->victims; r; r = r->next_victim)
		ufault__index_remove(&ctx->index, &r->node);
	if (c->left)
		insert_locked(ctx, c->left);
	if (c->right)
		insert_locked(ctx, c->right);
	if (extra)
		insert_locked(ctx, extra);
	pthread_mutex_unlock(&ctx->tree_lock);
	c->left = c->right = NULL; /* the index owns them now */
}

/*
 * Threads parked on the changed range wait on the old regions' uffds, and
 * the kernel does not wake them on munmap, mmap or mremap; a fault message
 * for the range that a worker dropped (its lookup found no region while the
 * change was under way) left its thread parked too. Woken, they fault again
 * on whatever is mapped now. Then the old regions are retired.
 */
static void cut_finish(struct ufault_ctx *ctx, struct cut *c, uint64_t start, uint64_t end)
{
	struct ufault_region *r = c->victims, *next;

	for (; r; r = next) {
		uint64_t s = r->node.start > start ? r->node.start : start;
		uint64_t e = r->node.end < end ? r->node.end : end;

		next = r->next_victim;
		ufault__uffd_wake(ctx->uffds[r->uffd_idx], s, e - s);
		ufault__region_retire(r);
	}
	c->victims = NULL;
}

/* The same for faults on a new region's range before it was indexed. */
static void wake_region(struct ufault_ctx *ctx, struct ufault_region *r)
{
	ufault__uffd_wake(ctx->uffds[r->uffd_idx], r->node.start, r->node.end - r->node.start);
}

static void proxy_done(struct ufault_ctx *ctx)
{
	__atomic_fetch_add(&ctx->proxy_ops, 1, __ATOMIC_RELAXED);
}

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

/* mmap with the kernel choosing the address, aligned to @align. */
static void *map_aligned(void *hint, uint64_t len, uint64_t align, int prot, int flags,
			 uint64_t sys_page)
{
	uint64_t extra = align > sys_page ? align : 0, p, a;
	void *m = mmap(hint, len + extra, prot, flags, -1, 0);

	if (m == MAP_FAILED || !extra)
		return m;
	p = (uint64_t)(uintptr_t)m;
	a = round_up(p, align);
	if (a > p)
		munmap(m, a - p);
	if (p + extra > a)
		munmap((void *)(uintptr_t)(a + len), p + extra - a);
	return (void *)(uintptr_t)a;
}

/*
 * mremap(2) of a proxy, announced so its UFFD_EVENT_REMAP is recognised. A
 * move returns once a worker has read the event, possibly before that worker
 * looked the announcement up, so the worker withdraws it; when nothing moved
 * there is no event and the proxy withdraws it.
 */
static void *proxy_mremap(struct ufault_ctx *ctx, void *old, size_t old_len, size_t new_len,
			  int flags, void *new_addr)
{
	void *res;

	ufault__remap_begin(ctx, (uint64_t)(uintptr_t)old, old_len);
	res = mremap(old, old_len, new_len, flags, new_addr);
	if (res == MAP_FAILED || res == old)
		ufault__remap_end(ctx, (uint64_t)(uintptr_t)old, old_len);
	return res;
}

/* Regions made for a replacement, chained through next_victim. */
static void free_chain(struct ufault_region *r)
{
	while (r) {
		struct ufault_region *next = r->next_victim;

		ufault__region_free_now(r);
		r = next;
	}
}

/*
 * Add [s, e) on uffd @idx to the replacement's regions; extends the last
 * one when it is contiguous on the same uffd, so a replaced range is one
 * region again whenever its VMAs share a uffd.
 */
static int chain_add(struct ufault_ctx *ctx, struct ufault_region ***tail,
		     struct ufault_region *last, uint64_t start, uint64_t s, uint64_t e,
		     unsigned int idx, const struct ufault_source *src, unsigned int region_flags,
		     uint64_t ps)
{
	struct ufault_source piece_src = *src;
	struct ufault_region *n;

	if ((s - start) % ps || (e - start) % ps)
		return -EINVAL; /* an old boundary would split a new region page */
	if (last && last->uffd_idx == idx && last->node.end == s) {
		last->node.end = e;
		return 0;
	}
	n = ufault__region_alloc(ctx);
	if (!n)
		return -ENOMEM;
	piece_src.offset = src->offset + (s - start);
	ufault__region_init_new(ctx, n, s, e - s, &piece_src, region_flags, ps);
	n->uffd_idx = idx;
	**tail = n;
	*tail = &n->next_victim;
	return 0;
}

/*
 * Map the parts of [start, end) no victim covers, PROT_NONE, and register
 * them. On failure *mapped is where the mapping stopped: what lies past it
 * is not ours (a NOREPLACE mmap that found the range taken).
 */
static int map_gaps(struct ufault_ctx *ctx, struct cut *c, uint64_t start, uint64_t end, int flags,
		    unsigned int idx, uint64_t *mapped)
{
	struct ufault_region *v = c->victims;
	uint64_t at = start;

	*mapped = start;
	while (at < end) {
		uint64_t gap_end = v ? (v->node.start > start ? v->node.start : start) : end;

		if (gap_end > at) {
			if (mmap((void *)(uintptr_t)at, gap_end - at, PROT_NONE, flags, -1, 0) ==
			    MAP_FAILED)
				return -errno;
			*mapped = gap_end;
			int ret = ufault__uffd_register(ctx->uffds[idx], at, gap_end - at,
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
static void unmap_gaps(struct cut *c, uint64_t start, uint64_t mapped)
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

/*
 * MAP_FIXED and MAP_FIXED_NOREPLACE. A new mapping must never be visible
 * unregistered: a thread touching it then would get a kernel zero page
 * that no fill replaces. So the parts that regions cover keep their
 * registered VMAs and only get new contents: old regions detached, pages
 * dropped (MADV_DONTNEED), new regions indexed on the same uffds; a thread
 * touching them meanwhile parks and is served from the new source once the
 * proxy unlocks. The gaps (holes, foreign mappings) are mapped PROT_NONE,
 * registered, and only then given their protection, so a thread touching
 * them early gets SIGSEGV as before, never zeros.
 */
static int map_fixed(struct ufault_ctx *ctx, struct cut *c, uint64_t start, uint64_t end, int prot,
		     int flags, const struct ufault_source *src, unsigned int region_flags,
		     uint64_t ps)
{
	struct ufault_region *v, *chain = NULL, *last = NULL, **tail = &chain;
	void *addr = (void *)(uintptr_t)start;
	uint64_t at = start, mapped;
	unsigned int gap_idx;
	int ret = 0;

	/* Gaps go on the first old region's uffd, so the pieces can merge. */
	gap_idx = c->victims
		      ? c->victims->uffd_idx
		      : __atomic_fetch_add(&ctx->next_uffd, 1, __ATOMIC_RELAXED) % ctx->nr_uffds;
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
		free_chain(chain);
		return ret;
	}

	cut_detach(c);
	ret = map_gaps(ctx, c, start, end, flags, gap_idx, &mapped);
	if (!ret && mprotect(addr, end - start, prot))
		ret = -errno;
	if (!ret && madvise(addr, end - start, MADV_DONTNEED))
		ret = -errno;
	if (!ret)
		ufault__region_set_fork(ctx, start, end - start, src, true);
	if (ret) {
		unmap_gaps(c, start, mapped);
		cut_undetach(c);
		free_chain(chain);
		return ret;
	}
	cut_swap(ctx, c, NULL);
	pthread_mutex_lock(&ctx->tree_lock);
	for (v = chain; v; v = v->next_victim)
		insert_locked(ctx, v);
	pthread_mutex_unlock(&ctx->tree_lock);
	cut_finish(ctx, c, start, end);
	for (v = chain; v; v = v->next_victim)
		wake_region(ctx, v);
	return 0;
}

void *ufault_mmap(struct ufault_ctx *ctx, void *addr, size_t len, int prot, int flags,
		  const struct ufault_source *src, unsigned int region_flags)
{
	const struct ufault_source zero = {.type = UFAULT_SOURCE_ZERO};
	const int need = MAP_PRIVATE | MAP_ANONYMOUS;
	const int allowed = need | MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_NORESERVE;
	uint64_t start = (uint64_t)(uintptr_t)addr, ps;
	struct ufault__wlock w;
	struct cut c;
	void *m;
	int ret;

	if (!ctx)
		return map_failed(EINVAL);
	if ((flags & need) != need || (flags & ~allowed)) {
		ufault__warn(&ctx->log,
			     "mmap: flags %#x: only MAP_PRIVATE|MAP_ANONYMOUS memory, with "
			     "MAP_FIXED, MAP_FIXED_NOREPLACE or MAP_NORESERVE",
			     flags);
		return map_failed(EINVAL);
	}
	if (!len)
		return map_failed(EINVAL);
	len = round_up(len, ctx->sys_page);
	if (!src)
		src = &zero;
	if (!(flags & (MAP_FIXED | MAP_FIXED_NOREPLACE)))
		start = 0;
	ret = ufault__region_check_args(ctx, start, len, src, region_flags, &ps);
	if (ret)
		return map_failed(ret);

	if (!start) {
		/* The kernel picks a range nobody else can be using; lock it
		 * only to register it. */
		m = map_aligned(addr, len, ps, prot, flags, ctx->sys_page);
		if (m == MAP_FAILED)
			return m;
		start = (uint64_t)(uintptr_t)m;
		ufault__wlock(ctx, &w, start, start + len);
		ret = ufault__region_create_locked(ctx, start, len, src, region_flags, ps, NULL);
		ufault__wunlock(ctx, &w);
		if (ret) {
			munmap(m, len);
			return map_failed(ret);
		}
		proxy_done(ctx);
		return m;
	}

	if (start + len < start)
		return map_failed(EINVAL);
	lock_spans(ctx, &w, start, start + len, 0, 0);
	ret = cut_prepare(ctx, start, start + len, &c);
	if (!ret && (flags & MAP_FIXED_NOREPLACE) && c.victims)
		ret = -EEXIST;
	if (!ret)
		ret = map_fixed(ctx, &c, start, start + len, prot, flags, src, region_flags, ps);
	if (ret)
		cut_abort(&c);
	ufault__wunlock(ctx, &w);
	if (ret)
		return map_failed(ret);
	proxy_done(ctx);
	return addr;
}

int ufault_munmap(struct ufault_ctx *ctx, void *addr, size_t len)
{
	uint64_t start = (uint64_t)(uintptr_t)addr, end;
	struct ufault__wlock w;
	struct cut c;
	int ret;

	if (!ctx || !len || start % (ctx ? ctx->sys_page : 1))
		return fail(EINVAL);
	end = start + round_up(len, ctx->sys_page);
	if (end < start)
		return fail(EINVAL);
	lock_spans(ctx, &w, start, end, 0, 0);
	ret = cut_prepare(ctx, start, end, &c);
	if (ret)
		goto unlock;
	cut_detach(&c);
	if (munmap(addr, end - start)) {
		ret = -errno;
		cut_undetach(&c);
		cut_abort(&c);
		goto unlock;
	}
	cut_swap(ctx, &c, NULL);
	cut_finish(ctx, &c, start, end);
unlock:
	ufault__wunlock(ctx, &w);
	if (ret)
		return fail(ret);
	proxy_done(ctx);
	return 0;
}

void *ufault_mremap(struct ufault_ctx *ctx, void *old_addr, size_t old_len, size_t new_len,
		    int flags, void *new_addr)
{
	uint64_t old = (uint64_t)(uintptr_t)old_addr, dst = (uint64_t)(uintptr_t)new_addr;
	uint64_t old_end, grow_end, dst_end = 0, res_start;
	struct ufault_region *a, *moved = NULL;
	struct cut src_cut = {0}, dst_cut = {0};
	struct ufault__wlock w;
	bool fixed = flags & MREMAP_FIXED;
	void *res;
	int ret = 0;

	if (!ctx || !old_len || !new_len || old % ctx->sys_page ||
	    (flags & ~(MREMAP_MAYMOVE | MREMAP_FIXED)) || (fixed && !(flags & MREMAP_MAYMOVE)) ||
	    (fixed && dst % ctx->sys_page))
		return map_failed(EINVAL);
	if ((flags & MREMAP_MAYMOVE) && !(ctx->features & UFFD_FEATURE_EVENT_REMAP)) {
		/* Without it the kernel unregisters the moved range. */
		ufault__warn(&ctx->log, "mremap: moving needs UFFD_FEATURE_EVENT_REMAP");
		return map_failed(EOPNOTSUPP);
	}
	old_len = round_up(old_len, ctx->sys_page);
	new_len = round_up(new_len, ctx->sys_page);
	old_end = old + old_len;
	grow_end = old + (new_len > old_len ? new_len : old_len);
	if (old_end < old || grow_end < old)
		return map_failed(EINVAL);
	if (fixed) {
		dst_end = dst + new_len;
		/* mremap(2) refuses a destination overlapping the old range. */
		if (dst_end < dst || (dst < old_end && old < dst_end))
			return map_failed(EINVAL);
	}
	lock_spans(ctx, &w, old, grow_end, dst, dst_end);

	pthread_mutex_lock(&ctx->tree_lock);
	a = ufault__region_first_locked(ctx, old, old_end);
	if (!a ||
	    (a->node.start > old || a->node.end < old_end || (old - a->node.start) % a->page_size ||
	     old_len % a->page_size || new_len % a->page_size ||
	     a->src.offset + (old - a->node.start) + new_len < a->src.offset))
		ret = -EINVAL;
	pthread_mutex_unlock(&ctx->tree_lock);
	if (ret) {
		ufault__warn(&ctx->log,
			     "mremap: [%#llx, +%zu) is not whole region pages of one region",
			     (unsigned long long)old, old_len);
		goto unlock;
	}
	/* The region loses [old, old_end); keep its outside pieces. */
	ret = cut_prepare(ctx, old, old_end, &src_cut);
	if (ret)
		goto unlock;
	moved = ufault__region_alloc(ctx);
	if (!moved) {
		ret = -ENOMEM;
		goto unlock;
	}
	if (fixed) {
		ret = cut_prepare(ctx, dst, dst_end, &dst_cut);
		if (ret)
			goto unlock;
	}

	cut_detach(&src_cut);
	cut_detach(&dst_cut);
	res = proxy_mremap(ctx, old_addr, old_len, new_len, flags, new_addr);
	if (res == MAP_FAILED) {
		ret = -errno;
		cut_undetach(&src_cut);
		cut_undetach(&dst_cut);
		goto unlock;
	}
	res_start = (uint64_t)(uintptr_t)res;
	ufault__region_init_piece(moved, a, old, old + new_len);
	moved->node.start = res_start;
	moved->node.end = res_start + new_len;
	cut_swap(ctx, &dst_cut, NULL);
	cut_swap(ctx, &src_cut, moved);
	/* In place, a grown VMA keeps its registration; a moved one keeps it
	 * thanks to UFFD_EVENT_REMAP. Nothing to register again. */
	cut_finish(ctx, &dst_cut, dst, dst_end);
	cut_finish(ctx, &src_cut, old, old_end);
	wake_region(ctx, moved);
	ufault__wunlock(ctx, &w);
	proxy_done(ctx);
	return res;

unlock:
	cut_abort(&src_cut);
	cut_abort(&dst_cut);
	if (moved)
		ufault__region_free_now(moved);
	ufault__wunlock(ctx, &w);
	return map_failed(ret);
}

/* mprotect and madvise change no region: lock the range, make the call. */
static int locked_call(struct ufault_ctx *ctx, void *addr, size_t len, int arg,
		       int (*call)(void *, size_t, int))
{
	uint64_t start = (uint64_t)(uintptr_t)addr;
	struct ufault__wlock w;
	int ret;

	if (!ctx || start % ctx->sys_page)
		return fail(EINVAL);
	if (!len)
		return call(addr, len, arg); /* the syscall defines len 0 */
	if (start + round_up(len, ctx->sys_page) < start)
		return fail(EINVAL);
	ufault__wlock(ctx, &w, start, start + round_up(len, ctx->sys_page));
	ret = call(addr, len, arg);
	ufault__wunlock(ctx, &w);
	if (!ret)
		proxy_done(ctx);
	return ret;
}

int ufault_mprotect(struct ufault_ctx *ctx, void *addr, size_t len, int prot)
{
	return locked_call(ctx, addr, len, prot, mprotect);
}

int ufault_madvise(struct ufault_ctx *ctx, void *addr, size_t len, int advice)
{
	return locked_call(ctx, addr, len, advice, madvise);
}
