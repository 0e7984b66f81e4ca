/* SPDX-License-Identifier: MIT */
/*
 * prefetch.h - ranges a program asked to have filled ahead of its faults
 * (ufault_prefetch). A bounded queue: the caller pushes and returns at
 * once; workers take pieces of it when they have requests to spare, so a
 * prefetch never takes a request a fault could use.
 */
#ifndef UFAULT_LIB_PREFETCH_H
#define UFAULT_LIB_PREFETCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define UFAULT__PREFETCH_MAX 256

struct ufault__prefetch {
	pthread_mutex_t lock;
	uint64_t start[UFAULT__PREFETCH_MAX], end[UFAULT__PREFETCH_MAX];
	unsigned int head, tail; /* under lock; tail - head queued */
	unsigned int queued;	 /* atomic hint for workers: tail - head */
};

int ufault__prefetch_init(struct ufault__prefetch *pf);
void ufault__prefetch_destroy(struct ufault__prefetch *pf);
/* Queue [start, end); 0 or -EAGAIN (full). */
int ufault__prefetch_push(struct ufault__prefetch *pf, uint64_t start, uint64_t end);
/* Take up to @max bytes from the oldest range; false if none is queued. */
bool ufault__prefetch_take(struct ufault__prefetch *pf, uint64_t max, uint64_t *start,
			   uint64_t *end);

static inline bool ufault__prefetch_queued(const struct ufault__prefetch *pf)
{
	return __atomic_load_n(&pf->queued, __ATOMIC_RELAXED) != 0;
}

#endif
