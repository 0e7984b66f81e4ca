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

void ufault__evict_note(struct ufault__evict *ev, unsigned int id, uint64_t addr, uint64_t len)
{
	struct ufault__evict_log *l = &ev->logs[id];
	unsigned int head = __atomic_load_n(&l->head, __ATOMIC_ACQUIRE), tail = l->tail;
	uint64_t sys = ufault__sys_page();

	for (uint64_t a = addr; a < addr + len && tail - head < UFAULT__EVICT_LOG; a += sys)
		l->ring[tail++ % UFAULT__EVICT_LOG] = a;
	/* A full ring drops the rest: those pages are not counted. */
	__atomic_store_n(&l->tail, tail, __ATOMIC_RELEASE);
	l->since_kick += (unsigned int)(len / sys);
	if (l->since_kick >= KICK_EVERY || tail - head > UFAULT__EVICT_LOG / 2) {
		l->since_kick = 0;
		kick(ev);
	}
}

bool ufault__evict_full(const struct ufault__evict *ev, unsigned int id)
{
	uint64_t limit = __atomic_load_n(&ev->limit, __ATOMIC_RELAXED);
	const struct ufault__evict_log *l = &ev->logs[id];

	return limit && __atomic_load_n(&ev->resident, __ATOMIC_RELAXED) +
				(__atomic_load_n(&l->tail, __ATOMIC_RELAXED) -
				 __atomic_load_n(&l->head, __ATOMIC_RELAXED)) >=
			    limit;
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
	__atomic_store_n(&ev->busy, 0, __ATOMIC_RELEASE);
	ufault__workers_poke(ctx); /* the installs deferred on it */
	if (out == EVICTED)
		__atomic_fetch_add(&ev->evicted, 1, __ATOMIC_RELAXED);
unlock:
	ufault__mm_write_unlock(&ctx->mm, &held);
	return out;
}

static void drain(struct ufault__evict *ev, struct ufault__pool *pool)
{
	for (unsigned int i = 0; i < ev->nr_logs; i++) {
		struct ufault__evict_log *l = &ev->logs[i];
		unsigned int tail = __atomic_load_n(&l->tail, __ATOMIC_ACQUIRE), head = l->head;

		for (; head != tail; head++)
			if (ufault__pool_note_installed(pool, l->ring[head % UFAULT__EVICT_LOG]))
				__atomic_fetch_add(&ev->refaults, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&l->head, head, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&ev->resident, ufault__pool_resident(pool), __ATOMIC_RELAXED);
}

static void *evictor_main(void *arg)
{
	struct ufault_ctx *ctx = arg;
	struct ufault__evict *ev = &ctx->evict;
	uint64_t sys = ufault__sys_page(), high = 0, low = 0, limit = 0;
	struct ufault__pool pool = {0};
	unsigned int seq = 0;
	bool evicting = false;

	for (;;) {
		struct pollfd p = {.fd = ev->wake_fd, .events = POLLIN};
		uint64_t v;

		pthread_mutex_lock(&ev->lock);
		if (ev->stop) {
			pthread_mutex_unlock(&ev->lock);
			break;
		}
		if (seq != ev->budget_seq) {
			const struct ufault_budget *b = &ev->budget;
			uint64_t pages = b->bytes / sys;
			struct ufault__pool next;

			if (!ufault__pool_init(&next,
					       b->policy == UFAULT_EVICT_FIFO ? &ufault__policy_fifo
									      : &ufault__policy_2q,
					       pages)) {
				if (pool.e)
					ufault__pool_carry(&next, &pool);
				ufault__pool_destroy(&pool);
				pool = next;
				high = pages * b->high_pct / 100;
				low = pages * b->low_pct / 100;
				/* A little over the budget: faults wait. */
				limit = pages ? pages + (pages / 32 > 32 ? pages / 32 : 32) : 0;
				__atomic_store_n(&ev->limit, limit, __ATOMIC_RELAXED);
				seq = ev->budget_seq;
			}
		}
		pthread_mutex_unlock(&ev->lock);
		if (pool.e) {
			drain(ev, &pool);
			if (high && ufault__pool_resident(&pool) >= high)
				evicting = true;
			for (unsigned int n = 0; evicting && ufault__pool_resident(&pool) > low;
			     n++) {
				uint64_t a = ufault__pool_take_victim(&pool);
				enum outcome o;

				if (!a)
					break;
				o = evict_one(ctx, a);
				if (o == KEPT) {
					ufault__pool_put_back(&pool, a);
					/* Stuck for now: faults must not wait on
					 * it; look again later, not in a loop. */
					__atomic_store_n(&ev->limit, 0, __ATOMIC_RELAXED);
					ufault__workers_poke(ctx);
					break;
				}
				ufault__pool_evicted(&pool, a);
				__atomic_store_n(&ev->limit, limit, __ATOMIC_RELAXED);
				__atomic_store_n(&ev->resident, ufault__pool_resident(&pool),
						 __ATOMIC_RELAXED);
				if (n % DRAIN_EVERY == DRAIN_EVERY - 1)
					drain(ev, &pool);
			}
			if (!high || ufault__pool_resident(&pool) <= low)
				evicting = false;
			__atomic_store_n(&ev->resident, ufault__pool_resident(&pool),
					 __ATOMIC_RELAXED);
		}
		if (poll(&p, 1, evicting ? 0 : IDLE_POLL_MS) > 0 &&
		    read(ev->wake_fd, &v, sizeof(v)) < 0)
			v = 0;
	}
	ufault__pool_destroy(&pool);
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
	ev->scratch =
	    mmap(NULL, scratch_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ev->scratch == MAP_FAILED) {
		ret = -errno;
		goto free_logs;
	}
	for (unsigned int i = 0; i < ctx->nr_uffds; i++) {
		ret =
		    ufault__uffd_register(ctx->uffds[i], (uint64_t)(uintptr_t)ev->scratch + i * sys,
					  sys, UFFDIO_REGISTER_MODE_MISSING, NULL);
		if (ret)
			goto unmap;
	}
	ret = -pthread_create(&ev->thread, NULL, evictor_main, ctx);
	if (ret)
		goto unmap;
	ev->started = true;
	return 0;
unmap:
	munmap(ev->scratch, scratch_len);
free_logs:
	ufault__pages_unmap(ev->logs, ev->logs_bytes);
	ev->logs = NULL;
	ev->scratch = NULL;
	return ret;
}

int ufault__evict_set_budget(struct ufault_ctx *ctx, const struct ufault_budget *b)
{
	struct ufault__evict *ev = &ctx->evict;
	struct ufault_budget nb;
	int ret = 0;

	/* 0.4's struct is the first: its size is the only one known. */
	if (!b || b->size != sizeof(*b)) {
		ufault__warn(&ctx->log, "budget: NULL or size %zu, expected %zu", b ? b->size : 0,
			     sizeof(*b));
		return -EINVAL;
	}
	nb = *b;
	if (!nb.high_pct && !nb.low_pct) {
		nb.high_pct = 100;
		nb.low_pct = 90;
	}
	if (!nb.low_pct || nb.low_pct >= nb.high_pct || nb.high_pct > 100 ||
	    (unsigned int)nb.policy > UFAULT_EVICT_FIFO) {
		ufault__warn(
		    &ctx->log,
		    "budget: watermarks %u%%/%u%% (want 0 < low < high <= 100) or policy %d",
		    nb.high_pct, nb.low_pct, (int)nb.policy);
		return -EINVAL;
	}
	if (nb.bytes && !(ctx->features & UFFD_FEATURE_MOVE)) {
		ufault__warn(&ctx->log,
			     "budget: eviction needs UFFDIO_MOVE (Linux 6.8), which this "
			     "kernel lacks");
		return -EOPNOTSUPP;
	}
	if (nb.bytes && ufault__writeback_usable(&ctx->wb))
		return -EOPNOTSUPP;
	pthread_mutex_lock(&ev->lock);
	if (nb.bytes && !ev->started)
		ret = start(ctx);
	if (!ret) {
		ev->budget = nb;
		ev->budget_seq++;
		__atomic_store_n(&ev->active, nb.bytes != 0, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&ev->lock);
	if (!ret)
		kick(ev);
	return ret;
}

void ufault__evict_stop(struct ufault_ctx *ctx)
{
	struct ufault__evict *ev = &ctx->evict;
	bool started;

	pthread_mutex_lock(&ev->lock);
	ev->stop = true;
	started = ev->started;
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
	if (ev->logs)
		ufault__pages_unmap(ev->logs, ev->logs_bytes);
	ev->logs = NULL;
	ev->scratch = NULL;
	if (ev->wake_fd >= 0)
		close(ev->wake_fd);
	ev->wake_fd = -1;
	pthread_mutex_destroy(&ev->lock);
}
