// SPDX-License-Identifier: MIT
/*
 * zeroed.c - ranges that read as zeros in a foreign context (zeroed.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "zeroed.h"

int ufault__zeroed_init(struct ufault__zeroed *z, bool guarded)
{
	int ret;

	memset(z, 0, sizeof(*z));
	ret = -pthread_mutex_init(&z->lock, NULL);
	if (ret || !guarded)
		return ret;
	ret = -pthread_rwlock_init(&z->guard, NULL);
	if (ret) {
		pthread_mutex_destroy(&z->lock);
		memset(z, 0, sizeof(*z));
		return ret;
	}
	z->guarded = true;
	return 0;
}

void ufault__zeroed_destroy(struct ufault__zeroed *z)
{
	free(z->v);
	z->v = NULL;
	z->n = z->cap = 0;
	pthread_mutex_destroy(&z->lock);
	if (z->guarded)
		pthread_rwlock_destroy(&z->guard);
}

/* The first range ending after @addr (index, n if none). Under lock. */
static unsigned int first_after(const struct ufault__zeroed *z, uint64_t addr)
{
	unsigned int lo = 0, hi = z->n;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (z->v[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

int ufault__zeroed_add(struct ufault__zeroed *z, uint64_t start, uint64_t end)
{
	unsigned int i, j;

	if (start >= end)
		return 0;
	pthread_mutex_lock(&z->lock);
	/* Ranges i..j-1 touch [start, end) (adjacent ones merge too). */
	i = first_after(z, start ? start - 1 : 0);
	for (j = i; j < z->n && z->v[j].start <= end; j++) {
		if (z->v[j].start < start)
			start = z->v[j].start;
		if (z->v[j].end > end)
			end = z->v[j].end;
	}
	if (i == j) { /* a new range at i */
		if (z->n == z->cap) {
			unsigned int cap = z->cap ? z->cap * 2 : 16;
			void *v = realloc(z->v, cap * sizeof(*z->v));

			if (!v) {
				pthread_mutex_unlock(&z->lock);
				return -ENOMEM;
			}
			z->v = v;
			z->cap = cap;
		}
		memmove(&z->v[i + 1], &z->v[i], (z->n - i) * sizeof(*z->v));
		z->n++;
	} else if (j - i > 1) { /* i absorbs i+1..j-1 */
		memmove(&z->v[i + 1], &z->v[j], (z->n - j) * sizeof(*z->v));
		z->n -= j - i - 1;
	}
	z->v[i].start = start;
	z->v[i].end = end;
	__atomic_add_fetch(&z->seq, 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&z->lock);
	return 0;
}

bool ufault__zeroed_at(struct ufault__zeroed *z, uint64_t start, uint64_t end, uint64_t *run)
{
	bool zero = false;
	unsigned int i;

	*run = end - start;
	if (!__atomic_load_n(&z->seq, __ATOMIC_ACQUIRE))
		return false; /* nothing was ever removed: the common case */
	pthread_mutex_lock(&z->lock);
	i = first_after(z, start);
	if (i < z->n) {
		if (z->v[i].start <= start) {
			zero = true;
			if (z->v[i].end < end)
				*run = z->v[i].end - start;
		} else if (z->v[i].start < end) {
			*run = z->v[i].start - start;
		}
	}
	pthread_mutex_unlock(&z->lock);
	return zero;
}

bool ufault__zeroed_since(struct ufault__zeroed *z, uint64_t seq, uint64_t start, uint64_t end)
{
	uint64_t run;

	if (ufault__zeroed_seq(z) == seq)
		return false;
	/* Something was added: does any zeroed range overlap the window? */
	return ufault__zeroed_at(z, start, end, &run) || run < end - start;
}
