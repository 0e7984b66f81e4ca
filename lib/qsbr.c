/* SPDX-License-Identifier: MIT */
/*
 * qsbr.c - quiescent-state-based reclamation.
 *
 * Each reader owns one slot counter: +1 going online (odd), +2 at each
 * quiescent state (stays odd), +1 going offline (even). Nothing else writes
 * it, so the fault path touches no shared cache line.
 *
 * Retired items collect on "retired". ufault__qsbr_poll() moves them to
 * "waiting" and snapshots every counter once for the batch. The batch has
 * expired when each slot was offline at the snapshot (even value) or has
 * since changed its counter (went offline or through a quiescent state):
 * either way the reader has dropped every pointer it could have taken
 * before the items were unlinked. One snapshot per batch instead of one per
 * item keeps retirement free of allocation; an item waits at most two
 * grace periods.
 *
 * Memory ordering, the Dekker pair at the heart of it:
 *   reader:  store ctr (online/quiescent)  ;  full fence ;  load index
 *   poller:  unlink (earlier, by the retirer) ; full fence ; load ctr
 * Without the reader's fence its index loads could be satisfied before
 * its counter store became visible; the poller would then read the old
 * counter (offline, or already "advanced"), consider the reader harmless,
 * and free a node the reader had just found. Without the poller's fence
 * its counter loads could pass the unlink. With both fences, either the
 * poller sees the new counter (and waits for the next one) or the reader's
 * loads see the node unlinked. The stores that end a read-side section
 * (quiescent, offline) are releases, paired with the poller's acquire
 * loads, so everything the reader did with the old pointers happens before
 * free_fn (which is also what ThreadSanitizer checks).
 *
 * GCC rejects __atomic_thread_fence under -fsanitize=thread; there the
 * reader's store+fence becomes a seq_cst exchange and the poller's fence
 * a seq_cst load, which TSan models (and which is also correct).
 */
#include "qsbr.h"
#include "witness.h"
#include "alloc.h"

#include <errno.h>
#include <stdbool.h>
#include <time.h>

#if defined(__SANITIZE_THREAD__)
#define QSBR_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define QSBR_TSAN 1
#endif
#endif

static inline void slot_store_mb(uint64_t *ctr, uint64_t v)
{
#ifdef QSBR_TSAN
	(void)__atomic_exchange_n(ctr, v, __ATOMIC_SEQ_CST);
#else
	__atomic_store_n(ctr, v, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

static inline void poller_mb(void)
{
#ifndef QSBR_TSAN
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

static inline uint64_t slot_load(const uint64_t *ctr)
{
#ifdef QSBR_TSAN
	return __atomic_load_n(ctr, __ATOMIC_SEQ_CST);
#else
	return __atomic_load_n(ctr, __ATOMIC_ACQUIRE);
#endif
}

int ufault__qsbr_init(struct ufault__qsbr *q, unsigned int nr_slots)
{
	size_t slots_len = (size_t)nr_slots * sizeof(struct ufault__qsbr_slot);
	size_t len = slots_len + (size_t)nr_slots * sizeof(uint64_t);
	char *mem;
	int err;

	if (nr_slots == 0)
		len = sizeof(struct ufault__qsbr_slot);
	mem = ufault__pages_map(len); /* zeroed: every slot offline */
	if (!mem)
		return -ENOMEM;
	err = pthread_mutex_init(&q->lock, NULL);
	if (err) {
		ufault__pages_unmap(mem, len);
		return -err;
	}
	q->slots = (struct ufault__qsbr_slot *)mem;
	q->snap = (uint64_t *)(mem + slots_len);
	q->nr_slots = nr_slots;
	q->map_len = len;
	q->retired = NULL;
	q->waiting = NULL;
	return 0;
}

static unsigned int free_list(struct ufault__qsbr_item *it)
{
	unsigned int n = 0;

	while (it) {
		struct ufault__qsbr_item *next = it->next;

		it->free_fn(it);
		it = next;
		n++;
	}
	return n;
}

void ufault__qsbr_forget(struct ufault__qsbr *q)
{
	ufault__pages_unmap(q->slots, q->map_len);
	q->slots = NULL;
	q->snap = NULL;
}

void ufault__qsbr_destroy(struct ufault__qsbr *q)
{
	free_list(q->waiting);
	free_list(q->retired);
	q->waiting = NULL;
	q->retired = NULL;
	pthread_mutex_destroy(&q->lock);
	ufault__pages_unmap(q->slots, q->map_len);
	q->slots = NULL;
	q->snap = NULL;
	q->nr_slots = 0;
}

void ufault__qsbr_online(struct ufault__qsbr *q, unsigned int slot)
{
	uint64_t *ctr = &q->slots[slot].ctr;

	slot_store_mb(ctr, *ctr + 1);
}

void ufault__qsbr_quiescent(struct ufault__qsbr *q, unsigned int slot)
{
	uint64_t *ctr = &q->slots[slot].ctr;

	slot_store_mb(ctr, *ctr + 2);
}

void ufault__qsbr_offline(struct ufault__qsbr *q, unsigned int slot)
{
	uint64_t *ctr = &q->slots[slot].ctr;

	__atomic_store_n(ctr, *ctr + 1, __ATOMIC_RELEASE);
}

void ufault__qsbr_retire(struct ufault__qsbr *q, struct ufault__qsbr_item *item)
{
	pthread_mutex_lock(&q->lock);
	ufault__witness_acquire(UFAULT__RANK_QSBR, false);
	item->next = q->retired;
	__atomic_store_n(&q->retired, item, __ATOMIC_RELAXED);
	ufault__witness_release(UFAULT__RANK_QSBR);
	pthread_mutex_unlock(&q->lock);
}

/* Called with q->lock held. */
static bool batch_expired(struct ufault__qsbr *q)
{
	unsigned int i;

	for (i = 0; i < q->nr_slots; i++) {
		uint64_t s = q->snap[i];

		if ((s & 1) && slot_load(&q->slots[i].ctr) == s)
			return false;
	}
	return true;
}

/* Called with q->lock held and q->waiting empty. */
static void start_batch(struct ufault__qsbr *q)
{
	unsigned int i;

	__atomic_store_n(&q->waiting, q->retired, __ATOMIC_RELAXED);
	__atomic_store_n(&q->retired, NULL, __ATOMIC_RELAXED);
	/* The items were unlinked before retire; order that before the loads. */
	poller_mb();
	for (i = 0; i < q->nr_slots; i++)
		q->snap[i] = slot_load(&q->slots[i].ctr);
}

unsigned int ufault__qsbr_poll(struct ufault__qsbr *q)
{
	struct ufault__qsbr_item *done = NULL;

	/* Cheap exit for the common case; the heads are only hints here. */
	if (!__atomic_load_n(&q->waiting, __ATOMIC_RELAXED) &&
	    !__atomic_load_n(&q->retired, __ATOMIC_RELAXED))
		return 0;

	pthread_mutex_lock(&q->lock);
	ufault__witness_acquire(UFAULT__RANK_QSBR, false);
	if (q->waiting && batch_expired(q)) {
		done = q->waiting;
		__atomic_store_n(&q->waiting, NULL, __ATOMIC_RELAXED);
	}
	if (!q->waiting && q->retired) {
		start_batch(q);
		/* Readers that were offline everywhere: no need to wait. */
		if (batch_expired(q)) {
			struct ufault__qsbr_item *it = q->waiting, *last = it;

			while (last->next)
				last = last->next;
			last->next = done;
			done = it;
			__atomic_store_n(&q->waiting, NULL, __ATOMIC_RELAXED);
		}
	}
	ufault__witness_release(UFAULT__RANK_QSBR);
	pthread_mutex_unlock(&q->lock);
	return free_list(done);
}

void ufault__qsbr_drain(struct ufault__qsbr *q)
{
	struct timespec ts = {0, 10 * 1000}; /* 10 us, doubling to 1 ms */

	for (;;) {
		bool empty;

		ufault__qsbr_poll(q);
		pthread_mutex_lock(&q->lock);
		ufault__witness_acquire(UFAULT__RANK_QSBR, false);
		empty = !q->waiting && !q->retired;
		ufault__witness_release(UFAULT__RANK_QSBR);
		pthread_mutex_unlock(&q->lock);
		if (empty)
			return;
		nanosleep(&ts, NULL);
		if (ts.tv_nsec < 1000 * 1000)
			ts.tv_nsec *= 2;
	}
}
