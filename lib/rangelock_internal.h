/* SPDX-License-Identifier: MIT */
/*
 * rangelock_internal.h - the range lock's queueing logic as plain step
 * functions, callable without threads. lib/rangelock.c wraps them with the
 * internal spinlock and the futex sleep/wake; tests/unit/test_rangelock_model.c
 * drives them from a deterministic scheduler.
 *
 * The queue is a list in arrival order. An entry's @blocking is the number of
 * earlier entries still queued that conflict with it; it owns its range when
 * that count is 0. Only later entries count an entry, so when an entry leaves
 * it only has to look at the entries after it.
 */
#ifndef UFAULT_LIB_RANGELOCK_INTERNAL_H
#define UFAULT_LIB_RANGELOCK_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <ufault/rangelock.h>

/* Two requests conflict if they overlap and at least one writes. */
static inline bool ufault__range_conflict(const struct ufault_range *a,
					  const struct ufault_range *b)
{
	return (a->writer | b->writer) && a->start < b->end && b->start < a->end;
}

/*
 * Step functions; the caller holds rl->lock (or is single-threaded).
 * @r->start, @r->end, @r->writer are set by the caller; start < end.
 */

/* Append @r, count its blockers; returns that count (0: @r owns its range). */
unsigned int ufault__rangelock_enqueue(struct ufault_rangelock *rl, struct ufault_range *r);

/* Append @r and return true only if nothing queued conflicts with it. */
bool ufault__rangelock_tryenqueue(struct ufault_rangelock *rl, struct ufault_range *r);

/*
 * Remove @r; return the later entries whose blocking count reached 0,
 * linked by wake_next (NULL-terminated), in arrival order. The caller must
 * hand each one the lock with ufault__range_mark_granted() (and wake it).
 */
struct ufault_range *ufault__rangelock_dequeue(struct ufault_rangelock *rl, struct ufault_range *r);

/*
 * Snapshot for tests and debugging: entries queued and, of those, waiting.
 * Takes rl->lock. Does not block for long.
 */
void ufault__rangelock_count(struct ufault_rangelock *rl, unsigned int *queued,
			     unsigned int *waiting);

/* Publish ownership to the waiter (release: its critical section sees ours). */
static inline void ufault__range_mark_granted(struct ufault_range *r)
{
	__atomic_store_n(&r->granted, 1, __ATOMIC_RELEASE);
}

static inline bool ufault__range_is_granted(const struct ufault_range *r)
{
	return __atomic_load_n(&r->granted, __ATOMIC_ACQUIRE) != 0;
}

#endif /* UFAULT_LIB_RANGELOCK_INTERNAL_H */
