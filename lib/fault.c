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
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fault.h"

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
		/* A write-back region's zeros are installed clean (protected):
		 * the shared zero page would read as written and be stored. */
		if (ufault__region_wp_tracked(r))
			ret = ufault__uffd_copy_wp(fd, page, env->ctx->zero_buf, len, true, done);
		else
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

/*
 * A page-cache source (memfd): the filled bytes go into the shared cache
 * (unless they are there already), then UFFDIO_CONTINUE maps the cache's
 * pages. A page that left the cache between the residency check and the
 * CONTINUE (a hole punched in the memfd) is not an error: the fault is
 * deferred and its retry fills it.
 */
static int install_cached(struct ufault__fault_env *env, struct ufault_region *r, int fd,
			  uint64_t page, uint64_t len, uint64_t skip, const struct ufault__req *f,
			  uint64_t *done)
{
	const struct ufault__source *s = r->src;
	uint64_t sys = ufault__sys_page();
	int ret;

	if (f->result != UFAULT__FILL_CACHED) {
		ret = s->ops->cache_fill(
		    &s->user, ufault__region_offset(r, page),
		    f->result == UFAULT__FILL_ZERO ? NULL : (const char *)f->data + skip, len);
		if (ret < 0)
			return ret;
		ufault__stat_add(&env->stats, UFAULT__STAT_CACHE_FILLED, (uint64_t)ret / sys);
	}
	ret = ufault__uffd_continue(fd, page, len, true, done);
	if (f->result == UFAULT__FILL_CACHED) {
		ufault__stat_add(&env->stats, UFAULT__STAT_CACHE_MAPPED, *done / sys);
		if (ret == -EFAULT)
			ret = -EAGAIN;
	}
	return ret;
}

/* One ioctl: [page, page + len) from the fill (@skip bytes into it). */
static int install_range(struct ufault__fault_env *env, struct ufault_region *r, int fd,
			 uint64_t page, uint64_t len, uint64_t skip, const struct ufault__req *f,
			 unsigned int flags)
{
	uint64_t done = 0;
	int ret;

	if (f->result < 0) {
		ret = apply_error_policy(env, r, fd, page, len, &done);
	} else if (r->src->ops->cache_run) {
		ret = install_cached(env, r, fd, page, len, skip, f, &done);
	} else if (ufault__region_wp_tracked(r)) {
		/* Installed write-protected (clean): the first write is what
		 * marks it written (writeback.h). Never the zero page. */
		ret = ufault__uffd_copy_wp(fd, page,
					   f->result == UFAULT__FILL_ZERO
					       ? env->ctx->zero_buf
					       : (const char *)f->data + skip,
					   len, true, &done);
	} else if (f->result == UFAULT__FILL_ZERO &&
		   ((flags & UFAULT__FAULT_WRITE) || env->ctx->foreign)) {
		/* As the kernel's do_anonymous_page: a write gets its own
		 * zeroed page at once; the shared zero page would cost a
		 * second (copy-on-write) fault right after this one. A
		 * foreign owner's memory may be hugetlbfs, which has no
		 * UFFDIO_ZEROPAGE. */
		ret = ufault__uffd_copy(fd, page, env->ctx->zero_buf, len, true, &done);
	} else if (f->result == UFAULT__FILL_ZERO) {
		ret = ufault__uffd_zeropage(fd, page, len, true, &done);
	} else {
		ret = ufault__uffd_copy(fd, page, (const char *)f->data + skip, len, true, &done);
	}
	if (f->result >= 0)
		ufault__stat_add(&env->stats, UFAULT__STAT_PAGES, done / ufault__sys_page());
	return ret;
}

/*
 * Install the filled page. The caller holds whatever its mode requires.
 * Whatever happens, the faulting thread is not left parked: it is served,
 * or woken to fault again, or the fault is deferred (and retried).
 */
static enum ufault__fault_result install(struct ufault__fault_env *env, struct ufault_region *r,
					 uint64_t addr, uint64_t page, const struct ufault__req *f,
					 unsigned int flags)
{
	struct ufault_ctx *ctx = env->ctx;
	int fd = ufault__region_uffd(r);
	uint64_t len = f->len, sys = ufault__sys_page(), done;
	int ret;

	if (f->result < 0) {
		ufault__stat_add(&env->stats, UFAULT__STAT_SOURCE_ERRORS, 1);
		log_source_error(env, r, page, f->result);
	}
	ret = install_range(env, r, fd, page, len, 0, f, flags);
	if (len > r->page_size && (!ret || ufault__uffd_classify(ret) == UFAULT__UFFD_RESOLVED))
		ufault__stat_add(&env->stats, UFAULT__STAT_FA_PAGES, (len - r->page_size) / sys);
	if (ufault__uffd_classify(ret) == UFAULT__UFFD_NOVMA && len > r->page_size) {
		/* A fault-around window crossed a VMA boundary: the faulting
		 * region page alone, and the region's run starts over. */
		uint64_t rp = ufault__region_page(r, addr);

		for (unsigned int i = 0; i < UFAULT__FA_RUNS; i++)
			__atomic_store_n(&r->fa[i].len, 0, __ATOMIC_RELAXED);
		ret = install_range(env, r, fd, rp, r->page_size, rp - page, f, flags);
	}
	if (ufault__uffd_classify(ret) == UFAULT__UFFD_NOVMA && r->page_size > sys) {
		/*
		 * The region page is not inside one VMA any more: mprotect(2),
		 * madvise(2) or munmap(2) cut it behind ufault's back. The
		 * faulting system page is in one VMA if it is still mapped:
		 * install just that one.
		 */
		ret = install_range(env, r, fd, addr, sys, addr - page, f, flags);
		/* Threads parked on the page's other system pages (faults that
		 * joined this one) fault again and install their own. */
		ufault__uffd_wake(fd, page, len);
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
	if (f->result >= 0) {
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

/* --- requests in flight ---------------------------------------------------- */

enum { REQ_FILLING, REQ_PENDING, REQ_INLINE };

static unsigned int page_hash(uint64_t page)
{
	return (unsigned int)((page >> 12) ^ (page >> 20)) % UFAULT__INFLIGHT_HASH;
}

static struct ufault__req *inflight_find(struct ufault__fault_env *env, struct ufault_region *r,
					 uint64_t page)
{
	struct ufault__req *q = env->inflight[page_hash(page)];

	while (q && (q->page != page || q->r != r))
		q = q->hnext;
	return q;
}

static void inflight_add(struct ufault__fault_env *env, struct ufault__req *req)
{
	struct ufault__req **head = &env->inflight[page_hash(req->page)];

	req->hnext = *head;
	*head = req;
	env->nr_pending++;
}

static void inflight_del(struct ufault__fault_env *env, struct ufault__req *req)
{
	struct ufault__req **p = &env->inflight[page_hash(req->page)];

	while (*p != req)
		p = &(*p)->hnext;
	*p = req->hnext;
	env->nr_pending--;
}

/*
 * While its fill is in flight a request keeps what its mode holds (the mm
 * read lock, the region read lock), but the worker goes on: to the witness
 * the locks are parked, and resumed at the completion.
 */
static void locks_park(struct ufault__req *req)
{
	if (req->region_locked)
		ufault__witness_release(UFAULT__RANK_REGION);
	if (req->held.locked)
		ufault__witness_release(UFAULT__RANK_MM);
}

static void locks_resume(struct ufault__req *req)
{
	if (req->held.locked)
		ufault__witness_acquire(UFAULT__RANK_MM, true);
	if (req->region_locked)
		ufault__witness_acquire(UFAULT__RANK_REGION, true);
}

static void locks_drop(struct ufault__fault_env *env, struct ufault__req *req)
{
	if (req->region_locked)
		ufault__region_read_unlock(req->r);
	req->region_locked = false;
	ufault__mm_read_unlock(&env->ctx->mm, &req->held);
}

void ufault_complete(struct ufault_completion *c, int result)
{
	struct ufault__req *req = (struct ufault__req *)c, *head;
	struct ufault__fault_env *env = req->env;
	int filling = REQ_FILLING;
	uint64_t one = 1;

	req->result = result > 0 ? -EIO : result;
	/* Still inside the source's start(): the worker finishes it inline. */
	if (__atomic_compare_exchange_n(&req->state, &filling, REQ_INLINE, false, __ATOMIC_ACQ_REL,
					__ATOMIC_ACQUIRE))
		return;
	/*
	 * Once pushed, the request is the worker's (it may be reused at
	 * once): only the local copy of the old head is read afterwards. The
	 * worker may even finish its last fill and stop: `completing` keeps
	 * it (and the eventfd) until this write is done.
	 */
	__atomic_fetch_add(&env->completing, 1, __ATOMIC_ACQ_REL);
	head = __atomic_load_n(&env->done, __ATOMIC_RELAXED);
	do
		req->next = head;
	while (!__atomic_compare_exchange_n(&env->done, &head, req, true, __ATOMIC_RELEASE,
					    __ATOMIC_RELAXED));
	/*
	 * Only the push onto an empty stack wakes the worker: it takes the
	 * whole stack once woken, so later pushes ride on that wake-up (one
	 * eventfd write per batch of completions, not per completion). A
	 * failed write means the counter is saturated: a wake-up is due.
	 */
	if (!head && write(env->done_fd, &one, sizeof(one)) < 0)
		ufault__debug(&env->ctx->log, "completion wake-up: %s", ufault_strerror(-errno));
	__atomic_fetch_sub(&env->completing, 1, __ATOMIC_RELEASE);
}

void ufault__fault_read_done(struct ufault__fault_env *env, void *data, int res)
{
	struct ufault__req *req = data;
	size_t len = req->len;

	(void)env;
	if (res >= 0 && (size_t)res < len)
		memset((char *)req->buf + res, 0, len - (size_t)res);
	ufault_complete((struct ufault_completion *)req, res < 0 ? res : 0);
}

struct ufault__req *ufault__fault_take_done(struct ufault__fault_env *env)
{
	return __atomic_exchange_n(&env->done, NULL, __ATOMIC_ACQUIRE);
}

int ufault__fault_env_init(struct ufault__fault_env *env, struct ufault_ctx *ctx)
{
	env->ctx = ctx;
	env->log_budget = 8;
	env->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return env->done_fd < 0 ? -errno : 0;
}

void ufault__fault_env_destroy(struct ufault__fault_env *env)
{
	if (env->done_fd >= 0)
		close(env->done_fd);
	env->done_fd = -1;
}

/* --- the steps ----------------------------------------------------------------- */

/*
 * Fill the request's page. false: an asynchronous fill is in flight (the
 * request is pending, its locks parked). true: filled (or failed: the
 * result says so); *pinned if the region is pinned (completed inline).
 */
static bool fill(struct ufault__fault_env *env, struct ufault__req *req, bool *pinned)
{
	struct ufault_region *r = req->r;
	struct ufault__source *s = r->src;
	uint64_t off = ufault__region_offset(r, req->page);
	int filling = REQ_FILLING, ret;

	*pinned = false;
	req->data = NULL;
	if (req->zero) {
		req->result = UFAULT__FILL_ZERO;
		return true;
	}
	if (s->ops->cache_run) {
		/* Pages in the cache are mapped (the window is all in it or
		 * all missing: fault_around); only missing ones are read from
		 * the inner source, at its own offset. */
		s = req->cached ? NULL : s->ops->cache_inner(&s->user);
		if (!s) {
			req->result = req->cached ? UFAULT__FILL_CACHED : UFAULT__FILL_ZERO;
			return true;
		}
		off += s->user.offset;
	}
	if (s->ops->fill) { /* may be slow: in spec mode no lock is held */
		req->result = s->ops->fill(&s->user, off, req->len, req->buf, &req->data);
		return true;
	}
	req->data = req->buf;
	req->env = env;
	__atomic_store_n(&req->state, REQ_FILLING, __ATOMIC_RELAXED);
	ufault__region_pin(r);
	*pinned = true;
	ret = s->ops->start(&s->user, off, req->len, req->buf, (struct ufault_completion *)req,
			    env->ring);
	if (ret < 0) {
		req->result = ret;
		return true;
	}
	if (!__atomic_compare_exchange_n(&req->state, &filling, REQ_PENDING, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return true; /* completed before start() returned */
	inflight_add(env, req);
	locks_park(req);
	return false;
}

enum step { STEP_DONE, STEP_RESTART };

/* Does what a foreign owner removes read as zeros in @r? Not in its shared
 * memory: the memfd keeps the pages, a hole reads the source (shared.h). */
static bool removals_zero(const struct ufault_ctx *ctx, const struct ufault_region *r)
{
	return ctx->foreign && !r->src->shared.on;
}

/*
 * Install, in a budgeted write-back region (@budget) under the region's
 * lock, which the evictor takes to take pages out (evict.h): not over a
 * page being evicted (defer), nor what a fill read from the source before
 * an eviction in its window wrote it (fill again: RESTART); then tell the
 * evictor what was installed.
 */
static enum step guarded_install(struct ufault__fault_env *env, struct ufault__req *req,
				 bool budget, enum ufault__fault_result *res)
{
	struct ufault__zeroed *z = &env->ctx->zeroed;
	int c = budget ? ufault__evict_check(&env->ctx->evict, req->page, req->page + req->len,
					     req->evict_seq)
		       : 0;

	if (c == -ESTALE)
		return STEP_RESTART;
	if (c == -EAGAIN || (env->ctx->foreign && !ufault__zeroed_install_begin(z))) {
		*res = UFAULT__FAULT_DEFER;
		return STEP_DONE;
	}
	/* Removed by a foreign owner while it filled: zeros now. */
	if (removals_zero(env->ctx, req->r) && !req->zero &&
	    ufault__zeroed_since(z, req->zseq, req->page, req->page + req->len)) {
		ufault__zeroed_install_end(z);
		return STEP_RESTART;
	}
	*res = install(env, req->r, req->addr, req->page, req, req->flags);
	if (env->ctx->foreign)
		ufault__zeroed_install_end(z);
	if (budget && *res == UFAULT__FAULT_DONE)
		ufault__evict_note(&env->ctx->evict, env->id, ufault__evict_group_of(req->r->src),
				   req->page, req->len);
	return STEP_DONE;
}

/* Validate (spec) and install the filled page; the mode's locks are held. */
static enum step install_step(struct ufault__fault_env *env, struct ufault__req *req,
			      enum ufault__fault_result *res)
{
	struct ufault_region *r = req->r;
	bool budget =
	    (r->flags & UFAULT_REGION_WRITEBACK) && ufault__evict_active(&env->ctx->evict);
	enum step step;

	if (env->ctx->mm.mode->region != UFAULT__REGION_VALIDATE) {
		/* region mode holds the region's read lock already; range
		 * and global take it here, for the evictor. */
		bool lock = budget && env->ctx->mm.mode->region == UFAULT__REGION_NONE;

		if (lock)
			ufault__region_read_lock(r);
		step = guarded_install(env, req, budget, res);
		if (lock)
			ufault__region_read_unlock(r);
		return step;
	}
	if (!ufault__region_read_trylock(r)) {
		/* A proxy holds the write lock only to mark the region
		 * detached, never across a syscall: waiting is short. */
		spec_abort(env, UFAULT_SPEC_ABORT_TRYLOCK);
		ufault__region_read_lock(r);
	}
	if (ufault__region_detached(r)) {
		ufault__region_read_unlock(r);
		spec_abort(env, UFAULT_SPEC_ABORT_DETACHED);
		*res = UFAULT__FAULT_DEFER;
		return STEP_DONE;
	}
	if (ufault__region_gen(r) != req->gen) {
		ufault__region_read_unlock(r);
		spec_abort(env, UFAULT_SPEC_ABORT_GEN);
		return STEP_RESTART;
	}
	step = guarded_install(env, req, budget, res);
	ufault__region_read_unlock(r);
	return step;
}

/*
 * The fault-around window starting at region page @page: twice the last
 * window of the run this fault continues (it is where one of the region's
 * runs expected its next fault), else one region page, starting a run in
 * place of the least advanced one; up to fault_around_max and the region's
 * end. The hints are racy (several workers, no lock): a lost update only
 * costs a smaller or larger window, never a wrong page.
 */
/*
 * A page-cache source: cut the window at the first region page whose
 * cache state (filled, missing) differs from the first one's (another
 * thread's window may have filled what lies ahead); *cached: filled.
 */
static uint64_t cache_window(const struct ufault_region *r, uint64_t page, uint64_t len,
			     bool *cached)
{
	const struct ufault__source *s = r->src;

	*cached = false;
	if (!s->ops->cache_run)
		return len;
	return s->ops->cache_run(&s->user, ufault__region_offset(r, page), len, r->page_size,
				 cached);
}

static uint64_t fault_around(struct ufault__fault_env *env, struct ufault_region *r, uint64_t page,
			     bool *cached)
{
	uint64_t max = env->ctx->fault_around_max, ps = r->page_size, len = ps, last = 0;
	uint64_t oldest = 0;
	unsigned int slot = 0;

	if (max <= ps)
		return cache_window(r, page, ps, cached);
	for (unsigned int i = 0; i < UFAULT__FA_RUNS; i++) {
		uint64_t l = __atomic_load_n(&r->fa[i].len, __ATOMIC_RELAXED);
		uint64_t used = __atomic_load_n(&r->fa[i].used, __ATOMIC_RELAXED);

		if (l && page == __atomic_load_n(&r->fa[i].next, __ATOMIC_RELAXED)) {
			len = l * 2 < max ? l * 2 : max;
			len -= len % ps;
			slot = i;
			last = 0;
			break;
		}
		/* The run that continued least recently is replaced: one
		 * whose next page never faults (a thread left for another
		 * part) goes, however far it had grown. */
		if (!i || used < oldest) {
			slot = i;
			last = l;
			oldest = used;
		}
	}
	__atomic_store_n(&r->fa[slot].used, __atomic_add_fetch(&r->fa_clock, 1, __ATOMIC_RELAXED),
			 __ATOMIC_RELAXED);
	if (len == ps && last > ps) {
		/* That run stopped: its last window's pages ahead may never be
		 * touched (an upper bound: the program may come back). */
		ufault__stat_add(&env->stats, UFAULT__STAT_FA_WASTED,
				 (last - ps) / ufault__sys_page());
	}
	if (len > r->node.end - page)
		len = r->node.end - page;
	len = cache_window(r, page, len, cached);
	__atomic_store_n(&r->fa[slot].next, page + len, __ATOMIC_RELAXED);
	__atomic_store_n(&r->fa[slot].len, len, __ATOMIC_RELAXED);
	return len;
}

/*
 * A foreign context: the window from req->page up to what its owner
 * removed, or, if the page itself was removed, the removed run (zeros).
 * Whole region pages (a removal of part of one zeroes none of it: its
 * owner cannot drop part of a huge page).
 */
static void zeroed_window(struct ufault_ctx *ctx, struct ufault__req *req)
{
	uint64_t ps = req->r->page_size, run;

	req->zseq = ufault__zeroed_seq(&ctx->zeroed);
	req->zero = ufault__zeroed_at(&ctx->zeroed, req->page, req->page + req->len, &run);
	run -= run % ps;
	if (req->zero && !run) /* not the whole page: its source */
		req->zero = false, run = ps;
	if (run < req->len)
		req->len = run ? run : ps;
}

/* Look the region up and take what the mode holds across the fill. */
static enum ufault__fault_result lookup_step(struct ufault__fault_env *env, struct ufault__req *req)
{
	struct ufault_ctx *ctx = env->ctx;
	enum ufault__region_hold hold = ctx->mm.mode->region;
	struct ufault_region *r;
	bool retried = false;

	/*
	 * A proxy holds the mm write lock across its syscall, and with
	 * UFFD_EVENT_REMAP that syscall waits for a worker to read the event.
	 * So a worker never waits for it: it defers the fault, and the proxy
	 * pokes it when it unlocks.
	 */
	if (!ufault__mm_read_trylock(&ctx->mm, &req->held, req->addr, ufault__sys_page()))
		return UFAULT__FAULT_DEFER;
	r = ufault__region_lookup(&ctx->regions, req->addr, &retried);
	if (retried && hold == UFAULT__REGION_VALIDATE)
		spec_abort(env, UFAULT_SPEC_ABORT_SEQ);
	if (!r) {
		ufault__mm_read_unlock(&ctx->mm, &req->held);
		/* A foreign owner registers its memory before it tells us
		 * about it (Firecracker sends its regions with the uffd): a
		 * fault may come first. Here, it is removed; its remover
		 * woke the thread. */
		return ctx->foreign ? UFAULT__FAULT_DEFER : UFAULT__FAULT_DONE;
	}
	req->r = r;
	req->page = ufault__region_page(r, req->addr);
	req->len = fault_around(env, r, req->page, &req->cached);
	if (removals_zero(ctx, r))
		zeroed_window(ctx, req);
	else
		req->zero = false;
	req->evict_seq = ufault__evict_seq(&ctx->evict);
	/* Not while a page of the window is being evicted: the fill would
	 * read the source before its write-back (then seq, then busy). */
	if ((r->flags & UFAULT_REGION_WRITEBACK) && ufault__evict_active(&ctx->evict) &&
	    (ufault__evict_busy(&ctx->evict, req->page, req->page + req->len) ||
	     ufault__evict_full(&ctx->evict, env->id, ufault__evict_group_of(r->src)))) {
		ufault__mm_read_unlock(&ctx->mm, &req->held);
		return UFAULT__FAULT_DEFER;
	}
	req->region_locked = false;
	if (inflight_find(env, r, req->page)) {
		/* Its install wakes every thread parked on the page. */
		ufault__stat_add(&env->stats, UFAULT__STAT_JOINED, 1);
		ufault__mm_read_unlock(&ctx->mm, &req->held);
		return UFAULT__FAULT_DONE;
	}
	if (hold == UFAULT__REGION_HOLD) {
		/*
		 * Try-lock only: this worker may hold read locks of pending
		 * fills, and a writer waiting for those would block a
		 * rdlock here for good. A detached region is being replaced
		 * by a proxy that has not finished: defer (poked on unlock).
		 */
		if (!ufault__region_read_trylock(r)) {
			ufault__mm_read_unlock(&ctx->mm, &req->held);
			return UFAULT__FAULT_DEFER;
		}
		req->region_locked = true;
	} else if (hold == UFAULT__REGION_VALIDATE) {
		req->gen = ufault__region_gen(r);
	}
	if (hold != UFAULT__REGION_NONE && ufault__region_detached(r)) {
		if (hold == UFAULT__REGION_VALIDATE)
			spec_abort(env, UFAULT_SPEC_ABORT_DETACHED);
		locks_drop(env, req);
		return UFAULT__FAULT_DEFER;
	}
	return UFAULT__FAULT_PENDING; /* i.e. go on and fill */
}

enum ufault__fault_result ufault__fault_start(struct ufault__fault_env *env,
					      struct ufault__req *req)
{
	enum ufault__fault_result res;
	bool pinned;

	for (;;) {
		res = lookup_step(env, req);
		if (res != UFAULT__FAULT_PENDING)
			return res;
		if (!fill(env, req, &pinned))
			return UFAULT__FAULT_PENDING;
		if (install_step(env, req, &res) == STEP_DONE) {
			locks_drop(env, req);
			if (pinned)
				ufault__region_unpin(req->r);
			return res;
		}
		locks_drop(env, req);
		if (pinned)
			ufault__region_unpin(req->r);
		ufault__stat_add(&env->stats, UFAULT__STAT_RETRIES, 1);
	}
}

enum ufault__fault_result ufault__fault_finish(struct ufault__fault_env *env,
					       struct ufault__req *req)
{
	enum ufault__fault_result res;
	enum step step;

	inflight_del(env, req);
	locks_resume(req);
	step = install_step(env, req, &res);
	locks_drop(env, req);
	/* Last: the unpin may free the region and run a release hook. */
	ufault__region_unpin(req->r);
	if (step == STEP_DONE)
		return res;
	ufault__stat_add(&env->stats, UFAULT__STAT_RETRIES, 1);
	return ufault__fault_start(env, req);
}
