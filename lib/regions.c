// SPDX-License-Identifier: MIT
/*
 * regions.c - region objects (the VMAs of ufault): allocation, argument
 * checks, creation and registration with the kernel, detaching and
 * reclamation, lookups in the address index, and the public register /
 * unregister calls. Regions are immutable once indexed; changing one means
 * detaching it and indexing replacements (see ctx.h).
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctx.h"

struct ufault_region *ufault__region_alloc(struct ufault_ctx *ctx)
{
	struct ufault_region *r = ufault__slab_alloc(&ctx->region_slab);

	if (!r)
		return NULL;
	r->ctx = ctx;
	if (pthread_rwlock_init(&r->lock, NULL)) {
		ufault__slab_free(&ctx->region_slab, r);
		errno = ENOMEM;
		return NULL;
	}
	return r;
}

void ufault__region_free_now(struct ufault_region *r)
{
	struct ufault_ctx *ctx = r->ctx;

	pthread_rwlock_destroy(&r->lock);
	ufault__slab_free(&ctx->region_slab, r);
}

static void region_free_item(struct ufault__qsbr_item *item)
{
	ufault__region_free_now(ufault__container_of(item, struct ufault_region, free_item));
}

void ufault__region_retire(struct ufault_region *r)
{
	struct ufault_ctx *ctx = r->ctx;

	r->free_item.free_fn = region_free_item;
	while (ufault__qsbr_retire(&ctx->qsbr, &r->free_item) < 0) {
		/* Out of memory for bookkeeping: wait for readers instead of
		 * leaking; proxies may block, so this is allowed here. */
		ufault__qsbr_drain(&ctx->qsbr);
	}
	ufault__qsbr_poll(&ctx->qsbr);
}

void ufault__region_detach(struct ufault_region *r)
{
	pthread_rwlock_wrlock(&r->lock);
	__atomic_store_n(&r->detached, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&r->gen, __atomic_load_n(&r->gen, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
	pthread_rwlock_unlock(&r->lock);
}

void ufault__region_undetach(struct ufault_region *r)
{
	pthread_rwlock_wrlock(&r->lock);
	__atomic_store_n(&r->gen, __atomic_load_n(&r->gen, __ATOMIC_RELAXED) + 1, __ATOMIC_RELEASE);
	__atomic_store_n(&r->detached, 0, __ATOMIC_RELEASE);
	pthread_rwlock_unlock(&r->lock);
}

void ufault__region_init_piece(struct ufault_region *piece, const struct ufault_region *r,
			       uint64_t start, uint64_t end)
{
	piece->node.start = start;
	piece->node.end = end;
	piece->src = r->src;
	piece->src.offset = r->src.offset + (start - r->node.start);
	piece->ops = r->ops;
	piece->flags = r->flags;
	piece->uffd_idx = r->uffd_idx;
	piece->page_size = r->page_size;
}

void ufault__region_init_new(struct ufault_ctx *ctx, struct ufault_region *r, uint64_t start,
			     uint64_t len, const struct ufault_source *src, unsigned int flags,
			     uint64_t page_size)
{
	r->node.start = start;
	r->node.end = start + len;
	r->src = *src;
	r->ops = ufault__source_ops(src);
	r->flags = flags;
	r->page_size = page_size;
	/* Spread regions over the uffds, round robin. */
	r->uffd_idx = __atomic_fetch_add(&ctx->next_uffd, 1, __ATOMIC_RELAXED) % ctx->nr_uffds;
}

struct ufault_region *ufault__region_lookup(struct ufault_ctx *ctx, uint64_t addr, bool *retried)
{
	bool dummy;
	struct ufault__index_node *n =
	    ufault__index_lookup_stat(&ctx->index, addr, retried ? retried : &dummy);

	return n ? ufault__container_of(n, struct ufault_region, node) : NULL;
}

struct ufault_region *ufault__region_first_locked(struct ufault_ctx *ctx, uint64_t start,
						  uint64_t end)
{
	struct ufault__index_node *n = ufault__index_first_overlap_locked(&ctx->index, start, end);

	return n ? ufault__container_of(n, struct ufault_region, node) : NULL;
}

struct ufault_region *ufault__region_next_locked(struct ufault_ctx *ctx, struct ufault_region *r,
						 uint64_t end)
{
	struct ufault__index_node *n = ufault__index_next_locked(&ctx->index, &r->node);

	if (!n || n->start >= end)
		return NULL;
	return ufault__container_of(n, struct ufault_region, node);
}

int ufault__region_check_args(struct ufault_ctx *ctx, uint64_t start, uint64_t len,
			      const struct ufault_source *src, unsigned int flags,
			      uint64_t *page_size)
{
	const struct ufault__source_ops *ops;
	unsigned int shift = flags >> UFAULT_REGION_PAGE_SHIFT_BIT;
	uint64_t ps = ctx->sys_page;

	if (!src) {
		ufault__warn(&ctx->log, "register: NULL source");
		return -EINVAL;
	}
	if (flags & ~UFAULT_REGION_FLAGS_MASK) {
		ufault__warn(&ctx->log, "register: unknown flags %#x",
			     flags & ~UFAULT_REGION_FLAGS_MASK);
		return -EINVAL;
	}
	if (shift) {
		if (shift >= 63 || (1ull << shift) < ctx->sys_page ||
		    (1ull << shift) > ctx->max_page_size) {
			ufault__warn(
			    &ctx->log,
			    "register: page shift %u outside [system page, max_page_size %llu]",
			    shift, (unsigned long long)ctx->max_page_size);
			return -EINVAL;
		}
		ps = 1ull << shift;
	}
	if (!len || len % ps) {
		ufault__warn(
		    &ctx->log,
		    "register: length %llu is not a non-zero multiple of the region page %llu",
		    (unsigned long long)len, (unsigned long long)ps);
		return -EINVAL;
	}
	if (start % ps) { /* start 0: not chosen yet (ufault_mmap) */
		ufault__warn(&ctx->log,
			     "register: address %#llx is not aligned to the region page %llu",
			     (unsigned long long)start, (unsigned long long)ps);
		return -EINVAL;
	}
	if (start + len < start) {
		ufault__warn(&ctx->log, "register: range wraps around");
		return -EINVAL;
	}
	if (src->offset + len < src->offset) {
		ufault__warn(&ctx->log, "register: source offset %llu + length %llu wraps around",
			     (unsigned long long)src->offset, (unsigned long long)len);
		return -EINVAL;
	}
	ops = ufault__source_ops(src);
	if (!ops) {
		ufault__warn(&ctx->log, "register: unknown source type %d", (int)src->type);
		return -EINVAL;
	}
	if (ops->validate(src, &ctx->log))
		return -EINVAL;
	if (!(flags & UFAULT_REGION_ON_ERROR_ZERO) && !(ctx->features & UFFD_FEATURE_POISON)) {
		ufault__warn(&ctx->log, "register: SIGBUS error policy needs UFFDIO_POISON, which "
					"this kernel lacks; use UFAULT_REGION_ON_ERROR_ZERO");
		return -EOPNOTSUPP;
	}
	*page_size = ps;
	return 0;
}

/* mincore() fails with ENOMEM when part of the range is not mapped. */
static int range_mapped(struct ufault_ctx *ctx, uint64_t start, uint64_t len)
{
	unsigned char vec[256];
	uint64_t step = sizeof(vec) * ctx->sys_page;

	for (uint64_t off = 0; off < len; off += step) {
		uint64_t n = len - off < step ? len - off : step;

		if (mincore((void *)(uintptr_t)(start + off), n, vec))
			return -errno;
	}
	return 0;
}

void ufault__region_set_fork(struct ufault_ctx *ctx, uint64_t start, uint64_t len,
			     const struct ufault_source *src, bool handled)
{
	int advice = handled && src->type != UFAULT_SOURCE_ZERO ? MADV_DONTFORK : MADV_DOFORK;

	if (madvise((void *)(uintptr_t)start, len, advice))
		ufault__warn(&ctx->log, "madvise(%s) [%#llx, +%llu): %s",
			     advice == MADV_DONTFORK ? "MADV_DONTFORK" : "MADV_DOFORK",
			     (unsigned long long)start, (unsigned long long)len,
			     ufault_strerror(errno));
}

int ufault__region_create_locked(struct ufault_ctx *ctx, uint64_t start, uint64_t len,
				 const struct ufault_source *src, unsigned int flags,
				 uint64_t page_size, struct ufault_region **out)
{
	struct ufault_region *r;
	int ret;

	ret = range_mapped(ctx, start, len);
	if (ret) {
		ufault__warn(&ctx->log, "register: [%#llx, +%llu) is not fully mapped",
			     (unsigned long long)start, (unsigned long long)len);
		return -ENOMEM;
	}
	r = ufault__region_alloc(ctx);
	if (!r)
		return -ENOMEM;
	ufault__region_init_new(ctx, r, start, len, src, flags, page_size);

	pthread_mutex_lock(&ctx->tree_lock);
	r->gen = ++ctx->next_gen;
	ret = ufault__index_insert(&ctx->index, &r->node);
	pthread_mutex_unlock(&ctx->tree_lock);
	if (ret) {
		ufault__warn(&ctx->log, "register: [%#llx, +%llu) overlaps a region",
			     (unsigned long long)start, (unsigned long long)len);
		ufault__region_free_now(r);
		return -EEXIST;
	}

	/* Indexed before registered: the first fault already finds it. */
	ret = ufault__uffd_register(ctx->uffds[r->uffd_idx], start, len,
				    UFFDIO_REGISTER_MODE_MISSING, NULL);
	if (ret) {
		if (ret == -EINVAL)
			ret = -EOPNOTSUPP; /* arguments were checked: the memory type */
		ufault__warn(&ctx->log, "register: UFFDIO_REGISTER [%#llx, +%llu): %s",
			     (unsigned long long)start, (unsigned long long)len,
			     ufault_strerror(ret));
		ufault__region_detach(r);
		pthread_mutex_lock(&ctx->tree_lock);
		ufault__index_remove(&ctx->index, &r->node);
		pthread_mutex_unlock(&ctx->tree_lock);
		ufault__region_retire(r);
		return ret;
	}
	if (src->type != UFAULT_SOURCE_ZERO)
		ufault__region_set_fork(ctx, start, len, src, true);
	if (out)
		*out = r;
	return 0;
}

int ufault_region_register(struct ufault_ctx *ctx, void *addr, size_t len,
			   const struct ufault_source *src, unsigned int flags,
			   struct ufault_region **out)
{
	uint64_t start = (uint64_t)(uintptr_t)addr, ps;
	struct ufault__wlock w;
	int ret;

	if (!ctx)
		return -EINVAL;
	if (!addr) {
		ufault__warn(&ctx->log, "register: NULL address");
		return -EINVAL;
	}
	ret = ufault__region_check_args(ctx, start, len, src, flags, &ps);
	if (ret)
		return ret;
	ufault__wlock(ctx, &w, start, start + len);
	ret = ufault__region_create_locked(ctx, start, len, src, flags, ps, out);
	ufault__wunlock(ctx, &w);
	return ret;
}

/* Unindex @r, tell the kernel (which wakes threads parked on the range) and
 * retire it. The caller holds the write side over its range. */
static void region_remove(struct ufault_ctx *ctx, struct ufault_region *r)
{
	int ret;

	ufault__region_detach(r);
	pthread_mutex_lock(&ctx->tree_lock);
	ufault__index_remove(&ctx->index, &r->node);
	pthread_mutex_unlock(&ctx->tree_lock);
	ret = ufault__uffd_unregister(ctx->uffds[r->uffd_idx], r->node.start,
				      r->node.end - r->node.start);
	if (ret && ufault__uffd_classify(ret) != UFAULT__UFFD_GONE && ret != -ENOMEM)
		ufault__warn(&ctx->log, "UFFDIO_UNREGISTER [%#llx, %#llx): %s",
			     (unsigned long long)r->node.start, (unsigned long long)r->node.end,
			     ufault_strerror(ret));
	/* Ordinary memory again: a child inherits it as usual. */
	if (!ret && r->src.type != UFAULT_SOURCE_ZERO)
		ufault__region_set_fork(ctx, r->node.start, r->node.end - r->node.start, &r->src,
					false);
	ufault__region_retire(r);
}

int ufault_region_unregister(struct ufault_ctx *ctx, struct ufault_region *region)
{
	struct ufault__wlock w;
	uint64_t start, end;
	int ret = 0;

	if (!ctx)
		return -EINVAL;
	if (!region) {
		ufault__warn(&ctx->log, "unregister: NULL region");
		return -EINVAL;
	}
	/*
	 * The handle may be stale (retired, its slot reused): slab memory stays
	 * mapped, so reading it is safe, and it is trusted only if the index
	 * still maps its start to it under the tree lock.
	 */
	if (!ufault__slab_owns(&ctx->region_slab, region)) {
		ufault__warn(&ctx->log, "unregister: %p is not a region of this context",
			     (void *)region);
		return -ENOENT;
	}
	start = __atomic_load_n(&region->node.start, __ATOMIC_ACQUIRE);
	end = __atomic_load_n(&region->node.end, __ATOMIC_ACQUIRE);
	if (start >= end)
		return -ENOENT;
	ufault__wlock(ctx, &w, start, end);
	pthread_mutex_lock(&ctx->tree_lock);
	if (ufault__index_find_locked(&ctx->index, start) != &region->node ||
	    region->node.end != end)
		ret = -ENOENT;
	pthread_mutex_unlock(&ctx->tree_lock);
	if (!ret)
		region_remove(ctx, region);
	else
		ufault__warn(&ctx->log, "unregister: region %p is no longer live", (void *)region);
	ufault__wunlock(ctx, &w);
	return ret;
}

void ufault__regions_teardown(struct ufault_ctx *ctx)
{
	for (;;) {
		struct ufault_region *r;

		pthread_mutex_lock(&ctx->tree_lock);
		r = ufault__region_first_locked(ctx, 0, UINT64_MAX);
		pthread_mutex_unlock(&ctx->tree_lock);
		if (!r)
			break;
		region_remove(ctx, r);
	}
}
