// SPDX-License-Identifier: MIT
/*
 * remap.c - the list of mremap moves proxies have in flight (remap.h).
 */
#include "remap.h"
#include "witness.h"

static void lock(struct ufault__remaps *rs)
{
	pthread_mutex_lock(&rs->lock);
	ufault__witness_acquire(UFAULT__RANK_REMAP, false);
}

static void unlock(struct ufault__remaps *rs)
{
	ufault__witness_release(UFAULT__RANK_REMAP);
	pthread_mutex_unlock(&rs->lock);
}

int ufault__remaps_init(struct ufault__remaps *rs)
{
	rs->head = NULL;
	return -pthread_mutex_init(&rs->lock, NULL);
}

void ufault__remaps_destroy(struct ufault__remaps *rs)
{
	pthread_mutex_destroy(&rs->lock);
}

void ufault__remap_announce(struct ufault__remaps *rs, struct ufault__remap *a, uint64_t from,
			    uint64_t len)
{
	a->from = from;
	a->len = len;
	a->consumed = false;
	lock(rs);
	a->next = rs->head;
	rs->head = a;
	unlock(rs);
}

void ufault__remap_withdraw(struct ufault__remaps *rs, struct ufault__remap *a)
{
	lock(rs);
	for (struct ufault__remap **p = &rs->head; *p; p = &(*p)->next) {
		if (*p == a) {
			*p = a->next;
			break;
		}
	}
	unlock(rs);
}

bool ufault__remap_consume(struct ufault__remaps *rs, uint64_t from, uint64_t len)
{
	bool found = false;

	lock(rs);
	for (struct ufault__remap *a = rs->head; a && !found; a = a->next) {
		if (!a->consumed && a->from == from && a->len == len) {
			a->consumed = true;
			found = true;
		}
	}
	unlock(rs);
	return found;
}
