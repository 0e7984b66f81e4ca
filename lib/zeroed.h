/* SPDX-License-Identifier: MIT */
/*
 * zeroed.h - the ranges a foreign context's owner gave up
 * (UFFD_EVENT_REMOVE: madvise(MADV_DONTNEED/REMOVE), a balloon;
 * UFFD_EVENT_UNMAP): from then on they read as zeros, not as their
 * source. The set only grows (a page filled with zeros is resident; if it
 * is removed again it reads zeros again), sorted and merged.
 *
 * The worker that reads the event adds the range; a fault looks its window
 * up before it fills, and one whose fill began before an addition that
 * overlaps its window fills again (seq), as for evictions (evict.h).
 * The lock is held for a few instructions, never across a system call.
 *
 * The kernel lets the owner's madvise(2) go on (and zap the range) as soon
 * as a worker has read the event, before that worker has added the range:
 * another worker installing meanwhile would put source bytes where zeros
 * belong. So, where the owner enabled these events (guarded), a worker
 * write-holds the guard from before its read(2) until the batch's events
 * are added, and installs read-try-lock it across their check and
 * UFFDIO_COPY (deferred if they cannot: never a wait on the fault path).
 */
#ifndef UFAULT_LIB_ZEROED_H
#define UFAULT_LIB_ZEROED_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct ufault__zeroed_range {
	uint64_t start, end;
};

struct ufault__zeroed {
	pthread_mutex_t lock;
	struct ufault__zeroed_range *v; /* under lock: sorted, disjoint, not adjacent */
	unsigned int n, cap;		/* under lock */
	uint64_t seq;			/* atomic: additions so far */
	bool guarded;			/* the events are on: use guard */
	pthread_rwlock_t guard;		/* readers of the uffd (write), installs (read) */
};

/* 0 or -errno (then @z is all zeros again). */
int ufault__zeroed_init(struct ufault__zeroed *z, bool guarded);
/* Also for a set never initialised, if its memory is zeros (a context's
 * is: an all-zero mutex is PTHREAD_MUTEX_INITIALIZER on Linux). */
void ufault__zeroed_destroy(struct ufault__zeroed *z);

/* [start, end) reads as zeros from now on; 0 or -ENOMEM (then it is not). */
int ufault__zeroed_add(struct ufault__zeroed *z, uint64_t start, uint64_t end);

static inline uint64_t ufault__zeroed_seq(const struct ufault__zeroed *z)
{
	return __atomic_load_n(&z->seq, __ATOMIC_ACQUIRE);
}

/*
 * Where [start, end) starts: true if @start is zeroed (*run: the bytes from
 * @start that are), false if not (*run: the bytes before the next zeroed
 * range, or end - start).
 */
bool ufault__zeroed_at(struct ufault__zeroed *z, uint64_t start, uint64_t end, uint64_t *run);

/* A worker about to read the uffd (until its events are added). */
static inline void ufault__zeroed_read_begin(struct ufault__zeroed *z)
{
	if (z->guarded)
		pthread_rwlock_wrlock(&z->guard);
}

static inline void ufault__zeroed_read_end(struct ufault__zeroed *z)
{
	if (z->guarded)
		pthread_rwlock_unlock(&z->guard);
}

/* An install may go ahead (false: a read is in progress: defer it). */
static inline bool ufault__zeroed_install_begin(struct ufault__zeroed *z)
{
	return !z->guarded || !pthread_rwlock_tryrdlock(&z->guard);
}

static inline void ufault__zeroed_install_end(struct ufault__zeroed *z)
{
	if (z->guarded)
		pthread_rwlock_unlock(&z->guard);
}

/* Was a range overlapping [start, end) added since @seq? */
bool ufault__zeroed_since(struct ufault__zeroed *z, uint64_t seq, uint64_t start, uint64_t end);

#endif
