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

/* Swap the victims for their pieces (and @extra, if any) in the index. */
static void cut_commit(struct ufault_ctx *ctx, struct cut *c, struct ufault_region *extra)
{
	for (struct ufault_region *r = c->victims; r; r = r->next_victim)
		ufault__region_detach(r);
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
}

/*
 * Threads parked on the changed range wait on the old regions' uffds and
 * nobody else will wake them (the kernel does not on munmap or mremap
 * without non-cooperative events). Woken, they fault again on whatever is
 * mapped now. Then the old regions are retired.
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

void *ufault_mmap(struct ufault_ctx *ctx, void *addr, size_t len, int prot, int flags,
		  const struct ufault_source *src, unsigned int region_flags)
{
	const struct ufault_source zero = {.type = UFAULT_SOURCE_ZERO};
	const int need = MAP_PRIVATE | MAP_ANONYMOUS;
	const int allowed = need | MAP_FIXED | MAP_FIXED_NOREPLACE | MAP_NORESERVE;
	uint64_t start = (uint64_t)(uintptr_t)addr, ps, end;
	struct ufault_region *r = NULL;
	struct ufault__wlock w;
	struct cut c = {0};
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

	end = start + len;
	if (end < start)
		return map_failed(EINVAL);
	lock_spans(ctx, &w, start, end, 0, 0);
	if (flags & MAP_FIXED_NOREPLACE) {
		m = mmap(addr, len, prot, flags, -1, 0);
		if (m == MAP_FAILED) {
			ret = -errno;
			goto unlock;
		}
		ret = ufault__region_create_locked(ctx, start, len, src, region_flags, ps, NULL);
		if (ret)
			munmap(m, len);
		goto unlock;
	}

	ret = cut_prepare(ctx, start, end, &c);
	if (ret)
		goto unlock;
	m = mmap(addr, len, prot, flags, -1, 0); /* replaces atomically */
	if (m == MAP_FAILED) {
		ret = -errno;
		cut_abort(&c);
		goto unlock;
	}
	cut_commit(ctx, &c, NULL);
	ret = ufault__region_create_locked(ctx, start, len, src, region_flags, ps, &r);
	if (ret) {
		/* The old mapping is already gone, as after a failed
		 * MAP_FIXED mmap(2); leave no unregistered memory behind. */
		munmap(m, len);
	}
	cut_finish(ctx, &c, start, end);
unlock:
	ufault__wunlock(ctx, &w);
	if (ret)
		return map_failed(ret);
	proxy_done(ctx);
	return (void *)(uintptr_t)start;
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
	if (munmap(addr, end - start)) {
		ret = -errno;
		cut_abort(&c);
		goto unlock;
	}
	cut_commit(ctx, &c, NULL);
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
	old_len = round_up(old_len, ctx->sys_page);
	new_len = round_up(new_len, ctx->sys_page);
	old_end = old + old_len;
	grow_end = old + (new_len > old_len ? new_len : old_len);
	if (old_end < old || grow_end < old)
		return map_failed(EINVAL);
	if (fixed) {
		dst_end = dst + new_len;
		if (dst_end < dst || (dst < grow_end && old < dst_end))
			return map_failed(EINVAL); /* the kernel refuses overlap too */
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

	res = mremap(old_addr, old_len, new_len, flags, new_addr);
	if (res == MAP_FAILED) {
		ret = -errno;
		goto unlock;
	}
	res_start = (uint64_t)(uintptr_t)res;
	if (fixed)
		cut_commit(ctx, &dst_cut, NULL);
	ufault__region_init_piece(moved, a, old, old + new_len);
	moved->node.start = res_start;
	moved->node.end = res_start + new_len;
	cut_commit(ctx, &src_cut, moved);
	/* A moved VMA loses its registration; a grown one may have new pages:
	 * (re-)register the result (a no-op where it already is). */
	ret = ufault__uffd_register(ctx->uffds[moved->uffd_idx], res_start, new_len,
				    UFFDIO_REGISTER_MODE_MISSING, NULL);
	if (ret)
		ufault__err(&ctx->log, "mremap: re-registering [%#llx, +%zu): %s",
			    (unsigned long long)res_start, new_len, ufault_strerror(ret));
	cut_finish(ctx, &src_cut, old, old_end);
	if (fixed)
		cut_finish(ctx, &dst_cut, dst, dst_end);
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
