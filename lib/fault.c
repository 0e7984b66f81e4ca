// SPDX-License-Identifier: MIT
/*
 * fault.c - the fault path for every lock mode (DESIGN.md, "The fault path").
 *
 *   global: the global rwlock read-held across lookup, fill and install.
 *   range:  the faulting page read-locked in the range lock across all three.
 *   region: lockless lookup, then the region's read lock across fill+install.
 *   spec:   lockless lookup, fill with no lock, then region read *trylock*,
 *           validate (not detached, same generation), install, unlock.
 *
 * Holding the region read lock across the install ioctl is what stops the
 * ABA bug: a proxy detaches a region under its write lock before it unmaps
 * or replaces the memory, so an install that validated an old region ends
 * before the replacement can be registered.
 *
 * Touches: the index (lockless), region locks, the worker's own stats and
 * bounce buffer. Nothing shared is written here.
 */
#include <errno.h>

#include "fault.h"

/* Outcome of a source fill, kept until install time. */
struct fill {
	int ret; /* 0: copy @data, UFAULT__FILL_ZERO, or -errno */
	const void *data;
};

static void fill_page(struct ufault__worker *w, struct ufault_region *r, uint64_t page,
		      uint64_t len, struct fill *f)
{
	uint64_t off = r->src.offset + (page - r->node.start);

	f->data = NULL;
	f->ret = r->ops->fill(&r->src, off, len, w->buf, &f->data);
}

static void log_source_error(struct ufault__worker *w, struct ufault_region *r, uint64_t page,
			     int err)
{
	/* A failing source can fail every page: log the first few loudly,
	 * then only count (the counters stay exact). */
	if (w->log_budget) {
		w->log_budget--;
		ufault__err(&w->ctx->log,
			    "%s source failed at %#llx (source offset %llu): %s; %s%s",
			    r->ops->name, (unsigned long long)page,
			    (unsigned long long)(r->src.offset + (page - r->node.start)),
			    ufault_strerror(err),
			    (r->flags & UFAULT_REGION_ON_ERROR_ZERO) ? "zero-filling"
								     : "poisoning (SIGBUS)",
			    w->log_budget ? "" : " (further source errors are only counted)");
	}
}

/* The region's error policy: poison (SIGBUS on access) or zeros. */
static int apply_error_policy(struct ufault__worker *w, struct ufault_region *r, int fd,
			      uint64_t page, uint64_t len, uint64_t *done)
{
	struct ufault_ctx *ctx = w->ctx;
	int ret;

	if (r->flags & UFAULT_REGION_ON_ERROR_ZERO) {
		ret = ufault__uffd_zeropage(fd, page, len, true, done);
		if (!ret)
			ufault__stat_add(&w->stats, UFAULT__STAT_ZERO_FILLED,
					 *done / ctx->sys_page);
	} else {
		ret = ufault__uffd_poison(fd, page, len, true, done);
		if (!ret)
			ufault__stat_add(&w->stats, UFAULT__STAT_POISONED, *done / ctx->sys_page);
	}
	return ret;
}

/* Install the filled page. The caller holds whatever its mode requires. */
static enum ufault__fault_result install(struct ufault__worker *w, struct ufault_region *r,
					 uint64_t page, uint64_t len, const struct fill *f,
					 unsigned int flags)
{
	struct ufault_ctx *ctx = w->ctx;
	int fd = ctx->uffds[r->uffd_idx];
	uint64_t done = 0;
	int ret;

	if (f->ret < 0) {
		ufault__stat_add(&w->stats, UFAULT__STAT_SOURCE_ERRORS, 1);
		log_source_error(w, r, page, f->ret);
		ret = apply_error_policy(w, r, fd, page, len, &done);
	} else if (f->ret == UFAULT__FILL_ZERO && (flags & UFAULT__FAULT_WRITE)) {
		/* As the kernel's do_anonymous_page: a write gets its own
		 * zeroed page at once; the shared zero page would cost a
		 * second (copy-on-write) fault right after this one. */
		ret = ufault__uffd_copy(fd, page, ctx->zero_buf, len, true, &done);
	} else if (f->ret == UFAULT__FILL_ZERO) {
		ret = ufault__uffd_zeropage(fd, page, len, true, &done);
	} else {
		ret = ufault__uffd_copy(fd, page, f->data, len, true, &done);
	}
	if (f->ret >= 0)
		ufault__stat_add(&w->stats, UFAULT__STAT_PAGES, done / ctx->sys_page);

	switch (ufault__uffd_classify(ret)) {
	case UFAULT__UFFD_OK:
	case UFAULT__UFFD_GONE: /* unregistered or unmapped: nobody waits */
		return UFAULT__FAULT_DONE;
	case UFAULT__UFFD_RESOLVED:
		/* Someone else installed (part of) it; make sure the thread
		 * parked on it does not wait for a wake-up that went elsewhere. */
		ufault__stat_add(&w->stats, UFAULT__STAT_EEXIST, 1);
		ufault__uffd_wake(fd, page, len);
		return UFAULT__FAULT_DONE;
	case UFAULT__UFFD_LATER:
		return UFAULT__FAULT_DEFER;
	case UFAULT__UFFD_FATAL:
		break;
	}
	ufault__err(&ctx->log, "installing [%#llx, +%llu): %s", (unsigned long long)page,
		    (unsigned long long)len, ufault_strerror(ret));
	/* Never leave the thread parked: apply the error policy, and if even
	 * that fails, wake it so it faults again rather than hang. */
	if (f->ret >= 0) {
		ufault__stat_add(&w->stats, UFAULT__STAT_SOURCE_ERRORS, 1);
		ret = apply_error_policy(w, r, fd, page, len, &done);
		if (ufault__uffd_classify(ret) != UFAULT__UFFD_FATAL)
			return ret == -EAGAIN ? UFAULT__FAULT_DEFER : UFAULT__FAULT_DONE;
	}
	ufault__uffd_wake(fd, page, len);
	return UFAULT__FAULT_DONE;
}

static inline uint64_t page_of(const struct ufault_region *r, uint64_t addr)
{
	return addr & ~(r->page_size - 1);
}

/*
 * A lockless miss may be a proxy halfway through replacing regions (remove
 * old, insert new). Confirm under the tree lock, which proxies hold for the
 * whole replacement and never across a blocking call.
 */
static struct ufault_region *lookup(struct ufault__worker *w, uint64_t addr, bool *retried)
{
	struct ufault_ctx *ctx = w->ctx;
	struct ufault_region *r = ufault__region_lookup(ctx, addr, retried);
	struct ufault__index_node *n;

	if (r)
		return r;
	pthread_mutex_lock(&ctx->tree_lock);
	n = ufault__index_find_locked(&ctx->index, addr);
	pthread_mutex_unlock(&ctx->tree_lock);
	return n ? ufault__container_of(n, struct ufault_region, node) : NULL;
}

/* Lookup, fill and install with the caller's lock mode already held. */
static enum ufault__fault_result resolve_locked(struct ufault__worker *w, uint64_t addr,
						unsigned int flags)
{
	struct ufault_region *r = lookup(w, addr, NULL);
	struct fill f;
	uint64_t page;

	if (!r)
		return UFAULT__FAULT_DONE; /* removed; its remover woke the thread */
	page = page_of(r, addr);
	fill_page(w, r, page, r->page_size, &f);
	return install(w, r, page, r->page_size, &f, flags);
}

static inline int region_gone(struct ufault_region *r)
{
	return __atomic_load_n(&r->detached, __ATOMIC_ACQUIRE);
}

static void spec_abort(struct ufault__worker *w, enum ufault_spec_abort why)
{
	ufault__stat_add(&w->stats, UFAULT__STAT_SPEC_ABORT + why, 1);
}

/*
 * A detached region is being replaced by a proxy that has not finished:
 * set the fault aside (its worker is poked when the proxy unlocks) rather
 * than spin on the lookup.
 */
static enum ufault__fault_result resolve_region(struct ufault__worker *w, uint64_t addr,
						unsigned int flags)
{
	struct ufault_region *r = lookup(w, addr, NULL);
	enum ufault__fault_result res = UFAULT__FAULT_DEFER;
	struct fill f;
	uint64_t page;

	if (!r)
		return UFAULT__FAULT_DONE;
	pthread_rwlock_rdlock(&r->lock);
	if (!region_gone(r)) {
		page = page_of(r, addr);
		fill_page(w, r, page, r->page_size, &f);
		res = install(w, r, page, r->page_size, &f, flags);
	}
	pthread_rwlock_unlock(&r->lock);
	return res;
}

static bool resolve_spec(struct ufault__worker *w, uint64_t addr, unsigned int flags,
			 enum ufault__fault_result *res)
{
	bool retried = false;
	struct ufault_region *r = lookup(w, addr, &retried);
	struct fill f;
	uint64_t page, gen;

	if (retried)
		spec_abort(w, UFAULT_SPEC_ABORT_SEQ);
	if (!r) {
		*res = UFAULT__FAULT_DONE;
		return true;
	}
	gen = __atomic_load_n(&r->gen, __ATOMIC_ACQUIRE);
	if (region_gone(r)) {
		spec_abort(w, UFAULT_SPEC_ABORT_DETACHED);
		*res = UFAULT__FAULT_DEFER;
		return true;
	}
	page = page_of(r, addr);
	fill_page(w, r, page, r->page_size, &f); /* no lock held: may be slow */

	if (pthread_rwlock_tryrdlock(&r->lock)) {
		/* A proxy holds the write lock only to mark the region
		 * detached, never across a syscall: waiting is short. */
		spec_abort(w, UFAULT_SPEC_ABORT_TRYLOCK);
		pthread_rwlock_rdlock(&r->lock);
	}
	if (region_gone(r)) {
		pthread_rwlock_unlock(&r->lock);
		spec_abort(w, UFAULT_SPEC_ABORT_DETACHED);
		*res = UFAULT__FAULT_DEFER;
		return true;
	}
	if (__atomic_load_n(&r->gen, __ATOMIC_ACQUIRE) != gen) {
		pthread_rwlock_unlock(&r->lock);
		spec_abort(w, UFAULT_SPEC_ABORT_GEN);
		return false;
	}
	*res = install(w, r, page, r->page_size, &f, flags);
	pthread_rwlock_unlock(&r->lock);
	return true;
}

enum ufault__fault_result ufault__fault_resolve(struct ufault__worker *w, uint64_t addr,
						unsigned int flags)
{
	struct ufault_ctx *ctx = w->ctx;
	enum ufault__fault_result res = UFAULT__FAULT_DONE;
	struct ufault_range range;

	switch (ctx->mode) {
	/*
	 * global and range: a proxy holds the write side across its syscall,
	 * and with UFFD_EVENT_REMAP that syscall waits for a worker to read
	 * the event. So a worker never waits for the write side: it defers
	 * the fault, and the proxy pokes it when it unlocks.
	 */
	case UFAULT_LOCK_GLOBAL:
		if (pthread_rwlock_tryrdlock(&ctx->global))
			return UFAULT__FAULT_DEFER;
		res = resolve_locked(w, addr, flags);
		pthread_rwlock_unlock(&ctx->global);
		return res;
	case UFAULT_LOCK_RANGE: {
		/* Proxies lock whole region pages, so locking the faulting
		 * system page conflicts with every proxy that affects it. */
		uint64_t p = addr & ~(ctx->sys_page - 1);

		if (!ufault_range_read_trylock(&ctx->range, &range, p, p + ctx->sys_page))
			return UFAULT__FAULT_DEFER;
		res = resolve_locked(w, addr, flags);
		ufault_range_read_unlock(&ctx->range, &range);
		return res;
	}
	case UFAULT_LOCK_REGION:
		return resolve_region(w, addr, flags);
	default:
		while (!resolve_spec(w, addr, flags, &res))
			ufault__stat_add(&w->stats, UFAULT__STAT_RETRIES, 1);
		return res;
	}
}
