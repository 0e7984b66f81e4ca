// SPDX-License-Identifier: MIT
/*
 * prefetch.c - the queue of prefetch ranges (prefetch.h).
 */
#include <errno.h>

#include "prefetch.h"

int ufault__prefetch_init(struct ufault__prefetch *pf)
{
	pf->head = pf->tail = pf->queued = 0;
	return -pthread_mutex_init(&pf->lock, NULL);
}

void ufault__prefetch_destroy(struct ufault__prefetch *pf)
{
	pthread_mutex_destroy(&pf->lock);
}

int ufault__prefetch_push(struct ufault__prefetch *pf, uint64_t start, uint64_t end)
{
	int ret = 0;

	pthread_mutex_lock(&pf->lock);
	if (pf->tail - pf->head == UFAULT__PREFETCH_MAX) {
		ret = -EAGAIN;
	} else {
		pf->start[pf->tail % UFAULT__PREFETCH_MAX] = start;
		pf->end[pf->tail % UFAULT__PREFETCH_MAX] = end;
		pf->tail++;
		__atomic_store_n(&pf->queued, pf->tail - pf->head, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&pf->lock);
	return ret;
}

bool ufault__prefetch_take(struct ufault__prefetch *pf, uint64_t max, uint64_t *start,
			   uint64_t *end)
{
	unsigned int i;
	bool found = false;

	pthread_mutex_lock(&pf->lock);
	if (pf->head != pf->tail) {
		i = pf->head % UFAULT__PREFETCH_MAX;
		*start = pf->start[i];
		*end = pf->end[i] - pf->start[i] > max ? pf->start[i] + max : pf->end[i];
		pf->start[i] = *end;
		if (pf->start[i] == pf->end[i])
			pf->head++;
		__atomic_store_n(&pf->queued, pf->tail - pf->head, __ATOMIC_RELAXED);
		found = true;
	}
	pthread_mutex_unlock(&pf->lock);
	return found;
}
