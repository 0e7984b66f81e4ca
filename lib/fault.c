// SPDX-License-Identifier: MIT
/*
 * fault.c - the fault path for every lock mode (DESIGN.md, "The fault
 * path"), driven by the mode's row (mmlock.h):
 *
 *   1. read-trylock the mm lock if the mode's faults hold it (global: the
 *      global rwlock; range: the faulting page in the range lock); busy:
 *      defer, never wait;
 *   2. look the region up (lockless);
 *   3. region mode: read-lock the region across fill and install;
 *      spec mode: fill with no lock, then region read *trylock*, validate
 *      (not detached, same generation), install;
 *   4. install with one ioctl; a "gone" result wakes the faulting thread.
 *
 * Holding the region read lock across the install ioctl is what stops the
 * ABA bug: a proxy detaches a region under its write lock before it unmaps
 * or replaces the memory, so an install that validated an old region ends
 * before the replacement can be registered.
 *
 * Touches: the index (lockless), region locks, the mm lock (trylock only),
 * the worker's own stats and bounce buffer. Nothing shared is written here.
 */
#include <errno.h>

#include "fault.h"

/* Outcome of a source fill, kept until install time. */
struct fill {
	int ret; /* 0: copy @data, UFAULT__FILL_ZERO, or -errno */
	const void *data;
};

static void fill_page(struct ufault__fault_env *env, struct ufault_region *r, uint64_t page,
		      struct fill *f)
{
	f->data = NULL;
	f->ret = r->src->ops->fill(&r->src->user, ufault__region_offset(r, page), r->page_size,
				   env->buf, &f->data);
}

static void log_source_error(struct ufault__fault_env *env, struct ufault_region *r, uint64_t page,
			     int err)
{
	/* A failing source can fail every page: log the first few loudly,
	 * then only count (the counters stay exact). */
	if (env->log_budget) {
		env->log_budget--;
		ufault__err(
		    &env->ctx->log, "%s source failed at %#llx (source offset %llu): %s; %s%s",
		    r->src->ops->name, (unsigned long long)page,
		    (unsigned long long)ufault__region_offset(r, page), ufault_strerror(err),
		    (r->flags & UFAULT_REGION_ON_ERROR_ZERO) ? "zero-filling"
							     : "poisoning (SIGBUS)",
		    env->log_budget ? "" : " (further source errors are only counted)");
	}
}

/* The region's error policy: poison (SIGBUS on access) or zeros. */
static int apply_error_policy(struct ufault__fault_env *env, struct ufault_region *r, int fd,
			      uint64_t page, uint64_t len, uint64_t *done)
{
	int ret;

	if (r->flags & UFAULT_REGION_ON_ERROR_ZERO) {
		ret = ufault__uffd_zeropage(fd, page, len, true, done);
		if (!ret)
			ufault__stat_add(&env->stats, UFAULT__STAT_ZERO_FILLED,
					 *done / ufault__sys_page());
	} else {
		ret = ufault__uffd_poison(fd, page, len, true, done);
		if (!ret)
			ufault__stat_add(&env->stats, UFAULT__STAT_POISONED,
					 *done / ufault__sys_page());
	}
	return ret;
}

/* One ioctl: [page, page + len) from the fill (@skip bytes into it). */
static int install_range(struct ufault__fault_env *env, struct ufault_region *r, int fd,
			 uint64_t page, uint64_t len, uint64_t skip, const struct fill *f,
			 unsigned int flags)
{
	uint64_t done = 0;
	int ret;

	if (f->ret < 0) {
		ret = apply_error_policy(env, r, fd, page, len, &done);
	} else if (f->ret == UFAULT__FILL_ZERO && (flags & UFAULT__FAULT_WRITE)) {
		/* As the kernel's do_anonymous_page: a write gets its own
		 * zeroed page at once; the shared zero page would cost a
		 * second (copy-on-write) fault right after this one. */
		ret = ufault__uffd_copy(fd, page, env->ctx->zero_buf, len, true, &done);
	} else if (f->ret == UFAULT__FILL_ZERO) {
		ret = ufault__uffd_zeropage(fd, page, len, true, &done);
	} else {
		ret = ufault__uffd_copy(fd, page, (const char *)f->data + skip, len, true, &done);
	}
	if (f->ret >= 0)
		ufault__stat_add(&env->stats, UFAULT__STAT_PAGES, done / ufault__sys_page());
	return ret;
}

/*
 * Install the filled page. The caller holds whatever its mode requires.
 * Whatever happens, the faulting thread is not left parked: it is served,
 * or woken to fault again, or the fault is deferred (and retried).
 */
static enum ufault__fault_result install(struct ufault__fault_env *env, struct ufault_region *r,
					 uint64_t addr, uint64_t page, const struct fill *f,
					 unsigned int flags)
{
	struct ufault_ctx *ctx = env->ctx;
	int fd = ufault__region_uffd(r);
	uint64_t len = r->page_size, sys = ufault__sys_page(), done;
	int ret;

	if (f->ret < 0) {
		ufault__stat_add(&env->stats, UFAULT__STAT_SOURCE_ERRORS, 1);
		log_source_error(env, r, page, f->ret);
	}
	ret = install_range(env, r, fd, page, len, 0, f, flags);
	if (ufault__uffd_classify(ret) == UFAULT__UFFD_NOVMA && len > sys) {
		/*
		 * The region page is not inside one VMA any more: mprotect(2),
		 * madvise(2) or munmap(2) cut it behind ufault's back. The
		 * faulting system page is in one VMA if it is still mapped:
		 * install just that one.
		 */
		ret = install_range(env, r, fd, addr, sys, addr - page, f, flags);
	}
	switch (ufault__uffd_classify(ret)) {
	case UFAULT__UFFD_OK:
		return UFAULT__FAULT_DONE;
	case UFAULT__UFFD_RESOLVED:
		/* Someone else installed (part of) it; make sure the thread
		 * parked on it does not wait for a wake-up that went elsewhere. */
		ufault__stat_add(&env->stats, UFAULT__STAT_EEXIST, 1);
		ufault__uffd_wake(fd, page, len);
		return UFAULT__FAULT_DONE;
	case UFAULT__UFFD_LATER:
		return UFAULT__FAULT_DEFER;
	case UFAULT__UFFD_NOVMA:
	case UFAULT__UFFD_GONE:
		/* Unmapped (or the mm is exiting) while the thread is still
		 * parked: wake it; it faults again on whatever is there now
		 * (SIGSEGV for a hole). */
		ufault__debug(&ctx->log, "installing [%#llx, +%llu): %s: waking the thread",
			      (unsigned long long)page, (unsigned long long)len,
			      ufault_strerror(ret));
		ufault__uffd_wake(fd, page, len);
		return UFAULT__FAULT_DONE;
	case UFAULT__UFFD_FATAL:
		break;
	}
	ufault__err(&ctx->log, "installing [%#llx, +%llu): %s", (unsigned long long)page,
		    (unsigned long long)len, ufault_strerror(ret));
	/* Never leave the thread parked: apply the error policy, and if even
	 * that fails, wake it so it faults again rather than hang. */
	if (f->ret >= 0) {
		ufault__stat_add(&env->stats, UFAULT__STAT_SOURCE_ERRORS, 1);
		ret = apply_error_policy(env, r, fd, page, len, &done);
		if (ret == -EAGAIN)
			return UFAULT__FAULT_DEFER;
	}
	ufault__uffd_wake(fd, page, len);
	return UFAULT__FAULT_DONE;
}

static void spec_abort(struct ufault__fault_env *env, enum ufault_spec_abort why)
{
	ufault__stat_add(&env->stats, UFAULT__STAT_SPEC_ABORT + why, 1);
}

/* Region mode: the region's read lock across fill and install. A
 * detached region is being replaced by a proxy that has not finished: set
 * the fault aside (its worker is poked when the proxy unlocks). */
static enum ufault__fault_result resolve_hold(struct ufault__fault_env *env,
					      struct ufault_region *r, uint64_t addr,
					      unsigned int flags)
{
	enum ufault__fault_result res = UFAULT__FAULT_DEFER;
	uint64_t page = ufault__region_page(r, addr);
	struct fill f;

	ufault__region_read_lock(r);
	if (!ufault__region_detached(r)) {
		fill_page(env, r, page, &f);
		res = install(env, r, addr, page, &f, flags);
	}
	ufault__region_read_unlock(r);
	return res;
}

/* Spec mode: fill with no lock, validate at install. false: retry. */
static bool resolve_validate(struct ufault__fault_env *env, struct ufault_region *r, uint64_t addr,
			     unsigned int flags, enum ufault__fault_result *res)
{
	uint64_t gen = ufault__region_gen(r), page = ufault__region_page(r, addr);
	struct fill f;

	*res = UFAULT__FAULT_DEFER;
	if (ufault__region_detached(r)) {
		spec_abort(env, UFAULT_SPEC_ABORT_DETACHED);
		return true;
	}
	fill_page(env, r, page, &f); /* no lock held: may be slow */
	if (!ufault__region_read_trylock(r)) {
		/* A proxy holds the write lock only to mark the region
		 * detached, never across a syscall: waiting is short. */
		spec_abort(env, UFAULT_SPEC_ABORT_TRYLOCK);
		ufault__region_read_lock(r);
	}
	if (ufault__region_detached(r)) {
		ufault__region_read_unlock(r);
		spec_abort(env, UFAULT_SPEC_ABORT_DETACHED);
		return true;
	}
	if (ufault__region_gen(r) != gen) {
		ufault__region_read_unlock(r);
		spec_abort(env, UFAULT_SPEC_ABORT_GEN);
		return false;
	}
	*res = install(env, r, addr, page, &f, flags);
	ufault__region_read_unlock(r);
	return true;
}

enum ufault__fault_result ufault__fault_resolve(struct ufault__fault_env *env, uint64_t addr,
						unsigned int flags)
{
	struct ufault_ctx *ctx = env->ctx;
	const struct ufault__mm_mode *mode = ctx->mm.mode;
	enum ufault__fault_result res = UFAULT__FAULT_DONE;
	struct ufault__mm_held held;
	struct ufault_region *r;
	bool retried = false;
	struct fill f;

	/*
	 * A proxy holds the mm write lock across its syscall, and with
	 * UFFD_EVENT_REMAP that syscall waits for a worker to read the event.
	 * So a worker never waits for it: it defers the fault, and the proxy
	 * pokes it when it unlocks.
	 */
	if (!ufault__mm_read_trylock(&ctx->mm, &held, addr, ufault__sys_page()))
		return UFAULT__FAULT_DEFER;
	for (;;) {
		r = ufault__region_lookup(&ctx->regions, addr, &retried);
		if (retried && mode->region == UFAULT__REGION_VALIDATE)
			spec_abort(env, UFAULT_SPEC_ABORT_SEQ);
		if (!r)
			break; /* removed; its remover woke the thread */
		if (mode->region == UFAULT__REGION_HOLD) {
			res = resolve_hold(env, r, addr, flags);
		} else if (mode->region == UFAULT__REGION_VALIDATE) {
			if (!resolve_validate(env, r, addr, flags, &res)) {
				ufault__stat_add(&env->stats, UFAULT__STAT_RETRIES, 1);
				continue;
			}
		} else {
			uint64_t page = ufault__region_page(r, addr);

			fill_page(env, r, page, &f);
			res = install(env, r, addr, page, &f, flags);
		}
		break;
	}
	ufault__mm_read_unlock(&ctx->mm, &held);
	return res;
}
