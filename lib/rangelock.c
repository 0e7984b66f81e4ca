/* SPDX-License-Identifier: MIT */
/*
 * rangelock.c - fair reader/writer interval lock (after Bueso's range lock,
 * kernel/locking/range_lock.c, 2017-19).
 *
 * A short internal spinlock protects an arrival-ordered queue of requests
 * (struct ufault_range, caller storage). Lock: append, count the earlier
 * conflicting entries; 0 means owned, otherwise sleep on the request's own
 * futex word. Unlock: remove, decrement the count of each later conflicting
 * entry, then grant and wake those that reached 0 after dropping the spinlock.
 * The queue holds about one entry per thread, so a linear scan beats an
 * interval tree here and keeps the uncontended path to two short critical
 * sections.
 *
 * This file touches nothing but the lock and the requests passed to it.
 */
#include <assert.h>
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ufault/rangelock.h>

#include "rangelock_internal.h"
#include "util.h"

/* Bounded spins before sleeping: cheap handoffs stay in user space. */
#define MUTEX_SPIN 100
#define WAIT_SPIN 200

static void futex_wait(uint32_t *word, uint32_t val)
{
	/* EAGAIN (word changed), EINTR, spurious: the callers loop. */
	syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(uint32_t *word, int nr)
{
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, nr, NULL, NULL, 0);
}

/*
 * Internal lock: a test-and-test-and-set spinlock, as the kernel's range lock
 * uses a spinlock for its tree. It is held for a short list walk only, so
 * release is a plain store (one atomic RMW per critical section keeps the
 * uncontended path near pthread_rwlock's cost). A waiter that spins past
 * MUTEX_SPIN yields the CPU, so a preempted holder is not starved.
 */
static inline void mutex_lock(uint32_t *m)
{
	for (;;) {
		uint32_t c = 0;

		if (__atomic_compare_exchange_n(m, &c, 1, false, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return;
		for (int i = 0; __atomic_load_n(m, __ATOMIC_RELAXED) != 0; i++) {
			if (i < MUTEX_SPIN) {
				ufault__cpu_relax();
			} else {
				sched_yield();
				i = 0;
			}
		}
	}
}

static inline void mutex_unlock(uint32_t *m)
{
	__atomic_store_n(m, 0, __ATOMIC_RELEASE);
}

static inline void queue_append(struct ufault_rangelock *rl, struct ufault_range *r)
{
	r->next = NULL;
	r->prev = rl->tail;
	if (rl->tail)
		rl->tail->next = r;
	else
		rl->head = r;
	rl->tail = r;
	rl->nr++;
}

unsigned int ufault__rangelock_enqueue(struct ufault_rangelock *rl, struct ufault_range *r)
{
	unsigned int n = 0;

	for (struct ufault_range *e = rl->head; e; e = e->next)
		n += ufault__range_conflict(e, r);
	r->blocking = n;
	r->granted = n == 0;
	r->wake_next = NULL;
	r->queued = 1;
	queue_append(rl, r);
	return n;
}

bool ufault__rangelock_tryenqueue(struct ufault_rangelock *rl, struct ufault_range *r)
{
	for (struct ufault_range *e = rl->head; e; e = e->next)
		if (ufault__range_conflict(e, r))
			return false;
	r->blocking = 0;
	r->granted = 1;
	r->wake_next = NULL;
	r->queued = 1;
	queue_append(rl, r);
	return true;
}

struct ufault_range *ufault__rangelock_dequeue(struct ufault_rangelock *rl, struct ufault_range *r)
{
	struct ufault_range *wake = NULL, **wtail = &wake;

	/* Only entries that arrived after @r counted it. */
	for (struct ufault_range *e = r->next; e; e = e->next) {
		if (!ufault__range_conflict(e, r))
			continue;
		assert(e->blocking > 0);
		if (--e->blocking == 0) {
			e->wake_next = NULL;
			*wtail = e;
			wtail = &e->wake_next;
		}
	}
	if (r->prev)
		r->prev->next = r->next;
	else
		rl->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		rl->tail = r->prev;
	rl->nr--;
	r->prev = r->next = NULL;
	r->queued = 0;
	return wake;
}

void ufault__rangelock_count(struct ufault_rangelock *rl, unsigned int *queued,
			     unsigned int *waiting)
{
	unsigned int w = 0;

	mutex_lock(&rl->lock);
	for (struct ufault_range *e = rl->head; e; e = e->next)
		w += e->blocking != 0;
	if (queued)
		*queued = rl->nr;
	if (waiting)
		*waiting = w;
	mutex_unlock(&rl->lock);
}

int ufault_rangelock_init(struct ufault_rangelock *rl)
{
	if (!rl)
		return -EINVAL;
	rl->lock = 0;
	rl->nr = 0;
	rl->head = rl->tail = NULL;
	return 0;
}

void ufault_rangelock_destroy(struct ufault_rangelock *rl)
{
	if (!rl)
		return;
	assert(rl->nr == 0 && rl->head == NULL);
}

static inline void range_prepare(struct ufault_range *r, uint64_t start, uint64_t end, bool writer)
{
	r->start = start;
	r->end = end;
	r->writer = writer;
	r->queued = 0;
}

static void range_wait(struct ufault_range *r)
{
	for (int i = 0; i < WAIT_SPIN; i++) {
		if (ufault__range_is_granted(r))
			return;
		ufault__cpu_relax();
	}
	while (!ufault__range_is_granted(r))
		futex_wait(&r->granted, 0);
}

static inline void range_lock(struct ufault_rangelock *rl, struct ufault_range *r, uint64_t start,
			      uint64_t end, bool writer)
{
	unsigned int blockers;

	range_prepare(r, start, end, writer);
	assert(start < end && "ufault range lock: empty or inverted range");
	if (start >= end)
		return; /* release build: nothing to protect, unlock is a no-op */
	mutex_lock(&rl->lock);
	blockers = ufault__rangelock_enqueue(rl, r);
	mutex_unlock(&rl->lock);
	if (blockers)
		range_wait(r);
}

static inline bool range_trylock(struct ufault_rangelock *rl, struct ufault_range *r,
				 uint64_t start, uint64_t end, bool writer)
{
	bool ok;

	range_prepare(r, start, end, writer);
	if (start >= end)
		return false;
	mutex_lock(&rl->lock);
	ok = ufault__rangelock_tryenqueue(rl, r);
	mutex_unlock(&rl->lock);
	return ok;
}

static inline void range_unlock(struct ufault_rangelock *rl, struct ufault_range *r)
{
	struct ufault_range *wake, *next;

	if (!r->queued)
		return; /* invalid range, never queued */
	assert(ufault__range_is_granted(r));
	mutex_lock(&rl->lock);
	wake = ufault__rangelock_dequeue(rl, r);
	mutex_unlock(&rl->lock);
	/* Outside the spinlock: woken threads must not spin on it at once. */
	for (; wake; wake = next) {
		next = wake->wake_next; /* @wake may be gone once granted */
		ufault__range_mark_granted(wake);
		/* A stale wake of a reused word is only a spurious wake-up. */
		futex_wake(&wake->granted, 1);
	}
}

void ufault_range_read_lock(struct ufault_rangelock *rl, struct ufault_range *r, uint64_t start,
			    uint64_t end)
{
	range_lock(rl, r, start, end, false);
}

void ufault_range_write_lock(struct ufault_rangelock *rl, struct ufault_range *r, uint64_t start,
			     uint64_t end)
{
	range_lock(rl, r, start, end, true);
}

bool ufault_range_read_trylock(struct ufault_rangelock *rl, struct ufault_range *r, uint64_t start,
			       uint64_t end)
{
	return range_trylock(rl, r, start, end, false);
}

bool ufault_range_write_trylock(struct ufault_rangelock *rl, struct ufault_range *r, uint64_t start,
				uint64_t end)
{
	return range_trylock(rl, r, start, end, true);
}

void ufault_range_read_unlock(struct ufault_rangelock *rl, struct ufault_range *r)
{
	assert(!r->writer);
	range_unlock(rl, r);
}

void ufault_range_write_unlock(struct ufault_rangelock *rl, struct ufault_range *r)
{
	assert(r->writer);
	range_unlock(rl, r);
}
