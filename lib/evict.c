// SPDX-License-Identifier: MIT
/*
 * evict.c - the memory budget's evictor (evict.h).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "ctx.h"
#include "evict.h"
#include "uffd.h"
#include "util.h"
#include "worker.h"

#define KICK_EVERY 256	/* installs between two wake-ups of the evictor */
#define IDLE_POLL_MS 20 /* the evictor looks at the rings at least this often */
#define DRAIN_EVERY 64	/* evictions between two looks at the rings */

enum outcome { EVICTED, GONE, KEPT };

int ufault__evict_init(struct ufault__evict *ev)
{
	int ret;

	memset(ev, 0, sizeof(*ev));
	ev->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ev->wake_fd < 0)
		return -errno;
	ret = -pthread_mutex_init(&ev->lock, NULL);
	if (!ret) {
		ret = -pthread_cond_init(&ev->adopted_cv, NULL);
		if (ret)
			pthread_mutex_destroy(&ev->lock);
	}
	if (ret) {
		close(ev->wake_fd);
		ev->wake_fd = -1;
	}
	return ret;
}

static void kick(struct ufault__evict *ev)
{
	uint64_t one = 1;

	/* A failed write means the counter is saturated: a wake-up is due. */
	if (write(ev->wake_fd, &one, sizeof(one)) < 0)
		return;
}

void ufault__evict_note(struct ufault__evict *ev, unsigned int id, unsigned int group,
			uint64_t addr, uint64_t len)
{
	struct ufault__evict_log *l = &ev->logs[id];
	unsigned int head = __atomic_load_n(&l->head, __ATOMIC_ACQUIRE), tail = l->tail;
	uint64_t sys = ufault__sys_page();

	/* An entry is the page's address with its group in the low bits. */
	for (uint64_t a = addr; a < addr + len && tail - head < UFAULT__EVICT_LOG; a += sys)
		l->ring[tail++ % UFAULT__EVICT_LOG] = a | group;
	/* A full ring drops the rest: those pages are not counted. */
	__atomic_store_n(&l->tail, tail, __ATOMIC_RELEASE);
	l->since_kick += (unsigned int)(len / sys);
	if (l->since_kick >= KICK_EVERY || tail - head > UFAULT__EVICT_LOG / 2) {
		l->since_kick = 0;
		kick(ev);
	}
}

static bool group_full(const struct ufault__evict_group *g, uint64_t pending)
{
	uint64_t limit = __atomic_load_n(&g->limit, __ATOMIC_RELAXED);

	return limit && __atomic_load_n(&g->resident, __ATOMIC_RELAXED) + pending >= limit;
}

bool ufault__evict_full(const struct ufault__evict *ev, unsigned int id, unsigned int group)
{
	const struct ufault__evict_log *l = &ev->logs[id];
	uint64_t pending = __atomic_load_n(&l->tail, __ATOMIC_RELAXED) -
			   __atomic_load_n(&l->head, __ATOMIC_RELAXED);

	return group_full(&ev->groups[0], pending) ||
	       (group && group_full(&ev->groups[group], pending));
}

bool ufault__evict_busy(const struct ufault__evict *ev, uint64_t start, uint64_t end)
{
	uint64_t busy = __atomic_load_n(&ev->busy, __ATOMIC_ACQUIRE);

	return busy && busy >= start && busy < end;
}

int ufault__evict_check(const struct ufault__evict *ev, uint64_t start, uint64_t end, uint64_t seq)
{
	uint64_t now = __atomic_load_n(&ev->seq, __ATOMIC_ACQUIRE);

	if (ufault__evict_busy(ev, start, end))
		return -EAGAIN;
	if (now == seq)
		return 0;
	if (now - seq > UFAULT__EVICT_RECENT)
		return -ESTALE; /* too many to look at: fill again */
	for (uint64_t s = seq; s < now; s++) {
		uint64_t a =
		    __atomic_load_n(&ev->recent[s % UFAULT__EVICT_RECENT], __ATOMIC_RELAXED);

		if (a >= start && a < end)
			return -ESTALE;
	}
	return 0;
}

/* The bytes of a page, hashed: was it written between two points? (It
 * may be written while read: such a race is what this detects.) */
__attribute__((no_sanitize("thread"))) static uint64_t page_hash(const void *p, uint64_t len)
{
	const uint64_t *w = p;
	uint64_t h = 0x9e3779b97f4a7c15ull;

	for (uint64_t i = 0; i < len / 8; i++) {
		h ^= w[i] + 0x632be59bd9b4e019ull + (h << 6) + (h >> 2);
		h *= 0xff51afd7ed558ccdull;
	}
	return h;
}

static bool scratch_filled(void *scratch)
{
	unsigned char v = 0;

	return !mincore(scratch, ufault__sys_page(), &v) && (v & 1);
}

static void record(struct ufault__evict *ev, uint64_t a)
{
	uint64_t s = ev->seq;

	__atomic_store_n(&ev->recent[s % UFAULT__EVICT_RECENT], a, __ATOMIC_RELAXED);
	__atomic_store_n(&ev->seq, s + 1, __ATOMIC_RELEASE);
}

/* The end of an eviction: not busy, the faults deferred on it retried. */
static void done(struct ufault_ctx *ctx)
{
	__atomic_store_n(&ctx->evict.busy, 0, __ATOMIC_RELEASE);
	ufault__workers_poke(ctx);
}

/* evict_one() in a foreign owner's shared memory (shared.h), under the mm
 * write lock: frozen by write-protection while it is compared and stored. */
static enum outcome evict_shared(struct ufault_ctx *ctx, struct ufault_region *r, uint64_t a)
{
	struct ufault__evict *ev = &ctx->evict;
	const struct ufault__source *s = r->src;
	uint64_t sys = ufault__sys_page();
	int uffd = ufault__region_uffd(r), ret;

	ufault__region_write_lock(r);
	if (!ufault__shared_resident(&s->shared, a)) {
		ufault__region_write_unlock(r);
		return GONE;
	}
	/* busy before the protection: its write-protect faults wait. */
	__atomic_store_n(&ev->busy, a, __ATOMIC_SEQ_CST);
	ufault__region_write_unlock(r);
	ret = ufault__uffd_writeprotect(uffd, a, sys, true, true);
	if (!ret) {
		ret = ufault__shared_store(&s->shared, s, a, ufault__region_offset(r, a), ev->buf);
		if (ret > 0) {
			__atomic_fetch_add(&ev->evicted_dirty, 1, __ATOMIC_RELAXED);
			ufault__source_of(&s->user)->unsynced = true;
		}
	}
	if (ret >= 0) {
		/* Recorded before the hole: a fill that read the source
		 * before the store fills again. */
		record(ev, a);
		ret = ufault__shared_punch(&s->shared, a, sys);
	}
	/* Unprotected either way (a page kept stays writable), waking the
	 * writers; a page gone meanwhile (unmapped) has nothing to wake. */
	if (ufault__uffd_writeprotect(uffd, a, sys, false, true) == -EAGAIN)
		ufault__uffd_wake(uffd, a, sys);
	done(ctx);
	if (ret < 0) {
		ufault__warn(&ctx->log, "evicting %#llx: %s", (unsigned long long)a,
			     ufault_strerror(ret));
		return KEPT;
	}
	__atomic_fetch_add(&ev->evicted, 1, __ATOMIC_RELAXED);
	return EVICTED;
}

/* Take page @a out of its region, writing it back if it was written. */
static enum outcome evict_one(struct ufault_ctx *ctx, uint64_t a)
{
	struct ufault__evict *ev = &ctx->evict;
	uint64_t sys = ufault__sys_page(), h;
	struct ufault__mm_held held;
	struct ufault_region *r;
	const struct ufault__source *s;
	enum outcome out = GONE;
	bool written = false;
	void *scratch;
	int uffd, ret;

	/* The write side: no flush (a reader) stores the page meanwhile. */
	ufault__mm_write_lock(&ctx->mm, &held, a, a + sys);
	r = ufault__regions_first(&ctx->regions, a, a + sys);
	if (r && (r->flags & UFAULT_REGION_WRITEBACK) && r->src->shared.on) {
		out = evict_shared(ctx, r, a);
		goto unlock;
	}
	if (!r || !(r->flags & UFAULT_REGION_WRITEBACK) || !ufault__writeback_mapped(&ctx->wb, a))
		goto unlock;
	s = r->src;
	uffd = ufault__region_uffd(r);
	scratch = (char *)ev->scratch + (size_t)r->uffd_idx * sys;

	ufault__region_write_lock(r);
	/* Written before this point: found, and protected again; written
	 * after it (before the move): found by a second look (while the
	 * hash was taken) or by the hash of what moved (after). */
	ret = ufault__writeback_test(&ctx->wb, uffd, a, a + sys, &written);
	if (!ret) {
		bool again = false;

		h = page_hash((const void *)(uintptr_t)a, sys);
		ret = ufault__writeback_test(&ctx->wb, uffd, a, a + sys, &again);
		written = written || again;
	}
	if (ret) {
		ufault__region_write_unlock(r);
		ufault__debug(&ctx->log, "evicting %#llx: %s", (unsigned long long)a,
			      ufault_strerror(ret));
		out = KEPT;
		goto unlock;
	}
	ret = ufault__uffd_move(uffd, (uint64_t)(uintptr_t)scratch, a, sys, false);
	/* Linux 6.18 can report -EEXIST for a page it did move (a retry
	 * finding the destination it had just filled): where the page is
	 * decides, not the error. */
	if (ret == -EEXIST && scratch_filled(scratch) && !ufault__writeback_mapped(&ctx->wb, a))
		ret = 0;
	if (!ret) {
		/* busy before seq: a fill that saw the new seq sees busy. */
		__atomic_store_n(&ev->busy, a, __ATOMIC_SEQ_CST);
		record(ev, a);
	}
	ufault__region_write_unlock(r);
	if (ret) {
		/* -ENOENT: gone meanwhile; anything else: not movable now. */
		ufault__debug(&ctx->log, "evicting %#llx: UFFDIO_MOVE: %s", (unsigned long long)a,
			      ufault_strerror(ret));
		if (ret != -ENOENT) {
			if (written) /* it stays resident, and written */
				ufault__writeback_mark_written(uffd, a, sys);
			out = KEPT;
		}
		goto unlock;
	}
	written = written || page_hash(scratch, sys) != h;
	out = EVICTED;
	if (written) {
		ret = s->ops->write(&s->user, ufault__region_offset(r, a), scratch, sys);
		if (ret) {
			/* Back into the region (faults there wait on busy):
			 * moved in, it is writable, so it counts as written. */
			ufault__warn(&ctx->log, "evicting %#llx: write-back to the %s source: %s",
				     (unsigned long long)a, s->ops->name, ufault_strerror(ret));
			if (ufault__uffd_move(uffd, a, (uint64_t)(uintptr_t)scratch, sys, true))
				ufault__err(&ctx->log, "evicting %#llx: cannot put the page back",
					    (unsigned long long)a);
			out = KEPT;
		} else {
			__atomic_fetch_add(&ev->evicted_dirty, 1, __ATOMIC_RELAXED);
			ufault__source_of(&s->user)->unsynced = true;
		}
	}
	madvise(scratch, sys, MADV_DONTNEED);
	done(ctx); /* the installs deferred on it */
	if (out == EVICTED)
		__atomic_fetch_add(&ev->evicted, 1, __ATOMIC_RELAXED);
unlock:
	ufault__mm_write_unlock(&ctx->mm, &held);
	return out;
}

/* The evictor thread's own view of the groups. */
struct evictor {
	struct ufault__pool pool[UFAULT__EVICT_GROUPS]; /* .e NULL: none */
	unsigned int seq[UFAULT__EVICT_GROUPS], gen[UFAULT__EVICT_GROUPS];
	uint64_t high[UFAULT__EVICT_GROUPS], low[UFAULT__EVICT_GROUPS];
	uint64_t limit[UFAULT__EVICT_GROUPS];
	bool evicting[UFAULT__EVICT_GROUPS];
	uint64_t adopted; /* ev->changes when the groups were last looked at */
};

static uint64_t total_resident(const struct evictor *st)
{
	uint64_t n = 0;

	for (unsigned int g = 0; g < UFAULT__EVICT_GROUPS; g++)
		if (st->pool[g].e)
			n += ufault__pool_resident(&st->pool[g]);
	return n;
}

/* Group @g's resident pages (group 0: every group's). */
static uint64_t resident_of(const struct evictor *st, unsigned int g)
{
	return g ? ufault__pool_resident(&st->pool[g]) : total_resident(st);
}

static void publish(struct ufault__evict *ev, const struct evictor *st)
{
	for (unsigned int g = 1; g < UFAULT__EVICT_GROUPS; g++)
		if (st->pool[g].e)
			__atomic_store_n(&ev->groups[g].resident, resident_of(st, g),
					 __ATOMIC_RELAXED);
	__atomic_store_n(&ev->groups[0].resident, total_resident(st), __ATOMIC_RELAXED);
}

static void drain(struct ufault__evict *ev, struct evictor *st)
{
	uint64_t mask = UFAULT__EVICT_GROUPS - 1;

	for (unsigned int i = 0; i < ev->nr_logs; i++) {
		struct ufault__evict_log *l = &ev->logs[i];
		unsigned int tail = __atomic_load_n(&l->tail, __ATOMIC_ACQUIRE), head = l->head;

		for (; head != tail; head++) {
			uint64_t v = l->ring[head % UFAULT__EVICT_LOG];
			struct ufault__pool *p = &st->pool[v & mask];

			if (!p->e) /* no budget of its own (any more): the context's */
				p = &st->pool[0];
			if (p->e && ufault__pool_note_installed(p, v & ~mask))
				__atomic_fetch_add(&ev->refaults, 1, __ATOMIC_RELAXED);
		}
		__atomic_store_n(&l->head, head, __ATOMIC_RELEASE);
	}
	publish(ev, st);
}

/* Take group @g's budget change (under ev->lock): a new pool carries the
 * old one's pages; a group given up hands its pages to the context's
 * pool if the registration is still there. */
static void update_group(struct ufault__evict *ev, struct evictor *st, unsigned int g)
{
	struct ufault__evict_group *grp = &ev->groups[g];
	uint64_t sys = ufault__sys_page(), pages;
	struct ufault__pool *old = &st->pool[g], next;
	bool same = st->gen[g] == grp->gen;

	if (__atomic_load_n(&grp->gone, __ATOMIC_ACQUIRE)) { /* its source went */
		__atomic_store_n(&grp->gone, false, __ATOMIC_RELAXED);
		grp->used = false;
		grp->to_ctx = false;
		grp->budget.bytes = 0;
		ev->nr_used--;
		grp->seq++;
		same = false;
	}
	pages = grp->budget.bytes / sys;
	if (pages && (g == 0 || grp->used)) {
		if (ufault__pool_init(&next,
				      grp->budget.policy == UFAULT_EVICT_FIFO ? &ufault__policy_fifo
									      : &ufault__policy_2q,
				      pages))
			return; /* -ENOMEM: the next look tries again */
		if (old->e && same)
			ufault__pool_carry(&next, old);
		ufault__pool_destroy(old);
		*old = next;
		st->high[g] = pages * grp->budget.high_pct / 100;
		st->low[g] = pages * grp->budget.low_pct / 100;
		/* A little over the budget: faults wait. */
		st->limit[g] = pages + (pages / 32 > 32 ? pages / 32 : 32);
	} else {
		if (old->e && g && same && grp->to_ctx && st->pool[0].e)
			ufault__pool_carry(&st->pool[0], old);
		ufault__pool_destroy(old);
		memset(old, 0, sizeof(*old));
		st->high[g] = st->low[g] = st->limit[g] = 0;
		st->evicting[g] = false;
		__atomic_store_n(&grp->resident, 0, __ATOMIC_RELAXED);
	}
	__atomic_store_n(&grp->limit, st->limit[g], __ATOMIC_RELAXED);
	__atomic_store_n(&ev->active, ev->nr_used != 0, __ATOMIC_RELEASE);
	st->seq[g] = grp->seq;
	st->gen[g] = grp->gen;
}

/* Where group @g's eviction takes its next victim: its own pool; for the
 * context, its pool while it has pages, then the largest group's. */
static struct ufault__pool *victim_pool(struct evictor *st, unsigned int g)
{
	struct ufault__pool *best = NULL;

	if (g || (st->pool[0].e && ufault__pool_resident(&st->pool[0])))
		return &st->pool[g];
	for (unsigned int i = 1; i < UFAULT__EVICT_GROUPS; i++)
		if (st->pool[i].e && ufault__pool_resident(&st->pool[i]) &&
		    (!best || ufault__pool_resident(&st->pool[i]) > ufault__pool_resident(best)))
			best = &st->pool[i];
	return best;
}

/* Evict for group @g, between its watermarks. */
static void evict_group(struct ufault_ctx *ctx, struct evictor *st, unsigned int g)
{
	struct ufault__evict *ev = &ctx->evict;

	if (!st->high[g])
		return;
	if (resident_of(st, g) >= st->high[g])
		st->evicting[g] = true;
	for (unsigned int n = 0; st->evicting[g] && resident_of(st, g) > st->low[g]; n++) {
		struct ufault__pool *p = victim_pool(st, g);
		uint64_t a = p ? ufault__pool_take_victim(p) : 0;

		/* A budget change waits for this loop: take it first. */
		if (!a || __atomic_load_n(&ev->changes, __ATOMIC_ACQUIRE) != st->adopted)
			break;
		if (evict_one(ctx, a) == KEPT) {
			ufault__pool_put_back(p, a);
			/* Stuck for now: faults must not wait on it; look
			 * again later, not in a loop. */
			__atomic_store_n(&ev->groups[g].limit, 0, __ATOMIC_RELAXED);
			ufault__workers_poke(ctx);
			break;
		}
		ufault__pool_evicted(p, a);
		__atomic_store_n(&ev->groups[g].limit, st->limit[g], __ATOMIC_RELAXED);
		publish(ev, st);
		if (n % DRAIN_EVERY == DRAIN_EVERY - 1)
			drain(ev, st);
	}
	if (resident_of(st, g) <= st->low[g])
		st->evicting[g] = false;
}

static void *evictor_main(void *arg)
{
	struct ufault_ctx *ctx = arg;
	struct ufault__evict *ev = &ctx->evict;
	struct evictor *st = ufault__pages_map(sizeof(*st));

	if (!st) {
		ufault__err(&ctx->log, "evictor: no memory for its state: no eviction");
		pthread_mutex_lock(&ev->lock);
		ev->adopted = UINT64_MAX; /* nobody waits for it */
		pthread_cond_broadcast(&ev->adopted_cv);
		pthread_mutex_unlock(&ev->lock);
		return NULL;
	}
	for (;;) {
		struct pollfd p = {.fd = ev->wake_fd, .events = POLLIN};
		bool evicting = false;
		uint64_t v;

		pthread_mutex_lock(&ev->lock);
		if (ev->stop) {
			pthread_mutex_unlock(&ev->lock);
			break;
		}
		for (unsigned int g = 0; g < UFAULT__EVICT_GROUPS; g++)
			if (st->seq[g] != ev->groups[g].seq || st->gen[g] != ev->groups[g].gen ||
			    __atomic_load_n(&ev->groups[g].gone, __ATOMIC_ACQUIRE))
				update_group(ev, st, g);
		if (st->adopted != ev->changes) {
			st->adopted = ev->changes;
			ev->adopted = ev->changes;
			pthread_cond_broadcast(&ev->adopted_cv);
		}
		pthread_mutex_unlock(&ev->lock);
		drain(ev, st);
		/* Each registration's own budget, then the context's (the sum). */
		for (unsigned int g = UFAULT__EVICT_GROUPS; g-- > 0;) {
			evict_group(ctx, st, g);
			evicting = evicting || st->evicting[g];
		}
		publish(ev, st);
		if (poll(&p, 1, evicting ? 0 : IDLE_POLL_MS) > 0 &&
		    read(ev->wake_fd, &v, sizeof(v)) < 0)
			v = 0;
	}
	for (unsigned int g = 0; g < UFAULT__EVICT_GROUPS; g++)
		ufault__pool_destroy(&st->pool[g]);
	ufault__pages_unmap(st, sizeof(*st));
	return NULL;
}

/* The first budget: rings, scratch pages (registered), the thread. */
static int start(struct ufault_ctx *ctx)
{
	struct ufault__evict *ev = &ctx->evict;
	uint64_t sys = ufault__sys_page();
	size_t scratch_len = (size_t)ctx->nr_uffds * sys;
	int ret;

	ev->nr_logs = ctx->nr_workers;
	ev->logs_bytes = sizeof(*ev->logs) * ev->nr_logs +
			 (size_t)ev->nr_logs * UFAULT__EVICT_LOG * sizeof(uint64_t);
	ev->logs = ufault__pages_map(ev->logs_bytes);
	if (!ev->logs)
		return -ENOMEM;
	for (unsigned int i = 0; i < ev->nr_logs; i++)
		ev->logs[i].ring =
		    (uint64_t *)(ev->logs + ev->nr_logs) + (size_t)i * UFAULT__EVICT_LOG;
	ev->buf = ufault__pages_map(2 * sys);
	if (!ev->buf) {
		ret = -ENOMEM;
		goto free_logs;
	}
	/* A foreign context's uffd is its owner's: no scratch page there
	 * (its shared memory is evicted without one). */
	ev->scratch = ctx->foreign ? NULL
				   : mmap(NULL, scratch_len, PROT_READ | PROT_WRITE,
					  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ev->scratch == MAP_FAILED) {
		ret = -errno;
		ev->scratch = NULL;
		goto free_buf;
	}
	for (unsigned int i = 0; ev->scratch && i < ctx->nr_uffds; i++) {
		ret =
		    ufault__uffd_register(ctx->uffds[i], (uint64_t)(uintptr_t)ev->scratch + i * sys,
					  sys, UFFDIO_REGISTER_MODE_MISSING, NULL);
		if (ret)
			goto unmap;
	}
	ret = ufault__thread_start(&ev->thread, evictor_main, ctx);
	if (ret)
		goto unmap;
	ev->started = true;
	return 0;
unmap:
	if (ev->scratch)
		munmap(ev->scratch, scratch_len);
free_buf:
	ufault__pages_unmap(ev->buf, 2 * sys);
free_logs:
	ufault__pages_unmap(ev->logs, ev->logs_bytes);
	ev->logs = NULL;
	ev->scratch = NULL;
	ev->buf = NULL;
	return ret;
}

/* Check @b (0.4's struct is the first: its size is the only one known)
 * and copy it to @nb with the default watermarks filled in. */
static int check_budget(struct ufault_ctx *ctx, const char *what, const struct ufault_budget *b,
			struct ufault_budget *nb)
{
	if (!b || b->size != sizeof(*b)) {
		ufault__warn(&ctx->log, "%s: NULL or size %zu, expected %zu", what, b ? b->size : 0,
			     sizeof(*b));
		return -EINVAL;
	}
	*nb = *b;
	if (!nb->high_pct && !nb->low_pct) {
		nb->high_pct = 100;
		nb->low_pct = 90;
	}
	if (!nb->low_pct || nb->low_pct >= nb->high_pct || nb->high_pct > 100 ||
	    (unsigned int)nb->policy > UFAULT_EVICT_FIFO) {
		ufault__warn(&ctx->log,
			     "%s: watermarks %u%%/%u%% (want 0 < low < high <= 100) or policy %d",
			     what, nb->high_pct, nb->low_pct, (int)nb->policy);
		return -EINVAL;
	}
	if (nb->bytes && ctx->foreign) /* shared memory only: no MOVE, no pagemap */
		return 0;
	if (nb->bytes && !(ctx->features & UFFD_FEATURE_MOVE)) {
		ufault__warn(&ctx->log,
			     "%s: eviction needs UFFDIO_MOVE (Linux 6.8), which this kernel lacks",
			     what);
		return -EOPNOTSUPP;
	}
	if (nb->bytes && ufault__writeback_usable(&ctx->wb))
		return -EOPNOTSUPP;
	return 0;
}

/* Under ev->lock: group @g's budget is now @nb (the thread started if a
 * budget needs it); 0 or -errno, nothing changed then. */
static int set_group(struct ufault_ctx *ctx, unsigned int g, const struct ufault_budget *nb)
{
	struct ufault__evict *ev = &ctx->evict;
	struct ufault__evict_group *grp = &ev->groups[g];
	int ret = 0;

	if (nb->bytes && !ev->started)
		ret = start(ctx);
	if (ret)
		return ret;
	if (g) {
		if (nb->bytes && !grp->used) {
			grp->used = true;
			grp->to_ctx = false;
			grp->gen++;
			ev->nr_used++;
		} else if (!nb->bytes && grp->used) {
			grp->used = false;
			grp->to_ctx = true;
			ev->nr_used--;
		}
	} else if (!!nb->bytes != !!grp->budget.bytes) {
		ev->nr_used += nb->bytes ? 1 : -1u;
	}
	grp->budget = *nb;
	grp->seq++;
	__atomic_store_n(&ev->active, ev->nr_used != 0, __ATOMIC_RELEASE);
	__atomic_store_n(&ev->changes, ev->changes + 1, __ATOMIC_RELEASE);
	return 0;
}

/* After a change (@mine: ev->changes then): wake the evictor and wait
 * until it has taken the change. With no ufault lock held: the eviction
 * it may be in takes the mm lock. */
static void adopt(struct ufault__evict *ev, uint64_t mine)
{
	kick(ev);
	pthread_mutex_lock(&ev->lock);
	while (ev->started && !ev->stop && ev->adopted < mine)
		pthread_cond_wait(&ev->adopted_cv, &ev->lock);
	pthread_mutex_unlock(&ev->lock);
}

int ufault__evict_set_budget(struct ufault_ctx *ctx, const struct ufault_budget *b)
{
	struct ufault__evict *ev = &ctx->evict;
	struct ufault_budget nb;
	int ret = check_budget(ctx, "budget", b, &nb);
	uint64_t mine;

	if (ret)
		return ret;
	pthread_mutex_lock(&ev->lock);
	ret = set_group(ctx, 0, &nb);
	mine = ev->changes;
	pthread_mutex_unlock(&ev->lock);
	if (!ret)
		adopt(ev, mine);
	return ret;
}

/* A source with a group of its own is gone (ufault__source_put(), from
 * any thread, or from context destruction after the evictor stopped):
 * the evictor frees the group. */
static void group_gone(void *arg, unsigned int g)
{
	struct ufault__evict *ev = arg;

	__atomic_store_n(&ev->groups[g].gone, true, __ATOMIC_RELEASE);
	if (__atomic_load_n(&ev->wake_fd, __ATOMIC_ACQUIRE) >= 0)
		kick(ev);
}

int ufault__evict_set_region_budget(struct ufault_ctx *ctx, uint64_t addr,
				    const struct ufault_budget *b)
{
	struct ufault__evict *ev = &ctx->evict;
	uint64_t sys = ufault__sys_page(), page = addr & ~(sys - 1);
	struct ufault_budget nb;
	struct ufault__mm_held held;
	struct ufault_region *r;
	struct ufault__source *s;
	unsigned int g = 0;
	int ret = check_budget(ctx, "region budget", b, &nb);
	uint64_t mine = 0;

	if (ret)
		return ret;
	/* The region (so its source) stays while the range is read-locked. */
	ufault__mm_read_lock(&ctx->mm, &held, page, page + sys);
	r = ufault__regions_first(&ctx->regions, page, page + sys);
	if (!r || !(r->flags & UFAULT_REGION_WRITEBACK)) {
		ufault__warn(&ctx->log, "region budget: %#llx is not in a write-back region",
			     (unsigned long long)addr);
		ret = r ? -EINVAL : -ENOENT;
		goto unlock;
	}
	s = r->src;
	pthread_mutex_lock(&ev->lock);
	g = __atomic_load_n(&s->group, __ATOMIC_RELAXED);
	if (!g && nb.bytes) {
		for (g = 1; g < UFAULT__EVICT_GROUPS; g++)
			if (!ev->groups[g].used &&
			    !__atomic_load_n(&ev->groups[g].gone, __ATOMIC_ACQUIRE))
				break;
		if (g == UFAULT__EVICT_GROUPS) {
			ufault__warn(&ctx->log, "region budget: %u regions have one already",
				     UFAULT__EVICT_GROUPS - 1);
			ret = -ENOSPC;
		}
	}
	if (!ret && g)
		ret = set_group(ctx, g, &nb);
	if (!ret && g) {
		s->group_arg = ev;
		s->group_gone = group_gone;
		__atomic_store_n(&s->group, nb.bytes ? g : 0, __ATOMIC_RELEASE);
	}
	mine = ev->changes;
	pthread_mutex_unlock(&ev->lock);
unlock:
	ufault__mm_read_unlock(&ctx->mm, &held);
	if (!ret && g)
		adopt(ev, mine);
	return ret;
}

void ufault__evict_stop(struct ufault_ctx *ctx)
{
	struct ufault__evict *ev = &ctx->evict;
	bool started;

	pthread_mutex_lock(&ev->lock);
	ev->stop = true;
	started = ev->started;
	pthread_cond_broadcast(&ev->adopted_cv);
	pthread_mutex_unlock(&ev->lock);
	if (started) {
		kick(ev);
		pthread_join(ev->thread, NULL);
	}
	__atomic_store_n(&ev->active, false, __ATOMIC_RELEASE);
}

void ufault__evict_destroy(struct ufault_ctx *ctx)
{
	struct ufault__evict *ev = &ctx->evict;

	if (ev->scratch)
		munmap(ev->scratch, (size_t)ctx->nr_uffds * ufault__sys_page());
	if (ev->buf)
		ufault__pages_unmap(ev->buf, 2 * ufault__sys_page());
	ev->buf = NULL;
	if (ev->logs)
		ufault__pages_unmap(ev->logs, ev->logs_bytes);
	ev->logs = NULL;
	ev->scratch = NULL;
	if (ev->wake_fd >= 0) {
		int fd = ev->wake_fd;

		/* Sources freed after this (group_gone) do not kick. */
		__atomic_store_n(&ev->wake_fd, -1, __ATOMIC_RELEASE);
		close(fd);
	}
	pthread_cond_destroy(&ev->adopted_cv);
	pthread_mutex_destroy(&ev->lock);
}
