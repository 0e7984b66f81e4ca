/* SPDX-License-Identifier: MIT */
/*
 * rangelock.h - fair reader/writer interval lock (Bueso's range lock).
 *
 * A range lock protects the half-open interval [start, end) of a 64-bit
 * space (for ufault: addresses). Readers of overlapping ranges share; a
 * writer excludes every overlapping reader and writer; requests whose ranges
 * do not overlap never wait for each other ([0,10) and [10,20) do not
 * overlap).
 *
 * Fairness: requests are served in arrival order among those that conflict.
 * A request waits for every earlier request, held or still waiting, that
 * conflicts with it, so a later request never overtakes an earlier
 * conflicting one (no lock stealing, no starvation). A reader that would be
 * compatible with the current holders still queues behind an earlier waiting
 * writer it overlaps. Consequence, as for any fair rwlock: a thread that holds
 * a range and then blocks on a second range can deadlock with a writer that
 * queued in between; take nested ranges with trylock or in one request.
 *
 * Each request is described by a caller-provided struct ufault_range
 * (typically on the stack) that stays in use from lock to unlock; the lock
 * never allocates. Waiters sleep (futex), they do not spin beyond a brief
 * bounded spin.
 *
 * Invalid ranges (start >= end): an empty or inverted range covers nothing.
 * The trylock functions return false for it. The blocking lock functions
 * assert() in debug builds (NDEBUG undefined); in release builds they return
 * at once without queueing, and the matching unlock is a no-op. The lock is
 * never corrupted and release builds never abort.
 *
 * Everything below is thread-safe; a struct ufault_range belongs to the
 * thread that locks it until it unlocks it.
 */
#ifndef UFAULT_RANGELOCK_H
#define UFAULT_RANGELOCK_H

#include <stdbool.h>
#include <stdint.h>

#include <ufault/ufault.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * struct ufault_range - one lock request; caller-provided storage.
 *
 * Fields are private to the lock. The structure must not be moved, reused or
 * freed between lock and unlock.
 */
struct ufault_range {
	uint64_t start;
	uint64_t end;
	struct ufault_range *prev; /* arrival-ordered queue */
	struct ufault_range *next;
	struct ufault_range *wake_next; /* unlocker's private wake list */
	uint32_t blocking;		/* earlier conflicting entries, under rl->lock */
	uint32_t granted;		/* futex word: 0 waiting, 1 owner */
	uint8_t writer;
	uint8_t queued; /* 0: invalid range, never entered the queue */
};

/**
 * struct ufault_rangelock - the lock. May be embedded in any structure.
 *
 * Fields are private. Initialise with ufault_rangelock_init().
 */
struct ufault_rangelock {
	uint32_t lock;		   /* internal spinlock: 0 free, 1 held */
	uint32_t nr;		   /* entries queued (holders + waiters) */
	struct ufault_range *head; /* oldest request */
	struct ufault_range *tail; /* newest request */
};

/**
 * ufault_rangelock_init() - initialise a range lock with no holders.
 * @rl: the lock.
 *
 * Does not block, does not allocate.
 *
 * Return: 0, or -EINVAL if @rl is NULL.
 */
UFAULT_API int ufault_rangelock_init(struct ufault_rangelock *rl);

/**
 * ufault_rangelock_destroy() - release a range lock's resources.
 * @rl: the lock; no range may be held or waited for.
 *
 * Does not block. Destroying a lock that still has requests queued is a
 * programming error caught by assert() in debug builds. NULL is ignored.
 */
UFAULT_API void ufault_rangelock_destroy(struct ufault_rangelock *rl);

/**
 * ufault_range_read_lock() - lock [@start, @end) for reading.
 * @rl: the lock.
 * @r: caller storage describing this request, used until the unlock.
 * @start: first unit covered.
 * @end: one past the last unit covered; must be greater than @start.
 *
 * Shares the range with overlapping readers; waits for every earlier
 * overlapping writer, held or waiting.
 *
 * May block (sleeps on a futex). Takes @rl's internal spinlock briefly.
 * Invalid range: see the file comment (assert in debug, no-op in release).
 */
UFAULT_API void ufault_range_read_lock(struct ufault_rangelock *rl, struct ufault_range *r,
				       uint64_t start, uint64_t end);

/**
 * ufault_range_write_lock() - lock [@start, @end) exclusively.
 * @rl: the lock.
 * @r: caller storage describing this request, used until the unlock.
 * @start: first unit covered.
 * @end: one past the last unit covered; must be greater than @start.
 *
 * Waits for every earlier overlapping request, reader or writer, held or
 * waiting.
 *
 * May block (sleeps on a futex). Takes @rl's internal spinlock briefly.
 * Invalid range: see the file comment (assert in debug, no-op in release).
 */
UFAULT_API void ufault_range_write_lock(struct ufault_rangelock *rl, struct ufault_range *r,
					uint64_t start, uint64_t end);

/**
 * ufault_range_read_trylock() - lock [@start, @end) for reading if possible now.
 * @rl: the lock.
 * @r: caller storage, used until the unlock if the lock was acquired.
 * @start: first unit covered.
 * @end: one past the last unit covered.
 *
 * Succeeds only if no earlier request (held or waiting) that overlaps is a
 * writer; it never queues, so a waiting writer is never overtaken.
 *
 * Does not sleep; may wait briefly for @rl's internal spinlock.
 *
 * Return: true if acquired (release with ufault_range_read_unlock()), false
 * if it would have to wait or if @start >= @end.
 */
UFAULT_API bool ufault_range_read_trylock(struct ufault_rangelock *rl, struct ufault_range *r,
					  uint64_t start, uint64_t end);

/**
 * ufault_range_write_trylock() - lock [@start, @end) exclusively if possible now.
 * @rl: the lock.
 * @r: caller storage, used until the unlock if the lock was acquired.
 * @start: first unit covered.
 * @end: one past the last unit covered.
 *
 * Succeeds only if no request at all (held or waiting) overlaps.
 *
 * Does not sleep; may wait briefly for @rl's internal spinlock.
 *
 * Return: true if acquired (release with ufault_range_write_unlock()), false
 * if it would have to wait or if @start >= @end.
 */
UFAULT_API bool ufault_range_write_trylock(struct ufault_rangelock *rl, struct ufault_range *r,
					   uint64_t start, uint64_t end);

/**
 * ufault_range_read_unlock() - release a range locked for reading.
 * @rl: the lock.
 * @r: the request passed to the read lock; free to reuse on return.
 *
 * Wakes the later waiters whose last conflicting predecessor this was.
 * Does not sleep; may wait briefly for @rl's internal spinlock.
 */
UFAULT_API void ufault_range_read_unlock(struct ufault_rangelock *rl, struct ufault_range *r);

/**
 * ufault_range_write_unlock() - release a range locked for writing.
 * @rl: the lock.
 * @r: the request passed to the write lock; free to reuse on return.
 *
 * Wakes the later waiters whose last conflicting predecessor this was.
 * Does not sleep; may wait briefly for @rl's internal spinlock.
 */
UFAULT_API void ufault_range_write_unlock(struct ufault_rangelock *rl, struct ufault_range *r);

#ifdef __cplusplus
}
#endif

#endif /* UFAULT_RANGELOCK_H */
