/* SPDX-License-Identifier: MIT */
/*
 * witness.h - a debug-build lock-order checker, in the manner of jemalloc's
 * witness.h. Every lock of the library has a rank; a thread may only
 * acquire a lock of a rank strictly above every lock it already holds:
 *
 *   mm (range lock or global rwlock) < ctx list < tree < region < remap
 *                                    < watch < qsbr < slab
 *
 * Two more rules, for the constraints DESIGN.md names:
 *  - a worker (a thread that reads a uffd) only ever try-locks a lock a
 *    proxy can hold across a system call (the mm rank): with non-cooperative
 *    events a proxy's munmap/mremap waits for a worker to read its event;
 *  - no ufault lock is held where user code that may call back into ufault
 *    runs (release hooks): ufault__witness_assert_unlocked().
 *
 * Built with UFAULT_WITNESS (the Debug and sanitizer builds); otherwise
 * every call compiles to nothing. A violation prints both locks and aborts.
 */
#ifndef UFAULT_LIB_WITNESS_H
#define UFAULT_LIB_WITNESS_H

#include <stdbool.h>

enum ufault__lock_rank {
	UFAULT__RANK_MM = 0,  /* range lock or global rwlock: held across syscalls */
	UFAULT__RANK_CTXLIST, /* the process's list of contexts */
	UFAULT__RANK_TREE,    /* a context's tree lock */
	UFAULT__RANK_REGION,  /* a region's rwlock */
	UFAULT__RANK_REMAP,   /* mremap announcements */
	UFAULT__RANK_WATCH,   /* a source's fd driven by a worker (watch.h) */
	UFAULT__RANK_QSBR,    /* reclamation lists */
	UFAULT__RANK_SLAB,    /* the allocator */
	UFAULT__RANK_NR,
};

#ifdef UFAULT_WITNESS
/* @try: a trylock (succeeded). */
void ufault__witness_acquire(enum ufault__lock_rank rank, bool try);
void ufault__witness_release(enum ufault__lock_rank rank);
/* The calling thread is a worker from now on. */
void ufault__witness_set_worker(void);
/* Abort if the calling thread holds any ufault lock. */
void ufault__witness_assert_unlocked(const char *where);
/* Abort unless the calling thread holds a lock of @rank. */
void ufault__witness_assert_held(enum ufault__lock_rank rank, const char *where);
#else
static inline void ufault__witness_acquire(enum ufault__lock_rank rank, bool try)
{
	(void)rank;
	(void)try;
}
static inline void ufault__witness_release(enum ufault__lock_rank rank)
{
	(void)rank;
}
static inline void ufault__witness_set_worker(void)
{
}
static inline void ufault__witness_assert_unlocked(const char *where)
{
	(void)where;
}
static inline void ufault__witness_assert_held(enum ufault__lock_rank rank, const char *where)
{
	(void)rank;
	(void)where;
}
#endif

#endif
